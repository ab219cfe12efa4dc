"""Transformer, TransformerEncoder and TransformerDecoder against torch.nn (eval mode, float32) and against
the float64 NumPy reference (reference/transformer_ref.py), plus the invariances the design promises.

Models have random weights (every parameter, biases and LayerNorm affine included) and are built with
``from_torch``. Sizes: the paper's base model (d_model 512, 8 heads, d_ff 2048) on a few configurations,
and a small odd size (d_model 24, 3 heads, d_ff 40) on every combination of 1 / 6 layers, post-LN / pre-LN,
relu / gelu, batch_first True / False. Each configuration runs every mask scenario of each model class.

Tolerances, as max |got - expected| over real positions divided by the output's scale max |expected|:
* torch float32 vs cpuformer float32: 1e-4 (two different float32 summation orders);
* float64 reference vs cpuformer: 1e-5. Each output element goes through float32 dot products of length
  K <= 2048 (rounding error ~ sqrt(K) * 2^-24 ~ 3e-6 relative to the dot product's scale, in practice
  smaller since errors cancel) and, per layer, LayerNorms that rescale by 1 / std of their input; over
  6 encoder and 6 decoder layers that gives ~1e-6 observed, so 1e-5 leaves a 10x margin yet still fails
  on any wrong term (a missing bias or a mis-masked key changes the output by >= 1e-3 of its scale).
* torch vs the reference is checked at 1e-5 too: that is what makes the reference trustworthy.
Outputs at padded positions are defined as zeros (models.py): only real positions are compared, and the
padded ones must be exactly 0 when the padding is a suffix (the case the core packs away).
"""

from __future__ import annotations

import dataclasses
import warnings
import zlib

import numpy as np
import pytest

import cpuformer
from numerics import use_isa, use_threads
from reference import transformer_ref as ref

torch = pytest.importorskip("torch")

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")

TOL_TORCH = 1e-4
TOL_REF = 1e-5
B, S, T = 3, 7, 5  # batch, source length, target length


@dataclasses.dataclass(frozen=True)
class Cfg:
    d_model: int
    nhead: int
    dim_feedforward: int
    layers: int
    norm_first: bool
    activation: str
    batch_first: bool

    @property
    def id(self) -> str:
        size = "base" if self.d_model == 512 else f"d{self.d_model}"
        return (
            f"{size}-{self.layers}L-{'pre' if self.norm_first else 'post'}-{self.activation}-"
            f"{'bf' if self.batch_first else 'sf'}"
        )


BASE_CONFIGS = [
    Cfg(512, 8, 2048, 1, False, "relu", False),
    Cfg(512, 8, 2048, 1, True, "gelu", True),
    Cfg(512, 8, 2048, 6, False, "gelu", True),
    Cfg(512, 8, 2048, 6, True, "relu", False),
]
SMALL_CONFIGS = [
    Cfg(24, 3, 40, layers, norm_first, act, bf)
    for layers in (1, 6)
    for norm_first in (False, True)
    for act in ("relu", "gelu")
    for bf in (False, True)
]


# --- models -----------------------------------------------------------------------------------------------


class Built:
    """One random nn.Transformer and, sharing its weights, cpuformer's three model classes."""

    def __init__(self, cfg: Cfg):
        self.cfg = cfg
        rng = np.random.default_rng(zlib.crc32(cfg.id.encode()))
        self.torch = torch.nn.utils.skip_init(
            torch.nn.Transformer,
            d_model=cfg.d_model,
            nhead=cfg.nhead,
            num_encoder_layers=cfg.layers,
            num_decoder_layers=cfg.layers,
            dim_feedforward=cfg.dim_feedforward,
            dropout=0.0,
            activation=cfg.activation,
            batch_first=cfg.batch_first,
            norm_first=cfg.norm_first,
        ).eval()
        shapes = {k: tuple(v.shape) for k, v in self.torch.state_dict().items()}
        weights = ref.random_state_dict(shapes, rng)
        self.torch.load_state_dict({k: torch.from_numpy(v) for k, v in weights.items()})
        self.models = {
            "transformer": cpuformer.Transformer.from_torch(self.torch),
            "encoder": cpuformer.TransformerEncoder.from_torch(self.torch.encoder),
            "decoder": cpuformer.TransformerDecoder.from_torch(self.torch.decoder),
        }
        self.torch_modules = {
            "transformer": self.torch,
            "encoder": self.torch.encoder,
            "decoder": self.torch.decoder,
        }
        # The reference reads float64 weights; converted once (the base 6-layer model is 44M parameters).
        full = {k: v.astype(np.float64) for k, v in weights.items()}
        self.ref_weights = {
            "transformer": full,
            "encoder": {k[len("encoder."):]: v for k, v in full.items() if k.startswith("encoder.")},
            "decoder": {k[len("decoder."):]: v for k, v in full.items() if k.startswith("decoder.")},
        }
        self.ref_config = {
            "nhead": cfg.nhead,
            "num_encoder_layers": cfg.layers,
            "num_decoder_layers": cfg.layers,
            "activation": cfg.activation,
            "layer_norm_eps": 1e-5,
            "norm_first": cfg.norm_first,
            "batch_first": cfg.batch_first,
        }


