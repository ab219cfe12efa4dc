"""softmax, argmax, layer_norm and the activations against the float64 reference (and torch), on every ISA path.

Row lengths cover the vector tails of every ISA (1, 3, 15, 16, 17, 31, 33, 1000, 1025: widths 1, 8
and 16 each leave a masked tail somewhere). Bounds are elementwise, derived in the docstrings below.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import cpuformer
from cpuformer import ops
from numerics import EPS32, MAX32, TINY32, assert_within, nan_like, use_threads
from reference import ops_ref as ref

TAILS = [1, 3, 15, 16, 17, 31, 33, 1000, 1025]

# The `isa` fixture is function-scoped but only switches a global setting, identical for every example.
HYPOTHESIS = settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


@pytest.fixture
def torch():
    return pytest.importorskip("torch")


# --- softmax ------------------------------------------------------------------------------------------


def softmax_bound(x, want, axis=-1) -> np.ndarray:
    """y_i = exp(x_i - max) / S. Relative error of y_i: exp's few ulps, the division and scaling (6 EPS32
    together), the sum S (2 sqrt(n) EPS32, as for a dot product, see numerics.gemm_bound), and the
    rounding of the argument x_i - max (relative error u, magnified by |x_i - max|, the condition of exp).
    Results below the smallest normal float may flush to zero."""
    x = np.asarray(x, dtype=np.float64)
    n = x.shape[axis]
    with np.errstate(invalid="ignore"):
        d = np.abs(x - np.max(x, axis=axis, keepdims=True))
    d = np.where(np.isfinite(d), d, 0.0)
    return EPS32 * (2.0 * math.sqrt(n) + 6.0 + d) * np.abs(want) + TINY32


@pytest.mark.parametrize("n", TAILS)
def test_softmax_matches_reference(isa, n, rng):
    for scale in (1.0, 8.0, 40.0):  # 40: many exps underflow
        x = (rng.standard_normal((3, n)) * scale).astype(np.float32)
        out = nan_like(x.shape)
        got = ops.softmax(x, out=out)
        assert got is out
        want = ref.softmax(x)
        assert_within(got, want, softmax_bound(x, want), f"{isa} n={n} scale={scale}")
        assert np.all(got >= 0.0) and np.all(got <= 1.0)


@pytest.mark.parametrize("axis", [0, 1, 2, -1, -2, -3])
def test_softmax_axes(isa, axis, rng):
    x = (rng.standard_normal((4, 5, 17)) * 3).astype(np.float32)
    want = ref.softmax(x, axis=axis)
    got = ops.softmax(x, axis=axis)
    assert got.shape == x.shape and got.dtype == np.float32
    assert_within(got, want, softmax_bound(x, want, axis), f"{isa} axis={axis}")
    out = nan_like(x.shape)
    assert ops.softmax(x, axis=axis, out=out) is out
    assert np.array_equal(out, got)
    # The same as moving the axis last (one kernel, one semantics).
    moved = np.ascontiguousarray(np.moveaxis(x, axis, -1))
    assert np.array_equal(np.moveaxis(ops.softmax(moved), -1, axis), got)


@pytest.mark.parametrize("n", TAILS)
def test_softmax_masked_rows_are_exact_zeros(isa, n, rng):
    x = rng.standard_normal((4, n)).astype(np.float32)
    x[1] = -np.inf  # fully masked row
    mask = rng.random(n) < 0.5
    mask[-1] = True  # a masked position in the tail lanes
    if mask.all():
        mask[0] = False
    x[2, mask] = -np.inf  # partly masked row
    got = ops.softmax(x, out=nan_like(x.shape))
    assert np.array_equal(got[1], np.zeros(n, np.float32)) and not np.signbit(got[1]).any()
    assert np.all(got[2, mask] == 0.0), "masked positions must be exactly 0"
    alone = ops.softmax(x[2, ~mask])
    want = ref.softmax(x[2, ~mask])
    assert_within(alone, want, softmax_bound(x[2, ~mask], want), f"{isa} unmasked part")
    assert_within(got[2, ~mask], want, softmax_bound(x[2, ~mask], want), f"{isa} partly masked row")
    want_all = ref.softmax(x)
    assert_within(got, want_all, softmax_bound(x, want_all), isa)


def test_softmax_huge_values_do_not_overflow(isa):
    x = np.array(
        [
            [MAX32, MAX32, -MAX32, 0.0],
            [1e30, 1e30, -1e30, 1e30],
            [-MAX32, -MAX32, -MAX32, -MAX32],
            [3e38, -3e38, 1.0, 2.0],
        ],
        np.float32,
    )
    got = ops.softmax(x)
    want = ref.softmax(x)
    assert np.all(np.isfinite(got))
    assert_within(got, want, softmax_bound(x, want), isa)
    assert np.array_equal(got[0], np.array([0.5, 0.5, 0.0, 0.0], np.float32))
    assert np.array_equal(got[2], np.full(4, 0.25, np.float32))


@pytest.mark.parametrize("pos", [0, 7, 16, 32])
def test_softmax_nan_propagates_to_its_row_only(isa, pos, rng):
    x = rng.standard_normal((3, 33)).astype(np.float32)
    x[1, pos] = np.nan
    got = ops.softmax(x)
    assert np.all(np.isnan(got[1])), "a NaN makes its whole row NaN (as torch.softmax)"
    assert np.array_equal(got[[0, 2]], ops.softmax(x[[0, 2]]))


def test_softmax_plus_inf_gives_nan_as_ieee(isa):
    x = np.array([[np.inf, 1.0, 2.0], [1.0, 2.0, 3.0]], np.float32)
    got = ops.softmax(x)
    assert np.all(np.isnan(got[0]))  # inf - inf
    assert np.all(np.isfinite(got[1]))


@HYPOTHESIS
@given(
    x=hnp.arrays(
        np.float32,
        hnp.array_shapes(min_dims=1, max_dims=2, min_side=1, max_side=70),
        elements=st.floats(-1e4, 1e4, width=32),
    )
)
def test_softmax_rows_sum_to_one(isa, x):
    got = ops.softmax(x).astype(np.float64)
    want = ref.softmax(x)
    bound = softmax_bound(x, want)
    assert_within(got, want, bound, isa)
    # Summing the per-element bounds gives the bound on the row sum.
    assert np.all(np.abs(got.sum(-1) - 1.0) <= bound.sum(-1) + 1e-12)


@HYPOTHESIS
@given(
    k=hnp.arrays(np.int32, hnp.array_shapes(min_dims=1, max_dims=2, min_side=1, max_side=70), elements=st.integers(-4096, 4096)),
    c=st.integers(-1000, 1000),
)
def test_softmax_shift_invariance_is_exact(isa, k, c):
    """x = k / 256 and x + c are exact in float32 (18 significant bits), and so is every x_i - max: the
    kernel sees the same exp arguments, so the results must be bitwise equal."""
    x = (k / 256.0).astype(np.float32)
    shifted = (x.astype(np.float64) + c).astype(np.float32)
    assert np.array_equal(shifted.astype(np.float64) - c, x)  # the premise: exact
    assert np.array_equal(ops.softmax(shifted), ops.softmax(x))


@HYPOTHESIS
@given(
    x=hnp.arrays(np.float32, st.integers(1, 70), elements=st.floats(-30, 30, width=32)),
    c=st.floats(-100, 100, width=32),
)
def test_softmax_shift_invariance(isa, x, c):
    """softmax(x + c) = softmax(x) up to the rounding of x + c (u |x + c| per element, magnified by the
    condition of exp like any argument error)."""
    shifted = (x + c).astype(np.float32)
    want = ref.softmax(x)
    extra = EPS32 * (np.abs(x.astype(np.float64)) + abs(float(c)) + float(np.max(np.abs(x)))) * want
    assert_within(ops.softmax(shifted), want, softmax_bound(x, want) + extra, isa)


# --- argmax (greedy decoding's choice) ------------------------------------------------------------


def argmax_reference(x: np.ndarray) -> np.ndarray:
    """First index of the largest non-NaN value per row (0 for a row of NaN), by a plain Python scan."""
    rows = x.reshape(-1, x.shape[-1])
    out = []
    for row in rows:
        best, value = 0, None
        for j, v in enumerate(row.tolist()):
            if v == v and (value is None or v > value):
                best, value = j, v
        out.append(best)
    return np.array(out, dtype=np.int64).reshape(x.shape[:-1])


@pytest.mark.parametrize("n", TAILS + [32000])
def test_argmax_matches_reference(isa, n, rng):
    x = rng.standard_normal((5, n)).astype(np.float32)
    got = ops.argmax(x)
    assert got.dtype == np.int64 and got.shape == (5,)
    np.testing.assert_array_equal(got, argmax_reference(x), err_msg=f"{isa} n={n}")
    np.testing.assert_array_equal(got, np.argmax(x, axis=-1))


@pytest.mark.parametrize("n", [1, 17, 33, 1025])
def test_argmax_ties_infinities_and_nan(isa, n, rng):
    x = rng.integers(-3, 3, size=(4, n)).astype(np.float32)  # many ties: the first maximum wins
    x[1, :] = -np.inf
    x[2, n // 2] = np.inf
    x[3, :] = np.nan
    if n > 2:
        x[0, 0] = np.nan  # ignored, even in front
        x[0, n - 1] = 7.0
    want = argmax_reference(x)
    np.testing.assert_array_equal(ops.argmax(x), want, err_msg=f"{isa} n={n}")
    assert want[1] == 0 and want[3] == 0 and want[2] == n // 2


def test_argmax_signed_zeros_and_leading_dims(isa):
    x = np.array([[-0.0, 0.0, -1.0], [-1.0, 0.0, -0.0]], dtype=np.float32)
    np.testing.assert_array_equal(ops.argmax(x), [0, 1])
    y = np.arange(2 * 3 * 5, dtype=np.float64).reshape(2, 3, 5)[:, :, ::-1]  # float64, non-contiguous
    np.testing.assert_array_equal(ops.argmax(y), np.zeros((2, 3), dtype=np.int64))


def test_argmax_bad_input():
    with pytest.raises(ValueError, match="x"):
        ops.argmax(np.zeros((3, 0), np.float32))
    with pytest.raises(ValueError, match="x"):
        ops.argmax(np.float32(1.0))
    with pytest.raises(TypeError):
        ops.argmax(np.zeros((2, 2), np.complex64))


# --- layer_norm ---------------------------------------------------------------------------------------


def layer_norm_bound(h, weight, bias, eps=1e-5) -> np.ndarray:
    """y = (h - mean) rstd gamma + beta over rows of n. The float32 sums for mean and variance err by
    about 2 sqrt(n) EPS32 of the largest |h| (the scale the mean is rounded on, which is what a large
    common offset costs: why two passes are needed at all); that error, and the rounding of h - mean,
    reach the output multiplied by rstd |gamma|; + 4 EPS32 for the final FMA and the rounding of h.

        |got - ref| <= (2 sqrt(n) + 4) EPS32 (|gamma| rstd (|h_i - mean| + max|h|) + |beta|)
    """
    h = np.asarray(h, dtype=np.float64)
    n = h.shape[-1]
    mean = h.mean(-1, keepdims=True)
    rstd = 1.0 / np.sqrt(((h - mean) ** 2).mean(-1, keepdims=True) + eps)
    hmax = np.abs(h).max(-1, keepdims=True)
    g = np.abs(np.asarray(weight, np.float64))
    b = np.abs(np.asarray(bias, np.float64))
    return (2.0 * math.sqrt(n) + 4.0) * EPS32 * (g * rstd * (np.abs(h - mean) + hmax) + b)


@pytest.mark.parametrize("residual", [False, True], ids=["plain", "residual"])
@pytest.mark.parametrize("n", TAILS[1:] + [768])
def test_layer_norm_matches_reference(isa, n, residual, rng):
    x = (rng.standard_normal((3, n)) * 2 + 0.5).astype(np.float32)
    r = rng.standard_normal((3, n)).astype(np.float32) if residual else None
    w = rng.uniform(0.5, 1.5, n).astype(np.float32)
    b = rng.standard_normal(n).astype(np.float32)
    out = nan_like(x.shape)
    got = ops.layer_norm(x, w, b, residual=r, out=out)
    assert got is out
    h = x.astype(np.float64) + (0.0 if r is None else r)
    assert_within(got, ref.layer_norm(x, w, b, residual=r), layer_norm_bound(h, w, b), f"{isa} n={n}")
    if r is not None:  # the fused residual add is the add done first
        assert np.array_equal(got, ops.layer_norm(x + r, w, b))


@pytest.mark.parametrize("n", [1024, 767])
def test_layer_norm_large_offset_two_pass(isa, n, rng):
    """Rows of 1e4 + noise of std 1: E[h^2] - E[h]^2 in float32 loses the variance entirely (ulp(1e8) = 8);
    two passes keep the error at the scale of the mean's rounding."""
    x = (rng.standard_normal((4, n)) + 1e4).astype(np.float32)
    w = rng.uniform(0.5, 1.5, n).astype(np.float32)
    b = rng.standard_normal(n).astype(np.float32)
    want = ref.layer_norm(x, w, b)
    bound = layer_norm_bound(x, w, b)
    got = ops.layer_norm(x, w, b)
    assert np.all(np.isfinite(got))
    assert_within(got, want, bound, f"{isa} offset 1e4")
    # Self-check: the bound rejects the one-pass formula computed in float32.
    mean = x.mean(-1, keepdims=True, dtype=np.float32)
    var = (x * x).mean(-1, keepdims=True, dtype=np.float32) - mean * mean
    with np.errstate(invalid="ignore"):
        naive = ((x - mean) / np.sqrt(var + np.float32(1e-5)) * w + b).astype(np.float32)
    with pytest.raises(AssertionError):
        assert_within(naive, want, bound, "one-pass variance")
    # Same with the offset carried by the residual.
    r = np.full_like(x, 1e4)
    x2 = (x - r).astype(np.float32)
    assert_within(ops.layer_norm(x2, w, b, residual=r), ref.layer_norm(x2, w, b, residual=r),
                  layer_norm_bound(x2.astype(np.float64) + r, w, b), f"{isa} offset in residual")


