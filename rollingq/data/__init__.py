"""Data sets by name (``data.name``): each returns a DataBundle of in-memory splits."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rollingq.config import DataConfig
from rollingq.data.base import DataBundle, DataError, ModalitySpec, Split
from rollingq.data.cremad import load_cremad
from rollingq.data.features import load_features
from rollingq.data.kinetics_sounds import load_kinetics_sounds
from rollingq.data.mosei import load_mosei
from rollingq.data.synthetic import load_synthetic

LOADERS: dict[str, Callable[[DataConfig], DataBundle]] = {
    "synthetic": load_synthetic,
    "features": load_features,
    "cremad": load_cremad,
    "kinetics_sounds": load_kinetics_sounds,
    "mosei": load_mosei,
}


def load_data(cfg: DataConfig) -> DataBundle:
    """Loads the data set ``cfg.name``.

    Raises:
        ValueError: For an unknown name (lists the valid ones) or a data set-specific problem.
        DataError: The files break a rule (missing, non-finite, labels training lacks, ...).
    """
    if cfg.name not in LOADERS:
        raise ValueError(f"unknown data set {cfg.name!r}; valid: {', '.join(LOADERS)}")
    bundle = LOADERS[cfg.name](cfg)
    bundle.check_labels(cfg.name)
    if cfg.favoured:
        if cfg.favoured not in bundle.specs:
            raise ValueError(f"data.favoured={cfg.favoured!r} is not a modality of the "
                             f"{cfg.name} data set; valid: {', '.join(bundle.specs)}")
        bundle.favoured = cfg.favoured
    return bundle


def class_count(cfg: DataConfig) -> int | None:
    """The data set's number of classes where it is known without reading its files: CREMA-D's
    6 emotions, Kinetics-Sounds' 31 classes, MOSEI's binary sentiment, the synthetic
    generator's ``num_classes``; None for ``features`` (its labels decide)."""
    from rollingq.data import cremad, kinetics_sounds, mosei

    return {"synthetic": cfg.num_classes, "cremad": len(cremad.CLASSES),
            "kinetics_sounds": kinetics_sounds.NUM_CLASSES,
            "mosei": mosei.NUM_CLASSES}.get(cfg.name)


@dataclass
class Checked:
    """What ``preflight`` found: a one-line summary and the data set's fingerprint."""

    summary: str
    fingerprint: dict[str, Any]


def preflight(cfg: DataConfig) -> Checked:
    """The checks a study runs on its data before any trial starts, and the data set's
    fingerprint (what ``meta.json`` records of it).

    Cheap where the data are large: the clip data sets check the root, the split lists and
    that every listed file exists (``stat``, no decoding); MOSEI that its pickle exists; the
    ``features`` files are read and checked in full (arrays, shapes, NaN/inf, labels), as a
    trial would read them. The fingerprint: the clip data sets' split lists (SHA-256), a hash
    of every kept clip's id, label and files, and the cache entry's name; MOSEI's pickle (size,
    modification time) and cache entry; each ``features`` file's SHA-256; the synthetic
    generator's settings.

    Raises:
        DataError (a ValueError): What is wrong, where, how many, the first paths and the fix.
    """
    from rollingq.data import cache, clips, cremad, kinetics_sounds, mosei, synthetic

    if cfg.name == "synthetic":
        settings = {k: getattr(cfg, k) for k in synthetic.SETTINGS}
        return Checked("synthetic: built in", {"dataset": "synthetic", "settings": settings,
                                               "key": cache.recipe_key(settings)})
    if cfg.name == "features":
        bundle = load_data(cfg)
        root = Path(cfg.root).expanduser().absolute()
        files = {p.stem: clips.file_digest(p) for p in
                 (root / "train.npz", root / "val.npz", root / "test.npz") if p.is_file()}
        return Checked(f"features: {len(bundle.train) + len(bundle.val)} train+val and "
                       f"{len(bundle.test)} test samples, {', '.join(bundle.specs)}",
                       {"dataset": "features", "files": files})
    if cfg.name == "mosei":
        return Checked(f"mosei: {mosei.pickle_path(cfg)}", mosei.fingerprint(cfg))
    if cfg.name in ("cremad", "kinetics_sounds"):
        plan = (cremad if cfg.name == "cremad" else kinetics_sounds).plan(cfg)
        return Checked(plan.summary(), plan.fingerprint())
    raise ValueError(f"unknown data set {cfg.name!r}; valid: {', '.join(LOADERS)}")


__all__ = ["DataBundle", "DataError", "ModalitySpec", "Split", "load_data", "preflight",
           "Checked", "LOADERS", "class_count"]
