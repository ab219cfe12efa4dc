"""The demo model's tokenizer: digits in, English number words out, one shared vocabulary.

Layout follows the Marian (opus-mt) conventions so that ``transformers.MarianMTModel`` runs the model
as is: ``</s>`` (end of sequence) is id 0, ``<unk>`` id 1, then the ten digits '0'..'9', then the
words of `number_words.WORDS`, and ``<pad>`` last. ``<pad>`` doubles as the decoder start token, and
sources end with ``</s>`` as Marian tokenizers append it. No dependencies beyond the standard library.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Mapping, Sequence

from .number_words import WORDS

__all__ = ["EOS", "PAD", "UNK", "VOCAB_FILE", "NumberTokenizer", "build_vocab"]

EOS = "</s>"
UNK = "<unk>"
PAD = "<pad>"
DIGITS = tuple("0123456789")
VOCAB_FILE = "vocab.json"


def build_vocab() -> dict[str, int]:
    """The vocabulary, built deterministically: specials, digits, words, then ``<pad>``."""
    tokens = [EOS, UNK, *DIGITS, *WORDS, PAD]
    return {token: i for i, token in enumerate(tokens)}


class NumberTokenizer:
    """Character-level source (one token per digit), word-level target, shared ids.

    >>> tok = NumberTokenizer()
    >>> tok.encode_source("907")
    [11, 2, 9, 0]
    >>> tok.decode_target(tok.encode_target("nine hundred seven"))
    'nine hundred seven'
    """

    def __init__(self, vocab: Mapping[str, int] | None = None):
        vocab = dict(build_vocab() if vocab is None else vocab)
        ids = sorted(vocab.values())
        if ids != list(range(len(vocab))):
            raise ValueError("vocabulary ids must be 0..len(vocab)-1, each used once")
        missing = [t for t in (EOS, UNK, PAD, *DIGITS) if t not in vocab]
        if missing:
            raise ValueError(f"vocabulary lacks the tokens {missing}")
        self._token_to_id = vocab
        self._id_to_token = [""] * len(vocab)
        for token, i in vocab.items():
            self._id_to_token[i] = token
        self.eos_token_id = vocab[EOS]
        self.unk_token_id = vocab[UNK]
        self.pad_token_id = vocab[PAD]
        #: Marian starts decoding from the pad token.
        self.decoder_start_token_id = self.pad_token_id
        self._specials = frozenset((self.eos_token_id, self.unk_token_id, self.pad_token_id))

    # -- files ---------------------------------------------------------------------------------

    @classmethod
    def from_pretrained(cls, directory: str | os.PathLike) -> NumberTokenizer:
        """Load the vocabulary written by `save_pretrained` (``vocab.json``, token -> id)."""
        with open(os.path.join(directory, VOCAB_FILE), encoding="utf-8") as f:
            return cls(json.load(f))

    def save_pretrained(self, directory: str | os.PathLike) -> str:
        """Write ``vocab.json`` into ``directory`` (created if needed); returns its path."""
        os.makedirs(directory, exist_ok=True)
        path = os.path.join(directory, VOCAB_FILE)
        with open(path, "w", encoding="utf-8") as f:
            json.dump(self._token_to_id, f, indent=1)
            f.write("\n")
        return path

    # -- vocabulary ----------------------------------------------------------------------------

    @property
    def vocab_size(self) -> int:
        return len(self._id_to_token)

    def __len__(self) -> int:
        return self.vocab_size

    def get_vocab(self) -> dict[str, int]:
        return dict(self._token_to_id)

    def convert_ids_to_tokens(self, ids: Iterable[int]) -> list[str]:
        return [self._id_to_token[self._check_id(i)] for i in ids]

    # -- encoding ------------------------------------------------------------------------------

    def encode_source(self, text: str) -> list[int]:
        """Digits -> ids, one per digit, then ``</s>``. Surrounding whitespace is ignored.

        Raises ValueError for an empty number or any character that is not an ASCII digit.
        """
        if not isinstance(text, str):
            raise TypeError(f"encode_source expects a str, got {type(text).__name__}")
        digits = text.strip()
        if not digits:
            raise ValueError("encode_source: empty input, expected digits 0-9")
        ids = []
        for pos, ch in enumerate(digits):
            if ch not in DIGITS:
                raise ValueError(
                    f"encode_source: {digits!r} has {ch!r} at position {pos}; only the digits 0-9 are allowed"
                )
            ids.append(self._token_to_id[ch])
        ids.append(self.eos_token_id)
        return ids

    def encode_target(self, text: str) -> list[int]:
        """Space-separated words -> ids, then ``</s>`` (the training labels).

        Raises ValueError for a word outside the vocabulary.
        """
        ids = []
        for word in text.split():
            i = self._token_to_id.get(word)
            if i is None or i in self._specials or word in DIGITS:
                raise ValueError(f"encode_target: {word!r} is not a number word of this vocabulary")
            ids.append(i)
        ids.append(self.eos_token_id)
        return ids

    def batch_encode_source(self, texts: Sequence[str]) -> tuple[list[list[int]], list[list[int]]]:
        """`encode_source` for each text, right-padded with ``<pad>``: (input_ids, attention_mask)."""
        return self._pad([self.encode_source(t) for t in texts])

    def _pad(self, rows: list[list[int]]) -> tuple[list[list[int]], list[list[int]]]:
        width = max((len(r) for r in rows), default=0)
        ids = [r + [self.pad_token_id] * (width - len(r)) for r in rows]
        mask = [[1] * len(r) + [0] * (width - len(r)) for r in rows]
        return ids, mask

    # -- decoding ------------------------------------------------------------------------------

    def decode_target(self, ids: Iterable[int]) -> str:
        """Ids -> words joined by spaces; ``<pad>`` and ``<unk>`` are dropped, ``</s>`` ends the text.

        Accepts any iterable of ints (a list, or one row of a NumPy array or torch tensor).
        """
        words = []
        for i in ids:
            i = self._check_id(i)
            if i == self.eos_token_id:
                break
            if i not in self._specials:
                words.append(self._id_to_token[i])
        return " ".join(words)

    def batch_decode_target(self, rows: Iterable[Iterable[int]]) -> list[str]:
        return [self.decode_target(r) for r in rows]

    def decode_source(self, ids: Iterable[int]) -> str:
        """Ids -> the digit string (specials dropped, ``</s>`` ends it)."""
        return self.decode_target(ids).replace(" ", "")

    def _check_id(self, i) -> int:
        i = int(i)
        if not 0 <= i < len(self._id_to_token):
            raise ValueError(f"token id {i} is outside the vocabulary 0..{len(self._id_to_token) - 1}")
        return i

    def __repr__(self) -> str:
        return (
            f"NumberTokenizer(vocab_size={self.vocab_size}, eos_token_id={self.eos_token_id}, "
            f"unk_token_id={self.unk_token_id}, pad_token_id={self.pad_token_id})"
        )
