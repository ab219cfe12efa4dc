"""Kernels with NumPy in and NumPy out: matmul, softmax, layer_norm, activations, attention.

Inputs may be any real-valued array (bool, integer or floating); float32 C-contiguous arrays are used
without a copy, others are converted once. Results are float32. Wrong shapes raise ValueError, complex,
object or string dtypes raise TypeError; ``out`` must be a C-contiguous float32 array of the result's
shape. NaN and Inf propagate as IEEE arithmetic says. The GIL is released while the kernels run.
"""

from __future__ import annotations

from typing import Optional

import numpy as np

from . import _core
from ._core import PackedWeight

__all__ = [
    "PackedWeight",
    "argmax",
    "batched_matmul",
    "gelu",
    "layer_norm",
    "matmul",
    "pack_weight",
    "positional_encoding",
    "relu",
    "scaled_dot_product_attention",
    "silu",
    "softmax",
]

_ACTIVATIONS = {
    None: _core.Activation.none,
    "none": _core.Activation.none,
    "relu": _core.Activation.relu,
    "gelu": _core.Activation.gelu,
    "gelu_tanh": _core.Activation.gelu_tanh,
    "silu": _core.Activation.silu,
}


def as_float32(x, name: str) -> np.ndarray:
    """A C-contiguous float32 view of ``x`` (no copy when it already is one)."""
    if isinstance(x, np.ndarray) and x.dtype == np.float32 and x.flags.c_contiguous:
        return x
    arr = np.asarray(x)
    if arr.dtype.kind not in "biuf":
        raise TypeError(f"{name}: expected a real-valued array, got dtype {arr.dtype}")
    return np.asarray(arr, dtype=np.float32, order="C")


def finite_number(value, name: str, expected: str = "a number") -> float:
    """``value`` as a finite float; TypeError / ValueError naming ``name``."""
    try:
        value = float(value)
    except (TypeError, ValueError):
        raise TypeError(f"{name}: expected {expected}, got {type(value).__name__}") from None
    if not np.isfinite(value):
        raise ValueError(f"{name}: expected a finite number, got {value}")
    return value


def _check_out(out, shape: tuple, inputs: tuple = ()) -> Optional[np.ndarray]:
    if out is None:
        return None
    if not isinstance(out, np.ndarray):
        raise TypeError(f"out: expected a numpy.ndarray, got {type(out).__name__}")
    if out.dtype != np.float32:
        raise TypeError(f"out: expected dtype float32, got {out.dtype}")
    if tuple(out.shape) != tuple(shape):
        raise ValueError(f"out: expected shape {tuple(shape)}, got {tuple(out.shape)}")
    if not out.flags.c_contiguous:
        raise ValueError("out: expected a C-contiguous array")
    if not out.flags.writeable:
        raise ValueError("out: the array is read-only")
    for arr in inputs:
        if arr is not None and np.shares_memory(out, arr):
            raise ValueError("out: must not overlap the inputs of this operation")
    return out


def _unaliased(arr: Optional[np.ndarray], out: Optional[np.ndarray], in_place_ok: bool = True):
    """``arr``, or a copy of it when it overlaps ``out`` otherwise than as the very same view (the row and
    elementwise kernels may run in place, but a shifted overlap would read values they already wrote)."""
    if arr is None or out is None or not np.shares_memory(arr, out):
        return arr
    same = (arr.__array_interface__["data"][0] == out.__array_interface__["data"][0] and arr.shape == out.shape
            and arr.strides == out.strides)
    return arr if same and in_place_ok else arr.copy()


def _rows(x: np.ndarray, name: str) -> np.ndarray:
    """[..., N] as a 2-D [rows, N] view (a view of a C-contiguous array costs nothing); a 0-d array is
    one row of one element."""
    if x.ndim == 0:
        return x.reshape(1, 1)
    if x.ndim == 2:
        return x
    rows = int(np.prod(x.shape[:-1], dtype=np.int64))
    return x.reshape(rows, x.shape[-1])


def _activation(name) -> "_core.Activation":
    try:
        return _ACTIVATIONS[name]
    except (KeyError, TypeError):
        raise ValueError(
            f"activation: expected one of None, 'relu', 'gelu', 'gelu_tanh', 'silu', got {name!r}"
        ) from None


def pack_weight(weight, *, trans_b: bool = False) -> PackedWeight:
    """Packs a weight once for repeated ``matmul(a, packed)`` calls, in the active ISA's layout.

    ``weight`` is ``b`` as ``matmul`` takes it: ``[K, N]``, or ``[N, K]`` with ``trans_b=True`` (the layout
    of ``torch.nn.Linear.weight``)."""
    w = as_float32(weight, "weight")
    if w.ndim != 2:
        raise ValueError(f"weight: expected a 2-D array, got shape {w.shape}")
    return PackedWeight(w, bool(trans_b))


