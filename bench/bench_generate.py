"""Generation benchmark: a base-size Marian translation model decoding in cpuformer, CTranslate2 and
Hugging Face transformers (PyTorch).

    python bench/bench_generate.py                 # threads 1,2; under 10 minutes on an idle machine
    python bench/bench_generate.py --quick         # smoke run: batch 4, 16 -> 16 tokens, 1 repeat
    python bench/bench_generate.py --cases b1-greedy,b32-greedy --threads 1 --json out.json

The model is a randomly initialised ``transformers.MarianMTModel`` of the base size (d_model 512, 6 + 6
layers, 8 heads, d_ff 2048, vocabulary 32000, swish, scale_embedding, fixed seed), written once with
save_pretrained into a cache directory (--cache-dir), with beside it the CTranslate2 conversion (float32)
and cpuformer's file (Translator.from_pretrained(dir).save()). Four cases, every one a translation of
64 source tokens (63 random ids and </s>, the same ids for everybody) into exactly 64 target tokens:

    b1-greedy, b1-beam4      latency of one sentence, greedy and beam 4;
    b32-greedy, b32-beam4    throughput of a batch of 32 sentences, greedy and beam 4.

A random model may emit </s> at any step, so every implementation is held to the full length: cpuformer
with min_length = max_length = 64 and suppress_ids = [</s>, <pad>]; transformers with min_new_tokens =
max_new_tokens = 64 (which masks </s> until then) and suppress_tokens = [<pad>]; CTranslate2 with
min_decoding_length = max_decoding_length = 64 (its Marian conversion drops <pad> from the vocabulary).
Every output is checked for exactly 64 tokens with neither </s> nor <pad>.

How it runs: per thread count, one fresh interpreter per implementation with OMP_NUM_THREADS etc. set
before any import (cpuformer: Translator.num_threads; transformers: torch.set_num_threads, one inter-op
thread, torch.inference_mode; CTranslate2: intra_threads = threads, inter_threads = 1), loading only its
own library. The children stay up together and the parent asks them for one generate() call at a time,
rotating the order, so a busy spell on the shared machine hits them alike. Per case: one short warm-up
call (same batch and beam, 8 -> 4 tokens), then the timed calls, fewer for an implementation once its
calls add up to --budget seconds (the slow peers; everybody on a busy machine). The cases run smallest
first in each child, so the ru_maxrss read after a case is that case's peak (it never decreases).

On a machine whose cores other processes keep busy, thread pools that spin while they wait (libgomp's
default, used by cpuformer and torch) can lose most of their time at 2 threads: each of the thousands of
barriers per generate() waits for a descheduled thread. The header reports OMP_WAIT_POLICY and friends
when set, so runs with and without them can be told apart.

Work is counted analytically (see generate_flops) and reported as GFLOP/s against the fp32 FMA peak
measured on this machine (_util.fma_peak).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _util  # noqa: E402  (stdlib only; imports nothing that reads the thread variables)

D_MODEL, NHEAD, D_FF, N_ENC, N_DEC, VOCAB = 512, 8, 2048, 6, 6, 32000
EOS_ID, UNK_ID, PAD_ID = 0, 1, VOCAB - 1  # Marian's layout: </s> 0, <unk> 1, <pad> last
SEED = 1234
LENGTH, QUICK_LENGTH = 64, 16  # source tokens (</s> included) and generated tokens
BATCH, QUICK_BATCH = 32, 4
# The warm-up call per case: same batch and beam, a short source and a few tokens (it starts the thread
# pools and sizes the workspaces; the encoder of a full batch-32 source would cost a third of a timed call).
WARMUP_SRC_LEN, WARMUP_TOKENS = 8, 4
# A cache written by an older version of this script is rebuilt.
CACHE_VERSION = 1

IMPLS = ("cpuformer", "ctranslate2", "transformers")
PEERS = ("ctranslate2", "transformers")
CASES = ("b1-greedy", "b1-beam4", "b32-greedy", "b32-beam4")
# Timed calls per case; an implementation stops early once its calls add up to --budget seconds (the
# slow peers, or everybody on a busy machine), keeping at least MIN_REPEATS.
REPEATS = {"b1-greedy": 5, "b1-beam4": 5, "b32-greedy": 3, "b32-beam4": 3}
MIN_REPEATS = 1
BUDGET_S = 30.0
# Settings that change how the thread pools wait or where they run: reported when set.
ENV_OF_NOTE = ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT", "OMP_PROC_BIND", "OMP_PLACES", "CPUFORMER_ISA",
               "CT2_USE_EXPERIMENTAL_PACKED_GEMM")
# A result whose median is this far above its fastest call was disturbed by other work on the machine.
NOISY_SPREAD = 1.3


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--threads", default="1,2", help="comma-separated thread counts (default 1,2)")
    p.add_argument("--impls", default=",".join(IMPLS), help="subset of " + ",".join(IMPLS))
    p.add_argument("--cases", default=",".join(CASES), help="subset of " + ",".join(CASES))
    p.add_argument("--quick", action="store_true",
                   help=f"smoke run: batch {QUICK_BATCH} instead of {BATCH}, {QUICK_LENGTH} -> {QUICK_LENGTH} "
                        "tokens, 1 timed call")
    p.add_argument("--repeats", type=int, default=None,
                   help="timed calls per case (default: " + ", ".join(f"{c} {n}" for c, n in REPEATS.items())
                        + "; 1 with --quick)")
    p.add_argument("--budget", type=float, default=BUDGET_S,
                   help=f"seconds of timed calls per case, implementation and thread count after which no "
                        f"more calls start (default {BUDGET_S:g}; at least {MIN_REPEATS} call)")
    p.add_argument("--seed", type=int, default=SEED)
    p.add_argument("--cache-dir", default=None,
                   help="where the model and its conversions live (default: $XDG_CACHE_HOME or ~/.cache, "
                        "then cpuformer/bench_generate)")
    p.add_argument("--json", metavar="PATH", help="also write the records to PATH")
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
        args.cases = [s.strip() for s in args.cases.split(",") if s.strip()]
        for name, got, allowed in (("--impls", args.impls, IMPLS), ("--cases", args.cases, CASES)):
            bad = [x for x in got if x not in allowed]
            if bad or not got:
                p.error(f"{name}: expected a subset of {','.join(allowed)}, got {','.join(got) or 'nothing'}")
        args.impls = [i for i in IMPLS if i in args.impls]  # cpuformer first: it is the reference
        args.cases = [c for c in CASES if c in args.cases]  # smallest first (see the docstring on memory)
        if args.repeats is not None and args.repeats < 1:
            p.error("--repeats must be >= 1")
        if args.cache_dir is None:
            base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
            args.cache_dir = os.path.join(base, "cpuformer", "bench_generate")
    return args


def case_shape(case: str, quick: bool) -> dict:
    """{'batch', 'beam', 'src_len', 'tgt_len'} of a case."""
    length = QUICK_LENGTH if quick else LENGTH
    batch = 1 if case.startswith("b1-") else (QUICK_BATCH if quick else BATCH)
    beam = 4 if case.endswith("beam4") else 1
    return {"batch": batch, "beam": beam, "src_len": length, "tgt_len": length}


def case_label(case: str, quick: bool) -> str:
    s = case_shape(case, quick)
    search = "greedy" if s["beam"] == 1 else f"beam {s['beam']}"
    return f"{s['batch']}×{s['src_len']}→{s['tgt_len']} {search}"


# ---------------------------------------------------------------------------------------------------------
# Work counted analytically (pure Python)


def generate_flops(batch: int, src_len: int, tgt_len: int, beam: int = 1, d: int = D_MODEL, f: int = D_FF,
                   v: int = VOCAB, n_enc: int = N_ENC, n_dec: int = N_DEC) -> float:
    """FLOPs (2 per multiply-add) of translating ``batch`` sentences of ``src_len`` tokens into ``tgt_len``
    tokens with ``beam`` hypotheses each, with a key/value cache: the least work any implementation must do.

    Encoder, once per source token and layer: Q, K, V and output projections 4·D², the FFN 2·D·F, and
    attention over the S source tokens 2·S·D (QKᵀ and PV). The cross-attention keys and values of the
    memory, once per source token and decoder layer: 2·D². Decoder, per generated token of every hypothesis
    (batch × beam rows) and layer: self-attention projections 4·D², cross-attention Q and output projections
    2·D², the FFN 2·D·F, attention over the cache 2·D·(t + 1) at step t and over the source 2·D·S; then the
    output projection D·V. Biases, softmax, layer norms, activations and the search itself are left out."""
    enc = batch * src_len * n_enc * (4 * d * d + 2 * d * f + 2 * src_len * d)
    cross_kv = batch * src_len * n_dec * 2 * d * d
    steps = tgt_len * n_dec * (6 * d * d + 2 * d * f + 2 * d * src_len) + tgt_len * d * v
    cache = n_dec * 2 * d * tgt_len * (tgt_len + 1) // 2  # sum over steps t of 2·D·(t + 1)
    dec = batch * beam * (steps + cache)
    return 2.0 * (enc + cross_kv + dec)


# ---------------------------------------------------------------------------------------------------------
# Preparation (each step in its own process: torch, CTranslate2 and cpuformer bring their own OpenMP)


def _paths(cache_dir: str, seed: int) -> dict:
    root = os.path.join(cache_dir, f"marian-base-seed{seed}-v{CACHE_VERSION}")
    return {"root": root, "hf": os.path.join(root, "hf"), "ct2": os.path.join(root, "ct2"),
            "cpuformer": os.path.join(root, "model.cpuformer.safetensors")}


def vocabulary() -> list:
    """Token strings by id: Marian's specials where Marian has them, 't<id>' elsewhere."""
    tokens = [f"t{i}" for i in range(VOCAB)]
    tokens[EOS_ID], tokens[UNK_ID], tokens[PAD_ID] = "</s>", "<unk>", "<pad>"
    return tokens


