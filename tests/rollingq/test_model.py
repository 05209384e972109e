"""Model: shapes for every fusion, the output record, the identity rotation, buffers."""

import typing

import pytest
import torch

from rollingq.config import Fusion, ModelConfig
from rollingq.data.base import ModalitySpec
from rollingq.fusions.mult import MulTEncoder
from rollingq.fusions.registry import FUSIONS
from rollingq.model import MultimodalTransformer

SPECS = {
    "audio": ModalitySpec("spectrogram", (32, 24)),
    "visual": ModalitySpec("frames", (2, 3, 16, 16)),
    "text": ModalitySpec("sequence", (5, 12)),
}
B, C = 3, 5
AV = {m: SPECS[m] for m in ("audio", "visual")}


def small(**kw) -> ModelConfig:
    return ModelConfig(**{"dim": 32, "depth": 1, "heads": 4, "patch_size": 8, **kw})


def inputs(specs=SPECS):
    torch.manual_seed(0)
    return {m: torch.randn(B, *s.shape) for m, s in specs.items()}


def tokens(model):
    return {m: e.num_tokens for m, e in model.encoders.items()}


def test_token_counts_follow_the_patch_grid():
    model = MultimodalTransformer(SPECS, C, small())
    # 1 + (32/8)(24/8) audio, 1 + 2 (16/8)^2 visual, 1 + 5 text
    assert tokens(model) == {"audio": 13, "visual": 9, "text": 6}


@pytest.mark.parametrize("fusion_layers", [1, 2, 3])
def test_attn_output_record(fusion_layers):
    model = MultimodalTransformer(SPECS, C, small(fusion_layers=fusion_layers))
    out = model(inputs())
    L = 1 + sum(tokens(model).values())
    assert out.logits.shape == (B, C)
    assert {m: p.shape for m, p in out.probe_logits.items()} == {m: (B, C) for m in SPECS}
    assert out.q_cls.shape == (B, 32) and len(out.fusion) == fusion_layers
    assert {m: k.shape for m, k in out.mean_keys.items()} == {m: (B, 32) for m in SPECS}
    assert out.attention.shape == (B, L)
    assert torch.allclose(out.attention.sum(1), torch.ones(B), atol=1e-5)
    shares = torch.stack(list(out.share.values())).sum(0) + out.attention[:, 0]
    assert torch.allclose(shares, torch.ones(B), atol=1e-5)


@pytest.mark.parametrize("fusion", ["concat", "sum", "mbt", "audio", "visual", "text"])
def test_other_fusions(fusion):
    model = MultimodalTransformer(SPECS, C, small(fusion=fusion, fusion_layers=2))
    out = model(inputs())
    assert out.logits.shape == (B, C) and out.fusion == [] and out.share is None
    assert set(out.probe_logits) == (set(SPECS) if fusion in ("concat", "sum", "mbt") else {fusion})
    out.logits.sum().backward()


def test_unimodal_fusion_needs_its_modality():
    with pytest.raises(ValueError, match="needs a text modality; the data set has: audio, visual"):
        MultimodalTransformer({m: SPECS[m] for m in ("audio", "visual")}, C, small(fusion="text"))


def test_the_registry_has_one_fusion_per_config_choice():
    assert set(FUSIONS) == set(typing.get_args(Fusion))


# The state-dict names a checkpoint, the pretrained loader and Table 4's counts rely on, as they
# were before the registry: top-level groups, the number of keys, the rotatable queries.
STATE_KEYS = [
    ("attn", SPECS, {}, {"encoders", "probes", "fusion", "head"}, 73, 1),
    ("concat", SPECS, {}, {"encoders", "probes", "head"}, 62, 0),
    ("sum", SPECS, {}, {"encoders", "probes", "head"}, 66, 0),
    ("mbt", SPECS, {}, {"encoders", "probes", "bottleneck", "head"}, 99, 0),
    ("mmml", AV, {}, {"encoders", "probes", "mmml"}, 100, 0),
    ("mmml", AV, {"readout": "attn"}, {"encoders", "probes", "mmml"}, 107, 1),
    ("jmt", AV, {}, {"encoders", "probes", "jmt"}, 58, 0),
    ("mult", SPECS, {}, {"encoders", "probes", "mult"}, 327, 0),
    ("mult", SPECS, {"readout": "attn"}, {"encoders", "probes", "mult"}, 334, 1),
    ("text", SPECS, {}, {"encoders", "probes", "head"}, 22, 0),
]


