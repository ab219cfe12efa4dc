"""The Transformer of "Attention Is All You Need" with torch.nn.Transformer's interface, run in C++.

    model = cpuformer.Transformer.from_torch(torch_model)          # or from_state_dict / load
    out = model(src, tgt, tgt_mask=mask, src_key_padding_mask=pad)  # NumPy in, NumPy out

Inputs are float arrays shaped as PyTorch's (``[S, B, E]``, or ``[B, S, E]`` with ``batch_first``, or
unbatched ``[S, E]``); masks follow PyTorch's conventions (see masks.py). Differences from PyTorch,
by design: outputs at padded positions (``*_key_padding_mask`` True) are exactly zero, as PyTorch's fast
path returns them, and a query whose keys are all masked gives zeros instead of NaN. Dropout is ignored
(inference only).
"""

from __future__ import annotations

import dataclasses
import json
import os
from typing import Any, Dict, Mapping, Optional

import numpy as np

from . import _core
from . import masks as _masks
from .io import safetensors as _st
from .ops import as_float32
from .runtime import thread_count

__all__ = ["Transformer", "TransformerConfig", "TransformerDecoder", "TransformerEncoder"]

_FORMAT = "cpuformer"
_ACTIVATIONS = ("relu", "gelu", "gelu_tanh", "silu")


@dataclasses.dataclass(frozen=True)
class TransformerConfig:
    """The model's shape, with torch.nn.Transformer's argument names."""

    d_model: int = 512
    nhead: int = 8
    num_encoder_layers: int = 6
    num_decoder_layers: int = 6
    dim_feedforward: int = 2048
    activation: str = "relu"
    layer_norm_eps: float = 1e-5
    batch_first: bool = False
    norm_first: bool = False
    bias: bool = True
    encoder_final_norm: bool = True  # encoder.norm (always present in torch.nn.Transformer)
    decoder_final_norm: bool = True  # decoder.norm

    def __post_init__(self):
        for field in ("d_model", "nhead", "dim_feedforward"):
            value = getattr(self, field)
            if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value <= 0:
                raise ValueError(f"{field}: expected a positive integer, got {value!r}")
        for field in ("num_encoder_layers", "num_decoder_layers"):
            value = getattr(self, field)
            if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < 0:
                raise ValueError(f"{field}: expected a non-negative integer, got {value!r}")
        if self.d_model % self.nhead:
            raise ValueError(f"nhead: must divide d_model = {self.d_model}, got {self.nhead}")
        if self.activation not in _ACTIVATIONS:
            raise ValueError(f"activation: expected one of {_ACTIVATIONS}, got {self.activation!r}")
        if not float(self.layer_norm_eps) >= 0:
            raise ValueError(f"layer_norm_eps: expected a non-negative number, got {self.layer_norm_eps!r}")

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "TransformerConfig":
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - known - {"dropout"})
        if unknown:
            raise ValueError(f"config: unknown keys {unknown}; expected some of {sorted(known)}")
        return cls(**{k: v for k, v in d.items() if k in known})

    def to_dict(self) -> Dict[str, Any]:
        return dataclasses.asdict(self)

    def core_dict(self) -> Dict[str, Any]:
        d = self.to_dict()
        d.pop("batch_first")
        d["d_model"], d["nhead"] = int(d["d_model"]), int(d["nhead"])
        return d


def _activation_name(act) -> str:
    """The name of a torch layer's activation (a function like F.relu or a module like nn.GELU())."""
    if isinstance(act, str):
        return act
    name = getattr(act, "__name__", None) or type(act).__name__
    name = name.lower()
    if name == "gelu" and getattr(act, "approximate", "none") == "tanh":
        return "gelu_tanh"
    if name in ("relu", "gelu", "silu"):
        return name
    raise ValueError(f"activation: {act!r} is not supported (relu, gelu, gelu_tanh or silu)")


def _config_from_torch_layer(layer, **stacks) -> TransformerConfig:
    """A config from one torch encoder/decoder layer (shapes, activation, norms) plus the stack fields."""
    return TransformerConfig(
        d_model=layer.self_attn.embed_dim,
        nhead=layer.self_attn.num_heads,
        dim_feedforward=layer.linear1.out_features,
        activation=_activation_name(layer.activation),
        layer_norm_eps=layer.norm1.eps,
        batch_first=layer.self_attn.batch_first,
        norm_first=layer.norm_first,
        bias=layer.linear1.bias is not None,
        **stacks,
    )