@pytest.fixture(scope="module", autouse=True)
def _one_torch_thread():
    """The machine is small and shared: torch at one thread is as exact and far faster when oversubscribed."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


_BUILT: dict = {}  # the models of one configuration at a time (the base 6-layer one holds ~1 GB with its float64 copy)


def _get_built(cfg: Cfg) -> Built:
    if cfg not in _BUILT:
        _BUILT.clear()
        _BUILT[cfg] = Built(cfg)
    return _BUILT[cfg]


@pytest.fixture(scope="module", autouse=True)
def _release_models():
    yield
    _BUILT.clear()


@pytest.fixture
def built(request):
    """Parity runs at one thread (faster on a busy machine); results do not depend on the thread count,
    which the invariance tests below check bitwise on the same mask kinds. Tests are listed configuration
    by configuration, so each is built once."""
    b = _get_built(request.param)
    for model in b.models.values():
        model.num_threads = 1
    return b


# --- inputs and masks -------------------------------------------------------------------------------------


def _layout(x_bf: np.ndarray, cfg: Cfg) -> np.ndarray:
    """A batch-first [B, L, E] array in the configuration's layout."""
    return np.ascontiguousarray(x_bf if cfg.batch_first else x_bf.transpose(1, 0, 2))


def _batch_first(x: np.ndarray, cfg: Cfg) -> np.ndarray:
    return x if cfg.batch_first else x.transpose(1, 0, 2)


def _suffix_pad(lengths, length) -> np.ndarray:
    return ref.suffix_padding(lengths, length)


def _nonsuffix_pad(length) -> np.ndarray:
    """Padding with holes; position 0 stays real so that causal rows always have a key."""
    pad = np.zeros((B, length), dtype=bool)
    pad[0, 1::3] = True
    pad[1, 2:4] = True
    pad[2, length - 2 :] = True  # a suffix in one row does not make the whole mask a suffix one
    return pad


def _causal(length) -> np.ndarray:
    """torch.nn.Transformer.generate_square_subsequent_mask, as float32 NumPy."""
    return torch.nn.Transformer.generate_square_subsequent_mask(length).numpy()


def _bool_triu(length) -> np.ndarray:
    return np.triu(np.ones((length, length), dtype=bool), k=1)


def _random_bool(rng, shape) -> np.ndarray:
    """Random "may not attend" mask that keeps key 0 and the diagonal, so no row is fully masked."""
    m = rng.random(shape) < 0.4
    m[..., 0] = False
    if shape[-1] == shape[-2]:
        idx = np.arange(shape[-1])
        m[..., idx, idx] = False
    return m


def _random_float(rng, shape) -> np.ndarray:
    return (2.0 * rng.standard_normal(shape)).astype(np.float32)


def _float_pad(pad: np.ndarray) -> np.ndarray:
    return np.where(pad, -np.inf, 0.0).astype(np.float32)


@dataclasses.dataclass
class Case:
    args: tuple              # positional arrays, in the configuration's layout
    ours: dict               # keyword arguments for cpuformer
    torch_kw: dict           # keyword arguments for torch (None: same as ours); the reference takes ours
    out_pad: np.ndarray      # [B, L] bool: output positions that are padding (not compared)
    suffix: bool             # the output padding is a suffix (so those outputs must be exactly 0)


