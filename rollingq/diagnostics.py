"""Diagnostics of a trained model: noise robustness, attention vs. noise, a missing modality,
F1, parameters and FLOPs.

These produce the numbers of the paper's Tables 2-4 for any model the trainer builds. They
evaluate, they never train; every random draw is seeded, so a diagnostic of the same model on
the same split gives the same number.

    confusion_matrix, f1_scores  macro-F1 (and the support-weighted F1) from predictions, in torch
    add_noise                    the three Gaussian noise recipes (absolute, additive, mixing)
    predict                      logits and attention shares over a split, in eval mode
    noise_robustness             accuracy and macro-F1, noise on one modality, per level (Table 3)
    missing_modality             accuracy, macro-F1 and attention share with a modality zeroed
    attention_noise              Table 2: per modality, r and the attention share shift between
                                 clean and noised evaluations; the pooled r beside it
    count_parameters             all tensors, trainable, and the paper's count         (Table 4)
    flops_per_sample             FLOPs of a forward (or forward + backward) pass        (Table 4)
    cremad_shapes                the CREMA-D modality specs, for counting at paper shapes

What each diagnostic measures, on which model: docs/getting-started.md; Table 4's counts:
docs/baselines.md §8.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor, nn
from torch.utils.flop_counter import FlopCounterMode

from rollingq.config import NOISE_RECIPES
from rollingq.data.base import ModalitySpec, Split
from rollingq.fusions.attention import Rotation

Transform = Callable[[dict[str, Tensor], Tensor], dict[str, Tensor]]
Autocast = Callable[[], contextlib.AbstractContextManager]

# The modules whose weights and biases the paper's parameter count covers (Table 4): tokens,
# positional embeddings and buffers are left out.
# The module types thop (the paper's counter) has rules for, matched by exact type as thop does:
# nn.MultiheadAttention (and its out_proj, a Linear subclass) count nothing.
PAPER_MODULES = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.LayerNorm)


def cremad_shapes(frames: int = 3) -> dict[str, ModalitySpec]:
    """The CREMA-D modality specs of the published model.

    Audio is a 257 x 188 log spectrogram (177 tokens with [cls] at patch 16), visual three
    224 x 224 RGB frames (589 tokens with [cls]; one frame, 197 tokens, is the shape Table 4's
    FLOPs were counted at).
    """
    return {
        "audio": ModalitySpec("spectrogram", (257, 188)),
        "visual": ModalitySpec("frames", (frames, 3, 224, 224)),
    }


# -----------------------------------------------------------------------------
# metrics


def confusion_matrix(pred: Tensor, labels: Tensor, num_classes: int) -> Tensor:
    """(C, C) int64 counts on ``labels``' device: row = true class, column = predicted class."""
    index = labels.to(torch.long) * num_classes + pred.to(labels.device, torch.long)
    return torch.bincount(index, minlength=num_classes * num_classes).view(num_classes,
                                                                            num_classes)


def f1_scores(confusion: Tensor) -> dict[str, Tensor]:
    """Macro-F1 and support-weighted F1 of a confusion matrix (0-dim tensors on its device).

    Per class, F1 = 2 TP / (2 TP + FP + FN). ``macro`` averages it over the classes that occur
    among the labels or the predictions (scikit-learn's ``f1_score(average="macro")``, whose
    default labels are those); ``weighted`` averages it with each class's share of the labels
    (``average="weighted"``; MulT's binary F1 on MOSEI).
    """
    c = confusion.double()
    tp = c.diagonal()
    support, predicted = c.sum(1), c.sum(0)
    denom = support + predicted  # 2 TP + FP + FN
    f1 = torch.where(denom > 0, 2 * tp / denom.clamp(min=1), torch.zeros_like(tp))
    present = denom > 0
    macro = f1[present].sum() / present.sum().clamp(min=1)
    weighted = (f1 * support).sum() / support.sum().clamp(min=1)
    return {"macro": macro, "weighted": weighted}


def scores(logits: Tensor, labels: Tensor) -> dict[str, float]:
    """Accuracy and macro-F1 of logits (N, C) against labels (N,)."""
    labels = labels.to(logits.device)
    pred = logits.argmax(1)
    f1 = f1_scores(confusion_matrix(pred, labels, logits.shape[1]))
    correct = (pred == labels).sum().float()  # as rollingq.evaluate.evaluate counts, bit for bit
    return {"acc": (correct / len(labels)).item(), "f1": f1["macro"].item()}


