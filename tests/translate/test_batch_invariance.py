"""A sentence's result does not depend on the batch around it nor on the thread count: decoded alone, inside a
padded batch, in another order, or on 1 or 2 threads, it gets the same tokens and bit-identical scores and
log-probs (the kernels never split a reduction by thread or by batch row, so exact equality is the contract).

Models: the trained expand model and its half-trained snapshot (beam search there often differs from greedy,
so the beams really compete), the demo model, and a random d_model 256 Marian (vocab 1000, larger GEMMs).
"""

from __future__ import annotations

import random

import numpy as np
import pytest

import cpuformer
import marian_helpers as mh

MAX_LENGTH = 24
SEARCHES = {
    "greedy": dict(beam_size=1),
    "beam4": dict(beam_size=4),
    "beam4-nbest2-lp0.6": dict(beam_size=4, num_hypotheses=2, length_penalty=0.6),
    "sampling": dict(sampling_topk=5, temperature=1.3, seed=11),
}


@pytest.fixture(scope="module", params=["expand", "expand-early", "demo", "d256-random"])
def model_and_sources(request, tmp_path_factory):
    rng = random.Random(12)
    if request.param == "demo":
        from cpuformer.demo.data import sample_number

        tok = request.getfixturevalue("demo_tok")
        return request.getfixturevalue("demo_tr"), [tok.encode_source(str(sample_number(rng))) for _ in range(14)]
    if request.param == "d256-random":
        request.getfixturevalue("hf")
        model = mh.random_marian(11, vocab=1000, d_model=256, enc_layers=2, dec_layers=2, heads=4, ffn=1024)
        path = str(tmp_path_factory.mktemp("d256"))
        model.save_pretrained(path)
        tr = cpuformer.Translator.from_pretrained(path)
        tr.num_threads = 1
        return tr, mh.random_sources(np.random.default_rng(12), 8, 1, 999, 1, 20)
    fixture = "expand_early_tr" if request.param == "expand-early" else "expand_tr"
    return request.getfixturevalue(fixture), [s + [mh.EXPAND_EOS] for s in mh.expand_sources(rng, 14)]


def _run(tr, sources, search):
    return tr.generate(sources, max_length=MAX_LENGTH, return_scores=True, **SEARCHES[search])


@pytest.mark.parametrize("search", ["greedy", "beam4", "beam4-nbest2-lp0.6"])
def test_alone_equals_in_batch(model_and_sources, search):
    tr, sources = model_and_sources
    hyps, scores = _run(tr, sources, search)
    for i, s in enumerate(sources):
        h, sc = _run(tr, [s], search)
        assert h[0] == hyps[i] and sc[0] == scores[i], (
            f"sentence {i} alone: {h[0]} {sc[0]}, in batch: {hyps[i]} {scores[i]}")


@pytest.mark.parametrize("search", sorted(SEARCHES))
def test_order_and_padded_array_input(model_and_sources, search):
    tr, sources = model_and_sources
    want = _run(tr, sources, search)
    if search != "sampling":  # a sample depends on the sentence's index (its generator's seed)
        perm = np.random.default_rng(3).permutation(len(sources))
        got = _run(tr, [sources[i] for i in perm], search)
        assert [got[0][j] for j in np.argsort(perm)] == want[0]
        assert [got[1][j] for j in np.argsort(perm)] == want[1]
    # the same batch as a padded array (junk in the padding, extra width) with lengths
    ids = np.full((len(sources), max(map(len, sources)) + 3), 9, dtype=np.int64)
    for i, s in enumerate(sources):
        ids[i, : len(s)] = s
    got = tr.generate(ids, lengths=[len(s) for s in sources], max_length=MAX_LENGTH, return_scores=True,
                      **SEARCHES[search])
    assert got == want


@pytest.mark.parametrize("search", ["greedy", "beam4-nbest2-lp0.6", "sampling"])
def test_one_and_two_threads_identical(model_and_sources, search):
    tr, sources = model_and_sources
    previous = tr.num_threads
    try:
        tr.num_threads = 1
        one = _run(tr, sources, search)
        tr.num_threads = 2
        assert tr.num_threads == 2
        two = _run(tr, sources, search)
    finally:
        tr.num_threads = previous
    assert one == two


def test_log_probs_threads_and_batch(model_and_sources):
    tr, sources = model_and_sources
    start = tr.config["decoder_start_id"]
    targets = [[start] + h for h in tr.generate(sources, max_length=MAX_LENGTH)]
    previous = tr.num_threads
    try:
        tr.num_threads = 1
        one = tr.log_probs(sources, targets)
        tr.num_threads = 2
        two = tr.log_probs(sources, targets)
    finally:
        tr.num_threads = previous
    np.testing.assert_array_equal(one, two)
    for i in (0, len(sources) // 2, len(sources) - 1):
        alone = tr.log_probs([sources[i]], [targets[i]])[0]
        np.testing.assert_array_equal(alone, one[i, : len(targets[i])])