@pytest.mark.parametrize("eps", [0.0, 1e-12, 1e-5, 1.0, 1e3])
def test_layer_norm_eps(isa, eps, rng):
    n = 37
    x = (rng.standard_normal((3, n)) * 0.01).astype(np.float32)  # var 1e-4: eps matters from 1e-5 on
    w = rng.uniform(0.5, 1.5, n).astype(np.float32)
    b = rng.standard_normal(n).astype(np.float32)
    got = ops.layer_norm(x, w, b, eps=eps)
    assert_within(got, ref.layer_norm(x, w, b, eps=eps), layer_norm_bound(x, w, b, eps=eps), f"{isa} eps={eps}")
    if eps > 0:
        const = np.full((2, 48), 0.5, np.float32)  # sums of 0.5 are exact: h - mean is exactly 0
        assert np.array_equal(ops.layer_norm(const, np.ones(48, np.float32), np.arange(48, dtype=np.float32), eps=eps),
                              np.broadcast_to(np.arange(48, dtype=np.float32), (2, 48)))


def test_layer_norm_shapes(isa, rng):
    w = rng.uniform(0.5, 1.5, 20).astype(np.float32)
    b = rng.standard_normal(20).astype(np.float32)
    x3 = rng.standard_normal((2, 3, 20)).astype(np.float32)
    got = ops.layer_norm(x3, w, b)
    assert got.shape == (2, 3, 20)
    assert np.array_equal(got.reshape(6, 20), ops.layer_norm(x3.reshape(6, 20), w, b))
    assert np.array_equal(ops.layer_norm(x3[1, 2], w, b), got[1, 2])  # 1-D row
    assert ops.layer_norm(np.zeros((0, 20), np.float32), w, b).shape == (0, 20)