# -----------------------------------------------------------------------------
# noise


def add_noise(
    x: Tensor, level: float, recipe: str, generator: torch.Generator | None = None
) -> Tensor:
    """Adds Gaussian noise to a batch (the input as the model receives it) by one of three recipes.

    - ``absolute``: ``x + λ · N(0, 1)``: λ is the noise's standard deviation in the input's own
      units (MultiBench's white noise, Liang et al. 2021, which the paper's Table 3 cites);
    - ``additive``: ``x + λ · std(x) · N(0, 1)``, std per sample over all non-batch dims
      (population std): λ is the noise-to-signal ratio of each input;
    - ``mixing``: ``(1 − λ) · x + λ · N(0, 1)``: λ interpolates toward pure noise (λ = 1).

    Args:
        x: (B, ...) batch.
        level: λ >= 0; 0 returns ``x`` itself.
        recipe: ``absolute``, ``additive`` or ``mixing``.
        generator: A ``torch.Generator`` on ``x``'s device; the noise is a deterministic
            function of its state.

    Returns:
        The noised batch, same shape, dtype and device as ``x``.

    Raises:
        ValueError: For an unknown recipe or a negative level.
    """
    if recipe not in NOISE_RECIPES:
        raise ValueError(f"unknown noise recipe {recipe!r}; valid: {', '.join(NOISE_RECIPES)}")
    if level < 0:
        raise ValueError(f"`level >= 0` must hold, but got level={level}")
    if level == 0:
        return x
    noise = torch.randn(x.shape, generator=generator, device=x.device, dtype=torch.float32)
    xf = x.float()
    if recipe == "absolute":
        out = xf + level * noise
    elif recipe == "additive":
        std = xf.reshape(x.shape[0], -1).std(1, correction=0)  # (B,)
        out = xf + level * std.view(-1, *[1] * (x.dim() - 1)) * noise
    else:
        out = (1 - level) * xf + level * noise
    return out.to(x.dtype)


# -----------------------------------------------------------------------------
# evaluation


def _device(model: nn.Module) -> torch.device:
    return next(model.parameters()).device


@torch.no_grad()
def predict(
    model: nn.Module, split: Split, batch_size: int, transform: Transform | None = None,
    autocast: Autocast = contextlib.nullcontext,
) -> tuple[Tensor, dict[str, Tensor] | None]:
    """Runs a ``MultimodalTransformer`` over a split in eval mode.

    The model's training flag is restored afterwards. Batches are moved to the model's device.

    Args:
        model: A ``rollingq.model.MultimodalTransformer``.
        split: The split to evaluate, on any device.
        batch_size: Samples a forward pass.
        transform: Optional ``transform(inputs, index) -> inputs`` applied to each batch before
            the forward; ``inputs`` holds the model's modalities on the model's device and
            ``index`` (on the same device) the batch's sample positions in the split.
        autocast: A factory of the context each forward runs in: the training run's precision
            (``rollingq.device.autocast_for``); fp32 by default.

    Returns:
        Logits (N, C) as CPU float32, and the last fusion layer's per-modality attention share
        of the [cls] row, modality -> (N,) CPU float32, or None for fusions without attention.
    """
    assert batch_size >= 1, f"`batch_size >= 1` must hold, but got batch_size={batch_size}"
    assert len(split) > 0, "the split is empty"
    device = _device(model)
    modalities = list(getattr(model, "modalities", split.inputs))
    was_training = model.training
    model.eval()
    logits, shares = [], []
    try:
        start = 0
        for b in split.batches(batch_size):
            end = start + len(b)
            stored = {m: x.to(device, non_blocking=True) for m, x in b.inputs.items()}
            inputs = split.transform(stored) if split.transform is not None else stored
            inputs = {m: inputs[m] for m in modalities}
            if transform is not None:
                inputs = transform(inputs, torch.arange(start, end, device=device))
            with autocast():
                out = model(inputs)
            logits.append(out.logits.float())  # kept on the device: one transfer at the end
            if out.share is not None:
                shares.append({m: s.float() for m, s in out.share.items()})
            start = end
    finally:
        model.train(was_training)
    share = {m: torch.cat([s[m] for s in shares]).cpu() for m in shares[0]} if shares else None
    return torch.cat(logits).cpu(), share