def _prepare_hf(paths: dict, seed: int) -> None:
    import torch
    from transformers import GenerationConfig, MarianConfig, MarianMTModel

    config = MarianConfig(
        vocab_size=VOCAB, decoder_vocab_size=VOCAB, d_model=D_MODEL, encoder_layers=N_ENC, decoder_layers=N_DEC,
        encoder_attention_heads=NHEAD, decoder_attention_heads=NHEAD, encoder_ffn_dim=D_FF, decoder_ffn_dim=D_FF,
        activation_function="swish", scale_embedding=True, max_position_embeddings=512,
        pad_token_id=PAD_ID, eos_token_id=EOS_ID, decoder_start_token_id=PAD_ID, forced_eos_token_id=None,
        share_encoder_decoder_embeddings=True, tie_word_embeddings=True,
    )
    torch.manual_seed(seed)
    model = MarianMTModel(config).eval()
    with torch.no_grad():
        # The decoder starts from <pad>, whose embedding Marian keeps at zero (CTranslate2 relies on it:
        # it starts from a zero vector).
        model.get_input_embeddings().weight[PAD_ID].zero_()
    # No defaults that would change the search (Marian checkpoints ship bad_words_ids, forced EOS, beams):
    # every option is passed explicitly when generating.
    model.generation_config = GenerationConfig(
        decoder_start_token_id=PAD_ID, pad_token_id=PAD_ID, eos_token_id=EOS_ID, bos_token_id=None,
        forced_eos_token_id=None, max_length=512, num_beams=1,
    )
    model.save_pretrained(paths["hf"])


