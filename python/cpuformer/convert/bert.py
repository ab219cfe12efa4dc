"""Hugging Face BERT-family checkpoints (BertModel: config.json + model.safetensors or
pytorch_model.bin, as sentence-transformers directories hold them) -> cpuformer's BertModel weights."""

from __future__ import annotations

import os
from typing import Any, Dict, Tuple

import numpy as np

from .hf_files import config_int, read_json, read_weights

_ACTIVATIONS = {"gelu": "gelu", "relu": "relu", "gelu_new": "gelu_tanh", "gelu_pytorch_tanh": "gelu_tanh",
                "silu": "silu", "swish": "silu"}


def convert(directory: str) -> Tuple[Dict[str, Any], Dict[str, np.ndarray]]:
    """Returns (config for cpuformer._core.BertModel, weights with cpuformer's names)."""
    cfg_path = os.path.join(directory, "config.json")
    hf = read_json(cfg_path)
    if hf.get("model_type") not in ("bert", "roberta", "xlm-roberta", None):
        raise ValueError(f"{cfg_path}: model_type {hf.get('model_type')!r} is not a BERT-family encoder")
    if hf.get("position_embedding_type", "absolute") != "absolute":
        raise ValueError(f"{cfg_path}: position_embedding_type {hf.get('position_embedding_type')!r} is not supported")
    act = _ACTIVATIONS.get(hf.get("hidden_act", "gelu"))
    if act is None:
        raise ValueError(f"{cfg_path}: hidden_act {hf.get('hidden_act')!r} is not supported")
    d = config_int(hf, "hidden_size", cfg_path)
    layers = config_int(hf, "num_hidden_layers", cfg_path)
    config = {
        "d_model": d,
        "nhead": config_int(hf, "num_attention_heads", cfg_path),
        "num_encoder_layers": layers,
        "num_decoder_layers": 0,
        "dim_feedforward": config_int(hf, "intermediate_size", cfg_path),
        "activation": act,
        "layer_norm_eps": float(hf.get("layer_norm_eps", 1e-12)),
        "norm_first": False,
        "bias": True,
        "encoder_final_norm": False,
        "decoder_final_norm": False,
        "vocab_size": config_int(hf, "vocab_size", cfg_path),
        "max_positions": config_int(hf, "max_position_embeddings", cfg_path, 512),
        "type_vocab_size": config_int(hf, "type_vocab_size", cfg_path, 2),
    }
    w = read_weights(directory)
    prefix = "bert." if any(k.startswith("bert.") for k in w) else ""

    def get(name: str) -> np.ndarray:
        key = prefix + name
        if key not in w:
            raise ValueError(f"{directory}: the checkpoint has no weight {key!r}")
        return np.asarray(w[key], dtype=np.float32)

    out = {
        "word_embeddings.weight": get("embeddings.word_embeddings.weight"),
        "position_embeddings.weight": get("embeddings.position_embeddings.weight"),
        "token_type_embeddings.weight": get("embeddings.token_type_embeddings.weight"),
        "embeddings_norm.weight": get("embeddings.LayerNorm.weight"),
        "embeddings_norm.bias": get("embeddings.LayerNorm.bias"),
    }
    for i in range(layers):
        s, t = f"encoder.layer.{i}.", f"layers.{i}."
        out[t + "self_attn.in_proj_weight"] = np.concatenate(
            [get(f"{s}attention.self.{p}.weight") for p in ("query", "key", "value")], axis=0)
        out[t + "self_attn.in_proj_bias"] = np.concatenate(
            [get(f"{s}attention.self.{p}.bias") for p in ("query", "key", "value")], axis=0)
        out[t + "self_attn.out_proj.weight"] = get(s + "attention.output.dense.weight")
        out[t + "self_attn.out_proj.bias"] = get(s + "attention.output.dense.bias")
        out[t + "norm1.weight"] = get(s + "attention.output.LayerNorm.weight")
        out[t + "norm1.bias"] = get(s + "attention.output.LayerNorm.bias")
        out[t + "linear1.weight"] = get(s + "intermediate.dense.weight")
        out[t + "linear1.bias"] = get(s + "intermediate.dense.bias")
        out[t + "linear2.weight"] = get(s + "output.dense.weight")
        out[t + "linear2.bias"] = get(s + "output.dense.bias")
        out[t + "norm2.weight"] = get(s + "output.LayerNorm.weight")
        out[t + "norm2.bias"] = get(s + "output.LayerNorm.bias")
    return config, out