def _check(split: Split, modality: str | None = None, recipe: str | None = None) -> None:
    if modality is not None and modality not in split.inputs:
        raise ValueError(f"unknown modality {modality!r}; the split has: {', '.join(split.inputs)}")
    if recipe is not None and recipe not in NOISE_RECIPES:
        raise ValueError(f"unknown noise recipe {recipe!r}; valid: {', '.join(NOISE_RECIPES)}")


def _noised(modality: str, level: float, recipe: str, generator: torch.Generator) -> Transform:
    """A ``predict`` transform adding noise to one modality (drawn from ``generator``)."""

    def transform(inputs: dict[str, Tensor], index: Tensor) -> dict[str, Tensor]:
        if modality in inputs:
            inputs = {**inputs, modality: add_noise(inputs[modality], level, recipe, generator)}
        return inputs

    return transform


def noise_robustness(
    model: nn.Module,
    split: Split,
    modality: str,
    levels: list[float],
    recipe: str = "absolute",
    batch_size: int = 256,
    seed: int = 0,
    autocast: Autocast = contextlib.nullcontext,
    clean: Tensor | None = None,
) -> dict[float, dict[str, float]]:
    """Accuracy and macro-F1 with Gaussian noise on one modality at each noise level (Table 3).

    Every level draws its noise from a generator seeded with ``seed``, so the levels share
    the same underlying N(0, 1) draws (common random numbers: the curve changes only
    through λ) and the result is deterministic for a given batch size and device.

    Args:
        model: A ``rollingq.model.MultimodalTransformer``.
        split: The split to evaluate (usually test).
        modality: The modality to noise; a modality the model does not use changes nothing.
        levels: Noise levels λ >= 0; 0 gives the clean accuracy.
        recipe: ``absolute``, ``additive`` or ``mixing``, see `add_noise`.
        batch_size: Samples a forward pass.
        seed: Seed of the noise.
        autocast: The forward's precision context, see `predict`.
        clean: The clean logits of ``split`` (``predict``), used for λ = 0 instead of a pass.

    Returns:
        Level -> ``{"acc", "f1"}``, accuracy and macro-F1 in [0, 1].

    Raises:
        ValueError: For a modality the split lacks, an unknown recipe or a negative level.
    """
    _check(split, modality, recipe)
    device = _device(model)
    result = {}
    for level in levels:
        if level == 0 and clean is not None:
            logits = clean
        else:
            generator = torch.Generator(device=device).manual_seed(seed)
            logits, _ = predict(model, split, batch_size,
                                _noised(modality, level, recipe, generator), autocast)
        result[float(level)] = scores(logits, split.labels)
    return result


def curve_summary(levels: list[float], acc: list[float]) -> dict[str, float | None]:
    """A noise curve's area (trapezoid rule over λ, in accuracy x λ units), and its drop from
    λ = 0 to the largest level, absolute and relative to the clean accuracy (None without a
    λ = 0 and a larger level)."""
    order = sorted(range(len(levels)), key=lambda i: levels[i])
    x = [float(levels[i]) for i in order]
    y = [float(acc[i]) for i in order]
    area = sum((x[i + 1] - x[i]) * (y[i + 1] + y[i]) / 2 for i in range(len(x) - 1))
    if x[0] != 0 or len(x) < 2:
        return {"auc": area if len(x) > 1 else None, "drop": None, "rel_drop": None}
    drop = y[0] - y[-1]
    return {"auc": area, "drop": drop, "rel_drop": drop / y[0] if y[0] > 0 else None}


def missing_modality(
    model: nn.Module, split: Split, modality: str, batch_size: int = 256,
    autocast: Autocast = contextlib.nullcontext,
) -> dict[str, float | None]:
    """Accuracy, macro-F1 and the attention share left on ``modality`` when its input (as the
    model receives it, after the split's transform) is all zeros at test time.

    Returns:
        ``{"acc", "f1", "share"}``; ``share`` (the modality's mean share of the last fusion
        layer's [cls] attention) is None for fusions without attention shares.
    """
    _check(split, modality)

    def zeroed(inputs: dict[str, Tensor], index: Tensor) -> dict[str, Tensor]:
        if modality in inputs:
            inputs = {**inputs, modality: torch.zeros_like(inputs[modality])}
        return inputs

    logits, shares = predict(model, split, batch_size, zeroed, autocast)
    out: dict[str, float | None] = dict(scores(logits, split.labels))
    out["share"] = shares[modality].double().mean().item() if shares else None
    return out


