"""Batching invariances of SentenceEncoder: a sentence's embedding does not depend on its batch, on the
input order, on streaming, or on the thread count; progress bars and pickling.

The C++ encoder packs the real tokens of a batch and never computes padded positions, and no reduction is
split across threads (GEMM never parallelises K), so these are expected to hold bitwise; encode() is only
required to match within 1e-6, encode_ids on the same padded ids exactly.
"""

from __future__ import annotations

import pickle

import numpy as np
import pytest

import cpuformer
from embed_helpers import SENTENCES, SHORT_SENTENCES, words_sentence


def test_alone_equals_in_batch(encoder):
    alone = np.stack([encoder.encode([s])[0] for s in SENTENCES])
    for batch_size in (3, 8, len(SENTENCES)):
        batched = encoder.encode(SENTENCES, batch_size=batch_size)
        np.testing.assert_allclose(batched, alone, rtol=0, atol=1e-6)


def test_encode_ids_padded_batch_bitwise(encoder):
    """Same ids as one padded array (with lengths), as a list of lists, and one at a time: identical bits."""
    ids = encoder.tokenize(SENTENCES)
    lengths = np.array([len(x) for x in ids])
    padded = np.zeros((len(ids), lengths.max()), dtype=np.int64)  # [PAD] = 0
    for i, x in enumerate(ids):
        padded[i, : len(x)] = x
    from_array = encoder.encode_ids(padded, lengths)
    from_lists = encoder.encode_ids(ids)
    alone = np.stack([encoder.encode_ids([x])[0] for x in ids])
    assert np.array_equal(from_array, alone)
    assert np.array_equal(from_lists, alone)
    # Whatever sits in the padding is ignored.
    junk = np.where(np.arange(padded.shape[1]) < lengths[:, None], padded, 7592)
    assert np.array_equal(encoder.encode_ids(junk, lengths), alone)


def test_order_restored_after_length_sorting(encoder):
    rng = np.random.default_rng(3)
    pool = SENTENCES + [words_sentence(int(n), seed=100 + i) for i, n in enumerate(rng.integers(1, 90, 40))]
    order = rng.permutation(len(pool))
    shuffled = [pool[i] for i in order]
    reference = encoder.encode(pool, batch_size=7)
    got = encoder.encode(shuffled, batch_size=7)
    assert np.array_equal(got, reference[order])
    # And each row is that sentence's own embedding, not a neighbour's of the same length.
    for row in (0, len(pool) // 2, len(pool) - 1):
        np.testing.assert_allclose(got[row], encoder.encode([shuffled[row]])[0], rtol=0, atol=1e-6)


def test_duplicates_and_tuple_input(encoder):
    s = ("same", "other", "same", "same")
    out = encoder.encode(s)
    assert np.array_equal(out[0], out[2]) and np.array_equal(out[0], out[3])
    assert not np.array_equal(out[0], out[1])


def test_encode_iter_streams_10k_in_order(encoder):
    words = ["cats", "dogs", "run", "fast", "blue", "sky", "rain", "hello", "yes", "no", "!", "?"]
    n, chunk = 10_000, 3_000
    rng = np.random.default_rng(5)
    sentences = [" ".join(rng.choice(words, rng.integers(1, 3))) for _ in range(n)]
    consumed = []

    def generate():  # a generator: no len(), read once
        for s in sentences:
            consumed.append(s)
            yield s

    chunks = []
    for out in encoder.encode_iter(generate(), batch_size=64, chunk_size=chunk):
        # Streaming: no more than one chunk has been read ahead of what was yielded.
        assert len(consumed) <= sum(len(c) for c in chunks) + len(out) + chunk
        chunks.append(out)
    assert [len(c) for c in chunks] == [3000, 3000, 3000, 1000]
    # Equal to encode(): of the distinct sentences (a few hundred; encoding all 10k a second time would
    # double the test's time), spread back — bitwise, as a sentence's result never depends on its batch.
    distinct, inverse = np.unique(np.array(sentences, dtype=object), return_inverse=True)
    assert len(distinct) < 200
    assert np.array_equal(np.concatenate(chunks), encoder.encode(list(distinct), batch_size=64)[inverse])
    assert np.array_equal(chunks[3], encoder.encode(sentences[9000:], batch_size=64))  # the last, partial chunk


def test_encode_iter_empty(encoder):
    assert list(encoder.encode_iter(iter([]))) == []


def test_one_and_two_threads_identical(encoder):
    ids = encoder.tokenize(SENTENCES)
    try:
        encoder.num_threads = 1
        one = encoder.encode(SENTENCES, batch_size=16)
        one_ids = encoder.encode_ids(ids)
        encoder.num_threads = 2
        assert encoder.num_threads == 2
        two = encoder.encode(SENTENCES, batch_size=16)
        two_ids = encoder.encode_ids(ids)
    finally:
        encoder.num_threads = 1
    assert np.array_equal(one, two)
    assert np.array_equal(one_ids, two_ids)


def test_progress_bar(encoder, capsys):
    pytest.importorskip("tqdm")
    out = encoder.encode(SHORT_SENTENCES, batch_size=4, progress=True)
    err = capsys.readouterr().err
    assert f"{len(SHORT_SENTENCES)}/{len(SHORT_SENTENCES)}" in err and "100%" in err
    assert np.array_equal(out, encoder.encode(SHORT_SENTENCES, batch_size=4))


def test_pickle_round_trip(encoder, options):
    with options(pooling="max", normalize=False, max_seq_length=100, num_threads=1):
        data = pickle.dumps(encoder)
        assert len(data) < 10_000  # the path and options, not the weights
        copy = pickle.loads(data)
        assert isinstance(copy, cpuformer.SentenceEncoder)
        assert (copy.directory, copy.pooling, copy.normalize, copy.max_seq_length, copy.num_threads) == (
            encoder.directory, "max", False, 100, 1)
        assert np.array_equal(copy.encode(SENTENCES), encoder.encode(SENTENCES))
    assert len(copy.tokenize(SENTENCES[-1:])[0]) == 100
