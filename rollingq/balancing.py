"""The glue between training and balance.py: when and where OGM, OGM-GE and PMR act.

``Balancer`` is built once a run (config group ``balance``) and called by the training step:

    epoch start    ``start_epoch``: PMR estimates the class prototypes of every modality from
                   the first ``prototype_fraction`` of the epoch's batches (eval mode, no grad),
                   smoothed with ``pmr_momentum``; a class absent there keeps its prototype
    per batch      ``extra_loss``: PMR's ``pmr_alpha``-weighted prototype cross-entropies
                   (features not detached, so they train the encoders)
                   ``modulate`` (after backward, before the optimizer step): OGM scales the
                   strongest modality's encoder gradients by k; OGM-GE also adds N(0, std(g)²)
                   noise to every modality's encoder gradients
    epoch end      ``epoch_metrics``: each modality's mean ratio and mean coefficient (OGM's k,
                   PMR's weight) over the epoch's steps

Only inside the method's window (``ogm_window``, ``pmr_window``: fractions of the run, as
``BalanceConfig.acts``); outside it the step is the unmodulated one. The scores come from
``model.branch_logits`` (concat/mbt: the head's block of each modality; sum: each modality's
head; the others: the probe heads). Modulated parameters: every parameter of a modality's
encoder with more than one dimension (the weights, positional embedding and [cls]; not the
biases and LayerNorm gains, as BalanceBenchmark does); the fusion layers and heads never.
Statistics stay on the device (no host sync a step).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Iterable
from typing import Any

import torch
from torch import Tensor

from rollingq import balance as bal
from rollingq.config import BalanceConfig


class Balancer:
    """Applies ``balance.method`` to one model's training.

    Args:
        cfg: The balance group of the config (``method`` != ``none``).
        model: A ``MultimodalTransformer`` with two or more modalities.
        num_classes: Classes (PMR's prototypes).
    """

    def __init__(self, cfg: BalanceConfig, model: torch.nn.Module, num_classes: int):
        if len(model.modalities) < 2:
            raise ValueError(
                f"balance.method={cfg.method!r} balances two or more modalities; the model has "
                f"one ({', '.join(model.modalities)}); set balance.method=none"
            )
        self.cfg, self.model, self.num_classes = cfg, model, num_classes
        self.modalities = list(model.modalities)
        self.params = {m: [p for p in model.encoders[m].parameters() if p.dim() > 1]
                       for m in self.modalities}
        self.prototypes: dict[str, Tensor | None] = {m: None for m in self.modalities}
        self.active = False
        self._sums: Tensor | None = None  # (2, M): ratio and coefficient sums
        self._steps = 0

    def start_epoch(self, epoch: int, batches: Callable[[], Iterable], steps: int,
                    autocast: Callable, epochs: int) -> None:
        """Decides whether the method acts this epoch; PMR re-estimates its prototypes.

        Args:
            batches: Returns this epoch's training batches (``Split.batches`` in its order).
            steps: How many batches the epoch has.
            epochs: The run's epochs (the window is a fraction of them).
        """
        c = self.cfg
        self.active = c.acts(epoch, epochs)
        self._sums, self._steps = None, 0
        if self.active and c.method == "pmr":
            take = max(1, math.ceil(c.prototype_fraction * steps))
            self._estimate_prototypes(itertools.islice(batches(), take), autocast)

    @torch.no_grad()
    def _estimate_prototypes(self, batches: Iterable, autocast: Callable) -> None:
        was_training = self.model.training
        self.model.eval()
        feats: dict[str, list[Tensor]] = {m: [] for m in self.modalities}
        labels: list[Tensor] = []
        for b in batches:
            with autocast():
                out = self.model(b.batch())
            for m in self.modalities:
                feats[m].append(out.features[m].float())
            labels.append(b.labels)
        y = torch.cat(labels)
        for m in self.modalities:
            new, present = bal.class_means(torch.cat(feats[m]), y, self.num_classes)
            self.prototypes[m] = bal.smooth_prototypes(self.prototypes[m], new, present,
                                                       self.cfg.pmr_momentum)
        self.model.train(was_training)

    def _record(self, ratio: Tensor, coef: Tensor) -> None:
        row = torch.stack([ratio.detach(), coef.detach()])
        self._sums = row if self._sums is None else self._sums + row
        self._steps += 1

    def extra_loss(self, out: Any, labels: Tensor) -> Tensor | None:
        """PMR: Σ_m w_m CE(prototype logits of m, y), w from ``pmr_weights``; else None."""
        if not (self.active and self.cfg.method == "pmr"):
            return None
        logits = [bal.prototype_logits(out.features[m], self.prototypes[m])
                  for m in self.modalities]
        scores = bal.modality_scores(logits, labels)
        weights = bal.pmr_weights(scores, self.cfg.pmr_alpha)
        self._record(bal.ratios(scores), weights)
        losses = torch.stack([torch.nn.functional.cross_entropy(x, labels) for x in logits])
        return (weights * losses).sum()

    @torch.no_grad()
    def modulate(self, out: Any, labels: Tensor) -> None:
        """OGM / OGM-GE on the encoder gradients (call after backward, before the step)."""
        if not (self.active and self.cfg.method in ("ogm", "ogm_ge")):
            return
        branch = self.model.branch_logits(out)
        scores = bal.modality_scores([branch[m] for m in self.modalities], labels)
        k = bal.ogm_coefficients(scores, self.cfg.ogm_alpha, self.cfg.ogm_variant)
        self._record(bal.ratios(scores), k)
        ge = self.cfg.method == "ogm_ge"
        for i, m in enumerate(self.modalities):
            params = [p for p in self.params[m] if p.grad is not None]
            if params:
                new = bal.ogm_ge_gradients([p.grad for p in params], k[i], ge)
                for p, g in zip(params, new, strict=True):
                    p.grad = g

    def epoch_metrics(self) -> dict[str, float]:
        """``balance_ratio_<m>`` and ``balance_coef_<m>``: means over the epoch's steps."""
        if self._sums is None:
            return {}
        mean = (self._sums / self._steps).tolist()
        out = {f"balance_ratio_{m}": mean[0][i] for i, m in enumerate(self.modalities)}
        out.update({f"balance_coef_{m}": mean[1][i] for i, m in enumerate(self.modalities)})
        return out

    def state_dict(self) -> dict[str, Any]:
        return {"prototypes": dict(self.prototypes)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """The saved state, its prototypes moved to the model's device (a checkpoint loads onto
        the CPU; the next epoch mixes them with the model's features)."""
        device = next(self.model.parameters()).device
        self.prototypes.update({m: None if p is None else p.to(device)
                                for m, p in state.get("prototypes", {}).items()})
