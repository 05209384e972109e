"""The modality-balancing baselines of the paper's Table 1 on one screen: OGM-GE and PMR.

Pure functions on tensors, no modules, no I/O (the references' code gives what the
reference code of each does); ``balancing.py`` applies them during training.

OGM / OGM-GE (Peng et al., CVPR 2022), per batch:
    s_m  = Σ_i softmax(out_m)_i[y_i]                  the modality's score      modality_scores
    ρ_m  = s_m / Σ_{n≠m} s_n                          (two modalities: s_a / s_v, its inverse)
    k_m* = 1 − tanh(α · relu(ρ_m*)) for the strongest m* (ties: the first modality, as the
           reference's ``else`` branch), 1 for the others                       ogm_coefficients
    g ← k_m g (OGM);  g ← k_m g + N(0, (std(g) + 1e-8)²) (OGM-GE)               ogm_ge_gradients
The ``minus_one`` variant uses relu(ρ − 1) (continuous at ρ = 1); every reference uses relu(ρ).

PMR (Fan et al., CVPR 2023), per batch:
    s_m^k = −‖z_m − c_m^k‖₂                           prototype logits          prototype_logits
    ρ_m = p_m / mean_{n≠m} p_n with p_m = Σ_i softmax(s_m)_i[y_i]
    weight α on CE(s_m, y) for every modality with ρ_m < 1 (two modalities: the weaker one;
    a tie gives none), 0 otherwise                                               pmr_weights
With more than two modalities both are our generalisation; at two they are the references'.

What each method does and how its reference code does it: docs/baselines.md §1 (OGM-GE) and §2
(PMR).
"""

from __future__ import annotations

import torch
from torch import Tensor

from rollingq.config import OGM_VARIANTS

RATIO_EPS = 1e-12  # a zero denominator (every other modality scores 0) gives a finite ratio


def modality_scores(logits: Tensor | list[Tensor], labels: Tensor) -> Tensor:
    """s_m = Σ_i softmax(logits_m)_i[y_i] per modality.

    Args:
        logits: (M, B, C) or M tensors of (B, C), one per modality.
        labels: (B,) class indices.

    Returns:
        (M,) float32 scores, detached.
    """
    x = torch.stack(list(logits)) if not isinstance(logits, Tensor) else logits
    probs = x.detach().float().softmax(-1)  # (M, B, C)
    index = labels.view(1, -1, 1).expand(x.shape[0], -1, 1)
    return probs.gather(-1, index).squeeze(-1).sum(-1)


def ratios(scores: Tensor) -> Tensor:
    """ρ_m = s_m / Σ_{n≠m} s_n, (M,)."""
    others = scores.sum() - scores
    return scores / others.clamp_min(RATIO_EPS)


def ogm_coefficients(scores: Tensor, alpha: float, variant: str = "published") -> Tensor:
    """OGM's gradient coefficients k (M,): 1 for every modality but the strongest.

    Args:
        scores: (M,) per-modality scores (``modality_scores``).
        alpha: OGM's α (``balance.ogm_alpha``).
        variant: ``published`` 1 − tanh(α relu(ρ)), ``minus_one`` 1 − tanh(α relu(ρ − 1)).
    """
    assert variant in OGM_VARIANTS, f"variant must be one of {OGM_VARIANTS}, got {variant!r}"
    rho = ratios(scores.float())
    x = rho - 1 if variant == "minus_one" else rho
    k_strong = 1 - torch.tanh(alpha * torch.relu(x))
    # argmax gives the first of tied maxima; no host sync
    strongest = torch.nn.functional.one_hot(torch.argmax(rho), rho.numel()).bool()
    return torch.where(strongest, k_strong, torch.ones_like(rho))


def ogm_ge_gradients(grads: list[Tensor], k: Tensor, generalised: bool,
                     generator: torch.Generator | None = None) -> list[Tensor]:
    """k g for each gradient, plus Gaussian noise of each gradient's own std (+ 1e-8) for
    OGM-GE (the std of the unmodulated gradient, per tensor).

    Args:
        grads: One modality's unmodulated gradients (one dtype and device).
        k: The modality's coefficient (0-dim tensor).
        generalised: Add the GE noise (OGM-GE) or not (OGM).

    Returns:
        New tensors, in the order of ``grads``. The noise is drawn in one call for the whole
        list (one normal number a parameter is the method's cost: 0.5 ms for 165k parameters
        on one CPU core).
    """
    out = list(torch._foreach_mul(grads, k.to(grads[0].dtype)))
    if generalised:
        stds = torch.stack([g.std() if g.numel() > 1 else g.new_zeros(()) for g in grads]) + 1e-8
        sizes = [g.numel() for g in grads]
        z = torch.randn(sum(sizes), generator=generator, device=grads[0].device,
                        dtype=grads[0].dtype)
        noise = [part.view_as(g) for part, g in zip(z.split(sizes), grads, strict=True)]
        torch._foreach_mul_(noise, list(stds.unbind()))
        torch._foreach_add_(out, noise)
    return out


DISTANCE_EPS = 1e-12  # under the square root: its gradient is finite where a feature is a prototype


def prototype_logits(features: Tensor, prototypes: Tensor) -> Tensor:
    """−Euclidean distance of every sample to every class prototype: (B, D), (K, D) -> (B, K).

    √(d² + 1e-12), not √d²: a class seen once in the batches its prototype came from has that
    sample's feature as its prototype (the encoders have no dropout), and √ has an infinite
    derivative at 0, so the plain distance gives a NaN gradient and the run diverges. The value
    moves by at most 1e-6."""
    diff = features.float().unsqueeze(1) - prototypes.float().unsqueeze(0)  # (B, K, D)
    return -(diff.square().sum(-1) + DISTANCE_EPS).sqrt()


def pmr_weights(scores: Tensor, alpha: float) -> Tensor:
    """The weights (M,) of the prototype cross-entropies: α for the weaker modalities
    (ρ_m < 1 against the mean of the others), 0 for the others; a tie gives 0 everywhere.

    Args:
        scores: (M,) per-modality prototype scores, Σ_i softmax(s_m)_i[y_i].
    """
    s = scores.float()
    mean_others = (s.sum() - s) / max(1, s.numel() - 1)
    rho = s / mean_others.clamp_min(RATIO_EPS)
    return torch.where(rho < 1, torch.full_like(s, alpha), torch.zeros_like(s))


def class_means(features: Tensor, labels: Tensor, num_classes: int) -> tuple[Tensor, Tensor]:
    """Per-class mean of the features and which classes occur: (K, D), (K,) bool."""
    f = features.float()
    sums = torch.zeros(num_classes, f.shape[1], device=f.device).index_add_(0, labels, f)
    counts = torch.bincount(labels, minlength=num_classes).to(f.device)
    means = sums / counts.clamp_min(1).unsqueeze(1).float()
    return means, counts > 0


def smooth_prototypes(old: Tensor | None, new: Tensor, present: Tensor, momentum: float) -> Tensor:
    """c ← (1 − m) c_new + m c_old for the classes present; an absent class keeps its old
    prototype (zeros before the first), so it never becomes NaN. The first call takes c_new."""
    if old is None:
        return torch.where(present.unsqueeze(1), new, torch.zeros_like(new))
    mixed = (1 - momentum) * new + momentum * old
    return torch.where(present.unsqueeze(1), mixed, old)
