"""The ``cpuformer`` command (also ``python -m cpuformer``).

    cpuformer translate 1234 907            numbers in digits -> English words, with the shipped demo model
    cpuformer translate --beam-size 4 --threads 2 1234
    echo 1234 | cpuformer translate         numbers from standard input, one per line, when none are given
    cpuformer info                          build and CPU information (--json for a machine-readable dump)
    cpuformer convert MARIAN_DIR OUT.safetensors
                                            a Hugging Face Marian checkpoint -> one cpuformer file

Bad input (a number with a letter in it, a missing model directory, an option out of range) prints one
line, ``cpuformer <command>: error: ...``, on standard error and exits with status 2, as argparse does
for bad options. Imports nothing beyond cpuformer and NumPy.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import List, Optional, Sequence

PROG = "cpuformer"


class UsageError(Exception):
    """Bad input from the user: reported as one line and exit status 2, without a traceback."""


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value}")
    return value


def _threads(text: str) -> int:
    from .runtime import MAX_THREADS

    value = _positive(text)
    if value > MAX_THREADS:
        raise argparse.ArgumentTypeError(f"expected at most {MAX_THREADS} threads, got {value}")
    return value


def _fail(command: str, message: str) -> int:
    print(f"{PROG} {command}: error: {message}", file=sys.stderr)
    return 2


# ---------------------------------------------------------------------------------------------------------
# translate


def _read_numbers(args) -> List[str]:
    numbers = list(args.numbers)
    if not numbers:
        if sys.stdin is None or sys.stdin.isatty():
            raise UsageError("no numbers given (pass them as arguments, or one per line on standard input)")
        numbers = [line.strip() for line in sys.stdin if line.strip()]
        if not numbers:
            raise UsageError("no numbers on standard input")
    return numbers


def _normalise(text: str, max_number: int) -> str:
    """'  0907 ' -> '907'; UsageError for anything but digits 0-9 or a number beyond the model's range."""
    digits = text.strip()
    if not digits:
        raise UsageError(f"{text!r} is empty; expected a number written in the digits 0-9")
    bad = next((c for c in digits if c not in "0123456789"), None)
    if bad is not None:
        raise UsageError(f"{text!r} is not a number: {bad!r} is not one of the digits 0-9")
    digits = digits.lstrip("0") or "0"  # the model writes numbers, not digit strings: 007 is seven
    if len(digits) > len(str(max_number)) or int(digits) > max_number:
        raise UsageError(f"{text!r} is out of range: the model covers 0..{max_number}")
    return digits


def _load_model(model_dir: Optional[str]):
    """(Translator, tokenizer) from a directory holding a model and the demo tokenizer's vocab.json."""
    from . import Translator
    from .demo import MODEL_DIR
    from .demo.tokenizer import VOCAB_FILE, NumberTokenizer

    path = MODEL_DIR if model_dir is None else model_dir
    if not os.path.isdir(path):
        if model_dir is None:
            raise UsageError(f"the demo model is missing from this installation ({path})")
        raise UsageError(f"--model: no such directory: {path}")
    if not os.path.isfile(os.path.join(path, VOCAB_FILE)):
        raise UsageError(f"{path}: no {VOCAB_FILE} (the vocabulary of cpuformer.demo's number tokenizer)")
    try:
        tokenizer = NumberTokenizer.from_pretrained(path)
        translator = Translator.from_pretrained(path)
    except (ValueError, OSError) as e:  # malformed or missing files: the message names them
        raise UsageError(f"cannot load the model in {path}: {e}") from None
    return translator, tokenizer


def _translate(args) -> int:
    from .demo import MAX_NUMBER

    numbers = [_normalise(n, MAX_NUMBER) for n in _read_numbers(args)]
    translator, tokenizer = _load_model(args.model)
    if args.threads is not None:
        translator.num_threads = args.threads
    try:
        sources = [tokenizer.encode_source(n) for n in numbers]
        ids = translator.generate(sources, beam_size=args.beam_size, max_length=args.max_length)
        words = [tokenizer.decode_target(row) for row in ids]
    except ValueError as e:  # a vocabulary that does not fit the model, a length the model cannot reach
        raise UsageError(str(e)) from None
    for line in words:
        print(line)
    return 0


# ---------------------------------------------------------------------------------------------------------
# info


