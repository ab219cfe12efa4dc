"""Model-level benchmark: the base Transformer forward in cpuformer, PyTorch and ONNX Runtime.

    python bench/bench_model.py                 # threads 1,2, batch 32; about 5-8 minutes
    python bench/bench_model.py --quick         # smoke run: batch 4, 3 repeats, about a minute
    python bench/bench_model.py --cases a,b --threads 1 --json out.json

The model is the base size of "Attention Is All You Need" as torch.nn.Transformer builds it (d_model 512,
8 heads, d_ff 2048, 6 + 6 layers, post-LN, relu, batch_first=True), random weights from a fixed seed, in
eval mode. Three cases:

    (a) encoder forward, batch 32 x 128 tokens, no padding;
    (b) encoder forward, lengths uniform in 16..128 (fixed seed), suffix padding given as
        src_key_padding_mask;
    (c) encoder-decoder forward, 32 x 128 source and 32 x 128 target with the causal tgt_mask.

Implementations: cpuformer (TransformerEncoder / Transformer.from_torch, NumPy in and out, model.num_threads
set); PyTorch under torch.inference_mode with its fast path where it applies (nn.TransformerEncoder's
fused layers, and nested tensors for the padded batch); ONNX Runtime on the same model exported with
torch.onnx.export (the default exporter, else the legacy TorchScript one), ORT_ENABLE_ALL, intra-op
threads = thread count, one inter-op thread, sequential execution.

How it runs: a preparation process (the only one importing all three libraries) builds the model, writes
the inputs as .npy, the weights for torch (torch.save), for cpuformer (from_torch(...).save()) and the ONNX
graphs into a temporary directory. Then, per thread count and case, every implementation gets a fresh
interpreter with OMP_NUM_THREADS etc. set before any import, loading only its own library, so its peak
resident memory (ru_maxrss) is its own. Those children stay up together and the parent asks them for one
timed forward at a time, in rotating order: a busy spell on the shared machine hits all of them alike.
After one warm-up call per child, median and min over --repeats timed calls. The first output of every
child is compared with cpuformer's on the real positions (max |difference| / max |reference|).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _util  # noqa: E402  (stdlib only; imports nothing that reads the thread variables)

D_MODEL, NHEAD, D_FF, N_ENC, N_DEC = 512, 8, 2048, 6, 6
SEQ_LEN = 128
BATCH, QUICK_BATCH = 32, 4
MIN_LEN = 16  # case (b): lengths uniform in MIN_LEN..SEQ_LEN
SEED = 1234

CASES = ("a", "b", "c")
IMPLS = ("cpuformer", "torch", "onnxruntime")
PEERS = ("torch", "onnxruntime")
# Above this, max |impl - cpuformer| / max |cpuformer| means a wrong answer, not rounding (fp32 through 6-12
# layers agrees to ~1e-6 here).
REL_ERR_LIMIT = 1e-3
# A row whose median is this far above its fastest call was disturbed by other work on the machine.
NOISY_SPREAD = 1.3


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--threads", default="1,2", help="comma-separated thread counts (default 1,2)")
    p.add_argument("--impls", default=",".join(IMPLS), help="subset of " + ",".join(IMPLS))
    p.add_argument("--cases", default=",".join(CASES), help="subset of a,b,c (see the module docstring)")
    p.add_argument("--quick", action="store_true", help=f"smoke run: batch {QUICK_BATCH}, 3 repeats")
    p.add_argument("--batch", type=int, default=None, help=f"batch size (default {BATCH}; {QUICK_BATCH} with --quick)")
    p.add_argument("--repeats", type=int, default=None, help="timed calls per result (default 5; 3 with --quick)")
    p.add_argument("--warmup", type=int, default=1, help="untimed calls per child before timing (default 1, min 1)")
    p.add_argument("--no-gemm-share", action="store_true", help="skip timing cpuformer's GEMMs separately")
    p.add_argument("--seed", type=int, default=SEED)
    p.add_argument("--json", metavar="PATH", help="also write the records to PATH")
    p.add_argument("--keep", metavar="DIR", help="prepare into DIR and keep it (default: a temporary directory)")
    p.add_argument("--reprobe", action="store_true", help="measure the FMA peak again instead of the cached value")
    p.add_argument("--verbose", action="store_true", help="pass the children's stderr through")
    p.add_argument("--child", metavar="CONFIG", help=argparse.SUPPRESS)
    p.add_argument("--prepare", metavar="CONFIG", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child is None and args.prepare is None:
        try:
            args.threads = _util.parse_threads(args.threads)
        except ValueError as e:
            p.error(f"--threads: {e}")
        args.impls = [s.strip() for s in args.impls.split(",") if s.strip()]
        args.cases = [s.strip().lower().strip("()") for s in args.cases.split(",") if s.strip()]
        for name, got, allowed in (("--impls", args.impls, IMPLS), ("--cases", args.cases, CASES)):
            bad = [x for x in got if x not in allowed]
            if bad or not got:
                p.error(f"{name}: expected a subset of {','.join(allowed)}, got {','.join(got) or 'nothing'}")
        args.impls = [i for i in IMPLS if i in args.impls]  # cpuformer first: it is the reference
        args.cases = [c for c in CASES if c in args.cases]
        if args.batch is None:
            args.batch = QUICK_BATCH if args.quick else BATCH
        if args.repeats is None:
            args.repeats = 3 if args.quick else 5
        if args.batch < 1 or args.repeats < 1 or args.warmup < 1:
            p.error("--batch, --repeats and --warmup must be >= 1")
    return args


# ---------------------------------------------------------------------------------------------------------
# Work counted analytically (pure Python: the parent uses it too)


def forward_flops(src_lengths, tgt_lengths=None, causal=True, d=D_MODEL, f=D_FF, n_enc=N_ENC, n_dec=N_DEC) -> float:
    """FLOPs (2 per multiply-add) of one forward pass over the real tokens only.

    Encoder layer, per token: Q, K, V and output projections 2·4·D² and the FFN 2·2·D·F, plus attention
    2·2·L·D (QKᵀ and PV over the L keys of its own sequence). Decoder layer, per target token: self-attention
    projections 2·4·D², its attention over the keys it may see (i+1 for query i when causal), cross-attention
    Q and output projections 2·2·D² and attention over the S source tokens 2·2·S·D, the FFN; and per source
    token the cross-attention K and V projections of the memory, 2·2·D². Biases, softmax, layer norms and
    the activation are left out (well under 1%)."""
    proj = 2 * (4 * d * d + 2 * d * f)
    total = 0.0
    for s in src_lengths:
        total += n_enc * s * (proj + 4 * s * d)
    if tgt_lengths is None:
        return total
    for s, t in zip(src_lengths, tgt_lengths):
        keys = t * (t + 1) / 2 if causal else t * t  # sum over queries of the keys each attends to
        layer = t * (2 * 4 * d * d + 2 * 2 * d * d + 2 * 2 * d * f) + s * 2 * 2 * d * d
        layer += 4 * d * keys + 4 * d * t * s
        total += n_dec * layer
    return total


def gemm_shapes(src_tokens: int, tgt_tokens=None, d=D_MODEL, f=D_FF, n_enc=N_ENC, n_dec=N_DEC) -> list:
    """[(M, K, N, activation, count)]: the weight GEMMs cpuformer's layers run on packed rows (M = real
    tokens), with how often each occurs in one forward pass."""
    counts: dict = {}

    def add(m, k, n, act, times):
        if m and times:
            key = (m, k, n, act)
            counts[key] = counts.get(key, 0) + times

    ms = src_tokens
    add(ms, d, 3 * d, None, n_enc)  # self-attention in_proj (Q, K, V)
    add(ms, d, d, None, n_enc)  # out_proj
    add(ms, d, f, "relu", n_enc)  # linear1 with the activation in the epilogue
    add(ms, f, d, None, n_enc)  # linear2
    if tgt_tokens is not None:
        mt = tgt_tokens
        add(mt, d, 3 * d, None, n_dec)  # self-attention in_proj
        add(mt, d, d, None, 3 * n_dec)  # self out_proj, cross Q projection, cross out_proj
        add(ms, d, 2 * d, None, n_dec)  # cross K, V projections of the memory
        add(mt, d, f, "relu", n_dec)
        add(mt, f, d, None, n_dec)
    return [(m, k, n, act, c) for (m, k, n, act), c in counts.items()]


def case_label(case: str, batch: int, seq: int = SEQ_LEN) -> str:
    return {
        "a": f"(a) encoder {batch}×{seq}",
        "b": f"(b) encoder {batch}×[{MIN_LEN}..{seq}] padded",
        "c": f"(c) enc-dec {batch}×{seq}→{batch}×{seq} causal",
    }[case]


# ---------------------------------------------------------------------------------------------------------
# Preparation: the model, its three serialisations and the inputs (imports torch, cpuformer, onnx)


def _export_onnx(torch, module, args, path, input_names, notes):
    """torch.onnx.export with the default exporter; once that fails, the legacy TorchScript one
    (dynamo=False) for this and every later export. ``notes`` records which one ran and why."""
    import warnings

    kwargs = dict(input_names=input_names, output_names=["out"])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the legacy exporter's deprecation and tracer warnings
        if not notes.get("exporter", "").startswith("legacy"):
            try:
                torch.onnx.export(module, args, path, **kwargs)
                notes["exporter"] = "torch.onnx.export default (dynamo)"
                return
            except Exception as e:  # noqa: BLE001  (any failure: fall back to the legacy exporter)
                msg = (str(e).strip().splitlines() or [""])[0]
                notes["exporter"] = "legacy TorchScript exporter (dynamo=False)"
                notes["fallback_reason"] = f"default exporter failed ({type(e).__name__}: {msg[:160]})"
                print(f"onnx: {notes['fallback_reason']}; using dynamo=False", file=sys.stderr, flush=True)
        torch.onnx.export(module, args, path, dynamo=False, **kwargs)


def prepare_main(config: dict) -> int:
    """Writes inputs, weights and ONNX graphs into config['workdir'] and manifest.json describing them."""
    t0 = time.perf_counter()
    for var in _util.THREAD_ENV_VARS:
        os.environ.setdefault(var, str(config["threads"]))
    import numpy as np
    import torch

    torch.set_num_threads(config["threads"])
    wd, batch, seed, cases = config["workdir"], config["batch"], config["seed"], config["cases"]
    L, D = SEQ_LEN, D_MODEL

    def path(name):
        return os.path.join(wd, name)

    # Inputs: one generator, drawn in a fixed order, so every run with this seed sees the same numbers.
    rng = np.random.default_rng(seed)
    src_a = rng.standard_normal((batch, L, D), dtype=np.float32)
    src_b = rng.standard_normal((batch, L, D), dtype=np.float32)  # padded positions keep their noise
    lengths_b = rng.integers(MIN_LEN, L + 1, size=batch)
    pad_b = np.arange(L)[None, :] >= lengths_b[:, None]  # True = padding (suffix)
    src_c = rng.standard_normal((batch, L, D), dtype=np.float32)
    tgt_c = rng.standard_normal((batch, L, D), dtype=np.float32)
    tgt_mask = torch.nn.Transformer.generate_square_subsequent_mask(L).numpy().astype(np.float32)
    for name, arr in (("src_a", src_a), ("src_b", src_b), ("pad_b", pad_b), ("src_c", src_c), ("tgt_c", tgt_c),
                      ("tgt_mask", tgt_mask)):
        np.save(path(name + ".npy"), arr)

    torch.manual_seed(seed)
    model = torch.nn.Transformer(
        d_model=D, nhead=NHEAD, num_encoder_layers=N_ENC, num_decoder_layers=N_DEC, dim_feedforward=D_FF,
        dropout=0.1, activation="relu", batch_first=True, norm_first=False,
    ).eval()
    manifest = {"batch": batch, "seed": seed, "lengths_b": [int(x) for x in lengths_b], "torch": torch.__version__,
                "use_nested_tensor": bool(getattr(model.encoder, "use_nested_tensor", False))}
    enc_cases = [c for c in cases if c in ("a", "b")]
    if enc_cases:
        torch.save(model.encoder.state_dict(), path("encoder.pt"))
    if "c" in cases:
        torch.save(model.state_dict(), path("transformer.pt"))

    if "cpuformer" in config["impls"]:
        import cpuformer

        if enc_cases:
            cpuformer.TransformerEncoder.from_torch(model.encoder).save(path("encoder.cpuformer"))
        if "c" in cases:
            cpuformer.Transformer.from_torch(model).save(path("transformer.cpuformer"))

    if "onnxruntime" in config["impls"]:
        notes: dict = {}

        class EncoderPadded(torch.nn.Module):
            def __init__(self, enc):
                super().__init__()
                self.enc = enc

            def forward(self, src, src_key_padding_mask):
                return self.enc(src, src_key_padding_mask=src_key_padding_mask)

        class Full(torch.nn.Module):
            def __init__(self, m):
                super().__init__()
                self.m = m

            def forward(self, src, tgt, tgt_mask):
                return self.m(src, tgt, tgt_mask=tgt_mask)

        # The wrappers must be in eval mode too: the exporter restores each module's mode on the way out,
        # and a wrapper left in training mode would switch the whole model (dropout) back on.
        t = torch.from_numpy
        if "a" in cases:
            _export_onnx(torch, model.encoder, (t(src_a),), path("encoder.onnx"), ["src"], notes)
        if "b" in cases:
            _export_onnx(torch, EncoderPadded(model.encoder).eval(), (t(src_b), t(pad_b)),
                         path("encoder_padded.onnx"), ["src", "src_key_padding_mask"], notes)
        if "c" in cases:
            _export_onnx(torch, Full(model).eval(), (t(src_c), t(tgt_c), t(tgt_mask)), path("transformer.onnx"),
                         ["src", "tgt", "tgt_mask"], notes)
        manifest["onnx"] = notes
        if model.training:
            raise RuntimeError("the ONNX export left the model in training mode")
    manifest["prepare_s"] = time.perf_counter() - t0
    with open(path("manifest.json"), "w") as f:
        json.dump(manifest, f)
    return 0


# ---------------------------------------------------------------------------------------------------------
# Child: one implementation, one thread count, one case. Imports only its own library.


def _load_inputs(np, wd: str, case: str) -> dict:
    def ld(name):
        return np.load(os.path.join(wd, name + ".npy"))

    if case == "a":
        return {"src": ld("src_a")}
    if case == "b":
        return {"src": ld("src_b"), "src_key_padding_mask": ld("pad_b")}
    return {"src": ld("src_c"), "tgt": ld("tgt_c"), "tgt_mask": ld("tgt_mask")}


def _setup(impl: str, case: str, threads: int, wd: str):
    """(forward: () -> NumPy array, info dict)."""
    import numpy as np

    x = _load_inputs(np, wd, case)
    if impl == "cpuformer":
        import cpuformer

        cpuformer.set_num_threads(threads)
        if case == "c":
            model = cpuformer.Transformer.load(os.path.join(wd, "transformer.cpuformer"))
        else:
            model = cpuformer.TransformerEncoder.load(os.path.join(wd, "encoder.cpuformer"))
        model.num_threads = threads
        info = {"version": cpuformer.__version__, "isa": cpuformer.isa(), "active_threads": model.num_threads,
                "build": cpuformer.build_info()}
        if case == "a":
            return (lambda: model(x["src"])), info
        if case == "b":
            return (lambda: model(x["src"], src_key_padding_mask=x["src_key_padding_mask"])), info
        return (lambda: model(x["src"], x["tgt"], tgt_mask=x["tgt_mask"])), info

    if impl == "torch":
        import torch

        torch.set_num_threads(threads)
        try:
            torch.set_num_interop_threads(1)
        except RuntimeError:  # already set in this process (only when called by hand, not in a child)
            pass
        nn = torch.nn
        # Built on the meta device and given the saved tensors (memory-mapped, not copied), so that peak
        # memory is the weights once, not a random initialisation plus a loaded copy.
        with torch.device("meta"):
            if case == "c":
                model = nn.Transformer(D_MODEL, NHEAD, N_ENC, N_DEC, D_FF, dropout=0.1, activation="relu",
                                       batch_first=True)
            else:
                layer = nn.TransformerEncoderLayer(D_MODEL, NHEAD, D_FF, dropout=0.1, activation="relu",
                                                   batch_first=True)
                model = nn.TransformerEncoder(layer, N_ENC, norm=nn.LayerNorm(D_MODEL), enable_nested_tensor=True)
        state = torch.load(os.path.join(wd, "transformer.pt" if case == "c" else "encoder.pt"), mmap=True,
                           weights_only=True)
        model.load_state_dict(state, assign=True)
        model.eval()
        t = {k: torch.from_numpy(v) for k, v in x.items()}
        enc = model.encoder if case == "c" else model
        info = {"version": torch.__version__, "isa": "torch " + torch.backends.cpu.get_cpu_capability().lower(),
                "active_threads": torch.get_num_threads(),
                "nested_tensor": bool(getattr(enc, "use_nested_tensor", False))}

        def run(f):
            def call():
                with torch.inference_mode():
                    return f().numpy()
            return call

        if case == "a":
            return run(lambda: model(t["src"])), info
        if case == "b":
            return run(lambda: model(t["src"], src_key_padding_mask=t["src_key_padding_mask"])), info
        return run(lambda: model(t["src"], t["tgt"], tgt_mask=t["tgt_mask"], tgt_is_causal=True)), info

    if impl == "onnxruntime":
        import onnxruntime as ort

        so = ort.SessionOptions()
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        so.intra_op_num_threads = threads
        so.inter_op_num_threads = 1
        so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        so.log_severity_level = 3
        name = {"a": "encoder.onnx", "b": "encoder_padded.onnx", "c": "transformer.onnx"}[case]
        sess = ort.InferenceSession(os.path.join(wd, name), so, providers=["CPUExecutionProvider"])
        # The tracer may fold an input into the graph (the causal tgt_mask becomes a constant): feed the
        # inputs the graph kept.
        names = [i.name for i in sess.get_inputs()]
        feed = {k: x[k] for k in names}
        info = {"version": ort.__version__, "isa": "ort cpu", "active_threads": threads,
                "inputs": names, "dropped_inputs": [k for k in x if k not in names]}
        return (lambda: sess.run(None, feed)[0]), info
    raise ValueError(impl)


def _lengths_b(wd: str) -> list:
    with open(os.path.join(wd, "manifest.json")) as f:
        return json.load(f)["lengths_b"]


def _real_positions(np, out, case: str, wd: str):
    """The output at real (non-padded) positions, as one array."""
    if case != "b":
        return out
    lengths = _lengths_b(wd)
    return np.concatenate([out[i, :n] for i, n in enumerate(lengths)])


def _gemm_share(np, case: str, wd: str, batch: int, threads: int, quick: bool) -> dict:
    """Times cpuformer.ops.matmul on packed weights for every weight GEMM shape of the case; the sums of
    count × median and count × min over the shapes, and the GEMMs' GFLOP/s at the medians."""
    import cpuformer

    ops = cpuformer.ops
    rng = np.random.default_rng(0)
    if case == "b":
        m_src, m_tgt = sum(_lengths_b(wd)), None
    else:
        m_src, m_tgt = batch * SEQ_LEN, (batch * SEQ_LEN if case == "c" else None)
    total_s, total_min_s, flops, parts = 0.0, 0.0, 0.0, []
    for m, k, n, act, count in gemm_shapes(m_src, m_tgt):
        a = rng.standard_normal((m, k), dtype=np.float32)
        w = ops.pack_weight(rng.standard_normal((n, k), dtype=np.float32) * np.float32(k ** -0.5), trans_b=True)
        bias = rng.standard_normal(n, dtype=np.float32)
        out = np.empty((m, n), np.float32)
        t = _util.measure(lambda: ops.matmul(a, w, bias=bias, activation=act, out=out),
                          target_s=0.1 if quick else 0.3, min_repeats=3 if quick else 5,
                          warmup_s=0.02 if quick else 0.05)
        total_s += count * t["median_s"]
        total_min_s += count * t["min_s"]
        flops += count * 2.0 * m * k * n
        parts.append({"shape": [m, k, n], "activation": act, "count": count, "median_s": t["median_s"],
                      "min_s": t["min_s"]})
    return {"gemm_s": total_s, "gemm_min_s": total_min_s, "gemm_gflops": flops / total_s * 1e-9, "gemm_parts": parts}


