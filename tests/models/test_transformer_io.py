"""Saving and loading models (one safetensors file, the config in its metadata): round trips are bitwise,
the files interoperate with the `safetensors` package, and bad files fail with a clear error.

Models here are built from random NumPy state dicts (``expected_keys``), without torch.
"""

from __future__ import annotations

import json
import os
import pathlib
import struct

import numpy as np
import pytest

from cpuformer import Transformer, TransformerConfig, TransformerDecoder, TransformerEncoder
from reference import transformer_ref as ref

CLASSES = [Transformer, TransformerEncoder, TransformerDecoder]
CONFIGS = {
    "post-relu-sf": TransformerConfig(d_model=24, nhead=3, num_encoder_layers=2, num_decoder_layers=2,
                                      dim_feedforward=40),
    "pre-gelu-bf": TransformerConfig(d_model=32, nhead=4, num_encoder_layers=1, num_decoder_layers=3,
                                     dim_feedforward=48, activation="gelu", norm_first=True, batch_first=True,
                                     layer_norm_eps=1e-6),
    "no-bias-no-norms": TransformerConfig(d_model=16, nhead=2, num_encoder_layers=1, num_decoder_layers=1,
                                          dim_feedforward=24, bias=False, encoder_final_norm=False,
                                          decoder_final_norm=False, activation="gelu_tanh"),
}


def _make(cls, config: TransformerConfig, rng):
    weights = ref.random_state_dict(cls.expected_keys(config), rng)
    return cls.from_state_dict(weights, config), weights


def _inputs(model, rng, bsz=3, sl=6, tl=5):
    """Arguments for a call with suffix padding and the causal flag, in the model's layout."""
    cfg = model.config
    d = cfg.d_model

    def layout(x):
        return x if cfg.batch_first else np.ascontiguousarray(x.transpose(1, 0, 2))

    src = layout(rng.standard_normal((bsz, sl, d), dtype=np.float32))
    tgt = layout(rng.standard_normal((bsz, tl, d), dtype=np.float32))
    src_pad = ref.suffix_padding([sl, 2, 4], sl)
    tgt_pad = ref.suffix_padding([1, tl, 3], tl)
    if isinstance(model, TransformerEncoder):
        return (src,), {"src_key_padding_mask": src_pad, "is_causal": True}
    if isinstance(model, TransformerDecoder):
        return (tgt, src), {"tgt_is_causal": True, "tgt_key_padding_mask": tgt_pad, "memory_key_padding_mask": src_pad}
    return (src, tgt), {"tgt_is_causal": True, "src_key_padding_mask": src_pad, "tgt_key_padding_mask": tgt_pad,
                        "memory_key_padding_mask": src_pad}


@pytest.fixture
def saved(tmp_path, rng):
    """A small saved Transformer: (path, model, weights)."""
    model, weights = _make(Transformer, CONFIGS["post-relu-sf"], rng)
    path = tmp_path / "model.safetensors"
    model.save(path)
    return path, model, weights


@pytest.mark.parametrize("config_id", list(CONFIGS))
@pytest.mark.parametrize("cls", CLASSES, ids=lambda c: c.__name__)
def test_round_trip_is_bitwise(cls, config_id, tmp_path, rng):
    config = CONFIGS[config_id]
    model, weights = _make(cls, config, rng)
    path = tmp_path / f"{cls.__name__}.safetensors"
    model.save(str(path))
    loaded = cls.load(str(path))
    assert type(loaded) is cls
    assert loaded.config == config
    assert sorted(loaded.state_dict()) == sorted(weights)
    for name, value in weights.items():
        assert np.array_equal(loaded.state_dict()[name], value), name
    args, kw = _inputs(model, rng)
    assert np.array_equal(loaded(*args, **kw), model(*args, **kw))
    # A loaded model saves again to the same bytes (also over the file it was loaded from).
    loaded.save(path)
    again = cls.load(pathlib.Path(path))
    assert np.array_equal(again(*args, **kw), model(*args, **kw))


def test_round_trip_base_size(tmp_path, rng):
    config = TransformerConfig(num_encoder_layers=1, num_decoder_layers=1)  # d_model 512, 8 heads, d_ff 2048
    model, _ = _make(Transformer, config, rng)
    path = tmp_path / "base.safetensors"
    model.save(path)
    loaded = Transformer.load(path)
    args, kw = _inputs(model, rng)
    assert np.array_equal(loaded(*args, **kw), model(*args, **kw))


def test_from_torch_model_round_trip(tmp_path, rng):
    torch = pytest.importorskip("torch")
    module = torch.nn.Transformer(24, 3, 1, 2, 40, 0.0, batch_first=True).eval()
    model = Transformer.from_torch(module)
    path = tmp_path / "t.safetensors"
    model.save(path)
    loaded = Transformer.load(path)
    args, kw = _inputs(model, rng)
    assert np.array_equal(loaded(*args, **kw), model(*args, **kw))


