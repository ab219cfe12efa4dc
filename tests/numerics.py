"""Error bounds and comparison helpers shared by the kernel tests (float32 kernels vs float64 references).

Every bound is elementwise and has the form (number of roundings that can pile up) x EPS32 x (the scale
the error is relative to), with the scale chosen from the operation's conditioning, so that a bound
stays tight enough to catch a wrong element, a missing term or a wrong row.
"""

from __future__ import annotations

import contextlib
import math

import numpy as np

import cpuformer

EPS32 = 2.0**-23  # float32 machine epsilon (spacing of floats at 1); unit roundoff u = EPS32 / 2
TINY32 = float(np.finfo(np.float32).tiny)  # smallest normal float32
MAX32 = float(np.finfo(np.float32).max)


@contextlib.contextmanager
def use_isa(name: str):
    previous = cpuformer.isa()
    cpuformer.set_isa(name)
    try:
        yield name
    finally:
        cpuformer.set_isa(previous)


@contextlib.contextmanager
def use_threads(n: int):
    previous = cpuformer.get_num_threads()
    cpuformer.set_num_threads(n)
    try:
        yield n
    finally:
        cpuformer.set_num_threads(previous)


def blocking(isa: str) -> dict:
    """The GEMM blocking (mr, nr, kc, mc, nc, mb) of an ISA's kernel table."""
    with use_isa(isa):
        return dict(cpuformer.build_info()["gemm_blocking"])


def nan_like(shape) -> np.ndarray:
    """An output buffer full of NaN: any element a kernel forgets to write stays NaN."""
    return np.full(shape, np.nan, dtype=np.float32)


def gemm_bound(a, b, trans_b: bool = False, bias=None) -> np.ndarray:
    """Elementwise bound on |fl32(a @ b + bias) - (a @ b + bias)|.

    Each output element is one float32 FMA chain over K; every step rounds once with relative error
    <= u = EPS32 / 2 of the partial sum. The worst case is K u (|a| @ |b|), but the rounding errors are
    independent and of either sign, so they grow like sqrt(K) (Higham & Mary, probabilistic rounding error
    analysis, SISC 2019). The bound used is

        |got - ref| <= (2 sqrt(K) + 4) * EPS32 * (|a| @ |b| + |bias|)

    i.e. lambda = 4 standard deviations of sqrt(K) u, plus 4 EPS32 for the bias add and the final
    rounding. The scale |a| @ |b| is the condition of each dot product, so cancellation is accounted for.
    It still catches a wrong, missing or duplicated term: one term |a_ip b_pj| is about (|a| @ |b|) / K,
    far above (2 sqrt(K) + 4) EPS32 (|a| @ |b|) for any K below 10^6.
    """
    a64 = np.abs(np.asarray(a, dtype=np.float64))
    b64 = np.abs(np.asarray(b, dtype=np.float64))
    if trans_b:
        b64 = np.swapaxes(b64, -1, -2)
    k = a64.shape[-1]
    scale = a64 @ b64
    if bias is not None:
        scale = scale + np.abs(np.asarray(bias, dtype=np.float64))
    return (2.0 * math.sqrt(k) + 4.0) * EPS32 * scale


def activation_bound(pre_bound, pre_ref, out_ref) -> np.ndarray:
    """Bound after an activation applied to a value known within pre_bound.

    The activations are Lipschitz with constant <= 1.13 (GELU's maximum slope; ReLU and SiLU are below
    1.1), so the input error grows by at most 1.2x; the activation's own float32 evaluation adds
    EPS32 * (4 |out| + 5 |pre|): a few ulps of the result, plus |x f'(x)| <= 1.13 |x| ulps from the
    rounding of its argument (the conditioning term), plus GELU-erf's rounding of 1 + erf(x / sqrt 2)
    (0.5 |x| times erf's absolute error)."""
    return 1.2 * pre_bound + EPS32 * (4.0 * np.abs(out_ref) + 5.0 * np.abs(pre_ref))


def assert_within(got, ref, bound, what: str = "") -> None:
    """|got - ref| <= bound elementwise; NaN/inf must match the reference exactly."""
    got = np.asarray(got)
    ref = np.asarray(ref, dtype=np.float64)
    assert got.shape == ref.shape, f"{what}: shape {got.shape}, expected {ref.shape}"
    got64 = got.astype(np.float64)
    bound = np.broadcast_to(np.asarray(bound, dtype=np.float64), ref.shape)
    finite = np.isfinite(ref)
    # Non-finite reference values (NaN, +-inf) must be reproduced exactly.
    nf_ok = np.where(np.isnan(ref), np.isnan(got64), got64 == ref)
    bad_nf = ~finite & ~nf_ok
    assert not bad_nf.any(), (
        f"{what}: non-finite mismatch at {np.argwhere(bad_nf)[:5].tolist()}: "
        f"got {got64[bad_nf][:5]}, expected {ref[bad_nf][:5]}"
    )
    with np.errstate(invalid="ignore"):
        err = np.where(finite, np.abs(got64 - ref), 0.0)
    ok = ~finite | (err <= bound)  # NaN in got (e.g. an unwritten element) makes err NaN: not ok
    if not ok.all():
        idx = np.argwhere(~ok)
        i = tuple(idx[0])
        with np.errstate(divide="ignore", invalid="ignore"):
            worst = np.nanmax(np.where(finite, err / bound, 0.0))
        raise AssertionError(
            f"{what}: {len(idx)} of {ref.size} elements outside the bound; first at {list(i)}: "
            f"got {got64[i]!r}, expected {ref[i]!r}, |err| {err[i]:.3g} > bound {bound[i]:.3g}; "
            f"worst err/bound {worst:.3g}"
        )