def _state_dict_arrays(state_dict: Mapping[str, Any]) -> Dict[str, np.ndarray]:
    out = {}
    for name, value in state_dict.items():
        if hasattr(value, "detach"):  # a torch tensor
            value = value.detach().cpu().float().numpy()
        out[str(name)] = as_float32(value, f"state_dict[{name!r}]")
    return out


class _Model:
    _part = ""

    def __init__(self, config: TransformerConfig, state_dict: Mapping[str, Any]):
        if not isinstance(config, TransformerConfig):
            raise TypeError(f"config: expected a TransformerConfig, got {type(config).__name__}")
        self.config = config
        self._core = _core.TransformerModel(config.core_dict(), _state_dict_arrays(state_dict), self._part)

    # construction -------------------------------------------------------------------------------
    @classmethod
    def from_state_dict(cls, state_dict: Mapping[str, Any], config) -> "_Model":
        """From a dict of arrays (NumPy or torch) with torch's key names and a config (TransformerConfig or
        dict of its fields). Missing, unexpected or wrongly shaped keys raise ValueError listing them."""
        if isinstance(config, Mapping):
            config = TransformerConfig.from_dict(config)
        return cls(config, state_dict)

    @classmethod
    def expected_keys(cls, config) -> Dict[str, tuple]:
        """The state-dict keys and shapes this configuration expects."""
        if isinstance(config, Mapping):
            config = TransformerConfig.from_dict(config)
        return dict(_core.transformer_weight_specs(config.core_dict(), cls._part))

    def save(self, path: str) -> None:
        """Writes the model to one safetensors file, config in its metadata."""
        raise NotImplementedError  # replaced per instance in __init__ of loaded/converted models

    @classmethod
    def load(cls, path: str) -> "_Model":
        """Loads a file written by ``save`` (memory-mapped while the weights are packed)."""
        path = os.fspath(path)
        if not os.path.isfile(path):
            raise FileNotFoundError(f"path: no such file: {path!r}")
        tensors, meta = _st.load_file(path)
        if meta.get("format") != _FORMAT or "config" not in meta:
            raise ValueError(f"{path}: not a cpuformer model file (no cpuformer metadata)")
        if meta.get("model") != cls.__name__:
            raise ValueError(f"{path}: holds a {meta.get('model')}, not a {cls.__name__}")
        try:
            config = TransformerConfig.from_dict(json.loads(meta["config"]))
        except (json.JSONDecodeError, TypeError) as e:
            raise ValueError(f"{path}: malformed config in metadata: {e}") from None
        model = cls(config, tensors)
        model._path = os.path.abspath(path)
        return model

    # running ---------------------------------------------------------------------------------------
    @property
    def num_threads(self) -> int:
        """Threads this model uses (0 = the process default, cpuformer.get_num_threads())."""
        return self._core.num_threads

    @num_threads.setter
    def num_threads(self, n: int) -> None:
        self._core.num_threads = thread_count(n, "num_threads", 0)

    def _batch_first(self, x, name: str):
        """(array [B, L, E] C-contiguous, was_unbatched)."""
        arr = as_float32(x, name)
        if arr.ndim == 2:
            return arr[None], True
        if arr.ndim != 3:
            raise ValueError(f"{name}: expected a 3-D array (or 2-D unbatched), got shape {arr.shape}")
        if arr.shape[-1] != self.config.d_model:
            raise ValueError(f"{name}: expected last dimension d_model = {self.config.d_model}, got shape {arr.shape}")
        if not self.config.batch_first:
            arr = np.ascontiguousarray(arr.transpose(1, 0, 2))
        return arr, False

    def _output(self, out: np.ndarray, unbatched: bool) -> np.ndarray:
        if unbatched:
            return out[0]
        return out if self.config.batch_first else np.ascontiguousarray(out.transpose(1, 0, 2))

    def _unbatched_padding(self, mask, unbatched: bool):
        if mask is None or not unbatched:
            return mask
        return np.asarray(mask)[None]

    def __call__(self, *args, **kwargs):
        return self.forward(*args, **kwargs)

    def __reduce__(self):
        # A model loaded from a file pickles as its path (the worker maps the same file); one built in
        # memory pickles as its config and float32 weights. Thread settings travel along.
        path = getattr(self, "_path", None)
        if path is not None and os.path.isfile(path):
            return (_restore_from_path, (type(self), path, self.num_threads))
        return (_restore_from_weights, (type(self), self.config.to_dict(), self.state_dict(), self.num_threads))