def test_safetensors_package_reads_our_file(saved):
    st = pytest.importorskip("safetensors")
    from safetensors.numpy import load_file

    path, model, weights = saved
    tensors = load_file(str(path))
    assert sorted(tensors) == sorted(weights)
    for name, value in weights.items():
        assert tensors[name].dtype == np.float32 and tensors[name].shape == value.shape, name
        assert np.array_equal(tensors[name], value), name
    with st.safe_open(str(path), framework="np") as f:
        meta = f.metadata()
    assert meta["format"] == "cpuformer" and meta["model"] == "Transformer"
    assert TransformerConfig.from_dict(json.loads(meta["config"])) == model.config


def test_we_read_a_file_written_by_the_safetensors_package(tmp_path, rng):
    pytest.importorskip("safetensors")
    from safetensors.numpy import save_file

    config = CONFIGS["pre-gelu-bf"]
    model, weights = _make(TransformerDecoder, config, rng)
    path = tmp_path / "external.safetensors"
    meta = {"format": "cpuformer", "model": "TransformerDecoder", "config": json.dumps(config.to_dict())}
    save_file(weights, str(path), metadata=meta)
    loaded = TransformerDecoder.load(path)
    args, kw = _inputs(model, rng)
    assert np.array_equal(loaded(*args, **kw), model(*args, **kw))


# --- bad files ------------------------------------------------------------------------------------------


def test_missing_path(tmp_path):
    with pytest.raises(FileNotFoundError, match="no such file"):
        Transformer.load(tmp_path / "nowhere.safetensors")


@pytest.mark.parametrize("keep", ["header_part", "data_part", "four_bytes", "empty"])
def test_truncated_file(saved, keep):
    path, _, _ = saved
    blob = path.read_bytes()
    (n,) = struct.unpack("<Q", blob[:8])
    size = {"header_part": 8 + n // 2, "data_part": len(blob) - 100, "four_bytes": 4, "empty": 0}[keep]
    path.write_bytes(blob[:size])
    with pytest.raises(ValueError, match="truncated|not a safetensors file|corrupt"):
        Transformer.load(path)


@pytest.mark.parametrize(
    "content",
    [b"this is a text file, not a model\n" * 20, b"\x00" * 64, struct.pack("<Q", 10) + b"[1, 2, 3] ",
     struct.pack("<Q", 6) + b"\xff\xfe{}{}"],
    ids=["text", "zeros", "json-array", "not-utf8"],
)
def test_not_a_safetensors_file(tmp_path, content):
    path = tmp_path / "junk.bin"
    path.write_bytes(content)
    with pytest.raises(ValueError, match="not a safetensors file|not a cpuformer model"):
        Transformer.load(path)


def test_safetensors_file_without_our_metadata(tmp_path, saved):
    pytest.importorskip("safetensors")
    from safetensors.numpy import save_file

    _, _, weights = saved
    for i, meta in enumerate([None, {"format": "pt"}, {"format": "cpuformer"}]):
        path = tmp_path / f"plain{i}.safetensors"
        save_file(weights, str(path), metadata=meta)
        with pytest.raises(ValueError, match="not a cpuformer model file"):
            Transformer.load(path)


def test_malformed_config_in_metadata(tmp_path, saved):
    pytest.importorskip("safetensors")
    from safetensors.numpy import save_file

    _, model, weights = saved
    cases = {
        "not-json": "{d_model: 24",
        "unknown-key": json.dumps(dict(model.config.to_dict(), colour="blue")),
        "bad-value": json.dumps(dict(model.config.to_dict(), nhead=5)),
    }
    for name, config in cases.items():
        path = tmp_path / f"{name}.safetensors"
        save_file(weights, str(path), metadata={"format": "cpuformer", "model": "Transformer", "config": config})
        with pytest.raises(ValueError) as info:
            Transformer.load(path)
        assert "config" in str(info.value) or "nhead" in str(info.value), (name, str(info.value))


def test_weights_not_matching_the_config(tmp_path, saved):
    pytest.importorskip("safetensors")
    from safetensors.numpy import save_file

    _, model, weights = saved
    trimmed = {k: v for k, v in weights.items() if not k.startswith("decoder.layers.1.")}
    path = tmp_path / "trimmed.safetensors"
    meta = {"format": "cpuformer", "model": "Transformer", "config": json.dumps(model.config.to_dict())}
    save_file(trimmed, str(path), metadata=meta)
    with pytest.raises(ValueError, match="decoder.layers.1"):
        Transformer.load(path)


@pytest.mark.parametrize("saved_cls", CLASSES, ids=lambda c: c.__name__)
def test_file_of_another_model_class(tmp_path, rng, saved_cls):
    model, _ = _make(saved_cls, CONFIGS["post-relu-sf"], rng)
    path = tmp_path / "m.safetensors"
    model.save(path)
    for cls in CLASSES:
        if cls is saved_cls:
            continue
        with pytest.raises(ValueError, match=f"holds a {saved_cls.__name__}, not a {cls.__name__}"):
            cls.load(path)


def test_save_is_atomic_and_leaves_no_temporary(tmp_path, saved):
    path, model, _ = saved
    model.save(path)
    assert sorted(os.listdir(tmp_path)) == ["model.safetensors"]
