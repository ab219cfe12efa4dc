"""Pooling (cls / max / mean) and normalisation against a NumPy reference on the last hidden state of
transformers' BertModel (the one inside sentence-transformers, same weights), and the pooling settings read
from a sentence-transformers directory in both config formats.

The reference runs the padded batch through BertModel with its attention mask, then pools in float64 over
the real tokens only: mean = sum / count, cls = position 0, max = elementwise max (padding excluded), and
L2 normalisation. Tolerance: 1e-5 x max(1, the reference's largest magnitude) — un-normalised max pooling
reaches magnitudes of a few units, and float32 through 6 layers agrees to ~1e-6 of that.
"""

from __future__ import annotations

import json
import os

import numpy as np
import pytest

import cpuformer
from embed_helpers import LONG_200, SHORT_SENTENCES, assert_close_embeddings

POOL_SENTENCES = SHORT_SENTENCES[:14] + [LONG_200]


@pytest.fixture(scope="module")
def hidden(st_model, st_ids, torch):
    """(last hidden state [B, L, D] float64, mask [B, L] bool) of POOL_SENTENCES as one padded batch."""
    ids = st_ids(POOL_SENTENCES)
    lengths = [len(x) for x in ids]
    input_ids = torch.zeros((len(ids), max(lengths)), dtype=torch.long)
    mask = torch.zeros_like(input_ids)
    for i, x in enumerate(ids):
        input_ids[i, : len(x)] = torch.tensor(x)
        mask[i, : len(x)] = 1
    bert = st_model[0].auto_model
    assert type(bert).__name__ == "BertModel"
    with torch.inference_mode():
        out = bert(input_ids=input_ids, attention_mask=mask, token_type_ids=torch.zeros_like(input_ids))
    return out.last_hidden_state.double().numpy(), mask.numpy().astype(bool)


def reference_pool(h, mask, pooling, normalize):
    if pooling == "cls":
        out = h[:, 0]
    elif pooling == "mean":
        out = (h * mask[..., None]).sum(1) / mask.sum(1, keepdims=True)
    else:
        out = np.where(mask[..., None], h, -np.inf).max(1)
    if normalize:
        out = out / np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-12)
    return out


@pytest.mark.parametrize("normalize", [True, False])
@pytest.mark.parametrize("pooling", ["mean", "cls", "max"])
def test_pooling_against_numpy(encoder, options, hidden, pooling, normalize):
    h, mask = hidden
    want = reference_pool(h, mask, pooling, normalize)
    with options(pooling=pooling):
        got = encoder.encode(POOL_SENTENCES, normalize=normalize, batch_size=8)
    scale = max(1.0, float(np.abs(want).max()))
    assert_close_embeddings(got, want, atol=1e-5 * scale)
    if normalize:
        np.testing.assert_allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-6)


def test_pooling_modes_differ(encoder, options):
    """Guards the test above against a pooling setting that is silently ignored."""
    outs = {}
    for p in ("mean", "cls", "max"):
        with options(pooling=p):
            outs[p] = encoder.encode(SHORT_SENTENCES[3:6], normalize=False)
    assert np.abs(outs["mean"] - outs["cls"]).max() > 1e-2
    assert np.abs(outs["mean"] - outs["max"]).max() > 1e-2


def test_unknown_pooling(encoder, options):
    with options(pooling="median"):
        with pytest.raises(ValueError, match="pooling"):
            encoder.encode(["x"])


# ---------------------------------------------------------------------------------------------------------
# Settings read from a sentence-transformers directory. The directories link to the shipped weights and
# tokenizer and write their own modules.json / pooling config / sentence_bert_config.json.

LINKED = ("config.json", "model.safetensors", "tokenizer.json", "vocab.txt", "special_tokens_map.json")