def _restore_from_path(cls, path: str, num_threads: int):
    model = cls.load(path)
    model.num_threads = num_threads
    return model


def _restore_from_weights(cls, config: Dict[str, Any], state_dict: Mapping[str, np.ndarray], num_threads: int):
    model = cls(TransformerConfig.from_dict(config), state_dict)
    model.num_threads = num_threads
    return model


def _save(model: _Model, path: str, state_dict: Mapping[str, np.ndarray]) -> None:
    meta = {"format": _FORMAT, "model": type(model).__name__, "config": json.dumps(model.config.to_dict())}
    _st.save_file(state_dict, os.fspath(path), meta)


class _KeepsWeights(_Model):
    """Keeps the float32 state dict (shared, not copied where possible) so that save() can write it."""

    def __init__(self, config: TransformerConfig, state_dict: Mapping[str, Any]):
        arrays = _state_dict_arrays(state_dict)
        super().__init__(config, arrays)
        self._weights = arrays

    def save(self, path: str) -> None:
        _save(self, path, self._weights)

    def state_dict(self) -> Dict[str, np.ndarray]:
        """The weights with torch's key names (float32 arrays)."""
        return dict(self._weights)


class TransformerEncoder(_KeepsWeights):
    """A stack of encoder layers (torch.nn.TransformerEncoder): keys ``layers.{i}.*`` and ``norm.*``."""

    _part = "encoder"

    @classmethod
    def from_torch(cls, module) -> "TransformerEncoder":
        """From a torch.nn.TransformerEncoder (its layers must be nn.TransformerEncoderLayer)."""
        config = _config_from_torch_layer(
            module.layers[0], num_encoder_layers=len(module.layers), num_decoder_layers=0,
            encoder_final_norm=module.norm is not None, decoder_final_norm=False,
        )
        return cls(config, module.state_dict())

    def forward(self, src, mask=None, src_key_padding_mask=None, is_causal: Optional[bool] = None) -> np.ndarray:
        """As torch.nn.TransformerEncoder.forward."""
        x, unbatched = self._batch_first(src, "src")
        b, s, _ = x.shape
        lengths, pad = _masks.key_padding(
            self._unbatched_padding(src_key_padding_mask, unbatched), "src_key_padding_mask", b, s
        )
        additive, causal = _masks.attention_mask(mask, "mask", b, self.config.nhead, s, s, is_causal)
        out = self._core.encode(x, lengths, _masks.combine(additive, pad), causal)
        return self._output(out, unbatched)