def matmul(a, b, *, bias=None, trans_b: bool = False, activation=None, out=None) -> np.ndarray:
    """``activation(a @ b + bias)`` for ``a`` of shape ``[..., M, K]``.

    ``b`` is ``[K, N]``, or ``[N, K]`` with ``trans_b=True``, or a :class:`PackedWeight` from
    :func:`pack_weight`. ``bias`` is ``[N]``. ``activation`` is None, 'relu', 'gelu', 'gelu_tanh' or 'silu'
    (applied in the GEMM's epilogue). Every output element is one FMA chain over K in order, so results
    do not depend on the thread count or on the other rows of ``a``."""
    act = _activation(activation)
    a = as_float32(a, "a")
    if a.ndim < 2:
        raise ValueError(f"a: expected at least 2 dimensions [..., M, K], got shape {a.shape}")
    bias_arr = None
    if bias is not None:
        bias_arr = as_float32(bias, "bias")
    packed = isinstance(b, PackedWeight)
    if a.ndim == 2:
        # The common call, kept short: the extension checks b, bias and out, with the messages below
        # (done here, those checks were 1.6 us of a 2.6 us call overhead).
        if packed:
            return _core.matmul_packed(a, b, bias_arr, act, out)
        return _core.matmul(a, as_float32(b, "b"), bool(trans_b), bias_arr, act, out)
    a2 = _rows(a, "a")
    if packed:
        if a.shape[-1] != b.k:
            raise ValueError(f"a: expected last dimension K = {b.k} (the packed weight's K), got shape {a.shape}")
        shape = a.shape[:-1] + (b.n,)
        out = _check_out(out, shape, (a, bias_arr))
        out2 = None if out is None else out.reshape(a2.shape[0], b.n)
        res = _core.matmul_packed(a2, b, bias_arr, act, out2)
    else:
        b = as_float32(b, "b")
        if b.ndim != 2:
            raise ValueError(f"b: expected a 2-D array, got shape {b.shape}")
        k_b, n = (b.shape[1], b.shape[0]) if trans_b else b.shape
        if a.shape[-1] != k_b:
            layout = "[N, K]" if trans_b else "[K, N]"
            raise ValueError(
                f"b: expected {layout} with K = {a.shape[-1]} (the last dimension of a), got shape {b.shape}"
            )
        shape = a.shape[:-1] + (n,)
        out = _check_out(out, shape, (a, b, bias_arr))
        out2 = None if out is None else out.reshape(a2.shape[0], n)
        res = _core.matmul(a2, b, bool(trans_b), bias_arr, act, out2)
    return out if out is not None else res.reshape(shape)


def batched_matmul(a, b, *, trans_b: bool = False, out=None) -> np.ndarray:
    """Many small products in one call: ``a [..., M, K] @ b [..., K, N]`` (or ``b [..., N, K]`` with
    ``trans_b``), with identical leading dimensions. Threads split the batch."""
    a = as_float32(a, "a")
    b = as_float32(b, "b")
    if a.ndim < 3 or b.ndim != a.ndim:
        raise ValueError(
            f"a, b: expected arrays [..., M, K] and [..., K, N] with the same leading dimensions, "
            f"got shapes {a.shape} and {b.shape}"
        )
    if a.shape[:-2] != b.shape[:-2]:
        raise ValueError(f"b: expected leading dimensions {a.shape[:-2]} (those of a), got shape {b.shape}")
    lead = a.shape[:-2]
    m, k = a.shape[-2:]
    n = b.shape[-2] if trans_b else b.shape[-1]
    k_b = b.shape[-1] if trans_b else b.shape[-2]
    if k_b != k:
        layout = "[..., N, K]" if trans_b else "[..., K, N]"
        raise ValueError(f"b: expected {layout} with K = {k}, got shape {b.shape}")
    shape = lead + (m, n)
    out = _check_out(out, shape, (a, b))
    batch = int(np.prod(lead, dtype=np.int64))
    a3 = a.reshape(batch, m, k)
    b3 = b.reshape((batch,) + b.shape[-2:])
    out3 = None if out is None else out.reshape(batch, m, n)
    res = _core.batched_matmul(a3, b3, bool(trans_b), out3)
    return out if out is not None else res.reshape(shape)


def _normalize_axis(axis, ndim: int) -> int:
    import operator

    try:
        axis = operator.index(axis)
    except TypeError:
        raise TypeError(f"axis: expected an integer, got {type(axis).__name__}") from None
    if not -ndim <= axis < ndim:
        raise ValueError(f"axis: {axis} is out of bounds for an array of dimension {ndim}")
    return axis % ndim


