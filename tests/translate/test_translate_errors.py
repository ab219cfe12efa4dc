"""Bad input to Translator: clear exceptions (IndexError for token ids outside the vocabulary, naming the id
and the vocabulary size; ValueError / TypeError for bad options and shapes), and files: save()/load() round
trips exactly, load() refuses files that are not ours, from_pretrained() refuses what is not a checkpoint.
Uses the demo model (vocabulary of 44, 64 positions); needs neither torch nor transformers.
"""

from __future__ import annotations

import json
import os
import shutil

import numpy as np
import pytest

import cpuformer
from thread_setting import check_num_threads_setter

SRC = [[5, 6, 0], [7, 0]]


@pytest.fixture(scope="module")
def tr(demo_tr):
    return demo_tr


# --- token ids ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("bad", [44, -1, 100_000, 2**40])
def test_source_id_out_of_range(tr, bad):
    with pytest.raises(IndexError, match=rf"token id {bad}\b.*vocabulary of 44"):
        tr.generate([[5, 0], [3, bad, 0]])
    with pytest.raises(IndexError, match=rf"token id {bad}\b.*vocabulary of 44"):
        tr.generate(np.array([[5, bad]]))
    with pytest.raises(IndexError, match=rf"token id {bad}\b.*vocabulary of 44"):
        tr.log_probs([[5, bad]], [[43]])


def test_target_and_suppress_id_out_of_range(tr):
    with pytest.raises(IndexError, match=r"target_ids: token id 44\b.*vocabulary of 44"):
        tr.log_probs([[5, 0]], [[43, 44]])
    with pytest.raises(ValueError, match=r"suppress_ids: id 44\b.*vocabulary of 44"):
        tr.generate(SRC, suppress_ids=[44])


def test_ids_in_padding_are_not_checked(tr):
    """Past a sentence's length, the padded array may hold anything."""
    ids = np.array([[5, 6, 0], [7, 0, 12345]])
    assert tr.generate(ids, lengths=[3, 2]) == tr.generate(SRC)


@pytest.mark.parametrize("bad", [[[1.0, 0]], [["1", 0]], [[True, 0]], [[None]], [[np.float32(2), 0]]],
                         ids=["float", "str", "bool", "None", "np.float32"])
def test_non_int_tokens(tr, bad):
    with pytest.raises(TypeError, match=r"source_ids\[0\]\[0\]: expected an int token id"):
        tr.generate(bad)


def test_non_int_arrays_and_bad_shapes(tr):
    with pytest.raises(TypeError, match="integer array"):
        tr.generate(np.array([[1.0, 0.0]]))
    with pytest.raises(TypeError, match="list of lists"):
        tr.generate(5)
    with pytest.raises(TypeError, match="list of lists"):
        tr.generate([5, 6])
    with pytest.raises(ValueError, match="2-D"):
        tr.generate(np.array([1, 2]))
    with pytest.raises(ValueError, match="lengths"):
        tr.generate(np.ones((2, 3), dtype=np.int64), lengths=[3])
    with pytest.raises(ValueError, match="length 4"):
        tr.generate(np.ones((2, 3), dtype=np.int64), lengths=[3, 4])
    with pytest.raises(ValueError, match="lengths"):
        tr.generate(SRC, lengths=[3, 2])  # lists carry their own lengths
    for bad in ([1.5, 2], [True, 2]):  # must not be read as 1
        with pytest.raises(TypeError, match="lengths: expected integers"):
            tr.generate(np.ones((2, 3), dtype=np.int64), lengths=bad)
    with pytest.raises(IndexError, match="source_ids: token id 9223372036854775813 is out of range"):
        tr.generate(np.array([[2**63 + 5]], dtype=np.uint64))  # not wrapped to a negative int64
    with pytest.raises(ValueError, match="target_ids: expected 1 sentences"):
        tr.log_probs([[1, 0]], [[43], [43]])


def test_empty_inputs(tr):
    with pytest.raises(ValueError, match="at least one sentence"):
        tr.generate([])
    with pytest.raises(ValueError, match="at least one sentence"):
        tr.generate(np.zeros((0, 3), dtype=np.int64))
    with pytest.raises(ValueError, match="sentence 0 is empty"):
        tr.generate([[]])
    with pytest.raises(ValueError, match="sentence 1 is empty"):
        tr.generate([[1, 0], []])
    with pytest.raises(ValueError, match="sentence 1 is empty"):
        tr.generate(np.ones((2, 3), dtype=np.int64), lengths=[3, 0])
    with pytest.raises(ValueError, match="empty"):
        tr.log_probs([[1, 0]], [[]])


def test_too_long_for_the_model(tr):
    with pytest.raises(ValueError, match="max_positions = 64"):
        tr.generate([[1] * 70 + [0]])
    with pytest.raises(ValueError, match="max_length: 100 exceeds the model's max_positions = 64"):
        tr.generate(SRC, max_length=100)
    with pytest.raises(ValueError, match="max_positions = 64"):
        tr.log_probs([[1, 0]], [[43] * 70])
    assert len(tr.generate(SRC, max_length=64, min_length=64, suppress_ids=[0])[0]) == 63  # the limit itself


