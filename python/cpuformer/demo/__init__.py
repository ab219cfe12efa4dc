"""A small demo translation model that ships with cpuformer: numbers in digits -> English words.

``"1234"`` -> ``"one thousand two hundred thirty four"``, for 0..999,999,999. The model is a
``transformers.MarianMTModel`` (post-norm encoder-decoder Transformer with sinusoidal positions, as in
"Attention Is All You Need") trained by `cpuformer.demo.train`; its files are in `MODEL_DIR`:
``config.json``, ``generation_config.json``, ``model.safetensors`` and the tokenizer's ``vocab.json``.

Importing this package needs neither torch nor transformers; only training and the reference tests do::

    from transformers import MarianMTModel
    from cpuformer.demo import MODEL_DIR, load_tokenizer

    tok = load_tokenizer()
    model = MarianMTModel.from_pretrained(MODEL_DIR)
    ids = torch.tensor([tok.encode_source("907")])
    tok.decode_target(model.generate(ids, num_beams=1)[0])   # 'nine hundred seven'
"""

from __future__ import annotations

import os

from .number_words import MAX_NUMBER, number_to_words
from .tokenizer import NumberTokenizer

__all__ = ["MAX_NUMBER", "MODEL_DIR", "NumberTokenizer", "load_tokenizer", "number_to_words"]

#: Directory of the trained model and its vocabulary (inside the installed package).
MODEL_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "numbers_en")


def load_tokenizer(model_dir: str | os.PathLike = MODEL_DIR) -> NumberTokenizer:
    """The tokenizer saved beside the model in ``model_dir`` (by default the shipped model's)."""
    return NumberTokenizer.from_pretrained(model_dir)