def attention_noise(
    model: nn.Module,
    split: Split,
    level: float = 1.0,
    recipe: str = "mixing",
    draws: int = 1,
    batch_size: int = 256,
    seed: int = 0,
    autocast: Autocast = contextlib.nullcontext,
    clean_shares: dict[str, Tensor] | None = None,
) -> dict[str, Any] | None:
    """Does attention follow input quality? (Table 2.)

    Every sample is evaluated clean and, for each modality m, with noise on m alone
    (``draws`` independent draws a sample, seeded by ``seed`` and m's position). With
    ``share_m`` the share of the last fusion layer's [cls] attention on m's tokens:

    - per modality, ``r``: the point-biserial (Pearson) r between ``share_m`` and "m is
      noised" over the clean and the m-noised evaluations (N + N·draws values), and ``shift``:
      the mean over samples of (m-noised − clean) ``share_m``, in share units, with its 95 %
      t interval over samples (``scipy.stats.ttest_1samp``; the sample is the unit, its
      draws averaged). A model whose attention moves away from a noised input has r < 0 and
      shift < 0.
    - ``pooled``: the variant this project reported first (``_pooled``), for comparison with
      the paper only.

    The paper reports positive values (0.52 -> 0.76 on CREMA-D, higher is better) without its
    protocol or sign; ``-r`` is the reading under which moving away from noise is positive.

    Args:
        model: A ``rollingq.model.MultimodalTransformer``.
        split: The split to evaluate.
        level: Noise level λ, see `add_noise`.
        recipe: ``absolute``, ``additive`` or ``mixing``; ``mixing`` at λ = 1 replaces the input.
        draws: Noise draws a sample and modality (>= 1).
        batch_size: Samples a forward pass.
        seed: Seeds the noise and the pooled variant's choice of modality.
        autocast: The forward's precision context, see `predict`.
        clean_shares: The clean shares of ``split`` (``predict``), used instead of a clean pass.

    Returns:
        ``{"recipe", "level", "draws", "samples", "evaluations", "per_modality": {m: {"r",
        "shift", "shift_low", "shift_high", "clean_share", "noised_share"}}, "pooled": {"r",
        "adaptivity", "pairs"}}``, or None when the model's fusion has no attention shares
        (concat, sum, mbt, unimodal). An r is None when it is undefined (no variation).
    """
    _check(split, recipe=recipe)
    if draws < 1:
        raise ValueError(f"`draws >= 1` must hold, but got draws={draws}")
    device = _device(model)
    modalities = list(getattr(model, "modalities", split.inputs))
    if clean_shares is None:
        _, clean_shares = predict(model, split, batch_size, autocast=autocast)
    if clean_shares is None:
        return None
    n = len(split)
    noised: list[list[dict[str, Tensor]]] = []  # [modality j][draw d]: shares when j is noised
    for j, m in enumerate(modalities):
        generator = torch.Generator(device=device).manual_seed(seed * 1_000 + j)
        noised.append([predict(model, split, batch_size,
                               _noised(m, level, recipe, generator), autocast)[1]
                       for _ in range(draws)])
    per_modality = {m: _moved(clean_shares[m].double(),
                              torch.stack([s[m].double() for s in noised[j]]))
                    for j, m in enumerate(modalities)}
    return {"recipe": recipe, "level": float(level), "draws": draws, "samples": n,
            "evaluations": n * (1 + len(modalities) * draws), "per_modality": per_modality,
            "pooled": _pooled(noised, modalities, n, seed)}


def _moved(clean: Tensor, hit: Tensor) -> dict[str, float | None]:
    """One modality's r and share shift from its clean shares (N,) and its noised ones (draws,
    N), as ``attention_noise`` defines them."""
    n, draws = len(clean), len(hit)
    shift = hit.mean(0) - clean
    share = torch.cat([clean, hit.reshape(-1)])
    flag = torch.cat([torch.zeros(n), torch.ones(n * draws)]).double()
    low, high = _t_interval(shift)
    return {"r": _pearson(share, flag), "shift": shift.mean().item(), "shift_low": low,
            "shift_high": high, "clean_share": clean.mean().item(),
            "noised_share": hit.mean().item()}


