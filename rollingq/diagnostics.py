"""Diagnostics of a trained model: noise robustness, attention vs. noise, parameters and FLOPs.

These produce the numbers of the paper's Tables 2-4 (METHOD.md §5) for any model the trainer
builds. They evaluate, they never train; every random draw is seeded, so a diagnostic of the
same model on the same split gives the same number.

    add_noise                    the two Gaussian noise recipes (the paper does not publish its own)
    predict                      logits and attention shares over a split, in eval mode
    noise_robustness             accuracy with noise on one modality at each level     (Table 3)
    attention_noise_correlation  Pearson r between attention share and "was noised"    (Table 2)
    count_parameters             all tensors, trainable, and the paper's count         (Table 4)
    flops_per_sample             FLOPs of a forward (or forward + backward) pass        (Table 4)
    cremad_shapes                the CREMA-D modality specs, for counting at paper shapes
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable

import torch
from torch import Tensor, nn
from torch.utils.flop_counter import FlopCounterMode

from rollingq.config import NOISE_RECIPES
from rollingq.data.base import ModalitySpec, Split
from rollingq.layers import Rotation

Transform = Callable[[dict[str, Tensor], Tensor], dict[str, Tensor]]
Autocast = Callable[[], contextlib.AbstractContextManager]

# The modules whose weights and biases the paper's parameter count covers (METHOD.md §5,
# Table 4): tokens, positional embeddings and buffers are left out.
# The module types thop (the paper's counter) has rules for, matched by exact type as thop does:
# nn.MultiheadAttention (and its out_proj, a Linear subclass) count nothing.
PAPER_MODULES = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.LayerNorm)


def cremad_shapes(frames: int = 3) -> dict[str, ModalitySpec]:
    """The CREMA-D modality specs of the published model (METHOD.md §3-4).

    Audio is a 257 x 188 log spectrogram (177 tokens with [cls] at patch 16), visual three
    224 x 224 RGB frames (589 tokens with [cls]; one frame, 197 tokens, is the shape Table 4's
    FLOPs were counted at).
    """
    return {
        "audio": ModalitySpec("spectrogram", (257, 188)),
        "visual": ModalitySpec("frames", (frames, 3, 224, 224)),
    }


# -----------------------------------------------------------------------------
# noise


def add_noise(
    x: Tensor, level: float, recipe: str, generator: torch.Generator | None = None
) -> Tensor:
    """Adds Gaussian noise to a batch by one of the two recipes.

    The paper (Table 3) does not publish its recipe, so both candidates are offered:

    - ``additive``: ``x + λ · std(x) · N(0, 1)``, std per sample over all non-batch dims
      (population std), so the noise is relative to each input's scale;
    - ``mixing``: ``(1 − λ) · x + λ · N(0, 1)``; at λ = 1 the input is pure noise.

    Args:
        x: (B, ...) batch.
        level: λ >= 0; 0 returns ``x`` itself.
        recipe: ``additive`` or ``mixing``.
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
    if recipe == "additive":
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
            (``rollingq.train.autocast_for``); fp32 by default.

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


def _accuracy(logits: Tensor, labels: Tensor) -> float:
    return (logits.argmax(1) == labels.cpu()).float().mean().item()


