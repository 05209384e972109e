"""RollingQ on one screen: imbalance rate, anchor weight, rebalance anchor, rotation matrix.

RollingQ (Ni, Wei, Liu, Chen, Peng, Lin, Hu, "RollingQ: Reviving the Cooperation Dynamics in
Multimodal Transformer", ICML 2025, arXiv 2506.11465) measures how unevenly the fusion [cls]
query attends to the modalities and, when the imbalance is large, rotates the query toward a
rebalanced anchor. This file holds the maths only: pure functions on
tensors, no modules, no I/O. `rolling.py` gathers the statistics and installs the matrix.

Steps, with the paper's symbols (two modalities a, b; N modalities in the `*_multi` functions):
    1. AIR   = E_i[cos(q_i, k̄ᵃ_i) − cos(q_i, k̄ᵇ_i)]                         imbalance_rate
    2. rotate when |AIR| > β and fewer than max_rotations were done          should_rotate
    3. α     = ½ (1 + tanh(−ρ · AIR))                                         anchor_weight
    4. u     = α μa/‖μa‖ + (1−α) μb/‖μb‖,  q_b = u ‖μq‖/‖u‖                   rebalance_anchor
    5. R with det +1 maps μq/‖μq‖ onto q_b/‖q_b‖                             rotation_matrix
N modalities (our generalisation): c_m = E_i[cos(q_i, k̄ᵐ_i)], trigger on
max c − min c, w = softmax(−2ρ(c − c̄)), u = Σ w_m μ_m/‖μ_m‖. At M = 2 this is exactly steps 1–4:
AIR = c_0 − c_1 and w_0 = α; the two-modality functions call the N-modality ones.

The maths, with the paper's symbols, and where the published code differs: docs/method.md §2
(AIR), §3 (the anchor and the rotation), §6 (differences).
"""

from collections.abc import Sequence

import torch
from torch import Tensor

EPS = 1e-12  # norms below this count as zero (zero vectors have cosine 0 and unit vector 0)
CANCEL_TOL = 1e-6  # ‖u‖ / Σ|w| below this: the unit means cancel and u has no direction
METHODS = ("svd", "plane")


def _unit(x: Tensor) -> Tensor:
    """x / ‖x‖ along the last dim; a zero vector stays zero (never NaN)."""
    return x / torch.linalg.vector_norm(x, dim=-1, keepdim=True).clamp_min(EPS)


# -----------------------------------------------------------------------------
# 1-2. imbalance statistics and the trigger


def modality_cosines(q: Tensor, mean_keys: Tensor | Sequence[Tensor]) -> Tensor:
    """Per-modality mean cosine between the query and the modality's mean key.

    Args:
        q: fusion [cls] query, (D,) shared by the batch or (B, D) per sample.
        mean_keys: mean key of each modality for each sample, (M, B, D) or M tensors of (B, D).

    Returns:
        c, (M,): c_m = mean_i cos(q_i, k̄ᵐ_i); a zero vector contributes cosine 0.
    """
    k = torch.stack(list(mean_keys)) if not isinstance(mean_keys, Tensor) else mean_keys
    assert k.dim() == 3, f"mean_keys must be (M, B, D), but got shape {tuple(k.shape)}"
    assert q.dim() in (1, 2) and q.shape[-1] == k.shape[-1], (
        f"q must be (D,) or (B, D) with D={k.shape[-1]}, but got shape {tuple(q.shape)}"
    )
    cos = (_unit(q) * _unit(k)).sum(-1)  # (M, B); a (D,) or (B, D) q broadcasts over M
    return cos.mean(-1)  # (M,)


def imbalance_rate(q: Tensor, mean_keys_a: Tensor, mean_keys_b: Tensor) -> Tensor:
    """Attention Imbalance Rate, AIR = mean_i cos(q_i, k̄ᵃ_i) − cos(q_i, k̄ᵇ_i) ∈ [−2, 2].

    Args:
        q: fusion [cls] query, (D,) shared by the batch or (B, D) per sample.
        mean_keys_a: mean key of modality a's tokens per sample, (B, D).
        mean_keys_b: same for modality b, (B, D).

    Returns:
        0-dim tensor; AIR > 0 means the query favours modality a.
    """
    c = modality_cosines(q, torch.stack([mean_keys_a, mean_keys_b]))  # (2,)
    return c[0] - c[1]


