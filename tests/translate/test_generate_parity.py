"""Greedy and beam search: Translator.generate() returns, token for token, what MarianMTModel.generate()
returns (do_sample=False), on trained tiny Marians whose outputs mean something: the shipped demo model
(numbers in digits -> English words), the "expand" model trained by the fixture (marian_helpers.py), and that
training run's half-way snapshot ("expand-early"). The two finished models are so sure of themselves that
beam search almost always agrees with greedy; on the snapshot it disagrees for about half the sentences
(asserted), so that the beams really compete and the length penalty and stopping rules decide.
Options: length_penalty 0.6 / 1.2, early_stopping, n-best 2 and 4 (order and tokens), beam 2, a min_length
that binds, a max_length that cuts, and single-token bad_words_ids from generation_config.json.

Conventions mapped (marian_helpers.hf_generate): HF max_length / min_length = ours + 1 (they count the start
token); HF rows are [start] + tokens + [eos] + pads, ours are the tokens. Both models' generation configs
carry forced_eos_token_id = eos (checked and printed below), which Translator applies from the config, so
a hypothesis that reaches max_length ends with EOS in both. Beam scores (sum log p / length^length_penalty)
are compared with HF's sequences_scores too.

Before trusting a comparison, the reference outputs are checked to be meaningful: sequences with many distinct
tokens, EOS reached at different steps within a batch, most sentences finishing before max_length, and the
trained models actually solving their task.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import zlib

import numpy as np
import pytest

import cpuformer
import marian_helpers as mh

N_BATCHES = 20  # main comparisons (greedy, beam 4)
N_VARIANT_BATCHES = 4  # each option variant
SCORE_TOL = 2e-5  # |ours - HF| / max(1, |HF|) for beam scores (float32 sums of ~30 log-probs)


class Case:
    """A trained model, both ways, and its random batches."""

    def __init__(self, name, hf_model, tr, make_batch, max_length, min_length_binding):
        self.name, self.hf, self.tr = name, hf_model, tr
        self.make_batch, self.max_length, self.min_length_binding = make_batch, max_length, min_length_binding

    def batches(self, seed: int, count: int):
        rng = random.Random(seed)
        return [self.make_batch(rng, rng.randint(2, 12)) for _ in range(count)]


@pytest.fixture(scope="module", params=["demo", "expand", "expand-early"])
def case(request):
    if request.param == "demo":
        from cpuformer.demo.data import sample_number

        tok = request.getfixturevalue("demo_tok")

        def make(rng, n):
            return [tok.encode_source(str(sample_number(rng))) for _ in range(n)]

        # targets are <= 15 words; min_length 8 forces short numbers ("seven") to go on
        return Case("demo", request.getfixturevalue("demo_hf"), request.getfixturevalue("demo_tr"), make, 31, 8)

    def make(rng, n):
        return [s + [mh.EXPAND_EOS] for s in mh.expand_sources(rng, n)]

    suffix = "_early" if request.param == "expand-early" else ""
    return Case(request.param, request.getfixturevalue(f"expand{suffix}_hf"),
                request.getfixturevalue(f"expand{suffix}_tr"), make, 30, 10)


def _hf(case, sources, *, max_length, num_beams=1, length_penalty=1.0, early_stopping=False, n=1, min_length=0):
    """HF outputs per sentence (n token lists each) and, for beam search, sequences_scores (n each)."""
    import torch

    cfg = case.hf.config
    src, mask = mh.pad_batch(sources, cfg.pad_token_id)
    with torch.no_grad():
        out = case.hf.generate(
            input_ids=src, attention_mask=mask, max_length=max_length + 1, min_length=min_length + 1,
            num_beams=num_beams, length_penalty=length_penalty, early_stopping=early_stopping,
            num_return_sequences=n, do_sample=False, return_dict_in_generate=True, output_scores=num_beams > 1,
        )
    rows = [mh.from_hf_row(r, cfg.decoder_start_token_id, cfg.eos_token_id) for r in out.sequences.tolist()]
    hyps = [rows[i * n : (i + 1) * n] for i in range(len(sources))]
    scores = None
    if num_beams > 1:
        s = out.sequences_scores.tolist()
        scores = [s[i * n : (i + 1) * n] for i in range(len(sources))]
    return hyps, scores


def _ours(case, sources, *, max_length, num_beams=1, length_penalty=1.0, early_stopping=False, n=1,
          min_length=0):
    hyps, scores = case.tr.generate(
        sources, beam_size=num_beams, max_length=max_length, min_length=min_length, length_penalty=length_penalty,
        early_stopping=early_stopping, num_hypotheses=n, return_scores=True,
    )
    if n == 1:
        hyps, scores = [[h] for h in hyps], [[s] for s in scores]
    return hyps, scores


def _compare(case, batches, **kw):
    """Asserts identical outputs (and beam scores) on every batch; returns the HF outputs."""
    refs = []
    for bi, sources in enumerate(batches):
        want, want_scores = _hf(case, sources, **kw)
        got, got_scores = _ours(case, sources, **kw)
        assert len(got) == len(want) == len(sources)
        for i, (w, g) in enumerate(zip(want, got)):
            assert g == w, (
                f"{case.name} {kw}, batch {bi} sentence {i}: source {sources[i]}\n"
                f"  HF:   {w}\n  ours: {g} (scores {got_scores[i]}, HF {want_scores and want_scores[i]})"
            )
        if want_scores is not None:
            for i, (w, g) in enumerate(zip(want_scores, got_scores)):
                err = max(abs(a - b) / max(1.0, abs(a)) for a, b in zip(w, g))
                assert err <= SCORE_TOL, f"{case.name} {kw}, batch {bi} sentence {i}: scores {g}, HF {w}"
        refs.append(want)
    return refs


def _assert_meaningful(case, batches, refs, max_length):
    """The reference outputs vary: enough distinct tokens, EOS at different steps, most end before the limit."""
    hyps = [h[0] for r in refs for h in r]
    lengths_per_batch = [{len(h[0]) for h in r} for r in refs]
    distinct_tokens = [len(set(h)) for h in hyps]
    ended = [len(h) < max_length - 1 for h in hyps]  # else EOS was forced on the last step
    summary = (f"{case.name}: {len(hyps)} sentences in {len(refs)} batches, lengths {sorted({len(h) for h in hyps})}, "
               f"mean distinct tokens per sentence {np.mean(distinct_tokens):.1f}, "
               f"{np.mean(ended):.0%} ended with EOS before max_length")
    print(summary)
    assert len(refs) >= N_BATCHES
    assert np.mean(distinct_tokens) >= 3, summary
    assert len({t for h in hyps for t in h}) >= 15, summary
    assert len({len(h) for h in hyps}) >= 6, summary
    assert np.mean([len(s) > 1 for s in lengths_per_batch]) >= 0.8, f"EOS at one step in most batches; {summary}"
    assert np.mean(ended) >= 0.9, summary
    assert len({len(s) for b in batches for s in b}) >= 6, "source lengths do not vary"


def test_generation_configs_are_what_we_think(case):
    """Both models: EOS 0, start = pad, forced EOS at max length, no bad words; Translator picked that up."""
    gc = case.hf.generation_config
    print(f"{case.name}: {gc}")
    cfg = case.hf.config
    assert gc.forced_eos_token_id == cfg.eos_token_id == 0
    assert gc.decoder_start_token_id == cfg.pad_token_id == cfg.vocab_size - 1
    assert not gc.bad_words_ids and not gc.suppress_tokens and not gc.begin_suppress_tokens
    assert gc.no_repeat_ngram_size in (None, 0) and gc.repetition_penalty in (None, 1.0)
    assert case.tr.generation_defaults["force_eos_at_max_length"] is True
    assert case.tr.generation_defaults["suppress_ids"] == []
    assert case.tr.config["decoder_start_id"] == gc.decoder_start_token_id
    assert case.tr.config["eos_id"] == 0


def test_trained_model_solves_its_task(case, request):
    """The comparisons below are on a model that works (exact match of greedy outputs)."""
    rng = random.Random(99)
    if case.name == "demo":
        demo_tok = request.getfixturevalue("demo_tok")
        from cpuformer.demo.data import sample_number
        from cpuformer.demo.number_words import number_to_words

        numbers = [sample_number(rng) for _ in range(200)]
        got = case.tr.generate([demo_tok.encode_source(str(n)) for n in numbers], beam_size=1)
        ok = [demo_tok.decode_target(g) == number_to_words(n) for g, n in zip(got, numbers)]
    else:
        srcs = mh.expand_sources(rng, 200)
        got = case.tr.generate([s + [mh.EXPAND_EOS] for s in srcs], beam_size=1)
        ok = [g == mh.expand_target(s) for g, s in zip(got, srcs)]
    print(f"{case.name}: greedy exact match {np.mean(ok):.3f}")
    if case.name == "expand-early":  # half-trained: right first tokens, and beam search often disagrees
        assert np.mean([g[:1] == mh.expand_target(s)[:1] for g, s in zip(got, srcs)]) >= 0.5
        beam = case.tr.generate([s + [mh.EXPAND_EOS] for s in srcs], beam_size=4)
        assert np.mean([b != g for b, g in zip(beam, got)]) >= 0.25
    else:
        assert np.mean(ok) >= 0.8


@pytest.mark.parametrize("beam", [1, 4])
def test_matches_hf(case, beam):
    batches = case.batches(1000 + beam, N_BATCHES)
    refs = _compare(case, batches, max_length=case.max_length, num_beams=beam)
    _assert_meaningful(case, batches, refs, case.max_length)


VARIANTS = {
    "lp0.6": dict(num_beams=4, length_penalty=0.6),
    "lp1.2": dict(num_beams=4, length_penalty=1.2),
    "early_stopping": dict(num_beams=4, early_stopping=True),
    "early_stopping-lp0.6": dict(num_beams=4, early_stopping=True, length_penalty=0.6),
    "nbest2": dict(num_beams=4, n=2),
    "nbest4-lp1.2": dict(num_beams=4, n=4, length_penalty=1.2),
    "beam2": dict(num_beams=2),
    "min_length-greedy": dict(num_beams=1, min_length="binding"),
    "min_length-beam": dict(num_beams=4, min_length="binding"),
    "short-greedy": dict(num_beams=1, max_length=5),  # cut by max_length (forced EOS on the last step)
    "short-beam": dict(num_beams=4, max_length=5),
    "length1-beam": dict(num_beams=4, max_length=1),  # only the forced EOS: empty outputs
    "length2-greedy": dict(num_beams=1, max_length=2),
}


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_matches_hf_options(case, variant):
    kw = dict(VARIANTS[variant])
    kw.setdefault("max_length", case.max_length)
    if kw.get("min_length") == "binding":
        kw["min_length"] = case.min_length_binding
    batches = case.batches(zlib.crc32(variant.encode()) % 1000, N_VARIANT_BATCHES)
    refs = _compare(case, batches, **kw)
    hyps = [h for r in refs for hs in r for h in hs]
    if "min_length" in kw:  # the option binds: without it, some hypotheses would be shorter
        assert min(len(h) for h in hyps) >= kw["min_length"]
        free = [h for b in batches for h in case.tr.generate(b, beam_size=kw["num_beams"], max_length=kw["max_length"])]
        assert any(len(h) < kw["min_length"] for h in free)
    if kw["max_length"] < case.max_length:
        assert any(len(h) == kw["max_length"] - 1 for h in hyps)  # forced EOS at the last step
    if kw.get("n", 1) > 1:  # n distinct hypotheses per sentence, best first
        assert all(len({tuple(h) for h in r}) == kw["n"] for rr in refs for r in rr)


def test_bad_words_ids(case, tmp_path):
    """bad_words_ids (single tokens) in generation_config.json become Translator's suppress_ids: outputs stay
    identical to HF's, and the suppressed tokens never appear though the model wants them."""
    from transformers import MarianMTModel

    # expand: two symbols that are written twice; demo: the pad token, "four" and "thirty"
    banned = [case.hf.config.pad_token_id, 16, 33] if case.name == "demo" else [3, 5]
    src_dir = case.hf.name_or_path
    for f in ("config.json", "model.safetensors"):
        shutil.copy(os.path.join(src_dir, f), tmp_path / f)
    gc = json.load(open(os.path.join(src_dir, "generation_config.json")))
    gc["bad_words_ids"] = [[b] for b in banned]
    json.dump(gc, open(tmp_path / "generation_config.json", "w"))
    hf_model = MarianMTModel.from_pretrained(str(tmp_path)).eval()
    tr = cpuformer.Translator.from_pretrained(str(tmp_path))
    tr.num_threads = 1
    assert tr.generation_defaults["suppress_ids"] == sorted(banned)
    banned_case = Case(case.name, hf_model, tr, case.make_batch, case.max_length, case.min_length_binding)
    batches = case.batches(7, N_VARIANT_BATCHES)
    unbanned = [h for b in batches for h in case.tr.generate(b, beam_size=1, max_length=case.max_length)]
    assert any(set(banned) & set(h) for h in unbanned), "pick banned tokens the model does produce"
    for beam in (1, 4):
        refs = _compare(banned_case, batches, max_length=case.max_length, num_beams=beam)
        assert not any(set(banned) & set(h) for r in refs for hs in r for h in hs)


def test_every_isa(expand_early_dir, expand_early_hf, isa):
    """The half-trained model loaded while each ISA is active: greedy and beam outputs still HF's."""
    tr = cpuformer.Translator.from_pretrained(expand_early_dir)
    tr.num_threads = 1

    def make(rng, n):
        return [s + [mh.EXPAND_EOS] for s in mh.expand_sources(rng, n)]

    case = Case(f"expand-early on {isa}", expand_early_hf, tr, make, 30, 10)
    batches = case.batches(5, 3)
    for beam in (1, 4):
        _compare(case, batches, max_length=30, num_beams=beam)