class _Vocabulary:
    """The little of a tokenizer that CTranslate2's Marian loader reads: the vocabulary and the names of
    the special tokens. Saves writing a SentencePiece model that no one would use."""

    eos_token, unk_token, bos_token = "</s>", "<unk>", None

    def __init__(self, tokens: list):
        self._tokens = tokens

    def get_vocab(self) -> dict:
        return {t: i for i, t in enumerate(self._tokens)}

    def convert_ids_to_tokens(self, ids):
        return self._tokens[ids] if isinstance(ids, int) else [self._tokens[i] for i in ids]


def _prepare_ct2(paths: dict) -> None:
    import ctranslate2

    class Converter(ctranslate2.converters.TransformersConverter):
        # The converter loads the model with transformers and a tokenizer with AutoTokenizer only to read
        # its vocabulary and special tokens: hand it those directly.
        def load_tokenizer(self, tokenizer_class, model_name_or_path, **kwargs):
            return _Vocabulary(vocabulary())

    Converter(paths["hf"]).convert(paths["ct2"], quantization="float32", force=True)


def _prepare_cpuformer(paths: dict) -> None:
    import cpuformer

    cpuformer.Translator.from_pretrained(paths["hf"]).save(paths["cpuformer"])


def prepare_main(config: dict) -> int:
    paths, step = config["paths"], config["step"]
    if step == "hf":
        _prepare_hf(paths, config["seed"])
    elif step == "ct2":
        _prepare_ct2(paths)
    elif step == "cpuformer":
        _prepare_cpuformer(paths)
    else:
        raise ValueError(step)
    return 0


