"""The shipped demo model (numbers in digits -> English words) through cpuformer alone: Translator.from_pretrained
on its directory, the demo tokenizer, 1000 held-out numbers (never seen in training; a seed of their own).
Greedy exact match >= 99%; beam search (4) no worse. Needs neither torch nor transformers.
"""

from __future__ import annotations

import random

import pytest

from cpuformer.demo.data import is_held_out, sample_numbers
from cpuformer.demo.number_words import number_to_words

SEED = 4242  # training used 0, its evaluation 20240401, tests/demo 7
N = 1000


@pytest.fixture(scope="module")
def held_out():
    numbers = sample_numbers(N, random.Random(SEED), "held_out")
    assert len(set(numbers)) > 0.7 * N  # short numbers repeat: digit counts are uniform
    assert sum(is_held_out(n) for n in numbers) >= 0.5 * N  # numbers below 1000 cannot be held out
    return numbers


def _exact_match(tr, tok, numbers, beam):
    sources = [tok.encode_source(str(n)) for n in numbers]
    got = tok.batch_decode_target(tr.generate(sources, beam_size=beam))
    wrong = [(n, g) for n, g in zip(numbers, got) if g != number_to_words(n)]
    return 1 - len(wrong) / len(numbers), wrong


def test_demo_defaults_from_its_generation_config(demo_tr):
    # generation_config.json: max_length 32 (HF, counting the start token), num_beams 1, forced EOS
    assert demo_tr.generation_defaults["max_length"] == 31
    assert demo_tr.generation_defaults["beam_size"] == 1
    assert demo_tr.generation_defaults["force_eos_at_max_length"] is True


def test_demo_held_out_exact_match(demo_tr, demo_tok, held_out):
    tr = demo_tr
    greedy, wrong = _exact_match(tr, demo_tok, held_out, beam=1)
    print(f"demo, cpuformer greedy: exact match {greedy:.4f} on {N} held-out numbers; wrong: {wrong[:5]}")
    assert greedy >= 0.99, wrong[:10]
    beam, wrong_beam = _exact_match(tr, demo_tok, held_out, beam=4)
    print(f"demo, cpuformer beam 4: exact match {beam:.4f}; wrong: {wrong_beam[:5]}")
    assert beam >= greedy, wrong_beam[:10]


def test_demo_examples(demo_tr, demo_tok):
    numbers = [0, 7, 13, 20, 101, 907, 1000, 1234, 1_000_001, 20_000_020, 999_999_999]
    got = demo_tok.batch_decode_target(demo_tr.generate([demo_tok.encode_source(str(n)) for n in numbers]))
    assert sum(g == number_to_words(n) for g, n in zip(got, numbers)) >= len(numbers) - 1, got
