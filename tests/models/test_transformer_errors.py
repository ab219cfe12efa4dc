"""The model API's contract: construction from state dicts and configs, the errors bad weights, inputs and
masks raise (ValueError with the names and shapes; TypeError for non-real dtypes), torch's unbatched path,
pickle round trips, and memory that stays flat over many calls of varied shapes.
"""

from __future__ import annotations

import os
import pickle
import re

import numpy as np
import pytest

from cpuformer import Transformer, TransformerConfig, TransformerDecoder, TransformerEncoder
from reference import transformer_ref as ref
from thread_setting import check_num_threads_setter

CLASSES = [Transformer, TransformerEncoder, TransformerDecoder]
SMALL = dict(d_model=24, nhead=3, num_encoder_layers=2, num_decoder_layers=2, dim_feedforward=40)


def _make(cls, rng, **overrides):
    config = TransformerConfig(**dict(SMALL, **overrides))
    weights = ref.random_state_dict(cls.expected_keys(config), rng)
    return cls.from_state_dict(weights, config), weights


def _torch():
    return pytest.importorskip("torch")


def _torch_module(cls, torch, **kw):
    """The torch.nn module that cls mirrors, with SMALL's sizes."""
    d, h, f = SMALL["d_model"], SMALL["nhead"], SMALL["dim_feedforward"]
    common = dict(dropout=0.0, **kw)
    if cls is Transformer:
        return torch.nn.Transformer(d, h, 2, 2, f, **common).eval()
    if cls is TransformerEncoder:
        layer = torch.nn.TransformerEncoderLayer(d, h, f, **common)
        return torch.nn.TransformerEncoder(layer, 2, norm=torch.nn.LayerNorm(d, bias=kw.get("bias", True)),
                                           enable_nested_tensor=False).eval()
    layer = torch.nn.TransformerDecoderLayer(d, h, f, **common)
    return torch.nn.TransformerDecoder(layer, 2, norm=torch.nn.LayerNorm(d, bias=kw.get("bias", True))).eval()


# --- construction ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("cls", CLASSES, ids=lambda c: c.__name__)
def test_expected_keys_match_torch_state_dict(cls, bias):
    torch = _torch()
    module = _torch_module(cls, torch, bias=bias)
    config = dict(SMALL, bias=bias)
    expected = cls.expected_keys(config)  # a dict config works too
    torch_shapes = {k: tuple(v.shape) for k, v in module.state_dict().items()}
    assert {k: tuple(v) for k, v in expected.items()} == torch_shapes
    assert cls.expected_keys(TransformerConfig(**config)) == expected


@pytest.mark.parametrize("cls", CLASSES, ids=lambda c: c.__name__)
def test_from_state_dict_numpy_equals_from_torch(cls, rng):
    torch = _torch()
    module = _torch_module(cls, torch, activation="gelu", norm_first=True)
    weights = ref.random_state_dict({k: tuple(v.shape) for k, v in module.state_dict().items()}, rng)
    module.load_state_dict({k: torch.from_numpy(v) for k, v in weights.items()})
    from_torch = cls.from_torch(module)
    config = from_torch.config.to_dict()
    config["dropout"] = 0.1  # torch's argument is accepted and ignored (inference only)
    from_numpy = cls.from_state_dict(weights, config)  # NumPy arrays and a dict config
    from_tensors = cls.from_state_dict(module.state_dict(), from_torch.config)  # torch tensors
    float64 = cls.from_state_dict({k: v.astype(np.float64) for k, v in weights.items()}, from_torch.config)
    assert from_numpy.config == from_torch.config
    x = rng.standard_normal((6, 2, SMALL["d_model"]), dtype=np.float32)
    args = (x,) if cls is TransformerEncoder else (x, x[:4])
    out = from_torch(*args)
    for other in (from_numpy, from_tensors, float64):
        assert np.array_equal(other(*args), out)


def test_state_dict_is_returned_with_torch_names(rng):
    model, weights = _make(Transformer, rng)
    sd = model.state_dict()
    assert sorted(sd) == sorted(weights)
    assert all(sd[k].dtype == np.float32 and np.array_equal(sd[k], weights[k]) for k in weights)


