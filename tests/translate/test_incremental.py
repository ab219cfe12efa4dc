"""Incremental decoding (key/value cache, one position per step) equals re-running the full teacher-forced
forward on the prefix: for every generated hypothesis, the score generate() returns is the sum of the log-probs
Translator.log_probs gives its tokens (EOS included) on [start] + tokens, and for greedy search each
teacher-forced row's argmax is the token that was generated.

Scores: greedy = sum(log p); beam = sum(log p) / length^length_penalty (length counts EOS). A hypothesis that
reaches max_length has its last step forced to EOS (forced_eos_token_id), which scores 0: the untrained
random model only makes such hypotheses, the trained ones mostly end on their own.
Bound: |generated - teacher-forced| <= 1e-5 * max(1, sum |log p|) (observed ~1e-7: the two paths only differ
in float32 summation order).
"""

from __future__ import annotations

import random

import numpy as np
import pytest

import cpuformer
import marian_helpers as mh

TOL = 1e-5
MAX_LENGTH = 40


@pytest.fixture(scope="module", params=["demo", "expand", "expand-early", "tiny-random"])
def model_and_sources(request):
    rng = random.Random(4)
    if request.param == "demo":
        from cpuformer.demo.data import sample_number

        tok = request.getfixturevalue("demo_tok")
        sources = [tok.encode_source(str(sample_number(rng))) for _ in range(24)]
        return "demo", request.getfixturevalue("demo_tr"), sources
    if request.param == "tiny-random":
        tr = request.getfixturevalue("tiny_tr")
        return "tiny-random", tr, mh.random_sources(np.random.default_rng(4), 24, 1, tr.vocab_size - 1, 1, 12)
    sources = [s + [mh.EXPAND_EOS] for s in mh.expand_sources(rng, 24)]
    fixture = "expand_early_tr" if request.param == "expand-early" else "expand_tr"
    return request.param, request.getfixturevalue(fixture), sources


def _teacher_forced(tr, sources, hyps, max_length=MAX_LENGTH):
    """Per hypothesis: the log-prob of each token then of EOS (0 when EOS was forced at max_length), and the
    argmax of each teacher-forced row (None for a forced EOS)."""
    start, eos = tr.config["decoder_start_id"], tr.config["eos_id"]
    lp = tr.log_probs(sources, [[start] + h for h in hyps])
    out = []
    for b, h in enumerate(hyps):
        rows = lp[b, : len(h) + 1]
        logp = rows[np.arange(len(h) + 1), np.array(h + [eos])].astype(np.float64)
        argmax = [int(i) for i in rows.argmax(-1)]
        if len(h) == max_length - 1:  # forced
            logp[-1], argmax[-1] = 0.0, None
        out.append((logp, argmax))
    return out


def _natural_ends(tr, hyps, name):
    ended = np.mean([len(h) < MAX_LENGTH - 1 for h in hyps])
    if name != "tiny-random":
        assert ended >= 0.75, f"only {ended:.0%} of the hypotheses ended before max_length"


def test_greedy_scores_and_tokens_equal_full_forward(model_and_sources):
    name, tr, sources = model_and_sources
    hyps, scores = tr.generate(sources, beam_size=1, max_length=MAX_LENGTH, return_scores=True)
    _natural_ends(tr, hyps, name)
    eos = tr.config["eos_id"]
    for b, ((logp, argmax), h, s) in enumerate(zip(_teacher_forced(tr, sources, hyps), hyps, scores)):
        want = h + [eos if argmax[-1] is not None else None]
        assert argmax == want, f"sentence {b}: generated {h}, teacher-forced argmax {argmax}"
        bound = TOL * max(1.0, np.abs(logp).sum())
        assert abs(s - logp.sum()) <= bound, f"sentence {b}: score {s}, teacher-forced sum {logp.sum()}"


@pytest.mark.parametrize("length_penalty", [1.0, 0.6])
def test_beam_scores_equal_full_forward(model_and_sources, length_penalty):
    name, tr, sources = model_and_sources
    hyps, scores = tr.generate(sources, beam_size=4, num_hypotheses=4, max_length=MAX_LENGTH,
                               length_penalty=length_penalty, return_scores=True)
    for b in range(len(sources)):
        assert len(hyps[b]) == 4 and scores[b] == sorted(scores[b], reverse=True), f"sentence {b}: {scores[b]}"
    flat = [(b, h, s) for b in range(len(sources)) for h, s in zip(hyps[b], scores[b])]
    _natural_ends(tr, [h for _, h, _ in flat], name)
    tf = _teacher_forced(tr, [sources[b] for b, _, _ in flat], [h for _, h, _ in flat])
    for (b, h, s), (logp, _) in zip(flat, tf):
        want = logp.sum() / (len(h) + 1) ** length_penalty
        bound = TOL * max(1.0, np.abs(logp).sum())
        assert abs(s - want) <= bound, f"sentence {b}, hypothesis {h}: score {s}, teacher-forced {want}"


@pytest.fixture(scope="module")
def long_dir(hf, tmp_path_factory):
    """A random Marian with room for 256 positions (the shared tiny one has 64)."""
    path = str(tmp_path_factory.mktemp("long_marian"))
    mh.random_marian(5, **dict(mh.TINY, max_positions=256)).save_pretrained(path)
    return path


@pytest.mark.parametrize("beam", [1, 4])
@pytest.mark.parametrize("isa", cpuformer.supported_isas())
def test_long_decoding_over_many_key_panels(long_dir, isa, beam):
    """150 steps cross many panels of the self-attention key cache on every path (nr = 32, 16 or 4): row
    appends, panels packed in place as they fill, attention over a partial panel, and beam reorders through
    cache slots must still give the teacher-forced log-probs."""
    before = cpuformer.isa()
    cpuformer.set_isa(isa)
    try:
        tr = cpuformer.Translator.from_pretrained(long_dir)
        sources = mh.random_sources(np.random.default_rng(7), 6, 1, tr.vocab_size - 1, 1, 20)
        max_length = 150
        hyps, scores = tr.generate(sources, beam_size=beam, num_hypotheses=beam, max_length=max_length,
                                   length_penalty=0.0, return_scores=True)
        if beam == 1:  # one hypothesis per sentence comes unnested
            hyps, scores = [[h] for h in hyps], [[s] for s in scores]
        flat = [(b, h, s) for b in range(len(sources)) for h, s in zip(hyps[b], scores[b])]
        assert max(len(h) for _, h, _ in flat) > 100, "no hypothesis crossed several key panels"
        tf = _teacher_forced(tr, [sources[b] for b, _, _ in flat], [h for _, h, _ in flat], max_length)
        for (b, h, s), (logp, _) in zip(flat, tf):
            bound = TOL * max(1.0, np.abs(logp).sum())
            assert abs(s - logp.sum()) <= bound, f"{isa}, sentence {b}: score {s}, teacher-forced {logp.sum()}"
    finally:
        cpuformer.set_isa(before)
