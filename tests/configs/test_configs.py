"""configs/: every single-run config loads, says what it is and how to run it; the published one
holds the published code's values (each checked against METHOD.md's text) and trains."""

from __future__ import annotations

import math
import re
from pathlib import Path

import pytest

from rollingq.config import build_config
from rollingq.train import fit
from tests.rollingq.data.fakes import TINY_MODEL, make_cremad

ROOT = Path(__file__).resolve().parents[2]
CONFIGS = sorted((ROOT / "configs").glob("*.yaml"))
METHOD = ROOT.parent / "shared" / "METHOD.md"

# config key -> (published value, the words of METHOD.md it rests on; None: not in METHOD.md,
# read from the published code: main.py has no autocast, and transformers' schedule function)
PUBLISHED = {
    "model.fusion": ("attn", "exactly one single-head attention"),
    "model.fusion_layers": (1, "exactly one single-head attention"),
    "model.dim": (768, "4 pre-norm blocks (dim 768, 12 heads, MLP ×4"),
    "model.depth": (4, "4 pre-norm blocks (dim 768, 12 heads, MLP ×4"),
    "model.heads": (12, "4 pre-norm blocks (dim 768, 12 heads, MLP ×4"),
    "model.mlp_ratio": (4.0, "4 pre-norm blocks (dim 768, 12 heads, MLP ×4"),
    "model.patch_size": (16, "Conv2d(1→768, 16×16, stride 16)"),
    "model.fusion_dropout": (0.2, "attention dropout 0.2 and output dropout 0.2"),
    "rollingq.enabled": (True, "--sigma"),
    "rollingq.beta": (0.0, "`beta=0, sigma=0, r_time=1`"),
    "rollingq.rho": (0.0, "`beta=0, sigma=0, r_time=1`"),
    "rollingq.max_rotations": (1, "`beta=0, sigma=0, r_time=1`"),
    "rollingq.rotation": ("svd", "`svd` = published"),
    "rollingq.air_stat": ("last_batch", "AIR from the **last training batch only**"),
    "rollingq.anchor_stat": ("full_pass", "**extra full forward pass over the training set**"),
    "optim.name": ("sgd", "SGD (momentum 0.9, weight decay 1e-4, lr 1e-3)"),
    "optim.lr": (1e-3, "SGD (momentum 0.9, weight decay 1e-4, lr 1e-3)"),
    "optim.momentum": (0.9, "SGD (momentum 0.9, weight decay 1e-4, lr 1e-3)"),
    "optim.weight_decay": (1e-4, "SGD (momentum 0.9, weight decay 1e-4, lr 1e-3)"),
    "optim.warmup_epochs": (2.5, "cosine schedule with linear warm-up of 2.5 epochs"),
    "optim.min_lr_ratio": (0.0, None),
    "optim.schedule": ("published", None),
    "train.epochs": (30, "batch 64; 30 epochs; seed 0"),
    "train.batch_size": (64, "batch 64; 30 epochs; seed 0"),
    "train.seed": (0, "batch 64; 30 epochs; seed 0"),
    "train.precision": ("fp32", None),
}


def test_there_are_configs():
    assert [p.name for p in CONFIGS] >= ["published.yaml"]


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_every_config_loads_and_opens_with_what_it_is_and_how_to_run_it(path):
    lines = path.read_text().splitlines()
    assert lines[0].startswith("# ") and len(lines[0]) > 20, "first line: what the config is"
    header = [line for line in lines if line.startswith("#")]
    run = [line for line in header if line.startswith("# Run: ")]
    assert run and f"--config configs/{path.name}" in run[0]
    build_config(path)  # every key known, every value valid


def test_the_published_values_are_those_of_method_md():
    if not METHOD.exists():
        pytest.skip(f"{METHOD} is not beside the project")
    text = re.sub(r"\s+", " ", METHOD.read_text())
    for key, (_, words) in PUBLISHED.items():
        if words is not None:
            assert re.sub(r"\s+", " ", words) in text, f"{key}: {words!r} not in METHOD.md"


def test_published_config_holds_the_published_values():
    flat = build_config(ROOT / "configs" / "published.yaml",
                        {"data.name": "cremad", "data.root": "/data"}).flat()
    for key, (value, _) in PUBLISHED.items():
        assert flat[key] == value, f"{key}: {flat[key]!r} != published {value!r}"


def test_one_epoch_of_the_published_config_at_tiny_shapes(tmp_path, monkeypatch):
    monkeypatch.setenv("ROLLINGQ_CACHE", str(tmp_path / "cache"))
    make_cremad(tmp_path / "cremad", n_train=24, n_test=6)
    cfg = build_config(ROOT / "configs" / "published.yaml", {
        "data.name": "cremad", "data.root": str(tmp_path / "cremad"), "data.frame_size": 32,
        **TINY_MODEL, "train.epochs": 2, "train.batch_size": 4, "train.device": "cpu"})
    assert cfg.train.precision == "fp32" and cfg.optim.schedule == "published"
    result = fit(cfg)
    assert result.status == "finished" and len(result.history) == 3
    _, first, second = result.history  # epoch -1, the untrained model, first
    assert math.isfinite(first["train_loss"])
    # beta 0, r_time 1: one rotation, at the end of the first epoch, with alpha = 1/2
    assert first["rotated"] == 1 and second["rotated"] == 0 and second["rotations"] == 1
    assert first["alpha"] == pytest.approx(0.5)
    # batch 4: the lr after epoch 0's last batch is steps / int(2.5 steps) of 1e-3
    steps = math.ceil(len(result.data.train) / 4)
    assert steps == 5  # 20 training clips, 4 carved for validation
    assert first["lr"] == pytest.approx(1e-3 * steps / int(2.5 * steps))