def _rss_mb() -> float:
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # KiB on Linux


def child_main(config: dict) -> int:
    proto = _util.child_channel()
    impl, threads, case, wd = config["impl"], config["threads"], config["case"], config["workdir"]
    for var in _util.THREAD_ENV_VARS:  # the parent sets these already; a hand-started child gets them too
        os.environ[var] = str(threads)
    started = _util.start_child(proto, impl, threads, lambda: _setup(impl, case, threads, wd))
    if started is None:
        return 0
    import numpy as np  # every implementation's setup has loaded it already
    forward, info = started
    _util.send(proto, {"info": info})

    perf = time.perf_counter
    for line in sys.stdin:
        req = json.loads(line)
        cmd = req.get("cmd")
        if cmd == "quit":
            break
        try:
            if cmd == "warmup":
                times = []
                for i in range(max(1, req["n"])):
                    t0 = perf()
                    out = forward()
                    times.append(perf() - t0)
                    if i == 0:  # the answer, for the correctness check
                        np.save(req["save"], _real_positions(np, out, case, wd))
                        out_info = {"out_shape": list(out.shape)}
                        if case == "b":
                            lengths = _lengths_b(wd)
                            pads = [out[j, n:] for j, n in enumerate(lengths) if n < out.shape[1]]
                            out_info["padded_zero"] = bool(all((p == 0).all() for p in pads))
                    del out
                _util.send(proto, {"times_s": times, "rss_mb": _rss_mb(), **out_info})
            elif cmd == "run":
                t0 = perf()
                out = forward()
                dt = perf() - t0
                del out
                _util.send(proto, {"time_s": dt, "rss_mb": _rss_mb()})
            elif cmd == "check":
                mine = np.load(req["mine"]).astype(np.float64)
                ref = np.load(req["ref"]).astype(np.float64)
                if mine.shape != ref.shape:
                    _util.send(proto, {"error": f"output shape {mine.shape} != reference {ref.shape}"})
                    continue
                diff = np.abs(mine - ref)
                scale = float(np.abs(ref).max()) or 1.0
                _util.send(proto, {"max_abs_err": float(diff.max()), "max_rel_err": float(diff.max()) / scale,
                                   "finite": bool(np.isfinite(mine).all())})
            elif cmd == "gemm":
                _util.send(proto, _gemm_share(np, case, wd, req["batch"], threads, req["quick"]))
            else:
                _util.send(proto, {"error": f"unknown command {cmd!r}"})
        except Exception as e:  # noqa: BLE001  (report and keep serving; the parent shows n/a)
            _util.send(proto, {"error": f"{type(e).__name__}: {e}"})
    return 0


