"""A process forked after cpuformer ran threaded work must not hang (libgomp's pool does not survive
fork): the child runs single-threaded and gets the same results."""

import multiprocessing as mp
import os
import sys

import numpy as np
import pytest

import cpuformer
from cpuformer import ops

pytestmark = pytest.mark.skipif(sys.platform == "win32" or not hasattr(os, "fork"), reason="needs fork()")


def _child(a, b, expected, queue):
    got = ops.matmul(a, b)
    queue.put((bool(np.array_equal(got, expected)), cpuformer.get_num_threads()))


def test_forked_child_runs_and_agrees():
    previous = cpuformer.get_num_threads()
    cpuformer.set_num_threads(2)
    try:
        rng = np.random.default_rng(0)
        a = rng.standard_normal((300, 256)).astype(np.float32)
        b = rng.standard_normal((256, 300)).astype(np.float32)
        expected = ops.matmul(a, b)  # the parent's OpenMP pool is now alive
        ctx = mp.get_context("fork")
        queue = ctx.Queue()
        proc = ctx.Process(target=_child, args=(a, b, expected, queue))
        proc.start()
        proc.join(timeout=120)
        if proc.is_alive():
            proc.kill()
            pytest.fail("the forked child hung")
        assert proc.exitcode == 0
        same, threads = queue.get(timeout=10)
        assert same
        assert threads == 1
        assert cpuformer.get_num_threads() == 2  # the parent is unaffected
    finally:
        cpuformer.set_num_threads(previous)
