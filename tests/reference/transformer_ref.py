"""Float64 NumPy reference for torch.nn.Transformer / TransformerEncoder / TransformerDecoder in eval mode.

Written for clarity, not speed, from PyTorch's definitions (torch/nn/modules/transformer.py and
F.multi_head_attention_forward), independently of cpuformer:

* weights come from a state dict of arrays with torch's key names (``layers.{i}.self_attn.in_proj_weight``,
  ``layers.{i}.linear1.weight``, ``layers.{i}.norm1.weight``, ``norm.weight``, ... prefixed ``encoder.`` /
  ``decoder.`` for the full model); every weight is read as float64 where it is used.
* ``config`` is a mapping with torch.nn.Transformer's argument names: ``nhead``, ``num_encoder_layers``,
  ``num_decoder_layers``, ``activation`` ('relu', 'gelu', 'gelu_tanh', 'silu'), ``layer_norm_eps``,
  ``norm_first``, ``batch_first``. A final norm is applied when its weights are in the state dict.
* masks follow torch: in attention masks (``[L, S]`` or ``[B*H, L, S]``, row ``b * H + h``) and key padding
  masks (``[B, S]``) a bool True means "may not attend"; float masks are added to the scores. ``is_causal``
  applies the causal mask (key j hidden from query i when j > i).

One deliberate difference from torch: a query whose keys are all masked gets attention probabilities 0
(so the attention's output is the output projection's bias) instead of NaN; cpuformer documents this.
Inputs are ``[L, B, E]`` (or ``[B, L, E]`` with ``batch_first``); outputs are float64 in the same layout.
Padded positions are computed like any other (as torch's slow path does); callers compare real positions.
"""

from __future__ import annotations

import math
from typing import Mapping, Optional

import numpy as np

_erf = np.vectorize(math.erf, otypes=[np.float64])


def _f64(x) -> np.ndarray:
    return np.asarray(x, dtype=np.float64)


# --- building blocks ------------------------------------------------------------------------------------


def linear(x, weight, bias=None) -> np.ndarray:
    """y = x @ W^T + b, W of shape [out, in] as torch.nn.Linear."""
    x = _f64(x)
    y = (x.reshape(-1, x.shape[-1]) @ _f64(weight).T).reshape(x.shape[:-1] + (weight.shape[0],))  # 2-D: BLAS
    return y if bias is None else y + _f64(bias)


def layer_norm(x, weight, bias, eps: float) -> np.ndarray:
    """(x - mean) / sqrt(var + eps) * weight + bias over the last axis; var is the biased (population)
    variance, computed in two passes."""
    x = _f64(x)
    mean = x.mean(axis=-1, keepdims=True)
    var = ((x - mean) ** 2).mean(axis=-1, keepdims=True)
    y = (x - mean) / np.sqrt(var + eps) * _f64(weight)
    return y if bias is None else y + _f64(bias)


def activation(name: str, x) -> np.ndarray:
    x = _f64(x)
    if name == "relu":
        return np.maximum(x, 0.0)
    if name == "gelu":  # exact form, torch's default approximate='none'
        return 0.5 * x * (1.0 + _erf(x / math.sqrt(2.0)))
    if name == "gelu_tanh":
        return 0.5 * x * (1.0 + np.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * x**3)))
    if name == "silu":
        return x / (1.0 + np.exp(-x))
    raise ValueError(f"unknown activation {name!r}")


def _mask_terms(batch, heads, q_len, k_len, attn_mask, key_padding_mask, is_causal):
    """(allowed bool [B, H, L, S], additive float64 [B, H, L, S]) from torch-style masks."""
    allowed = np.ones((batch, heads, q_len, k_len), dtype=bool)
    additive = np.zeros((batch, heads, q_len, k_len))
    if is_causal:
        i = np.arange(q_len)[:, None]
        j = np.arange(k_len)[None, :]
        allowed &= j <= i
    if attn_mask is not None:
        m = np.asarray(attn_mask)
        if m.ndim == 2:
            m = m.reshape(1, 1, q_len, k_len)
        elif m.ndim == 3:  # [B*H, L, S], row b * H + h
            m = m.reshape(batch, heads, q_len, k_len)
        else:
            raise ValueError(f"attn_mask: expected 2-D or 3-D, got shape {m.shape}")
        if m.dtype == np.bool_:
            allowed &= ~m
        else:
            additive = additive + _f64(m)
    if key_padding_mask is not None:
        m = np.asarray(key_padding_mask).reshape(batch, 1, 1, k_len)
        if m.dtype == np.bool_:
            allowed &= ~m
        else:
            additive = additive + _f64(m)
    return allowed, additive


