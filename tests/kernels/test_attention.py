"""Fused attention (cpuformer.ops.scaled_dot_product_attention and the low-level _core.attention) against
the float64 reference and torch.nn.functional.scaled_dot_product_attention, on every ISA path.

Lengths L, S in {1, 3, 17, 64, 100, 257, 1000} cover one key, the vector tails of every ISA, one and
several key tiles (128 keys) and several query blocks; head dims {8, 24, 64, 80} cover whole and partial
register tiles. Bounds are elementwise (see attention_bound). Determinism is checked bit for bit
(np.array_equal): thread count, query-block membership, padding, and strided (fused QKV) inputs.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import cpuformer
from cpuformer import _core, ops
from numerics import EPS32, assert_within, nan_like, use_threads
from reference import attention_ref as ref

LENGTHS = [1, 3, 17, 64, 100, 257, 1000]
HEAD_DIMS = [8, 24, 64, 80]
KEY_TILE = 128  # kAttentionKeyTile in cpp/ops/attention.h
MODES = ["none", "causal", "causal_kv", "float_mask", "bool_mask", "key_lengths"]

HYPOTHESIS = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


def attention_bound(q, k, v, scale, p, scores, out):
    """Elementwise bound on |got - ref| for ref = P V (float64) and got computed in float32 as
    s = q.k (one FMA chain over E), x = s * scale (+ mask), P~ = exp(x - m) tile by tile with running max
    m and sum l, O = sum P~ v (FMA chains, rescaled per tile), out = O * (1 / l).

    * Scores: |dx_ij| <= EPS32 ((2 sqrt(E) + 4) scale |q_i|.|k_j| + 2 |x_ij|): the dot product as in
      numerics.gemm_bound, then the scale multiplication and the mask addition (u |x| each).
    * exp: relative error <= 2 EPS32 (the polynomial) + EPS32 |x_ij - m_i| (rounding of its argument,
      magnified by exp's condition number |x - m|) -- the same shape as a score error.
    * A score perturbation dx moves out_i by sum_j p_ij (dx_ij - sum_k p_ik dx_ik) v_j
      = sum_j p_ij dx_ij (v_j - out_i), at most sum_j p_ij |dx_ij| (|v_j| + |out_i|).
    * Sums: O and l accumulate <= (2 sqrt(S) + 4) EPS32 each relative to sum p|v| and l; each tile's
      rescale and the final 1/l multiplication add 2 EPS32 (alpha's own error multiplies O and l alike
      and cancels in O / l).
    For unit-normal inputs this is ~1e-5 of max|v| at E = 64: far below what a missing, extra or wrong
    key changes (p_ij |v_j - out_i| ~ |v| / S).
    """
    q = np.abs(np.asarray(q, np.float64))
    k = np.abs(np.asarray(k, np.float64))
    av = np.abs(np.asarray(v, np.float64))
    E, S = q.shape[-1], k.shape[-2]
    tiles = max(1, math.ceil(S / KEY_TILE))
    finite = np.isfinite(scores)
    x = np.where(finite, scores, 0.0)
    row_max = np.max(np.where(finite, scores, -np.inf), axis=-1, keepdims=True) if S else x[..., :1]
    d = np.where(finite, np.abs(x - np.where(np.isfinite(row_max), row_max, 0.0)), 0.0)
    dx = (2.0 * math.sqrt(E) + 4.0) * abs(scale) * (q @ np.swapaxes(k, -1, -2)) + 2.0 * np.abs(x) + 3.0 + d
    w = p * dx * EPS32
    sums = (4.0 * math.sqrt(S) + 12.0 + 2.0 * tiles) * EPS32
    return w @ av + np.sum(w, axis=-1, keepdims=True) * np.abs(out) + sums * (p @ av) + 1e-30


def torch_sdpa(q, k, v, **kw):
    torch = pytest.importorskip("torch")
    t = {name: torch.from_numpy(np.ascontiguousarray(a)) for name, a in kw.items() if isinstance(a, np.ndarray)}
    kw = {**kw, **t}
    with torch.no_grad():
        return torch.nn.functional.scaled_dot_product_attention(
            torch.from_numpy(q), torch.from_numpy(k), torch.from_numpy(v), **kw
        ).numpy()


def randn(rng, *shape):
    return rng.standard_normal(shape, dtype=np.float32)


def check(got, q, k, v, scale, what, torch_got=None, **ref_kw):
    """Against the float64 reference (bound) and torch (twice the bound: both err on their own); rows whose
    keys are all masked must be exact zeros."""
    want, p, scores = ref.attention(q, k, v, scale=scale, **ref_kw)
    bound = attention_bound(q, k, v, scale, p, scores, want)
    assert_within(got, want, bound, what)
    dead = np.broadcast_to(np.sum(p, axis=-1, keepdims=True) == 0.0, got.shape)
    assert np.all(got[dead] == 0.0), f"{what}: fully masked rows must be zeros"
    if torch_got is not None:
        assert_within(got, torch_got.astype(np.float64), 2.0 * bound, f"{what} vs torch")
    return p


# --- against the reference and torch, all masks, every ISA ---------------------------------------------


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("S", LENGTHS)
@pytest.mark.parametrize("L", LENGTHS)
def test_matches_reference_and_torch(isa, L, S, mode, rng):
    E = HEAD_DIMS[(LENGTHS.index(L) + LENGTHS.index(S) + MODES.index(mode)) % len(HEAD_DIMS)]
    B, H = (3 if mode == "key_lengths" else 2), (1 if L * S > 100_000 else 2)
    q, k, v = randn(rng, B, H, L, E), randn(rng, B, H, S, E), randn(rng, B, H, S, E)
    scale = 1.0 / math.sqrt(E)
    out = nan_like((B, H, L, E))
    what = f"{isa} L={L} S={S} E={E} {mode}"
    if mode == "none":
        got = ops.scaled_dot_product_attention(q, k, v, out=out)
        check(got, q, k, v, scale, what, torch_sdpa(q, k, v))
    elif mode == "causal":  # torch's is_causal: top-left aligned
        got = ops.scaled_dot_product_attention(q, k, v, is_causal=True, out=out)
        check(got, q, k, v, scale, what, torch_sdpa(q, k, v, is_causal=True), causal=True)
    elif mode == "causal_kv":  # bottom-right aligned (a KV-cache step); L > S leaves the first rows empty
        got = _core.attention(q, k, v, scale, True, S - L, None, None, out)
        allowed = np.tril(np.ones((L, S), dtype=bool), S - L)
        check(got, q, k, v, scale, what, torch_sdpa(q, k, v, attn_mask=allowed), causal=True, causal_offset=S - L)
    elif mode == "float_mask":  # [H, L, S] broadcast over B; row 0 fully masked, row 1 all but one key
        mask = randn(rng, H, L, S) * 2.0
        mask[rng.random(mask.shape) < 0.2] = -np.inf
        mask[:, 0] = -np.inf
        if L > 1:
            mask[:, 1] = -np.inf
            mask[:, 1, S - 1] = 0.5
        got = ops.scaled_dot_product_attention(q, k, v, attn_mask=mask, scale=0.3, out=out)
        check(got, q, k, v, 0.3, what, torch_sdpa(q, k, v, attn_mask=mask, scale=0.3), mask=mask)
        if L > 1:  # one key with probability exactly 1: the output row is that value row, bit for bit
            assert np.array_equal(got[:, :, 1], v[:, :, S - 1])
    elif mode == "bool_mask":  # [B, 1, L, S]; last row fully masked, first row a single key
        mask = rng.random((B, 1, L, S)) < 0.7
        mask[:, :, -1] = False
        if L > 1:
            mask[:, :, 0] = False
            mask[:, :, 0, rng.integers(S)] = True
        got = ops.scaled_dot_product_attention(q, k, v, attn_mask=mask, out=out)
        check(got, q, k, v, scale, what, torch_sdpa(q, k, v, attn_mask=mask), mask=mask)
    else:  # key padding: full, a single key, and a random length (0 possible: all rows zeros)
        lengths = np.array([S, 1, rng.integers(0, S + 1)], dtype=np.int64)
        got = _core.attention(q, k, v, scale, False, 0, lengths, None, out)
        allowed = np.arange(S)[None, None, None, :] < lengths[:, None, None, None]
        check(got, q, k, v, scale, what, torch_sdpa(q, k, v, attn_mask=allowed), key_lengths=lengths)
    assert got is out


def test_all_masks_combined(isa, rng):
    """Causal (with an offset), key lengths and an additive mask at once, broadcast from [L, S]."""
    B, H, L, S, E = 3, 2, 70, 300, 24
    q, k, v = randn(rng, B, H, L, E), randn(rng, B, H, S, E), randn(rng, B, H, S, E)
    mask = randn(rng, L, S)
    mask[rng.random(mask.shape) < 0.3] = -np.inf
    lengths = np.array([300, 129, 5], dtype=np.int64)
    got = _core.attention(q, k, v, 0.2, True, 200, lengths, np.broadcast_to(mask, (B, H, L, S)), None)
    check(got, q, k, v, 0.2, isa, causal=True, causal_offset=200, key_lengths=lengths, mask=mask)


@pytest.mark.parametrize("E, Ev", [(8, 3), (24, 64), (64, 33), (80, 80)])
def test_value_dim_differs(isa, E, Ev, rng):
    B, H, L, S = 2, 3, 50, 200
    q, k, v = randn(rng, B, H, L, E), randn(rng, B, H, S, E), randn(rng, B, H, S, Ev)
    got = ops.scaled_dot_product_attention(q, k, v, is_causal=True)
    assert got.shape == (B, H, L, Ev)
    check(got, q, k, v, 1 / math.sqrt(E), f"{isa} E={E} Ev={Ev}", torch_sdpa(q, k, v, is_causal=True), causal=True)


@pytest.mark.parametrize(
    "mask_shape",
    [(7, 300), (1, 300), (300,), (3, 1, 300), (2, 1, 1, 300), (2, 3, 7, 1), (1, 1, 1), (4, 2, 3, 7, 300)],
)
@pytest.mark.parametrize("dtype", [np.bool_, np.float32, np.float64])
def test_mask_broadcasting_and_leading_dims(mask_shape, dtype, rng):
    """Masks broadcast to [..., L, S] from any shape torch accepts, with three leading dimensions."""
    lead, L, S, E = (4, 2, 3), 7, 300, 16
    q, k, v = randn(rng, *lead, L, E), randn(rng, *lead, S, E), randn(rng, *lead, S, E)
    if dtype is np.bool_:
        mask = rng.random(mask_shape) < 0.6
    else:
        mask = (rng.standard_normal(mask_shape) * 3).astype(dtype)
    got = ops.scaled_dot_product_attention(q, k, v, attn_mask=mask)
    assert got.shape == lead + (L, E)
    if dtype is np.float64:  # converted once to float32 (torch insists on the query's dtype itself)
        mask = mask.astype(np.float32)
    check(got, q, k, v, 1 / math.sqrt(E), str(mask_shape), torch_sdpa(q, k, v, attn_mask=mask), mask=mask)


@pytest.mark.parametrize("shape", [(5, 8), (3, 5, 8)])
def test_few_leading_dims(shape, rng):
    q, k, v = randn(rng, *shape), randn(rng, *shape[:-2], 9, 8), randn(rng, *shape[:-2], 9, 4)
    got = ops.scaled_dot_product_attention(q, k, v, is_causal=True)
    check(got, q, k, v, 1 / math.sqrt(8), str(shape), torch_sdpa(q, k, v, is_causal=True), causal=True)


def test_online_softmax_rescales_over_many_tiles(isa, rng):
    """Row 0's scores grow along the keys, so its running max rises in every tile (every step rescales);
    row 1's fall; row 4's are all equal. Scores reach +-3000 / +-30000, which overflow a softmax
    without the max subtraction."""
    L, S, E = 5, 1000, 8
    q = np.zeros((1, 1, L, E), np.float32)
    q[0, 0, :, 0] = [1.0, -1.0, 1e-3, -1e-3, 0.0]
    k = randn(rng, 1, 1, S, E)
    k[..., 0] = np.linspace(-3000, 3000, S, dtype=np.float32)
    v = randn(rng, 1, 1, S, E)
    for scale in (1.0, 10.0, 0.01):
        got = _core.attention(q, k, v, scale, False, 0, None, None, None)
        check(got, q, k, v, scale, f"{isa} scale={scale}")


def test_nan_propagates_to_its_row(isa, rng):
    q, k, v = randn(rng, 1, 1, 4, 8), randn(rng, 1, 1, 300, 8), randn(rng, 1, 1, 300, 8)
    q[0, 0, 2, 3] = np.nan
    got = ops.scaled_dot_product_attention(q, k, v)
    assert np.all(np.isnan(got[0, 0, 2])) and not np.any(np.isnan(got[0, 0, [0, 1, 3]]))


def test_empty_shapes():
    q = np.zeros((2, 0, 5, 8), np.float32)
    assert ops.scaled_dot_product_attention(q, q, q).shape == (2, 0, 5, 8)
    q, kv = np.ones((2, 3, 4, 8), np.float32), np.ones((2, 3, 0, 8), np.float32)
    assert np.array_equal(ops.scaled_dot_product_attention(q, kv, kv), np.zeros((2, 3, 4, 8), np.float32))
    assert ops.scaled_dot_product_attention(np.ones((3, 0, 8), np.float32), kv[0], kv[0]).shape == (3, 0, 8)


# --- determinism, bit for bit ---------------------------------------------------------------------------


@pytest.mark.parametrize("L, S", [(1, 1000), (257, 1000), (1000, 257), (100, 100)])
def test_thread_count_does_not_change_bits(isa, L, S, rng):
    B, H, E = 2, 2, 64
    q, k, v = randn(rng, B, H, L, E), randn(rng, B, H, S, E), randn(rng, B, H, S, E)
    mask = randn(rng, B, 1, L, S)
    lengths = np.array([S, S // 2 + 1], dtype=np.int64)
    results = []
    for n in (1, 2):
        with use_threads(n):
            results.append(
                [
                    ops.scaled_dot_product_attention(q, k, v),
                    ops.scaled_dot_product_attention(q, k, v, is_causal=True),
                    _core.attention(q, k, v, 0.125, True, S - L, lengths, np.broadcast_to(mask, (B, H, L, S)), None),
                ]
            )
    for a, b in zip(*results):
        assert np.array_equal(a, b)


@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("padding", ["key_lengths", "float_mask", "bool_mask"])
def test_sequence_alone_equals_padded_batch(isa, causal, padding, rng):
    """Self-attention over sequences of lengths 1..1000 padded to 1000: each sequence's rows equal the
    same sequence run alone (k_len = its length, no mask), bit for bit, whether padding is given as key
    lengths or as a mask (the tiles start at key 0 with a fixed size, and masked keys add exact zeros)."""
    lengths = [1000, 1, 127, 128, 129, 300]
    T, H, E = max(lengths), 2, 24
    x = [(randn(rng, H, n, E), randn(rng, H, n, E), randn(rng, H, n, E)) for n in lengths]
    q, k, v = (np.zeros((len(lengths), H, T, E), np.float32) for _ in range(3))
    for b, (n, xs) in enumerate(zip(lengths, x)):
        for buf, a in zip((q, k, v), xs):
            buf[b, :, :n] = a
            buf[b, :, n:] = 1e3 * randn(rng, H, T - n, E)  # padding garbage must not matter
    key_lengths = np.array(lengths, dtype=np.int64)
    allowed = np.arange(T)[None, None, None, :] < key_lengths[:, None, None, None]
    if padding == "key_lengths":
        padded = _core.attention(q, k, v, 0.2, causal, 0, key_lengths, None, None)
    elif padding == "float_mask":
        mask = np.broadcast_to(np.where(allowed, np.float32(0), np.float32(-np.inf)), (len(lengths), H, T, T))
        padded = _core.attention(q, k, v, 0.2, causal, 0, None, mask, None)
    else:
        if causal:
            allowed = allowed & np.tril(np.ones((T, T), dtype=bool))
        padded = ops.scaled_dot_product_attention(q, k, v, attn_mask=allowed, scale=0.2)
    for b, (n, (qa, ka, va)) in enumerate(zip(lengths, x)):
        alone = _core.attention(qa[None], ka[None], va[None], 0.2, causal, 0, None, None, None)
        assert np.array_equal(padded[b, :, :n], alone[0]), f"length {n}"


def test_row_does_not_depend_on_its_query_block(isa, rng):
    """Any run of query rows, computed on its own (causal offset shifted to match), gives the same bits
    as inside the full call, whatever query blocks either call cuts."""
    B, H, L, S, E = 1, 2, 300, 400, 80
    q, k, v = randn(rng, B, H, L, E), randn(rng, B, H, S, E), randn(rng, B, H, S, E)
    mask = randn(rng, B, H, L, S)
    full = _core.attention(q, k, v, 0.1, True, 100, None, mask, None)
    for i0, i1 in [(0, 1), (5, 6), (63, 130), (133, 300), (299, 300), (17, 271)]:
        part = _core.attention(q[:, :, i0:i1], k, v, 0.1, True, 100 + i0, None, mask[:, :, i0:i1], None)
        assert np.array_equal(part, full[:, :, i0:i1]), (i0, i1)


def test_fused_qkv_strided_views(isa, rng):
    """Q, K, V read in place from a fused projection [B, T, 3, H, Dh] and out written into [B, T, H, Dh]
    (the multi-head layer's layout): same bits as contiguous copies, and correct."""
    B, T, H, Dh = 3, 150, 4, 24
    qkv = randn(rng, B, T, 3, H, Dh)
    q, k, v = (qkv[:, :, i].transpose(0, 2, 1, 3) for i in range(3))  # [B, H, T, Dh] views
    assert not q.flags.c_contiguous and q.strides[2] == 3 * H * Dh * 4
    out = np.full((B, T, H, Dh), np.nan, np.float32)
    lengths = np.array([150, 70, 1], dtype=np.int64)
    got = _core.attention(q, k, v, 0.3, True, 0, lengths, None, out.transpose(0, 2, 1, 3))
    assert np.shares_memory(got, out)
    contiguous = _core.attention(*(np.ascontiguousarray(a) for a in (q, k, v)), 0.3, True, 0, lengths, None, None)
    assert np.array_equal(out.transpose(0, 2, 1, 3), contiguous)
    check(contiguous, q, k, v, 0.3, isa, causal=True, key_lengths=lengths)


def test_broadcast_mask_is_read_in_place(rng):
    """A mask broadcast with zero strides gives the same bits as the materialised mask."""
    B, H, L, S, E = 2, 3, 20, 140, 8
    q, k, v = randn(rng, B, H, L, E), randn(rng, B, H, S, E), randn(rng, B, H, S, E)
    mask = randn(rng, 1, 1, L, S)
    view = np.broadcast_to(mask, (B, H, L, S))
    assert view.strides[:2] == (0, 0)
    a = _core.attention(q, k, v, 0.5, False, 0, None, view, None)
    b = _core.attention(q, k, v, 0.5, False, 0, None, np.ascontiguousarray(view), None)
    assert np.array_equal(a, b)


@HYPOTHESIS
@given(
    L=st.integers(1, 40),
    extra=st.integers(0, 300),
    E=st.sampled_from(HEAD_DIMS),
    i=st.integers(0, 10**6),
    offset=st.integers(-5, 200),
    seed=st.integers(0, 2**32 - 1),
)
def test_causal_output_ignores_the_future(isa, L, extra, E, i, offset, seed):
    """Changing the keys and values after position i + offset leaves output rows <= i unchanged, bit for bit."""
    rng = np.random.default_rng(seed)
    S = L + extra
    i %= L
    q, k, v = randn(rng, 1, 2, L, E), randn(rng, 1, 2, S, E), randn(rng, 1, 2, S, E)
    before = _core.attention(q, k, v, 0.25, True, offset, None, None, None)
    first_future = max(0, i + offset + 1)
    k2, v2 = k.copy(), v.copy()
    k2[:, :, first_future:] = 100 * randn(rng, 1, 2, S - min(S, first_future), E)
    # Finite: a masked key inside a visited tile still meets its probability 0 in an FMA, and 0 * inf is
    # NaN (as in torch's matmul); keys past key_lengths are never read (test_sequence_alone_...).
    v2[:, :, first_future:] = 1e6 * randn(rng, 1, 2, S - min(S, first_future), E)
    after = _core.attention(q, k2, v2, 0.25, True, offset, None, None, None)
    assert np.array_equal(before[:, :, : i + 1], after[:, :, : i + 1])


# --- argument errors -------------------------------------------------------------------------------------


def test_errors_name_the_argument():
    q = np.zeros((2, 3, 5, 8), np.float32)
    sdpa = ops.scaled_dot_product_attention
    cases = [
        (ValueError, "k, v:", lambda: sdpa(q, q[:, :2], q)),
        (ValueError, "k:", lambda: sdpa(q, q[..., :4], q)),
        (ValueError, "v:", lambda: sdpa(q, q, q[..., :4, :])),
        (ValueError, "q:", lambda: sdpa(q[0, 0, 0], q, q)),
        (ValueError, "attn_mask:", lambda: sdpa(q, q, q, attn_mask=np.ones((4, 5), bool))),
        (ValueError, "attn_mask:", lambda: sdpa(q, q, q, attn_mask=np.ones((5, 5), bool), is_causal=True)),
        (TypeError, "attn_mask:", lambda: sdpa(q, q, q, attn_mask=np.ones((5, 5), np.int64))),
        (TypeError, "scale:", lambda: sdpa(q, q, q, scale="big")),
        (ValueError, "scale:", lambda: sdpa(q, q, q, scale=np.inf)),
        (TypeError, "q:", lambda: sdpa(q.astype(complex), q, q)),
        (ValueError, "out:", lambda: sdpa(q, q, q, out=np.zeros((2, 3, 5, 7), np.float32))),
        (TypeError, "out:", lambda: sdpa(q, q, q, out=np.zeros((2, 3, 5, 8)))),
        (ValueError, "out:", lambda: sdpa(q, q, q, out=q)),
        (ValueError, "key_lengths:", lambda: _core.attention(q, q, q, 1.0, False, 0, np.array([5, 6]), None, None)),
        (ValueError, "key_lengths:", lambda: _core.attention(q, q, q, 1.0, False, 0, np.array([1]), None, None)),
        (ValueError, "mask:", lambda: _core.attention(q, q, q, 1.0, False, 0, None, q[..., :4], None)),
        (ValueError, "q:", lambda: _core.attention(q[:, :, :, ::2], q[..., :4], q, 1.0, False, 0, None, None, None)),
        (ValueError, "q:", lambda: _core.attention(q[0], q[0], q[0], 1.0, False, 0, None, None, None)),
        (ValueError, "out:", lambda: _core.attention(q, q, q, 1.0, False, 0, None, None, q[:1].copy())),
    ]
    for exc, name, call in cases:
        with pytest.raises(exc, match=name):
            call()
    with pytest.raises(TypeError):  # float64 views are not converted silently by the low-level binding
        _core.attention(q.astype(np.float64), q, q, 1.0, False, 0, None, None, None)