def _rowwise(x, name: str):
    x = as_float32(x, name)
    if x.ndim == 0:
        raise ValueError(f"{name}: expected at least 1 dimension, got a scalar")
    return x


def softmax(x, axis: int = -1, *, out=None) -> np.ndarray:
    """Numerically stable softmax along ``axis``; a slice that is all ``-inf`` gives zeros, never NaN."""
    x = _rowwise(x, "x")
    axis = _normalize_axis(axis, x.ndim)
    if axis != x.ndim - 1:
        moved = np.ascontiguousarray(np.moveaxis(x, axis, -1))
        res = np.moveaxis(_core.softmax(_rows(moved, "x"), None).reshape(moved.shape), -1, axis)
        if out is not None:
            _check_out(out, x.shape)
            out[...] = res
            return out
        return np.ascontiguousarray(res)
    out = _check_out(out, x.shape)
    x = _unaliased(x, out)
    res = _core.softmax(_rows(x, "x"), None if out is None else _rows(out, "out"))
    return out if out is not None else res.reshape(x.shape)


def argmax(x) -> np.ndarray:
    """Index of the largest value along the last axis (int64, shape ``x.shape[:-1]``), the first one on
    ties, as greedy decoding picks tokens. NaN entries are ignored; a slice of NaN only gives 0."""
    x = _rowwise(x, "x")
    if x.shape[-1] == 0:
        raise ValueError("x: argmax of an empty last axis is undefined (got shape %s)" % (x.shape,))
    return _core.argmax(_rows(x, "x")).reshape(x.shape[:-1])


def layer_norm(x, weight, bias, eps: float = 1e-5, residual=None, *, out=None) -> np.ndarray:
    """LayerNorm over the last dimension: ``(h - mean) / sqrt(var + eps) * weight + bias`` with
    ``h = x + residual`` when ``residual`` is given (the fused residual add of post-LN blocks).
    Variance by two passes (exact on rows with a large offset)."""
    x = _rowwise(x, "x")
    n = x.shape[-1]
    w = as_float32(weight, "weight")
    b = as_float32(bias, "bias")
    if w.shape != (n,):
        raise ValueError(f"weight: expected shape ({n},), got {w.shape}")
    if b.shape != (n,):
        raise ValueError(f"bias: expected shape ({n},), got {b.shape}")
    r = None
    if residual is not None:
        r = as_float32(residual, "residual")
        if r.shape != x.shape:
            raise ValueError(f"residual: expected shape {x.shape} (that of x), got {r.shape}")
    eps = float(eps)
    if not eps >= 0.0:
        raise ValueError(f"eps: expected a non-negative number, got {eps}")
    out = _check_out(out, x.shape)
    x, r = _unaliased(x, out), _unaliased(r, out)
    w, b = _unaliased(w, out, in_place_ok=False), _unaliased(b, out, in_place_ok=False)  # every row reads them
    res = _core.layer_norm(
        _rows(x, "x"), w, b, eps, None if r is None else _rows(r, "residual"), None if out is None else _rows(out, "out")
    )
    return out if out is not None else res.reshape(x.shape)


def _activation_op(x, act, out):
    x = _rowwise(x, "x")
    out = _check_out(out, x.shape)
    x = _unaliased(x, out)
    res = _core.bias_activation(_rows(x, "x"), None, act, None if out is None else _rows(out, "out"))
    return out if out is not None else res.reshape(x.shape)


def relu(x, *, out=None) -> np.ndarray:
    """max(x, 0), elementwise (NaN stays NaN)."""
    return _activation_op(x, _core.Activation.relu, out)


def gelu(x, approximate: str = "none", *, out=None) -> np.ndarray:
    """GELU as ``torch.nn.functional.gelu``: ``approximate='none'`` is the exact erf form
    ``0.5 x (1 + erf(x / sqrt(2)))``; ``'tanh'`` is ``0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))``."""
    if approximate == "none":
        act = _core.Activation.gelu
    elif approximate == "tanh":
        act = _core.Activation.gelu_tanh
    else:
        raise ValueError(f"approximate: expected 'none' or 'tanh', got {approximate!r}")
    return _activation_op(x, act, out)


def silu(x, *, out=None) -> np.ndarray:
    """x * sigmoid(x), elementwise (also called swish)."""
    return _activation_op(x, _core.Activation.silu, out)


