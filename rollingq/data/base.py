"""What every data set hands the trainer: modality specs and three splits.

A split holds one tensor per modality plus the labels. The trainer either moves a split to the
training device once and slices batches there (no loader in the hot path), or, when the data
would take too much of the device's memory, leaves the inputs on the host (memory-mapped cache
arrays, shared by every trial on the node through the page cache) and streams each batch: a
background thread gathers the next batches' rows into pinned memory while the device trains
on the current one.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import nullcontext
from dataclasses import dataclass
from functools import lru_cache

import torch
from torch import Tensor

Transform = Callable[[dict[str, Tensor]], dict[str, Tensor]]

PREFETCH = 3  # batches gathered ahead of the one training, when streaming from the host


@lru_cache(maxsize=8)
def copy_stream(device: torch.device) -> torch.cuda.Stream:
    """The one stream a device's streamed batches are copied on, for the process's life: the
    caching allocator reuses a freed block only on the stream it was allocated on, so a new
    stream an epoch would strand the previous epochs' batch buffers in its cache."""
    return torch.cuda.Stream(device)
COPY_ROWS = 1024  # rows a chunk when materialising a split on the device (bounds host memory)


def same_device(a: torch.device, b: torch.device, current: int | None = None) -> bool:
    """Whether two devices are the same one: ``cuda`` means the current CUDA device, so it
    equals ``cuda:0`` there and differs from ``cuda:1`` (``current``: that index, for tests)."""
    if a.type != b.type:
        return False
    if a.type != "cuda" or a.index == b.index:
        return True
    if current is None:
        current = torch.cuda.current_device()
    index = lambda d: current if d.index is None else d.index  # noqa: E731
    return index(a) == index(b)