def _prepare(args) -> tuple:
    """Builds what is missing in the cache; (paths, seconds spent)."""
    paths = _paths(args.cache_dir, args.seed)
    os.makedirs(paths["root"], exist_ok=True)
    done = {
        "hf": os.path.isfile(os.path.join(paths["hf"], "model.safetensors")),
        "ct2": os.path.isfile(os.path.join(paths["ct2"], "model.bin")),
        "cpuformer": os.path.isfile(paths["cpuformer"]),
    }
    needed = ["hf"] + (["ct2"] if "ctranslate2" in args.impls else []) + \
        (["cpuformer"] if "cpuformer" in args.impls else [])
    t0 = time.perf_counter()
    for step in needed:
        if done[step]:
            continue
        if step == "hf":  # a new model invalidates its conversions
            done.update(ct2=False, cpuformer=False)
        cmd = [sys.executable, os.path.abspath(__file__), "--prepare",
               json.dumps({"step": step, "paths": paths, "seed": args.seed})]
        t1 = time.perf_counter()
        run = subprocess.run(cmd, env=_util.thread_env(max(args.threads)), capture_output=not args.verbose,
                             text=True, timeout=1800)
        if run.returncode != 0:
            tail = (run.stderr or "").strip().splitlines()[-15:] if not args.verbose else ["see stderr above"]
            raise SystemExit(f"preparation ({step}) failed:\n  " + "\n  ".join(tail))
        print(f"[prepare] {step} in {time.perf_counter() - t1:.1f} s -> {paths['root']}", file=sys.stderr,
              flush=True)
    return paths, time.perf_counter() - t0


# ---------------------------------------------------------------------------------------------------------
# Child: one implementation at one thread count; one generate() call per request.


def source_ids(np, batch: int, src_len: int, seed: int):
    """[batch, src_len] int64: random ordinary tokens, then </s> as a Marian tokenizer ends a source.
    Drawn from (seed, batch, src_len) so every implementation translates the same sentences."""
    rng = np.random.default_rng([seed, batch, src_len])
    ids = rng.integers(2, PAD_ID, size=(batch, src_len), dtype=np.int64)
    ids[:, -1] = EOS_ID
    return ids


