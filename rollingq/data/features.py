"""The generic ``features`` data set: pre-extracted features in ``.npz`` files.

``data.root`` holds ``train.npz``, ``test.npz`` and optionally ``val.npz``. Each has one float
array per modality, named by the modality (``audio``, ``visual``, ``text`` or any name), shaped
(N, L, D) or (N, D), and ``label`` (N,) integers in [0, C). Without ``val.npz`` a validation
split is carved from train (stratified, seeded).
"""

from __future__ import annotations

import logging
import zipfile
from pathlib import Path

import numpy as np
import torch

from rollingq.config import DataConfig
from rollingq.data.base import DataBundle, DataError, ModalitySpec, Split, carve_val

log = logging.getLogger(__name__)


def _read(path: Path) -> dict[str, np.ndarray]:
    try:
        with np.load(path, allow_pickle=False) as z:
            return {k: z[k] for k in z.files}
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as e:
        raise ValueError(
            f"cannot read {path}: {e}; it must be an .npz written by numpy.savez"
        ) from None


def _split(path: Path, nonfinite: str = "error") -> Split:
    arrays = _read(path)
    if "label" not in arrays:
        raise ValueError(f"{path} has no 'label' array; it has: {', '.join(arrays) or 'nothing'}")
    labels = arrays.pop("label")
    if labels.ndim != 1 or not np.issubdtype(labels.dtype, np.integer):
        raise ValueError(
            f"{path}: 'label' must be a 1-D integer array, got shape {labels.shape} "
            f"dtype {labels.dtype}"
        )
    if not arrays:
        raise ValueError(
            f"{path} holds only 'label'; add one array per modality, e.g. audio, visual"
        )
    inputs = {}
    for name, x in arrays.items():
        if x.ndim not in (2, 3) or len(x) != len(labels):
            raise ValueError(
                f"{path}: modality {name!r} must be (N, L, D) or (N, D) with "
                f"N={len(labels)} (the labels), got shape {x.shape}"
            )
        if not np.issubdtype(x.dtype, np.number):
            raise ValueError(f"{path}: modality {name!r} must be numeric, got dtype {x.dtype}")
        x = x.astype(np.float32)
        bad = ~np.isfinite(x)
        if bad.any():
            count = f"{int(bad.sum()):,} NaN/inf values of {x.size:,}"
            if nonfinite == "error":
                raise DataError(f"{path}: modality {name!r} holds {count} (in "
                                f"{int(bad.reshape(len(x), -1).any(1).sum()):,} samples); fix "
                                "the features, or set data.nonfinite=zero to train on zeros "
                                "in their place")
            log.warning("%s: modality %r: %s replaced by 0 (data.nonfinite=zero)", path, name,
                        count)
            x[bad] = 0.0
        inputs[name] = torch.from_numpy(x)
    return Split(inputs, torch.from_numpy(labels.astype(np.int64)))


def _describe(specs: dict[str, ModalitySpec]) -> str:
    return ", ".join(f"{m} ({' x '.join(map(str, s.shape))})" for m, s in specs.items())


def load_features(cfg: DataConfig) -> DataBundle:
    """Reads ``train.npz``, ``test.npz`` and the optional ``val.npz`` under ``cfg.root``."""
    root = Path(cfg.root)
    missing = [p.name for p in (root / "train.npz", root / "test.npz") if not p.is_file()]
    if missing:
        raise ValueError(
            f"data.root={str(root)!r} lacks {', '.join(missing)}; the features data "
            f"set needs train.npz and test.npz (val.npz optional)"
        )
    train = _split(root / "train.npz", cfg.nonfinite)
    test = _split(root / "test.npz", cfg.nonfinite)
    if (root / "val.npz").is_file():
        val = _split(root / "val.npz", cfg.nonfinite)
    else:
        train, val = carve_val(train, cfg.val_fraction)
    specs = {m: ModalitySpec("sequence", tuple(x.shape[1:])) for m, x in train.inputs.items()}
    for name, split in (("val", val), ("test", test)):
        shapes = {m: ModalitySpec("sequence", tuple(x.shape[1:])) for m, x in split.inputs.items()}
        if shapes != specs:
            raise DataError(
                f"{root / (name + '.npz')} has modalities {_describe(shapes)}, but train.npz "
                f"has {_describe(specs)}; every split needs the same modality names and "
                "per-sample shapes (tokens x features)"
            )
    num_classes = int(max(s.labels.max() for s in (train, val, test))) + 1
    lowest = int(min(s.labels.min() for s in (train, val, test)))
    if lowest < 0 or num_classes < 2:
        raise ValueError(
            f"labels under {root} must be integers in [0, C) with C >= 2, "
            f"got min {lowest}, max {num_classes - 1}"
        )
    return DataBundle(specs=specs, num_classes=num_classes, train=train, val=val, test=test)
