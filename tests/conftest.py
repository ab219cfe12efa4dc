"""Shared fixtures: every kernel test runs on every ISA path this build and CPU support.

* ``isa``      -- parametrised over ``cpuformer.supported_isas()``; switches the active path with
                  ``cpuformer.set_isa`` and restores the previous one afterwards. Tests that build their
                  cases from an ISA's blocking parametrise it indirectly (``indirect=["isa"]``).
* ``threads``  -- a setter for ``cpuformer.set_num_threads`` that restores the previous count afterwards.
* ``rng``      -- a NumPy generator seeded from the test id (reproducible, different per test).
"""

from __future__ import annotations

import os
import sys
import zlib

import numpy as np
import pytest

import cpuformer

# `reference` and `numerics` live beside this file.
_HERE = os.path.dirname(os.path.abspath(__file__))
if _HERE not in sys.path:
    sys.path.insert(0, _HERE)

ISAS = cpuformer.supported_isas()


@pytest.fixture(params=ISAS)
def isa(request):
    previous = cpuformer.isa()
    cpuformer.set_isa(request.param)
    try:
        yield request.param
    finally:
        cpuformer.set_isa(previous)


@pytest.fixture
def threads():
    previous = cpuformer.get_num_threads()
    try:
        yield cpuformer.set_num_threads
    finally:
        cpuformer.set_num_threads(previous)


@pytest.fixture
def rng(request):
    return np.random.default_rng(zlib.crc32(request.node.nodeid.encode()))
