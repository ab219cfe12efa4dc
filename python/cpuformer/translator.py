"""Translation: token ids in, token ids (and scores) out, decoded in C++ with a key/value cache.

    translator = cpuformer.Translator.from_pretrained("path/to/opus-mt-dir")   # a Marian checkpoint
    ids = translator.generate([[12, 57, 0], [33, 0]], beam_size=4)           # lists of token ids

Lengths count generated tokens (the decoder start token is neither counted nor returned; EOS ends a
hypothesis and is not returned). ``max_length=N`` here is ``max_length=N + 1`` in Hugging Face
transformers' generate(), and likewise for min_length.
"""

from __future__ import annotations

import json
import operator
import os
from typing import Any, Dict, Mapping, Optional, Sequence, Union

import numpy as np

from . import _core
from .convert import marian as _marian
from .io import safetensors as _st
from .ops import as_float32, finite_number
from .runtime import thread_count
from .token_ids import id_list, padded_batch

__all__ = ["Translator"]

_FORMAT = "cpuformer"
_GENERATION_KEYS = ("suppress_ids", "force_eos_at_max_length", "max_length", "beam_size")


def _positive_int(value, name: str, minimum: int = 1) -> int:
    try:
        value = operator.index(value)
    except TypeError:
        raise TypeError(f"{name}: expected an integer, got {type(value).__name__}") from None
    if value < minimum:
        raise ValueError(f"{name}: expected an integer >= {minimum}, got {value}")
    return value


def _seed(value) -> int:
    value = _positive_int(value, "seed", 0)
    if value >= 2**64:
        raise ValueError(f"seed: expected an integer below 2**64, got {value}")
    return value


def _sentence_batch(ids, lengths, name: str = "source_ids", lengths_name: str = "lengths") -> tuple:
    """(ids int64 [B, S] C-contiguous, lengths int64 [B]): at least one sentence, none empty."""
    arr, lens = padded_batch(ids, lengths, name, lengths_name)
    if arr.shape[0] == 0:
        raise ValueError(f"{name}: expected at least one sentence, got an empty "
                         + ("batch" if isinstance(ids, np.ndarray) else "list"))
    empty = np.flatnonzero(lens <= 0)
    if empty.size:
        raise ValueError(f"{name}: sentence {int(empty[0])} is empty (every sentence needs at least one token)")
    return arr, lens