class DataError(ValueError):
    """A data set on disk breaks a rule; the message names the file(s) and the fix."""


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
    """One split: sample ``i`` is ``inputs[modality][rows[i]]`` with label ``labels[i]``.

    Attributes:
        inputs: Modality (or ``*_meta``) -> (R, ...) stored rows, e.g. a memory-mapped cache array.
        labels: (N,) int64, on the device batches are delivered to.
        transform: Turns a batch of stored inputs into model inputs on the training device
            (e.g. uint8 frames -> augmented, normalised floats); None means they are model inputs.
        rows: (N,) int64 on the inputs' device, the stored row of each sample, so a subset (a
            carved validation split's complement) stays lazy; None means row ``i`` is sample ``i``.
        device: Set when the inputs stay on the host and each batch is copied to this device.
    """

    inputs: dict[str, Tensor]
    labels: Tensor
    transform: Transform | None = None
    rows: Tensor | None = None
    device: torch.device | None = None

    def __len__(self) -> int:
        return len(self.labels)

    @property
    def nbytes(self) -> int:
        """Bytes of the inputs this split's samples use (what moving it to a device costs)."""
        return sum(x[0].nbytes * len(self) for x in self.inputs.values() if len(x))

    def subset(self, index: Tensor) -> Split:
        """The samples at ``index`` as a lazy Split: no input row is read or copied."""
        index = index.to(self.labels.device)
        rows = index.cpu() if self.rows is None else self.rows[index.to(self.rows.device)]
        first = next(iter(self.inputs.values()))
        return Split(self.inputs, self.labels[index], self.transform, rows.to(first.device),
                     self.device)

    def take(self, index: Tensor) -> Split:
        """The samples at ``index`` (on the labels' device) as a batch-sized, resident Split."""
        if self.device is not None:
            return self._deliver(index, self._gather(index.cpu()))
        rows = index if self.rows is None else self.rows[index.to(self.rows.device)]
        return Split({m: x[rows] for m, x in self.inputs.items()}, self.labels[index],
                     self.transform)

    def batches(self, size: int, order: Tensor | None = None) -> Iterator[Split]:
        """The split in batches of ``size`` in ``order`` (default: stored order), prefetched when
        the inputs are streamed from the host."""
        index = order if order is not None else torch.arange(len(self), device=self.labels.device)
        chunks = index.split(size)
        if self.device is None:
            yield from (self.take(c) for c in chunks)
            return
        host = index.cpu().split(size)
        # on CUDA the copies run on a stream of their own, so a batch's copy overlaps the
        # previous step's kernels (queued behind them on the compute stream, it would not)
        copy = copy_stream(self.device) if self.device.type == "cuda" else None
        with ThreadPoolExecutor(max_workers=2, thread_name_prefix="rollingq-gather") as pool:
            pending = deque()
            for chunk, on_host in zip(chunks, host, strict=True):
                pending.append((chunk, pool.submit(self._gather, on_host)))
                if len(pending) > PREFETCH:
                    chunk, gathered = pending.popleft()
                    yield self._deliver(chunk, gathered.result(), copy)
            while pending:
                chunk, gathered = pending.popleft()
                yield self._deliver(chunk, gathered.result(), copy)

    def _gather(self, index: Tensor) -> dict[str, Tensor]:
        """Host rows of the samples at ``index`` (CPU), in pinned memory when bound for CUDA."""
        rows = index if self.rows is None else self.rows[index]
        pin = self.device is not None and self.device.type == "cuda"
        out = {}
        for m, x in self.inputs.items():
            buf = torch.empty((len(rows), *x.shape[1:]), dtype=x.dtype, pin_memory=pin)
            out[m] = torch.index_select(x, 0, rows, out=buf)
        return out

    def _deliver(self, index: Tensor, host: dict[str, Tensor],
                 copy: torch.cuda.Stream | None = None) -> Split:
        """The batch on the device; with ``copy``, copied on that stream, which the current
        (compute) stream waits for before it uses the batch."""
        with torch.cuda.stream(copy) if copy is not None else nullcontext():
            inputs = {m: x.to(self.device, non_blocking=True) for m, x in host.items()}
        if copy is not None:
            compute = torch.cuda.current_stream(self.device)
            compute.wait_stream(copy)
            for x in inputs.values():  # allocated on the copy stream, freed after compute uses it
                x.record_stream(compute)
        return Split(inputs, self.labels[index], self.transform)

    def to(self, device: torch.device | str) -> Split:
        """The split resident on ``device``: rows gathered there once, in bounded chunks.

        On the inputs' own device this is the split itself (a memory-mapped array stays so).
        """
        device = torch.device(device)
        first = next(iter(self.inputs.values()))
        if same_device(first.device, device) and self.device is None:
            return self
        n, inputs = len(self), {}
        order = self.rows if self.rows is not None else torch.arange(n)
        for m, x in self.inputs.items():
            dst = torch.empty((n, *x.shape[1:]), dtype=x.dtype, device=device)
            for start in range(0, n, COPY_ROWS):
                dst[start : start + COPY_ROWS] = x[order[start : start + COPY_ROWS].to(x.device)]
            inputs[m] = dst
        return Split(inputs, self.labels.to(device), self.transform)

    def stream_to(self, device: torch.device | str) -> Split:
        """The split with its inputs left on the host and each batch copied to ``device``."""
        return Split(self.inputs, self.labels.to(device), self.transform,
                     None if self.rows is None else self.rows.cpu(), torch.device(device))

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

    @property
    def nbytes(self) -> int:
        return sum(s.nbytes for s in (self.train, self.val, self.test))

    def check_labels(self, name: str) -> None:
        """Training has two classes or more, and every val/test label occurs in training.

        Raises:
            DataError: Naming the split, the unseen labels and how many samples carry them.
        """
        seen = torch.unique(self.train.labels.cpu())
        if len(seen) < 2:
            only = ", ".join(str(int(c)) for c in seen) or "none"
            raise DataError(f"{name}: the training split has {len(seen)} class (label {only}) "
                            f"in {len(self.train)} samples; a classifier needs two or more")
        classes = ", ".join(str(int(c)) for c in seen)
        for split_name, split in (("val", self.val), ("test", self.test)):
            labels = split.labels.cpu()
            unseen = labels[~torch.isin(labels, seen)]
            if len(unseen):
                values = ", ".join(str(int(c)) for c in torch.unique(unseen))
                raise DataError(
                    f"{name}: {split_name} label(s) {values} ({len(unseen)} of {len(labels)} "
                    f"samples) never occur in training (classes {classes}); no model can learn "
                    f"them: fix the labels or move such samples into training")


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
    keep, held = stratified_split(train.labels.cpu(), fraction, seed)
    return train.subset(keep), train.subset(held)
