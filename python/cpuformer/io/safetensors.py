"""A minimal reader/writer of the safetensors format (https://github.com/huggingface/safetensors):
an 8-byte little-endian header length, a JSON header {name: {dtype, shape, data_offsets}, "__metadata__":
{str: str}}, then the raw little-endian tensor bytes. Reading maps the file into memory: arrays are
read-only views of the file, so loading a model does not hold a second copy while it is packed.

Written here rather than depending on the `safetensors` package: it is 100 lines, and the package would
be cpuformer's only run-time dependency besides NumPy. Files it writes load with `safetensors` and back.
"""

from __future__ import annotations

import json
import os
import struct
from typing import Dict, Mapping, Optional, Tuple

import numpy as np

_DTYPES = {
    "F64": np.float64,
    "F32": np.float32,
    "F16": np.float16,
    "I64": np.int64,
    "I32": np.int32,
    "I16": np.int16,
    "I8": np.int8,
    "U8": np.uint8,
    "BOOL": np.bool_,
}
_NAMES = {np.dtype(v): k for k, v in _DTYPES.items()}
_MAX_HEADER = 100 * 1024 * 1024


class SafetensorsError(ValueError):
    """The file is not a valid safetensors file (or not one of ours)."""


def save_file(tensors: Mapping[str, np.ndarray], path: str, metadata: Optional[Mapping[str, str]] = None) -> None:
    """Writes ``tensors`` (name -> array) and string ``metadata`` to ``path`` atomically."""
    header: Dict[str, object] = {}
    if metadata:
        header["__metadata__"] = {str(k): str(v) for k, v in metadata.items()}
    offset = 0
    arrays = []
    for name in sorted(tensors):
        arr = np.ascontiguousarray(tensors[name])
        dtype = _NAMES.get(arr.dtype.newbyteorder("<") if arr.dtype.byteorder == ">" else arr.dtype)
        if dtype is None:
            raise TypeError(f"tensors[{name!r}]: unsupported dtype {arr.dtype}")
        arr = arr.astype(arr.dtype.newbyteorder("<"), copy=False)
        header[name] = {"dtype": dtype, "shape": list(arr.shape), "data_offsets": [offset, offset + arr.nbytes]}
        offset += arr.nbytes
        arrays.append(arr)
    blob = json.dumps(header, separators=(",", ":")).encode("utf-8")
    blob += b" " * (-len(blob) % 8)  # align the data section to 8 bytes
    tmp = f"{path}.tmp{os.getpid()}"
    with open(tmp, "wb") as f:
        f.write(struct.pack("<Q", len(blob)))
        f.write(blob)
        for arr in arrays:
            f.write(arr.tobytes())
    os.replace(tmp, path)


def load_file(path: str) -> Tuple[Dict[str, np.ndarray], Dict[str, str]]:
    """Returns (tensors, metadata); tensors are read-only memory-mapped views of the file."""
    path = os.fspath(path)
    size = os.path.getsize(path)
    if size < 8:
        raise SafetensorsError(f"{path}: not a safetensors file (only {size} bytes)")
    with open(path, "rb") as f:
        (n,) = struct.unpack("<Q", f.read(8))
        if n > _MAX_HEADER or 8 + n > size:
            raise SafetensorsError(f"{path}: not a safetensors file or truncated (header of {n} bytes, file of {size})")
        try:
            header = json.loads(f.read(n).decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as e:
            raise SafetensorsError(f"{path}: not a safetensors file (header is not JSON: {e})") from None
    if not isinstance(header, dict):
        raise SafetensorsError(f"{path}: not a safetensors file (header is not a JSON object)")
    metadata = header.pop("__metadata__", None) or {}
    data_size = size - 8 - n
    mm = np.memmap(path, dtype=np.uint8, mode="r", offset=8 + n, shape=(data_size,)) if data_size else np.empty(0, np.uint8)
    tensors: Dict[str, np.ndarray] = {}
    for name, info in header.items():
        try:
            dtype = np.dtype(_DTYPES[info["dtype"]]).newbyteorder("<")
            shape = tuple(int(s) for s in info["shape"])
            begin, end = (int(o) for o in info["data_offsets"])
        except (KeyError, TypeError, ValueError):
            raise SafetensorsError(f"{path}: malformed entry for tensor {name!r}: {info!r}") from None
        count = int(np.prod(shape, dtype=np.int64))
        if begin < 0 or end > data_size or end - begin != count * dtype.itemsize:
            raise SafetensorsError(
                f"{path}: tensor {name!r} needs bytes [{begin}, {end}) of a {data_size}-byte data section "
                f"(truncated or corrupt file)"
            )
        tensors[name] = np.frombuffer(mm, dtype=dtype, count=count, offset=begin).reshape(shape)
    return tensors, {str(k): str(v) for k, v in metadata.items()}