# --- options ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("kw, error, message", [
    (dict(beam_size=0), ValueError, "beam_size: expected an integer >= 1, got 0"),
    (dict(beam_size=-3), ValueError, "beam_size"),
    (dict(max_length=0), ValueError, "max_length: expected an integer >= 1, got 0"),
    (dict(max_length=5, min_length=6), ValueError, r"min_length: expected <= max_length \(5\), got 6"),
    (dict(min_length=-1), ValueError, "min_length"),
    (dict(beam_size=2, num_hypotheses=3), ValueError, r"num_hypotheses: expected <= beam_size \(2\), got 3"),
    (dict(num_hypotheses=2), ValueError, r"num_hypotheses: expected <= beam_size \(1\)"),
    (dict(num_hypotheses=0), ValueError, "num_hypotheses"),
    (dict(beam_size=2, sampling_topk=3), ValueError, "sampling needs beam_size = 1"),
    (dict(beam_size=4, temperature=0.5), ValueError, "sampling needs beam_size = 1"),
    (dict(sampling_topk=3, seed=-1), ValueError, "seed"),
    (dict(sampling_topk=3, seed=2**64), ValueError, "seed"),
    (dict(beam_size=2.0), TypeError, "beam_size: expected an integer, got float"),
    (dict(beam_size="2"), TypeError, "beam_size: expected an integer"),
    (dict(max_length=None, min_length=1.5), TypeError, "min_length"),
    (dict(sampling_topk=2.5), TypeError, "sampling_topk"),
    (dict(beam_size=2, length_penalty=float("nan")), ValueError, "length_penalty: expected a finite number, got nan"),
    (dict(beam_size=2, length_penalty=float("-inf")), ValueError, "length_penalty: expected a finite number"),
    (dict(length_penalty="short"), TypeError, "length_penalty: expected a number, got str"),
    (dict(suppress_ids="ab"), TypeError, "suppress_ids: expected a list of int token ids, got str"),
    (dict(suppress_ids=5), TypeError, "suppress_ids: expected a list of int token ids, got int"),
    (dict(suppress_ids=[3, 1.5]), TypeError, r"suppress_ids\[1\]: expected an int token id, got 1.5"),
    (dict(suppress_ids=[True]), TypeError, r"suppress_ids\[0\]: expected an int token id"),
    (dict(suppress_ids=list(range(44))), ValueError, "suppress_ids: all 44 tokens of the vocabulary are suppressed"),
    # 10**6 hypotheses need ~50 GB of key/value caches: refused before any work, not left to the OOM killer
    (dict(beam_size=10**6), MemoryError, r"1000000 hypotheses \(beam_size, num_hypotheses\) .* GB for its key/value "
                                         r"caches, more than this machine's .* GB of memory"),
    (dict(beam_size=2**62), MemoryError, "beam_size"),
], ids=lambda x: ",".join(f"{k}={v}" for k, v in x.items()) if isinstance(x, dict) else "")
def test_bad_options(tr, kw, error, message):
    with pytest.raises(error, match=message):
        tr.generate(SRC, **kw)


@pytest.mark.skipif(not hasattr(os, "sysconf"), reason="needs os.sysconf for the machine's memory")
def test_log_probs_larger_than_memory_is_refused(tr):
    memory = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    batch = memory // (64 * 2 * (6 * 64 + 256) * 4) + 1  # ~5 KB of activations per sentence position
    ids = np.ones((batch, 64), dtype=np.int64)
    with pytest.raises(MemoryError, match=rf"^log_probs of {batch} sentence\(s\) of 64 source and 64 target "
                                          r"tokens .* more than this machine's .* GB of memory"):
        tr.log_probs(ids, ids)


def test_num_threads_setting(tr):
    check_num_threads_setter(tr)


# --- files --------------------------------------------------------------------------------------------------


def test_save_load_round_trip(tr, tmp_path):
    path = tmp_path / "demo.cpuformer.safetensors"
    tr.save(str(path))
    back = cpuformer.Translator.load(str(path))
    back.num_threads = 1
    assert back.config == tr.config and back.generation_defaults == tr.generation_defaults
    sources = [[5, 6, 7, 0], [2, 0], [9, 9, 9, 9, 9, 9, 0]]
    for kw in (dict(), dict(beam_size=4, num_hypotheses=3, length_penalty=0.8), dict(sampling_topk=4, seed=3)):
        assert back.generate(sources, return_scores=True, **kw) == tr.generate(sources, return_scores=True, **kw)
    targets = [[43] + h for h in tr.generate(sources)]
    np.testing.assert_array_equal(back.log_probs(sources, targets), tr.log_probs(sources, targets))
    # a directory holding model.cpuformer.safetensors, and the file itself, load through from_pretrained
    os.replace(path, tmp_path / "model.cpuformer.safetensors")
    for p in (tmp_path, tmp_path / "model.cpuformer.safetensors"):
        assert cpuformer.Translator.from_pretrained(str(p)).generate(sources) == tr.generate(sources)


