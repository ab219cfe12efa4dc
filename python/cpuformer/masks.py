"""Turning PyTorch-style masks into what the C++ core takes: a causal flag, per-sequence lengths (from
key padding masks that pad a suffix, the usual case, which lets the core skip padding entirely) and
otherwise one additive float mask of shape [1 or B, 1 or H, L, S].

PyTorch's conventions, followed here: in ``attn_mask`` / ``src_mask`` / ``tgt_mask`` / ``memory_mask``
and in ``*_key_padding_mask``, a boolean True means "may not attend"; float masks are added to the scores.
"""

from __future__ import annotations

from typing import Optional, Tuple

import numpy as np

from .ops import as_float32

_NEG_INF = np.float32(-np.inf)


def _as_mask_array(mask, name: str) -> np.ndarray:
    arr = np.asarray(mask)
    if arr.dtype == np.bool_:
        return arr
    if arr.dtype.kind not in "iuf":
        raise TypeError(f"{name}: expected a bool or float array, got dtype {arr.dtype}")
    return as_float32(arr, name)


def causal_mask(length: int) -> np.ndarray:
    """The float mask torch.nn.Transformer.generate_square_subsequent_mask returns: -inf above the diagonal."""
    return np.triu(np.full((length, length), _NEG_INF, dtype=np.float32), k=1)


def _is_causal(arr: np.ndarray) -> bool:
    if arr.ndim != 2 or arr.shape[0] != arr.shape[1]:
        return False
    upper = np.triu(np.ones(arr.shape, dtype=bool), k=1)
    if arr.dtype == np.bool_:
        return bool(np.array_equal(arr, upper))
    return bool(np.all(arr[upper] == _NEG_INF) and np.all(arr[~upper] == 0))


def attention_mask(
    mask, name: str, batch: int, heads: int, q_len: int, k_len: int, is_causal: Optional[bool] = None
) -> Tuple[Optional[np.ndarray], bool]:
    """(additive [1|B, 1|H, L, S] float32 or None, causal flag) for an attention mask of shape [L, S] or
    [B*H, L, S]. A mask equal to the causal mask becomes the flag (no mask is read at all)."""
    if mask is None:
        return None, bool(is_causal)
    arr = _as_mask_array(mask, name)
    if arr.shape == (q_len, k_len) and _is_causal(arr):  # a causal mask of another size is a shape error
        return None, True
    if arr.ndim == 2:
        if arr.shape != (q_len, k_len):
            raise ValueError(f"{name}: expected shape ({q_len}, {k_len}), got {arr.shape}")
        arr = arr.reshape(1, 1, q_len, k_len)
    elif arr.ndim == 3:
        if arr.shape != (batch * heads, q_len, k_len):
            raise ValueError(
                f"{name}: expected shape ({q_len}, {k_len}) or ({batch * heads}, {q_len}, {k_len}) "
                f"(batch * nhead first), got {arr.shape}"
            )
        arr = arr.reshape(batch, heads, q_len, k_len)
    else:
        raise ValueError(f"{name}: expected a 2-D or 3-D mask, got shape {arr.shape}")
    if arr.dtype == np.bool_:
        arr = np.where(arr, _NEG_INF, np.float32(0))
    return np.ascontiguousarray(arr, dtype=np.float32), False


def key_padding(mask, name: str, batch: int, length: int) -> Tuple[Optional[np.ndarray], Optional[np.ndarray]]:
    """(lengths int64 [B] or None, additive [B, 1, 1, S] float32 or None) for a [B, S] key padding mask.
    A mask that pads a suffix of each sequence becomes lengths; any other becomes an additive mask."""
    if mask is None:
        return None, None
    arr = _as_mask_array(mask, name)
    if arr.shape != (batch, length):
        raise ValueError(f"{name}: expected shape ({batch}, {length}) (batch, sequence), got {arr.shape}")
    padded = arr if arr.dtype == np.bool_ else (arr == _NEG_INF)
    if arr.dtype == np.bool_ or np.all((arr == 0) | (arr == _NEG_INF)):
        lengths = (~padded).sum(axis=1).astype(np.int64)
        suffix = np.arange(length)[None, :] >= lengths[:, None]
        if np.array_equal(suffix, padded):
            return lengths, None
    additive = np.where(padded, _NEG_INF, np.float32(0)) if arr.dtype == np.bool_ else arr
    return None, np.ascontiguousarray(additive.reshape(batch, 1, 1, length), dtype=np.float32)


def combine(a: Optional[np.ndarray], b: Optional[np.ndarray]) -> Optional[np.ndarray]:
    """The sum of two additive 4-D masks (either may be None), broadcast."""
    if a is None:
        return b
    if b is None:
        return a
    return np.ascontiguousarray(a + b, dtype=np.float32)
