"""The glue between training and rotation.py: gather statistics, decide, rotate, report.

During an epoch, ``EpochStats`` accumulates on the device, per rotatable fusion layer, the
per-modality cosines between the [cls] query and the mean keys (for AIR) and the sums of
queries and mean keys (for the anchor), without a host synchronisation. At the epoch end
``rotate_if_needed`` reads them once, applies the trigger and, when it fires,
composes a new rotation into the layer's ``Rotation`` buffer.

The statistic modes (config ``rollingq.air_stat`` / ``rollingq.anchor_stat``):
    air_stat=last_batch    AIR from the last training batch only (published)
    air_stat=epoch         AIR as the running mean over all training batches of the epoch
    anchor_stat=full_pass  mu_q, mu_m from an extra eval-mode pass over the training set, each
                           batch weighted equally (published)
    anchor_stat=running    mu_q, mu_m accumulated during the epoch (no extra pass)

When the statistics are taken and the trigger fires, as published and as here: docs/method.md §3,
§4 and §6.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
from torch import Tensor

from rollingq import rotation as rot
from rollingq.config import RollingQConfig
from rollingq.fusions.attention import FusionStats, Rotation

if TYPE_CHECKING:
    from rollingq.data import Split
    from rollingq.model import MultimodalTransformer


class LayerStats:
    """Running sums for one fusion layer: cosines per modality, query and mean-key sums.

    ``per_batch``: the means weight every batch equally (the mean of the batch means, as the
    published full pass computes them) instead of every sample; they differ only when a batch
    is partial.
    """

    def __init__(self, modalities: list[str], per_batch: bool = False):
        self.modalities = modalities
        self.per_batch = per_batch
        self.reset()

    def reset(self) -> None:
        self.n = 0
        self.batches = 0
        self.cos_sum: Tensor | None = None  # (M,)
        self.last_cos: Tensor | None = None  # (M,) of the last batch
        self.q_sum: Tensor | None = None  # (D,)
        self.key_sum: Tensor | None = None  # (M, D)

    @torch.no_grad()
    def add(self, s: FusionStats) -> None:
        keys = torch.stack([s.mean_keys[m] for m in self.modalities])  # (M, B, D)
        B = keys.shape[1]
        batch_cos = rot.modality_cosines(s.q_cls, keys)  # (M,)
        if self.per_batch:
            q_sum, key_sum = s.q_cls.mean(0), keys.mean(1)
        else:
            q_sum, key_sum = s.q_cls.sum(0), keys.sum(1)
        if self.cos_sum is None:
            self.cos_sum, self.q_sum, self.key_sum = batch_cos * B, q_sum, key_sum
        else:
            self.cos_sum += batch_cos * B
            self.q_sum += q_sum
            self.key_sum += key_sum
        self.last_cos = batch_cos
        self.n += B
        self.batches += 1

    def cosines(self, mode: str) -> Tensor:
        return self.last_cos if mode == "last_batch" else self.cos_sum / self.n

    def means(self) -> tuple[Tensor, Tensor]:
        """(mu_q (D,), mu_keys (M, D)) over everything added."""
        count = self.batches if self.per_batch else self.n
        return self.q_sum / count, self.key_sum / count


class EpochStats:
    """LayerStats for each fusion layer of a model, fed from ModelOutput.fusion."""

    def __init__(self, modalities: list[str], layers: int, per_batch: bool = False):
        self.layers = [LayerStats(modalities, per_batch) for _ in range(layers)]

    def add(self, fusion: list[FusionStats]) -> None:
        for acc, s in zip(self.layers, fusion, strict=True):
            acc.add(s)

    def reset(self) -> None:
        for acc in self.layers:
            acc.reset()


@dataclass
class RotationEvent:
    """What happened at one layer at one epoch end (one per rotatable layer, rotated or not)."""

    layer: int
    cosines: list[float]
    air: float  # c_0 - c_1 for two modalities; max - min for more
    alpha: float  # anchor weight of the first modality
    rotated: bool
    rotations: int
    residual: float | None  # ||R mu_q - q_b|| after the rotation, None without one
    angle: float | None  # degrees turned by this rotation, None without one


def rotate_if_needed(
    cfg: RollingQConfig,
    rotations: list[Rotation],
    stats: EpochStats,
    full_pass: Callable[[], EpochStats] | None,
) -> list[RotationEvent]:
    """Applies the RollingQ trigger to every rotatable layer and rotates where it fires.

    Args:
        cfg: The rollingq group of the config.
        rotations: Rotation buffers of the fusion layers, first to last.
        stats: This epoch's running statistics (train mode).
        full_pass: Runs the published extra eval-mode pass and returns its statistics; called
            at most once, only if a rotation fires and ``anchor_stat == "full_pass"``.

    Returns:
        One event per layer that RollingQ watches (the last, or all with ``layers: all``).
    """
    watched = range(len(rotations)) if cfg.layers == "all" else [len(rotations) - 1]
    events, pass_stats = [], None
    for i in watched:
        cos = stats.layers[i].cosines(cfg.air_stat).double()
        spread = rot.imbalance_spread(cos)
        air = cos[0] - cos[1] if len(cos) == 2 else spread
        weights = rot.anchor_weights(cos, cfg.rho)
        done = int(rotations[i].count)
        fire = cfg.enabled and rot.should_rotate(spread, cfg.beta, done, cfg.max_rotations)
        residual = angle = None
        if fire:
            source = stats
            if cfg.anchor_stat == "full_pass" and full_pass is not None:
                pass_stats = pass_stats or full_pass()
                source = pass_stats
            mu_q, mu_keys = (t.double() for t in source.layers[i].means())
            q_b = rot.rebalance_anchor_multi(mu_keys, mu_q, weights)
            R = rot.rotation_matrix(mu_q, q_b, cfg.rotation)
            rotations[i].compose(R)
            residual = float(torch.linalg.vector_norm(R @ mu_q - q_b))
            cos_turn = torch.cosine_similarity(mu_q, q_b, dim=0).clamp(-1, 1)
            angle = float(torch.rad2deg(torch.arccos(cos_turn)))
        events.append(
            RotationEvent(
                layer=i,
                cosines=cos.tolist(),
                air=float(air),
                alpha=float(weights[0]),
                rotated=fire,
                rotations=int(rotations[i].count),
                residual=residual,
                angle=angle,
            )
        )
    return events


@torch.no_grad()
def full_pass_stats(
    model: MultimodalTransformer, split: Split, batch_size: int, autocast
) -> EpochStats:
    """The published extra eval-mode pass over the training set (with its training transform)
    for the anchor means: the mean of the batch means, as published."""
    was_training = model.training
    model.eval()
    stats = EpochStats(model.modalities, len(model.rotations), per_batch=True)
    for b in split.batches(batch_size):
        with autocast():
            stats.add(model(b.batch()).fusion)
    model.train(was_training)
    return stats
