"""Shared by the translation tests: Marian models with random or trained weights, Hugging Face's forward and
generate() on them, and the mapping between its conventions and cpuformer's.

Conventions: a source sentence is a list of token ids ending with EOS (as Marian tokenizers write it);
HF batches are right-padded with the pad id plus an attention mask. HF's generate() returns
``[decoder_start] + tokens + [eos] + pads`` per row (``num_return_sequences`` rows per sentence,
`from_hf_row`); cpuformer returns ``tokens`` (no start, no EOS), and its lengths do not count the start
token: HF ``max_length`` / ``min_length`` = ours + 1.

The second trained model ("expand") learns a synthetic task in the fixture of conftest.py: a source of
1..12 symbols (ids 2..29), target = each symbol below 12 written twice, every other symbol shifted by one
(29 wraps to 2). Targets are 1..24 tokens long, so EOS comes at very different steps across a batch.
The directory also holds the run's snapshot after 150 of its 400 steps (``early/``): a model that has the
task's structure but is unsure, on which beam search disagrees with greedy for about half the sentences.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import random
import shutil
import tempfile
from typing import List, Sequence

import numpy as np

torch = None  # imported lazily: the module is also imported by tests that skip without torch


def _torch():
    global torch
    if torch is None:
        import torch as t

        torch = t
    return torch


# --- random Marian models ---------------------------------------------------------------------------------

# The shared tiny random model's size (tests import it from here: `from conftest import ...` breaks when
# another test directory's conftest was imported first).
TINY = dict(vocab=50, d_model=32, enc_layers=1, dec_layers=2, heads=2, ffn=48, activation="gelu",
            scale_embedding=False, max_positions=64)


def marian_config(*, vocab: int, d_model: int, enc_layers: int, dec_layers: int, heads: int, ffn: int,
                  activation: str = "swish", scale_embedding: bool = True, max_positions: int = 128):
    """A MarianConfig in opus-mt's id layout: EOS 0, unk 1, pad (= decoder start) the last id."""
    from transformers import MarianConfig

    pad = vocab - 1
    return MarianConfig(
        vocab_size=vocab, decoder_vocab_size=vocab, d_model=d_model, encoder_layers=enc_layers,
        decoder_layers=dec_layers, encoder_attention_heads=heads, decoder_attention_heads=heads,
        encoder_ffn_dim=ffn, decoder_ffn_dim=ffn, activation_function=activation,
        max_position_embeddings=max_positions, scale_embedding=scale_embedding,
        share_encoder_decoder_embeddings=True, tie_word_embeddings=True,
        dropout=0.0, attention_dropout=0.0, activation_dropout=0.0,
        pad_token_id=pad, eos_token_id=0, forced_eos_token_id=0, decoder_start_token_id=pad, bos_token_id=None,
    )


def randomize_(model, seed: int, logit_scale: float = 3.0) -> None:
    """Every parameter random (biases, LayerNorm affine, final_logits_bias included), so that a wrong or
    missing term shows; the sinusoidal position table is left as it is (it is not a learnt weight).
    Embedding entries have std logit_scale / sqrt(d_model): logits (tied output) of std ~ logit_scale."""
    t = _torch()
    g = t.Generator().manual_seed(seed)
    d = model.config.d_model
    with t.no_grad():
        for name, p in model.named_parameters():
            if "embed_positions" in name:
                continue
            if name.endswith("layer_norm.weight"):
                p.copy_(1.0 + 0.2 * t.randn(p.shape, generator=g))
            elif name.endswith("bias"):
                p.copy_(0.2 * t.randn(p.shape, generator=g))
            elif "shared" in name or "embed_tokens" in name:
                p.copy_(t.randn(p.shape, generator=g) * logit_scale / d**0.5)
            elif p.ndim == 2:
                p.copy_(t.randn(p.shape, generator=g) / p.shape[1] ** 0.5)
            else:
                p.copy_(0.2 * t.randn(p.shape, generator=g))
        model.final_logits_bias.copy_(0.5 * t.randn(model.final_logits_bias.shape, generator=g))


def random_marian(seed: int, **config):
    from transformers import MarianMTModel

    t = _torch()
    t.manual_seed(seed)
    model = MarianMTModel(marian_config(**config)).eval()
    randomize_(model, seed)
    return model


# --- HF forward and generate ------------------------------------------------------------------------------


def pad_batch(rows: Sequence[Sequence[int]], pad: int):
    """(ids [B, L] int64 right-padded with `pad`, mask [B, L]) as torch tensors."""
    t = _torch()
    width = max(len(r) for r in rows)
    ids = t.full((len(rows), width), pad, dtype=t.int64)
    mask = t.zeros((len(rows), width), dtype=t.int64)
    for i, r in enumerate(rows):
        ids[i, : len(r)] = t.tensor(list(r), dtype=t.int64)
        mask[i, : len(r)] = 1
    return ids, mask