def _setup(impl: str, threads: int, paths: dict):
    """(generate(ids [B, S] int64, beam, length) -> list of B lists of token ids, info dict)."""
    if impl == "cpuformer":
        import cpuformer

        cpuformer.set_num_threads(threads)
        model = cpuformer.Translator.load(paths["cpuformer"])
        model.num_threads = threads

        def generate(ids, beam, length):
            return model.generate(ids, beam_size=beam, min_length=length, max_length=length,
                                  suppress_ids=[EOS_ID, PAD_ID])

        return generate, {"version": cpuformer.__version__, "isa": cpuformer.isa(),
                          "active_threads": cpuformer.get_num_threads() if model.num_threads == 0
                          else model.num_threads}

    if impl == "transformers":
        import torch
        import transformers
        from transformers import MarianMTModel

        torch.set_num_threads(threads)
        try:
            torch.set_num_interop_threads(1)
        except RuntimeError:  # already set in this process
            pass
        transformers.logging.set_verbosity_error()
        model = MarianMTModel.from_pretrained(paths["hf"]).eval()

        def generate(ids, beam, length):
            x = torch.from_numpy(ids)
            with torch.inference_mode():
                out = model.generate(input_ids=x, attention_mask=torch.ones_like(x), num_beams=beam,
                                     do_sample=False, min_new_tokens=length, max_new_tokens=length,
                                     suppress_tokens=[PAD_ID], length_penalty=1.0, num_return_sequences=1,
                                     use_cache=True)
            return out[:, 1:].tolist()  # drop the decoder start token

        return generate, {"version": f"{transformers.__version__} (torch {torch.__version__})",
                          "isa": "torch " + torch.backends.cpu.get_cpu_capability().lower(),
                          "active_threads": torch.get_num_threads()}

    if impl == "ctranslate2":
        import ctranslate2

        model = ctranslate2.Translator(paths["ct2"], device="cpu", compute_type="float32", intra_threads=threads,
                                       inter_threads=1)
        tokens = vocabulary()
        index = {t: i for i, t in enumerate(tokens)}

        def generate(ids, beam, length):
            src = [[tokens[i] for i in row] for row in ids.tolist()]
            res = model.translate_batch(src, beam_size=beam, min_decoding_length=length,
                                        max_decoding_length=length, length_penalty=1.0, max_batch_size=0)
            return [[index[t] for t in r.hypotheses[0]] for r in res]

        return generate, {"version": ctranslate2.__version__, "isa": "ct2 float32",
                          "active_threads": threads, "compute_type": model.compute_type}
    raise ValueError(impl)


def _check_lengths(out: list, batch: int, length: int) -> str:
    """'' when every row has exactly ``length`` tokens, none of them </s> or <pad>; else what is wrong."""
    if len(out) != batch:
        return f"{len(out)} outputs for {batch} sources"
    lens = sorted({len(r) for r in out})
    if lens != [length]:
        return f"lengths {lens}, expected {length}"
    special = sum(1 for r in out for t in r if t in (EOS_ID, PAD_ID))
    if special:
        return f"{special} </s> or <pad> tokens in the output"
    return ""


def child_main(config: dict) -> int:
    proto = _util.child_channel()
    impl, threads = config["impl"], config["threads"]
    for var in _util.THREAD_ENV_VARS:  # the parent sets these already; a hand-started child gets them too
        os.environ[var] = str(threads)
    started = _util.start_child(proto, impl, threads, lambda: _setup(impl, threads, config["paths"]))
    if started is None:
        return 0
    import numpy as np  # every implementation's setup has loaded it already
    generate, info = started
    _util.send(proto, {"info": info})

    perf = time.perf_counter
    for line in sys.stdin:
        req = json.loads(line)
        if req.get("cmd") == "quit":
            break
        try:
            s = req["shape"]
            warmup = req["cmd"] == "warmup"
            ids = source_ids(np, s["batch"], WARMUP_SRC_LEN if warmup else s["src_len"], config["seed"])
            length = WARMUP_TOKENS if warmup else s["tgt_len"]
            t0 = perf()
            out = generate(ids, s["beam"], length)
            dt = perf() - t0
            reply = {"time_s": dt, "rss_mb": _util.peak_rss_mb(), "check": _check_lengths(out, s["batch"], length)}
            if req.get("tokens"):
                reply["tokens"] = out
            _util.send(proto, reply)
        except Exception as e:  # noqa: BLE001  (report and keep serving; the parent shows n/a)
            _util.send(proto, {"error": f"{type(e).__name__}: {e}"})
    return 0


