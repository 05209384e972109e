"""The memory estimate (rollingq/memory.py) against what a real CPU step saves for backward,
activation checkpointing (same gradients, less memory), and the CLI."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch

from rollingq.config import build_config
from rollingq.data.base import ModalitySpec
from rollingq.diagnostics import cremad_shapes
from rollingq.memory import activation_bytes, estimate, saved_bytes
from rollingq.model import MultimodalTransformer

ROOT = Path(__file__).resolve().parents[2]
SMALL = {"audio": ModalitySpec("spectrogram", (64, 48)),
         "visual": ModalitySpec("frames", (2, 3, 32, 32))}
SMALL_MODEL = {"model.dim": 64, "model.depth": 2, "model.heads": 4}


def real_saved(specs, classes, cfg, batch, bf16, checkpointing=False):
    torch.manual_seed(0)
    model = MultimodalTransformer(specs, classes, cfg.model).train()
    model.set_activation_checkpointing(checkpointing)
    inputs = {m: torch.randn(batch, *s.shape) for m, s in specs.items()}
    return saved_bytes(model, inputs, torch.zeros(batch, dtype=torch.long), bf16)


@pytest.mark.parametrize("shapes,batch", [("small", 8), ("cremad", 2)])
@pytest.mark.parametrize("bf16", [False, True], ids=["fp32", "bf16"])
def test_the_estimate_matches_the_bytes_a_real_cpu_step_saves(shapes, batch, bf16):
    specs, classes = (SMALL, 6) if shapes == "small" else (cremad_shapes(), 6)
    over = SMALL_MODEL if shapes == "small" else {"data.name": "cremad", "data.root": "/x"}
    cfg = build_config(overrides={**over, "train.batch_size": batch})
    est = activation_bytes(specs, classes, cfg, batch, bf16)  # fake tensors: no compute
    real = real_saved(specs, classes, cfg, batch, bf16)
    assert abs(est / real - 1) < 0.10, (est, real)
    if shapes == "cremad":  # 93 MB a sample in bf16, about 158 MB in fp32 (ViT-B streams)
        assert 80e6 < real / batch < 180e6


def test_activation_checkpointing_gives_the_same_gradients_with_less_memory():
    cfg = build_config(overrides={**SMALL_MODEL, "model.fusion_dropout": 0.0})
    grads, saved = [], []
    for on in (False, True):
        torch.manual_seed(0)
        model = MultimodalTransformer(SMALL, 6, cfg.model).train()
        model.set_activation_checkpointing(on)
        torch.manual_seed(1)
        x = {m: torch.randn(4, *s.shape) for m, s in SMALL.items()}
        out = model(x)
        (out.logits.sum() + sum(p.sum() for p in out.probe_logits.values())).backward()
        grads.append({n: p.grad.clone() for n, p in model.named_parameters()
                      if p.grad is not None})
        saved.append(real_saved(SMALL, 6, cfg, 4, False, on))
    assert grads[0].keys() == grads[1].keys()
    for name, g in grads[0].items():
        torch.testing.assert_close(grads[1][name], g, rtol=1e-5, atol=1e-6, msg=name)
    assert saved[1] < 0.5 * saved[0]
    # the estimate: what is kept, plus one block recomputed at a time in the backward pass
    ck = build_config(overrides={**SMALL_MODEL, "train.activation_checkpointing": True})
    est = activation_bytes(SMALL, 6, ck, 4, False)
    kept = real_saved(SMALL, 6, ck, 4, False, True)
    assert kept < est < kept + (saved[0] - kept) / 2 + 1


def test_the_estimate_counts_weights_gradients_optimizer_and_resident_data():
    cfg = build_config(overrides={"optim.name": "adamw", "train.data_on_device": "always"})
    est = estimate(cfg)
    model = MultimodalTransformer(*_synthetic_specs(cfg), cfg.model)
    n = sum(p.numel() for p in model.parameters())
    assert est.gradients == 4 * n and est.optimizer == 2 * est.gradients
    assert est.data == 2 * (3000 + 1000) * 8 * 16 * 4  # the synthetic inputs, fp32
    sgd = estimate(build_config(overrides={"optim.name": "sgd", "optim.momentum": 0.0}))
    assert sgd.optimizer == 0 and sgd.data == 0
    assert "not counted: the device size decides" in sgd.line()


def _synthetic_specs(cfg):
    from rollingq.data import load_data

    bundle = load_data(cfg.data)
    return bundle.specs, bundle.num_classes


def cli(*args):
    return subprocess.run([sys.executable, "-m", "rollingq.memory", *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=300)


@pytest.mark.integration
def test_cli_fits_does_not_fit_and_bad_input():
    base = ["--set", "data.name=cremad", "--set", "data.root=/nowhere"]
    ok = cli(*base, "--device-gib", "24")
    assert ok.returncode == 0, ok.stderr
    line = ok.stdout.strip()
    assert line.startswith("estimated peak device memory of a training step: ")
    assert "activations " in line and "(batch 64, bf16)" in line and line.endswith("fits in 24 GiB")
    no = cli(*base, "--device-gib", "6")
    assert no.returncode == 3
    (err,) = no.stderr.strip().splitlines()
    assert err.startswith("error: does not fit: ") and "> 6.00 GiB available" in err
    assert "train.activation_checkpointing=true" in err and "--gpus-per-trial" in err
    ck = cli(*base, "--device-gib", "6", "--set", "train.activation_checkpointing=true")
    assert ck.returncode == 0 and "checkpointed" in ck.stdout, ck.stderr
    bad = cli("--set", "train.batch_size=0")
    assert bad.returncode == 2 and bad.stderr.startswith("error: ")
    assert len(bad.stderr.strip().splitlines()) == 1


def test_the_evaluation_forward_is_in_the_estimate_and_its_batch_is_a_fix():
    """Issue 38, finding 4: evaluation runs every epoch at 256 samples (or the training batch
    if larger) while the gradients and momentum are held, and was outside the estimate. Its
    live peak grows with its batch, lies below the training step's saved activations at the
    same batch (no grad: nothing is kept for a backward), and replaces the activations in the
    total when it is the larger; ``train.eval_batch_size`` lowers it and is the first fix."""
    from rollingq.memory import evaluation_bytes, fixes

    ck = build_config(overrides={**SMALL_MODEL, "train.activation_checkpointing": True,
                                 "train.batch_size": 8})
    small, large = (evaluation_bytes(SMALL, 6, ck, b, False) for b in (64, 256))
    assert 3.0 < large / small < 4.5  # linear in the batch, plus the batch-free buffers
    full = build_config(overrides={**SMALL_MODEL, "train.batch_size": 64})
    assert evaluation_bytes(SMALL, 6, full, 64, False) < activation_bytes(SMALL, 6, full, 64,
                                                                          False)
    est = estimate(ck, specs=(SMALL, 6))  # train.device auto: counted for a GPU, in bf16
    assert est.precision == "bf16" and est.eval_batch == 256
    assert est.evaluation == evaluation_bytes(SMALL, 6, ck, 256, True) > est.activations
    assert est.total == (est.weights + est.gradients + est.optimizer + est.data
                         + est.evaluation)
    assert fixes(ck, est, 1).startswith("a smaller train.eval_batch_size (now 256")
    lower = estimate(build_config(overrides={**SMALL_MODEL, "train.activation_checkpointing":
                                             True, "train.batch_size": 8,
                                             "train.eval_batch_size": 8}), specs=(SMALL, 6))
    assert lower.eval_batch == 8 and lower.total < est.total
