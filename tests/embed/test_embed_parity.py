"""SentenceEncoder against sentence-transformers on PyTorch, same shipped all-MiniLM-L6-v2 weights, offline.

* token ids identical to sentence-transformers' own tokenisation (its tokenizer, its max_seq_length 256);
* truncation at 256, not at the 128 built into the shipped tokenizer.json;
* embeddings: max |difference| <= 1e-5 and cosine >= 0.99999 per sentence, alone and in padded batches.
  Both are float32 through 6 layers (d_model 384); observed differences are ~3e-7 on unit vectors, so
  1e-5 is a 30x margin that still catches any wrong term (a missing bias or a token left out of the mean
  moves an embedding by >= 1e-3).
"""

from __future__ import annotations

import json
import os

import numpy as np
import pytest

from embed_helpers import (
    CLS_ID, LONG_200, LONG_256, LONG_257, LONG_400, ONE_TOKEN_WORDS, SENTENCES, SEP_ID, SHORT_SENTENCES,
    assert_close_embeddings,
)


def test_corpus_premises(encoder, st_model, model_dir):
    """What the other tests rely on: the limits, and the one-token words the long sentences are made of."""
    assert encoder.max_seq_length == st_model.max_seq_length == 256
    with open(os.path.join(model_dir, "tokenizer.json"), encoding="utf-8") as f:
        builtin = json.load(f)["truncation"]["max_length"]
    assert builtin < 200, "the tokenizer file no longer truncates below 200: the 200-token case proves nothing"
    assert [len(ids) for ids in encoder.tokenize(ONE_TOKEN_WORDS)] == [3] * len(ONE_TOKEN_WORDS)


def test_token_ids_identical(encoder, st_ids):
    got = encoder.tokenize(SENTENCES)
    want = st_ids(SENTENCES)
    for s, g, w in zip(SENTENCES, got, want):
        assert g == w, f"{s[:60]!r}: {g[:12]}... != {w[:12]}..."
    assert got[0] == [CLS_ID, SEP_ID]  # the empty string


def test_token_ids_identical_random_unicode(encoder, st_ids):
    """Random strings over ASCII punctuation, accents, combining marks, CJK, Hangul, emoji, controls."""
    rng = np.random.default_rng(11)
    alphabet = (list("abcXYZ019 .,;:!?'\"()[]{}-—–…\t\n\r") + list("éèàüßøœÆÑçÅ") + list("中文日本語한국어")
                + ["🙂", "👍🏽", "👨‍👩‍👧", "🇫🇷", "\u200b", "\u00a0", "\u0301", "\ufeff", "\x00", "\x7f", "\u2028",
                   "ﬁ", "Ⅻ", "①", "ǅ", "İ", "ς", "\U0001F600"])
    sentences = ["".join(rng.choice(alphabet, rng.integers(0, 60))) for _ in range(300)]
    got, want = encoder.tokenize(sentences), st_ids(sentences)
    bad = [i for i in range(len(sentences)) if got[i] != want[i]]
    assert not bad, f"{len(bad)} differ, first {sentences[bad[0]]!r}: {got[bad[0]]} != {want[bad[0]]}"


def test_200_tokens_not_truncated_at_128(encoder, st_ids):
    (ids,) = encoder.tokenize([LONG_200])
    assert len(ids) == 200
    assert ids == st_ids([LONG_200])[0]


@pytest.mark.parametrize("sentence, full", [(LONG_256, 256), (LONG_257, 257), (LONG_400, 400)],
                         ids=["256", "257", "400"])
def test_truncated_at_256_like_sentence_transformers(encoder, st_ids, options, sentence, full):
    (ids,) = encoder.tokenize([sentence])
    assert ids == st_ids([sentence])[0]
    assert len(ids) == 256 and ids[0] == CLS_ID and ids[-1] == SEP_ID
    with options(max_seq_length=512):  # the untruncated ids: the first 255 are kept, then [SEP]
        (untruncated,) = encoder.tokenize([sentence])
    assert len(untruncated) == full
    assert ids[:255] == untruncated[:255]


def test_long_embeddings_use_tokens_beyond_128(encoder, st_encode):
    got = encoder.encode([LONG_200, LONG_400])
    assert_close_embeddings(got, st_encode([LONG_200, LONG_400]))
    # Cut at 128 instead, the embedding moves far beyond the tolerance: the comparison above would notice.
    cut = [ids[:127] + [SEP_ID] for ids in encoder.tokenize([LONG_200, LONG_400])]
    assert np.abs(encoder.encode_ids(cut) - got).max(axis=1).min() > 1e-3


def test_embeddings_alone(encoder, st_encode):
    """Each sentence in a batch of one: no padding on either side."""
    got = np.stack([encoder.encode([s])[0] for s in SENTENCES])
    want = np.stack([st_encode([s])[0] for s in SENTENCES])
    assert_close_embeddings(got, want)


@pytest.mark.parametrize("batch_size", [5, 32])
def test_embeddings_in_padded_batches(encoder, st_encode, batch_size):
    """Shuffled so each batch mixes lengths (both libraries sort by length within the call anyway)."""
    rng = np.random.default_rng(batch_size)
    sentences = [SENTENCES[i] for i in rng.permutation(len(SENTENCES))]
    got = encoder.encode(sentences, batch_size=batch_size)
    assert got.shape == (len(sentences), 384) and got.dtype == np.float32
    assert_close_embeddings(got, st_encode(sentences, batch_size=batch_size))


def test_normalize(encoder):
    """normalize=False gives the mean-pooled vectors (checked against NumPy in test_embed_pooling.py)."""
    normed = encoder.encode(SHORT_SENTENCES)
    raw = encoder.encode(SHORT_SENTENCES, normalize=False)
    assert encoder.normalize is True  # all-MiniLM-L6-v2 ends in a Normalize module
    np.testing.assert_allclose(np.linalg.norm(normed, axis=1), 1.0, atol=1e-6)
    norms = np.linalg.norm(raw, axis=1)
    assert np.abs(norms - 1.0).max() > 0.1  # mean pooling alone does not give unit vectors
    np.testing.assert_allclose(raw / norms[:, None], normed, atol=1e-6)