ENCODER_SCENARIOS = [
    "none", "pad_suffix", "pad_nonsuffix", "pad_float", "pad_float_random", "causal_float", "causal_bool",
    "causal_hint", "causal_pad", "float2d", "float3d_pad", "bool3d", "bool2d_pad_nonsuffix",
]
DECODER_SCENARIOS = [
    "none", "causal_float_mem_pad", "causal_bool_pads", "causal_hint", "float_masks", "masks3d",
    "pad_nonsuffix", "pad_float_random",
]
TRANSFORMER_SCENARIOS = [
    "none", "standard", "causal_hint_nonsuffix", "masks3d", "float2d", "src_causal", "pad_float",
]
SCENARIOS = {"encoder": ENCODER_SCENARIOS, "decoder": DECODER_SCENARIOS, "transformer": TRANSFORMER_SCENARIOS}
# The base size runs two scenarios per model class and configuration, rotated so that between the four
# configurations every kind of mask runs at base size (the small size runs them all everywhere).
BASE_SCENARIOS = {
    BASE_CONFIGS[0]: [("encoder", "pad_suffix"), ("encoder", "float2d"), ("decoder", "causal_float_mem_pad"),
                      ("decoder", "float_masks"), ("transformer", "standard"), ("transformer", "src_causal")],
    BASE_CONFIGS[1]: [("encoder", "pad_nonsuffix"), ("encoder", "causal_bool"), ("decoder", "causal_hint"),
                      ("decoder", "pad_nonsuffix"), ("transformer", "masks3d"), ("transformer", "pad_float")],
    BASE_CONFIGS[2]: [("encoder", "float3d_pad"), ("encoder", "causal_hint"), ("decoder", "causal_bool_pads"),
                      ("decoder", "masks3d"), ("transformer", "standard"), ("transformer", "causal_hint_nonsuffix")],
    BASE_CONFIGS[3]: [("encoder", "causal_pad"), ("encoder", "bool3d"), ("decoder", "pad_float_random"),
                      ("decoder", "masks3d"), ("transformer", "standard"), ("transformer", "float2d")],
}

SRC_LENGTHS = [S, 4, 1]
TGT_LENGTHS = [3, T, 2]


