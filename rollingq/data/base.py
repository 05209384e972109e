"""What every data set hands the trainer: modality specs and three in-memory splits.

A split holds one tensor per modality plus the labels; the trainer moves it to the training
device once and slices batches from it, so no loader sits in the hot path.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

Transform = Callable[[dict[str, Tensor]], dict[str, Tensor]]


@dataclass(frozen=True)
class ModalitySpec:
    """What a data set tells the model about one modality.

    Attributes:
        kind: ``spectrogram`` (H, W), ``frames`` (T, 3, H, W) or ``sequence`` (L, F) / (F,).
        shape: The per-sample input shape.
    """

    kind: str
    shape: tuple[int, ...]


@dataclass
class Split:
    """One split: ``inputs[modality]`` is (N, ...) and ``labels`` is (N,) int64.

    ``transform`` turns a batch of stored inputs into model inputs on the training device
    (e.g. uint8 frames -> augmented, normalised floats); None means they are model inputs.
    """

    inputs: dict[str, Tensor]
    labels: Tensor
    transform: Transform | None = None

    def __len__(self) -> int:
        return len(self.labels)

    def take(self, index: Tensor) -> Split:
        return Split({m: x[index] for m, x in self.inputs.items()}, self.labels[index],
                     self.transform)

    def to(self, device: torch.device | str) -> Split:
        return Split({m: x.to(device) for m, x in self.inputs.items()}, self.labels.to(device),
                     self.transform)

    def batch(self) -> dict[str, Tensor]:
        """The model inputs of this (batch-sized) split."""
        return self.transform(self.inputs) if self.transform is not None else self.inputs


@dataclass
class DataBundle:
    """A data set ready to train on.

    Attributes:
        specs: Modality name -> spec, in fusion order.
        num_classes: Number of classes.
        train, val, test: The splits; ``val`` is carved from train when the data set has none.
        favoured: The modality the data set is built to bias toward (synthetic only), else None.
    """

    specs: dict[str, ModalitySpec]
    num_classes: int
    train: Split
    val: Split
    test: Split
    favoured: str | None = None


def stratified_split(labels: Tensor, fraction: float, seed: int) -> tuple[Tensor, Tensor]:
    """Seeded stratified split of indices: (keep, held_out), ``fraction`` of each class held out.

    Every class with at least two samples keeps at least one and gives at least one.
    """
    g = torch.Generator().manual_seed(seed)
    keep, held = [], []
    for c in labels.unique(sorted=True):
        idx = (labels == c).nonzero().squeeze(1)
        idx = idx[torch.randperm(len(idx), generator=g)]
        n = round(len(idx) * fraction) if fraction > 0 else 0
        if fraction > 0 and len(idx) >= 2:
            n = min(max(n, 1), len(idx) - 1)
        held.append(idx[:n])
        keep.append(idx[n:])
    return torch.cat(keep).sort().values, torch.cat(held).sort().values


def carve_val(train: Split, fraction: float, seed: int = 0) -> tuple[Split, Split]:
    """Splits a validation set off ``train``; with fraction 0, val is the train split itself."""
    if fraction == 0:
        return train, train
    keep, held = stratified_split(train.labels, fraction, seed)
    return train.take(keep), train.take(held)
