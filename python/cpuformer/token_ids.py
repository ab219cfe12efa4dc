"""Token-id batches as the models take them: a list of lists of ints, or a padded 2-D integer array with
optional lengths. Checked here, once for every model, so that 1.5 or True is never read as the id 1 and
a uint64 id past int64 is never wrapped to a negative one."""

from __future__ import annotations

from typing import Iterable, List, Tuple

import numpy as np

_INT64_MAX = int(np.iinfo(np.int64).max)


def padded_batch(ids, lengths, name: str, lengths_name: str = "lengths") -> Tuple[np.ndarray, np.ndarray]:
    """(ids int64 [B, S] C-contiguous, lengths int64 [B]); B may be 0, a length may be 0 (callers decide).

    TypeError / ValueError / IndexError naming ``name`` (or ``lengths_name``) for anything else."""
    if isinstance(ids, np.ndarray):
        if ids.dtype.kind not in "iu":
            raise TypeError(f"{name}: expected an integer array, got dtype {ids.dtype}")
        if ids.ndim != 2:
            raise ValueError(f"{name}: expected a 2-D [batch, length] array, got shape {ids.shape}")
        if ids.dtype == np.uint64 and ids.size and int(ids.max()) > _INT64_MAX:
            raise IndexError(f"{name}: token id {int(ids.max())} is out of range")
        arr = np.ascontiguousarray(ids, dtype=np.int64)
        if lengths is None:
            return arr, np.full(arr.shape[0], arr.shape[1], dtype=np.int64)
        return arr, _lengths(lengths, arr.shape[0], lengths_name)
    if lengths is not None:
        raise ValueError(f"{lengths_name}: only with a padded array of {name} (lists carry their own lengths)")
    if isinstance(ids, (str, bytes)) or not isinstance(ids, Iterable):
        raise TypeError(f"{name}: expected a list of lists of token ids or a 2-D integer array, "
                        f"got {type(ids).__name__}")
    sequences = []
    for i, seq in enumerate(ids):
        if isinstance(seq, (str, bytes)) or not isinstance(seq, Iterable):
            raise TypeError(f"{name}: expected a list of lists of token ids, got {type(seq).__name__} at index {i}")
        sequences.append(id_list(seq, f"{name}[{i}]"))
    lens = np.array([len(s) for s in sequences], dtype=np.int64)
    arr = np.zeros((len(sequences), max([1] + lens.tolist())), dtype=np.int64)
    for i, seq in enumerate(sequences):
        arr[i, : len(seq)] = seq
    return arr, lens


def id_list(values, name: str) -> List[int]:
    """A list of int token ids (one sentence, or ids to suppress); TypeError / IndexError naming ``name``."""
    if isinstance(values, (str, bytes)) or not isinstance(values, Iterable):
        raise TypeError(f"{name}: expected a list of int token ids, got {type(values).__name__}")
    ids = []
    for j, tok in enumerate(values):
        if isinstance(tok, (bool, np.bool_)) or not isinstance(tok, (int, np.integer)):
            raise TypeError(f"{name}[{j}]: expected an int token id, got {tok!r}")
        if not -_INT64_MAX <= tok <= _INT64_MAX:
            raise IndexError(f"{name}[{j}]: token id {int(tok)} is out of range")
        ids.append(int(tok))
    return ids


def _lengths(lengths, batch: int, name: str) -> np.ndarray:
    lens = np.asarray(lengths)
    # [True, 2] becomes an int64 array: look at the items themselves
    if not isinstance(lengths, np.ndarray) and lens.ndim == 1 and any(isinstance(n, (bool, np.bool_)) for n in lengths):
        raise TypeError(f"{name}: expected integers, got bool")
    if lens.dtype.kind not in "iu":
        raise TypeError(f"{name}: expected integers, got dtype {lens.dtype}")
    if lens.shape != (batch,):
        raise ValueError(f"{name}: expected shape ({batch},), got {lens.shape}")
    return np.ascontiguousarray(lens, dtype=np.int64)
