"""The public API's contract: errors that name the argument, dtypes, out=, empty inputs, no hidden copies,
threads and ISA switching, the GIL released during kernels, a light import, build information."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time

import numpy as np
import pytest

import cpuformer
from cpuformer import ops

F32 = np.float32


def _run_python(code: str, **env_overrides):
    env = dict(os.environ)
    env.pop("CPUFORMER_ISA", None)
    env.update(env_overrides)
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)


def _raises(exc, match, fn, *args, **kwargs):
    with pytest.raises(exc, match=match):
        fn(*args, **kwargs)


# --- errors -------------------------------------------------------------------------------------------


def test_shape_mismatch_raises_value_error_naming_the_argument():
    a = np.ones((4, 3), F32)
    _raises(ValueError, r"^b: .*K = 3", ops.matmul, a, np.ones((4, 5), F32))
    _raises(ValueError, r"^b: .*\[N, K\]", ops.matmul, a, np.ones((5, 4), F32), trans_b=True)
    _raises(ValueError, r"^b: .*2-D", ops.matmul, a, np.ones((3,), F32))
    _raises(ValueError, r"^a: ", ops.matmul, np.ones(3, F32), np.ones((3, 5), F32))
    _raises(ValueError, r"^bias: .*\(5,\)", ops.matmul, a, np.ones((3, 5), F32), bias=np.ones(4, F32))
    _raises(ValueError, r"^bias: ", ops.matmul, a, np.ones((3, 5), F32), bias=np.ones((1, 5), F32))
    packed = ops.pack_weight(np.ones((3, 5), F32))
    _raises(ValueError, r"^a: .*K = 3", ops.matmul, np.ones((4, 7), F32), packed)
    _raises(ValueError, r"^bias: ", ops.matmul, a, packed, bias=np.ones(4, F32))
    _raises(ValueError, r"^weight: ", ops.pack_weight, np.ones((2, 3, 4), F32))
    _raises(ValueError, r"^b: ", ops.batched_matmul, np.ones((2, 3, 4), F32), np.ones((3, 4, 5), F32))
    _raises(ValueError, r"^b: .*K = 4", ops.batched_matmul, np.ones((2, 3, 4), F32), np.ones((2, 5, 5), F32))
    _raises(ValueError, r"a, b: ", ops.batched_matmul, np.ones((3, 4), F32), np.ones((4, 5), F32))
    x = np.ones((2, 6), F32)
    _raises(ValueError, r"^weight: .*\(6,\)", ops.layer_norm, x, np.ones(5, F32), np.ones(6, F32))
    _raises(ValueError, r"^bias: .*\(6,\)", ops.layer_norm, x, np.ones(6, F32), np.ones(7, F32))
    _raises(ValueError, r"^residual: ", ops.layer_norm, x, np.ones(6, F32), np.ones(6, F32), residual=np.ones((2, 5)))
    _raises(ValueError, r"^eps: ", ops.layer_norm, x, np.ones(6, F32), np.ones(6, F32), eps=-1.0)
    _raises(ValueError, r"^eps: ", ops.layer_norm, x, np.ones(6, F32), np.ones(6, F32), eps=float("nan"))
    _raises(ValueError, r"^axis: ", ops.softmax, x, axis=2)
    _raises(ValueError, r"^axis: ", ops.softmax, x, axis=-3)
    _raises(TypeError, r"^axis: ", ops.softmax, x, axis=None)
    for op in (ops.softmax, ops.relu, ops.gelu, ops.silu):
        _raises(ValueError, r"^x: .*scalar", op, np.array(1.0, F32))


@pytest.mark.parametrize(
    "scalar", [2.0, np.float32(2.0), np.array(2.0), np.int64(2)], ids=["float", "np.float32", "0d-float64", "np.int64"]
)
def test_scalars_are_refused_whatever_their_dtype(scalar):
    """Regression test for a fixed bug (python/cpuformer/ops.py): np.ascontiguousarray returns at least 1-D, so relu(2.0),
    softmax(np.float32(1.0)) or relu(np.array(1.0)) return shape (1,), while a 0-d float32 ndarray (used
    without conversion) raises 'x: expected at least 1 dimension, got a scalar'. One input, one rule."""
    for op in (ops.softmax, ops.relu, ops.gelu, ops.silu):
        _raises(ValueError, r"^x: .*scalar", op, scalar)


def test_non_integer_axis_is_a_type_error():
    """Regression test for a fixed bug (python/cpuformer/ops.py): int(axis) accepts 1.5 (-> 1) and '1', so the intended
    TypeError('axis: expected an integer') never fires for them; operator.index (as NumPy) would."""
    x = np.ones((2, 6), F32)
    _raises(TypeError, r"^axis: ", ops.softmax, x, axis=1.5)
    _raises(TypeError, r"^axis: ", ops.softmax, x, axis="1")


@pytest.mark.parametrize(
    "bad",
    [
        np.ones((2, 3), np.complex64),
        np.array([[1, 2, 3]], dtype=object),
        np.array([["a", "b", "c"]]),
        np.array([[b"a", b"b", b"c"]]),
        np.array([["2020-01-01"] * 3], dtype="datetime64[D]"),
    ],
    ids=["complex", "object", "str", "bytes", "datetime"],
)
def test_non_real_dtypes_raise_type_error_naming_the_argument(bad):
    good = np.ones((3, 3), F32)
    _raises(TypeError, r"^a: ", ops.matmul, bad, good)
    _raises(TypeError, r"^b: ", ops.matmul, np.ones((2, 3), F32), bad)
    _raises(TypeError, r"^bias: ", ops.matmul, good, good, bias=bad.ravel())
    _raises(TypeError, r"^weight: ", ops.pack_weight, bad)
    _raises(TypeError, r"^x: ", ops.softmax, bad)
    _raises(TypeError, r"^x: ", ops.relu, bad)
    _raises(TypeError, r"^x: ", ops.layer_norm, bad, np.ones(3), np.ones(3))
    _raises(TypeError, r"^weight: ", ops.layer_norm, np.ones((1, 3)), bad.ravel(), np.ones(3))
    _raises(TypeError, r"^a: ", ops.batched_matmul, bad[None], np.ones((1, 3, 3), F32))


def test_bad_out_arguments():
    a, b = np.ones((4, 3), F32), np.ones((3, 5), F32)
    _raises(TypeError, r"^out: .*float32", ops.matmul, a, b, out=np.empty((4, 5), np.float64))
    _raises(TypeError, r"^out: .*ndarray", ops.matmul, a, b, out=[[0.0] * 5] * 4)
    _raises(ValueError, r"^out: .*\(4, 5\)", ops.matmul, a, b, out=np.empty((5, 4), F32))
    _raises(ValueError, r"^out: .*C-contiguous", ops.matmul, a, b, out=np.empty((5, 4), F32).T)
    _raises(ValueError, r"^out: .*C-contiguous", ops.matmul, a, b, out=np.empty((4, 10), F32)[:, ::2])
    ro = np.empty((4, 5), F32)
    ro.flags.writeable = False
    _raises(ValueError, r"^out: .*read-only", ops.matmul, a, b, out=ro)
    sq = np.ones((4, 4), F32)
    _raises(ValueError, r"^out: .*overlap", ops.matmul, sq, np.ones((4, 4), F32), out=sq)
    x = np.ones((3, 8), F32)
    for op in (ops.softmax, ops.relu, ops.gelu, ops.silu):
        _raises(TypeError, r"^out: ", op, x, out=np.empty((3, 8), np.float64))
        _raises(ValueError, r"^out: ", op, x, out=np.empty((3, 9), F32))
        _raises(ValueError, r"^out: ", op, x, out=np.empty((8, 3), F32).T)
    _raises(ValueError, r"^out: ", ops.softmax, x, axis=0, out=np.empty((8, 3), F32))
    _raises(ValueError, r"^out: ", ops.layer_norm, x, np.ones(8), np.ones(8), out=np.empty((3, 7), F32))
    _raises(ValueError, r"^out: ", ops.batched_matmul, np.ones((2, 3, 4)), np.ones((2, 4, 5)), out=np.empty((2, 3, 4), F32))


@pytest.mark.parametrize("lead", [(), (2,)], ids=["2d", "3d"])
@pytest.mark.parametrize("packed", [False, True], ids=["raw", "packed"])
def test_matmul_out_checks_on_every_path(lead, packed):
    # 2-D calls leave these checks to the extension, N-D ones make them in Python: same exceptions either way.
    a = np.ones(lead + (4, 3), F32)
    w = np.ones((3, 5), F32)
    b = ops.pack_weight(w) if packed else w
    shape = lead + (4, 5)
    _raises(TypeError, r"^out: .*float32", ops.matmul, a, b, out=np.empty(shape, np.float64))
    _raises(TypeError, r"^out: .*ndarray", ops.matmul, a, b, out=np.zeros(shape, F32).tolist())
    _raises(ValueError, r"^out: .*\(", ops.matmul, a, b, out=np.empty(lead + (5, 4), F32))
    _raises(ValueError, r"^out: .*C-contiguous", ops.matmul, a, b, out=np.empty(lead + (4, 10), F32)[..., ::2])
    ro = np.empty(shape, F32)
    ro.flags.writeable = False
    _raises(ValueError, r"^out: .*read-only", ops.matmul, a, b, out=ro)
    # Overlaps: out a view into a's buffer (shifted by one row), and into the bias.
    buf = np.ones(int(np.prod(lead + (4,))) * 5 + 5, F32)
    a_view = buf[: a.size].reshape(a.shape)
    _raises(ValueError, r"^out: .*overlap", ops.matmul, a_view, b, out=buf[5 : 5 + int(np.prod(shape))].reshape(shape))
    bias_buf = np.zeros(int(np.prod(shape)), F32)
    _raises(ValueError, r"^out: .*overlap", ops.matmul, a, b, bias=bias_buf[:5], out=bias_buf.reshape(shape))
    if not packed:
        wb = np.ones(int(np.prod(shape)) + 15, F32)
        _raises(ValueError, r"^out: .*overlap", ops.matmul, a, wb[:15].reshape(3, 5), out=wb[3 : 3 + int(np.prod(shape))].reshape(shape))
    # And a good out is written in place and returned.
    out = np.full(shape, np.nan, F32)
    assert ops.matmul(a, b, out=out) is out
    np.testing.assert_array_equal(out, np.full(shape, 3.0, F32))


def test_bad_activation_and_approximate_strings():
    a, b = np.ones((2, 3), F32), np.ones((3, 4), F32)
    for bad in ("tanh", "GELU", "gelu_erf", "", 1, ops.relu):
        _raises(ValueError, r"^activation: .*'relu'", ops.matmul, a, b, activation=bad)
    for bad in ("erf", "Tanh", "exact", None, True):
        _raises(ValueError, r"^approximate: .*'none'", ops.gelu, a, approximate=bad)


def test_runtime_argument_errors():
    previous = cpuformer.get_num_threads()
    try:
        _raises(ValueError, r"^n: .*>= 1", cpuformer.set_num_threads, 0)
        _raises(ValueError, r"^n: ", cpuformer.set_num_threads, -2)
        _raises(TypeError, r"^n: ", cpuformer.set_num_threads, 1.5)
        _raises(TypeError, r"^n: ", cpuformer.set_num_threads, "2")
        _raises(TypeError, r"^n: .*bool", cpuformer.set_num_threads, True)
        for too_many in (cpuformer.runtime.MAX_THREADS + 1, 100_000, 2**31, 2**64):
            _raises(ValueError, r"^n: .*<= 1024", cpuformer.set_num_threads, too_many)
    finally:
        assert cpuformer.get_num_threads() == previous
    isa = cpuformer.isa()
    _raises(ValueError, r"isa: .*'scalar', 'avx2', 'avx512'.*'bogus'", cpuformer.set_isa, "bogus")
    _raises(TypeError, r"^name: ", cpuformer.set_isa, 2)
    assert cpuformer.isa() == isa


def test_absurd_omp_num_threads_is_capped():
    # 100,000 threads used to be created as asked for by the first large threaded op, and the process died
    # inside OpenMP (SIGSEGV); the default is capped at MAX_THREADS instead.
    code = (
        "import numpy as np, cpuformer\n"
        "from cpuformer import ops\n"
        "print(cpuformer.get_num_threads())\n"
        "x = np.ones((4096, 16), np.float32)\n"
        "print(float(ops.layer_norm(x, np.ones(16, np.float32), np.zeros(16, np.float32), eps=1e-5).sum()))\n"
    )
    r = _run_python(code, OMP_NUM_THREADS="100000")
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == [str(cpuformer.runtime.MAX_THREADS), "0.0"]


def test_unsupported_isa_is_refused():
    compiled = cpuformer.build_info()["isas_compiled"]
    missing = [i for i in ("scalar", "avx2", "avx512") if i not in cpuformer.supported_isas()]
    if not missing:
        pytest.skip("this build and CPU support every ISA")
    isa = cpuformer.isa()
    for name in missing:
        why = "supported by this CPU" if name in compiled else "compiled into this build"
        _raises(ValueError, rf"isa: '{name}' is not {why}", cpuformer.set_isa, name)
    assert cpuformer.isa() == isa


# --- threads and ISA switching ------------------------------------------------------------------------


def test_threads_roundtrip(threads):
    openmp = cpuformer.build_info()["openmp"]
    for n in (1, 2, 3):
        threads(n)
        assert cpuformer.get_num_threads() == (n if openmp else 1)
    assert cpuformer.get_num_threads() >= 1


def test_set_isa_switches_every_visible_property(isa):
    assert cpuformer.isa() == isa
    info = cpuformer.build_info()
    assert info["isa"] == isa
    assert ops.pack_weight(np.ones((3, 4), F32)).isa == isa


# --- dtypes, copies, empty inputs ----------------------------------------------------------------------


def test_results_are_float32_for_any_real_input():
    for dtype in (np.float64, np.float16, np.int64, np.uint8, np.bool_):
        x = np.ones((2, 5), dtype)
        assert ops.matmul(x, np.ones((5, 3), dtype)).dtype == F32
        for op in (ops.softmax, ops.relu, ops.gelu, ops.silu):
            assert op(x).dtype == F32
        assert ops.layer_norm(x, np.ones(5, dtype), np.zeros(5, dtype)).dtype == F32
    assert ops.relu([[-1.0, 2.0]]).tolist() == [[0.0, 2.0]]  # nested lists too


def test_float32_c_contiguous_inputs_are_not_copied():
    x = np.ones((3, 8), F32)
    assert ops.as_float32(x, "x") is x
    nc = np.ones((3, 16), F32)[:, ::2]
    conv = ops.as_float32(nc, "x")
    assert conv is not nc and conv.flags.c_contiguous and conv.dtype == F32
    # out= is written in place and returned, also through the leading-dimension reshape.
    out = np.empty((2, 3, 5), F32)
    assert ops.matmul(np.ones((2, 3, 4), F32), np.ones((4, 5), F32), out=out) is out
    assert np.all(out == 4.0)
    # In-place use: out may be the input of an element-wise op (kernels allow y to alias x).
    y = np.array([[-1.0, 2.0, -3.0]], F32)
    assert ops.relu(y, out=y) is y and y.tolist() == [[0.0, 2.0, 0.0]]
    z = np.array([[1.0, 2.0, 3.0]], F32)
    assert ops.softmax(z, out=z) is z and np.isclose(z.sum(), 1.0)
    # A view into a bigger buffer is a valid out (C-contiguous rows of it).
    buf = np.full((4, 8), -7.0, F32)
    view = buf[1:3]
    ops.relu(np.ones((2, 8), F32), out=view)
    assert np.shares_memory(view, buf) and np.all(buf[1:3] == 1.0) and np.all(buf[[0, 3]] == -7.0)


def test_inputs_are_not_modified_and_may_be_read_only(rng):
    a = rng.standard_normal((5, 7)).astype(F32)
    b = rng.standard_normal((7, 9)).astype(F32)
    bias = rng.standard_normal(9).astype(F32)
    for arr in (a, b, bias):
        arr.flags.writeable = False
    saved = (a.copy(), b.copy(), bias.copy())
    ops.matmul(a, b, bias=bias, activation="gelu")
    ops.matmul(a, ops.pack_weight(b), bias=bias)
    ops.softmax(a)
    ops.layer_norm(a, np.ones(7, F32), np.zeros(7, F32), residual=a)
    ops.silu(a)
    for arr, copy in zip((a, b, bias), saved):
        assert np.array_equal(arr, copy)


def test_empty_inputs_give_empty_results():
    assert ops.matmul(np.ones((0, 3), F32), np.ones((3, 4), F32)).shape == (0, 4)
    assert ops.matmul(np.ones((2, 3), F32), np.ones((3, 0), F32)).shape == (2, 0)
    assert ops.matmul(np.ones((2, 0, 3), F32), np.ones((3, 4), F32)).shape == (2, 0, 4)
    assert np.array_equal(ops.matmul(np.ones((2, 0), F32), np.ones((0, 4), F32)), np.zeros((2, 4), F32))
    for op in (ops.softmax, ops.relu, ops.gelu, ops.silu):
        assert op(np.ones((0, 5), F32)).shape == (0, 5)
        assert op(np.ones((3, 0), F32)).shape == (3, 0)
        assert op(np.ones((2, 0, 5), F32)).shape == (2, 0, 5)
    assert ops.softmax(np.ones((0, 5), F32), axis=0).shape == (0, 5)
    assert ops.layer_norm(np.ones((0, 5), F32), np.ones(5), np.ones(5)).shape == (0, 5)
    assert ops.layer_norm(np.ones((3, 0), F32), np.ones(0), np.ones(0)).shape == (3, 0)


@pytest.mark.parametrize("case", ["relu_1d_empty", "softmax_3d_n0", "gelu_3d_n0", "layer_norm_3d_n0"])
def test_empty_last_dim_rowwise(case):
    """Regression test for a fixed bug (python/cpuformer/ops.py _rows): x.reshape(-1, x.shape[-1]) cannot infer -1 when the
    last dimension is 0, so any input of shape (..., 0) that is not 2-D raises 'cannot reshape array of
    size 0 into shape (0)' instead of returning an empty array of the same shape."""
    if case == "relu_1d_empty":
        assert ops.relu(np.ones((0,), F32)).shape == (0,)
    elif case == "softmax_3d_n0":
        assert ops.softmax(np.ones((2, 3, 0), F32)).shape == (2, 3, 0)
    elif case == "gelu_3d_n0":
        assert ops.gelu(np.ones((2, 3, 0), F32)).shape == (2, 3, 0)
    else:
        assert ops.layer_norm(np.ones((2, 3, 0), F32), np.ones(0), np.ones(0)).shape == (2, 3, 0)


