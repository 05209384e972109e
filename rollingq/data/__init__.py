"""Data sets by name (``data.name``): each returns a DataBundle of in-memory splits."""

from __future__ import annotations

from collections.abc import Callable

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


def preflight(cfg: DataConfig) -> str:
    """The checks a study runs on its data before any trial starts; a one-line summary.

    Cheap where the data are large: the clip data sets check the root, the split lists and
    that every listed file exists (``stat``, no decoding); MOSEI that its pickle exists; the
    ``features`` files are read and checked in full (arrays, shapes, NaN/inf, labels), as a
    trial would read them.

    Raises:
        DataError (a ValueError): What is wrong, where, how many, the first paths and the fix.
    """
    from rollingq.data import clips, cremad, kinetics_sounds, mosei

    if cfg.name == "synthetic":
        return "synthetic: built in"
    if cfg.name == "features":
        bundle = load_data(cfg)
        return (f"features: {len(bundle.train) + len(bundle.val)} train+val and "
                f"{len(bundle.test)} test samples, {', '.join(bundle.specs)}")
    if cfg.name == "mosei":
        return f"mosei: {mosei.pickle_path(cfg)}"
    if cfg.name in ("cremad", "kinetics_sounds"):
        module = cremad if cfg.name == "cremad" else kinetics_sounds
        splits, problems = module.list_clips(cfg)[:2]
        splits, _ = clips.check_files(cfg.name, splits, problems, cfg, module.FIX)
        return f"{cfg.name}: " + ", ".join(f"{len(c)} {s} clips" for s, c in splits.items())
    raise ValueError(f"unknown data set {cfg.name!r}; valid: {', '.join(LOADERS)}")


__all__ = ["DataBundle", "DataError", "ModalitySpec", "Split", "load_data", "preflight",
           "LOADERS"]