@pytest.mark.parametrize("cls", CLASSES, ids=lambda c: c.__name__)
def test_missing_extra_and_misshapen_keys_are_listed(cls, rng):
    config = TransformerConfig(**SMALL)
    weights = ref.random_state_dict(cls.expected_keys(config), rng)
    keys = sorted(weights)
    missing = [keys[0], keys[-1]]
    misshapen = keys[len(keys) // 2]

    bad = {k: v for k, v in weights.items() if k not in missing}
    with pytest.raises(ValueError) as info:
        cls.from_state_dict(bad, config)
    for k in missing:
        assert k in str(info.value), str(info.value)

    bad = dict(weights, **{"layers.9.extra.weight": np.zeros(3, np.float32), "surprise": np.zeros(1, np.float32)})
    with pytest.raises(ValueError) as info:
        cls.from_state_dict(bad, config)
    assert "layers.9.extra.weight" in str(info.value) and "surprise" in str(info.value), str(info.value)

    bad = dict(weights)
    bad[misshapen] = np.zeros(tuple(s + 1 for s in weights[misshapen].shape), np.float32)
    with pytest.raises(ValueError) as info:
        cls.from_state_dict(bad, config)
    message = str(info.value)
    assert misshapen in message, message
    assert str(weights[misshapen].shape[0]) in message and str(bad[misshapen].shape[0]) in message, message

    # All three at once: every problem is reported, not only the first.
    bad = {k: v for k, v in weights.items() if k != missing[0]}
    bad["surprise"] = np.zeros(1, np.float32)
    bad[misshapen] = bad[misshapen][..., :1]
    with pytest.raises(ValueError) as info:
        cls.from_state_dict(bad, config)
    for k in (missing[0], "surprise", misshapen):
        assert k in str(info.value), str(info.value)


def test_state_dict_with_wrong_dtype(rng):
    config = TransformerConfig(**SMALL)
    weights = ref.random_state_dict(TransformerEncoder.expected_keys(config), rng)
    key = sorted(weights)[0]
    with pytest.raises(TypeError, match=re.escape(key)):
        TransformerEncoder.from_state_dict(dict(weights, **{key: weights[key].astype(np.complex64)}), config)


@pytest.mark.parametrize(
    "overrides, field",
    [({"nhead": 5}, "nhead"), ({"d_model": 0}, "d_model"), ({"activation": "tanh"}, "activation"),
     ({"num_encoder_layers": -1}, "num_encoder_layers"), ({"dim_feedforward": 2.5}, "dim_feedforward"),
     ({"layer_norm_eps": -1.0}, "layer_norm_eps")],
)
def test_invalid_config(overrides, field):
    with pytest.raises(ValueError, match=field):
        TransformerConfig(**dict(SMALL, **overrides))


def test_config_dict_with_unknown_keys(rng):
    with pytest.raises(ValueError, match="colour"):
        Transformer.expected_keys(dict(SMALL, colour="blue"))
    with pytest.raises(TypeError):
        Transformer.from_state_dict({}, 42)


# --- inputs and masks -----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def models():
    rng = np.random.default_rng(7)
    return {cls: _make(cls, rng)[0] for cls in CLASSES}


@pytest.mark.parametrize("cls", CLASSES)
def test_bad_num_threads(models, cls):
    check_num_threads_setter(models[cls])


def _x(rng, *shape):
    return rng.standard_normal(shape, dtype=np.float32)


def test_wrong_d_model(models, rng):
    d = SMALL["d_model"]
    good, bad = _x(rng, 5, 2, d), _x(rng, 5, 2, d + 1)
    with pytest.raises(ValueError, match=r"src: expected last dimension d_model = 24, got shape \(5, 2, 25\)"):
        models[TransformerEncoder](bad)
    with pytest.raises(ValueError, match="memory: .*d_model = 24"):
        models[TransformerDecoder](good, bad)
    with pytest.raises(ValueError, match="tgt: .*d_model = 24"):
        models[Transformer](good, bad)
    with pytest.raises(ValueError, match="src: .*d_model = 24"):
        models[Transformer](bad[:, 0], good[:, 0])  # unbatched as well


@pytest.mark.parametrize("shape", [(24,), (1, 5, 2, 24), ()])
def test_wrong_input_rank(models, rng, shape):
    with pytest.raises(ValueError, match="src"):
        models[TransformerEncoder](np.zeros(shape, np.float32))


def test_batch_mismatch(models, rng):
    d = SMALL["d_model"]
    with pytest.raises(ValueError, match=r"tgt: expected batch size 3 \(that of src\)"):
        models[Transformer](_x(rng, 5, 3, d), _x(rng, 4, 2, d))
    with pytest.raises(ValueError, match=r"memory: expected batch size 3 \(that of tgt\)"):
        models[TransformerDecoder](_x(rng, 5, 3, d), _x(rng, 4, 2, d))
    with pytest.raises(ValueError, match="tgt: expected 2-D like src"):
        models[Transformer](_x(rng, 5, d), _x(rng, 4, 1, d))
    with pytest.raises(ValueError, match="memory: expected 2-D like tgt"):
        models[TransformerDecoder](_x(rng, 5, d), _x(rng, 4, 1, d))


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"src_mask": np.zeros((6, 5), bool)}, r"src_mask: expected shape \(6, 6\)"),
        ({"src_mask": np.zeros((2, 6, 6), np.float32)}, r"src_mask: .*\(6, 6, 6\) \(batch \* nhead first\)"),
        ({"src_mask": np.zeros((2, 3, 6, 6), bool)}, "src_mask: expected a 2-D or 3-D mask"),
        ({"tgt_mask": np.zeros((6, 6), bool)}, r"tgt_mask: expected shape \(4, 4\)"),
        ({"memory_mask": np.zeros((6, 4), np.float32)}, r"memory_mask: expected shape \(4, 6\)"),
        ({"memory_mask": np.zeros((2 * 3, 6, 4), bool)}, r"memory_mask: .*\(6, 4, 6\)"),
        ({"src_key_padding_mask": np.zeros((2, 5), bool)}, r"src_key_padding_mask: expected shape \(2, 6\)"),
        ({"src_key_padding_mask": np.zeros((6, 2), bool)}, r"src_key_padding_mask: expected shape \(2, 6\)"),
        ({"tgt_key_padding_mask": np.zeros((3, 4), bool)}, r"tgt_key_padding_mask: expected shape \(2, 4\)"),
        ({"memory_key_padding_mask": np.zeros((2, 4), bool)}, r"memory_key_padding_mask: expected shape \(2, 6\)"),
        ({"memory_is_causal": True}, "memory_is_causal"),
        # A causal mask of the wrong size is a shape error too (not taken as the causal flag).
        ({"tgt_mask": np.triu(np.full((6, 6), -np.inf, np.float32), 1)}, r"tgt_mask: expected shape \(4, 4\)"),
        ({"src_mask": np.triu(np.ones((4, 4), bool), 1)}, r"src_mask: expected shape \(6, 6\)"),
    ],
)
def test_wrong_mask_shapes(models, rng, kwargs, match):
    d = SMALL["d_model"]
    with pytest.raises(ValueError, match=match):
        models[Transformer](_x(rng, 6, 2, d), _x(rng, 4, 2, d), **kwargs)


