"""Fixtures of the translation tests: the shipped demo model, a small Marian trained here on a synthetic task
(cached under the pytest cache, see marian_helpers.py) and a tiny random one, each as a Hugging Face
model and as a cpuformer.Translator loaded from the directory save_pretrained wrote.

Translators run on one thread (`_translator`): these models are so small that on a busy 2-core machine two
OpenMP threads mostly wait for each other (100x slower). test_batch_invariance.py checks that 1 and 2
threads give identical results, which carries every other test over to 2 threads.
"""

from __future__ import annotations

import os
import sys
import warnings

import pytest

_HERE = os.path.dirname(os.path.abspath(__file__))
if _HERE not in sys.path:
    sys.path.insert(0, _HERE)

import marian_helpers as mh  # noqa: E402

import cpuformer  # noqa: E402


def _translator(path: str) -> cpuformer.Translator:
    tr = cpuformer.Translator.from_pretrained(path)
    tr.num_threads = 1
    return tr


@pytest.fixture(autouse=True)
def _quiet_hf():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield


@pytest.fixture(scope="session")
def hf():
    """torch and transformers, or skip. Torch runs on one thread here: on a shared 2-core machine two
    threads spend most of their time waiting for each other on models this small."""
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield torch, transformers
    finally:
        torch.set_num_threads(previous)


# --- the trained synthetic model ---------------------------------------------------------------------------


@pytest.fixture(scope="session")
def expand_dir(request, hf, tmp_path_factory):
    cache = getattr(request.config, "cache", None)
    root = str(cache.mkdir("cpuformer-translate")) if cache is not None else str(tmp_path_factory.mktemp("cache"))
    return mh.trained_expand_dir(root)


@pytest.fixture(scope="session")
def expand_hf(expand_dir):
    from transformers import MarianMTModel

    return MarianMTModel.from_pretrained(expand_dir).eval()


@pytest.fixture(scope="session")
def expand_tr(expand_dir):
    return _translator(expand_dir)


@pytest.fixture(scope="session")
def expand_early_dir(expand_dir):
    return os.path.join(expand_dir, "early")


@pytest.fixture(scope="session")
def expand_early_hf(expand_dir):
    """The same training run after 150 of its 400 steps: outputs with the task's structure but uncertain, so
    that beam search often disagrees with greedy and the length penalty matters."""
    from transformers import MarianMTModel

    return MarianMTModel.from_pretrained(os.path.join(expand_dir, "early")).eval()


@pytest.fixture(scope="session")
def expand_early_tr(expand_dir):
    return _translator(os.path.join(expand_dir, "early"))


# --- the shipped demo model ---------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def demo_dir():
    from cpuformer.demo import MODEL_DIR

    if not os.path.isfile(os.path.join(MODEL_DIR, "config.json")):
        pytest.fail(f"the shipped demo model is missing: no config.json in {MODEL_DIR}")
    return MODEL_DIR


@pytest.fixture(scope="session")
def demo_tok(demo_dir):
    from cpuformer.demo import load_tokenizer

    return load_tokenizer(demo_dir)


@pytest.fixture(scope="session")
def demo_hf(hf, demo_dir):
    from transformers import MarianMTModel

    return MarianMTModel.from_pretrained(demo_dir).eval()


@pytest.fixture(scope="session")
def demo_tr(demo_dir):
    return _translator(demo_dir)


# --- a tiny random model -------------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def tiny_dir(hf, tmp_path_factory):
    model = mh.random_marian(1, **mh.TINY)
    path = str(tmp_path_factory.mktemp("tiny_marian"))
    model.save_pretrained(path)
    return path


@pytest.fixture(scope="session")
def tiny_hf(tiny_dir):
    from transformers import MarianMTModel

    return MarianMTModel.from_pretrained(tiny_dir).eval()


@pytest.fixture(scope="session")
def tiny_tr(tiny_dir):
    return _translator(tiny_dir)