def _info(args) -> int:
    import cpuformer

    info = cpuformer.build_info()
    info["version"] = cpuformer.__version__
    info["threads"] = cpuformer.get_num_threads()
    if args.json:
        print(json.dumps(info, indent=2, sort_keys=True))
        return 0
    features = info.get("cpu_features") or {}
    blocking = info.get("gemm_blocking") or {}
    rows = [
        ("version", info["version"]),
        ("cpu", info.get("cpu", "?")),
        ("cpu features", ", ".join(f"{k} {'yes' if v else 'no'}" for k, v in features.items()) or "?"),
        ("active isa", info.get("isa", "?")),
        ("supported isas", ", ".join(info.get("isas_supported", [])) or "?"),
        ("compiled isas", ", ".join(info.get("isas_compiled", [])) or "?"),
        ("threads", str(info["threads"])),
        ("openmp", "yes" if info.get("openmp") else "no"),
        ("compiler", info.get("compiler", "?")),
        ("c++ flags", info.get("cxx_flags", "?")),
        ("gemm blocking", ", ".join(f"{k}={v}" for k, v in blocking.items()) or "?"),
    ]
    known = {"version", "cpu", "cpu_features", "isa", "isas_supported", "isas_compiled", "threads", "openmp",
             "compiler", "cxx_flags", "gemm_blocking"}
    rows += [(k.replace("_", " "), str(v)) for k, v in sorted(info.items()) if k not in known]
    width = max(len(k) for k, _ in rows)
    print(f"{PROG} {info['version']}")
    for key, value in rows[1:]:
        print(f"  {key + ':':{width + 1}s} {value}")
    return 0


# ---------------------------------------------------------------------------------------------------------
# convert


def _convert(args) -> int:
    from . import Translator

    src, out = args.source, args.output
    if not os.path.exists(src):
        raise UsageError(f"no such file or directory: {src}")
    out_dir = os.path.dirname(os.path.abspath(out))
    if not os.path.isdir(out_dir):
        raise UsageError(f"the output's directory does not exist: {out_dir}")
    if os.path.isdir(out):
        raise UsageError(f"{out} is a directory; expected a file name such as model.cpuformer.safetensors")
    try:
        translator = Translator.from_pretrained(src)
        translator.save(out)
    except (ValueError, OSError, ImportError) as e:
        raise UsageError(str(e)) from None
    size = os.path.getsize(out) / 2**20
    print(f"wrote {out} ({size:.1f} MiB)")
    return 0


# ---------------------------------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    from . import __version__

    parser = argparse.ArgumentParser(prog=PROG, description="cpuformer: Transformers on CPUs.")
    parser.add_argument("--version", action="version", version=f"{PROG} {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    p = sub.add_parser("translate", help="numbers in digits -> English words (the demo model)",
                       description="Translates numbers written in digits (0..999999999) into English words "
                                   "with the demo model shipped with cpuformer, or another model trained "
                                   "with cpuformer.demo. One translation per line, in order.")
    p.add_argument("numbers", nargs="*", metavar="NUMBER",
                   help="numbers in digits, e.g. 1234 (none: read them from standard input, one per line)")
    p.add_argument("--beam-size", type=_positive, default=None, metavar="N",
                   help="beam search with N hypotheses (default: the model's, greedy for the demo)")
    p.add_argument("--max-length", type=_positive, default=None, metavar="N",
                   help="at most N generated tokens, the end of sentence included (default: the model's)")
    p.add_argument("--model", default=None, metavar="DIR",
                   help="a model directory with vocab.json (default: the shipped demo model)")
    p.add_argument("--threads", type=_threads, default=None, metavar="N",
                   help="threads to use (default: OMP_NUM_THREADS, else the usable CPUs)")
    p.set_defaults(run=_translate)

    p = sub.add_parser("info", help="build, CPU and instruction-set information",
                       description="Prints how cpuformer was built and what it uses on this CPU.")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(run=_info)

    p = sub.add_parser("convert", help="a Hugging Face Marian checkpoint -> one cpuformer file",
                       description="Converts a local Marian (opus-mt) checkpoint directory, as written by "
                                   "MarianMTModel.save_pretrained, into a single cpuformer safetensors file "
                                   "that Translator.load (or from_pretrained) reads.")
    p.add_argument("source", metavar="MARIAN_DIR", help="directory with config.json and model.safetensors")
    p.add_argument("output", metavar="OUT", help="the file to write, e.g. model.cpuformer.safetensors")
    p.set_defaults(run=_convert)
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help(sys.stderr)
        return 2
    try:
        return args.run(args)
    except UsageError as e:
        return _fail(args.command, str(e))
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # `cpuformer translate ... | head -1`
        try:
            sys.stdout = None
        finally:
            return 0


if __name__ == "__main__":
    sys.exit(main())