# ---------------------------------------------------------------------------------------------------------
# Parent


def _prepare(args, workdir: str) -> dict:
    config = {"workdir": workdir, "batch": args.batch, "seed": args.seed, "cases": args.cases,
              "impls": args.impls, "threads": max(args.threads)}
    cmd = [sys.executable, os.path.abspath(__file__), "--prepare", json.dumps(config)]
    t0 = time.perf_counter()
    run = subprocess.run(cmd, env=_util.thread_env(max(args.threads)), capture_output=not args.verbose,
                               text=True, timeout=1800)
    if run.returncode != 0:
        tail = (run.stderr or "").strip().splitlines()[-15:] if not args.verbose else ["see stderr above"]
        raise SystemExit("preparation failed:\n  " + "\n  ".join(tail))
    with open(os.path.join(workdir, "manifest.json")) as f:
        manifest = json.load(f)
    print(f"[prepare] model, inputs and exports in {time.perf_counter() - t0:.1f} s", file=sys.stderr, flush=True)
    return manifest


def _case_work(case: str, batch: int, manifest: dict) -> tuple:
    """(FLOPs, real tokens) of one forward."""
    if case == "a":
        lens = [SEQ_LEN] * batch
        return forward_flops(lens), sum(lens)
    if case == "b":
        lens = manifest["lengths_b"]
        return forward_flops(lens), sum(lens)
    lens = [SEQ_LEN] * batch
    return forward_flops(lens, lens, causal=True), 2 * sum(lens)