# --- row and thread invariance ------------------------------------------------------------------------


def test_rowwise_results_do_not_depend_on_threads_or_batch(isa, rng):
    x = (rng.standard_normal((64, 1000)) * 3).astype(np.float32)  # 64k elements: split across threads
    r = rng.standard_normal((64, 1000)).astype(np.float32)
    w = rng.uniform(0.5, 1.5, 1000).astype(np.float32)
    b = rng.standard_normal(1000).astype(np.float32)
    runs = {}
    for t in (1, 2):
        with use_threads(t):
            runs[t] = (ops.softmax(x), ops.layer_norm(x, w, b, residual=r), ops.gelu(x), ops.silu(x))
    for name, one, two in zip(["softmax", "layer_norm", "gelu", "silu"], runs[1], runs[2]):
        assert np.array_equal(one, two), f"{isa} {name}: 1 vs 2 threads differ"
    for i in (0, 31, 63):
        assert np.array_equal(ops.softmax(x[i]), runs[2][0][i])
        assert np.array_equal(ops.layer_norm(x[i : i + 1], w, b, residual=r[i : i + 1]), runs[2][1][i : i + 1])


# --- activations --------------------------------------------------------------------------------------


def _gelu_tanh_op(x, out=None):
    return ops.gelu(x, approximate="tanh", out=out)


