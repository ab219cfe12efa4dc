"""Marian checkpoints (MarianMTModel.save_pretrained) through Translator.from_pretrained: the teacher-forced
forward matches Hugging Face's.

Models have every weight random (biases, LayerNorm affine, final_logits_bias included; marian_helpers.randomize_)
with logits of std ~3, so that log-probabilities span ~25 nats and a wrong term shows. Sizes: tiny (d_model 32,
1 encoder + 2 decoder layers, gelu, unscaled embeddings), d_model 256 (2+2 layers, swish, vocab 1000), a tiny
one with separate source/target vocabularies, and the base size (d_model 512, 6+6 layers, 8 heads, ffn 2048,
vocab 8000, relu). Batches are padded: sources of 1..15 tokens, targets of 1..12 tokens after the start token.

Normalisation: max over the real (unpadded) target positions of |ours - ref|, divided by max |ref| over the
same positions (the log-probabilities' scale). Bounds: 1e-4 against torch float32 (two float32 summation
orders), 1e-5 against torch float64 (observed ~1e-6; a missing bias or a mis-masked key is >= 1e-3).
Positions past a target's length must be exactly 0 (Translator.log_probs' contract).
"""

from __future__ import annotations

import numpy as np
import pytest

import cpuformer
import marian_helpers as mh

TOL_F32 = 1e-4
TOL_F64 = 1e-5

SIZES = {
    "tiny": dict(vocab=50, d_model=32, enc_layers=1, dec_layers=2, heads=2, ffn=48, activation="gelu",
                 scale_embedding=False),
    "d256": dict(vocab=1000, d_model=256, enc_layers=2, dec_layers=2, heads=4, ffn=1024, activation="swish"),
}
BASE = dict(vocab=8000, d_model=512, enc_layers=6, dec_layers=6, heads=8, ffn=2048, activation="relu")


def _batch(rng, vocab, n, max_src=15, max_tgt=12):
    """Padded-batch material: sources (ending with EOS 0) and targets ([start = pad] + tokens)."""
    pad = vocab - 1
    sources = mh.random_sources(rng, n, 1, pad, 1, max_src)
    targets = [[pad] + [int(x) for x in rng.integers(0, pad, size=int(rng.integers(1, max_tgt + 1)))]
               for _ in range(n)]
    # Make sure the batch really is ragged on both sides.
    sources[0] = sources[0][:1] if len(sources[0]) > 1 else sources[0]
    targets[-1] = targets[-1][:2]
    return sources, targets


def _rel_err(ours, ref, targets) -> float:
    err = max(float(np.abs(ours[b, : len(t)] - ref[b, : len(t)]).max()) for b, t in enumerate(targets))
    scale = max(float(np.abs(ref[b, : len(t)]).max()) for b, t in enumerate(targets))
    return err / scale


def _check_padding_zero(ours, targets):
    for b, t in enumerate(targets):
        assert not ours[b, len(t):].any(), f"sentence {b}: rows past its target length {len(t)} are not 0"


@pytest.fixture(scope="module", params=sorted(SIZES))
def random_pair(request, hf, tmp_path_factory):
    model = mh.random_marian(11, **SIZES[request.param])
    path = tmp_path_factory.mktemp(f"marian_{request.param}")
    model.save_pretrained(str(path))
    return request.param, model, cpuformer.Translator.from_pretrained(str(path)), str(path)


def test_log_probs_match_hf(random_pair, hf):
    torch, _ = hf
    name, model, tr, _ = random_pair
    vocab = SIZES[name]["vocab"]
    rng = np.random.default_rng(5)
    for n in (1, 3, 7):
        sources, targets = _batch(rng, vocab, n)
        ours = tr.log_probs(sources, targets)
        assert ours.dtype == np.float32 and ours.shape == (n, max(map(len, targets)), vocab)
        ref32 = mh.hf_log_probs(model, sources, targets)
        ref64 = mh.hf_log_probs(model, sources, targets, dtype=torch.float64)
        # The reference must be trustworthy (and the weights far from trivial): log-probs spread over >10 nats.
        assert np.ptp(ref64[0, 0]) > 10
        e32, e64 = _rel_err(ours, ref32, targets), _rel_err(ours, ref64, targets)
        assert e32 <= TOL_F32, f"{name}, batch {n}: relative error vs torch float32 {e32:.3g}"
        assert e64 <= TOL_F64, f"{name}, batch {n}: relative error vs torch float64 {e64:.3g}"
        _check_padding_zero(ours, targets)


