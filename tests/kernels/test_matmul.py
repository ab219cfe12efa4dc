"""matmul / pack_weight / batched_matmul against the float64 reference, on every ISA path.

The edge grid follows the active table's blocking (XNNPACK's practice): m, n, k at 1, tile-1, tile,
tile+1, 2 tile+1 with the register tile (mr x nr), k around the K block (kc), m around the M block (mc,
the packed-A path), plus a few odd and large sizes. Output buffers start as NaN so that an element the
kernels forget to write fails. The tolerance is numerics.gemm_bound (see there for the formula).

The bitwise tests check the design's guarantees (ops/gemm.h): every element is one FMA chain over K in
ascending order, so results do not depend on the thread count, on the other rows of A, or on whether B
was packed once, packed per call, or read in place.
"""

from __future__ import annotations

import numpy as np
import pytest

import cpuformer
from cpuformer import ops
from numerics import (
    activation_bound,
    assert_within,
    blocking,
    gemm_bound,
    nan_like,
    use_isa,
    use_threads,
)
from reference import ops_ref as ref

ISAS = cpuformer.supported_isas()
ACTIVATIONS = [None, "relu", "gelu", "gelu_tanh", "silu"]


def _edges(tile: int) -> list:
    return sorted({v for v in (1, tile - 1, tile, tile + 1, 2 * tile + 1) if v >= 1})


def _m_values(g: dict) -> list:
    # Register-tile edges (in-place A for small M, cut into row tiles of near-equal heights: with mr 14,
    # 15 rows run as 7 + 8 and 31 as 10 + 10 + 11), then the packed-A path: 65 is the first M that packs A
    # (kSmallM = 64), mc +- 1 straddles the M block.
    shared = 2 * g["mr"] + g["mr"] // 4
    return sorted(set(_edges(g["mr"])) | {shared, 64, 65, g["mc"] - 1, g["mc"] + 1})


def _grid_cases():
    cases = []
    for isa in ISAS:
        g = blocking(isa)
        for m in _m_values(g):
            cases.append(pytest.param(isa, m, id=f"{isa}-m{m}"))
    return cases


def _operands(rng, m, n, k, trans_b, dtype=np.float32):
    a = rng.uniform(-1.0, 1.0, size=(m, k)).astype(dtype)
    b_shape = (n, k) if trans_b else (k, n)
    b = rng.uniform(-1.0, 1.0, size=b_shape).astype(dtype)
    return a, b


@pytest.mark.parametrize("trans_b", [False, True], ids=["b_kn", "b_nk"])
@pytest.mark.parametrize("isa,m", _grid_cases(), indirect=["isa"])
def test_edge_grid(isa, m, trans_b, rng):
    """Every (n, k) of the edge grid for this m: raw B and PackedWeight, both within the bound and
    bitwise equal to each other."""
    g = cpuformer.build_info()["gemm_blocking"]
    kc = g["kc"]
    for n in _edges(g["nr"]):
        for k in sorted({1, 3, kc - 1, kc, kc + 1, 2 * kc + 1}):
            a, b = _operands(rng, m, n, k, trans_b)
            what = f"isa={isa} m={m} n={n} k={k} trans_b={trans_b}"
            out = nan_like((m, n))
            got = ops.matmul(a, b, trans_b=trans_b, out=out)
            assert got is out
            assert_within(got, ref.matmul(a, b, trans_b=trans_b), gemm_bound(a, b, trans_b), what)
            packed = ops.matmul(a, ops.pack_weight(b, trans_b=trans_b), out=nan_like((m, n)))
            assert np.array_equal(packed, got), f"{what}: packed path differs from raw path"