def _run_case(script, args, case, threads, workdir, records, errors, infos, commit):
    """All implementations of one case at one thread count, interleaved; appends one record per impl."""
    config = {"case": case, "workdir": workdir}
    children = {}
    try:
        for impl in args.impls:
            child = _util.Child(script, impl, threads, config, verbose=args.verbose)
            if child.error:
                errors.setdefault(impl, child.error)
                print(f"{case_label(case, args.batch)} threads={threads} {impl}: {child.error}", file=sys.stderr)
                continue
            infos.setdefault(impl, {}).update(child.info)
            children[impl] = child
        results = {impl: {"times": [], "rss_mb": None} for impl in children}

        def ask(impl, msg, timeout=900.0):
            reply = children[impl].request(msg, timeout=timeout)
            if reply is None:
                errors.setdefault(impl, children[impl].error)
                del children[impl]
                return None
            if reply.get("error"):
                errors.setdefault(impl, f"{case}: {reply['error']}")
                return None
            return reply

        outs = {}
        for impl in list(children):  # cpuformer first: its answer is the reference
            outs[impl] = os.path.join(workdir, f"out_{case}_{impl}_{threads}.npy")
            reply = ask(impl, {"cmd": "warmup", "n": args.warmup, "save": outs[impl]})
            if reply:
                results[impl]["warmup_s"] = reply["times_s"]
                results[impl]["rss_mb"] = reply["rss_mb"]
                results[impl]["padded_zero"] = reply.get("padded_zero")
        order = list(children)
        for r in range(args.repeats):
            shift = r % max(1, len(order))
            for impl in order[shift:] + order[:shift]:
                if impl not in children:
                    continue
                reply = ask(impl, {"cmd": "run"})
                if reply:
                    results[impl]["times"].append(reply["time_s"])
                    results[impl]["rss_mb"] = reply["rss_mb"]
        # Correctness: everyone against cpuformer at the first thread count (or the first implementation).
        ref_impl = args.impls[0]
        ref = os.path.join(workdir, f"out_{case}_{ref_impl}_{args.threads[0]}.npy")
        for impl in list(children):
            if impl == ref_impl and threads == args.threads[0]:
                continue
            if not os.path.exists(ref):
                break
            reply = ask(impl, {"cmd": "check", "mine": outs[impl], "ref": ref})
            if reply:
                results[impl]["check"] = reply
        if "cpuformer" in children and not args.no_gemm_share:
            reply = ask("cpuformer", {"cmd": "gemm", "batch": args.batch, "quick": args.quick})
            if reply:
                results["cpuformer"]["gemm"] = reply
    finally:
        for child in children.values():
            child.close()

    for impl, res in results.items():
        if not res["times"]:
            continue
        times = res["times"]
        rec = {
            "benchmark": f"model_{case}", "case": case, "label": case_label(case, args.batch),
            "implementation": impl, "isa": infos.get(impl, {}).get("isa"), "threads": threads,
            "shape": {"batch": args.batch, "seq": SEQ_LEN, "d_model": D_MODEL, "nhead": NHEAD, "d_ff": D_FF,
                      "layers": [N_ENC, N_DEC if case == "c" else 0]},
            "median_s": statistics.median(times), "min_s": min(times), "times_s": times,
            "repeats": len(times), "warmup_s": res.get("warmup_s"), "peak_rss_mb": res["rss_mb"],
            "commit": commit,
        }
        if "check" in res:
            rec["max_rel_err"] = res["check"]["max_rel_err"]
            rec["max_abs_err"] = res["check"]["max_abs_err"]
            rec["finite"] = res["check"]["finite"]
        if res.get("padded_zero") is not None:
            rec["padded_outputs_zero"] = res["padded_zero"]
        if "gemm" in res:
            rec["gemm_s"] = res["gemm"]["gemm_s"]
            rec["gemm_gflops"] = res["gemm"]["gemm_gflops"]
            rec["gemm_parts"] = res["gemm"]["gemm_parts"]
            rec["gemm_min_s"] = res["gemm"]["gemm_min_s"]
            # Fastest over fastest: the GEMMs are timed at another moment than the model, and on a shared
            # machine the minima are the least disturbed figures of both.
            rec["gemm_share"] = res["gemm"]["gemm_min_s"] / rec["min_s"]
        records.append(rec)
        print(f"  {rec['label']:38s} {threads}T {impl:12s} median {1e3 * rec['median_s']:9.1f} ms  "
              f"min {1e3 * rec['min_s']:9.1f} ms  rss {rec['peak_rss_mb'] or 0:7.0f} MB", file=sys.stderr, flush=True)