def _case(kind: str, scenario: str, cfg: Cfg, rng) -> Case:
    h = cfg.nhead
    src = _layout(rng.standard_normal((B, S, cfg.d_model), dtype=np.float32), cfg)
    tgt = _layout(rng.standard_normal((B, T, cfg.d_model), dtype=np.float32), cfg)
    none_t = np.zeros((B, T), dtype=bool)
    none_s = np.zeros((B, S), dtype=bool)
    causal_t = _causal(T)

    if kind == "encoder":
        kw, torch_kw = {}, None
        pad, suffix = none_s, True
        if scenario == "pad_suffix":
            pad = _suffix_pad(SRC_LENGTHS, S)
            kw = {"src_key_padding_mask": pad}
        elif scenario == "pad_nonsuffix":
            pad, suffix = _nonsuffix_pad(S), False
            kw = {"src_key_padding_mask": pad}
        elif scenario == "pad_float":
            pad = _suffix_pad(SRC_LENGTHS, S)
            kw = {"src_key_padding_mask": _float_pad(pad)}
        elif scenario == "pad_float_random":  # finite additive key "padding": every position is real
            kw = {"src_key_padding_mask": _random_float(rng, (B, S))}
        elif scenario == "causal_float":
            kw = {"mask": _causal(S)}
        elif scenario == "causal_bool":
            kw = {"mask": _bool_triu(S)}
        elif scenario == "causal_hint":  # torch needs the mask with the hint; cpuformer takes the hint alone
            kw = {"is_causal": True}
            torch_kw = {"mask": _causal(S), "is_causal": True}
        elif scenario == "causal_pad":
            pad = _suffix_pad(SRC_LENGTHS, S)
            kw = {"mask": _causal(S), "src_key_padding_mask": pad}
        elif scenario == "float2d":
            kw = {"mask": _random_float(rng, (S, S))}
        elif scenario == "float3d_pad":
            pad = _suffix_pad(SRC_LENGTHS, S)
            kw = {"mask": _random_float(rng, (B * h, S, S)), "src_key_padding_mask": pad}
        elif scenario == "bool3d":
            kw = {"mask": _random_bool(rng, (B * h, S, S))}
        elif scenario == "bool2d_pad_nonsuffix":
            pad, suffix = _nonsuffix_pad(S), False
            kw = {"mask": _random_bool(rng, (S, S)), "src_key_padding_mask": pad}
        else:
            assert scenario == "none", scenario
        return Case((src,), kw, torch_kw, pad, suffix)

    if kind == "decoder":
        memory = src
        kw, torch_kw = {}, None
        pad, suffix = none_t, True
        if scenario == "causal_float_mem_pad":
            kw = {"tgt_mask": causal_t, "memory_key_padding_mask": _suffix_pad(SRC_LENGTHS, S)}
        elif scenario == "causal_bool_pads":
            pad = _suffix_pad(TGT_LENGTHS, T)
            kw = {
                "tgt_mask": _bool_triu(T),
                "tgt_key_padding_mask": pad,
                "memory_key_padding_mask": _suffix_pad(SRC_LENGTHS, S),
            }
        elif scenario == "causal_hint":
            kw = {"tgt_is_causal": True, "memory_key_padding_mask": _suffix_pad(SRC_LENGTHS, S)}
            torch_kw = dict(kw, tgt_mask=causal_t)
        elif scenario == "float_masks":
            kw = {"tgt_mask": _random_float(rng, (T, T)), "memory_mask": _random_float(rng, (T, S))}
        elif scenario == "masks3d":
            pad = _suffix_pad(TGT_LENGTHS, T)
            kw = {
                "tgt_mask": _random_float(rng, (B * h, T, T)),
                "memory_mask": _random_bool(rng, (B * h, T, S)),
                "tgt_key_padding_mask": pad,
            }
        elif scenario == "pad_nonsuffix":
            pad, suffix = _nonsuffix_pad(T), False
            kw = {"tgt_mask": causal_t, "tgt_key_padding_mask": pad, "memory_key_padding_mask": _nonsuffix_pad(S)}
        elif scenario == "pad_float_random":
            kw = {
                "tgt_key_padding_mask": _random_float(rng, (B, T)),
                "memory_key_padding_mask": _random_float(rng, (B, S)),
            }
        else:
            assert scenario == "none", scenario
        return Case((tgt, memory), kw, torch_kw, pad, suffix)

    assert kind == "transformer", kind
    kw, torch_kw = {}, None
    pad, suffix = none_t, True
    if scenario == "standard":
        src_pad = _suffix_pad(SRC_LENGTHS, S)
        pad = _suffix_pad(TGT_LENGTHS, T)
        kw = {
            "tgt_mask": causal_t,
            "src_key_padding_mask": src_pad,
            "memory_key_padding_mask": src_pad,
            "tgt_key_padding_mask": pad,
        }
    elif scenario == "causal_hint_nonsuffix":
        src_pad = _nonsuffix_pad(S)
        kw = {"tgt_is_causal": True, "src_key_padding_mask": src_pad, "memory_key_padding_mask": src_pad}
        torch_kw = dict(kw, tgt_mask=causal_t)
    elif scenario == "masks3d":
        kw = {
            "src_mask": _random_float(rng, (B * h, S, S)),
            "tgt_mask": _random_bool(rng, (B * h, T, T)),
            "memory_mask": _random_float(rng, (B * h, T, S)),
        }
    elif scenario == "float2d":
        kw = {
            "src_mask": _random_float(rng, (S, S)),
            "memory_mask": _random_float(rng, (T, S)),
            "tgt_mask": _bool_triu(T),
        }
    elif scenario == "src_causal":
        kw = {"src_mask": _causal(S), "tgt_mask": causal_t}
    elif scenario == "pad_float":
        src_pad = _float_pad(_suffix_pad(SRC_LENGTHS, S))
        pad = _suffix_pad(TGT_LENGTHS, T)
        kw = {
            "tgt_mask": causal_t,
            "src_key_padding_mask": src_pad,
            "memory_key_padding_mask": src_pad,
            "tgt_key_padding_mask": _float_pad(pad),
        }
    else:
        assert scenario == "none", scenario
    return Case((src, tgt), kw, torch_kw, pad, suffix)


# --- running and comparing --------------------------------------------------------------------------------


