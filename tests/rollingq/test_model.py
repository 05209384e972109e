"""Model: shapes for every fusion, the output record, the identity rotation, buffers."""

import pytest
import torch

from rollingq.config import ModelConfig
from rollingq.data.base import ModalitySpec
from rollingq.model import MultimodalTransformer

SPECS = {
    "audio": ModalitySpec("spectrogram", (32, 24)),
    "visual": ModalitySpec("frames", (2, 3, 16, 16)),
    "text": ModalitySpec("sequence", (5, 12)),
}
B, C = 3, 5


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


@pytest.mark.parametrize("fusion_layers", [1, 2])
def test_identity_rotation_gives_exactly_the_unrotated_output(fusion_layers):
    model = MultimodalTransformer(SPECS, C, small(fusion_layers=fusion_layers)).eval()
    x = inputs()
    rotated = model(x)
    for r in model.rotations:
        r.forward = lambda q: q  # bypass the rotation entirely
    plain = model(x)
    assert torch.equal(rotated.logits, plain.logits)
    assert torch.equal(rotated.attention, plain.attention)


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
    want = spec.proj(x.unsqueeze(1)).flatten(2).transpose(1, 2)
    assert want.shape == (3, 16 * 11, 24)
    torch.testing.assert_close(spec(x), want, rtol=1e-5, atol=1e-5)
    tube = TubeletEmbed(24, 16)
    frames = torch.randn(2, 3, 3, 40, 50)
    want = tube.proj(frames.transpose(1, 2)).flatten(2).transpose(1, 2)
    assert want.shape == (2, 3 * 2 * 3, 24)
    torch.testing.assert_close(tube(frames), want, rtol=1e-5, atol=1e-5)
    (tube(frames).square().sum()).backward()
    assert tube.proj.weight.grad is not None and tube.proj.weight.grad.abs().sum() > 0