# ---------------------------------------------------------------------------------------------------------
# Parent


def _run_threads(script, args, threads, paths, records, errors, infos, commit):
    """Every case at one thread count, the implementations interleaved; one record per (case, impl)."""
    config = {"paths": paths, "seed": args.seed}
    children = {}
    results = {}
    try:
        for impl in args.impls:
            child = _util.Child(script, impl, threads, config, verbose=args.verbose)
            if child.error:
                errors.setdefault(impl, child.error)
                print(f"threads={threads} {impl}: {child.error}", file=sys.stderr, flush=True)
                continue
            infos.setdefault(impl, {}).update(child.info)
            children[impl] = child

        def ask(impl, msg):
            reply = children[impl].request(msg, timeout=1800.0)
            if reply is None:
                errors.setdefault(impl, children[impl].error)
                del children[impl]
                return None
            if reply.get("error"):
                errors.setdefault(impl, f"{msg.get('case')}: {reply['error']}")
                return None
            if reply.get("check"):
                errors.setdefault(impl, f"{msg.get('case')}: output check failed: {reply['check']}")
            return reply

        for case in args.cases:
            t0 = time.perf_counter()
            shape = case_shape(case, args.quick)
            repeats = args.repeats or (1 if args.quick else REPEATS[case])
            res = {impl: {"times": [], "rss_mb": None, "check": ""} for impl in children}
            for impl in list(children):
                ask(impl, {"cmd": "warmup", "case": case, "shape": shape})
            order = list(children)
            for r in range(repeats):
                shift = r % max(1, len(order))
                for impl in order[shift:] + order[:shift]:
                    if impl not in children:
                        continue
                    if len(res[impl]["times"]) >= MIN_REPEATS and sum(res[impl]["times"]) >= args.budget:
                        continue
                    reply = ask(impl, {"cmd": "run", "case": case, "shape": shape, "tokens": r == 0})
                    if reply is None:
                        continue
                    res[impl]["times"].append(reply["time_s"])
                    res[impl]["rss_mb"] = reply["rss_mb"]
                    res[impl]["check"] = res[impl]["check"] or reply["check"]
                    if "tokens" in reply:
                        res[impl]["tokens"] = reply["tokens"]
            results[case] = res
            print(f"[threads={threads}] {case_label(case, args.quick)}: {time.perf_counter() - t0:.1f} s",
                  file=sys.stderr, flush=True)
    finally:
        for child in children.values():
            child.close()

    for case, res in results.items():
        shape = case_shape(case, args.quick)
        flops = generate_flops(shape["batch"], shape["src_len"], shape["tgt_len"], shape["beam"])
        ref = res.get("cpuformer", {}).get("tokens")
        for impl, r in res.items():
            if not r["times"]:
                continue
            med = statistics.median(r["times"])
            rec = {
                "benchmark": "generate", "case": case, "label": case_label(case, args.quick),
                "implementation": impl, "isa": infos.get(impl, {}).get("isa"), "threads": threads,
                "shape": dict(shape, d_model=D_MODEL, nhead=NHEAD, d_ff=D_FF, layers=[N_ENC, N_DEC], vocab=VOCAB),
                "median_s": med, "min_s": min(r["times"]), "times_s": r["times"], "repeats": len(r["times"]),
                "ms_per_step": 1e3 * med / shape["tgt_len"],
                "tokens_per_s": shape["batch"] * shape["tgt_len"] / med,
                "gflops": flops / med * 1e-9, "flops": flops, "peak_rss_mb": r["rss_mb"],
                "length_check": r["check"] or "ok", "commit": commit,
            }
            mine = r.get("tokens")
            if ref is not None and mine is not None and impl != "cpuformer":
                rec["same_as_cpuformer"] = sum(1 for a, b in zip(mine, ref) if a == b)
            records.append(rec)
            print(f"  {rec['label']:26s} {threads}T {impl:12s} median {1e3 * med:9.1f} ms  "
                  f"{rec['tokens_per_s']:8.0f} tok/s  rss {rec['peak_rss_mb'] or 0:6.0f} MB  {rec['length_check']}",
                  file=sys.stderr, flush=True)


