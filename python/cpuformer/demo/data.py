"""Numbers for training and evaluating the demo model.

Sampling is uniform over the number of digits (1..MAX_DIGITS), then uniform among the numbers with that
many digits, so "7" is as likely as a nine-digit number and every length is well represented.

Numbers with zeros inside ("5000663", "2000000") are rare under that distribution, yet they are where
a model goes wrong (whole groups of three to leave out), so `sample_numbers` can also zero out digits:
with probability ``zero_fraction`` each digit after the first becomes 0 with probability 1/2.

A fixed, hash-defined 1/64 of the numbers with four or more digits is *held out*: training never sees
them, evaluation draws only from them. Numbers below 1000 cannot be held out (there are only a thousand
and the model has to learn every one of them), so evaluation draws those from everything.
"""

from __future__ import annotations

import random
import zlib

from .number_words import MAX_NUMBER

__all__ = ["MAX_DIGITS", "is_held_out", "sample_number", "sample_numbers"]

MAX_DIGITS = len(str(MAX_NUMBER))
_HELD_OUT_FROM = 1000
_HELD_OUT_ONE_IN = 64


def is_held_out(n: int) -> bool:
    """Whether ``n`` belongs to the held-out split (never used for training)."""
    return n >= _HELD_OUT_FROM and zlib.crc32(str(n).encode("ascii")) % _HELD_OUT_ONE_IN == 0


def _sample_with_digits(rng: random.Random, digits: int) -> int:
    low = 0 if digits == 1 else 10 ** (digits - 1)
    return rng.randint(low, 10**digits - 1)


def sample_number(rng: random.Random, max_digits: int = MAX_DIGITS) -> int:
    """One number: its digit count uniform in 1..max_digits, then uniform within that count."""
    return _sample_with_digits(rng, rng.randint(1, max_digits))


def _zero_some_digits(rng: random.Random, n: int) -> int:
    text = str(n)
    return int(text[0] + "".join("0" if rng.random() < 0.5 else c for c in text[1:]))


def sample_numbers(count: int, rng: random.Random, split: str, zero_fraction: float = 0.0) -> list[int]:
    """``count`` numbers of the ``"train"`` or ``"held_out"`` split (see the module docstring).

    The digit count is drawn first and the rejection sampling happens within it, so the distribution
    over lengths stays uniform in both splits (rejecting whole draws would favour the short numbers,
    which are never rejected). Zeroing digits keeps the count of digits.
    """
    if split not in ("train", "held_out"):
        raise ValueError(f"split must be 'train' or 'held_out', got {split!r}")
    want_held_out = split == "held_out"
    numbers: list[int] = []
    for _ in range(count):
        digits = rng.randint(1, MAX_DIGITS)
        while True:
            n = _sample_with_digits(rng, digits)
            if zero_fraction and rng.random() < zero_fraction:
                n = _zero_some_digits(rng, n)
            if n < _HELD_OUT_FROM or is_held_out(n) == want_held_out:
                break
        numbers.append(n)
    return numbers