@pytest.mark.parametrize("dtype", [np.complex64, np.complex128, object, "U1"])
@pytest.mark.parametrize("name", ["src", "tgt", "src_mask", "tgt_mask", "memory_mask", "src_key_padding_mask",
                                  "tgt_key_padding_mask", "memory_key_padding_mask"])
def test_non_real_dtypes_raise_type_error(models, rng, name, dtype):
    d = SMALL["d_model"]
    args = {"src": _x(rng, 6, 2, d), "tgt": _x(rng, 4, 2, d)}
    shapes = {"src_mask": (6, 6), "tgt_mask": (4, 4), "memory_mask": (4, 6), "src_key_padding_mask": (2, 6),
              "tgt_key_padding_mask": (2, 4), "memory_key_padding_mask": (2, 6)}
    value = args[name] if name in args else np.zeros(shapes[name])
    args[name] = np.zeros(value.shape, dtype=dtype) if dtype != object else np.full(value.shape, None, dtype=object)
    with pytest.raises(TypeError, match=name):
        models[Transformer](**args)


def test_integer_and_float64_inputs_are_converted(models, rng):
    """Real dtypes other than float32 are converted once (as in cpuformer.ops)."""
    d = SMALL["d_model"]
    x = _x(rng, 6, 2, d)
    model = models[TransformerEncoder]
    mask = np.triu(np.ones((6, 6)), 1) * -1e9
    expected = model(x, mask=mask.astype(np.float32))
    assert np.array_equal(model(x.astype(np.float64), mask=mask), expected)
    assert np.array_equal(model(x.tolist(), mask=mask.tolist()), expected)
    assert np.array_equal(model(np.asfortranarray(x), mask=mask), expected)


