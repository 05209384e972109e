"""rollingq.pretrained: fake checkpoints written to disk and mapped onto two streams.

The fake timm checkpoint has the timm key layout of ViT-B/16 (14 x 14 patch grid) at a small
width: D = 32, patch 4, 2 blocks. The model has a spectrogram stream (56 x 40, transposed as
published -> a 10 x 14 grid) and a frames stream (2 frames of 56 x 56 -> 14 x 14 a frame). The
fake published checkpoint has the published code's key names at the model's own shapes.
"""

import os
import subprocess
import sys

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
    # A grid whose value is the row index h (the same in every channel): bilinear resizing
    # (align_corners=False) of a linear function from 14 to 10 rows samples it at
    # (h' + 0.5) * 14 / 10 - 0.5; the 14 columns are copied.
    rows = torch.arange(GRID, dtype=torch.float32).repeat_interleave(GRID)  # row-major -> h
    state["pos_embed"][0, 1:] = rows[:, None].expand(-1, D)
    m = model()
    load_pretrained(m, save(state, tmp_path))
    audio, visual = m.encoders["audio"].pos, m.encoders["visual"].pos
    assert audio.shape == (1, 1 + 10 * 14, D) and visual.shape == (1, 1 + 2 * 14 * 14, D)
    assert torch.equal(audio[0, 0], state["pos_embed"][0, 0])
    assert torch.equal(visual[0, 0], state["pos_embed"][0, 0])
    expected = ((torch.arange(10) + 0.5) * GRID / 10 - 0.5).repeat_interleave(14)  # (140,)
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


# --- the published layout -------------------------------------------------------------------


def fake_published(depth=2, seed=0, prefix=""):
    """A state dict in the published code's names, at the shapes of ``model()``'s streams."""
    g = torch.Generator().manual_seed(seed)
    n_audio, n_video = 10 * 14, 2 * 14 * 14
    shapes = {
        "cls_token_audio": (1, 1, D),
        "pos_embed_audio": (1, 1 + n_audio, D),
        "patch_embed_audio.proj.weight": (D, 1, P, P),
        "patch_embed_audio.proj.bias": (D,),
        "norm_audio.weight": (D,),
        "norm_audio.bias": (D,),
        "cls_token_video": (1, 1, D),
        "pos_embed_video": (1, 1 + n_video, D),
        "patch_embed_video.proj.weight": (D, 3, 1, P, P),
        "patch_embed_video.proj.bias": (D,),
        "norm_video.weight": (D,),
        "norm_video.bias": (D,),
        "bot_token": (1, 4, D),
    }
    for stream in ("audio", "video"):
        shapes.update(
            {f"{stream}_blocks.{i}.{k}": v for i in range(depth) for k, v in BLOCK.items()}
        )
    return {prefix + k: torch.randn(v, generator=g) for k, v in shapes.items()}


def published_tokens(state, stream, x):
    """The published construction of a stream's input tokens, written out independently:
    audio (B, H, W) -> unsqueeze(1).transpose(2, 3) -> Conv2d -> flatten(2).transpose(1, 2);
    frames (B, T, 3, H, W) -> (B, 3, T, H, W) -> Conv3d -> flatten(2).transpose(1, 2); then
    [cls; patches] + pos."""
    w, b = state[f"patch_embed_{stream}.proj.weight"], state[f"patch_embed_{stream}.proj.bias"]
    if stream == "audio":
        z = torch.nn.functional.conv2d(x.unsqueeze(1).transpose(2, 3), w, b, stride=P)
    else:
        z = torch.nn.functional.conv3d(x.transpose(1, 2), w, b, stride=(1, P, P))
    z = z.flatten(2).transpose(1, 2)
    cls = state[f"cls_token_{stream}"].expand(x.shape[0], -1, -1)
    return torch.cat([cls, z], 1) + state[f"pos_embed_{stream}"]