def _d_silu(x):
    s = ref.sigmoid(x)
    return s + x * s * (1.0 - s)


def _d_gelu(x):
    return ref.normal_cdf(x) + x * np.exp(-0.5 * x * x) / math.sqrt(2.0 * math.pi)


def _d_gelu_tanh(x):
    c = math.sqrt(2.0 / math.pi)
    with np.errstate(over="ignore", invalid="ignore"):
        s = ref.sigmoid(2.0 * c * (x + 0.044715 * x**3))
        return s + x * s * (1.0 - s) * 2.0 * c * (1.0 + 3.0 * 0.044715 * x * x)


# name -> (op, reference, derivative, extra absolute error as a multiple of EPS32 |x|)
ACTS = {
    "relu": (ops.relu, ref.relu, None, 0.0),
    "gelu": (ops.gelu, ref.gelu, _d_gelu, 3.0),
    "gelu_tanh": (_gelu_tanh_op, ref.gelu_tanh, _d_gelu_tanh, 0.0),
    "silu": (ops.silu, ref.silu, _d_silu, 0.0),
}

FLUSH = 2.0**-120  # ~7.5e-37, see activation_bound


def activation_bound(name, x) -> np.ndarray:
    """|got - f(x)| <= EPS32 (4 |f(x)| + 4 |x f'(x)| + c |x|) + 2^-120.

    4 |f| covers the few roundings of the final operations and exp's 2 ulps; |x f'(x)| = kappa |f| is
    the conditioning (the argument of exp is rounded before exp magnifies it); c |x| is GELU-erf's
    rounding of 1 + erf(x / sqrt 2) near 0 for negative x (0.5 |x| times erf's documented absolute error
    < 5e-7 ~ 4.2 EPS32, plus the rounding of the sum: c = 3), inherent to the float32 formula (torch has
    it too). Below 2^-120 any float32 formula through exp over/underflows to 0 (torch too)."""
    _, f, df, c = ACTS[name]
    x = np.asarray(x, dtype=np.float64)
    with np.errstate(over="ignore", invalid="ignore"):
        fx = f(x)
        cond = np.abs(x * df(x)) if df is not None else 0.0
        bound = EPS32 * (4.0 * np.abs(fx) + 4.0 * cond + c * np.abs(x)) + FLUSH
    return np.where(np.isfinite(bound), bound, 0.0)  # at +-inf and NaN only exact matches count


