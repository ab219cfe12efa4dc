"""cpuformer: the Transformer of "Attention Is All You Need" on CPUs, with NumPy in and NumPy out."""

import os as _os

# OpenMP threads that spin while they wait for work burn the time slices of the threads they wait for
# whenever the machine is shared (other processes, other thread pools): decoding, with thousands of short
# parallel regions per call, then ran 5-10x slower on 2 threads than on 1. Sleeping waits cost a few
# microseconds per region and none of that. The OpenMP runtime reads this once, when it is loaded (by
# cpuformer's extension, just below); set OMP_WAIT_POLICY or GOMP_SPINCOUNT yourself to choose otherwise.
if "OMP_WAIT_POLICY" not in _os.environ and "GOMP_SPINCOUNT" not in _os.environ:
    _os.environ["OMP_WAIT_POLICY"] = "PASSIVE"

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