def test_published_layout_loads_and_gives_the_published_patch_tokens(tmp_path):
    state = fake_published()
    m = model()
    report = load_pretrained(m, save(state, tmp_path, "vit_pretrain.pth"))
    assert report.layout == "published" and "published layout" in report.summary()
    assert report.missing == [] and report.mismatched == []
    assert report.unexpected == ["bot_token"]  # the published code drops it too
    assert len(report.loaded) == len(state) - 1
    torch.manual_seed(1)
    audio, frames = torch.randn(2, 56, 40), torch.randn(2, 2, 3, 56, 56)
    with torch.no_grad():
        torch.testing.assert_close(m.encoders["audio"].tokens(audio),
                                   published_tokens(state, "audio", audio), rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(m.encoders["visual"].tokens(frames),
                                   published_tokens(state, "video", frames), rtol=1e-5, atol=1e-5)
    enc = m.encoders["visual"]
    assert torch.equal(enc.blocks[1].mlp.fc1.weight, state["video_blocks.1.mlp.fc1.weight"])
    assert torch.equal(enc.norm.bias, state["norm_video.bias"])


def test_a_whole_published_model_checkpoint_loads_its_encoders(tmp_path):
    state = fake_published(prefix="module.encoder.")
    state["module.fusion_module.attn.w_qs.weight"] = torch.randn(D, D)
    state["module.a_head.weight"] = torch.randn(6, D)
    report = load_pretrained(model(), save({"model": state}, tmp_path))
    assert report.layout == "published" and report.missing == []
    assert sorted(report.unexpected) == ["a_head.weight", "bot_token",
                                         "fusion_module.attn.w_qs.weight"]


def test_published_layout_with_other_frame_count_is_reported(tmp_path):
    state = fake_published()
    state["pos_embed_video"] = torch.randn(1, 1 + 3 * 14 * 14, D)  # 3 frames; the model has 2
    report = load_pretrained(model(), save(state, tmp_path))
    assert report.missing == ["encoders.visual.pos"]
    assert any("pos_embed_video" in x and "(1, 589, 32)" in x for x in report.mismatched)
    assert "pos_embed_video" in report.unexpected


# --- timm ------------------------------------------------------------------------------------

TIMM_VIT = "vit_base_patch16_224"


def timm_vit_file(tmp_path):
    timm = pytest.importorskip("timm")
    torch.manual_seed(0)
    net = timm.create_model(TIMM_VIT, pretrained=False, depth=4)
    return save(net.state_dict(), tmp_path, "timm_vit.pth"), net.state_dict()


def test_a_real_timm_vit_state_dict_maps_onto_every_encoder_key(tmp_path):
    path, state = timm_vit_file(tmp_path)
    specs = {"audio": ModalitySpec("spectrogram", (257, 188)),
             "visual": ModalitySpec("frames", (3, 3, 224, 224))}
    m = MultimodalTransformer(specs, 6, ModelConfig(dim=768, depth=4, heads=12, patch_size=16))
    report = load_pretrained(m, path)
    assert report.layout == "timm" and report.missing == [] and report.mismatched == []
    assert set(report.unexpected) == {"head.weight", "head.bias"}
    assert torch.equal(m.encoders["audio"].blocks[3].attn.qkv.weight,
                       state["blocks.3.attn.qkv.weight"])
    assert m.encoders["audio"].pos.shape == (1, 177, 768)


@pytest.mark.integration
def test_timm_name_offline_fails_in_one_line(tmp_path):
    """The single-run CLI, offline (huggingface_hub reads HF_HUB_OFFLINE when imported, so the
    run is a subprocess), with no cached weights: exit 2 and one line that says what to do."""
    pytest.importorskip("timm")
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path / "hf")}
    run = subprocess.run(
        [sys.executable, "-m", "rollingq.train", "--quiet", "--out", str(tmp_path / "run"),
         "--set", f"model.pretrained=timm:{TIMM_VIT}.augreg_in21k_ft_in1k"],
        capture_output=True, text=True, env=env, timeout=300,
    )
    assert run.returncode == 2, run.stderr[-2000:]
    lines = run.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: model.pretrained='timm:"), lines
    assert "could not fetch the weights" in lines[0] and "set model.pretrained to" in lines[0]


def test_timm_unknown_model_names_the_fix():
    pytest.importorskip("timm")
    with pytest.raises(ValueError, match="has no model 'vit_nonexistent'"):
        load_pretrained(model(), "timm:vit_nonexistent")


@pytest.mark.integration
def test_timm_name_without_timm_says_how_to_install():
    code = ("import sys; sys.modules['timm'] = None\n"  # what `import timm` meets without timm
            "from rollingq.pretrained import timm_state_dict\n"
            "try:\n    timm_state_dict('vit_base_patch16_224')\n"
            "except ValueError as e:\n    print(e)\n")
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert "needs timm, which is not installed" in run.stdout
    assert "pip install -e '.[pretrained]'" in run.stdout