def build_table(records: list, args, per_core_peak: float) -> str:
    header = ["case", "threads", "implementation", "median ms", "runs", "ms/step", "tokens/s", "GFLOP/s",
              "% peak", "cpuformer / this", "peak MB", "64 tokens", "same as cpuformer"]
    header[11] = f"{case_shape(CASES[0], args.quick)['tgt_len']} tokens"
    align = ["l", "r", "l"] + ["r"] * 10
    by = {(r["case"], r["threads"], r["implementation"]): r for r in records}
    rows = []
    for case in args.cases:
        for t in args.threads:
            ours = by.get((case, t, "cpuformer"))
            for impl in args.impls:
                rec = by.get((case, t, impl))
                if rec is None:
                    rows.append([case_label(case, args.quick), str(t), impl] + ["n/a"] * 10)
                    continue
                med = rec["median_s"]
                mark = " †" if med / rec["min_s"] > NOISY_SPREAD else ""
                ratio = "—" if impl == "cpuformer" or ours is None else f"{med / ours['median_s']:.2f}×"
                same = "ref" if impl == "cpuformer" else (
                    f"{rec['same_as_cpuformer']}/{rec['shape']['batch']}" if "same_as_cpuformer" in rec else "n/a")
                rows.append([
                    case_label(case, args.quick), str(t), impl, f"{1e3 * med:,.0f}{mark}", str(rec["repeats"]),
                    f"{rec['ms_per_step']:.2f}",
                    f"{rec['tokens_per_s']:,.0f}", _util.fmt_num(rec["gflops"]),
                    f"{100.0 * rec['gflops'] / (per_core_peak * t):.0f}%", ratio,
                    _util.fmt_num(rec["peak_rss_mb"], 0) if rec["peak_rss_mb"] else "n/a",
                    "ok" if rec["length_check"] == "ok" else "NO", same,
                ])
    return _util.markdown_table(header, rows, align)


