"""The shipped demo model (numbers in digits -> English words) and its tokenizer and ground truth.

The model is checked with PyTorch + transformers only (`MarianMTModel`, offline from `MODEL_DIR`):
exact match on held-out numbers that training never saw, with greedy decoding and with beam search.
The numbers come from a seed of their own (training used 0, its final evaluation 20240401), once as
sampled for training (uniform over lengths) and once with digits zeroed (groups of three to leave out).
"""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys

import pytest

from cpuformer.demo import MODEL_DIR, load_tokenizer
from cpuformer.demo.data import MAX_DIGITS, is_held_out, sample_number, sample_numbers
from cpuformer.demo.number_words import MAX_NUMBER, ONES, SCALES, TENS, WORDS, number_to_words
from cpuformer.demo.tokenizer import EOS, PAD, UNK, NumberTokenizer, build_vocab

TEST_SEED = 7
N_HELD_OUT = 1000


# -- number_words ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "n, words",
    [
        (0, "zero"),
        (7, "seven"),
        (10, "ten"),
        (13, "thirteen"),
        (19, "nineteen"),
        (20, "twenty"),
        (21, "twenty one"),
        (99, "ninety nine"),
        (100, "one hundred"),
        (101, "one hundred one"),
        (110, "one hundred ten"),
        (907, "nine hundred seven"),
        (1000, "one thousand"),
        (1001, "one thousand one"),
        (1010, "one thousand ten"),
        (1100, "one thousand one hundred"),
        (1234, "one thousand two hundred thirty four"),
        (10_000, "ten thousand"),
        (19_019, "nineteen thousand nineteen"),
        (100_000, "one hundred thousand"),
        (1_000_000, "one million"),
        (1_000_001, "one million one"),
        (1_001_000, "one million one thousand"),
        (20_000_020, "twenty million twenty"),
        (100_000_000, "one hundred million"),
        (MAX_NUMBER, "nine hundred ninety nine million nine hundred ninety nine thousand nine hundred ninety nine"),
    ],
)
def test_number_to_words(n, words):
    assert number_to_words(n) == words


@pytest.mark.parametrize("bad, error", [(-1, ValueError), (MAX_NUMBER + 1, ValueError), (True, TypeError),
                                        (1.0, TypeError), ("12", TypeError)])  # fmt: skip
def test_number_to_words_rejects(bad, error):
    with pytest.raises(error):
        number_to_words(bad)


def _words_to_number(text: str) -> int:
    """An independent reader of the words, to check that the converter is invertible."""
    values = {w: i for i, w in enumerate(ONES)} | {w: 10 * (i + 2) for i, w in enumerate(TENS)}
    scales = {"thousand": 10**3, "million": 10**6}
    total, group = 0, 0
    for word in text.split(" "):
        if word in values:
            group += values[word]
        elif word == "hundred":
            group *= 100
        else:
            total += group * scales[word]
            group = 0
    return total + group


def test_number_to_words_is_invertible_and_clean():
    rng = random.Random(TEST_SEED)
    numbers = list(range(2000)) + [sample_number(rng) for _ in range(5000)]
    for n in numbers:
        text = number_to_words(n)
        assert "and" not in text.split() and "-" not in text and "  " not in text
        assert set(text.split(" ")) <= set(WORDS)
        assert _words_to_number(text) == n, (n, text)


# -- data --------------------------------------------------------------------------------------


def test_splits_are_disjoint_and_cover_every_length():
    held_out = sample_numbers(2000, random.Random(TEST_SEED), "held_out")
    train = sample_numbers(2000, random.Random(TEST_SEED), "train", zero_fraction=1 / 3)
    zeros = sample_numbers(2000, random.Random(TEST_SEED), "held_out", zero_fraction=1.0)
    assert all(is_held_out(n) for n in held_out + zeros if n >= 1000)
    assert not any(is_held_out(n) for n in train)
    assert sum(str(n).count("0") for n in zeros) > 2 * sum(str(n).count("0") for n in held_out)
    for numbers in (held_out, train, zeros):
        lengths = [len(str(n)) for n in numbers]
        for digits in range(1, MAX_DIGITS + 1):  # uniform over lengths: ~222 of each
            assert 150 < lengths.count(digits) < 300
    with pytest.raises(ValueError, match="split"):
        sample_numbers(1, random.Random(0), "test")


# -- tokenizer ---------------------------------------------------------------------------------


def test_vocabulary_follows_marian_conventions():
    tok = load_tokenizer()
    assert tok.get_vocab() == build_vocab()
    assert (tok.eos_token_id, tok.unk_token_id) == (0, 1)
    assert tok.pad_token_id == tok.decoder_start_token_id == tok.vocab_size - 1 == len(tok) - 1
    assert tok.convert_ids_to_tokens([0, 1, tok.pad_token_id]) == [EOS, UNK, PAD]
    with open(os.path.join(MODEL_DIR, "vocab.json"), encoding="utf-8") as f:
        assert json.load(f) == build_vocab()


def test_tokenizer_round_trips(tmp_path):
    tok = NumberTokenizer()
    assert tok.encode_source("907") == [tok.get_vocab()[c] for c in "907"] + [tok.eos_token_id]
    assert tok.encode_source(" 42\n") == tok.encode_source("42")
    rng = random.Random(TEST_SEED)
    for n in [0, 10, MAX_NUMBER] + [sample_number(rng) for _ in range(200)]:
        ids = tok.encode_source(str(n))
        assert ids[-1] == tok.eos_token_id and tok.decode_source(ids) == str(n)
        words = number_to_words(n)
        assert tok.decode_target(tok.encode_target(words)) == words
    tok.save_pretrained(tmp_path)
    assert NumberTokenizer.from_pretrained(tmp_path).get_vocab() == tok.get_vocab()


