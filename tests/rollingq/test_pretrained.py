"""rollingq.pretrained: a fake timm-style ViT written to disk and mapped onto two streams.

The fake checkpoint has the timm key layout of ViT-B/16 (14 x 14 patch grid) at a small width:
D = 32, patch 4, 2 blocks. The model has a spectrogram stream (56 x 40 -> a 14 x 10 grid) and
a frames stream (2 frames of 56 x 56 -> 14 x 14 a frame).
"""

import pytest
import torch

from rollingq.config import ModelConfig
from rollingq.data.base import ModalitySpec
from rollingq.model import MultimodalTransformer
from rollingq.pretrained import LoadReport, load_pretrained

D, P, GRID = 32, 4, 14
SPECS = {
    "audio": ModalitySpec("spectrogram", (56, 40)),
    "visual": ModalitySpec("frames", (2, 3, 56, 56)),
}
BLOCK = {  # timm block key -> shape
    "norm1.weight": (D,),
    "norm1.bias": (D,),
    "attn.qkv.weight": (3 * D, D),
    "attn.qkv.bias": (3 * D,),
    "attn.proj.weight": (D, D),
    "attn.proj.bias": (D,),
    "norm2.weight": (D,),
    "norm2.bias": (D,),
    "mlp.fc1.weight": (4 * D, D),
    "mlp.fc1.bias": (4 * D,),
    "mlp.fc2.weight": (D, 4 * D),
    "mlp.fc2.bias": (D,),
}


def fake_vit(depth=2, seed=0):
    g = torch.Generator().manual_seed(seed)
    shapes = {
        "cls_token": (1, 1, D),
        "pos_embed": (1, 1 + GRID * GRID, D),
        "patch_embed.proj.weight": (D, 3, P, P),
        "patch_embed.proj.bias": (D,),
        "norm.weight": (D,),
        "norm.bias": (D,),
        "head.weight": (1000, D),
        "head.bias": (1000,),
    }
    shapes.update({f"blocks.{i}.{k}": s for i in range(depth) for k, s in BLOCK.items()})
    return {k: torch.randn(s, generator=g) for k, s in shapes.items()}


def model(depth=2, specs=SPECS):
    torch.manual_seed(0)
    return MultimodalTransformer(specs, 6, ModelConfig(dim=D, depth=depth, heads=4, patch_size=P))


def save(state, tmp_path, name="vit.pth"):
    path = tmp_path / name
    torch.save(state, path)
    return path


def test_blocks_norm_and_cls_are_copied(tmp_path):
    state = fake_vit()
    m = model()
    report = load_pretrained(m, save(state, tmp_path))
    assert isinstance(report, LoadReport)
    for stream in ("audio", "visual"):
        enc = m.encoders[stream]
        for i in range(2):
            for key in BLOCK:
                got = enc.get_parameter(f"blocks.{i}.{key}")
                assert torch.equal(got, state[f"blocks.{i}.{key}"]), (stream, i, key)
        assert torch.equal(enc.norm.weight, state["norm.weight"])
        assert torch.equal(enc.cls, state["cls_token"])
        assert torch.equal(enc.embed.proj.bias, state["patch_embed.proj.bias"])
    assert report.missing == [] and report.mismatched == []
    assert sorted(report.unexpected) == ["head.bias", "head.weight"]
    assert "encoders.audio.blocks.1.mlp.fc2.bias" in report.loaded
    assert "loaded" in report.summary() and "head.weight" in report.summary()


def test_patch_embeddings(tmp_path):
    state = fake_vit()
    m = model()
    load_pretrained(m, save(state, tmp_path))
    w = state["patch_embed.proj.weight"]  # (D, 3, p, p)
    audio, visual = m.encoders["audio"].embed.proj, m.encoders["visual"].embed.proj
    assert audio.weight.shape == (D, 1, P, P)
    torch.testing.assert_close(audio.weight[:, 0], (w[:, 0] + w[:, 1] + w[:, 2]) / 3)
    assert torch.equal(visual.weight, w.unsqueeze(2))  # (D, 3, 1, p, p)