def hf_log_probs(model, sources, targets, dtype=None) -> np.ndarray:
    """HF's teacher-forced log_softmax(logits) [B, T, V] on padded batches (float64 result; the model runs
    in its own dtype, or in `dtype` on a copy)."""
    t = _torch()
    pad = model.config.pad_token_id
    src, mask = pad_batch(sources, pad)
    tgt, _ = pad_batch(targets, pad)
    if dtype is not None:
        import copy

        model = copy.deepcopy(model).to(dtype)
    with t.no_grad():
        logits = model(input_ids=src, attention_mask=mask, decoder_input_ids=tgt).logits
    return logits.double().log_softmax(-1).numpy()


def from_hf_row(row: List[int], start: int, eos: int) -> List[int]:
    """[start] + tokens + [eos] + pads -> tokens (a row without EOS ran to max_length: no padding)."""
    assert row[0] == start, f"HF output does not begin with the decoder start token {start}: {row}"
    tokens = row[1:]
    return tokens[: tokens.index(eos)] if eos in tokens else tokens


# --- data ----------------------------------------------------------------------------------------------------


def random_sources(rng: np.random.Generator, n: int, low: int, high: int, min_len: int, max_len: int,
                   eos: int = 0) -> List[List[int]]:
    """n sentences of min_len..max_len tokens drawn from [low, high), each followed by EOS."""
    return [[int(x) for x in rng.integers(low, high, size=int(rng.integers(min_len, max_len + 1)))] + [eos]
            for _ in range(n)]


# --- the synthetic "expand" task and its trained model -----------------------------------------------------

EXPAND_VOCAB = 32
EXPAND_EOS, EXPAND_PAD = 0, EXPAND_VOCAB - 1
EXPAND_LOW, EXPAND_HIGH = 2, 30  # symbols
EXPAND_MAX_SRC = 12
EXPAND_RECIPE = {  # everything the cached model depends on: a change retrains it
    "task": "expand-v1", "vocab": EXPAND_VOCAB, "d_model": 64, "layers": 2, "heads": 4, "ffn": 128,
    "activation": "relu", "steps": 400, "early_steps": 150, "batch": 64, "lr": 3e-3, "warmup": 100, "seed": 0,
}


def expand_target(src_symbols: Sequence[int]) -> List[int]:
    out: List[int] = []
    for s in src_symbols:
        out += [s, s] if s < 12 else [s + 1 if s + 1 < EXPAND_HIGH else EXPAND_LOW]
    return out


def expand_sources(rng: random.Random, n: int) -> List[List[int]]:
    """Symbols only (no EOS)."""
    return [[rng.randrange(EXPAND_LOW, EXPAND_HIGH) for _ in range(rng.randint(1, EXPAND_MAX_SRC))]
            for _ in range(n)]


def _train_expand(out_dir: str) -> None:
    from transformers import MarianMTModel

    t = _torch()
    r = EXPAND_RECIPE
    previous_threads = t.get_num_threads()
    t.set_num_threads(1)  # faster than 2 on a shared 2-core machine (less OpenMP waiting)
    try:
        t.manual_seed(r["seed"])
        cfg = marian_config(vocab=r["vocab"], d_model=r["d_model"], enc_layers=r["layers"], dec_layers=r["layers"],
                            heads=r["heads"], ffn=r["ffn"], activation=r["activation"], max_positions=64)
        model = MarianMTModel(cfg)
        opt = t.optim.AdamW(model.parameters(), lr=r["lr"], betas=(0.9, 0.98))
        steps, warm = r["steps"], r["warmup"]
        sched = t.optim.lr_scheduler.LambdaLR(opt, lambda s: min(1.0, (s + 1) / warm) * max(0.05, 1 - s / steps))
        rng = random.Random(r["seed"])
        model.train()
        for step in range(steps):
            if step == r["early_steps"]:
                model.eval()
                model.save_pretrained(os.path.join(out_dir, "early"))
                model.train()
            srcs = expand_sources(rng, r["batch"])
            ids, mask = pad_batch([s + [EXPAND_EOS] for s in srcs], EXPAND_PAD)
            labels, _ = pad_batch([expand_target(s) + [EXPAND_EOS] for s in srcs], -100)
            loss = model(input_ids=ids, attention_mask=mask, labels=labels).loss
            opt.zero_grad(set_to_none=True)
            loss.backward()
            t.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            sched.step()
        model.eval()
        model.save_pretrained(out_dir)
    finally:
        t.set_num_threads(previous_threads)


def _recipe_key() -> str:
    import transformers

    t = _torch()
    blob = json.dumps({**EXPAND_RECIPE, "torch": t.__version__.split("+")[0],
                       "transformers": transformers.__version__}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def trained_expand_dir(cache_root: str) -> str:
    """The trained "expand" model's directory under cache_root, training it (~20 s of CPU) if it is not
    there. A file lock keeps concurrent test runs from training twice; the directory appears atomically."""
    final = os.path.join(cache_root, f"expand-{_recipe_key()}")
    if os.path.isfile(os.path.join(final, "model.safetensors")):
        return final
    os.makedirs(cache_root, exist_ok=True)
    with open(os.path.join(cache_root, ".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not os.path.isfile(os.path.join(final, "model.safetensors")):
            tmp = tempfile.mkdtemp(dir=cache_root, prefix=".training-")
            try:
                _train_expand(tmp)
                os.replace(tmp, final)
            finally:
                shutil.rmtree(tmp, ignore_errors=True)
    return final