# --- the GIL ------------------------------------------------------------------------------------------


def test_gil_is_released_during_a_large_matmul(threads):
    """A Python thread keeps running while matmul calls of ~0.25 s each run on one core. If the GIL were
    held, the counter thread would stall for a whole call (one gap as long as the call)."""
    threads(1)  # leave the other core to the counter thread
    a = np.ones((512, 512), F32)
    t0 = time.perf_counter()
    ops.matmul(a, a)
    per_512 = max(time.perf_counter() - t0, 1e-4)
    n = int(min(3072, max(512, 512 * (0.25 / per_512) ** (1 / 3))))  # ~0.25 s per call
    a = np.ones((n, n), F32)
    count = 0
    stamps = []
    stop = threading.Event()

    def counter():
        nonlocal count
        while not stop.is_set():
            count += 1
            if count % 256 == 0:
                stamps.append(time.perf_counter())

    t = threading.Thread(target=counter)
    t.start()
    try:
        time.sleep(0.02)
        start = time.perf_counter()
        count_at_start = count
        calls = 0
        while time.perf_counter() - start < 0.5 or calls < 2:
            ops.matmul(a, a)
            calls += 1
        end = time.perf_counter()
        counted = count - count_at_start
    finally:
        stop.set()
        t.join()
    per_call = (end - start) / calls
    assert counted > 10000, f"the counter advanced only {counted} times during {end - start:.2f} s of matmul"
    inside = [s for s in stamps if start <= s <= end]
    gaps = np.diff(np.array([start] + inside + [end]))
    assert gaps.max() < 0.5 * per_call, (
        f"the counter thread stalled for {gaps.max():.3f} s during matmul calls of {per_call:.3f} s ({n}^3)"
    )