def noise_robustness(
    model: nn.Module,
    split: Split,
    modality: str,
    levels: list[float],
    recipe: str = "additive",
    batch_size: int = 256,
    seed: int = 0,
    autocast: Autocast = contextlib.nullcontext,
) -> dict[float, float]:
    """Accuracy with Gaussian noise on one modality at each noise level (Table 3).

    Every level draws its noise from a generator seeded with ``seed``, so the levels share
    the same underlying N(0, 1) draws (common random numbers: the curve changes only
    through λ) and the result is deterministic for a given batch size and device.

    Args:
        model: A ``rollingq.model.MultimodalTransformer``.
        split: The split to evaluate (usually test).
        modality: The modality to noise; a modality the model does not use changes nothing.
        levels: Noise levels λ >= 0; 0 gives the clean accuracy.
        recipe: ``additive`` or ``mixing``, see `add_noise`.
        batch_size: Samples a forward pass.
        seed: Seed of the noise.
        autocast: The forward's precision context, see `predict`.

    Returns:
        Level -> accuracy in [0, 1].

    Raises:
        ValueError: For a modality the split lacks, an unknown recipe or a negative level.
    """
    if modality not in split.inputs:
        raise ValueError(f"unknown modality {modality!r}; the split has: {', '.join(split.inputs)}")
    if recipe not in NOISE_RECIPES:
        raise ValueError(f"unknown noise recipe {recipe!r}; valid: {', '.join(NOISE_RECIPES)}")
    device = _device(model)
    result = {}
    for level in levels:
        generator = torch.Generator(device=device).manual_seed(seed)

        def transform(
            inputs: dict[str, Tensor], index: Tensor, level: float = level,
            generator: torch.Generator = generator,
        ) -> dict[str, Tensor]:
            if modality in inputs:
                inputs = {**inputs, modality: add_noise(inputs[modality], level, recipe, generator)}
            return inputs

        logits, _ = predict(model, split, batch_size, transform, autocast)
        result[float(level)] = _accuracy(logits, split.labels)
    return result


def attention_noise_correlation(
    model: nn.Module,
    split: Split,
    level: float = 1.0,
    recipe: str = "mixing",
    batch_size: int = 256,
    seed: int = 0,
    autocast: Autocast = contextlib.nullcontext,
) -> dict | None:
    """Pearson r between a modality's attention share and "this modality was noised" (Table 2).

    Every sample gets noise on exactly one of the model's modalities, chosen uniformly at
    random (seeded). Over all (sample, modality) pairs, ``r`` correlates the modality's share
    of the last fusion layer's [cls] attention (the attention summed over its tokens,
    ``ModelOutput.share``) with the 0/1 indicator that it was the noised one.

    Sign convention: the paper reports positive values (0.52 -> 0.76 on CREMA-D) and calls
    higher better, but does not publish how it signs the correlation. A model that moves its
    attention *away* from a noised input has r < 0 here, so ``adaptivity = -r`` is positive
    for that desirable behaviour; compare ``adaptivity`` with Table 2, under the assumption
    that the paper signs it that way.

    Args:
        model: A ``rollingq.model.MultimodalTransformer``.
        split: The split to evaluate (usually test).
        level: Noise level λ, see `add_noise`.
        recipe: ``additive`` or ``mixing``; ``mixing`` at λ = 1 replaces the input by noise.
        batch_size: Samples a forward pass.
        seed: Seeds both the choice of modality and the noise.
        autocast: The forward's precision context, see `predict`.

    Returns:
        ``{"r", "adaptivity", "level", "recipe", "pairs"}``, or None when the model's fusion
        has no attention shares (concat, sum, mbt, unimodal). ``r`` and ``adaptivity`` are
        None when the correlation is undefined (the shares do not vary).
    """
    if recipe not in NOISE_RECIPES:
        raise ValueError(f"unknown noise recipe {recipe!r}; valid: {', '.join(NOISE_RECIPES)}")
    device = _device(model)
    modalities = list(getattr(model, "modalities", split.inputs))
    choice = torch.randint(
        len(modalities), (len(split),), generator=torch.Generator().manual_seed(seed)
    )  # (N,): which modality each sample gets noised on
    choice_dev = choice.to(device)
    generator = torch.Generator(device=device).manual_seed(seed)

    def transform(inputs: dict[str, Tensor], index: Tensor) -> dict[str, Tensor]:
        chosen = choice_dev[index]  # (B,)
        out = dict(inputs)
        for j, m in enumerate(modalities):
            x = inputs[m]
            mask = (chosen == j).view(-1, *[1] * (x.dim() - 1))
            out[m] = torch.where(mask, add_noise(x, level, recipe, generator), x)
        return out

    _, shares = predict(model, split, batch_size, transform, autocast)
    if shares is None:
        return None
    share = torch.cat([shares[m] for m in modalities]).double()  # (M * N,)
    noised = torch.cat([(choice == j) for j in range(len(modalities))]).double()
    r = _pearson(share, noised)
    return {
        "r": r,
        "adaptivity": None if r is None else -r,
        "level": float(level),
        "recipe": recipe,
        "pairs": len(share),
    }


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