def _pooled(noised: list[list[dict[str, Tensor]]], modalities: list[str], n: int,
            seed: int) -> dict[str, Any]:
    """The pooled variant: each sample noised on one modality chosen uniformly at random
    (seeded; its first draw), r over all (sample, modality) pairs of the share and "this
    modality was the noised one" (no clean evaluation), ``adaptivity = -r``. Pooling puts the
    gap between the modalities' shares into the variance, so a model with balanced attention
    gets a larger |r| for the same shift."""
    choice = torch.randint(len(modalities), (n,), generator=torch.Generator().manual_seed(seed))
    rows = torch.arange(n)
    share = torch.cat([torch.stack([noised[j][0][m] for j in range(len(modalities))])[choice, rows]
                       for m in modalities]).double()  # (M * N,): m's share under i's condition
    flag = torch.cat([(choice == j) for j in range(len(modalities))]).double()
    r = _pearson(share, flag)
    return {"r": r, "adaptivity": None if r is None else -r, "pairs": len(share)}


def _t_interval(x: Tensor, confidence: float = 0.95) -> tuple[float | None, float | None]:
    """The t interval of the mean of ``x`` (None, None when it is undefined: n < 2 or no spread)."""
    from scipy import stats

    if len(x) < 2 or float(x.std()) == 0.0:
        return None, None
    ci = stats.ttest_1samp(x.numpy(), 0.0).confidence_interval(confidence)
    return float(ci.low), float(ci.high)


def _pearson(x: Tensor, y: Tensor) -> float | None:
    """Pearson correlation of two 1-D tensors; None when either does not vary."""
    x, y = x - x.mean(), y - y.mean()
    denom = (x.square().sum() * y.square().sum()).sqrt().item()
    if not math.isfinite(denom) or denom <= 1e-12 * len(x):
        return None
    return (x * y).sum().item() / denom


# -----------------------------------------------------------------------------
# size and cost


def count_parameters(model: nn.Module) -> dict[str, int]:
    """Parameter counts, including the paper's convention (Table 4).

    Works on models built under ``torch.device("meta")`` (only shapes are read).

    Returns:
        ``all_tensors``: every parameter and buffer element (rotation matrices and counts
        included); ``trainable``: parameters that require grad; ``paper``: what thop, the
        paper's counter, counts: the weights and biases of modules of exactly the types Linear,
        Conv1d/2d/3d and LayerNorm (no [cls] tokens, positional embeddings or buffers, nothing of
        an ``nn.MultiheadAttention``), which is what gives the published 59.87 M at CREMA-D
        shapes;
        ``paper_with_rotation``: ``paper`` plus every RollingQ rotation matrix (60.46 M).
    """
    paper = sum(
        p.numel()
        for module in model.modules()
        if type(module) in PAPER_MODULES
        for p in module.parameters(recurse=False)
    )
    rotation = sum(m.matrix.numel() for m in model.modules() if isinstance(m, Rotation))
    return {
        "all_tensors": sum(p.numel() for p in model.parameters())
        + sum(b.numel() for b in model.buffers()),
        "trainable": sum(p.numel() for p in model.parameters() if p.requires_grad),
        "paper": paper,
        "paper_with_rotation": paper + rotation,
    }


def flops_per_sample(
    model: nn.Module, inputs: dict[str, Tensor], train_step: bool = False
) -> float:
    """FLOPs of one pass on a batch, divided by the batch size.

    Counted by ``torch.utils.flop_counter.FlopCounterMode`` (matmuls, convolutions and
    attention; one multiply-add is 2 FLOPs). The model runs in whatever mode it is in.
    With ``train_step`` the backward of the summed logits is counted too; gradients are
    taken with ``torch.autograd.grad``, so no ``.grad`` of the model is touched.

    Args:
        model: A ``rollingq.model.MultimodalTransformer`` (meta-device models work).
        inputs: Modality -> (B, ...) batch; moved to the model's device.
        train_step: Count forward + backward instead of forward only.

    Returns:
        FLOPs per sample.
    """
    device = _device(model)
    inputs = {m: x.to(device) for m, x in inputs.items()}
    batch = next(iter(inputs.values())).shape[0]
    counter = FlopCounterMode(display=False)
    # Grad mode stays on even for the forward alone: the counter's module tracker fails on
    # views of parameters made under no_grad (they require grad but have no grad_fn).
    with counter, torch.enable_grad():
        out = model(inputs)
        if train_step:
            params = [p for p in model.parameters() if p.requires_grad]
            torch.autograd.grad(out.logits.sum(), params, allow_unused=True)
    return counter.get_total_flops() / batch