# --- torch's unbatched path -----------------------------------------------------------------------------


@pytest.mark.filterwarnings("ignore::UserWarning")
@pytest.mark.parametrize("batch_first", [False, True])
@pytest.mark.parametrize("cls", CLASSES, ids=lambda c: c.__name__)
def test_unbatched_inputs_match_torch(cls, batch_first, rng):
    """2-D [L, E] inputs; key padding masks [L]; attention masks [L, S] or [H, L, S] (torch's shapes)."""
    torch = _torch()
    module = _torch_module(cls, torch, batch_first=batch_first, norm_first=True)
    weights = ref.random_state_dict({k: tuple(v.shape) for k, v in module.state_dict().items()}, rng)
    module.load_state_dict({k: torch.from_numpy(v) for k, v in weights.items()})
    model = cls.from_torch(module)
    d, h, sl, tl = SMALL["d_model"], SMALL["nhead"], 6, 4
    src, tgt = _x(rng, sl, d), _x(rng, tl, d)
    src_pad = np.array([False] * 4 + [True] * 2)
    tgt_pad = np.array([False] * 3 + [True])
    causal = ref.causal_float_mask(tl)
    mem_mask = (2 * rng.standard_normal((h, tl, sl))).astype(np.float32)
    if cls is TransformerEncoder:
        args = (src,)
        kw = {"mask": (2 * rng.standard_normal((h, sl, sl))).astype(np.float32), "src_key_padding_mask": src_pad}
        real = ~src_pad
    elif cls is TransformerDecoder:
        args = (tgt, src)
        kw = {"tgt_mask": causal, "memory_mask": mem_mask, "tgt_key_padding_mask": tgt_pad,
              "memory_key_padding_mask": src_pad}
        real = ~tgt_pad
    else:
        args = (src, tgt)
        kw = {"tgt_mask": causal, "memory_mask": mem_mask, "src_key_padding_mask": src_pad,
              "tgt_key_padding_mask": tgt_pad, "memory_key_padding_mask": src_pad}
        real = ~tgt_pad
    got = model(*args, **kw)
    with torch.inference_mode():
        expected = module(*(torch.from_numpy(a) for a in args),
                          **{k: torch.from_numpy(np.asarray(v)) for k, v in kw.items()}).numpy()
    assert got.shape == expected.shape == (tgt if cls is not TransformerEncoder else src).shape
    scale = np.abs(expected[real]).max()
    assert np.abs(got[real] - expected[real]).max() <= 1e-4 * scale
    assert np.all(got[~real] == 0.0)
    # The same as the batch of one.
    batched = model(*(a[:, None] if not batch_first else a[None] for a in args),
                    **{k: (v[None] if k.endswith("padding_mask") else v) for k, v in kw.items()})
    assert np.array_equal(batched[:, 0] if not batch_first else batched[0], got)


# --- pickling -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("cls", CLASSES, ids=lambda c: c.__name__)
def test_pickle_round_trip_gives_identical_outputs(models, cls, tmp_path):
    """In-memory models pickle by value; loaded ones by path. Both come back bitwise identical."""
    model = models[cls]
    rng = np.random.default_rng(5)
    d = SMALL["d_model"]
    x = rng.standard_normal((4, 2, d)).astype(np.float32)
    y = rng.standard_normal((3, 2, d)).astype(np.float32)
    args = (x,) if cls is TransformerEncoder else (y, x) if cls is TransformerDecoder else (x, y)
    clone = pickle.loads(pickle.dumps(model))
    assert np.array_equal(clone(*args), model(*args))
    path = tmp_path / "m.safetensors"
    model.save(path)
    loaded = cls.load(path)
    blob = pickle.dumps(loaded)
    assert len(blob) < 4096  # the path, not the weights
    assert np.array_equal(pickle.loads(blob)(*args), model(*args))


