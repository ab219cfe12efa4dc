"""Hugging Face Marian (OPUS-MT) checkpoints -> cpuformer's sequence-to-sequence weights and config.

Reads a local directory written by ``MarianMTModel.save_pretrained``: ``config.json`` and
``model.safetensors`` (or ``pytorch_model.bin``, which needs torch), plus ``generation_config.json``
when present. Nothing is downloaded. Marian is the paper's architecture: post-LN, sinusoidal positions
(all sines then all cosines), embeddings scaled by sqrt(d_model), tied embeddings and output projection.
"""

from __future__ import annotations

import os
from typing import Any, Dict, Tuple

import numpy as np

from .hf_files import config_int, read_json, read_weights

_ACTIVATIONS = {"swish": "silu", "silu": "silu", "gelu": "gelu", "relu": "relu", "gelu_new": "gelu_tanh",
                "gelu_fast": "gelu_tanh", "gelu_pytorch_tanh": "gelu_tanh"}


def is_marian_directory(path: str) -> bool:
    cfg = os.path.join(path, "config.json")
    if not os.path.isfile(cfg):
        return False
    try:
        return read_json(cfg).get("model_type") == "marian"
    except (ValueError, OSError):
        return False


def convert(directory: str) -> Tuple[Dict[str, Any], Dict[str, np.ndarray], Dict[str, Any]]:
    """Returns (seq2seq config, weights with cpuformer's names, generation defaults)."""
    directory = os.fspath(directory)
    if not os.path.isdir(directory):
        raise FileNotFoundError(f"path: no such directory: {directory!r}")
    cfg_path = os.path.join(directory, "config.json")
    if not os.path.isfile(cfg_path):
        raise FileNotFoundError(f"{directory}: no config.json")
    hf = read_json(cfg_path)
    if hf.get("model_type") != "marian":
        raise ValueError(f"{cfg_path}: model_type is {hf.get('model_type')!r}, expected 'marian'")
    if hf.get("encoder_attention_heads") != hf.get("decoder_attention_heads"):
        raise ValueError(f"{cfg_path}: encoder and decoder head counts differ; not supported")
    if hf.get("encoder_ffn_dim") != hf.get("decoder_ffn_dim"):
        raise ValueError(f"{cfg_path}: encoder and decoder ffn dims differ; not supported")
    act = _ACTIVATIONS.get(hf.get("activation_function", "gelu"))
    if act is None:
        raise ValueError(f"{cfg_path}: activation_function {hf.get('activation_function')!r} is not supported")
    d = config_int(hf, "d_model", cfg_path)
    vocab = config_int(hf, "vocab_size", cfg_path)
    shared = bool(hf.get("share_encoder_decoder_embeddings", True))
    tgt_vocab = vocab if shared or not hf.get("decoder_vocab_size") else config_int(hf, "decoder_vocab_size", cfg_path)
    tied = bool(hf.get("tie_word_embeddings", True))
    config = {
        "d_model": d,
        "nhead": config_int(hf, "encoder_attention_heads", cfg_path),
        "num_encoder_layers": config_int(hf, "encoder_layers", cfg_path),
        "num_decoder_layers": config_int(hf, "decoder_layers", cfg_path),
        "dim_feedforward": config_int(hf, "encoder_ffn_dim", cfg_path),
        "activation": act,
        "layer_norm_eps": 1e-5,
        "norm_first": False,  # MarianMTModel is post-LN whatever the config says (it never reads normalize_before)
        "bias": True,
        "encoder_final_norm": False,
        "decoder_final_norm": False,
        "src_vocab_size": vocab,
        "tgt_vocab_size": tgt_vocab,
        "shared_embeddings": shared,
        "tied_output": tied,
        "final_logits_bias": True,
        "embedding_scale": float(np.sqrt(d)) if hf.get("scale_embedding", False) else 1.0,
        "positional": "half",
        "max_positions": config_int(hf, "max_position_embeddings", cfg_path, 512),
        "pad_id": config_int(hf, "pad_token_id", cfg_path),
        "eos_id": config_int(hf, "eos_token_id", cfg_path),
        "decoder_start_id": config_int(hf, "decoder_start_token_id", cfg_path, hf.get("pad_token_id")),
    }

    w = read_weights(directory)

    def get(name: str) -> np.ndarray:
        for key in (name, "model." + name if not name.startswith("model.") else name[6:]):
            if key in w:
                return np.asarray(w[key], dtype=np.float32)
        raise ValueError(f"{directory}: the checkpoint has no weight {name!r}")

    out: Dict[str, np.ndarray] = {}
    if shared:
        emb = next((w[k] for k in ("model.shared.weight", "model.encoder.embed_tokens.weight",
                                   "model.decoder.embed_tokens.weight") if k in w), None)
        if emb is None:
            raise ValueError(f"{directory}: the checkpoint has no shared embedding (model.shared.weight)")
        out["src_embedding.weight"] = np.asarray(emb, dtype=np.float32)
    else:
        out["src_embedding.weight"] = get("model.encoder.embed_tokens.weight")
        out["tgt_embedding.weight"] = get("model.decoder.embed_tokens.weight")
    if not tied:
        out["output_projection.weight"] = get("lm_head.weight")
    out["final_logits_bias"] = (
        get("final_logits_bias").reshape(-1) if "final_logits_bias" in w else np.zeros(tgt_vocab, np.float32)
    )

    def attention(src: str, dst: str) -> None:
        out[dst + "in_proj_weight"] = np.concatenate([get(f"{src}{p}_proj.weight") for p in "qkv"], axis=0)
        out[dst + "in_proj_bias"] = np.concatenate([get(f"{src}{p}_proj.bias") for p in "qkv"], axis=0)
        out[dst + "out_proj.weight"] = get(src + "out_proj.weight")
        out[dst + "out_proj.bias"] = get(src + "out_proj.bias")

    def copy(src: str, dst: str) -> None:
        out[dst + "weight"] = get(src + "weight")
        out[dst + "bias"] = get(src + "bias")

    for i in range(config["num_encoder_layers"]):
        s, t = f"model.encoder.layers.{i}.", f"encoder.layers.{i}."
        attention(s + "self_attn.", t + "self_attn.")
        copy(s + "self_attn_layer_norm.", t + "norm1.")
        copy(s + "fc1.", t + "linear1.")
        copy(s + "fc2.", t + "linear2.")
        copy(s + "final_layer_norm.", t + "norm2.")
    for i in range(config["num_decoder_layers"]):
        s, t = f"model.decoder.layers.{i}.", f"decoder.layers.{i}."
        attention(s + "self_attn.", t + "self_attn.")
        copy(s + "self_attn_layer_norm.", t + "norm1.")
        attention(s + "encoder_attn.", t + "multihead_attn.")
        copy(s + "encoder_attn_layer_norm.", t + "norm2.")
        copy(s + "fc1.", t + "linear1.")
        copy(s + "fc2.", t + "linear2.")
        copy(s + "final_layer_norm.", t + "norm3.")

    gen = dict(hf)
    gen_path = os.path.join(directory, "generation_config.json")
    if os.path.isfile(gen_path):
        gen.update(read_json(gen_path))
    defaults: Dict[str, Any] = {}
    bad = gen.get("bad_words_ids") or []
    defaults["suppress_ids"] = sorted({int(ids[0]) for ids in bad if isinstance(ids, list) and len(ids) == 1})
    forced = gen.get("forced_eos_token_id")
    defaults["force_eos_at_max_length"] = forced is not None and int(forced) == config["eos_id"]
    if gen.get("max_length"):
        defaults["max_length"] = max(1, int(gen["max_length"]) - 1)
    if gen.get("num_beams"):
        defaults["beam_size"] = int(gen["num_beams"])
    return config, out, defaults