def build_table(records: list, args, per_core_peak: float, work: dict) -> str:
    header = ["case", "threads", "implementation", "median ms", "min ms", "tokens/s", "GFLOP/s", "% peak",
              "cpuformer / best peer", "peak MB", "GEMM share", "max rel err"]
    align = ["l", "r", "l"] + ["r"] * 9
    by = {(r["case"], r["threads"], r["implementation"]): r for r in records}
    rows = []
    for case in args.cases:
        flops, tokens = work[case]
        for t in args.threads:
            peers = [by[(case, t, p)] for p in PEERS if (case, t, p) in by]
            best = min(peers, key=lambda r: r["median_s"]) if peers else None
            for impl in args.impls:
                rec = by.get((case, t, impl))
                if rec is None:
                    rows.append([case_label(case, args.batch), str(t), impl] + ["n/a"] * 9)
                    continue
                med = rec["median_s"]
                gflops = flops / med * 1e-9
                mark = " †" if rec["median_s"] / rec["min_s"] > NOISY_SPREAD else ""
                if impl == "cpuformer" and best is not None:
                    speed = f"{best['median_s'] / med:.2f}× ({best['implementation']})"
                else:
                    speed = "—"
                share = f"{100.0 * rec['gemm_share']:.0f}%" if "gemm_share" in rec else "—"
                if "max_rel_err" in rec:
                    err = f"{rec['max_rel_err']:.1e}"
                    if rec["max_rel_err"] > REL_ERR_LIMIT or not rec.get("finite", True):
                        err += " WRONG"
                else:
                    err = "ref" if impl == args.impls[0] else "n/a"
                rows.append([
                    case_label(case, args.batch), str(t), impl, f"{1e3 * med:,.1f}{mark}", f"{1e3 * rec['min_s']:,.1f}",
                    f"{tokens / med:,.0f}", _util.fmt_num(gflops), f"{100.0 * gflops / (per_core_peak * t):.0f}%",
                    speed, _util.fmt_num(rec["peak_rss_mb"], 0) if rec["peak_rss_mb"] else "n/a", share, err,
                ])
    return _util.markdown_table(header, rows, align)


