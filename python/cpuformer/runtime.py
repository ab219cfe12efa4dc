"""Threads, instruction-set paths and build information."""

from __future__ import annotations

import operator

from . import _core


MAX_THREADS: int = _core.max_threads


def thread_count(value, name: str, minimum: int) -> int:
    """``value`` as a thread count in [minimum, MAX_THREADS]; TypeError / ValueError naming ``name``."""
    if isinstance(value, bool):
        raise TypeError(f"{name}: expected an integer, got bool")
    try:
        value = operator.index(value)
    except TypeError:
        raise TypeError(f"{name}: expected an integer, got {type(value).__name__}") from None
    if not minimum <= value <= MAX_THREADS:
        default = " (0 = the process default)" if minimum == 0 else ""
        raise ValueError(f"{name}: expected an integer >= {minimum} and <= {MAX_THREADS}{default}, got {value}")
    return value


def set_num_threads(n: int) -> None:
    """Sets the number of threads cpuformer uses (default: OMP_NUM_THREADS, else the usable CPUs; at most
    ``MAX_THREADS``)."""
    _core.set_num_threads(thread_count(n, "n", 1))


def get_num_threads() -> int:
    """The number of threads cpuformer uses."""
    return _core.get_num_threads()


def isa() -> str:
    """The active instruction-set path: 'avx512', 'avx2' or 'scalar'."""
    return _core.isa()


def supported_isas() -> list[str]:
    """The paths this build and CPU can run, ascending."""
    return list(_core.supported_isas())


def set_isa(name: str) -> None:
    """Switches the active path (e.g. to test 'scalar' on an AVX-512 machine). Weights packed earlier
    keep the layout of the path that packed them. At start-up, CPUFORMER_ISA does the same."""
    if not isinstance(name, str):
        raise TypeError(f"name: expected a str, got {type(name).__name__}")
    _core.set_isa(name)


def build_info() -> dict:
    """Compiler, flags, OpenMP, the paths compiled in and supported, the active path, CPU features."""
    return dict(_core.build_info())
