"""Float64 NumPy references for cpuformer's kernels.

Each function takes any real array, computes in float64 and returns float64, so that a float32 kernel
can be compared against it with an error bound of its own. They are written to be obviously right, not
fast; where the textbook formula cancels catastrophically in the tails, an exactly equivalent form
without the cancellation is used and the identity is stated.
"""

from __future__ import annotations

import math

import numpy as np

_erf = np.vectorize(math.erf, otypes=[np.float64])
_erfc = np.vectorize(math.erfc, otypes=[np.float64])


def _f64(x) -> np.ndarray:
    return np.asarray(x, dtype=np.float64)


def matmul(a, b, bias=None, trans_b: bool = False, activation=None) -> np.ndarray:
    """activation(a @ b + bias); b is [K, N], or [N, K] when trans_b."""
    a, b = _f64(a), _f64(b)
    if trans_b:
        b = b.T
    y = a @ b
    if bias is not None:
        y = y + _f64(bias)
    return ACTIVATIONS[activation](y)


def softmax(x, axis: int = -1) -> np.ndarray:
    """exp(x - max) / sum(exp(x - max)) along ``axis``; a slice that is entirely -inf gives zeros."""
    x = _f64(x)
    m = np.max(x, axis=axis, keepdims=True)
    all_masked = m == -np.inf
    m = np.where(all_masked, 0.0, m)
    with np.errstate(invalid="ignore"):
        e = np.exp(x - m)
        s = np.sum(e, axis=axis, keepdims=True)
        y = e / np.where(all_masked, 1.0, s)
    return np.where(all_masked, 0.0, y)


def layer_norm(x, weight, bias, eps: float = 1e-5, residual=None) -> np.ndarray:
    """(h - mean) / sqrt(var + eps) * weight + bias over the last axis, h = x (+ residual); biased var."""
    h = _f64(x)
    if residual is not None:
        h = h + _f64(residual)
    mean = h.mean(axis=-1, keepdims=True)
    var = ((h - mean) ** 2).mean(axis=-1, keepdims=True)
    return (h - mean) / np.sqrt(var + eps) * _f64(weight) + _f64(bias)


def relu(x) -> np.ndarray:
    """max(x, 0); NaN stays NaN."""
    x = _f64(x)
    return np.where(np.isnan(x), x, np.maximum(x, 0.0))


def sigmoid(x) -> np.ndarray:
    """1 / (1 + exp(-x))."""
    x = _f64(x)
    with np.errstate(over="ignore"):
        return 1.0 / (1.0 + np.exp(-x))


def normal_cdf(x) -> np.ndarray:
    """Phi(x), the standard normal CDF, as 0.5 erfc(-x / sqrt 2) (= 0.5 (1 + erf(x / sqrt 2)) without
    the cancellation of 1 + erf for negative x)."""
    return 0.5 * _erfc(-_f64(x) / math.sqrt(2.0))


def gelu(x) -> np.ndarray:
    """Exact GELU, x * Phi(x) = 0.5 x (1 + erf(x / sqrt 2)). Infinities follow the formula:
    gelu(-inf) = -inf * 0 = NaN."""
    x = _f64(x)
    with np.errstate(invalid="ignore"):
        return x * normal_cdf(x)


def gelu_erf_textbook(x) -> np.ndarray:
    """0.5 x (1 + erf(x / sqrt 2)) literally (cancels for x << 0; kept to cross-check gelu above)."""
    x = _f64(x)
    return 0.5 * x * (1.0 + _erf(x / math.sqrt(2.0)))


def gelu_tanh(x) -> np.ndarray:
    """GELU, tanh approximation: 0.5 x (1 + tanh(u)), u = sqrt(2/pi) (x + 0.044715 x^3).

    Evaluated as x * sigmoid(2u), the same function (0.5 (1 + tanh u) = sigmoid(2u)) without the
    cancellation of 1 + tanh for negative u."""
    x = _f64(x)
    with np.errstate(invalid="ignore", over="ignore"):
        u = math.sqrt(2.0 / math.pi) * (x + 0.044715 * x**3)
        return x * sigmoid(2.0 * u)


def silu(x) -> np.ndarray:
    """x * sigmoid(x)."""
    x = _f64(x)
    with np.errstate(invalid="ignore"):
        return x * sigmoid(x)


ACTIVATIONS = {
    None: lambda y: y,
    "none": lambda y: y,
    "relu": relu,
    "gelu": gelu,
    "gelu_tanh": gelu_tanh,
    "silu": silu,
}