def _run_torch(module, args, kw, real=None) -> np.ndarray:
    """torch's output in eval mode under inference_mode (so its fast paths may run).

    torch 2.13's TransformerEncoder fast path returns NaN everywhere for a 3-D float mask combined with a
    key padding mask (batch_first, even nhead; the layer alone is fine): when torch's output is not
    finite at real positions, it is recomputed on torch's slow path (fast path disabled)."""
    targs = [torch.from_numpy(a) for a in args]
    tkw = {k: torch.from_numpy(np.asarray(v)) if isinstance(v, np.ndarray) else v for k, v in kw.items()}
    with torch.inference_mode(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        out = module(*targs, **tkw).numpy()
        if real is not None and not np.all(np.isfinite(out[real])):
            enabled = torch.backends.mha.get_fastpath_enabled()
            torch.backends.mha.set_fastpath_enabled(False)
            try:
                out = module(*targs, **tkw).numpy()
            finally:
                torch.backends.mha.set_fastpath_enabled(enabled)
    return out


def _run_ref(built: Built, kind: str, args, kw) -> np.ndarray:
    fn = {"transformer": ref.transformer, "encoder": ref.transformer_encoder, "decoder": ref.transformer_decoder}[kind]
    return fn(built.ref_weights[kind], built.ref_config, *args, **kw)


def _rel_err(got, expected, real) -> tuple:
    """(max |got - expected| / max |expected| over real positions, where the max error is)."""
    diff = np.abs(got.astype(np.float64) - expected)
    diff = np.where(real[..., None], diff, 0.0)
    scale = np.max(np.abs(np.where(real[..., None], expected, 0.0)))
    where = np.unravel_index(np.argmax(diff), diff.shape)
    return float(diff[where] / scale), tuple(int(i) for i in where)


def check_parity(built: Built, kind: str, scenario: str, rng) -> None:
    cfg = built.cfg
    case = _case(kind, scenario, cfg, rng)
    real = ~case.out_pad
    got = built.models[kind](*case.args, **case.ours)
    real_in_layout = real if cfg.batch_first else real.T
    expected_torch = _run_torch(built.torch_modules[kind], case.args, case.torch_kw or case.ours, real_in_layout)
    expected_ref = _run_ref(built, kind, case.args, case.ours)

    got_bf = _batch_first(got, cfg)
    assert got.shape == expected_torch.shape, (got.shape, expected_torch.shape)
    assert np.all(np.isfinite(got_bf[real])), "non-finite outputs at real positions"
    err_tr, at_tr = _rel_err(_batch_first(expected_torch, cfg), _batch_first(expected_ref, cfg), real)
    assert err_tr <= TOL_REF, f"the reference disagrees with torch: {err_tr:.3g} at [b, l, e] = {at_tr}"
    err_t, at_t = _rel_err(got_bf, _batch_first(expected_torch, cfg).astype(np.float64), real)
    assert err_t <= TOL_TORCH, f"vs torch: relative error {err_t:.3g} at [b, l, e] = {at_t}"
    err_r, at_r = _rel_err(got_bf, _batch_first(expected_ref, cfg), real)
    assert err_r <= TOL_REF, f"vs float64 reference: relative error {err_r:.3g} at [b, l, e] = {at_r}"
    if case.suffix and case.out_pad.any():
        assert np.all(got_bf[case.out_pad] == 0.0), "outputs at (suffix) padded positions must be exactly 0"


@pytest.mark.parametrize(
    "built, kind, scenario",
    [pytest.param(cfg, kind, name, id=f"{kind}-{name}-{cfg.id}") for cfg in SMALL_CONFIGS
     for kind, names in SCENARIOS.items() for name in names],
    indirect=["built"],
)
def test_parity_small(built, kind, scenario, rng):
    check_parity(built, kind, scenario, rng)


@pytest.mark.parametrize(
    "built, kind, scenario",
    [pytest.param(cfg, kind, name, id=f"{kind}-{name}-{cfg.id}") for cfg, cases in BASE_SCENARIOS.items()
     for kind, name in cases],
    indirect=["built"],
)
def test_parity_base(built, kind, scenario, rng):
    check_parity(built, kind, scenario, rng)


@pytest.mark.parametrize("kind", ["encoder", "decoder"])
@pytest.mark.parametrize("norm_first", [False, True], ids=["post", "pre"])
def test_stack_without_final_norm(kind, norm_first, rng):
    """torch.nn.TransformerEncoder/Decoder(layer, n) default to norm=None."""
    d, h, f = 24, 3, 40
    if kind == "encoder":
        layer = torch.nn.TransformerEncoderLayer(d, h, f, 0.0, "gelu", norm_first=norm_first)
        module = torch.nn.TransformerEncoder(layer, 2, enable_nested_tensor=False).eval()
        cls = cpuformer.TransformerEncoder
    else:
        layer = torch.nn.TransformerDecoderLayer(d, h, f, 0.0, "gelu", norm_first=norm_first)
        module = torch.nn.TransformerDecoder(layer, 2).eval()
        cls = cpuformer.TransformerDecoder
    weights = ref.random_state_dict({k: tuple(v.shape) for k, v in module.state_dict().items()}, rng)
    module.load_state_dict({k: torch.from_numpy(v) for k, v in weights.items()})
    model = cls.from_torch(module)
    assert model.config.encoder_final_norm is False and model.config.decoder_final_norm is False
    assert "norm.weight" not in model.state_dict()
    x = rng.standard_normal((S, B, d), dtype=np.float32)
    mem = rng.standard_normal((S + 2, B, d), dtype=np.float32)
    args = (x,) if kind == "encoder" else (x, mem)
    got = model(*args)
    expected = _run_torch(module, args, {})
    config = {"nhead": h, "num_encoder_layers": 2, "num_decoder_layers": 2, "activation": "gelu",
              "layer_norm_eps": 1e-5, "norm_first": norm_first, "batch_first": False}
    fn = ref.transformer_encoder if kind == "encoder" else ref.transformer_decoder
    expected_ref = fn(weights, config, *args)
    scale = np.abs(expected_ref).max()
    assert np.abs(got - expected).max() <= TOL_TORCH * scale
    assert np.abs(got - expected_ref).max() <= TOL_REF * scale


# --- every ISA path against the reference -----------------------------------------------------------------

ISA_CONFIGS = [Cfg(24, 3, 40, 6, False, "gelu", False), Cfg(512, 8, 2048, 1, True, "relu", True)]


@pytest.mark.parametrize(
    "cfg, kind, scenario, isa",
    [pytest.param(cfg, kind, name, isa, id=f"{isa}-{kind}-{name}-{cfg.id}")
     for cfg in ISA_CONFIGS
     for kind, name in [("encoder", "float3d_pad"), ("decoder", "masks3d"), ("transformer", "standard")]
     for isa in cpuformer.supported_isas()],
    indirect=["isa"],
)
def test_every_isa_vs_reference(cfg, kind, scenario, isa, rng):
    """Weights are packed at construction for the active ISA, so each path builds its own model."""
    built = _get_built(cfg)
    model = type(built.models[kind]).from_state_dict(built.models[kind].state_dict(), built.models[kind].config)
    model.num_threads = 1
    case = _case(kind, scenario, cfg, rng)
    got = _batch_first(model(*case.args, **case.ours), cfg)
    expected = _batch_first(_run_ref(built, kind, case.args, case.ours), cfg)
    err, at = _rel_err(got, expected, ~case.out_pad)
    assert err <= TOL_REF, f"[{isa}] vs float64 reference: relative error {err:.3g} at {at}"
    if case.out_pad.any():
        assert np.all(got[case.out_pad] == 0.0)




# --- fully masked rows: zeros in the attention, never NaN -------------------------------------------------

_MASKED_CFG = Cfg(24, 3, 40, 2, False, "relu", True)


@pytest.fixture(scope="module")
def masked_built():
    return Built(_MASKED_CFG)


def _compare_ref(got, expected, real, what):
    assert np.all(np.isfinite(got)), f"{what}: NaN or inf in the output"
    err, at = _rel_err(got, expected, real)
    assert err <= TOL_REF, f"{what}: relative error {err:.3g} at {at}"


@pytest.mark.parametrize("mask_kind", ["float_row", "bool_row", "float3d_one_head"])
def test_fully_masked_attention_row(masked_built, mask_kind, rng):
    """A query row whose keys are all masked attends to nothing: probabilities 0 (torch gives NaN)."""
    h = _MASKED_CFG.nhead
    src = rng.standard_normal((B, S, 24), dtype=np.float32)
    if mask_kind == "float_row":
        mask = _random_float(rng, (S, S))
        mask[2, :] = -np.inf
    elif mask_kind == "bool_row":
        mask = _random_bool(rng, (S, S))
        mask[4, :] = True
    else:
        mask = _random_float(rng, (B * h, S, S))
        mask[1 * h + 2, 3, :] = -np.inf  # batch 1, head 2, query 3
    for kind in ("encoder", "transformer"):
        model = masked_built.models[kind]
        if kind == "encoder":
            args, kw = (src,), {"mask": mask}
        else:
            args, kw = (src, rng.standard_normal((B, S, 24), dtype=np.float32)), {"src_mask": mask, "memory_mask": mask}
        got = model(*args, **kw)
        expected = _run_ref(masked_built, kind, args, kw)
        _compare_ref(got, expected, np.ones(got.shape[:2], bool), f"{kind} with {mask_kind}")


def test_sequence_of_length_zero(masked_built, rng):
    """Key padding that pads a whole sequence: its outputs are zeros, the others are unaffected."""
    d = 24
    src = rng.standard_normal((B, S, d), dtype=np.float32)
    tgt = rng.standard_normal((B, T, d), dtype=np.float32)
    src_pad = _suffix_pad([0, S, 3], S)
    tgt_pad = _suffix_pad([T, 0, 2], T)

    enc = masked_built.models["encoder"]
    got = enc(src, src_key_padding_mask=src_pad)
    expected = _run_ref(masked_built, "encoder", (src,), {"src_key_padding_mask": src_pad})
    _compare_ref(got, expected, ~src_pad, "encoder")
    assert np.all(got[0] == 0.0) and np.all(got[src_pad] == 0.0)

    # Decoder: an empty target sequence, and an empty memory (cross-attention sees no key at all).
    dec = masked_built.models["decoder"]
    kw = {"tgt_key_padding_mask": tgt_pad, "memory_key_padding_mask": src_pad, "tgt_mask": _causal(T)}
    got = dec(tgt, src, **kw)
    expected = _run_ref(masked_built, "decoder", (tgt, src), kw)
    _compare_ref(got, expected, ~tgt_pad, "decoder")
    assert np.all(got[1] == 0.0) and np.all(got[tgt_pad] == 0.0)

    full = masked_built.models["transformer"]
    kw = {"src_key_padding_mask": src_pad, "memory_key_padding_mask": src_pad, "tgt_key_padding_mask": tgt_pad}
    got = full(src, tgt, **kw)
    expected = _run_ref(masked_built, "transformer", (src, tgt), kw)
    _compare_ref(got, expected, ~tgt_pad, "transformer")
    assert np.all(got[tgt_pad] == 0.0)


# --- invariances: batch composition, threads, repeated calls ----------------------------------------------

INVARIANCE_CONFIGS = [Cfg(24, 3, 40, 6, True, "gelu", False), Cfg(512, 8, 2048, 1, False, "relu", True)]


@pytest.fixture(scope="module", params=INVARIANCE_CONFIGS, ids=[c.id for c in INVARIANCE_CONFIGS])
def inv_built(request):
    return Built(request.param)


def _alone_vs_batch(built: Built, kind: str, rng, threads=None):
    """(outputs in a padded batch, [outputs of each sequence run alone]) in batch-first layout."""
    cfg, d = built.cfg, built.cfg.d_model
    bsz, sl, tl = 4, 13, 11
    src_len, tgt_len = [13, 5, 9, 1], [4, 11, 1, 8]
    src = rng.standard_normal((bsz, sl, d), dtype=np.float32)
    tgt = rng.standard_normal((bsz, tl, d), dtype=np.float32)
    src_pad, tgt_pad = _suffix_pad(src_len, sl), _suffix_pad(tgt_len, tl)
    model = built.models[kind]

    def run(s, t, sp, tp):
        n_t = t.shape[1]
        if kind == "encoder":
            return _batch_first(model(_layout(s, cfg), mask=_causal(s.shape[1]), src_key_padding_mask=sp), cfg)
        if kind == "decoder":
            return _batch_first(model(_layout(t, cfg), _layout(s, cfg), tgt_mask=_causal(n_t),
                                      tgt_key_padding_mask=tp, memory_key_padding_mask=sp), cfg)
        return _batch_first(model(_layout(s, cfg), _layout(t, cfg), tgt_mask=_causal(n_t),
                                  src_key_padding_mask=sp, tgt_key_padding_mask=tp, memory_key_padding_mask=sp), cfg)

    batch = run(src, tgt, src_pad, tgt_pad)
    alone = [run(src[i : i + 1, : src_len[i]], tgt[i : i + 1, : tgt_len[i]], None, None)[0] for i in range(bsz)]
    lengths = src_len if kind == "encoder" else tgt_len
    return batch, alone, lengths


@pytest.mark.parametrize("kind", ["encoder", "decoder", "transformer"])
def test_alone_equals_padded_batch(inv_built, kind, rng):
    batch, alone, lengths = _alone_vs_batch(inv_built, kind, rng)
    for i, (out, n) in enumerate(zip(alone, lengths)):
        assert np.array_equal(batch[i, :n], out), f"sequence {i}: differs alone and in the batch (bitwise)"
        assert np.all(batch[i, n:] == 0.0)


@pytest.mark.parametrize("kind", ["encoder", "decoder", "transformer"])
def test_alone_equals_padded_batch_every_isa(isa, kind, rng):
    built = Built(INVARIANCE_CONFIGS[0])  # small: cheap to pack once per ISA
    batch, alone, lengths = _alone_vs_batch(built, kind, rng)
    for i, (out, n) in enumerate(zip(alone, lengths)):
        assert np.array_equal(batch[i, :n], out), f"[{isa}] sequence {i}: differs alone and in the batch"


def _standard_call(built: Built, kind: str, rng, masks: str = "padding", bsz=4, sl=24, tl=20):
    """A call with enough rows to split across threads: suffix padding and the causal flag ("padding"), or
    3-D float / bool masks with non-suffix padding (the additive-mask path, "masks3d")."""
    cfg, d, h = built.cfg, built.cfg.d_model, built.cfg.nhead
    src = _layout(rng.standard_normal((bsz, sl, d), dtype=np.float32), cfg)
    tgt = _layout(rng.standard_normal((bsz, tl, d), dtype=np.float32), cfg)
    model = built.models[kind]
    if masks == "padding":
        src_pad = _suffix_pad(np.linspace(1, sl, bsz).astype(int), sl)
        tgt_pad = _suffix_pad(np.linspace(tl, 2, bsz).astype(int), tl)
        if kind == "encoder":
            return lambda: model(src, src_key_padding_mask=src_pad)
        if kind == "decoder":
            return lambda: model(tgt, src, tgt_is_causal=True, tgt_key_padding_mask=tgt_pad,
                                 memory_key_padding_mask=src_pad)
        return lambda: model(src, tgt, tgt_is_causal=True, src_key_padding_mask=src_pad,
                             tgt_key_padding_mask=tgt_pad, memory_key_padding_mask=src_pad)
    assert masks == "masks3d", masks
    src_pad = rng.random((bsz, sl)) < 0.3
    src_pad[:, 0] = False
    self_mask = _random_float(rng, (bsz * h, sl, sl))
    tgt_mask = _random_float(rng, (bsz * h, tl, tl))
    mem_mask = _random_bool(rng, (bsz * h, tl, sl))
    if kind == "encoder":
        return lambda: model(src, mask=self_mask, src_key_padding_mask=src_pad)
    if kind == "decoder":
        return lambda: model(tgt, src, tgt_mask=tgt_mask, memory_mask=mem_mask, memory_key_padding_mask=src_pad)
    return lambda: model(src, tgt, src_mask=self_mask, tgt_mask=tgt_mask, memory_mask=mem_mask,
                         src_key_padding_mask=src_pad, memory_key_padding_mask=src_pad)


def _check_thread_invariance(model, call, what=""):
    try:
        model.num_threads = 1
        one = call()
        model.num_threads = 2
        assert model.num_threads == 2
        two = call()
        model.num_threads = 0  # the process default, set globally
        with use_threads(1):
            global_one = call()
        with use_threads(2):
            global_two = call()
    finally:
        model.num_threads = 0
    assert np.all(np.isfinite(one))
    assert np.array_equal(one, two), f"{what}1 vs 2 threads (model.num_threads) differ"
    assert np.array_equal(one, global_one) and np.array_equal(one, global_two), (
        f"{what}cpuformer.set_num_threads 1 vs 2 differ"
    )


@pytest.mark.parametrize("masks", ["padding", "masks3d"])
@pytest.mark.parametrize("kind", ["encoder", "decoder", "transformer"])
def test_thread_count_does_not_change_results(inv_built, kind, masks, rng):
    _check_thread_invariance(inv_built.models[kind], _standard_call(inv_built, kind, rng, masks))


def test_thread_count_does_not_change_results_every_isa(isa, rng):
    """The encoder-decoder model runs every layer kind."""
    built = Built(INVARIANCE_CONFIGS[0])
    for masks in ("padding", "masks3d"):
        call = _standard_call(built, "transformer", rng, masks)
        _check_thread_invariance(built.models["transformer"], call, f"[{isa}, {masks}] ")


@pytest.mark.parametrize("kind", ["encoder", "decoder", "transformer"])
def test_repeated_calls_are_identical(inv_built, kind, rng):
    call = _standard_call(inv_built, kind, rng)
    first = call()
    other = _standard_call(inv_built, kind, np.random.default_rng(0), "masks3d", bsz=2, sl=5, tl=3)
    for _ in range(3):
        other()  # a different shape in between must not leave state behind
        assert np.array_equal(call(), first)


def test_isa_switch_keeps_packed_weights(rng):
    """A model built on one path keeps working, unchanged, after the process switches to another."""
    isas = cpuformer.supported_isas()
    if len(isas) < 2:
        pytest.skip("only one ISA path on this machine")
    cfg = INVARIANCE_CONFIGS[0]
    with use_isa(isas[0]):
        built = Built(cfg)
    call = _standard_call(built, "transformer", rng)
    before = call()
    with use_isa(isas[-1]):
        after = call()
    assert np.array_equal(before, after)
