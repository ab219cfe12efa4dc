"""Sampling (beam_size 1 with sampling_topk / sampling_topp / temperature): reproducible with a seed, each
sentence with its own generator (seeded from (seed, index in the batch)), degenerate settings equal greedy, and
the tokens drawn follow the distribution they should: softmax(log p / temperature) restricted to the top-k,
then to the top-p nucleus, renormalised.

The distribution checks sample the first token of many copies of one sentence (each copy its own generator)
and compare frequencies with the teacher-forced probabilities: |freq - p| <= 5 sqrt(p (1 - p) / n) + 2 / n
per token (a 5-sigma band: a false alarm over 50 tokens has probability ~1e-5).
"""

from __future__ import annotations

import random

import numpy as np
import pytest

import marian_helpers as mh

N_DRAWS = 4000


@pytest.fixture(scope="module")
def early(expand_early_tr):
    """A trained but unsure model (samples differ from greedy), and a batch."""
    sources = [s + [mh.EXPAND_EOS] for s in mh.expand_sources(random.Random(8), 16)]
    return expand_early_tr, sources


def test_seed_reproducible_and_seed_dependent(early):
    tr, sources = early
    a = tr.generate(sources, sampling_topk=0, seed=123, max_length=30)
    b = tr.generate(sources, sampling_topk=0, seed=123, max_length=30)
    assert a == b
    c = tr.generate(sources, sampling_topk=0, seed=124, max_length=30)
    assert sum(x != y for x, y in zip(a, c)) >= len(sources) // 4
    greedy = tr.generate(sources, max_length=30)
    assert sum(x != y for x, y in zip(a, greedy)) >= len(sources) // 4


def test_unseeded_calls_draw_afresh(early):
    """Without a seed, each call samples anew (it used to be seed 0 every time: the same draw forever)."""
    tr, sources = early
    draws = [tuple(map(tuple, tr.generate(sources, sampling_topk=0, max_length=30))) for _ in range(3)]
    assert len(set(draws)) == 3


def test_topk1_tiny_topp_tiny_temperature_equal_greedy(early, demo_tr, demo_tok):
    """Settings that leave one candidate per step are greedy search: same tokens, same scores."""
    from cpuformer.demo.data import sample_number

    rng = random.Random(2)
    demo_sources = [demo_tok.encode_source(str(sample_number(rng))) for _ in range(16)]
    for tr, sources in (early, (demo_tr, demo_sources)):
        want = tr.generate(sources, max_length=30, return_scores=True)
        for kw in (dict(sampling_topk=1), dict(sampling_topk=1, temperature=3.0), dict(sampling_topp=1e-6),
                   dict(temperature=1e-6)):
            for seed in (0, 5):
                got = tr.generate(sources, max_length=30, seed=seed, return_scores=True, **kw)
                assert got[0] == want[0], kw
                np.testing.assert_allclose(got[1], want[1], rtol=0, atol=0, err_msg=str(kw))


def test_sentence_sample_independent_of_batch(early):
    """A sentence's sample depends on (seed, its index), not on the other sentences or the padding."""
    tr, sources = early
    others = [s + [mh.EXPAND_EOS] for s in mh.expand_sources(random.Random(9), 16)]
    for kw in (dict(sampling_topk=0), dict(sampling_topk=5, temperature=1.5), dict(sampling_topp=0.9)):
        full = tr.generate(sources, seed=77, max_length=30, **kw)
        # even positions kept, odd positions replaced by other sentences (other lengths, other padding)
        mixed = [s if i % 2 == 0 else o for i, (s, o) in enumerate(zip(sources, others))]
        got = tr.generate(mixed, seed=77, max_length=30, **kw)
        assert all(got[i] == full[i] for i in range(0, len(sources), 2)), kw
        # a prefix of the batch is decoded the same
        assert tr.generate(sources[:3], seed=77, max_length=30, **kw) == full[:3]
        assert tr.generate(sources[:1], seed=77, max_length=30, **kw) == full[:1]


