"""The num_threads setter every model shares (runtime.thread_count): one check of its contract, used by
the Transformer, Translator and SentenceEncoder tests."""

from __future__ import annotations

import pytest

from cpuformer.runtime import MAX_THREADS


def check_num_threads_setter(model) -> None:
    """Out-of-range and non-integer counts are refused with the argument's name and leave the setting
    alone; 0 (the process default) is accepted. Restores the model's setting."""
    previous = model.num_threads
    for bad in (-1, MAX_THREADS + 1, 2**31):
        with pytest.raises(ValueError, match=rf"^num_threads: expected an integer >= 0 and <= {MAX_THREADS}"):
            model.num_threads = bad
    for bad in (2.7, "2", None, True):
        with pytest.raises(TypeError, match="^num_threads: expected an integer"):
            model.num_threads = bad
    assert model.num_threads == previous
    model.num_threads = 0
    assert model.num_threads == 0
    model.num_threads = previous