def parent_main(args) -> int:
    t_start = time.perf_counter()
    load_start = _util.load_average()
    script = os.path.abspath(__file__)
    commit = _util.git_commit()
    peak, use_zmm, per_core = _util.per_core_peak(refresh=args.reprobe)

    paths, prepare_s = _prepare(args)
    records, errors, infos = [], {}, {}
    for t in args.threads:
        t0 = time.perf_counter()
        _run_threads(script, args, t, paths, records, errors, infos, commit)
        print(f"[threads={t}] {time.perf_counter() - t0:.1f} s", file=sys.stderr, flush=True)

    elapsed = time.perf_counter() - t_start
    load_end = _util.load_average()
    load = "n/a" if load_start is None or load_end is None else f"{load_start:.1f} at start, {load_end:.1f} at end"
    length = case_shape(CASES[0], args.quick)["tgt_len"]
    impl_text = []
    for impl in args.impls:
        info = infos.get(impl)
        if not info:
            continue
        text = f"{impl} {info.get('version', '?')} ({info.get('isa', '?')})"
        if impl == "transformers":
            text += ", MarianMTModel.generate under torch.inference_mode"
        if impl == "ctranslate2":
            text += f", compute type {info.get('compute_type', '?')}, intra_threads = threads, inter_threads 1"
        impl_text.append(text)
    repeats = args.repeats or (1 if args.quick else None)
    lines = [
        f"## cpuformer generation benchmark — commit {commit}",
        "",
        f"- model: MarianMTModel, random weights (seed {args.seed}) — d_model {D_MODEL}, {NHEAD} heads, d_ff {D_FF}, "
        f"{N_ENC}+{N_DEC} layers, vocabulary {VOCAB:,}, swish, scale_embedding; cache {paths['root']}",
        f"- CPU: {peak.get('cpu', _util.cpu_model())}, {os.cpu_count()} logical CPUs"
        f"{', AVX-512' if use_zmm else ''}; fp32 FMA peak per core {per_core:.1f} GFLOP/s "
        f"({'zmm' if use_zmm else 'ymm'}, {peak['source']}); % peak = GFLOP/s / (peak per core × threads)",
        "- implementations: " + "; ".join(impl_text),
        f"- every case: {length} source tokens ({length - 1} random ids + </s>, fixed seed) -> exactly {length} "
        f"generated tokens per sentence (</s> suppressed: see the script's docstring); '{length} tokens' = every "
        "output checked to have that length with no </s> or <pad>",
        "- work per call (analytic, see generate_flops): "
        + "; ".join(f"{case_label(c, args.quick)}: {generate_flops(**_flops_args(c, args.quick)) * 1e-9:.1f} GFLOP"
                    for c in args.cases),
        "- timing: per thread count, each implementation in a fresh process (thread variables set before import); "
        f"per case one warm-up call ({WARMUP_SRC_LEN} -> {WARMUP_TOKENS} tokens), then "
        + (f"{repeats}" if repeats else ", ".join(f"{c} {REPEATS[c]}" for c in args.cases))
        + f" timed generate() calls interleaved across implementations (ids in, ids out), fewer ('runs') once "
        f"one implementation's calls add up to {args.budget:g} s; median per call. "
        f"† = median more than {NOISY_SPREAD:g}× the fastest call (disturbed)",
        "- ms/step = median / generated length; tokens/s = generated target tokens (best hypothesis only) per "
        "second; cpuformer / this = this median / cpuformer's median (above 1: cpuformer faster)",
        "- peak MB: ru_maxrss of the implementation's process after the case (cases run smallest first)",
        "- same as cpuformer: sentences whose tokens equal cpuformer's exactly (a random model's near-ties may "
        "flip a token and the rest of the sentence with it; not a correctness criterion)",
        f"- total runtime: {elapsed:.0f} s (preparation {prepare_s:.0f} s); 1-minute load average {load} on "
        f"{os.cpu_count()} CPUs (this run adds ~1; more means other work shared the cores)",
    ]
    tuning = {k: v for k, v in os.environ.items() if k in ENV_OF_NOTE}
    if tuning:
        lines.append("- environment: " + ", ".join(f"{k}={v}" for k, v in sorted(tuning.items())))
    for impl, err in errors.items():
        lines.append(f"- {impl}: {err}")
    print("\n".join(lines))
    print()
    print(build_table(records, args, per_core))
    bad = [r for r in records if r["length_check"] != "ok"]
    if bad:
        print("\nWARNING: outputs of the wrong length: "
              + ", ".join(f"{r['case']} {r['threads']}T {r['implementation']} ({r['length_check']})" for r in bad))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(records, f, indent=1)
        print(f"\nrecords written to {args.json}", file=sys.stderr)
    return 1 if bad else 0


def _flops_args(case: str, quick: bool) -> dict:
    s = case_shape(case, quick)
    return {"batch": s["batch"], "src_len": s["src_len"], "tgt_len": s["tgt_len"], "beam": s["beam"]}


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.prepare is not None:
        return prepare_main(json.loads(args.prepare))
    if args.child is not None:
        return child_main(json.loads(args.child))
    return parent_main(args)


if __name__ == "__main__":
    sys.exit(main())
