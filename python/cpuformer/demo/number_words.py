"""Ground truth for the demo model: a non-negative integer written out in English words.

American style, as the model is trained to write it: no "and", no hyphens, words separated by single
spaces, zero groups left out ("1000001" -> "one million one"). Pure Python, no dependencies; the
training data and the tests both come from here.
"""

from __future__ import annotations

__all__ = ["MAX_NUMBER", "ONES", "SCALES", "TENS", "WORDS", "number_to_words"]

#: The largest number the converter (and the demo model's vocabulary) covers.
MAX_NUMBER = 999_999_999

ONES = (
    "zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine",
    "ten", "eleven", "twelve", "thirteen", "fourteen", "fifteen", "sixteen", "seventeen", "eighteen",
    "nineteen",
)  # fmt: skip
TENS = ("twenty", "thirty", "forty", "fifty", "sixty", "seventy", "eighty", "ninety")
HUNDRED = "hundred"
#: Group scale words, from the group of 10**3 upwards.
SCALES = ("thousand", "million")

#: Every word `number_to_words` can write, in a fixed order (the tokenizer's target vocabulary).
WORDS = (*ONES, *TENS, HUNDRED, *SCALES)


def _below_thousand(n: int) -> list[str]:
    """Words for 1 <= n <= 999 (zero is never spelled inside a larger number)."""
    words: list[str] = []
    hundreds, rest = divmod(n, 100)
    if hundreds:
        words += [ONES[hundreds], HUNDRED]
    if rest >= 20:
        tens, ones = divmod(rest, 10)
        words.append(TENS[tens - 2])
        if ones:
            words.append(ONES[ones])
    elif rest:
        words.append(ONES[rest])
    return words


def number_to_words(n: int) -> str:
    """Write ``n`` (0 <= n <= MAX_NUMBER) in English words.

    >>> number_to_words(1234)
    'one thousand two hundred thirty four'
    >>> number_to_words(1_000_000)
    'one million'
    """
    if isinstance(n, bool) or not isinstance(n, int):
        raise TypeError(f"number_to_words expects an int, got {type(n).__name__}")
    if not 0 <= n <= MAX_NUMBER:
        raise ValueError(f"number_to_words covers 0..{MAX_NUMBER}, got {n}")
    if n == 0:
        return ONES[0]
    words: list[str] = []
    groups = []  # groups of three digits, least significant first
    while n:
        n, group = divmod(n, 1000)
        groups.append(group)
    for scale in range(len(groups) - 1, -1, -1):
        if groups[scale]:
            words += _below_thousand(groups[scale])
            if scale:
                words.append(SCALES[scale - 1])
    return " ".join(words)