@pytest.mark.parametrize("trans_b", [False, True], ids=["b_kn", "b_nk"])
@pytest.mark.parametrize(
    "m,n,k",
    [(3, 17, 64), (17, 255, 3), (64, 3, 1000), (255, 64, 17), (1000, 1025, 255), (3, 1000, 1025), (1025, 17, 600)],
)
def test_odd_and_large_sizes(isa, m, n, k, trans_b, rng):
    a, b = _operands(rng, m, n, k, trans_b)
    got = ops.matmul(a, b, trans_b=trans_b, out=nan_like((m, n)))
    assert_within(got, ref.matmul(a, b, trans_b=trans_b), gemm_bound(a, b, trans_b), f"{isa} {m}x{n}x{k}")


def _outer_block_cases():
    # The outer loops of the packed-A path: a B wider than 4 column blocks (nc panels each) switches to
    # A chunks of mb rows; M crosses one chunk, K crosses a K block, N ends in a partial panel.
    cases = []
    for isa in ISAS:
        g = blocking(isa)
        n = 4 * g["nc"] * g["nr"] + g["nr"] + 3
        cases.append(pytest.param(isa, g["mb"] + g["mr"] + 1, g["kc"] + 5, n, id=f"{isa}-wide"))
        cases.append(pytest.param(isa, 2 * g["mc"] + 3, g["kc"] + 5, 2 * g["nc"] * g["nr"] + 1, id=f"{isa}-narrow"))
    return cases


@pytest.mark.parametrize("isa,m,k,n", _outer_block_cases(), indirect=["isa"])
@pytest.mark.parametrize("trans_b", [False, True])
def test_outer_blocks(isa, m, k, n, trans_b, rng):
    # Raw B too: it is packed per call, row-major B in strips of rows × groups of panels (N here spans
    # several groups and ends in a partial panel; K crosses a block and ends in a short strip).
    a, b = _operands(rng, m, n, k, trans_b)
    want = ref.matmul(a, b, trans_b=trans_b)
    bound = gemm_bound(a, b, trans_b)
    for name, weight in (("packed", ops.pack_weight(b, trans_b=trans_b)), ("raw", b)):
        for threads in (1, 2):
            with use_threads(threads):
                got = ops.matmul(a, weight, trans_b=trans_b and name == "raw", out=nan_like((m, n)))
            assert_within(got, want, bound, f"{isa} {name} {m}x{k}x{n} trans_b={trans_b} threads={threads}")


