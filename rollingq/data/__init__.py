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
    return bundle


__all__ = ["DataBundle", "DataError", "ModalitySpec", "Split", "load_data", "LOADERS"]
