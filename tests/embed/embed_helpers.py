"""The corpus and comparison helpers of the sentence-embedding tests (imported by the tests beside it)."""

from __future__ import annotations

import numpy as np

CLS_ID, SEP_ID = 101, 102

# Words that are one WordPiece each in the uncased BERT vocabulary (checked by test_corpus_premises), so a
# sentence of n of them is n + 2 tokens with [CLS] and [SEP].
ONE_TOKEN_WORDS = (
    "time people year way day man thing woman life child world school state family student group country "
    "problem hand part place case week company system program question work government number night point "
    "home water room mother area money story fact month lot right study book eye job word business issue "
    "side kind head house service friend father power hour game line end member law car city community name "
    "president team minute idea kid body information back parent face level office door health person art "
    "war history party result change morning reason research girl guy moment air teacher force education"
).split()


def words_sentence(n_words: int, seed: int) -> str:
    """n_words one-token words drawn with a seeded RNG: n_words + 2 tokens."""
    rng = np.random.default_rng(seed)
    return " ".join(rng.choice(ONE_TOKEN_WORDS, n_words))


# Varied short and medium sentences: punctuation, non-ASCII scripts, emoji (with ZWJ sequences, skin tones
# and flags), odd whitespace and invisible characters, URLs and numbers, words that split into many pieces.
SHORT_SENTENCES = [
    "",
    "a",
    " ",
    "Hello, world!",
    "The quick brown fox jumps over the lazy dog.",
    "What?! No way... really?!?! (yes) [maybe] {no} — “quoted” ‘single’ «guillemets» … ;-) :: -- __",
    "Ça va? Über naïve café, façade, smörgåsbord, jalapeño, Œuvre, Ærøskøbing.",
    "東京は日本の首都です。北京是中国的首都。",
    "서울은 한국의 수도입니다.",
    "Москва — столица России.",
    "مرحبا بالعالم",
    "I love it 😍🔥👍🏽 👨‍👩‍👧 🇫🇷!!",
    "🙂",
    "   leading\ttabs and\nnewlines   \r\n",
    "https://example.com/path?q=1&x=2 email@example.org #hashtag @user $100.00 3.14159 1,000,000 2024-01-31",
    "supercalifragilisticexpialidocious antidisestablishmentarianism pneumonoultramicroscopicsilicovolcanoconiosis",
    "zero\u200bwidth\u00a0nbsp\ufeffbom e\u0301 ﬁ Ⅻ ① ǅ İ ς",
    "A man is eating food.",
    "A man is riding a white horse on an enclosed ground.",
    "Sentence embeddings map text to vectors so that similar meanings end up close together.",
    words_sentence(40, seed=1),
    words_sentence(125, seed=2),  # 127 tokens: just under the tokenizer file's built-in 128
    words_sentence(127, seed=3),  # 129 tokens: just over it
]
# Long sentences around the limits: 200 tokens (must not be cut at the tokenizer file's 128), exactly 256,
# 257 and 400 (cut at 256, sentence-transformers' max_seq_length).
LONG_200 = words_sentence(198, seed=4)
LONG_256 = words_sentence(254, seed=5)
LONG_257 = words_sentence(255, seed=6)
LONG_400 = words_sentence(398, seed=7)
LONG_SENTENCES = [LONG_200, LONG_256, LONG_257, LONG_400]
SENTENCES = SHORT_SENTENCES + LONG_SENTENCES



def assert_close_embeddings(got, want, atol=1e-5, min_cos=0.99999):
    """Row-wise: max |got - want| <= atol and cosine(got, want) >= min_cos."""
    got = np.asarray(got, dtype=np.float64)
    want = np.asarray(want, dtype=np.float64)
    assert got.shape == want.shape
    assert np.isfinite(got).all()
    err = np.abs(got - want).max(axis=1)
    cos = (got * want).sum(1) / (np.linalg.norm(got, axis=1) * np.linalg.norm(want, axis=1))
    worst = int(np.argmax(err))
    assert err.max() <= atol, f"row {worst}: max |diff| {err[worst]:.3g} > {atol:g}"
    assert cos.min() >= min_cos, f"row {int(np.argmin(cos))}: cosine {cos.min():.8f} < {min_cos}"
