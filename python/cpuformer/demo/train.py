"""Train the demo model (numbers in digits -> English words) and save it for `cpuformer.demo`.

    python -m cpuformer.demo.train --out DIR

A small ``transformers.MarianMTModel`` learns from freshly sampled numbers at every step (teacher
forcing, AdamW, linear warm-up then cosine decay), so there is no fixed training set to overfit and no
dropout. Everything is seeded (Python's `random` for the data, `torch.manual_seed` for the weights) and
runs on ``--threads`` threads (one by default). At the end it reports exact match on held-out numbers
(see `cpuformer.demo.data`; as sampled, and with zeroed digits) with greedy decoding and with beam
search, then writes ``config.json``, ``generation_config.json``, ``model.safetensors`` and
``vocab.json`` into ``--out``. The exit status is 1 if greedy exact match is below ``--min-accuracy``.

The shipped model came from the defaults: 1500 steps, about 2.5 CPU-minutes.

Needs torch and transformers, which cpuformer itself does not depend on.
"""

from __future__ import annotations

import argparse
import math
import random
import sys
import time

import torch
from transformers import GenerationConfig, MarianConfig, MarianMTModel

from .data import sample_numbers
from .number_words import number_to_words
from .tokenizer import NumberTokenizer

# Longest target: 15 words ("nine hundred ninety nine million ...") + </s> after the start token.
MAX_LENGTH = 32
EVAL_SEED = 20240401  # the tests use another seed


def make_config(tok: NumberTokenizer, args: argparse.Namespace) -> MarianConfig:
    return MarianConfig(
        vocab_size=tok.vocab_size,
        d_model=args.d_model,
        encoder_layers=args.layers,
        decoder_layers=args.layers,
        encoder_attention_heads=args.heads,
        decoder_attention_heads=args.heads,
        encoder_ffn_dim=args.ffn,
        decoder_ffn_dim=args.ffn,
        activation_function=args.activation,
        max_position_embeddings=64,
        scale_embedding=True,
        share_encoder_decoder_embeddings=True,
        tie_word_embeddings=True,
        dropout=0.0,
        attention_dropout=0.0,
        activation_dropout=0.0,
        pad_token_id=tok.pad_token_id,
        eos_token_id=tok.eos_token_id,
        forced_eos_token_id=tok.eos_token_id,
        decoder_start_token_id=tok.decoder_start_token_id,
        bos_token_id=None,
    )


def make_batch(tok: NumberTokenizer, numbers: list[int]) -> dict[str, torch.Tensor]:
    """Source ids and mask, and labels padded with -100 (ignored by the loss)."""
    ids, mask = tok.batch_encode_source([str(n) for n in numbers])
    targets = [tok.encode_target(number_to_words(n)) for n in numbers]
    width = max(len(t) for t in targets)
    labels = [t + [-100] * (width - len(t)) for t in targets]
    return {
        "input_ids": torch.tensor(ids),
        "attention_mask": torch.tensor(mask),
        "labels": torch.tensor(labels),
    }


@torch.no_grad()
def translate(model, tok: NumberTokenizer, texts: list[str], num_beams: int = 1, batch_size: int = 500):
    """Generated word strings for digit strings, in batches."""
    model.eval()
    out: list[str] = []
    for start in range(0, len(texts), batch_size):
        ids, mask = tok.batch_encode_source(texts[start : start + batch_size])
        generated = model.generate(
            input_ids=torch.tensor(ids),
            attention_mask=torch.tensor(mask),
            num_beams=num_beams,
            do_sample=False,
        )
        out += tok.batch_decode_target(generated.tolist())
    return out


def exact_match(model, tok: NumberTokenizer, numbers: list[int], num_beams: int = 1) -> tuple[float, list]:
    """Fraction of numbers translated exactly, and the (number, got) pairs that were not."""
    got = translate(model, tok, [str(n) for n in numbers], num_beams=num_beams)
    wrong = [(n, g) for n, g in zip(numbers, got) if g != number_to_words(n)]
    return 1.0 - len(wrong) / len(numbers), wrong


