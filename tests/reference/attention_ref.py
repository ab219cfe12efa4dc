"""Float64 reference for scaled-dot-product attention, written for clarity rather than speed: the full
score matrix, an explicit boolean "may attend" matrix, and a softmax that gives zeros for rows whose keys
are all masked."""

from __future__ import annotations

import numpy as np


def attention(q, k, v, *, scale=None, causal=False, causal_offset=0, key_lengths=None, mask=None):
    """Returns (out [..., L, Ev], probabilities [..., L, S], scores [..., L, S]) in float64.

    q [..., L, E], k [..., S, E], v [..., S, Ev] with identical leading dimensions.
    scores = scale * q @ k^T (+ mask when mask is a float array), -inf where masked.
    Masked: key j for query i when causal and j > i + causal_offset; keys j >= key_lengths[b] (b the index
    along the first leading dimension); False entries of a bool mask (True = attend, as in torch).
    mask broadcasts to [..., L, S]. A row with every key masked has probabilities and output 0.
    """
    q = np.asarray(q, dtype=np.float64)
    k = np.asarray(k, dtype=np.float64)
    v = np.asarray(v, dtype=np.float64)
    L, E = q.shape[-2:]
    S = k.shape[-2]
    if scale is None:
        scale = 1.0 / np.sqrt(E)
    scores = (q @ np.swapaxes(k, -1, -2)) * scale
    allowed = np.ones(scores.shape, dtype=bool)
    i = np.arange(L)[:, None]
    j = np.arange(S)[None, :]
    if causal:
        allowed &= j <= i + causal_offset
    if key_lengths is not None:
        lengths = np.asarray(key_lengths).reshape((-1,) + (1,) * (scores.ndim - 1))
        allowed &= j < lengths
    if mask is not None:
        mask = np.asarray(mask)
        if mask.dtype == np.bool_:
            allowed &= mask
        else:
            scores = scores + mask.astype(np.float64)
    scores = np.where(allowed, scores, -np.inf)
    row_max = np.max(scores, axis=-1, keepdims=True) if S else np.full(scores.shape[:-1] + (1,), -np.inf)
    dead = row_max == -np.inf
    e = np.exp(scores - np.where(dead, 0.0, row_max))
    total = np.sum(e, axis=-1, keepdims=True)
    p = np.where(dead, 0.0, e / np.where(dead, 1.0, total))
    return p @ v, p, scores