@pytest.mark.parametrize("name", list(ACTS))
def test_activation_dense_range(isa, name, rng):
    op, f, _, _ = ACTS[name]
    x = np.concatenate([np.linspace(-20, 20, 80001), rng.uniform(-88, 88, 5000)]).astype(np.float32)
    if name == "gelu":
        x = x[np.abs(x) <= 20]  # beyond -20 see test_gelu_erf_far_negative_tail
    got = op(x, out=nan_like(x.shape))
    if name == "relu":
        assert np.array_equal(got, np.maximum(x, 0))
    assert_within(got, f(x), activation_bound(name, x), f"{isa} {name}")


@pytest.mark.parametrize("name", list(ACTS))
@pytest.mark.parametrize("n", TAILS)
def test_activation_tails(isa, name, n, rng):
    op, f, _, _ = ACTS[name]
    x = rng.uniform(-8, 8, (3, n)).astype(np.float32)
    out = nan_like(x.shape)
    got = op(x, out=out)
    assert got is out
    assert_within(got, f(x), activation_bound(name, x), f"{isa} {name} n={n}")
    # Elementwise: an element's result does not depend on its lane (tail or not) or the row length.
    assert np.array_equal(op(x.ravel()), got.ravel())
    assert np.array_equal(op(x[:, ::-1].copy())[:, ::-1], got)