class Translator:
    """A sequence-to-sequence Transformer with batched greedy, beam and sampling search in C++."""

    def __init__(self, config: Mapping[str, Any], weights: Mapping[str, np.ndarray],
                 generation: Optional[Mapping[str, Any]] = None):
        self.config = dict(config)
        self._weights = {k: as_float32(v, f"weights[{k!r}]") for k, v in weights.items()}
        self._core = _core.Seq2SeqModel(self.config, self._weights)
        self.generation_defaults = {k: v for k, v in dict(generation or {}).items() if k in _GENERATION_KEYS}

    # construction ---------------------------------------------------------------------------------
    @classmethod
    def from_pretrained(cls, path: str) -> "Translator":
        """From a local directory: a Hugging Face Marian checkpoint (config.json + model.safetensors or
        pytorch_model.bin), or a directory holding a cpuformer file ``model.cpuformer.safetensors``; or
        from such a file itself."""
        path = os.fspath(path)
        if os.path.isfile(path):
            return cls.load(path)
        if not os.path.isdir(path):
            raise FileNotFoundError(f"path: no such file or directory: {path!r}")
        ours = os.path.join(path, "model.cpuformer.safetensors")
        if os.path.isfile(ours):
            return cls.load(ours)
        if os.path.isfile(os.path.join(path, "config.json")):
            # convert() names what is wrong: invalid JSON, another model_type, missing weights.
            config, weights, defaults = _marian.convert(path)
            return cls(config, weights, defaults)
        raise FileNotFoundError(f"{path}: neither a Marian checkpoint (no config.json) nor a directory with "
                                f"model.cpuformer.safetensors")

    @classmethod
    def from_transformer(cls, module, src_embedding, *, tgt_embedding=None, output_projection=None,
                         final_logits_bias=None, embedding_scale: Optional[float] = None,
                         positional: str = "interleaved", max_positions: int = 1024, pad_id: int = 0,
                         eos_id: int = 1, decoder_start_id: Optional[int] = None) -> "Translator":
        """From a torch.nn.Transformer plus its embeddings ([V, D] arrays or nn.Embedding) and output
        projection (default: tied to the target embedding). Embeddings are scaled by sqrt(d_model) unless
        ``embedding_scale`` says otherwise; positions are the paper's sinusoids."""
        from .models import Transformer

        stacks = Transformer.from_torch(module)
        weights = dict(stacks.state_dict())

        def arr(x, name):
            if x is None:
                return None
            if hasattr(x, "weight"):
                x = x.weight
            if hasattr(x, "detach"):
                x = x.detach().cpu().float().numpy()
            return as_float32(x, name)

        src = arr(src_embedding, "src_embedding")
        tgt = arr(tgt_embedding, "tgt_embedding")
        out = arr(output_projection, "output_projection")
        bias = arr(final_logits_bias, "final_logits_bias")
        weights["src_embedding.weight"] = src
        if tgt is not None:
            weights["tgt_embedding.weight"] = tgt
        if out is not None:
            weights["output_projection.weight"] = out
        if bias is not None:
            weights["final_logits_bias"] = bias.reshape(-1)
        d = stacks.config.d_model
        tgt_vocab = (tgt if tgt is not None else src).shape[0]
        config = {k: v for k, v in stacks.config.core_dict().items()}
        config.update(
            src_vocab_size=int(src.shape[0]), tgt_vocab_size=int(tgt_vocab), shared_embeddings=tgt is None,
            tied_output=out is None, final_logits_bias=bias is not None,
            embedding_scale=float(np.sqrt(d)) if embedding_scale is None else float(embedding_scale),
            positional=positional, max_positions=int(max_positions), pad_id=int(pad_id), eos_id=int(eos_id),
            decoder_start_id=int(pad_id if decoder_start_id is None else decoder_start_id),
        )
        return cls(config, weights)

    def save(self, path: str) -> None:
        """Writes one safetensors file (config and generation defaults in its metadata)."""
        meta = {"format": _FORMAT, "model": "Translator", "config": json.dumps(self.config),
                "generation": json.dumps(self.generation_defaults)}
        _st.save_file(self._weights, os.fspath(path), meta)

    @classmethod
    def load(cls, path: str) -> "Translator":
        """Loads a file written by ``save`` (memory-mapped while the weights are packed)."""
        path = os.fspath(path)
        if not os.path.isfile(path):
            raise FileNotFoundError(f"path: no such file: {path!r}")
        tensors, meta = _st.load_file(path)
        if meta.get("format") != _FORMAT or meta.get("model") != "Translator":
            raise ValueError(f"{path}: not a cpuformer Translator file")
        try:
            config = json.loads(meta["config"])
            generation = json.loads(meta.get("generation", "{}"))
        except (KeyError, json.JSONDecodeError) as e:
            raise ValueError(f"{path}: malformed metadata ({e})") from None
        translator = cls(config, tensors, generation)
        translator._path = os.path.abspath(path)
        return translator

    # running ---------------------------------------------------------------------------------------
    @property
    def num_threads(self) -> int:
        """Threads this model uses (0 = the process default, cpuformer.get_num_threads())."""
        return self._core.num_threads

    @num_threads.setter
    def num_threads(self, n: int) -> None:
        self._core.num_threads = thread_count(n, "num_threads", 0)

    @property
    def vocab_size(self) -> int:
        return int(self.config["tgt_vocab_size"])

    def generate(
        self,
        source_ids: Union[Sequence[Sequence[int]], np.ndarray],
        *,
        lengths=None,
        beam_size: Optional[int] = None,
        max_length: Optional[int] = None,
        min_length: int = 0,
        length_penalty: float = 1.0,
        early_stopping: bool = False,
        num_hypotheses: int = 1,
        sampling_topk: Optional[int] = None,
        sampling_topp: Optional[float] = None,
        temperature: Optional[float] = None,
        seed: Optional[int] = None,
        suppress_ids: Optional[Sequence[int]] = None,
        return_scores: bool = False,
    ):
        """Translates a batch. ``source_ids``: a list of lists of token ids, or a padded int array with
        ``lengths``. Returns, per sentence, a list of token ids (``num_hypotheses == 1``) or a list of
        ``num_hypotheses`` such lists, best first; with ``return_scores``, ``(ids, scores)``.

        Search: beam search when ``beam_size > 1``; sampling when any of ``sampling_topk``,
        ``sampling_topp`` or ``temperature`` is given (reproducible with ``seed``, else seeded afresh on
        each call; sentence i draws from a generator seeded with (seed, i); top-k = 1 is greedy);
        greedy otherwise. Beam scores are ``sum(log p) / length ** length_penalty``; greedy and sampling
        scores are ``sum(log p)``."""
        ids, lens = _sentence_batch(source_ids, lengths)
        d = self.generation_defaults
        beam = _positive_int(d.get("beam_size", 1) if beam_size is None else beam_size, "beam_size")
        # Default: the checkpoint's generation config, else 256 capped by the positions the model has (a
        # model with 64 positions must still translate with default arguments).
        default_max = d.get("max_length", min(256, int(self.config.get("max_positions", 256))))
        max_len = _positive_int(default_max if max_length is None else max_length, "max_length")
        min_len = _positive_int(min_length, "min_length", 0)
        if min_len > max_len:
            raise ValueError(f"min_length: expected <= max_length ({max_len}), got {min_len}")
        n_hyp = _positive_int(num_hypotheses, "num_hypotheses")
        if n_hyp > beam:
            raise ValueError(f"num_hypotheses: expected <= beam_size ({beam}), got {n_hyp}")
        sampling = sampling_topk is not None or sampling_topp is not None or temperature is not None
        if sampling and beam > 1:
            raise ValueError("sampling_topk/sampling_topp/temperature: sampling needs beam_size = 1")
        options: Dict[str, Any] = {
            "beam_size": beam, "max_length": max_len, "min_length": min_len,
            "length_penalty": finite_number(length_penalty, "length_penalty"), "early_stopping": bool(early_stopping),
            "num_hypotheses": n_hyp, "sampling": sampling,
            "sampling_topk": _positive_int(sampling_topk, "sampling_topk", 0) if sampling_topk is not None else 0,
            "sampling_topp": float(sampling_topp) if sampling_topp is not None else 1.0,
            "temperature": float(temperature) if temperature is not None else 1.0,
            # No seed: a fresh one per call (sampling twice must not return the same draw every time).
            "seed": _seed(seed) if seed is not None else int.from_bytes(os.urandom(8), "little") >> 1,
            "force_eos_at_max_length": bool(d.get("force_eos_at_max_length", False)),
            "suppress_ids": id_list(d.get("suppress_ids", []) if suppress_ids is None else suppress_ids,
                                       "suppress_ids"),
            "eos_id": int(self.config["eos_id"]),
            "decoder_start_id": int(self.config["decoder_start_id"]),
        }
        hyps, scores = self._core.generate(ids, lens, options)
        if num_hypotheses == 1:
            hyps = [h[0] if h else [] for h in hyps]
            scores = [s[0] if s else float("-inf") for s in scores]
        return (hyps, scores) if return_scores else hyps

    def log_probs(self, source_ids, target_ids, *, source_lengths=None, target_lengths=None) -> np.ndarray:
        """Teacher-forced forward: log-probabilities ``[B, T, V]`` of the next token after each target
        prefix (``target_ids`` starts with the decoder start token). Rows past a target's length are 0."""
        src, slen = _sentence_batch(source_ids, source_lengths, "source_ids", "source_lengths")
        tgt, tlen = _sentence_batch(target_ids, target_lengths, "target_ids", "target_lengths")
        return self._core.forward_log_probs(src, slen, tgt, tlen)

    def __reduce__(self):
        # Loaded from a file: pickles as its path (the worker maps the same file); otherwise as its config,
        # weights and generation defaults.
        path = getattr(self, "_path", None)
        if path is not None and os.path.isfile(path):
            return (_restore_from_path, (path, self.num_threads))
        return (_restore_from_weights, (self.config, self._weights, self.generation_defaults, self.num_threads))


def _restore_from_path(path: str, num_threads: int) -> Translator:
    t = Translator.load(path)
    t.num_threads = num_threads
    return t


def _restore_from_weights(config, weights, generation, num_threads: int) -> Translator:
    t = Translator(config, weights, generation)
    t.num_threads = num_threads
    return t
