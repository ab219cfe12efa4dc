"""cpuformer: the Transformer of "Attention Is All You Need" on CPUs, with NumPy in and NumPy out."""

import os as _os

# How OpenMP threads wait for work. libgomp's default spins for ~300k iterations, which on a shared
# machine burns the time slices of the very threads it waits for: 2-thread decoding ran 5-10x slower than
# 1-thread. Sleeping at once (OMP_WAIT_POLICY=passive) is robust but adds a futex wake-up to every parallel
# region (2x slower small GEMMs and single-sentence latency on an idle machine). A short spin, then sleep,
# measured within ~10% of the better of the two on an idle machine and at most ~2x off under contention.
# The runtime reads this once, when cpuformer's extension loads it (just below); set OMP_WAIT_POLICY or
# GOMP_SPINCOUNT yourself to choose otherwise.
if "OMP_WAIT_POLICY" not in _os.environ and "GOMP_SPINCOUNT" not in _os.environ:
    _os.environ["GOMP_SPINCOUNT"] = "10000"

from . import ops
from ._core import PackedWeight
from .models import Transformer, TransformerConfig, TransformerDecoder, TransformerEncoder
from .embeddings import SentenceEncoder
from .translator import Translator
from .runtime import build_info, get_num_threads, isa, set_isa, set_num_threads, supported_isas

__version__ = "0.1.0"

__all__ = [
    "PackedWeight",
    "SentenceEncoder",
    "Transformer",
    "TransformerConfig",
    "TransformerDecoder",
    "TransformerEncoder",
    "Translator",
    "build_info",
    "get_num_threads",
    "isa",
    "ops",
    "set_isa",
    "set_num_threads",
    "supported_isas",
]