def multi_head_attention(q_in, kv_in, sd, prefix, nhead, attn_mask=None, key_padding_mask=None, is_causal=False):
    """torch.nn.MultiheadAttention (packed in_proj, batch-first [B, L, D] here) -> [B, L, D]."""
    q_in, kv_in = _f64(q_in), _f64(kv_in)
    b, lq, d = q_in.shape
    lk = kv_in.shape[1]
    dh = d // nhead
    w = _f64(sd[prefix + "in_proj_weight"])
    bias = sd.get(prefix + "in_proj_bias")
    bias = np.zeros(3 * d) if bias is None else _f64(bias)
    q = linear(q_in, w[:d], bias[:d])
    k = linear(kv_in, w[d : 2 * d], bias[d : 2 * d])
    v = linear(kv_in, w[2 * d :], bias[2 * d :])

    def heads(x, length):  # [B, L, D] -> [B, H, L, Dh]
        return x.reshape(b, length, nhead, dh).transpose(0, 2, 1, 3)

    q, k, v = heads(q, lq), heads(k, lk), heads(v, lk)
    scores = (q @ k.transpose(0, 1, 3, 2)) / math.sqrt(dh)
    allowed, additive = _mask_terms(b, nhead, lq, lk, attn_mask, key_padding_mask, is_causal)
    scores = np.where(allowed, scores + additive, -np.inf)
    row_max = scores.max(axis=-1, keepdims=True) if lk else np.full(scores.shape[:-1] + (1,), -np.inf)
    dead = row_max == -np.inf  # every key masked: probabilities 0 (torch would give NaN)
    e = np.exp(scores - np.where(dead, 0.0, row_max))
    total = e.sum(axis=-1, keepdims=True)
    p = np.where(dead, 0.0, e / np.where(dead, 1.0, total))
    ctx = (p @ v).transpose(0, 2, 1, 3).reshape(b, lq, d)
    return linear(ctx, sd[prefix + "out_proj.weight"], sd.get(prefix + "out_proj.bias"))


def feed_forward(x, sd, prefix, act):
    h = activation(act, linear(x, sd[prefix + "linear1.weight"], sd.get(prefix + "linear1.bias")))
    return linear(h, sd[prefix + "linear2.weight"], sd.get(prefix + "linear2.bias"))


def _norm(x, sd, prefix, eps):
    return layer_norm(x, sd[prefix + "weight"], sd.get(prefix + "bias"), eps)


# --- layers ---------------------------------------------------------------------------------------------


def encoder_layer(x, sd, prefix, config, mask=None, key_padding_mask=None, is_causal=False):
    """torch.nn.TransformerEncoderLayer on batch-first [B, S, D]."""
    h, eps, act = config["nhead"], config["layer_norm_eps"], config["activation"]

    def sa(y):
        return multi_head_attention(y, y, sd, prefix + "self_attn.", h, mask, key_padding_mask, is_causal)

    if config["norm_first"]:
        x = x + sa(_norm(x, sd, prefix + "norm1.", eps))
        x = x + feed_forward(_norm(x, sd, prefix + "norm2.", eps), sd, prefix, act)
    else:
        x = _norm(x + sa(x), sd, prefix + "norm1.", eps)
        x = _norm(x + feed_forward(x, sd, prefix, act), sd, prefix + "norm2.", eps)
    return x


def decoder_layer(
    x, memory, sd, prefix, config, tgt_mask=None, memory_mask=None, tgt_key_padding_mask=None,
    memory_key_padding_mask=None, tgt_is_causal=False, memory_is_causal=False,
):
    """torch.nn.TransformerDecoderLayer on batch-first [B, T, D] with memory [B, S, D]."""
    h, eps, act = config["nhead"], config["layer_norm_eps"], config["activation"]

    def sa(y):
        return multi_head_attention(y, y, sd, prefix + "self_attn.", h, tgt_mask, tgt_key_padding_mask, tgt_is_causal)

    def ca(y):
        return multi_head_attention(
            y, memory, sd, prefix + "multihead_attn.", h, memory_mask, memory_key_padding_mask, memory_is_causal
        )

    if config["norm_first"]:
        x = x + sa(_norm(x, sd, prefix + "norm1.", eps))
        x = x + ca(_norm(x, sd, prefix + "norm2.", eps))
        x = x + feed_forward(_norm(x, sd, prefix + "norm3.", eps), sd, prefix, act)
    else:
        x = _norm(x + sa(x), sd, prefix + "norm1.", eps)
        x = _norm(x + ca(x), sd, prefix + "norm2.", eps)
        x = _norm(x + feed_forward(x, sd, prefix, act), sd, prefix + "norm3.", eps)
    return x


# --- stacks and the full model (torch layout in and out) ------------------------------------------------


def _to_batch_first(x, config):
    x = _f64(x)
    return x if config["batch_first"] else x.transpose(1, 0, 2)