# --- import and environment ---------------------------------------------------------------------------


def test_import_does_not_pull_heavy_modules():
    r = _run_python(
        "import sys, cpuformer, cpuformer.ops\n"
        "heavy = [m for m in ('torch', 'transformers', 'tokenizers', 'onnxruntime', 'scipy') if m in sys.modules]\n"
        "print(heavy)"
    )
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "[]"


@pytest.mark.parametrize("name", cpuformer.supported_isas())
def test_cpuformer_isa_env_forces_a_path(name):
    r = _run_python("import cpuformer; print(cpuformer.isa(), cpuformer.build_info()['isa'])", CPUFORMER_ISA=name)
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == [name, name]


def test_cpuformer_isa_env_empty_means_best():
    r = _run_python("import cpuformer; print(cpuformer.isa())", CPUFORMER_ISA="")
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == cpuformer.supported_isas()[-1]


def test_cpuformer_isa_env_bogus_fails_import_clearly():
    r = _run_python("import cpuformer", CPUFORMER_ISA="avx-512")
    assert r.returncode != 0
    last = r.stderr.strip().splitlines()[-1]
    assert last.startswith("ImportError:"), r.stderr
    assert "'avx-512'" in last and "'scalar', 'avx2', 'avx512'" in last


def test_cpuformer_isa_env_bogus_message_names_the_variable():
    """Regression test for a fixed bug (cpp/cpu/isa.cc startup_isa -> parse_isa): CPUFORMER_ISA=avx-512 gives ImportError
    "isa: expected one of 'scalar', 'avx2', 'avx512', got 'avx-512'", which does not say where the value
    came from; the unsupported-ISA message of the same function does name CPUFORMER_ISA."""
    r = _run_python("import cpuformer", CPUFORMER_ISA="avx-512")
    assert "CPUFORMER_ISA" in r.stderr.strip().splitlines()[-1]