def lr_factor(step: int, warmup: int, total: int) -> float:
    if step < warmup:
        return (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m cpuformer.demo.train", description=__doc__.split("\n")[0])
    p.add_argument("--out", required=True, help="directory for the trained model and vocab.json")
    p.add_argument("--steps", type=int, default=1500)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--lr", type=float, default=2e-3, help="peak learning rate")
    p.add_argument("--warmup", type=int, default=150)
    p.add_argument("--seed", type=int, default=0)
    # One thread by default: on a busy machine, two threads spent 5-20x longer per step in OpenMP waits.
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--d-model", type=int, default=64)
    p.add_argument("--layers", type=int, default=3, help="encoder layers, and as many decoder layers")
    p.add_argument("--heads", type=int, default=4)
    p.add_argument("--ffn", type=int, default=256)
    p.add_argument("--activation", default="relu", choices=["relu", "swish", "gelu"])
    p.add_argument("--zero-fraction", type=float, default=1 / 3,
                   help="share of training numbers with digits zeroed (see cpuformer.demo.data)")
    p.add_argument("--log-every", type=int, default=100)
    p.add_argument("--eval-every", type=int, default=1000, help="greedy exact match on 200 held-out numbers")
    p.add_argument("--eval-size", type=int, default=1000)
    p.add_argument("--min-accuracy", type=float, default=0.99)
    return p.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    random.seed(args.seed)
    torch.manual_seed(args.seed)
    data_rng = random.Random(args.seed)

    tok = NumberTokenizer()
    model = MarianMTModel(make_config(tok, args))
    model.generation_config = GenerationConfig(
        decoder_start_token_id=tok.decoder_start_token_id,
        eos_token_id=tok.eos_token_id,
        forced_eos_token_id=tok.eos_token_id,
        pad_token_id=tok.pad_token_id,
        max_length=MAX_LENGTH,
        num_beams=1,
        do_sample=False,
    )
    n_params = sum(p.numel() for p in model.parameters())
    print(f"model: {n_params:,} parameters, config: d_model={args.d_model} layers={args.layers}+{args.layers} "
          f"heads={args.heads} ffn={args.ffn} {args.activation}; {args.steps} steps of {args.batch_size}, "
          f"lr {args.lr}, {args.threads} threads", flush=True)

    held_out = sample_numbers(args.eval_size, random.Random(EVAL_SEED), "held_out")
    held_out_zeros = sample_numbers(args.eval_size, random.Random(EVAL_SEED + 1), "held_out", zero_fraction=1.0)
    optimizer = torch.optim.AdamW(model.parameters(), lr=args.lr, betas=(0.9, 0.98), weight_decay=0.01)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: lr_factor(s, args.warmup, args.steps))

    start = time.perf_counter()
    loss_sum, correct, total = 0.0, 0, 0
    for step in range(1, args.steps + 1):
        model.train()
        batch = make_batch(tok, sample_numbers(args.batch_size, data_rng, "train", args.zero_fraction))
        out = model(**batch)
        optimizer.zero_grad(set_to_none=True)
        out.loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        schedule.step()

        labels = batch["labels"]
        keep = labels != -100
        loss_sum += out.loss.item()
        correct += (out.logits.argmax(-1)[keep] == labels[keep]).sum().item()
        total += keep.sum().item()
        if step % args.log_every == 0 or step == args.steps:
            n = args.log_every if step % args.log_every == 0 else step % args.log_every
            print(f"step {step:5d}  loss {loss_sum / n:.4f}  token acc {correct / total:.4f}  "
                  f"lr {schedule.get_last_lr()[0]:.2e}  {time.perf_counter() - start:6.1f}s", flush=True)
            loss_sum, correct, total = 0.0, 0, 0
        if args.eval_every and step % args.eval_every == 0 and step != args.steps:
            acc, _ = exact_match(model, tok, held_out[:200])
            print(f"step {step:5d}  held-out exact match (greedy, 200): {acc:.3f}", flush=True)
    train_seconds = time.perf_counter() - start

    results = {}
    for name, numbers in (("held-out", held_out), ("held-out with zeros", held_out_zeros)):
        for beams in (1, 4):
            t0 = time.perf_counter()
            acc, wrong = exact_match(model, tok, numbers, num_beams=beams)
            results[name, beams] = acc
            print(f"{name} exact match, {'greedy' if beams == 1 else f'beam {beams}'}: {acc:.4f} "
                  f"({len(numbers)} numbers, {time.perf_counter() - t0:.1f}s)", flush=True)
            for n, got in wrong[:10]:
                print(f"  {n}: got {got!r}, want {number_to_words(n)!r}")
    print(f"training took {train_seconds:.1f}s")

    model.save_pretrained(args.out)
    tok.save_pretrained(args.out)
    print(f"saved to {args.out}")
    return 0 if min(results["held-out", 1], results["held-out with zeros", 1]) >= args.min_accuracy else 1


if __name__ == "__main__":
    sys.exit(main())