def imbalance_spread(cosines: Tensor) -> Tensor:
    """N-modality trigger statistic max_m c_m − min_m c_m (equals |AIR| at M = 2).

    Args:
        cosines: (M,) per-modality cosines from `modality_cosines`.

    Returns:
        0-dim tensor, >= 0.
    """
    return cosines.max() - cosines.min()


def should_rotate(
    air_or_spread: float | Tensor, beta: float, rotations_done: int, max_rotations: int
) -> bool:
    """Trigger: |AIR| > β and rotations_done < max_rotations.

    Args:
        air_or_spread: AIR (two modalities) or `imbalance_spread` (N modalities).
        beta: imbalance threshold β.
        rotations_done: rotations applied so far.
        max_rotations: the most rotations allowed in a run.
    """
    return abs(float(air_or_spread)) > beta and rotations_done < max_rotations


# -----------------------------------------------------------------------------
# 3-4. anchor weights and the rebalance anchor


def anchor_weights(cosines: Tensor, rho: float) -> Tensor:
    """N-modality anchor weights w = softmax_m(−2ρ (c_m − c̄)).

    The modality the query favours least (lowest c_m) gets the largest weight. At M = 2,
    w_0 = ½ (1 + tanh(−ρ (c_0 − c_1))) = anchor_weight(AIR, ρ).

    Args:
        cosines: (M,) per-modality cosines from `modality_cosines`.
        rho: sharpness ρ (the published code's `--sigma`); 0 gives equal weights.

    Returns:
        w, (M,), sums to 1.
    """
    return torch.softmax(-2.0 * rho * (cosines - cosines.mean()), dim=0)


def anchor_weight(air: float | Tensor, rho: float) -> Tensor:
    """Two-modality anchor weight α = ½ (1 + tanh(−ρ · AIR)), the weight of modality a.

    Args:
        air: imbalance rate AIR; a Python float is taken as float64.
        rho: sharpness ρ; AIR > 0 gives α < ½ (the anchor leans toward modality b).

    Returns:
        α, same shape as air, in [0, 1].
    """
    air = air if isinstance(air, Tensor) else torch.tensor(air, dtype=torch.float64)
    return 0.5 * (1.0 + torch.tanh(-rho * air))


def rebalance_anchor_multi(mean_keys: Tensor, mean_query: Tensor, weights: Tensor) -> Tensor:
    """Rebalance anchor q_b = u ‖μq‖/‖u‖ with u = Σ_m w_m μ_m/‖μ_m‖.

    Unit means (not raw means) are mixed, and u is rescaled so that ‖q_b‖ = ‖μq‖: a rotation
    preserves norms, so only then can R μq reach q_b. If the unit means cancel
    (‖u‖ <= CANCEL_TOL · Σ|w|, e.g. antiparallel means at equal weights) u has no direction and
    q_b = μq is returned, which makes the rotation the identity.

    Args:
        mean_keys: (M, D), μ_m = training-set mean of modality m's mean key.
        mean_query: (D,), μq = training-set mean of the fusion query.
        weights: (M,) anchor weights, e.g. from `anchor_weights`.

    Returns:
        q_b, (D,), in mean_query's dtype (computed in float64).
    """
    assert mean_keys.dim() == 2 and mean_query.shape == mean_keys.shape[1:], (
        f"need mean_keys (M, D) and mean_query (D,), but got {tuple(mean_keys.shape)} "
        f"and {tuple(mean_query.shape)}"
    )
    assert weights.shape == mean_keys.shape[:1], (
        f"need one weight per modality ({mean_keys.shape[0]}), but got shape {tuple(weights.shape)}"
    )
    mu, mq, w = mean_keys.double(), mean_query.double(), weights.double().to(mean_keys.device)
    u = (w[:, None] * _unit(mu)).sum(0)  # (D,)
    u_norm = torch.linalg.vector_norm(u)
    if u_norm <= CANCEL_TOL * w.abs().sum():
        return mean_query.clone()
    return (u * torch.linalg.vector_norm(mq) / u_norm).to(mean_query.dtype)


