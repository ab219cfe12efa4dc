"""Reading a Hugging Face model directory: config.json values and the weights (model.safetensors, or
pytorch_model.bin through torch), with errors that name the file and the key."""

from __future__ import annotations

import json
import os
from typing import Any, Dict

import numpy as np

from ..io import safetensors as _st


def read_json(path: str) -> Dict[str, Any]:
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except json.JSONDecodeError as e:
        raise ValueError(f"{path}: not valid JSON ({e})") from None


def config_int(hf: Dict[str, Any], key: str, cfg_path: str, default: Any = None) -> int:
    """hf[key] as an int; ValueError naming the file and the key when it is missing or not an integer."""
    value = hf.get(key, default)
    if isinstance(value, list) and value and key == "eos_token_id":  # generation may list several; the first ends
        value = value[0]
    if isinstance(value, float) and value.is_integer():  # 512.0 from a hand-edited file
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise ValueError(f"{cfg_path}: {key} must be an integer, got {value!r}")
    return int(value)


def read_weights(directory: str) -> Dict[str, np.ndarray]:
    st_path = os.path.join(directory, "model.safetensors")
    bin_path = os.path.join(directory, "pytorch_model.bin")
    if os.path.isfile(st_path):
        tensors, _ = _st.load_file(st_path)
        return tensors
    if os.path.isfile(bin_path):
        try:
            import torch
        except ImportError:
            raise ImportError(f"{bin_path}: reading pytorch_model.bin needs torch (pip install torch)") from None
        state = torch.load(bin_path, map_location="cpu", weights_only=True)
        return {k: v.detach().float().numpy() for k, v in state.items()}
    raise FileNotFoundError(f"{directory}: no model.safetensors or pytorch_model.bin")