def scaled_dot_product_attention(q, k, v, *, attn_mask=None, is_causal: bool = False, scale=None, out=None):
    """Attention as ``torch.nn.functional.scaled_dot_product_attention`` (without dropout):
    ``softmax(q @ k^T * scale + mask) @ v`` for ``q [..., L, E]``, ``k [..., S, E]``, ``v [..., S, Ev]``
    with identical leading dimensions; returns ``[..., L, Ev]``.

    ``attn_mask`` broadcasts to ``[..., L, S]``: bool (True = the key takes part, as in torch) or float
    (added to the scores; ``-inf`` masks). ``is_causal`` masks key j for query i when j > i (top-left
    aligned, as torch); it cannot be combined with ``attn_mask`` (torch's documented contract).
    ``scale`` defaults to ``1 / sqrt(E)``. A query row whose keys are all masked gives zeros, never NaN
    (recent PyTorch versions also give zeros; older ones gave NaN).

    Runs fused, in one pass over the keys with an online softmax (the ``[L, S]`` score matrix is never
    stored). Results do not depend on the thread count or on the other rows and batch entries."""
    q = as_float32(q, "q")
    k = as_float32(k, "k")
    v = as_float32(v, "v")
    for name, x in (("q", q), ("k", k), ("v", v)):
        if x.ndim < 2:
            raise ValueError(f"{name}: expected at least 2 dimensions [..., length, features], got shape {x.shape}")
    lead = q.shape[:-2]
    L, E = q.shape[-2:]
    if k.shape[:-2] != lead or v.shape[:-2] != lead:
        raise ValueError(
            f"k, v: expected leading dimensions {lead} (those of q), got shapes {k.shape} and {v.shape}"
        )
    S = k.shape[-2]
    if k.shape[-1] != E:
        raise ValueError(f"k: expected last dimension E = {E} (that of q), got shape {k.shape}")
    if v.shape[-2] != S:
        raise ValueError(f"v: expected {S} rows (the length of k), got shape {v.shape}")
    Ev = v.shape[-1]
    if scale is None:
        if E == 0:
            raise ValueError("q: the feature dimension E is 0, so the default scale 1/sqrt(E) is undefined")
        scale = 1.0 / float(np.sqrt(E))
    else:
        scale = finite_number(scale, "scale", "a number or None")
    is_causal = bool(is_causal)
    full = lead + (L, S)
    mask = None
    if attn_mask is not None:
        if is_causal:
            raise ValueError("attn_mask: must be None when is_causal=True (fold the causal mask into attn_mask)")
        m = np.asarray(attn_mask)
        if m.dtype == np.bool_:
            m = np.where(m, np.float32(0.0), np.float32(-np.inf))
        elif m.dtype.kind == "f":
            m = as_float32(m, "attn_mask")
        else:
            raise TypeError(f"attn_mask: expected a bool or floating-point array, got dtype {m.dtype}")
        try:
            if np.broadcast_shapes(m.shape, full) != full:
                raise ValueError
        except ValueError:
            raise ValueError(
                f"attn_mask: expected a shape that broadcasts to {full} ([..., L, S]), got {m.shape}"
            ) from None
        mask = m
    shape = lead + (L, Ev)
    out = _check_out(out, shape, (q, k, v, mask))
    # [..., L, E] as [B, H, L, E] views: B = all leading dimensions but the last, H = the last.
    B = int(np.prod(lead[:-1], dtype=np.int64)) if len(lead) > 1 else 1
    H = lead[-1] if lead else 1
    q4, k4, v4 = (x.reshape(B, H, *x.shape[-2:]) for x in (q, k, v))
    mask4 = None
    if mask is not None:
        m = mask.reshape((1,) * (len(full) - mask.ndim) + mask.shape)
        if m.shape[-1] != S:  # the kernel reads mask rows as contiguous runs of S floats
            m = np.ascontiguousarray(np.broadcast_to(m, m.shape[:-1] + (S,)))
        # A broadcast view (zero strides) is read in place; reshape copies only if the leading dimensions
        # cannot be merged into one batch stride.
        mask4 = np.broadcast_to(m, full).reshape(B, H, L, S)
    out4 = None if out is None else out.reshape(B, H, L, Ev)
    res = _core.attention(q4, k4, v4, scale, is_causal, 0, None, mask4, out4)
    return out if out is not None else res.reshape(shape)


def positional_encoding(length: int, d_model: int) -> np.ndarray:
    """The sinusoidal positional encoding of "Attention Is All You Need", ``[length, d_model]`` float32:
    ``PE[pos, 2i] = sin(pos / 10000^(2i/d_model))``, ``PE[pos, 2i+1] = cos(pos / 10000^(2i/d_model))``
    (computed in float64, rounded once)."""
    import operator

    try:
        length, d_model = operator.index(length), operator.index(d_model)
    except TypeError:
        raise TypeError("length, d_model: expected integers") from None
    if length < 0:
        raise ValueError(f"length: expected a non-negative integer, got {length}")
    if d_model <= 0:
        raise ValueError(f"d_model: expected a positive integer, got {d_model}")
    return _core.positional_encoding(length, d_model)
