"""The command-line interface, run as users run it: ``python -m cpuformer ...`` in a subprocess.

Bad input must give one line on stderr naming the problem and exit status 2, never a traceback.
The demo model is tiny, so every call takes well under a second beyond the interpreter's start-up.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import pytest

from cpuformer.demo import MODEL_DIR
from cpuformer.demo.number_words import number_to_words

pytestmark = pytest.mark.skipif(
    not os.path.isfile(os.path.join(MODEL_DIR, "model.safetensors")), reason="the demo model is not installed"
)


def run(*args, stdin=None):
    env = dict(os.environ, OMP_NUM_THREADS="1")
    return subprocess.run([sys.executable, "-m", "cpuformer", *args], input=stdin, capture_output=True,
                          text=True, env=env, timeout=120)


def assert_usage_error(proc, *needles):
    assert proc.returncode == 2, (proc.returncode, proc.stdout, proc.stderr)
    assert "Traceback" not in proc.stderr
    assert proc.stdout == ""
    lines = proc.stderr.strip().splitlines()
    assert lines and "error:" in lines[-1], proc.stderr
    for needle in needles:
        assert needle in proc.stderr, proc.stderr


# -- translate -----------------------------------------------------------------------------------


def test_translate_prints_one_line_per_number_in_order():
    proc = run("translate", "1234", "907", "0")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines() == [number_to_words(1234), number_to_words(907), "zero"]


def test_translate_options():
    proc = run("translate", "--beam-size", "4", "--threads", "1", "--max-length", "31", "1234")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines() == [number_to_words(1234)]


def test_translate_max_length_cuts_the_output():
    # The demo model ends every sentence at the limit (Hugging Face's forced_eos_token_id): two words
    # and the end of sentence.
    proc = run("translate", "--max-length", "3", "1234")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines() == ["one thousand"]


def test_translate_reads_stdin_when_no_numbers_are_given():
    proc = run("translate", stdin="5\n\n  42  \n")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines() == ["five", "forty two"]


def test_translate_leading_zeros_and_whitespace():
    proc = run("translate", " 007 ", "000")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines() == ["seven", "zero"]


@pytest.mark.parametrize(
    "args, needles",
    [
        (["12a"], ["'12a'", "'a'"]),
        (["1234", "1.5"], ["'1.5'"]),
        (["1234567890"], ["out of range", "999999999"]),
        ([""], ["empty"]),
        (["--beam-size", "0", "1"], ["--beam-size"]),
        (["--threads", "two", "1"], ["--threads"]),
        (["--threads", "5000", "1"], ["--threads", "at most 1024"]),
        (["--model", "/nonexistent/model", "1"], ["/nonexistent/model"]),
    ],
)
def test_translate_bad_input(args, needles):
    assert_usage_error(run("translate", *args), *needles)


def test_translate_no_numbers_on_stdin():
    assert_usage_error(run("translate", stdin=""), "no numbers")


def test_translate_model_without_vocabulary(tmp_path):
    for name in ("config.json", "model.safetensors"):
        shutil.copy(os.path.join(MODEL_DIR, name), tmp_path)
    assert_usage_error(run("translate", "--model", str(tmp_path), "1"), "vocab.json")


# -- info ----------------------------------------------------------------------------------------


def test_info():
    proc = run("info")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("cpuformer ")
    assert "active isa:" in proc.stdout and "threads:" in proc.stdout


def test_info_json():
    proc = run("info", "--json")
    assert proc.returncode == 0, proc.stderr
    info = json.loads(proc.stdout)
    assert info["isa"] in info["isas_supported"]
    assert info["threads"] == 1  # OMP_NUM_THREADS


# -- convert -------------------------------------------------------------------------------------


def test_convert_then_translate_with_the_converted_model(tmp_path):
    out = tmp_path / "model.cpuformer.safetensors"
    proc = run("convert", MODEL_DIR, str(out))
    assert proc.returncode == 0, proc.stderr
    assert out.is_file() and str(out) in proc.stdout
    # A directory with only the cpuformer file and the vocabulary is a complete model.
    shutil.copy(os.path.join(MODEL_DIR, "vocab.json"), tmp_path)
    proc = run("translate", "--model", str(tmp_path), "1234")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines() == [number_to_words(1234)]


def test_convert_bad_input(tmp_path):
    assert_usage_error(run("convert", str(tmp_path / "missing"), str(tmp_path / "out.safetensors")), "missing")
    assert_usage_error(run("convert", str(tmp_path), str(tmp_path / "out.safetensors")), "Marian")
    assert_usage_error(run("convert", MODEL_DIR, str(tmp_path / "no" / "such" / "out.safetensors")), "no")
    assert_usage_error(run("convert", MODEL_DIR, str(tmp_path)), "directory")
    assert not (tmp_path / "out.safetensors").exists()


# -- the command itself --------------------------------------------------------------------------


def test_no_command_prints_usage_and_exits_2():
    proc = run()
    assert proc.returncode == 2
    assert "usage:" in proc.stderr and "translate" in proc.stderr


def test_unknown_command():
    assert_usage_error(run("frobnicate"), "frobnicate")


def test_version():
    proc = run("--version")
    assert proc.returncode == 0 and proc.stdout.startswith("cpuformer ")


def test_cli_does_not_import_torch():
    code = ("import sys; from cpuformer.cli import main; rc = main(['translate', '5']); "
            "sys.exit(rc if 'torch' not in sys.modules and 'transformers' not in sys.modules else 3)")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                          env=dict(os.environ, OMP_NUM_THREADS="1"))
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines() == ["five"]
