"""cpuformer: the Transformer of "Attention Is All You Need" on CPUs, with NumPy in and NumPy out."""

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