# --- NaN propagation ------------------------------------------------------------------------------------


def test_nan_memory_propagates_to_the_decoder_output(models, rng):
    d = SMALL["d_model"]
    tgt = _x(rng, 4, 2, d)
    memory = _x(rng, 6, 2, d)
    memory[:, 0] = np.nan  # every memory row of sequence 0
    out = models[TransformerDecoder](tgt, memory)
    assert np.all(np.isfinite(out[:, 1]))
    assert np.all(np.isnan(out[:, 0])), "NaN memory gave finite outputs"


def test_nan_in_one_input_row_propagates_like_torch(models, rng):
    """One NaN element: every position of its sequence attends to it, the other sequences are unaffected."""
    x = _x(rng, 5, 2, SMALL["d_model"])
    x[2, 0, 3] = np.nan
    out = models[TransformerEncoder](x)
    assert np.all(np.isnan(out[:, 0]).any(axis=-1))
    assert np.all(np.isfinite(out[:, 1]))


# --- memory stays flat ------------------------------------------------------------------------------------


def _rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


@pytest.mark.skipif(not os.path.exists("/proc/self/statm"), reason="needs /proc/self/statm (Linux)")
def test_memory_is_flat_over_many_calls_of_varied_shapes():
    """300 calls with random shapes and every mask path (suffix lengths, additive masks, causal flag) after a
    warm-up at the largest shapes: the workspaces are reused, so RSS must not grow (no arena per shape)."""
    rng = np.random.default_rng(3)
    d, h = 64, 4
    config = TransformerConfig(d_model=d, nhead=h, num_encoder_layers=2, num_decoder_layers=2, dim_feedforward=256,
                               batch_first=True)
    model = Transformer.from_state_dict(ref.random_state_dict(Transformer.expected_keys(config), rng), config)
    b_max, s_max, t_max = 4, 48, 40

    def call(b, s, t, variant):
        src = rng.standard_normal((b, s, d), dtype=np.float32)
        tgt = rng.standard_normal((b, t, d), dtype=np.float32)
        if variant == 0:  # suffix padding (lengths) and the causal flag
            src_pad = np.arange(s)[None] >= rng.integers(1, s + 1, size=b)[:, None]
            return model(src, tgt, tgt_is_causal=True, src_key_padding_mask=src_pad, memory_key_padding_mask=src_pad)
        if variant == 1:  # 3-D additive masks and non-suffix padding
            pad = rng.random((b, s)) < 0.3
            pad[:, 0] = False
            return model(src, tgt, src_mask=rng.standard_normal((b * h, s, s)).astype(np.float32),
                         memory_mask=rng.standard_normal((b * h, t, s)).astype(np.float32),
                         src_key_padding_mask=pad, memory_key_padding_mask=pad)
        return model(src, tgt, tgt_mask=np.triu(np.ones((t, t), bool), 1))  # plain

    # Mostly one thread: on an oversubscribed machine each multi-threaded call can cost 100x more (OpenMP
    # threads spin-waiting for a descheduled partner); every 25th call runs on two threads.
    for threads in (2, 1):
        model.num_threads = threads
        for variant in range(3):
            for _ in range(2):
                call(b_max, s_max, t_max, variant)
    start = _rss_bytes()
    samples = []
    for i in range(300):
        model.num_threads = 2 if i % 25 == 0 else 1
        out = call(int(rng.integers(1, b_max + 1)), int(rng.integers(1, s_max + 1)), int(rng.integers(1, t_max + 1)),
                   i % 3)
        assert np.all(np.isfinite(out))
        if i % 50 == 49:
            samples.append(_rss_bytes())
    growth = [(s - start) / 2**20 for s in samples]
    # A per-shape arena would add ~0.1-0.5 MB per call (tens of MB over 300 calls); allocator noise is far
    # below the 4 MB slack, and the last half must not grow at all beyond it.
    assert max(growth) <= 4.0, f"RSS grew by {growth} MB (every 50 calls) after warm-up"
    assert samples[-1] - samples[len(samples) // 2] <= 2 * 2**20, f"RSS still growing: {growth} MB"