def _from_batch_first(x, config):
    return x if config["batch_first"] else x.transpose(1, 0, 2)


def _encode(x, sd, prefix, config, mask, key_padding_mask, is_causal):
    for i in range(config["num_encoder_layers"]):
        x = encoder_layer(x, sd, f"{prefix}layers.{i}.", config, mask, key_padding_mask, is_causal)
    if prefix + "norm.weight" in sd:
        x = _norm(x, sd, prefix + "norm.", config["layer_norm_eps"])
    return x


def _decode(x, memory, sd, prefix, config, *masks):
    for i in range(config["num_decoder_layers"]):
        x = decoder_layer(x, memory, sd, f"{prefix}layers.{i}.", config, *masks)
    if prefix + "norm.weight" in sd:
        x = _norm(x, sd, prefix + "norm.", config["layer_norm_eps"])
    return x


def transformer_encoder(
    sd: Mapping[str, np.ndarray], config: Mapping, src, mask=None, src_key_padding_mask=None, is_causal=False
) -> np.ndarray:
    """torch.nn.TransformerEncoder.forward (state dict keys ``layers.{i}.*``, optional ``norm.*``)."""
    x = _encode(_to_batch_first(src, config), sd, "", config, mask, src_key_padding_mask, is_causal)
    return _from_batch_first(x, config)


def transformer_decoder(
    sd: Mapping[str, np.ndarray], config: Mapping, tgt, memory, tgt_mask=None, memory_mask=None,
    tgt_key_padding_mask=None, memory_key_padding_mask=None, tgt_is_causal=False, memory_is_causal=False,
) -> np.ndarray:
    """torch.nn.TransformerDecoder.forward (state dict keys ``layers.{i}.*``, optional ``norm.*``)."""
    x = _decode(
        _to_batch_first(tgt, config), _to_batch_first(memory, config), sd, "", config,
        tgt_mask, memory_mask, tgt_key_padding_mask, memory_key_padding_mask, tgt_is_causal, memory_is_causal,
    )
    return _from_batch_first(x, config)


def transformer(
    sd: Mapping[str, np.ndarray], config: Mapping, src, tgt, src_mask=None, tgt_mask=None, memory_mask=None,
    src_key_padding_mask=None, tgt_key_padding_mask=None, memory_key_padding_mask=None,
    src_is_causal=False, tgt_is_causal=False, memory_is_causal=False,
) -> np.ndarray:
    """torch.nn.Transformer.forward: decoder(tgt, encoder(src)) (keys ``encoder.*`` and ``decoder.*``)."""
    memory = _encode(_to_batch_first(src, config), sd, "encoder.", config, src_mask, src_key_padding_mask,
                     src_is_causal)
    x = _decode(
        _to_batch_first(tgt, config), memory, sd, "decoder.", config,
        tgt_mask, memory_mask, tgt_key_padding_mask, memory_key_padding_mask, tgt_is_causal, memory_is_causal,
    )
    return _from_batch_first(x, config)


def causal_float_mask(length: int) -> np.ndarray:
    """What torch.nn.Transformer.generate_square_subsequent_mask returns, as float32 NumPy."""
    return np.triu(np.full((length, length), -np.inf, dtype=np.float32), k=1)


def suffix_padding(lengths, max_len: Optional[int] = None) -> np.ndarray:
    """A [B, S] bool key padding mask, True at positions >= lengths[b]."""
    lengths = np.asarray(lengths)
    max_len = int(lengths.max()) if max_len is None else max_len
    return np.arange(max_len)[None, :] >= lengths[:, None]


def random_state_dict(shapes: Mapping[str, tuple], rng: np.random.Generator) -> dict:
    """Random float32 weights for the given {key: shape} (torch's names), scaled like torch's initialisers
    so that activations stay O(1) through many layers, but with every parameter random: matrices
    N(0, 1/fan_in), biases N(0, 0.1^2), LayerNorm weights 1 + N(0, 0.2^2) and biases N(0, 0.2^2)."""
    sd = {}
    for key, shape in shapes.items():
        shape = tuple(int(s) for s in shape)
        is_norm = ".norm" in "." + key  # layers.{i}.norm1.*, norm.*, encoder.norm.*
        if len(shape) == 2:
            w = rng.standard_normal(shape, dtype=np.float32) * np.float32(1.0 / math.sqrt(shape[1]))
        elif is_norm and key.endswith("weight"):
            w = 1.0 + 0.2 * rng.standard_normal(shape, dtype=np.float32)
        elif is_norm:
            w = 0.2 * rng.standard_normal(shape, dtype=np.float32)
        else:
            w = 0.1 * rng.standard_normal(shape, dtype=np.float32)
        sd[key] = np.ascontiguousarray(w, dtype=np.float32)
    return sd
