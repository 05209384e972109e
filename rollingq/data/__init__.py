"""Data sets by name (``data.name``): each returns a DataBundle of in-memory splits."""

from __future__ import annotations

from collections.abc import Callable

from rollingq.config import DataConfig
from rollingq.data.base import DataBundle, ModalitySpec, Split
from rollingq.data.features import load_features
from rollingq.data.synthetic import load_synthetic

LOADERS: dict[str, Callable[[DataConfig], DataBundle]] = {
    "synthetic": load_synthetic,
    "features": load_features,
}


def load_data(cfg: DataConfig) -> DataBundle:
    """Loads the data set ``cfg.name``.

    Raises:
        ValueError: For an unknown name (lists the valid ones) or a data set-specific problem.
    """
    if cfg.name not in LOADERS:
        raise ValueError(f"unknown data set {cfg.name!r}; valid: {', '.join(LOADERS)}")
    return LOADERS[cfg.name](cfg)


__all__ = ["DataBundle", "ModalitySpec", "Split", "load_data", "LOADERS"]