@pytest.mark.parametrize("fusion,specs,cfg,groups,count,rotations", STATE_KEYS)
def test_each_fusion_keeps_its_checkpoint_names(fusion, specs, cfg, groups, count, rotations):
    model = MultimodalTransformer(specs, C, ModelConfig(**{
        "dim": 40, "depth": 1, "heads": 4, "patch_size": 8, "fusion": fusion, **cfg}))
    state = model.state_dict()
    assert {key.split(".")[0] for key in state} == groups
    assert (len(state), len(model.rotations)) == (count, rotations)
    fresh = MultimodalTransformer(specs, C, model.cfg)
    fresh.load_state_dict(state)  # strict: every name matches
    x = inputs(specs)
    with torch.no_grad():
        assert torch.equal(fresh.eval()(x).logits, model.eval()(x).logits)


def test_the_attention_fusion_names_its_published_layer():
    model = MultimodalTransformer(SPECS, C, small())
    own = [k for k in model.state_dict() if not k.startswith(("encoders.", "probes."))]
    assert own == [f"fusion.0.{p}" for p in ("cls", "q.weight", "q.bias", "k.weight", "k.bias",
                   "v.weight", "v.bias", "o.weight", "o.bias", "rotation.matrix",
                   "rotation.count")] + ["head.weight", "head.bias"]


@pytest.mark.parametrize("specs,cfg", [
    (SPECS, {"fusion_layers": 1}), (SPECS, {"fusion_layers": 2}),
    (AV, {"fusion": "mmml", "readout": "attn"}),
    (AV, {"fusion": "mult", "readout": "attn"}),
    (SPECS, {"fusion": "mult", "readout": "attn", "fusion_layers": 2}),
], ids=["attn", "attn2", "mmml_attn_readout", "mult_attn_readout", "mult3_attn_readout"])
def test_identity_rotation_gives_exactly_the_unrotated_output(specs, cfg):
    """Every fusion that allows RollingQ: the identity rotation is exactly no rotation, and a
    real rotation changes the output."""
    model = MultimodalTransformer(specs, C, small(**cfg)).eval()
    x = inputs(specs)
    rotated = model(x)
    forwards = [r.forward for r in model.rotations]
    for r in model.rotations:
        r.forward = lambda q: q  # bypass the rotation entirely
    plain = model(x)
    assert torch.equal(rotated.logits, plain.logits)
    assert torch.equal(rotated.attention, plain.attention)
    for r, forward in zip(model.rotations, forwards, strict=True):
        r.forward = forward
    q, _ = torch.linalg.qr(torch.randn(*model.rotations[-1].matrix.shape))
    model.rotations[-1].compose(q * torch.sign(torch.det(q)))
    assert not torch.allclose(model(x).logits, plain.logits)


def test_rotation_is_a_saved_untrained_buffer():
    model = MultimodalTransformer(SPECS, C, small(fusion_layers=2))
    names = {n for n, _ in model.named_parameters()}
    state = model.state_dict()
    for i in range(2):
        assert f"fusion.{i}.rotation.matrix" in state and f"fusion.{i}.rotation.count" in state
        assert f"fusion.{i}.rotation.matrix" not in names


def test_gradients_flow_through_the_rotation_into_the_query():
    model = MultimodalTransformer(SPECS, C, small())
    q, _ = torch.linalg.qr(torch.randn(32, 32))
    model.rotations[-1].compose(q * torch.sign(torch.det(q)))
    model(inputs()).logits.sum().backward()
    assert (
        model.fusion[0].q.weight.grad.abs().sum() > 0 and model.fusion[0].cls.grad.abs().sum() > 0
    )
    assert int(model.rotations[-1].count) == 1