def rebalance_anchor(
    mean_key_a: Tensor, mean_key_b: Tensor, mean_query: Tensor, alpha: float | Tensor
) -> Tensor:
    """Two-modality anchor q_b = u ‖μq‖/‖u‖, u = α μa/‖μa‖ + (1−α) μb/‖μb‖.

    The M = 2 case of `rebalance_anchor_multi` with weights (α, 1−α); see it for the case
    where the unit means cancel.

    Args:
        mean_key_a: (D,), μa.
        mean_key_b: (D,), μb.
        mean_query: (D,), μq.
        alpha: weight of modality a, e.g. from `anchor_weight`.

    Returns:
        q_b, (D,), in mean_query's dtype.
    """
    alpha = torch.as_tensor(alpha, dtype=torch.float64)
    weights = torch.stack([alpha, 1.0 - alpha])  # (2,)
    return rebalance_anchor_multi(torch.stack([mean_key_a, mean_key_b]), mean_query, weights)


# -----------------------------------------------------------------------------
# 5. the rotation


def rotation_matrix(x: Tensor, y: Tensor, method: str = "svd") -> Tensor:
    """Orthogonal R with det R = +1 and R x̂ = ŷ (x̂ = x/‖x‖, ŷ = y/‖y‖).

    Methods:
        "svd" (published): M = ŷ x̂ᵀ = U Σ Vᵀ, R = U Vᵀ; if det R < 0 flip U's last column. The
            flip touches a zero singular value, so R x̂ = ŷ still holds; on the complement of
            span(x̂, ŷ) R is whatever rotation the SVD backend's basis gives (not reproducible).
        "plane" (minimal): the Givens rotation by θ = ∠(x̂, ŷ) inside span(x̂, ŷ), identity on
            its orthogonal complement: with w the unit part of ŷ orthogonal to x̂,
            R = I + (cos θ − 1)(x̂x̂ᵀ + wwᵀ) + sin θ (w x̂ᵀ − x̂ wᵀ).

    Edge cases, the same for both methods (finite, never NaN):
        x or y zero (norm < EPS), or D = 1: identity (in 1-D no rotation maps x̂ to −x̂).
        x̂ ∥ ŷ, same direction: identity.
        x̂ ∥ ŷ, opposite: rotation by π in the plane of x̂ and the standard basis vector least
            aligned with x̂ (Gram-Schmidt'd); deterministic, R x̂ = −x̂, det +1.

    Args:
        x: (D,) vector to rotate from (μq).
        y: (D,) vector to rotate onto (q_b).
        method: "svd" or "plane".

    Returns:
        R, (D, D), computed in float64, returned in x's dtype and on x's device.

    Raises:
        ValueError: unknown method.
    """
    if method not in METHODS:
        raise ValueError(f"unknown rotation method {method!r}; valid choices: {METHODS}")
    assert x.dim() == 1 and x.shape == y.shape, (
        f"x and y must both be (D,), but got {tuple(x.shape)} and {tuple(y.shape)}"
    )
    D = x.shape[0]
    out_dtype = x.dtype if x.is_floating_point() else torch.get_default_dtype()
    eye = torch.eye(D, dtype=torch.float64, device=x.device)
    x, y = x.double(), y.to(device=x.device, dtype=torch.float64)
    if D < 2 or torch.linalg.vector_norm(x) < EPS or torch.linalg.vector_norm(y) < EPS:
        return eye.to(out_dtype)
    x, y = _unit(x), _unit(y)

    # 1) the unit direction w ⊥ x̂ in which ŷ leans, and the angle θ from x̂ to ŷ
    w = y - (x @ y) * x
    s = torch.linalg.vector_norm(w)
    if s < EPS:  # parallel: nothing to do; antiparallel: pick a deterministic plane
        if x @ y > 0:
            return eye.to(out_dtype)
        w = eye[torch.argmin(x.abs())]  # standard basis vector least aligned with x̂
    w = w - (x @ w) * x  # (re-)orthogonalise so R is orthogonal to float64 precision
    w = w / torch.linalg.vector_norm(w)
    theta = torch.atan2(s, x @ y)  # ≈ π when antiparallel

    # 2) the rotation
    if method == "plane" or s < EPS:  # antiparallel: M = −x̂x̂ᵀ gives SVD no plane to use
        R = (
            eye
            + (torch.cos(theta) - 1) * (torch.outer(x, x) + torch.outer(w, w))
            + torch.sin(theta) * (torch.outer(w, x) - torch.outer(x, w))
        )
    else:
        U, _, Vh = torch.linalg.svd(torch.outer(y, x))  # (D, D), (D,), (D, D)
        R = U @ Vh
        if torch.linalg.det(R) < 0:
            U[:, -1] = -U[:, -1]
            R = U @ Vh
    return R.to(out_dtype)