class TransformerDecoder(_KeepsWeights):
    """A stack of decoder layers (torch.nn.TransformerDecoder): keys ``layers.{i}.*`` and ``norm.*``."""

    _part = "decoder"

    @classmethod
    def from_torch(cls, module) -> "TransformerDecoder":
        """From a torch.nn.TransformerDecoder (its layers must be nn.TransformerDecoderLayer)."""
        config = _config_from_torch_layer(
            module.layers[0], num_encoder_layers=0, num_decoder_layers=len(module.layers),
            encoder_final_norm=False, decoder_final_norm=module.norm is not None,
        )
        return cls(config, module.state_dict())

    def forward(
        self,
        tgt,
        memory,
        tgt_mask=None,
        memory_mask=None,
        tgt_key_padding_mask=None,
        memory_key_padding_mask=None,
        tgt_is_causal: Optional[bool] = None,
        memory_is_causal: bool = False,
    ) -> np.ndarray:
        """As torch.nn.TransformerDecoder.forward."""
        t, unbatched = self._batch_first(tgt, "tgt")
        m, mem_unbatched = self._batch_first(memory, "memory")
        if unbatched != mem_unbatched:
            raise ValueError(f"memory: expected {'2' if unbatched else '3'}-D like tgt, got shape {np.shape(memory)}")
        b, tl, _ = t.shape
        if m.shape[0] != b:
            raise ValueError(f"memory: expected batch size {b} (that of tgt), got shape {np.shape(memory)}")
        sl = m.shape[1]
        h = self.config.nhead
        t_len, t_pad = _masks.key_padding(
            self._unbatched_padding(tgt_key_padding_mask, unbatched), "tgt_key_padding_mask", b, tl
        )
        m_len, m_pad = _masks.key_padding(
            self._unbatched_padding(memory_key_padding_mask, unbatched), "memory_key_padding_mask", b, sl
        )
        t_add, causal = _masks.attention_mask(tgt_mask, "tgt_mask", b, h, tl, tl, tgt_is_causal)
        m_add, m_causal = _masks.attention_mask(memory_mask, "memory_mask", b, h, tl, sl, memory_is_causal)
        if m_causal:
            m_add = _masks.causal_mask(tl)[None, None] if tl == sl else None
            if m_add is None:
                raise ValueError("memory_is_causal: needs tgt and memory of the same length")
        out = self._core.decode(t, t_len, _masks.combine(t_add, t_pad), causal, m, m_len, _masks.combine(m_add, m_pad))
        return self._output(out, unbatched)


class Transformer(_KeepsWeights):
    """The encoder-decoder Transformer (torch.nn.Transformer): keys ``encoder.*`` and ``decoder.*``."""

    _part = "transformer"

    @classmethod
    def from_torch(cls, module) -> "Transformer":
        """From a torch.nn.Transformer."""
        config = _config_from_torch_layer(
            module.encoder.layers[0], num_encoder_layers=len(module.encoder.layers),
            num_decoder_layers=len(module.decoder.layers), encoder_final_norm=module.encoder.norm is not None,
            decoder_final_norm=module.decoder.norm is not None,
        )
        return cls(config, module.state_dict())

    def forward(
        self,
        src,
        tgt,
        src_mask=None,
        tgt_mask=None,
        memory_mask=None,
        src_key_padding_mask=None,
        tgt_key_padding_mask=None,
        memory_key_padding_mask=None,
        src_is_causal: Optional[bool] = None,
        tgt_is_causal: Optional[bool] = None,
        memory_is_causal: bool = False,
    ) -> np.ndarray:
        """As torch.nn.Transformer.forward."""
        s, unbatched = self._batch_first(src, "src")
        t, tgt_unbatched = self._batch_first(tgt, "tgt")
        if unbatched != tgt_unbatched:
            raise ValueError(f"tgt: expected {'2' if unbatched else '3'}-D like src, got shape {np.shape(tgt)}")
        b, sl, _ = s.shape
        if t.shape[0] != b:
            raise ValueError(f"tgt: expected batch size {b} (that of src), got shape {np.shape(tgt)}")
        tl = t.shape[1]
        h = self.config.nhead
        s_len, s_pad = _masks.key_padding(
            self._unbatched_padding(src_key_padding_mask, unbatched), "src_key_padding_mask", b, sl
        )
        t_len, t_pad = _masks.key_padding(
            self._unbatched_padding(tgt_key_padding_mask, unbatched), "tgt_key_padding_mask", b, tl
        )
        m_len, m_pad = _masks.key_padding(
            self._unbatched_padding(memory_key_padding_mask, unbatched), "memory_key_padding_mask", b, sl
        )
        s_add, s_causal = _masks.attention_mask(src_mask, "src_mask", b, h, sl, sl, src_is_causal)
        t_add, t_causal = _masks.attention_mask(tgt_mask, "tgt_mask", b, h, tl, tl, tgt_is_causal)
        m_add, m_causal = _masks.attention_mask(memory_mask, "memory_mask", b, h, tl, sl, memory_is_causal)
        if m_causal:
            if tl != sl:
                raise ValueError("memory_is_causal: needs src and tgt of the same length")
            m_add = _masks.causal_mask(tl)[None, None]
        out = self._core.forward(
            s, s_len, _masks.combine(s_add, s_pad), s_causal,
            t, t_len, _masks.combine(t_add, t_pad), t_causal,
            m_len, _masks.combine(m_add, m_pad),
        )
        return self._output(out, unbatched)