def test_padded_array_input_equals_lists(random_pair):
    """log_probs on padded arrays with lengths = log_probs on lists (the padding value is irrelevant)."""
    name, _, tr, _ = random_pair
    vocab = SIZES[name]["vocab"]
    sources, targets = _batch(np.random.default_rng(6), vocab, 5)
    want = tr.log_probs(sources, targets)
    src = np.full((5, max(map(len, sources)) + 2), 7, dtype=np.int32)  # junk padding, int32, extra width
    tgt = np.full((5, max(map(len, targets))), 3, dtype=np.int64)
    for i, (s, t) in enumerate(zip(sources, targets)):
        src[i, : len(s)] = s
        tgt[i, : len(t)] = t
    got = tr.log_probs(src, tgt, source_lengths=[len(s) for s in sources],
                       target_lengths=[len(t) for t in targets])
    np.testing.assert_array_equal(got, want)


def test_every_isa(random_pair, hf, isa):
    """Loaded while each ISA is active (weights are packed for the active kernels), against torch float64."""
    torch, _ = hf
    name, model, _, path = random_pair
    tr = cpuformer.Translator.from_pretrained(path)
    sources, targets = _batch(np.random.default_rng(9), SIZES[name]["vocab"], 4)
    ref = mh.hf_log_probs(model, sources, targets, dtype=torch.float64)
    e = _rel_err(tr.log_probs(sources, targets), ref, targets)
    assert e <= TOL_F64, f"{name} on {isa}: relative error vs torch float64 {e:.3g}"


def test_unshared_vocabularies(hf, tmp_path):
    """share_encoder_decoder_embeddings=False: separate source/target embeddings and target vocabulary."""
    from transformers import MarianMTModel

    torch, _ = hf
    torch.manual_seed(0)
    cfg = mh.marian_config(vocab=50, d_model=32, enc_layers=2, dec_layers=1, heads=4, ffn=40, activation="relu")
    cfg.share_encoder_decoder_embeddings = False
    cfg.decoder_vocab_size = 40
    cfg.pad_token_id = cfg.decoder_start_token_id = 39
    model = MarianMTModel(cfg).eval()
    mh.randomize_(model, 2)
    model.save_pretrained(str(tmp_path))
    tr = cpuformer.Translator.from_pretrained(str(tmp_path))
    assert tr.vocab_size == 40
    rng = np.random.default_rng(1)
    sources = mh.random_sources(rng, 4, 1, 49, 1, 10)
    targets = [[39] + [int(x) for x in rng.integers(0, 39, size=int(rng.integers(1, 8)))] for _ in range(4)]
    ours = tr.log_probs(sources, targets)
    ref = mh.hf_log_probs(model, sources, targets, dtype=torch.float64)
    assert _rel_err(ours, ref, targets) <= TOL_F64
    # the source vocabulary is the larger one: id 45 is a valid source token, not a valid target token
    tr.log_probs([[45, 0]], [[39]])
    with pytest.raises(IndexError, match="45"):
        tr.log_probs([[3, 0]], [[39, 45]])


def test_base_size_logits(hf, tmp_path):
    """Base-size Marian (d_model 512, 6+6 layers, 8 heads, ffn 2048, vocab 8000), a small padded batch:
    log-probs, and the logits themselves up to the per-row constant log_softmax subtracts (both centred
    on their row mean), against torch float32."""
    torch, _ = hf
    model = mh.random_marian(21, **BASE)
    model.save_pretrained(str(tmp_path))
    tr = cpuformer.Translator.from_pretrained(str(tmp_path))
    sources, targets = _batch(np.random.default_rng(8), BASE["vocab"], 3, max_src=14, max_tgt=9)
    ours = tr.log_probs(sources, targets)
    src, mask = mh.pad_batch(sources, model.config.pad_token_id)
    tgt, _ = mh.pad_batch(targets, model.config.pad_token_id)
    with torch.no_grad():
        logits = model(input_ids=src, attention_mask=mask, decoder_input_ids=tgt).logits.double().numpy()
    ref_lp = torch.from_numpy(logits).log_softmax(-1).numpy()
    assert np.ptp(ref_lp[0, 0]) > 10
    assert _rel_err(ours, ref_lp, targets) <= TOL_F32
    ours_c = ours - ours.mean(-1, keepdims=True, dtype=np.float64)
    ref_c = logits - logits.mean(-1, keepdims=True)
    assert _rel_err(ours_c, ref_c, targets) <= TOL_F32
    _check_padding_zero(ours, targets)