def test_decode_target_strips_specials():
    tok = NumberTokenizer()
    seven, hundred = tok.encode_target("seven hundred")[:2]
    pad, eos, unk = tok.pad_token_id, tok.eos_token_id, tok.unk_token_id
    assert tok.decode_target([pad, seven, unk, hundred, eos, pad, pad]) == "seven hundred"
    assert tok.decode_target([pad, seven, eos, seven]) == "seven"  # nothing after </s>
    assert tok.decode_target([]) == ""
    assert tok.batch_decode_target([[pad, seven, eos], [pad, hundred]]) == ["seven", "hundred"]


def test_batch_encode_pads_right():
    tok = NumberTokenizer()
    ids, mask = tok.batch_encode_source(["5", "123"])
    assert ids == [tok.encode_source("5") + [tok.pad_token_id] * 2, tok.encode_source("123")]
    assert mask == [[1, 1, 0, 0], [1, 1, 1, 1]]


@pytest.mark.parametrize("text", ["12a", "", "  ", "1.5", "-3", "1 000", "1_000", "\uff11\uff12", "\u0661"])
def test_encode_source_rejects_non_digits(text):
    with pytest.raises(ValueError, match="digits 0-9"):
        NumberTokenizer().encode_source(text)


def test_tokenizer_errors():
    tok = NumberTokenizer()
    with pytest.raises(TypeError):
        tok.encode_source(12)
    for text in ("one and two", "twenty-one", "7", "</s>"):
        with pytest.raises(ValueError, match="not a number word"):
            tok.encode_target(text)
    with pytest.raises(ValueError, match="outside the vocabulary"):
        tok.decode_target([tok.vocab_size])
    with pytest.raises(ValueError, match="ids"):
        NumberTokenizer({EOS: 0, UNK: 2})
    with pytest.raises(ValueError, match="lacks"):
        NumberTokenizer({EOS: 0, UNK: 1})


def test_import_needs_neither_torch_nor_transformers():
    code = "import sys, cpuformer.demo; print(sorted({'torch', 'transformers'} & set(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


# -- the shipped model, run by transformers ------------------------------------------------------


@pytest.fixture(scope="module")
def model():
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # faster than 2 on a shared machine, and leaves a core to the others
    try:
        yield transformers.MarianMTModel.from_pretrained(MODEL_DIR, local_files_only=True).eval()
    finally:
        torch.set_num_threads(threads)


def _translate(model, numbers, num_beams, batch_size=500):
    import torch

    tok = load_tokenizer()
    out = []
    with torch.no_grad():
        for start in range(0, len(numbers), batch_size):
            ids, mask = tok.batch_encode_source([str(n) for n in numbers[start : start + batch_size]])
            generated = model.generate(input_ids=torch.tensor(ids), attention_mask=torch.tensor(mask),
                                       num_beams=num_beams, do_sample=False)  # fmt: skip
            out += tok.batch_decode_target(generated.tolist())
    return out


def _exact_match(model, numbers, num_beams):
    got = _translate(model, numbers, num_beams)
    wrong = [(n, g) for n, g in zip(numbers, got) if g != number_to_words(n)]
    return 1 - len(wrong) / len(numbers), wrong


def test_model_files_and_config(model):
    tok = load_tokenizer()
    names = set(os.listdir(MODEL_DIR))
    assert {"config.json", "generation_config.json", "model.safetensors", "vocab.json"} <= names
    assert os.path.getsize(os.path.join(MODEL_DIR, "model.safetensors")) < 2_000_000
    cfg = model.config
    assert (cfg.vocab_size, cfg.pad_token_id, cfg.eos_token_id, cfg.decoder_start_token_id) == (
        tok.vocab_size, tok.pad_token_id, tok.eos_token_id, tok.decoder_start_token_id)  # fmt: skip
    assert cfg.scale_embedding and cfg.share_encoder_decoder_embeddings and cfg.tie_word_embeddings
    assert model.generation_config.decoder_start_token_id == tok.pad_token_id


def test_examples(model):
    numbers = [0, 7, 20, 907, 1234, 1_000_000, 1_000_001, 5_000_663, 100_000_000, MAX_NUMBER]
    round_numbers = [d * 10**k for d in range(1, 10) for k in range(MAX_DIGITS)]
    numbers += round_numbers + [n + 1 for n in round_numbers]
    want = [number_to_words(n) for n in numbers]
    got = _translate(model, numbers, num_beams=1)
    assert [(n, g) for n, g, w in zip(numbers, got, want) if g != w] == []


@pytest.mark.parametrize("zero_fraction", [0.0, 1.0], ids=["uniform", "with_zeros"])
def test_held_out_exact_match(model, zero_fraction):
    numbers = sample_numbers(N_HELD_OUT, random.Random(TEST_SEED), "held_out", zero_fraction)
    greedy, wrong = _exact_match(model, numbers, num_beams=1)
    assert greedy >= 0.99, wrong[:10]
    beam, wrong_beam = _exact_match(model, numbers, num_beams=4)
    assert beam >= greedy, wrong_beam[:10]