SPECIALS = np.array(
    [np.inf, np.nan, MAX32, 1e30, 1e10, 100.0, 88.5, 1.0, 0.0, -0.0, TINY32, -TINY32, 1e-30, -1e-30, -1.0, -10.0],
    np.float32,
)
NEG_EXTREMES = np.array([-88.5, -100.0, -1e10, -1e30, -MAX32], np.float32)


@pytest.mark.parametrize("name", list(ACTS))
def test_activation_special_values(isa, name):
    """+inf -> +inf, NaN -> NaN, extremes stay accurate; -inf follows the formula (IEEE): relu 0, and
    -inf * 0 = NaN for x sigma(x) forms (as torch); the mathematical limit 0 is also accepted."""
    op, f, _, _ = ACTS[name]
    x = SPECIALS if name == "gelu" else np.concatenate([SPECIALS, NEG_EXTREMES])
    got = op(x)
    assert_within(got, f(x), activation_bound(name, x), f"{isa} {name}")
    if name == "gelu":
        return  # gelu(-inf): see test_gelu_erf_far_negative_tail
    at_neg_inf = op(np.array([-np.inf], np.float32))[0]
    if name == "relu":
        assert at_neg_inf == 0.0
    else:
        assert np.isnan(at_neg_inf) or at_neg_inf == 0.0, f"{name}(-inf) = {at_neg_inf}"


def test_gelu_erf_far_negative_tail(isa):
    """Regression test for a fixed bug (kernels/impl/vec_math.h): erf() clamps to +-3.8325 'where erf rounds to +-1', but
    its rational form there gives 1 + erf = 2^-25 (avx2/avx512) or 2^-24 (scalar) instead of 0, so
    gelu(x) = 0.5 x (1 + erf) ~ 2^-25 x below x ~ -5.5: gelu(-100) = -3e-6, gelu(-1e30) = -3e22,
    gelu(-inf) = -inf. Expected ~ -0 (the true |gelu| is < 1e-40 there; torch gives -0.0, NaN at -inf)."""
    x = np.concatenate([NEG_EXTREMES[1:], [-np.inf]]).astype(np.float32)
    got = ops.gelu(x)
    assert np.all(np.abs(got[:-1]) <= 1e-6), got  # GELU is bounded below by -0.17 and -> 0
    assert np.isnan(got[-1]) or got[-1] == 0.0, got[-1]


def test_silu_where_exp_is_near_overflow(isa):
    """Where exp(-x) still fits in float32 (x >= -88.72), x sigma(x) is a normal float and the float32
    formula loses nothing: relative error a few ulps times the condition |x|.

    Regression test for a fixed bug (kernels/impl/vec_math.h): exp() clamps its input at 88.376 but returns +inf only above
    88.72, so exp(x) for x in (88.376, 88.72] is exp(88.376) ~ 2.4e38 instead of up to 3.4e38 (its
    documented 2 ulp do not hold there). Visible through sigmoid: silu(-88.7) = -3.69e-37, expected
    -2.67e-37. Harmless in practice (outputs ~1e-37), but the contract is broken."""
    x = np.linspace(-88.72, -80.0, 2001).astype(np.float32)
    got = ops.silu(x).astype(np.float64)
    want = ref.silu(x)
    assert_within(got, want, EPS32 * (4.0 * np.abs(want) + 4.0 * np.abs(x * _d_silu(x.astype(np.float64)))), isa)


# --- against torch --------------------------------------------------------------------------------------
# Both sides are float32 implementations with (at most) the errors bounded above: allow twice the bound.


@pytest.mark.parametrize("n", [1, 17, 33, 1025])
def test_softmax_vs_torch(isa, torch, n, rng):
    x = (rng.standard_normal((5, n)) * 4).astype(np.float32)
    theirs = torch.softmax(torch.from_numpy(x), dim=-1).numpy()
    want = ref.softmax(x)
    assert_within(theirs, want, softmax_bound(x, want), "torch vs reference")  # the premise
    assert_within(ops.softmax(x), theirs, 2 * softmax_bound(x, want), isa)