def parent_main(args) -> int:
    t_start = time.perf_counter()
    load_start = _util.load_average()
    script = os.path.abspath(__file__)
    commit = _util.git_commit()
    peak, use_zmm, per_core = _util.per_core_peak(refresh=args.reprobe)

    if args.keep:
        workdir = os.path.abspath(args.keep)
        os.makedirs(workdir, exist_ok=True)
    else:
        workdir = tempfile.mkdtemp(prefix="cpuformer_bench_model_")
    records, errors, infos = [], {}, {}
    try:
        manifest = _prepare(args, workdir)
        work = {case: _case_work(case, args.batch, manifest) for case in args.cases}
        for t in args.threads:
            for case in args.cases:
                t0 = time.perf_counter()
                _run_case(script, args, case, t, workdir, records, errors, infos, commit)
                print(f"[{case_label(case, args.batch)} threads={t}] {time.perf_counter() - t0:.1f} s",
                      file=sys.stderr, flush=True)
    finally:
        if not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)

    elapsed = time.perf_counter() - t_start
    load_end = _util.load_average()
    load = "n/a" if load_start is None or load_end is None else f"{load_start:.1f} at start, {load_end:.1f} at end"
    onnx = manifest.get("onnx", {})
    lines = [
        f"## cpuformer model benchmark — commit {commit}",
        "",
        f"- model: torch.nn.Transformer base size — d_model {D_MODEL}, {NHEAD} heads, d_ff {D_FF}, "
        f"{N_ENC}+{N_DEC} layers, post-LN, relu, batch_first, random weights (seed {args.seed}), eval mode; "
        f"cases (a), (b) run its encoder (nn.TransformerEncoder, final norm included)",
        f"- CPU: {peak.get('cpu', _util.cpu_model())}, {os.cpu_count()} logical CPUs"
        f"{', AVX-512' if use_zmm else ''}; fp32 FMA peak per core {per_core:.1f} GFLOP/s "
        f"({'zmm' if use_zmm else 'ymm'}, {peak['source']}); % peak = GFLOP/s / (peak per core × threads)",
        "- work per forward (analytic, real tokens only; see forward_flops): "
        + "; ".join(f"{case_label(c, args.batch)}: {work[c][0] * 1e-9:.1f} GFLOP, {work[c][1]:,} tokens"
                    for c in args.cases),
    ]
    if "b" in args.cases:
        lens = manifest["lengths_b"]
        lines.append(f"- (b) lengths: {sum(lens):,} real of {len(lens) * SEQ_LEN:,} positions "
                     f"({100.0 * sum(lens) / (len(lens) * SEQ_LEN):.0f}%), min {min(lens)}, max {max(lens)}")
    impl_text = []
    for impl in args.impls:
        info = infos.get(impl)
        if not info:
            continue
        text = f"{impl} {info.get('version', '?')} ({info.get('isa', '?')})"
        if impl == "torch":
            text += (", inference_mode, encoder fast path, nested tensors "
                     + ("on" if info.get("nested_tensor") else "OFF"))
        if impl == "onnxruntime":
            text += (f", exported by {onnx.get('exporter', '?')}, ORT_ENABLE_ALL, intra-op = threads, "
                     "inter-op 1, sequential")
        impl_text.append(text)
    lines.append("- implementations: " + "; ".join(impl_text))
    if onnx.get("fallback_reason"):
        lines.append(f"- ONNX: {onnx['fallback_reason']} — exported with the legacy exporter instead")
    dropped = infos.get("onnxruntime", {}).get("dropped_inputs")
    if dropped:
        lines.append(f"- ONNX: the tracer folded {', '.join(dropped)} into the graph (torch detects the causal "
                     "mask and runs is_causal attention), so the graph takes it as a constant")
    pad_zero = [r for r in records if r["case"] == "b" and r["implementation"] == "torch"]
    if pad_zero and not all(r.get("padded_outputs_zero") for r in pad_zero):
        lines.append("- warning: torch's padded outputs in (b) are not zero: the nested-tensor fast path did not run")
    lines += [
        f"- timing: per case and thread count, each implementation in a fresh process (thread variables set "
        f"before import), {args.warmup} warm-up call(s), then {args.repeats} timed calls interleaved across "
        f"implementations; median and min per call (whole forward, NumPy/torch input to output). "
        f"† = median more than {NOISY_SPREAD:g}× the min (disturbed)",
        "- tokens/s: real tokens per second ((c): source + target tokens). GFLOP/s = analytic work / median. "
        "cpuformer / best peer = best peer median / cpuformer median (above 1: cpuformer faster)",
        "- peak MB: ru_maxrss of the implementation's process (interpreter, libraries, weights, inputs, "
        "activations). cpuformer loads the file from_torch(...).save() wrote, torch its saved state dict "
        "memory-mapped onto a meta-device module, ORT the exported graph",
        "- GEMM share (cpuformer): the model's weight GEMMs timed separately — cpuformer.ops.matmul on weights "
        "packed with ops.pack_weight(W, trans_b=True), with bias (and relu for linear1) in the epilogue, "
        "M = real tokens; each shape's fastest call × its count per forward, summed, divided by the model's "
        "fastest call (minima: the GEMMs are timed separately, after the model, and the minima are the least "
        "disturbed on a shared machine). Attention (QKᵀ, softmax, PV), layer norms and copies are the rest",
        f"- max rel err: max |output − reference| / max |reference| over real positions; reference = "
        f"{args.impls[0]} at {args.threads[0]} thread(s); WRONG above {REL_ERR_LIMIT:g}",
        f"- total runtime: {elapsed:.0f} s (preparation {manifest.get('prepare_s', 0):.0f} s); 1-minute load "
        f"average {load} on {os.cpu_count()} CPUs (this run adds ~1; more means other work shared the cores)",
    ]
    for impl, err in errors.items():
        lines.append(f"- {impl}: {err}")
    print("\n".join(lines))
    print()
    print(build_table(records, args, per_core, work))
    wrong = [r for r in records if r.get("max_rel_err", 0) > REL_ERR_LIMIT or not r.get("finite", True)]
    if wrong:
        print(f"\nWARNING: {len(wrong)} result(s) disagree with the reference: "
              + ", ".join(f"{r['case']} {r['threads']}T {r['implementation']}" for r in wrong))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(records, f, indent=1)
        print(f"\nrecords written to {args.json}", file=sys.stderr)
    return 1 if wrong else 0


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.prepare is not None:
        return prepare_main(json.loads(args.prepare))
    if args.child is not None:
        return child_main(json.loads(args.child))
    return parent_main(args)


if __name__ == "__main__":
    sys.exit(main())