def test_positional_embeddings_are_resized_and_tiled(tmp_path):
    state = fake_vit()
    # A grid whose value is the column index w (the same in every channel): bilinear resizing
    # (align_corners=False) of a linear function from 14 to 10 columns samples it at
    # (w' + 0.5) * 14 / 10 - 0.5.
    cols = torch.arange(GRID, dtype=torch.float32).repeat(GRID)  # row-major (h, w) -> w
    state["pos_embed"][0, 1:] = cols[:, None].expand(-1, D)
    m = model()
    load_pretrained(m, save(state, tmp_path))
    audio, visual = m.encoders["audio"].pos, m.encoders["visual"].pos
    assert audio.shape == (1, 1 + 14 * 10, D) and visual.shape == (1, 1 + 2 * 14 * 14, D)
    assert torch.equal(audio[0, 0], state["pos_embed"][0, 0])
    assert torch.equal(visual[0, 0], state["pos_embed"][0, 0])
    expected = ((torch.arange(10) + 0.5) * GRID / 10 - 0.5).repeat(14)  # (140,)
    torch.testing.assert_close(audio[0, 1:], expected[:, None].expand(-1, D))
    grid = state["pos_embed"][0, 1:]  # 14 x 14 -> 14 x 14 is a plain copy, once per frame
    assert torch.equal(visual[0, 1:197], grid) and torch.equal(visual[0, 197:], grid)


def test_wrapped_state_dict_and_sequence_stream(tmp_path):
    specs = {"audio": SPECS["audio"], "text": ModalitySpec("sequence", (5, 7))}
    m = model(specs=specs)
    report = load_pretrained(m, save({"model": fake_vit()}, tmp_path))
    assert {
        "encoders.text.embed.proj.weight",
        "encoders.text.embed.proj.bias",
        "encoders.text.pos",
    } <= set(report.missing)
    assert "encoders.text.blocks.0.attn.qkv.weight" in report.loaded
    assert "encoders.audio.embed.proj.weight" in report.loaded


def test_shallower_file_reports_missing_blocks(tmp_path):
    report = load_pretrained(model(depth=2), save(fake_vit(depth=1), tmp_path))
    missing = {k for k in report.missing if ".blocks.1." in k}
    assert len(missing) == 2 * len(BLOCK)
    assert "encoders.visual.blocks.1.attn.qkv.weight" in missing
    assert not any(".blocks.0." in k for k in report.missing)


def test_deeper_file_reports_unused_blocks(tmp_path):
    report = load_pretrained(model(depth=1), save(fake_vit(depth=2), tmp_path))
    assert "blocks.1.attn.qkv.weight" in report.unexpected and report.missing == []


def test_wrong_width_is_reported_not_crashed(tmp_path):
    state = fake_vit()
    state["blocks.0.mlp.fc1.weight"] = torch.randn(4 * D, D + 1)
    report = load_pretrained(model(), save(state, tmp_path))
    assert "encoders.audio.blocks.0.mlp.fc1.weight" in report.missing
    assert "blocks.0.mlp.fc1.weight" in report.unexpected
    assert any("blocks.0.mlp.fc1.weight" in p and "(128, 33)" in p for p in report.mismatched)


def test_unrelated_state_dict_fails_loudly(tmp_path):
    path = save(
        {"conv1.weight": torch.randn(8, 3, 3, 3), "fc.bias": torch.randn(10)},
        tmp_path,
        "resnet.pth",
    )
    with pytest.raises(ValueError, match="resnet.pth"):
        load_pretrained(model(), path)


def test_other_width_fails_loudly(tmp_path):
    path = save(fake_vit(), tmp_path)
    m = MultimodalTransformer(SPECS, 6, ModelConfig(dim=16, depth=1, heads=4, patch_size=P))
    with pytest.raises(ValueError, match="vit.pth"):
        load_pretrained(m, path)


def test_missing_file_names_the_config_key(tmp_path):
    with pytest.raises(FileNotFoundError, match="model.pretrained"):
        load_pretrained(model(), tmp_path / "nope.pth")


def test_not_a_state_dict(tmp_path):
    path = tmp_path / "junk.pth"
    path.write_bytes(b"not a pickle")
    with pytest.raises(ValueError, match="junk.pth"):
        load_pretrained(model(), path)