@pytest.mark.parametrize("packed", [False, True], ids=["raw", "packed"])
@pytest.mark.parametrize("trans_b", [False, True], ids=["b_kn", "b_nk"])
@pytest.mark.parametrize("activation", ACTIVATIONS)
def test_bias_and_fused_activation(isa, activation, trans_b, packed, rng):
    """bias + activation in the GEMM epilogue, on an edge tile (small M, in-place A) and a packed-A
    shape, with K spanning two K blocks. Pre-activations reach about +-15, covering every regime."""
    g = cpuformer.build_info()["gemm_blocking"]
    n, k = 2 * g["nr"] + 1, g["kc"] + 7
    for m in (g["mr"] + 1, 2 * g["mc"] // 3 + 70):
        a, b = _operands(rng, m, n, k, trans_b)
        bias = rng.uniform(-3.0, 3.0, size=n).astype(np.float32)
        w = ops.pack_weight(b, trans_b=trans_b) if packed else b
        got = ops.matmul(a, w, bias=bias, trans_b=trans_b, activation=activation, out=nan_like((m, n)))
        pre = ref.matmul(a, b, bias=bias, trans_b=trans_b)
        want = ref.ACTIVATIONS[activation](pre)
        bound = activation_bound(gemm_bound(a, b, trans_b, bias), pre, want)
        assert_within(got, want, bound, f"{isa} act={activation} m={m} packed={packed}")
        # The fused epilogue is the same kernel as the standalone op: equal bitwise to
        # act(matmul(a, b) + bias) done in two calls with the bias folded in first.
        two_step = ops.matmul(a, w, bias=bias, trans_b=trans_b)
        if activation is not None:
            two_step = {
                "relu": ops.relu,
                "gelu": ops.gelu,
                "gelu_tanh": lambda x: ops.gelu(x, approximate="tanh"),
                "silu": ops.silu,
            }[activation](two_step)
        assert np.array_equal(got, two_step), f"{isa} act={activation}: fused epilogue differs from two calls"


@pytest.mark.parametrize("packed", [False, True], ids=["raw", "packed"])
def test_leading_batch_dims(isa, packed, rng):
    k, n = 40, 33
    for m in (5, 30):  # [2, 3, 5, K] flattens to 30 rows (in-place A); [2, 3, 30, K] to 180 (packed A)
        a = rng.standard_normal((2, 3, m, k)).astype(np.float32)
        b = rng.standard_normal((k, n)).astype(np.float32)
        bias = rng.standard_normal(n).astype(np.float32)
        w = ops.pack_weight(b) if packed else b
        got = ops.matmul(a, w, bias=bias)
        assert got.shape == (2, 3, m, n)
        assert_within(got, ref.matmul(a, b, bias=bias), gemm_bound(a, b, bias=bias), f"{isa} m={m}")
        flat = ops.matmul(a.reshape(-1, k), w, bias=bias)
        assert np.array_equal(got.reshape(-1, n), flat)
        out = nan_like((2, 3, m, n))
        assert ops.matmul(a, w, bias=bias, out=out) is out
        assert np.array_equal(out, got)


def test_non_contiguous_inputs(isa, rng):
    """Slices and transposes are converted once; the result equals that of contiguous copies."""
    big_a = rng.standard_normal((70, 90)).astype(np.float32)
    big_b = rng.standard_normal((90, 60)).astype(np.float32)
    a = big_a[::2, 5:85]  # (35, 80), strided rows
    b = big_b[5:85, ::3]  # (80, 20), strided columns
    assert not a.flags.c_contiguous and not b.flags.c_contiguous
    want = ops.matmul(np.ascontiguousarray(a), np.ascontiguousarray(b))
    assert np.array_equal(ops.matmul(a, b), want)
    assert_within(want, ref.matmul(a, b), gemm_bound(a, b), isa)
    # b.T is an F-ordered [N, K]: with trans_b it is the same logical B.
    bt = np.asfortranarray(b).T
    assert np.array_equal(ops.matmul(a, bt, trans_b=True), want)
    assert np.array_equal(ops.matmul(a, ops.pack_weight(bt, trans_b=True)), want)
    # A transposed view as A.
    at = np.ascontiguousarray(a.T).T
    assert not at.flags.c_contiguous
    assert np.array_equal(ops.matmul(at, b), want)


@pytest.mark.parametrize("dtype", [np.float64, np.float16, np.int32, np.int8, np.uint8, np.bool_])
def test_input_dtypes(isa, dtype, rng):
    """Other real dtypes are converted to float32 once: same result as converting first."""
    if dtype == np.bool_:
        a = rng.random((9, 21)) > 0.5
        b = rng.random((21, 13)) > 0.5
    elif np.issubdtype(dtype, np.integer):
        a = rng.integers(0, 100, size=(9, 21)).astype(dtype)
        b = rng.integers(0, 100, size=(21, 13)).astype(dtype)
    else:
        a = rng.standard_normal((9, 21)).astype(dtype)
        b = rng.standard_normal((21, 13)).astype(dtype)
    bias = np.arange(13, dtype=dtype) if dtype != np.bool_ else np.ones(13, bool)
    got = ops.matmul(a, b, bias=bias)
    assert got.dtype == np.float32
    want = ops.matmul(a.astype(np.float32), b.astype(np.float32), bias=bias.astype(np.float32))
    assert np.array_equal(got, want)
    assert np.array_equal(ops.matmul(a, ops.pack_weight(b), bias=bias), want)
    if np.issubdtype(dtype, np.integer) or dtype == np.bool_:  # small integers: exact in float32
        assert np.array_equal(got, a.astype(np.int64) @ b.astype(np.int64) + bias.astype(np.int64))


@pytest.mark.parametrize("packed", [False, True], ids=["raw", "packed"])
@pytest.mark.parametrize("activation", ACTIVATIONS)
def test_k_zero_gives_activation_of_bias(isa, activation, packed):
    for m in (3, 100):
        a = np.ones((m, 0), np.float32)
        b = np.ones((0, 7), np.float32)
        w = ops.pack_weight(b) if packed else b
        got = ops.matmul(a, w, out=nan_like((m, 7)), activation=activation)
        assert np.array_equal(got, np.zeros((m, 7), np.float32))
        bias = np.linspace(-2, 2, 7).astype(np.float32)
        got = ops.matmul(a, w, bias=bias, activation=activation, out=nan_like((m, 7)))
        want = ref.ACTIVATIONS[activation](np.broadcast_to(bias, (m, 7)))
        assert_within(got, want, activation_bound(0.0, np.broadcast_to(bias, (m, 7)), want), f"{isa} K=0")
    # trans_b: [N, 0]
    got = ops.matmul(np.ones((4, 0), np.float32), np.ones((7, 0), np.float32), trans_b=True, out=nan_like((4, 7)))
    assert np.array_equal(got, np.zeros((4, 7), np.float32))


@pytest.mark.parametrize("packed", [False, True], ids=["raw", "packed"])
@pytest.mark.parametrize("trans_b", [False, True], ids=["b_kn", "b_nk"])
def test_empty_m_or_n(isa, trans_b, packed):
    for m, n, k in [(0, 5, 3), (4, 0, 3), (0, 0, 3), (0, 5, 0)]:
        a = np.ones((m, k), np.float32)
        b = np.ones((n, k) if trans_b else (k, n), np.float32)
        w = ops.pack_weight(b, trans_b=trans_b) if packed else b
        got = ops.matmul(a, w, trans_b=trans_b, bias=np.ones(n, np.float32), activation="relu")
        assert got.shape == (m, n) and got.dtype == np.float32
        if k > 0:  # K = 0 with leading dimensions: see test_empty_last_dim_with_leading_dims
            got = ops.matmul(np.ones((2, m, k), np.float32), w, trans_b=trans_b)
            assert got.shape == (2, m, n)


# Library bug: ops.py flattens with x.reshape(-1, x.shape[-1]) (batched_matmul: a.reshape(-1, m, k)),
# which NumPy cannot do for an empty array whose trailing dimensions contain a 0 ("cannot reshape array
# of size 0 into shape (0)"); expected: an empty result, or zeros when K = 0.
_RESHAPE_BUG = "bug: ops.py reshape(-1, ...) fails on empty arrays with a 0 in the trailing dims"


@pytest.mark.parametrize(
    "case",
    [
        "matmul_k0_lead",
        "matmul_packed_k0_lead",
        "matmul_m0_k0_lead",
        "batched_k0",
        "batched_m0",
        "batched_n0",
        "batched_n0_trans",
    ],
)
def test_empty_last_dim_with_leading_dims(case):
    """Expected: shapes follow the usual rules; with K = 0 the product is zeros."""
    f32 = np.float32
    if case == "matmul_k0_lead":
        got, want = ops.matmul(np.ones((2, 3, 0), f32), np.ones((0, 4), f32)), np.zeros((2, 3, 4), f32)
    elif case == "matmul_packed_k0_lead":
        got = ops.matmul(np.ones((2, 3, 0), f32), ops.pack_weight(np.ones((0, 4), f32)))
        want = np.zeros((2, 3, 4), f32)
    elif case == "matmul_m0_k0_lead":
        got, want = ops.matmul(np.ones((2, 0, 0), f32), np.ones((0, 4), f32)), np.zeros((2, 0, 4), f32)
    elif case == "batched_k0":
        got = ops.batched_matmul(np.ones((2, 3, 0), f32), np.ones((2, 0, 4), f32))
        want = np.zeros((2, 3, 4), f32)
    elif case == "batched_m0":
        got = ops.batched_matmul(np.ones((2, 0, 3), f32), np.ones((2, 3, 4), f32))
        want = np.zeros((2, 0, 4), f32)
    elif case == "batched_n0":
        got = ops.batched_matmul(np.ones((2, 3, 4), f32), np.ones((2, 4, 0), f32))
        want = np.zeros((2, 3, 0), f32)
    else:
        got = ops.batched_matmul(np.ones((2, 3, 4), f32), np.ones((2, 0, 4), f32), trans_b=True)
        want = np.zeros((2, 3, 0), f32)
    assert got.shape == want.shape and np.array_equal(got, want)


@pytest.mark.parametrize("trans_b", [False, True], ids=["b_kn", "b_nk"])
@pytest.mark.parametrize("lead,m,k,n", [((2, 3), 5, 7, 9), ((4,), 17, 33, 40), ((1,), 70, 20, 35), ((3, 1), 1, 300, 2)])
def test_batched_matmul(isa, lead, m, k, n, trans_b, rng):
    a = rng.standard_normal(lead + (m, k)).astype(np.float32)
    b = rng.standard_normal(lead + ((n, k) if trans_b else (k, n))).astype(np.float32)
    out = nan_like(lead + (m, n))
    got = ops.batched_matmul(a, b, trans_b=trans_b, out=out)
    assert got is out
    for idx in np.ndindex(*lead):
        want = ref.matmul(a[idx], b[idx], trans_b=trans_b)
        assert_within(got[idx], want, gemm_bound(a[idx], b[idx], trans_b), f"{isa} batch {idx}")
        # One product of the batch equals the same product alone.
        assert np.array_equal(got[idx], ops.matmul(a[idx], b[idx], trans_b=trans_b))


def test_batched_matmul_empty(isa):
    # (Empty M, N or K: see test_empty_last_dim_with_leading_dims.)
    assert ops.batched_matmul(np.ones((0, 2, 3), np.float32), np.ones((0, 3, 4), np.float32)).shape == (0, 2, 4)
    got = ops.batched_matmul(np.ones((2, 0, 3, 4), np.float32), np.ones((2, 0, 4, 5), np.float32))
    assert got.shape == (2, 0, 3, 5)


# --- bitwise guarantees -------------------------------------------------------------------------------


@pytest.mark.parametrize("m,k,n", [(300, 700, 512), (8, 3000, 512)])
def test_thread_count_does_not_change_results(isa, m, k, n, rng):
    a = rng.standard_normal((m, k)).astype(np.float32)
    b = rng.standard_normal((k, n)).astype(np.float32)
    bt = np.ascontiguousarray(b.T)
    bias = rng.standard_normal(n).astype(np.float32)
    results = {}
    for t in (1, 2):
        with use_threads(t):
            packed = ops.pack_weight(bt, trans_b=True)
            results[t] = [
                ops.matmul(a, b, bias=bias, activation="gelu"),
                ops.matmul(a, bt, trans_b=True, bias=bias, activation="gelu"),
                ops.matmul(a, packed, bias=bias, activation="gelu"),
            ]
    for name, r1, r2 in zip(["raw", "raw trans_b", "packed"], results[1], results[2]):
        assert np.array_equal(r1, r2), f"{isa} {m}x{k}x{n} {name}: 1 vs 2 threads differ"
    assert np.array_equal(results[1][0], results[1][1]) and np.array_equal(results[1][0], results[1][2])


@pytest.mark.parametrize("m", [1, 2, 3, 4, 5, 17, 40])
@pytest.mark.parametrize("k,n", [(303, 33), (303, 2050), (303, 4100), (2100, 700)])
def test_raw_b_small_m_paths(isa, m, k, n, rng):
    """A raw [K, N] B at small M takes its own paths: rows streamed (M < 4; on two threads each streams
    its own columns, one row only where each thread's columns make 4 KiB of a row), one row against
    groups of panels (on two threads with fewer columns: N = 700 here, with K = 2100 making enough work
    for the second thread), or in K blocks shorter than a packed weight's (M >= 4): read in place by a
    single row tile (M <= mr), packed on the fly panel by panel for several (M = 17 and 40 here). K = 303
    crosses those blocks and leaves 3 rows of B past the streaming path's groups of 4; N = 2050 and 700
    end in a partial panel (the streaming chunks: test_rows_stream_alignment_and_chunks). Against the
    reference, and bitwise equal to the packed-weight path at 1 and 2 threads, with bias and ReLU (fused
    in the micro-kernel) and GELU."""
    a = rng.standard_normal((m, k)).astype(np.float32)
    b = rng.standard_normal((k, n)).astype(np.float32)
    bias = rng.standard_normal(n).astype(np.float32)
    packed = ops.pack_weight(b)
    for act in (None, "relu", "gelu"):
        pre = a.astype(np.float64) @ b.astype(np.float64) + bias
        want = ref.ACTIVATIONS[act](pre)
        for t in (1, 2):
            with use_threads(t):
                got = ops.matmul(a, b, bias=bias, activation=act, out=nan_like((m, n)))
                via_packed = ops.matmul(a, packed, bias=bias, activation=act)
            what = f"{isa} m={m} n={n} act={act} threads={t}"
            assert_within(got, want, activation_bound(gemm_bound(a, b, False, bias), pre, want), what)
            assert np.array_equal(got, via_packed), f"{what}: raw and packed paths differ"


def _at_float_offset(x, floats):
    """A C-contiguous float32 copy of x whose data starts `floats` floats past a 64-byte boundary."""
    buf = np.empty(x.size + 32, np.float32)
    start = (-(buf.ctypes.data // 4)) % 16 + floats
    y = buf[start : start + x.size].reshape(x.shape)
    y[...] = x
    assert y.ctypes.data % 64 == 4 * floats and y.flags.c_contiguous
    return y


@pytest.mark.parametrize("m", [1, 2, 3])
@pytest.mark.parametrize("offset", [0, 1, 4, 15])
@pytest.mark.parametrize("n_past", [48, 37])
def test_rows_stream_alignment_and_chunks(isa, m, offset, n_past, rng):
    """Rows streamed against a raw B (M < 4) align B's vector loads where all of B's rows share one
    alignment (N a multiple of 16: n_past = 48), running the columns before the first boundary first,
    masked, and accumulate C in chunks of 32768 / M columns (whole cache lines). B starts 0, 1, 4 or 15
    floats past a 64-byte boundary; N crosses the chunk by n_past columns; K = 37 leaves one row past the
    groups of 4. Within the bound, and bitwise equal to the packed-weight path, at 1 and 2 threads."""
    chunk = 32768 // m // 64 * 64
    k, n = 37, chunk + n_past
    a = rng.standard_normal((m, k)).astype(np.float32)
    b = _at_float_offset(rng.standard_normal((k, n)).astype(np.float32), offset)
    bias = rng.standard_normal(n).astype(np.float32)
    packed = ops.pack_weight(b)
    pre = a.astype(np.float64) @ b.astype(np.float64) + bias
    bound = gemm_bound(a, b, False, bias)
    for t in (1, 2):
        with use_threads(t):
            got = ops.matmul(a, b, bias=bias, out=nan_like((m, n)))
            via_packed = ops.matmul(a, packed, bias=bias)
        what = f"{isa} m={m} n={n} offset={offset} threads={t}"
        assert_within(got, pre, bound, what)
        assert np.array_equal(got, via_packed), f"{what}: raw and packed paths differ"


@pytest.mark.parametrize("m", [1, 2, 3, 4, 5, 6])
def test_few_rows_against_a_packed_weight(isa, m, rng):
    """Up to 5 rows against a packed weight run several panels per pass (1 to 4 of them, by row count),
    in calls of 12 panels, each thread over its own panels. N = 13 panels + 5 columns leaves a partial
    chunk, pass and panel at one and two threads; K crosses the K block. Within the bound, and bitwise
    equal to the same rows inside an 11-row-taller product (row tiles, one panel at a time)."""
    g = blocking(isa)
    k, n = g["kc"] + 7, 13 * g["nr"] + 5
    a = rng.standard_normal((m + 11, k)).astype(np.float32)
    b = rng.standard_normal((k, n)).astype(np.float32)
    bias = rng.standard_normal(n).astype(np.float32)
    packed = ops.pack_weight(b)
    pre = a[:m].astype(np.float64) @ b.astype(np.float64) + bias
    want = ref.ACTIVATIONS["gelu"](pre)
    bound = activation_bound(gemm_bound(a[:m], b, False, bias), pre, want)
    for t in (1, 2):
        with use_threads(t):
            few = ops.matmul(a[:m], packed, bias=bias, activation="gelu", out=nan_like((m, n)))
            taller = ops.matmul(a, packed, bias=bias, activation="gelu")
        what = f"{isa} m={m} threads={t}"
        assert_within(few, want, bound, what)
        assert np.array_equal(few, taller[:m]), f"{what}: rows differ from the same rows in a taller product"


@pytest.mark.parametrize("m", [10, 300])
def test_row_alone_equals_row_in_batch(isa, m, rng, threads):
    """matmul(a[i:i+1], W) == matmul(a, W)[i:i+1] bitwise, for every way of passing W."""
    threads(2)
    k, n = 333, 130
    a = rng.standard_normal((m, k)).astype(np.float32)
    w_nk = rng.standard_normal((n, k)).astype(np.float32)  # torch.nn.Linear layout
    w_kn = np.ascontiguousarray(w_nk.T)
    bias = rng.standard_normal(n).astype(np.float32)
    ways = {
        "packed": (ops.pack_weight(w_nk, trans_b=True), False),
        "raw trans_b": (w_nk, True),
        "raw": (w_kn, False),
    }
    for name, (w, tb) in ways.items():
        full = ops.matmul(a, w, trans_b=tb, bias=bias, activation="silu")
        for i in sorted({0, 1, m // 2, m - 1}):
            alone = ops.matmul(a[i : i + 1], w, trans_b=tb, bias=bias, activation="silu")
            assert np.array_equal(alone, full[i : i + 1]), f"{isa} {name}: row {i} of {m} differs alone"
        sub = ops.matmul(a[2:9], w, trans_b=tb, bias=bias, activation="silu")
        assert np.array_equal(sub, full[2:9]), f"{isa} {name}: rows 2:9 differ"


def test_packed_weight_keeps_the_isa_that_packed_it(rng):
    a = rng.standard_normal((37, 70)).astype(np.float32)
    w = rng.standard_normal((50, 70)).astype(np.float32)
    packed = {}
    for isa in ISAS:
        with use_isa(isa):
            packed[isa] = ops.pack_weight(w, trans_b=True)
            assert packed[isa].isa == isa
            assert (packed[isa].k, packed[isa].n) == (70, 50)
    for isa, p in packed.items():
        with use_isa(isa):
            want = ops.matmul(a, p)
        for other in ISAS:
            with use_isa(other):
                assert np.array_equal(ops.matmul(a, p), want), f"packed by {isa}, used under {other}"
        assert_within(want, ref.matmul(a, w, trans_b=True), gemm_bound(a, w, True), isa)


@pytest.mark.parametrize("k", [1, 17, 257, 3000])
def test_the_bound_catches_one_missing_term(k, rng):
    """Self-check of gemm_bound: dropping a single product from one element must exceed it."""
    a = rng.uniform(-1.0, 1.0, size=(4, k)).astype(np.float32)
    b = rng.uniform(-1.0, 1.0, size=(k, 5)).astype(np.float32)
    want = ref.matmul(a, b)
    p = int(np.argsort(np.abs(a[2, :] * b[:, 3]))[k // 2])  # a typical term
    bad = want.copy()
    bad[2, 3] -= float(a[2, p]) * float(b[p, 3])
    assert_within(want.astype(np.float32), want, gemm_bound(a, b), "exact")
    with pytest.raises(AssertionError):
        assert_within(bad, want, gemm_bound(a, b), "one term missing")