@pytest.mark.parametrize("residual", [False, True], ids=["plain", "residual"])
@pytest.mark.parametrize("n", [3, 33, 768])
def test_layer_norm_vs_torch(isa, torch, n, residual, rng):
    x = (rng.standard_normal((4, n)) * 3 + 1).astype(np.float32)
    r = rng.standard_normal((4, n)).astype(np.float32) if residual else None
    w = rng.uniform(0.5, 1.5, n).astype(np.float32)
    b = rng.standard_normal(n).astype(np.float32)
    h = x if r is None else x + r
    theirs = torch.nn.functional.layer_norm(
        torch.from_numpy(h), (n,), torch.from_numpy(w), torch.from_numpy(b), eps=1e-5
    ).numpy()
    bound = layer_norm_bound(x.astype(np.float64) + (0.0 if r is None else r), w, b)
    assert_within(ops.layer_norm(x, w, b, residual=r), theirs, 2 * bound, isa)


@pytest.mark.parametrize("name", ["gelu", "gelu_tanh", "silu", "relu"])
def test_activations_vs_torch(isa, torch, name):
    x = np.linspace(-20, 20, 40001).astype(np.float32)
    t = torch.from_numpy(x)
    F = torch.nn.functional
    theirs = {
        "gelu": lambda: F.gelu(t),
        "gelu_tanh": lambda: F.gelu(t, approximate="tanh"),
        "silu": lambda: F.silu(t),
        "relu": lambda: F.relu(t),
    }[name]().numpy()
    bound = 2 * activation_bound(name, x)
    if name == "gelu_tanh":
        # torch evaluates 0.5 x (1 + tanh u) literally: 1 + tanh u cancels for negative x just like
        # 1 + erf does (the c |x| term of the erf form), where cpuformer's x sigmoid(2u) does not.
        bound = bound + 3.0 * EPS32 * np.abs(x.astype(np.float64))
    assert_within(ACTS[name][0](x), theirs, bound, f"{isa} {name}")


# --- out= overlapping the inputs -----------------------------------------------------------------------


@pytest.mark.parametrize("name", ["softmax", "layer_norm", "gelu", "relu", "silu"])
def test_out_overlapping_inputs_gives_the_same_result(isa, name, rng):
    """out may be the input itself (in place) or overlap it shifted by some elements or rows, as NumPy allows:
    a shifted overlap used to read values the kernel had already written (GELU off by up to 2.9)."""
    w = rng.uniform(0.5, 1.5, 32).astype(np.float32)
    b = rng.standard_normal(32).astype(np.float32)
    op = {"softmax": ops.softmax, "layer_norm": lambda x, out=None: ops.layer_norm(x, w, b, out=out),
          "gelu": ops.gelu, "relu": ops.relu, "silu": ops.silu}[name]
    x = rng.standard_normal((64, 32)).astype(np.float32)
    want = op(x)
    buf = np.zeros((66, 32), np.float32)
    for shift in (0, 1, 2):  # rows of out past those of x (0: in place)
        buf[:64] = x
        got = op(buf[:64], out=buf[shift : shift + 64])
        assert np.array_equal(got, want), f"{isa} {name}: out shifted by {shift} rows"
    flat = np.zeros(64 * 32 + 5, np.float32)
    flat[: 64 * 32] = x.ravel()
    got = op(flat[: 64 * 32].reshape(64, 32), out=flat[5:].reshape(64, 32))  # shifted by 5 elements
    assert np.array_equal(got, want), f"{isa} {name}: out shifted by 5 elements"
    buf[2:66] = x
    got = op(buf[2:66], out=buf[:64])  # out two rows before the input
    assert np.array_equal(got, want), f"{isa} {name}: out two rows before the input"


def test_layer_norm_out_overlapping_weight_bias_and_residual(rng):
    x = rng.standard_normal((64, 32)).astype(np.float32)
    r = rng.standard_normal((64, 32)).astype(np.float32)
    w = rng.uniform(0.5, 1.5, 32).astype(np.float32)
    b = rng.standard_normal(32).astype(np.float32)
    want = ops.layer_norm(x, w, b, residual=r)
    out = np.zeros((64, 32), np.float32)
    out[7], out[9] = w, b  # weight and bias read by every row, living in a row that is written
    assert np.array_equal(ops.layer_norm(x, out[7], out[9], residual=r, out=out), want)
    rr = r.copy()
    assert np.array_equal(ops.layer_norm(x, w, b, residual=rr, out=rr), want)  # residual in place