def test_build_info():
    info = cpuformer.build_info()
    expected = {
        "compiler", "cxx_flags", "openmp", "isas_compiled", "isas_supported", "isa", "cpu",
        "cpu_features", "gemm_blocking",
    }
    assert expected <= set(info)
    assert isinstance(info["compiler"], str) and info["compiler"]
    assert isinstance(info["openmp"], bool)
    assert info["isa"] == cpuformer.isa()
    assert info["isas_supported"] == cpuformer.supported_isas()
    assert "scalar" in info["isas_supported"]
    assert set(info["isas_supported"]) <= set(info["isas_compiled"])
    order = ["scalar", "avx2", "avx512"]
    assert info["isas_supported"] == sorted(info["isas_supported"], key=order.index)  # ascending
    assert {"avx2", "avx512"} <= set(info["cpu_features"])
    g = info["gemm_blocking"]
    assert set(g) == {"mr", "nr", "kc", "mc", "nc", "mb"} and all(isinstance(v, int) and v > 0 for v in g.values())
    assert g["mc"] >= g["mr"] and g["kc"] >= 1 and g["mb"] % g["mc"] == 0
    # Never built for one machine or with value-unsafe math by default (STYLE.md: dispatch).
    assert "-march=native" not in info["cxx_flags"]
    assert "-ffast-math" not in info["cxx_flags"] and "-ffinite-math-only" not in info["cxx_flags"]
    assert cpuformer.__version__


def test_public_names():
    for name in cpuformer.__all__:
        assert hasattr(cpuformer, name)
    for name in ops.__all__:
        assert callable(getattr(ops, name))
