"""Bad input to SentenceEncoder: each error says what was wrong and where."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest

import cpuformer
from thread_setting import check_num_threads_setter


@pytest.mark.parametrize("items, index, kind", [
    (["ok", 3], 1, "int"),
    (["ok", "fine", None], 2, "NoneType"),
    ([b"bytes"], 0, "bytes"),
    (["a", ["nested"]], 1, "list"),
])
def test_non_string_item(encoder, items, index, kind):
    with pytest.raises(TypeError, match=rf"sentences\[{index}\]: expected a str, got {kind}"):
        encoder.encode(items)
    with pytest.raises(TypeError, match=rf"sentences\[{index}\]"):
        encoder.tokenize(items)
    with pytest.raises(TypeError, match=rf"sentences\[{index}\]"):
        list(encoder.encode_iter(iter(items)))


@pytest.mark.parametrize("bad", [None, 42])
def test_not_a_list(encoder, bad):
    with pytest.raises(TypeError, match="sentences: expected a list of str"):
        encoder.encode(bad)
    with pytest.raises(TypeError, match="sentences: expected a list of str"):
        encoder.encode_iter(bad)


def test_single_str(encoder):
    with pytest.raises(TypeError, match="single str"):
        encoder.encode("one sentence")
    with pytest.raises(TypeError, match="single str"):
        encoder.encode_iter("one sentence")


def test_empty_list(encoder):
    out = encoder.encode([])
    assert out.shape == (0, 384) and out.dtype == np.float32
    assert encoder.encode_ids([]).shape == (0, 384)


@pytest.mark.parametrize("batch_size", [0, -1, 1.5, True, None])
def test_bad_batch_size(encoder, batch_size):
    with pytest.raises(ValueError, match="batch_size"):
        encoder.encode(["x"], batch_size=batch_size)


@pytest.mark.parametrize("chunk_size", [0, -3, 2.0, False])
def test_bad_chunk_size(encoder, chunk_size):
    with pytest.raises(ValueError, match="chunk_size"):
        list(encoder.encode_iter(["x"], chunk_size=chunk_size))


def test_bad_num_threads(encoder):
    check_num_threads_setter(encoder)


@pytest.mark.parametrize("n", [0, 1, -5, 2.5])
def test_bad_max_seq_length(encoder, n):
    with pytest.raises(ValueError, match="max_seq_length"):
        encoder.max_seq_length = n
    assert encoder.max_seq_length == 256


def test_unknown_model_name():
    with pytest.raises(FileNotFoundError, match=r"'no-such-model'.*neither a local directory nor a known"):
        cpuformer.SentenceEncoder.from_pretrained("no-such-model")


def test_directory_with_missing_files(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"missing config\.json, model\.safetensors"):
        cpuformer.SentenceEncoder.from_pretrained(str(tmp_path))
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "bert"}))
    with pytest.raises(FileNotFoundError) as info:
        cpuformer.SentenceEncoder.from_pretrained(str(tmp_path))
    assert "model.safetensors" in str(info.value) and "config.json" not in str(info.value).split("missing")[1]


@pytest.mark.parametrize("changes, message", [
    (dict(hidden_size=None), r"config.json: hidden_size must be an integer, got None"),
    (dict(num_attention_heads="12"), r"config.json: num_attention_heads must be an integer, got '12'"),
])
def test_config_values_must_be_integers(tmp_path, model_dir, changes, message):
    config = json.load(open(os.path.join(model_dir, "config.json")))
    config.update(changes)
    (tmp_path / "config.json").write_text(json.dumps(config))
    os.symlink(os.path.join(model_dir, "model.safetensors"), tmp_path / "model.safetensors")
    with pytest.raises(ValueError, match=message):
        cpuformer.SentenceEncoder.from_pretrained(str(tmp_path))


def test_missing_tokenizer_only_matters_for_text(tmp_path, model_dir, encoder):
    for name in ("config.json", "model.safetensors"):
        os.symlink(os.path.join(model_dir, name), tmp_path / name)
    enc = cpuformer.SentenceEncoder.from_pretrained(str(tmp_path))
    ids = encoder.tokenize(["token ids still work"])
    assert np.array_equal(enc.encode_ids(ids, normalize=True), encoder.encode_ids(ids))
    with pytest.raises(FileNotFoundError, match="tokenizer.json"):
        enc.encode(["text needs the tokenizer"])


@pytest.mark.parametrize("bad_id", [30522, 10**9, -1])
def test_ids_out_of_range(encoder, bad_id):
    with pytest.raises(IndexError, match=rf"token id {bad_id} \(sentence 1, position 2\).*vocabulary of 30522"):
        encoder.encode_ids([[101, 102], [101, 2000, bad_id, 102]])


def test_bad_ids(encoder):
    with pytest.raises(TypeError, match="integer"):
        encoder.encode_ids(np.array([[101.0, 102.0]]))
    with pytest.raises(ValueError, match="empty"):
        encoder.encode_ids([[101, 102], []])
    with pytest.raises(ValueError, match="lengths"):
        encoder.encode_ids(np.array([[101, 102]]), [3])
    with pytest.raises(ValueError, match="max_position_embeddings"):
        encoder.encode_ids([[101] * 600])
    # read as the id 101 / 1 / a wrapped negative id before these were refused
    with pytest.raises(TypeError, match=r"^ids\[0\]\[1\]: expected an int token id, got 2000.0"):
        encoder.encode_ids([[101, 2000.0, 102]])
    with pytest.raises(TypeError, match=r"^ids\[1\]\[0\]: expected an int token id, got True"):
        encoder.encode_ids([[101, 102], [True, 102]])
    with pytest.raises(TypeError, match="^lengths: expected integers"):
        encoder.encode_ids(np.array([[101, 102]]), [1.5])
    with pytest.raises(IndexError, match="^ids: token id 9223372036854775813 is out of range"):
        encoder.encode_ids(np.array([[2**63 + 5]], dtype=np.uint64))
    for bad in ("101 102", None, 7):
        with pytest.raises(TypeError, match="^ids: expected a list of lists of token ids"):
            encoder.encode_ids(bad)
    with pytest.raises(TypeError, match="^ids: expected a list of lists of token ids, got int at index 1"):
        encoder.encode_ids([[101, 102], 5])


def _physical_memory():
    return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")


@pytest.mark.skipif(not hasattr(os, "sysconf"), reason="needs os.sysconf for the machine's memory")
def test_batch_larger_than_memory_is_refused(encoder):
    # ~15 KB of activations per token of this model: a batch needing more than the machine has is a
    # MemoryError before any work (not an OOM kill pages later); its ids take a thousandth of that.
    rows = _physical_memory() // (100 * (6 * 384 + 1536) * 4) + 1
    with pytest.raises(MemoryError, match=rf"^embedding {rows} sequence\(s\) of up to 100 tokens \(input_ids\) "
                                          r"needs .* GB for its activations, more than this machine's"):
        encoder.encode_ids(np.full((rows, 100), 101))
    assert encoder.encode_ids([[101, 102]]).shape == (1, 384)  # still usable


@pytest.mark.parametrize("bad", ["no", 1, 0.0])
def test_bad_normalize(encoder, bad):
    with pytest.raises(TypeError, match="^normalize: expected True, False or None"):
        encoder.encode(["x"], normalize=bad)
    with pytest.raises(TypeError, match="^normalize: expected True, False or None"):
        encoder.encode([], normalize=bad)
    with pytest.raises(TypeError, match="^normalize: expected True, False or None"):
        encoder.encode_ids([[101, 102]], normalize=bad)


def test_text_that_is_not_valid_unicode(encoder):
    # a lone surrogate cannot be UTF-8 encoded; the tokenizer's own error names no sentence
    with pytest.raises(ValueError, match=r"^sentences\[1\]: not valid Unicode text"):
        encoder.encode(["fine", "bad \ud800 text"])


def test_error_leaves_encoder_usable(encoder):
    before = encoder.encode(["still fine"])
    with pytest.raises(IndexError):
        encoder.encode_ids([[101, 99999, 102]])
    assert np.array_equal(encoder.encode(["still fine"]), before)