def test_patch_embeddings_equal_their_strided_convolutions():
    from rollingq.layers import PatchEmbed2d, TubeletEmbed

    torch.manual_seed(0)
    spec = PatchEmbed2d(24, 16)
    x = torch.randn(3, 257, 188)  # not multiples of 16: the convolution drops the remainder
    # published: the (frequency, time) spectrogram transposed to (time, frequency) first
    want = spec.proj(x.unsqueeze(1).transpose(2, 3)).flatten(2).transpose(1, 2)
    assert want.shape == (3, 11 * 16, 24)
    torch.testing.assert_close(spec(x), want, rtol=1e-5, atol=1e-5)
    tube = TubeletEmbed(24, 16)
    frames = torch.randn(2, 3, 3, 40, 50)
    want = tube.proj(frames.transpose(1, 2)).flatten(2).transpose(1, 2)
    assert want.shape == (2, 3 * 2 * 3, 24)
    torch.testing.assert_close(tube(frames), want, rtol=1e-5, atol=1e-5)
    (tube(frames).square().sum()).backward()
    assert tube.proj.weight.grad is not None and tube.proj.weight.grad.abs().sum() > 0


def test_spectrogram_tokens_are_time_major_as_published():
    from rollingq.layers import PatchEmbed2d

    embed = PatchEmbed2d(1, 16)
    with torch.no_grad():
        embed.proj.weight.fill_(1 / 256)  # each token = the mean of its patch
        embed.proj.bias.zero_()
    f = torch.arange(257.0)[:, None].expand(257, 188)  # CREMA-D: (frequency, time)
    t = torch.arange(188.0)[None, :].expand(257, 188)
    freq, time = embed(f[None])[0, :, 0], embed(t[None])[0, :, 0]  # (176,) each
    # token i = 16 * (time patch) + (frequency patch): time runs slowest
    i = torch.arange(176)
    torch.testing.assert_close(time, (i // 16) * 16 + 7.5)
    torch.testing.assert_close(freq, (i % 16) * 16 + 7.5)


def test_initialisation_is_the_published_weight_init():
    D, p = 768, 16
    specs = {
        "audio": ModalitySpec("spectrogram", (257, 188)),
        "visual": ModalitySpec("frames", (1, 3, 32, 32)),
    }
    torch.manual_seed(0)
    model = MultimodalTransformer(specs, 6, ModelConfig(dim=D, depth=0, patch_size=p))
    conv2d = model.encoders["audio"].embed.proj.weight  # kaiming-normal, fan-out, ReLU gain
    expected = (2 / (D * p * p)) ** 0.5  # 0.0032
    assert abs(conv2d.std().item() / expected - 1) < 0.02
    assert abs(conv2d.mean().item()) < 0.05 * expected
    bias = model.encoders["audio"].embed.proj.bias  # PyTorch's default: U(+-1/sqrt(fan_in))
    assert bias.abs().max() <= 1 / p and bias.abs().max() > 0.9 / p
    conv3d = model.encoders["visual"].embed.proj.weight  # PyTorch's default: U(+-1/sqrt(3 p^2))
    bound = 1 / (3 * p * p) ** 0.5
    assert conv3d.abs().max() <= bound and abs(conv3d.std().item() / (bound / 3**0.5) - 1) < 0.02
    for name, layer in [("head", model.head), ("q", model.fusion[0].q),
                        ("probe", model.probes["audio"])]:
        fan_in, fan_out = layer.weight.shape[1], layer.weight.shape[0]
        xavier = (2 / (fan_in + fan_out)) ** 0.5
        assert abs(layer.weight.std().item() / xavier - 1) < 0.05, name
        assert torch.equal(layer.bias, torch.zeros_like(layer.bias)), name


@pytest.mark.parametrize("block", ["prenorm", "published"])
def test_stacked_fusion_layers(block):
    from rollingq.fusions.attention import FusionAttention, FusionBlock

    model = MultimodalTransformer(SPECS, C, small(fusion_layers=3, fusion_block=block))
    kinds = [type(layer) for layer in model.fusion]
    above = FusionBlock if block == "prenorm" else FusionAttention
    assert kinds == [FusionAttention, above, above]
    if block == "published":  # only the first layer has a [cls] of its own
        assert [hasattr(layer, "cls") for layer in model.fusion] == [True, False, False]
    out = model(inputs())
    assert out.logits.shape == (B, C) and len(out.fusion) == 3
    # the second layer's query comes from the first layer's [cls] output: it depends on the input
    assert not torch.allclose(out.fusion[1].q_cls[0], out.fusion[1].q_cls[1])
    assert torch.equal(out.fusion[0].q_cls[0], out.fusion[0].q_cls[1])
    out.logits.sum().backward()
    assert model.fusion[0].cls.grad.abs().sum() > 0


@pytest.mark.parametrize("layer_kind", ["published", "prenorm"])
def test_rollingq_statistics_are_fp32_under_bf16_autocast(layer_kind):
    """Under bf16 autocast a fusion layer attends with bf16 queries and keys; its statistics
    equal the fp32 layer's on the same inputs to fp32 precision, far closer than bf16 allows."""
    from rollingq.fusions.attention import FusionAttention, FusionBlock

    torch.manual_seed(0)
    D, L = 64, 21
    spans = {"audio": slice(1, 9), "visual": slice(9, L)}
    if layer_kind == "published":
        layer, x = FusionAttention(D, 0.0), torch.randn(B, L - 1, D)
    else:
        layer, x = FusionBlock(D, 4, 4.0), torch.randn(B, L, D)
    q, _ = torch.linalg.qr(torch.randn(D, D, dtype=torch.float64))
    layer.rotation.compose(q.float())
    layer.eval()
    with torch.no_grad():
        _, fp32 = layer(x, spans, full=False)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            _, bf16 = layer(x, spans, full=False)
    # the layer itself did attend in bf16: its attention row differs at bf16's precision
    assert (bf16.attention - fp32.attention).abs().max() > 1e-6
    assert bf16.q_cls.dtype == torch.float32
    torch.testing.assert_close(bf16.q_cls, fp32.q_cls, rtol=1e-6, atol=1e-6)
    for m in spans:
        assert bf16.mean_keys[m].dtype == torch.float32
        torch.testing.assert_close(bf16.mean_keys[m], fp32.mean_keys[m], rtol=1e-6, atol=1e-6)
    # and they are the mean keys of the fp32 layer, up to the order of summation
    with torch.no_grad():
        if layer_kind == "published":
            keys = layer.k(torch.cat([layer.cls.expand(B, -1, -1), x], 1))
        else:
            keys = layer.qkv(layer.norm1(x))[..., D : 2 * D]
    for m, s in spans.items():
        torch.testing.assert_close(fp32.mean_keys[m], keys[:, s].mean(1), rtol=1e-5, atol=1e-5)
        # what bf16 keys would have given: off by far more than the tolerance above
        bf16_mean = keys[:, s].bfloat16().float().mean(1)
        assert (bf16_mean - fp32.mean_keys[m]).abs().max() > 1e-4



@pytest.mark.parametrize("readout", ["own", "attn"])
def test_mmml_shapes_and_its_multi_loss_trains_the_encoders(readout):
    model = MultimodalTransformer(AV, C, small(fusion="mmml", readout=readout, fusion_layers=2))
    out = model(inputs(AV))
    assert out.logits.shape == (B, C) and set(out.probe_logits) == set(AV)
    assert len(out.fusion) == (1 if readout == "attn" else 0)
    assert len(model.rotations) == (1 if readout == "attn" else 0)
    # MMML's unimodal losses are not detached: a probe's loss alone reaches its encoder
    out.probe_logits["audio"].sum().backward()
    assert model.encoders["audio"].blocks[0].attn.qkv.weight.grad.abs().sum() > 0
    assert model.encoders["visual"].blocks[0].attn.qkv.weight.grad is None


def test_mmml_starts_as_its_references_and_drops_out_at_its_own_rate():
    """The [cls] of each modality is nn.Embedding's N(0, 1) (std within 10 % over D = 768
    draws; the earlier N(0, 0.02) fails this), and the cross-modal layers use model.mmml_dropout
    (MMML's 0.3 by default), not the published fusion layer's fusion_dropout."""
    torch.manual_seed(0)
    model = MultimodalTransformer(AV, C, ModelConfig(dim=768, depth=1, heads=12, fusion="mmml"))
    for cls in model.mmml.cls.values():
        assert 0.9 < float(cls.detach().std()) < 1.1 and abs(float(cls.detach().mean())) < 0.15
    assert [layer.dropout for layer in model.mmml.layers] == [0.3]
    other = MultimodalTransformer(AV, C, small(fusion="mmml", mmml_dropout=0.1,
                                               fusion_dropout=0.4))
    assert [layer.dropout for layer in other.mmml.layers] == [0.1]


def test_mmml_needs_two_modalities():
    with pytest.raises(ValueError, match="pairs two modalities; the data set has 3"):
        MultimodalTransformer(SPECS, C, small(fusion="mmml"))


@pytest.mark.parametrize("specs,cfg,stats", [
    (AV, {"fusion": "jmt", "fusion_layers": 1}, 0),
    (AV, {"fusion": "jmt", "fusion_layers": 2}, 0),
    (AV, {"fusion": "mult"}, 0),
    (AV, {"fusion": "mult", "readout": "attn"}, 1),
    (SPECS, {"fusion": "mult", "fusion_layers": 2}, 0),
    (SPECS, {"fusion": "mult", "readout": "attn"}, 1),
    (AV, {"fusion": "mult", "dim": 40, "mult_dim": 40}, 0),
], ids=["jmt1", "jmt2", "mult", "mult_attn", "mult3", "mult3_attn", "mult_unprojected"])
def test_jmt_and_mult_shapes_and_detached_probes(specs, cfg, stats):
    model = MultimodalTransformer(specs, C, small(**cfg))
    out = model(inputs(specs))
    assert out.logits.shape == (B, C) and set(out.probe_logits) == set(specs)
    assert len(out.fusion) == len(model.rotations) == stats
    if stats:
        width = (len(specs) - 1) * model.cfg.mult_dim  # the memories' width
        assert out.q_cls.shape == (B, width) and out.attention.shape[1] == sum(
            e.num_tokens for e in model.encoders.values()) + 1
    assert (model.mult.proj is None) == (cfg.get("mult_dim") == cfg.get("dim", 32)) \
        if cfg["fusion"] == "mult" else True
    out.logits.sum().backward()  # the fusion trains every encoder
    assert all(e.blocks[0].attn.qkv.weight.grad.abs().sum() > 0 for e in model.encoders.values())
    model.zero_grad(set_to_none=True)
    model(inputs(specs)).probe_logits["audio"].sum().backward()  # probes only monitor
    assert model.encoders["audio"].blocks[0].attn.qkv.weight.grad is None


def test_jmt_pads_the_shorter_sequence_with_the_longer_ones_extra_tokens():
    model = MultimodalTransformer(AV, C, small(fusion="jmt", fusion_layers=2)).eval()
    torch.manual_seed(1)
    a, v = torch.randn(B, 3, 32), torch.randn(B, 5, 32)
    with torch.no_grad():
        out = model.jmt({"audio": a, "visual": v})
        padded = model.jmt({"audio": torch.cat([a, v[:, 3:]], 1), "visual": v})
        torch.testing.assert_close(out, padded, rtol=0, atol=0)
        moved = v.clone()
        moved[:, 4] += 1  # a token only the padding copies into the audio sequence
        assert not torch.allclose(model.jmt({"audio": a, "visual": moved}), out)


def test_jmt_needs_two_modalities():
    with pytest.raises(ValueError, match="jmt' pairs two modalities; the data set has 3"):
        MultimodalTransformer(SPECS, C, small(fusion="jmt"))


def test_mult_last_row_path_equals_the_full_computation():
    torch.manual_seed(0)
    enc = MulTEncoder(30, 5, 3, 0.1, 0.1, 0.25).eval()
    x, src = torch.randn(B, 7, 30), torch.randn(B, 4, 30)
    with torch.no_grad():
        for source in (None, src):
            full = enc(x, source)
            torch.testing.assert_close(enc(x, source, last=True), full[:, -1:])
            assert full.shape == x.shape


def _reference_mult_encoder(enc: MulTEncoder, x: torch.Tensor, source: torch.Tensor | None,
                            causal: bool) -> torch.Tensor:
    """MulT's reference TransformerEncoder (modules/transformer.py, multihead_attention.py) in
    eval mode, written out from its formulas on ``enc``'s weights: per head softmax(q kᵀ /
    sqrt(d_h) + mask) v with mask -inf where key j > query i + |Lk - Lq|."""
    import math

    import torch.nn.functional as F

    from rollingq.fusions.mult import sinusoidal_positions

    def embed(t):
        return math.sqrt(t.shape[-1]) * t + sinusoidal_positions(t.shape[1], t.shape[2])

    h, src = embed(x), None if source is None else embed(source)
    for layer in enc.layers:
        residual = h
        q_in = layer.norm1(h)
        kv_in = q_in if src is None else layer.norm1(src)
        q, k, v = layer.q(q_in), layer.k(kv_in), layer.v(kv_in)
        heads, (_, lq, d), lk = layer.heads, q.shape, kv_in.shape[1]
        dh = d // heads
        mask = torch.zeros(lq, lk)
        if causal:
            for i in range(lq):
                for j in range(lk):
                    if j > i + abs(lk - lq):
                        mask[i, j] = float("-inf")
        out = []
        for head in range(heads):
            sl = slice(head * dh, (head + 1) * dh)
            w = (q[..., sl] * dh ** -0.5) @ k[..., sl].transpose(1, 2) + mask
            out.append(w.softmax(-1) @ v[..., sl])
        h = residual + layer.o(torch.cat(out, -1))
        residual = h
        h = residual + layer.fc2(F.relu(layer.fc1(layer.norm2(h))))
    return enc.norm(h)


@pytest.mark.parametrize("lq,lk", [(7, 4), (4, 7), (6, None)], ids=["long_target",
                                                                   "long_source", "self"])
def test_mult_causal_mask_is_the_references(lq, lk):
    """With the mask on (the reference's default) the encoder equals the reference's masked
    formulas, off the unmasked ones. The mask masks nothing when the target is at least as long
    as the source; else it changes every row of a crossmodal stack but the last (each row sees
    only the source), and in self-attention every row of the stack's output."""
    torch.manual_seed(0)
    x = torch.randn(B, lq, 30)
    src = None if lk is None else torch.randn(B, lk, 30)
    masked = MulTEncoder(30, 5, 2, 0.1, 0.1, 0.25, causal=True).eval()
    plain = MulTEncoder(30, 5, 2, 0.1, 0.1, 0.25, causal=False).eval()
    plain.load_state_dict(masked.state_dict())
    with torch.no_grad():
        got, free = masked(x, src), plain(x, src)
        torch.testing.assert_close(got, _reference_mult_encoder(masked, x, src, True),
                                   rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(free, _reference_mult_encoder(plain, x, src, False),
                                   rtol=1e-5, atol=1e-5)
        if lk is not None and lq >= lk:
            torch.testing.assert_close(got, free, rtol=0, atol=0)
        else:
            assert (got[:, :-1] - free[:, :-1]).abs().max() > 1e-3  # the mask matters
        if lk is not None:  # the last query sees every key
            torch.testing.assert_close(got[:, -1], free[:, -1])
        torch.testing.assert_close(masked(x, src, last=True), got[:, -1:])
    assert ModelConfig().mult_causal_mask is True  # the reference's default


def test_mult_draws_its_keys_and_values_embedding_dropout_apart():
    """The reference drops out the source's keys and values separately: the encoder in train
    mode equals the eval-mode layers fed three draws in the reference's order (target, keys,
    values), and not the same run with one draw shared by keys and values."""
    torch.manual_seed(0)
    enc = MulTEncoder(30, 5, 1, 0.0, 0.0, 0.5)
    x, src = torch.randn(B, 5, 30), torch.randn(B, 4, 30)
    torch.manual_seed(7)
    with torch.no_grad():
        got = enc.train()(x, src)
        enc.eval()
        torch.manual_seed(7)
        drop = lambda t: torch.nn.functional.dropout(enc._embed(t), 0.5, True)
        h, keys, values = drop(x), drop(src), drop(src)
        want = enc.norm(enc.layers[0](h, keys, value=values))
        shared = enc.norm(enc.layers[0](h, keys, value=keys))
    torch.testing.assert_close(got, want)
    assert not torch.allclose(got, shared)


def test_mult_layers_start_as_the_reference():
    """q, k, v: the slices of one xavier-uniform (3D, D) matrix (bound sqrt(6 / 4D), std
    sqrt(1 / 2D): 0.129 at D = 30, not the separate xavier-normal's 0.183); o, fc1, fc2
    xavier-uniform; biases 0 — in the model, after the model's own init."""
    import math

    torch.manual_seed(0)
    model = MultimodalTransformer(AV, C, small(fusion="mult"))
    layer = model.mult.cross["audio"]["visual"].layers[0]
    d = 30
    qkv = torch.cat([layer.q.weight, layer.k.weight, layer.v.weight]).detach()
    assert qkv.abs().max() <= math.sqrt(6 / (4 * d))
    assert abs(float(qkv.std()) / math.sqrt(1 / (2 * d)) - 1) < 0.1
    fc1 = layer.fc1.weight.detach()
    assert fc1.abs().max() <= math.sqrt(6 / (5 * d))
    for lin in (layer.q, layer.k, layer.v, layer.o, layer.fc1, layer.fc2):
        assert not lin.bias.detach().any()
