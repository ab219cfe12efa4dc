"""Kernel-level benchmark: cpuformer.ops against NumPy and PyTorch on GEMM, softmax and layer norm.

    python bench/bench_ops.py                  # threads 1,2; about 4 minutes
    python bench/bench_ops.py --quick          # smoke run, well under a minute
    python bench/bench_ops.py --threads 1 --ops gemm --json out.json

For each thread count every implementation runs in its own fresh interpreter with OMP_NUM_THREADS,
OPENBLAS_NUM_THREADS and MKL_NUM_THREADS set (NumPy's OpenBLAS fixes its pool at import, and torch and
cpuformer each bring an OpenMP runtime that must not share a process); the parent never imports NumPy,
torch or cpuformer. The children stay up and take one shape at a time from the parent, so the
implementations are timed back to back on each shape; with --rounds > 1 the parent makes that many
passes (rotating who goes first) and keeps each result's best median, flagging results that no second
round confirms (the machine may be shared).

GEMM is reported in GFLOP/s (2·M·K·N per call) and as a share of the fp32 FMA peak measured on this
machine (thread count × per-core peak, see _util.fma_peak); softmax and layer norm in GB/s of bytes read
plus written. Each figure is the per-call median over repeats after a warm-up. PyTorch is optional:
without it its column reads n/a.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _util  # noqa: E402  (stdlib only; imports nothing that reads the thread variables)

# (M, K, N): encoder-sized projections and FFN, a square reference, decoder batches, the vocabulary
# projection, and a single-token step.
GEMM_SHAPES = [
    (4096, 512, 512),
    (4096, 512, 2048),
    (4096, 2048, 512),
    (1024, 1024, 1024),
    (32, 512, 512),
    (32, 512, 32000),
    (1, 512, 2048),
]
# [rows, cols]; the last is attention scores: batch 32 x 8 heads x 128 queries over 128 keys.
SOFTMAX_SHAPES = [(8192, 512), (2048, 2048), (32 * 8 * 128, 128)]
# The same scores with a key padding mask ("softmax_masked": keys past each row's length, uniform in
# 16..128, are -inf), as attention sees them. Masked entries must cost nothing extra: an exp that turned
# them into denormals once made every such row take microcode assists.
SOFTMAX_MASKED_SHAPES = [(32 * 8 * 128, 128)]
LAYER_NORM_SHAPES = [(4096, 512), (4096, 1024)]

IMPLS = ("cpuformer", "numpy", "torch")
OPS = ("gemm", "softmax", "layer_norm")
SEED = 1234


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--threads", default="1,2", help="comma-separated thread counts (default 1,2)")
    p.add_argument("--impls", default=",".join(IMPLS), help="subset of " + ",".join(IMPLS))
    p.add_argument("--ops", default=",".join(OPS), help="subset of " + ",".join(OPS))
    p.add_argument("--gemm-shapes", metavar="MxKxN,...",
                   help="GEMM shapes to run instead of the default list, e.g. 3x512x2048,8x512x32000")
    p.add_argument("--quick", action="store_true", help="short timings, one round: a smoke run")
    p.add_argument("--rounds", type=int, default=None,
                   help="passes over every shape; the best median is kept (default 3; 1 with --quick)")
    p.add_argument("--target-time", type=float, default=None,
                   help="seconds of timed calls per measurement and round (default 0.5; 0.08 with --quick)")
    p.add_argument("--seed", type=int, default=SEED)
    p.add_argument("--json", metavar="PATH", help="also write the records to PATH")
    p.add_argument("--reprobe", action="store_true", help="measure the FMA peak again instead of the cached value")
    p.add_argument("--verbose", action="store_true", help="pass the children's progress through to stderr")
    p.add_argument("--child", metavar="CONFIG", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child is None:
        try:
            args.threads = _util.parse_threads(args.threads)
        except ValueError as e:
            p.error(f"--threads: {e}")
        args.impls = [s.strip() for s in args.impls.split(",") if s.strip()]
        args.ops = [s.strip() for s in args.ops.split(",") if s.strip()]
        for name, got, allowed in (("--impls", args.impls, IMPLS), ("--ops", args.ops, OPS)):
            bad = [x for x in got if x not in allowed]
            if bad or not got:
                p.error(f"{name}: expected a subset of {','.join(allowed)}, got {','.join(got) or 'nothing'}")
        args.gemm_shapes = _parse_gemm_shapes(p, args.gemm_shapes) if args.gemm_shapes else list(GEMM_SHAPES)
        if args.rounds is None:
            args.rounds = 1 if args.quick else 3
        if args.rounds < 1:
            p.error("--rounds: expected >= 1")
        if args.target_time is None:
            args.target_time = 0.08 if args.quick else 0.5
    return args


def _parse_gemm_shapes(p, text: str) -> list:
    shapes = []
    for item in (s.strip() for s in text.split(",")):
        dims = item.lower().replace("×", "x").split("x")
        if len(dims) != 3 or not all(d.isdigit() and int(d) > 0 for d in dims):
            p.error(f"--gemm-shapes: expected M×K×N with positive integers (e.g. 32x512x512), got {item!r}")
        shapes.append(tuple(int(d) for d in dims))
    return shapes


# ---------------------------------------------------------------------------------------------------------
# Child: one implementation at one thread count. NumPy and friends are imported only here.


def _setup_impl(impl: str, threads: int):
    """Imports the implementation, sizes its threads; returns (module, isa label, thread count in effect)."""
    import numpy as np

    if impl == "cpuformer":
        import cpuformer

        cpuformer.set_num_threads(threads)
        return cpuformer, cpuformer.isa(), cpuformer.get_num_threads()
    if impl == "numpy":
        return np, _openblas_label(np), _openblas_threads(np)
    if impl == "torch":
        import torch

        torch.set_num_threads(threads)
        return torch, "torch " + torch.backends.cpu.get_cpu_capability().lower(), torch.get_num_threads()
    raise ValueError(impl)


def _openblas_lib(np):
    import ctypes
    import glob

    libs_dir = os.path.join(os.path.dirname(os.path.dirname(np.__file__)), "numpy.libs")
    for path in glob.glob(os.path.join(libs_dir, "*openblas*.so*")):
        try:
            return ctypes.CDLL(path)
        except OSError:
            continue
    return None


def _openblas_call(np, names, restype):
    lib = _openblas_lib(np)
    for name in names:
        fn = getattr(lib, name, None) if lib is not None else None
        if fn is not None:
            fn.restype = restype
            return fn()
    return None


def _openblas_label(np) -> str:
    import ctypes

    core = _openblas_call(
        np, ("scipy_openblas_get_corename64_", "scipy_openblas_get_corename", "openblas_get_corename"), ctypes.c_char_p
    )
    return "openblas " + core.decode().lower() if core else "numpy blas"


def _openblas_threads(np):
    import ctypes

    return _openblas_call(
        np, ("scipy_openblas_get_num_threads64_", "scipy_openblas_get_num_threads", "openblas_get_num_threads"),
        ctypes.c_int,
    )


def _gemm_calls(impl, mod, a, b):
    """[(implementation name, zero-argument call)] for a @ b into a preallocated output."""
    import numpy as np

    m, n = a.shape[0], b.shape[1]
    if impl == "cpuformer":
        ops = mod.ops
        c = np.empty((m, n), np.float32)
        w = ops.pack_weight(b)
        return [
            ("cpuformer", lambda: ops.matmul(a, b, out=c)),
            ("cpuformer packed", lambda: ops.matmul(a, w, out=c)),
        ]
    if impl == "numpy":
        c = np.empty((m, n), np.float32)
        return [("numpy", lambda: np.matmul(a, b, out=c))]
    torch = mod
    ta, tb = torch.from_numpy(a), torch.from_numpy(b)
    tc = torch.empty((m, n), dtype=torch.float32)
    return [("torch", lambda: torch.matmul(ta, tb, out=tc))]


def _numpy_softmax(np, x, buf, tmp):
    np.max(x, axis=-1, keepdims=True, out=tmp)
    np.subtract(x, tmp, out=buf)
    np.exp(buf, out=buf)
    np.sum(buf, axis=-1, keepdims=True, out=tmp)
    np.divide(buf, tmp, out=buf)
    return buf


def _numpy_layer_norm(np, x, w, b, eps, buf, tmp):
    n = x.shape[-1]
    np.mean(x, axis=-1, keepdims=True, out=tmp)
    np.subtract(x, tmp, out=buf)
    np.einsum("ij,ij->i", buf, buf, out=tmp[:, 0])  # sum of squares without a temporary
    tmp /= n
    tmp += eps
    np.sqrt(tmp, out=tmp)
    np.divide(buf, tmp, out=buf)
    np.multiply(buf, w, out=buf)
    np.add(buf, b, out=buf)
    return buf


def _rowwise_call(op, impl, mod, x, w, b):
    import numpy as np

    rows = x.shape[0]
    eps = 1e-5
    if impl == "cpuformer":
        ops = mod.ops
        y = np.empty_like(x)
        if op.startswith("softmax"):
            return lambda: ops.softmax(x, out=y)
        return lambda: ops.layer_norm(x, w, b, eps, out=y)
    if impl == "numpy":
        buf = np.empty_like(x)
        tmp = np.empty((rows, 1), np.float32)
        if op.startswith("softmax"):
            return lambda: _numpy_softmax(np, x, buf, tmp)
        return lambda: _numpy_layer_norm(np, x, w, b, eps, buf, tmp)
    torch = mod
    tx, tw, tb = torch.from_numpy(x), torch.from_numpy(w), torch.from_numpy(b)
    if op.startswith("softmax"):
        return lambda: torch.softmax(tx, dim=-1)
    f = torch.nn.functional.layer_norm
    n = x.shape[1]
    return lambda: f(tx, (n,), tw, tb, eps)


def _measure_one(req: dict, impl: str, mod, config: dict, timing: dict) -> list:
    """Runs one request ({"bench", "shape"}) and returns its records (two for cpuformer's GEMM)."""
    import numpy as np

    bench, shape = req["bench"], tuple(req["shape"])
    # Inputs from a seed derived from the shape: every implementation sees the same numbers.
    rng = np.random.default_rng([config["seed"]] + list(shape))
    out = []
    if bench == "matmul":
        m, k, n = shape
        a = rng.standard_normal((m, k), dtype=np.float32)
        b = rng.standard_normal((k, n), dtype=np.float32)
        for name, fn in _gemm_calls(impl, mod, a, b):
            t = _util.measure(fn, **timing)
            out.append((name, t, "gflops", 2.0 * m * k * n))
    else:
        rows, cols = shape
        x = rng.standard_normal((rows, cols), dtype=np.float32) * np.float32(3.0)
        if bench == "softmax_masked":
            lengths = rng.integers(16, cols + 1, size=rows)
            x[np.arange(cols)[None, :] >= lengths[:, None]] = -np.inf
        w = rng.standard_normal(cols, dtype=np.float32)
        b = rng.standard_normal(cols, dtype=np.float32)
        fn = _rowwise_call(bench, impl, mod, x, w, b)
        t = _util.measure(fn, **timing)
        nbytes = 2 * x.nbytes + (w.nbytes + b.nbytes if bench == "layer_norm" else 0)
        out.append((impl, t, "gbps", nbytes))
    return [
        {"benchmark": bench, "implementation": name, "shape": list(shape), **t, key: work / t["median_s"] * 1e-9}
        for name, t, key, work in out
    ]


def child_main(config: dict) -> int:
    proto = _util.child_channel()
    impl, threads = config["impl"], config["threads"]
    for var in _util.THREAD_ENV_VARS:  # the parent sets these already; a hand-started child gets them too
        os.environ[var] = str(threads)
    try:
        import numpy as np

        mod, isa, active_threads = _setup_impl(impl, threads)
    except ImportError as e:
        _util.send(proto, {"error": f"not available ({e})"})
        return 0
    info = {"isa": isa, "active_threads": active_threads}
    if impl == "cpuformer":
        info.update(version=mod.__version__, build=mod.build_info())
    else:
        info["version"] = mod.__version__ if impl == "torch" else np.__version__
    if active_threads is not None and active_threads != threads:
        print(f"warning: {impl} runs {active_threads} threads, asked for {threads}", file=sys.stderr)
    _util.send(proto, {"info": info})

    quick = config["quick"]
    timing = dict(target_s=config["target_time"], min_repeats=3 if quick else 5, warmup_s=0.02 if quick else 0.1)
    ctx = mod.inference_mode() if impl == "torch" else contextlib.nullcontext()
    with ctx:
        for line in sys.stdin:
            req = json.loads(line)
            if req.get("cmd") == "quit":
                break
            try:
                records = _measure_one(req, impl, mod, config, timing)
                for rec in records:
                    rec.update(isa=isa, threads=threads)
                    if config.get("verbose"):
                        v = rec.get("gflops", rec.get("gbps"))
                        print(f"  [{threads}T] {rec['benchmark']:10s} {rec['implementation']:16s} "
                              f"{str(tuple(rec['shape'])):20s} {v:8.1f}", file=sys.stderr, flush=True)
                _util.send(proto, {"records": records})
            except Exception as e:  # report and keep serving; the parent shows n/a for this cell
                _util.send(proto, {"records": [], "error": f"{type(e).__name__}: {e}"})
    return 0


# ---------------------------------------------------------------------------------------------------------
# Parent: probe, run the children, merge, print one table.


def _key(rec):
    return (rec["threads"], rec["benchmark"], tuple(rec["shape"]), rec["implementation"])


def _merge_best(into: dict, records: list) -> None:
    """Keeps, per result, the round with the lowest median; min_s is the minimum over all rounds."""
    for rec in records:
        k = _key(rec)
        old = into.get(k)
        if old is None:
            into[k] = dict(rec, round_medians_s=[rec["median_s"]])
            continue
        best = rec if rec["median_s"] < old["median_s"] else old
        into[k] = dict(best, min_s=min(rec["min_s"], old["min_s"]),
                       round_medians_s=old["round_medians_s"] + [rec["median_s"]])


# A result is flagged as disturbed when no second round comes within this factor of its best median (with
# one round: when its median is far above its fastest repeat): another process took a core meanwhile.
CONFIRM = 1.15
NOISY_SPREAD = 1.5


def _noisy(rec) -> bool:
    meds = sorted(rec["round_medians_s"])
    if len(meds) == 1:
        return rec["median_s"] / rec["min_s"] > NOISY_SPREAD
    return meds[1] / meds[0] > CONFIRM


def _plan(ops, gemm_shapes) -> list:
    """[(benchmark, shape)] in table order."""
    plan = []
    if "gemm" in ops:
        plan += [("matmul", s) for s in gemm_shapes]
    if "softmax" in ops:
        plan += [("softmax", s) for s in SOFTMAX_SHAPES]
        plan += [("softmax_masked", s) for s in SOFTMAX_MASKED_SHAPES]
    if "layer_norm" in ops:
        plan += [("layer_norm", s) for s in LAYER_NORM_SHAPES]
    return plan


def _shape_str(shape) -> str:
    return "×".join(str(s) for s in shape)


def build_table(records: dict, threads: list, impls: list, ops: list, gemm_shapes: list,
                peak_per_core: float) -> str:
    gemm_cols = []
    if "cpuformer" in impls:
        gemm_cols += ["cpuformer", "cpuformer packed"]
    gemm_cols += [i for i in ("numpy", "torch") if i in impls]
    header = ["threads", "op", "shape", "unit"] + gemm_cols + ["cpuformer / best peer", "packed / best peer"]
    align = ["r", "l", "l", "l"] + ["r"] * (len(gemm_cols) + 2)
    rows = []
    plan = _plan(ops, gemm_shapes)
    for t in threads:
        peak = peak_per_core * t
        for bench, shape in plan:
            is_gemm = bench == "matmul"
            metric = "gflops" if is_gemm else "gbps"
            vals, noisy = {}, {}
            for col in gemm_cols:
                rec = records.get((t, bench, tuple(shape), col))
                vals[col] = rec[metric] if rec else None
                noisy[col] = bool(rec) and rec["noisy"]
            cells = []
            for col in gemm_cols:
                if not is_gemm and col == "cpuformer packed":
                    cells.append("—")
                    continue
                v = vals.get(col)
                mark = " †" if noisy.get(col) else ""
                if v is None:
                    cells.append("n/a")
                elif is_gemm:
                    cells.append(f"{_util.fmt_num(v)} ({100.0 * v / peak:.0f}%){mark}")
                else:
                    cells.append(_util.fmt_num(v) + mark)
            peers = [vals.get(p) for p in ("numpy", "torch") if vals.get(p) is not None]
            best_peer = max(peers) if peers else None

            def ratio(v):
                return "n/a" if v is None or best_peer is None else f"{v / best_peer:.2f}"

            r_raw = ratio(vals.get("cpuformer"))
            r_packed = ratio(vals.get("cpuformer packed")) if is_gemm else "—"
            unit = "GFLOP/s (% peak)" if is_gemm else "GB/s"
            rows.append([str(t), bench, _shape_str(shape), unit] + cells + [r_raw, r_packed])
    return _util.markdown_table(header, rows, align)


def parent_main(args) -> int:
    t_start = time.perf_counter()
    load_start = _util.load_average()
    script = os.path.abspath(__file__)
    commit = _util.git_commit()
    peak = _util.fma_peak(refresh=args.reprobe)
    flags = _util.cpu_flags()
    cpu_avx512 = "avx512f" in flags or bool(peak.get("zmm"))
    config = {
        "ops": args.ops,
        "quick": args.quick,
        "target_time": args.target_time,
        "seed": args.seed,
        "verbose": args.verbose,
    }

    plan = _plan(args.ops, args.gemm_shapes)

    children: dict = {}
    for t in args.threads:
        for impl in args.impls:
            child = _util.Child(script, impl, t, config, verbose=args.verbose)
            if child.error:
                print(f"threads={t} {impl}: {child.error}", file=sys.stderr, flush=True)
            children[(impl, t)] = child

    merged: dict = {}
    errors: dict = {}
    infos = {impl: c.info for (impl, _), c in children.items() if c.info}
    try:
        for rnd in range(args.rounds):
            for t in args.threads:
                t0 = time.perf_counter()
                for i, (bench, shape) in enumerate(plan):
                    # Implementations back to back on each shape, starting with a different one each time,
                    # so a busy spell on the shared machine does not always land on the same side.
                    shift = (rnd + i) % len(args.impls)
                    for impl in args.impls[shift:] + args.impls[:shift]:
                        child = children[(impl, t)]
                        reply = child.request({"bench": bench, "shape": list(shape)})
                        if reply is None:
                            errors.setdefault(impl, child.error)
                            continue
                        if reply.get("error"):
                            errors.setdefault(impl, f"{bench} {_shape_str(shape)}: {reply['error']}")
                        _merge_best(merged, reply.get("records", []))
                print(f"[round {rnd + 1}/{args.rounds}] threads={t}: {time.perf_counter() - t0:.1f} s",
                      file=sys.stderr, flush=True)
    finally:
        for child in children.values():
            child.close()
    for (impl, _), child in children.items():
        if child.error and impl not in errors:
            errors[impl] = child.error

    # The choice of peak: the 512-bit figure when cpuformer runs its AVX-512 path or the CPU has AVX-512.
    cf_isa = next((r["isa"] for r in merged.values() if r["implementation"] == "cpuformer"), None)
    use_zmm = bool(peak.get("zmm")) and (cf_isa == "avx512" or cpu_avx512)
    per_core = peak["zmm"] if use_zmm else peak["ymm"]
    which = "zmm" if use_zmm else "ymm"
    for rec in merged.values():
        rec["commit"] = commit
        rec["peak_gflops"] = per_core * rec["threads"] if rec["benchmark"] == "matmul" else None
        rec["pct_peak"] = (100.0 * rec["gflops"] / rec["peak_gflops"]) if rec["benchmark"] == "matmul" else None
        rec["noisy"] = _noisy(rec)

    elapsed = time.perf_counter() - t_start
    load_end = _util.load_average()
    load = "n/a" if load_start is None or load_end is None else f"{load_start:.1f} at start, {load_end:.1f} at end"
    zmm_s = f"{peak['zmm']:.1f}" if peak.get("zmm") else "n/a"
    ymm_s = f"{peak['ymm']:.1f}" if peak.get("ymm") else "n/a"
    lines = [
        f"## cpuformer ops benchmark — commit {commit}",
        "",
        f"- CPU: {peak.get('cpu', _util.cpu_model())}, {os.cpu_count()} logical CPUs"
        f"{', AVX-512' if cpu_avx512 else ''}",
        f"- fp32 FMA peak per core: zmm {zmm_s} GFLOP/s, ymm {ymm_s} GFLOP/s — {peak['source']}",
        f"- % peak uses the {which} figure × threads: "
        + ", ".join(f"{t} thread{'s' if t > 1 else ''} = {per_core * t:.0f} GFLOP/s" for t in args.threads),
        "- implementations: "
        + "; ".join(_describe(impl, infos[impl]) for impl in args.impls if impl in infos),
        "- GEMM: C[M,N] = A[M,K] @ B[K,N] float32 into a preallocated output; 'cpuformer' takes raw B, "
        "'packed' a B from ops.pack_weight (as layers use it). Ratio = cpuformer / max(numpy, torch).",
        "- softmax / layer_norm: GB/s = bytes read + written per call; NumPy written out with out= buffers "
        "(stable softmax, two-pass layer norm), torch plain calls. Main memory here is about 25–45 GB/s; "
        "these shapes fit in L2/L3, so higher figures are cache bandwidth.",
        f"- median per call over repeats after warm-up; best of {args.rounds} round(s); "
        f"~{args.target_time:g} s timed per measurement. Shared machine: compare ratios within a run.",
        f"- total runtime: {elapsed:.0f} s; 1-minute load average {load} (on {os.cpu_count()} CPUs; "
        "this run adds 1 to it: more means other work shared the cores, which hurts 2-thread results most)",
    ]
    for impl, err in errors.items():
        lines.append(f"- {impl}: {err}")
    print("\n".join(lines))
    print()
    print(build_table(merged, args.threads, args.impls, args.ops, args.gemm_shapes, per_core))
    n_noisy = sum(r["noisy"] for r in merged.values())
    if n_noisy:
        if args.rounds > 1:
            why = f"no second round within {CONFIRM:g}x of the best median"
        else:
            why = f"median more than {NOISY_SPREAD:g}x the fastest repeat"
        print(f"\n† {n_noisy} of {len(merged)} results disturbed ({why}): another process used a core; "
              "rerun, or raise --rounds.")

    if args.json:
        with open(args.json, "w") as f:
            json.dump(sorted(merged.values(), key=lambda r: _key(r)), f, indent=1)
        print(f"\nrecords written to {args.json}", file=sys.stderr)
    return 0


def _describe(impl: str, info: dict) -> str:
    text = f"{impl} {info.get('version', '?')} ({info.get('isa', '?')})"
    build = info.get("build") or {}
    blocking = build.get("gemm_blocking")
    if blocking:
        text += " GEMM " + ", ".join(f"{k}={v}" for k, v in blocking.items())
    return text


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.child is not None:
        return child_main(json.loads(args.child))
    return parent_main(args)


if __name__ == "__main__":
    sys.exit(main())