def _first_token_draws(tr, source, **kw):
    """First generated token of N_DRAWS copies of `source` (max_length 2: step 0 is not forced)."""
    hyps = tr.generate([source] * N_DRAWS, max_length=2, seed=31, **kw)
    eos = tr.config["eos_id"]
    return np.array([h[0] if h else eos for h in hyps])


def _expected(logp, temperature=1.0, topk=0, topp=1.0):
    p = np.exp((logp - logp.max()) / temperature)
    order = np.argsort(-logp, kind="stable")
    keep = np.zeros_like(p, dtype=bool)
    keep[order[: topk or len(p)]] = True
    p = np.where(keep, p, 0.0)
    p /= p.sum()
    if topp < 1.0:
        cum = np.cumsum(p[order])
        cut = int(np.searchsorted(cum, topp)) + 1  # smallest prefix with mass >= topp
        nucleus = np.zeros_like(keep)
        nucleus[order[:cut]] = True
        p = np.where(nucleus, p, 0.0)
        p /= p.sum()
    return p


@pytest.mark.parametrize("kw", [dict(sampling_topk=0), dict(temperature=0.7), dict(temperature=1.6),
                                dict(sampling_topk=5), dict(sampling_topp=0.8),
                                dict(sampling_topk=8, sampling_topp=0.7, temperature=1.3)],
                         ids=lambda kw: "-".join(f"{k}={v}" for k, v in kw.items()))
def test_first_token_distribution(tiny_tr, kw):
    tr = tiny_tr
    source = [5, 17, 3, 40, 0]
    logp = tr.log_probs([source], [[tr.config["decoder_start_id"]]])[0, 0].astype(np.float64)
    want = _expected(logp, kw.get("temperature", 1.0), kw.get("sampling_topk", 0), kw.get("sampling_topp", 1.0))
    assert (want > 0.01).sum() >= 3, "the model must be unsure for this test to mean anything"
    draws = _first_token_draws(tr, source, **kw)
    freq = np.bincount(draws, minlength=len(logp)) / N_DRAWS
    band = 5 * np.sqrt(want * (1 - want) / N_DRAWS) + 2 / N_DRAWS
    bad = np.flatnonzero(np.abs(freq - want) > band)
    assert bad.size == 0, f"{kw}: tokens {bad.tolist()}: freq {freq[bad]}, expected {want[bad]}"
    assert not freq[want == 0].any(), f"{kw}: sampled tokens outside the top-k / nucleus"


def test_topk_topp_tokens_stay_in_their_sets(early):
    """Every step of full-length samples: the token is among the k best (or in the nucleus) of the
    teacher-forced row, up to float32 ties."""
    tr, sources = early
    start, eos = tr.config["decoder_start_id"], tr.config["eos_id"]
    for kw in (dict(sampling_topk=3, temperature=2.0), dict(sampling_topp=0.6, temperature=1.5)):
        hyps = tr.generate(sources, seed=3, max_length=30, **kw)
        lp = tr.log_probs(sources, [[start] + h for h in hyps]).astype(np.float64)
        for b, h in enumerate(hyps):
            for i, tok in enumerate(h + ([eos] if len(h) < 29 else [])):
                row = lp[b, i]
                if "sampling_topk" in kw:
                    assert row[tok] >= np.sort(row)[-kw["sampling_topk"]] - 1e-4, (b, i, tok)
                else:
                    allowed = _expected(row, kw["temperature"], 0, kw["sampling_topp"]) > 0
                    near = row >= row[allowed].min() - 1e-4
                    assert near[tok], (b, i, tok)


def test_sampling_rejects_beam(early):
    tr, sources = early
    for kw in (dict(sampling_topk=5), dict(sampling_topp=0.5), dict(temperature=0.8)):
        with pytest.raises(ValueError, match="beam"):
            tr.generate(sources, beam_size=2, **kw)
    for bad in (dict(sampling_topp=0.0), dict(sampling_topp=1.5), dict(temperature=0.0), dict(temperature=-1.0)):
        with pytest.raises(ValueError):
            tr.generate(sources, **bad)
    with pytest.raises(ValueError):
        tr.generate(sources, sampling_topk=-1)