def test_load_refuses_other_files(demo_dir, tmp_path):
    with pytest.raises(ValueError, match="not a cpuformer Translator file"):
        cpuformer.Translator.load(os.path.join(demo_dir, "model.safetensors"))  # HF's, not ours
    with pytest.raises(ValueError, match="not a safetensors file"):
        cpuformer.Translator.load(os.path.join(demo_dir, "config.json"))
    junk = tmp_path / "junk.bin"
    junk.write_bytes(bytes(range(256)) * 3)
    with pytest.raises(ValueError, match="not a safetensors file"):
        cpuformer.Translator.load(str(junk))
    with pytest.raises(FileNotFoundError, match="no such file"):
        cpuformer.Translator.load(str(tmp_path / "missing.safetensors"))


def test_from_pretrained_errors(demo_dir, tmp_path):
    with pytest.raises(FileNotFoundError, match="no such file or directory"):
        cpuformer.Translator.from_pretrained(str(tmp_path / "missing"))
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(FileNotFoundError, match="no config.json"):
        cpuformer.Translator.from_pretrained(str(empty))
    bert = tmp_path / "bert"
    bert.mkdir()
    (bert / "config.json").write_text(json.dumps({"model_type": "bert"}))
    with pytest.raises(ValueError, match="model_type is 'bert', expected 'marian'"):
        cpuformer.Translator.from_pretrained(str(bert))
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "config.json").write_text("{not json")
    with pytest.raises(ValueError, match="not valid JSON"):
        cpuformer.Translator.from_pretrained(str(broken))
    no_weights = tmp_path / "no_weights"
    no_weights.mkdir()
    shutil.copy(os.path.join(demo_dir, "config.json"), no_weights)
    with pytest.raises(FileNotFoundError, match="no model.safetensors or pytorch_model.bin"):
        cpuformer.Translator.from_pretrained(str(no_weights))
    truncated = tmp_path / "truncated"
    truncated.mkdir()
    shutil.copy(os.path.join(demo_dir, "config.json"), truncated)
    data = open(os.path.join(demo_dir, "model.safetensors"), "rb").read()
    (truncated / "model.safetensors").write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError):
        cpuformer.Translator.from_pretrained(str(truncated))


def test_normalize_before_is_ignored_as_transformers_does(demo_dir, tmp_path, tr):
    # MarianMTModel never reads normalize_before (always post-LN); read as pre-LN, the model would
    # silently compute something else than the checkpoint's reference.
    config = json.load(open(os.path.join(demo_dir, "config.json")))
    config["normalize_before"] = True
    (tmp_path / "config.json").write_text(json.dumps(config))
    shutil.copy(os.path.join(demo_dir, "model.safetensors"), tmp_path)
    other = cpuformer.Translator.from_pretrained(str(tmp_path))
    assert other.config["norm_first"] is False
    assert other.generate(SRC, max_length=8) == tr.generate(SRC, max_length=8)


@pytest.mark.parametrize("changes, error, message", [
    (dict(pad_token_id=None), ValueError, r"config.json: pad_token_id must be an integer, got None"),
    (dict(d_model="64"), ValueError, r"config.json: d_model must be an integer, got '64'"),
    (dict(decoder_layers=True), ValueError, r"config.json: decoder_layers must be an integer, got True"),
    # the sinusoid table would be 10**10 x 64 floats (2.6 TB): refused up front, not granted and then OOM-killed
    (dict(max_position_embeddings=10**10), MemoryError,
     r"positional table of 10000000000 positions \(max_positions\) x 64 \(d_model\) needs 2560.0 GB"),
], ids=lambda x: ",".join(x) if isinstance(x, dict) else "")
def test_marian_config_values(demo_dir, tmp_path, changes, error, message):
    config = json.load(open(os.path.join(demo_dir, "config.json")))
    config.update(changes)
    (tmp_path / "config.json").write_text(json.dumps(config))
    shutil.copy(os.path.join(demo_dir, "model.safetensors"), tmp_path)
    with pytest.raises(error, match=message):
        cpuformer.Translator.from_pretrained(str(tmp_path))


def test_from_pretrained_missing_weight(demo_dir, tmp_path):
    """A checkpoint without one of its weights names the weight."""
    from cpuformer.io import safetensors as st

    tensors, meta = st.load_file(os.path.join(demo_dir, "model.safetensors"))
    name = next(k for k in tensors if "decoder.layers.1.fc2.weight" in k)
    del tensors[name]
    st.save_file({k: np.array(v) for k, v in tensors.items()}, str(tmp_path / "model.safetensors"), meta)
    shutil.copy(os.path.join(demo_dir, "config.json"), tmp_path)
    with pytest.raises(ValueError, match="decoder.layers.1.fc2.weight"):
        cpuformer.Translator.from_pretrained(str(tmp_path))