def make_dir(tmp_path, model_dir, pooling_config, modules=None, sbert=None, tokenizer_config=None):
    d = tmp_path / "model"
    (d / "1_Pooling").mkdir(parents=True)
    for name in LINKED:
        os.symlink(os.path.join(model_dir, name), d / name)
    modules = modules or [
        {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.base.modules.transformer.Transformer"},
        {"idx": 1, "name": "1", "path": "1_Pooling",
         "type": "sentence_transformers.sentence_transformer.modules.pooling.Pooling"},
    ]
    (d / "modules.json").write_text(json.dumps(modules))
    (d / "1_Pooling" / "config.json").write_text(json.dumps(pooling_config))
    if sbert is not None:
        (d / "sentence_bert_config.json").write_text(json.dumps(sbert))
    if tokenizer_config is not None:
        (d / "tokenizer_config.json").write_text(json.dumps(tokenizer_config))
    return str(d)


@pytest.mark.parametrize("config, expected", [
    ({"embedding_dimension": 384, "pooling_mode": "cls", "include_prompt": True}, "cls"),  # sentence-transformers >= 5
    ({"embedding_dimension": 384, "pooling_mode": ["max"]}, "max"),
    ({"embedding_dimension": 384, "pooling_mode": "mean"}, "mean"),
    ({"word_embedding_dimension": 384, "pooling_mode_cls_token": False, "pooling_mode_mean_tokens": False,
      "pooling_mode_max_tokens": True}, "max"),  # the legacy booleans
    ({"word_embedding_dimension": 384, "pooling_mode_cls_token": True, "pooling_mode_mean_tokens": False}, "cls"),
    ({"word_embedding_dimension": 384}, "mean"),
])
def test_pooling_config_formats(tmp_path, model_dir, config, expected):
    enc = cpuformer.SentenceEncoder.from_pretrained(make_dir(tmp_path, model_dir, config))
    assert enc.pooling == expected
    assert enc.normalize is False  # no Normalize module


@pytest.mark.parametrize("config", [
    {"embedding_dimension": 384, "pooling_mode": "lasttoken"},
    {"embedding_dimension": 384, "pooling_mode": ["cls", "mean"]},  # concatenated: 768 dimensions
    {"word_embedding_dimension": 384, "pooling_mode_cls_token": True, "pooling_mode_mean_tokens": True},
    {"word_embedding_dimension": 384, "pooling_mode_mean_tokens": False, "pooling_mode_mean_sqrt_len_tokens": True},
])
def test_unsupported_pooling_config(tmp_path, model_dir, config):
    with pytest.raises(ValueError, match="pooling .* is not supported"):
        cpuformer.SentenceEncoder.from_pretrained(make_dir(tmp_path, model_dir, config))


def test_unsupported_module_is_refused(tmp_path, model_dir):
    modules = [
        {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
        {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"},
        {"idx": 2, "name": "2", "path": "2_Dense", "type": "sentence_transformers.models.Dense"},
    ]
    with pytest.raises(ValueError, match="Dense"):
        cpuformer.SentenceEncoder.from_pretrained(make_dir(tmp_path, model_dir, {"pooling_mode": "mean"}, modules))


def test_max_seq_length_sources(tmp_path, model_dir):
    # sentence-transformers >= 5 writes no max_seq_length in sentence_bert_config.json; the tokenizer's
    # model_max_length holds it.
    d = make_dir(tmp_path, model_dir, {"pooling_mode": "mean"}, sbert={"transformer_task": "feature-extraction"},
                 tokenizer_config={"model_max_length": 200, "do_lower_case": True})
    assert cpuformer.SentenceEncoder.from_pretrained(d).max_seq_length == 200
    (tmp_path / "model" / "sentence_bert_config.json").write_text(json.dumps({"max_seq_length": 100}))
    assert cpuformer.SentenceEncoder.from_pretrained(d).max_seq_length == 100
    (tmp_path / "model" / "sentence_bert_config.json").unlink()
    (tmp_path / "model" / "tokenizer_config.json").write_text(json.dumps({"model_max_length": int(1e30)}))
    assert cpuformer.SentenceEncoder.from_pretrained(d).max_seq_length == 512  # no limit: the positions


def test_saved_by_sentence_transformers(tmp_path, model_dir, st_model, torch):
    """A CLS-pooling model written by this sentence-transformers (its current config format), loaded by both."""
    st = pytest.importorskip("sentence_transformers")
    try:
        from sentence_transformers.sentence_transformer.modules import Pooling
    except ImportError:  # before 6.x
        from sentence_transformers.models import Pooling

    cls_model = st.SentenceTransformer(modules=[st_model[0], Pooling(384, pooling_mode="cls")], device="cpu")
    path = str(tmp_path / "saved")
    cls_model.save(path)
    enc = cpuformer.SentenceEncoder.from_pretrained(path)
    enc.num_threads = 1
    assert (enc.pooling, enc.normalize, enc.max_seq_length) == ("cls", False, 256)
    with torch.inference_mode():
        want = cls_model.encode(SHORT_SENTENCES + [LONG_200], convert_to_numpy=True, show_progress_bar=False)
    assert_close_embeddings(enc.encode(SHORT_SENTENCES + [LONG_200]), want, atol=1e-5 * max(1, np.abs(want).max()))
