"""CMU-MOSEI (binary sentiment; the paper's visual + text setting), from MulT's pickles.

One pickle under ``data.root``: ``mosei_senti_data_noalign.pkl`` (unaligned, used when present)
or ``mosei_senti_data.pkl`` (aligned); ``data.pickle`` names another. It is a dict with
``train``, ``valid`` and ``test``, each a dict of ``vision`` (N, T, 35), ``audio`` (N, T, 74),
``text`` (N, T, 300), ``labels`` (N, 1, 1) sentiment in [-3, 3] and an optional ``id``. Usual
sizes 16,326 / 1,871 / 4,659; unaligned T: text 50, audio and vision 500.

As published: label 0 if the score is < 0, else 1; ``-inf`` in audio becomes 0. Any other
NaN/inf is an error naming the file. ``data.modalities`` picks any subset, in fusion order
(default ``visual,text``; ``audio,visual,text`` for all three). The pickle is parsed once into
the cache as float32 ``.npy`` arrays (all three modalities), so trials skip the multi-GB unpickle.
A pickle can run code when loaded: only read files from a source you trust.

The pickle's layout: docs/data.md.
"""

from __future__ import annotations

import logging
import pickle
from pathlib import Path
from typing import Any

import numpy as np
import torch

from rollingq.config import DataConfig
from rollingq.data import cache, clips
from rollingq.data.base import DataBundle, ModalitySpec, Split
from rollingq.data.clips import DataError

log = logging.getLogger(__name__)

NAME = "mosei"
NUM_CLASSES = 2  # binary sentiment: score < 0 or >= 0
FILES = ("mosei_senti_data_noalign.pkl", "mosei_senti_data.pkl")
SPLITS = {"train": "train", "val": "valid", "test": "test"}  # ours -> the pickle's
KEYS = {"audio": "audio", "visual": "vision", "text": "text"}  # modality -> the pickle's key
DEFAULT_MODALITIES = ("visual", "text")


def pickle_path(cfg: DataConfig) -> Path:
    """The configured pickle, else the first of FILES under ``data.root``."""
    root = Path(cfg.root).expanduser()
    if cfg.pickle:
        path = clips.resolve(root, cfg.pickle, "")
        if not path.is_file():
            raise DataError(f"{NAME}: data.pickle={cfg.pickle!r} -> {path} does not exist")
        return path
    clips.check_root(NAME, root, " or ".join(FILES))
    for name in FILES:
        if (root / name).is_file():
            return root / name
    raise DataError(f"{NAME}: data.root={cfg.root!r} holds neither {' nor '.join(FILES)}; "
                    "set data.pickle to the file (relative to data.root or absolute)")


def read_pickle(path: Path) -> dict[str, dict[str, np.ndarray]]:
    """Loads and checks the pickle: splits, keys, 3-D arrays of one N, (N, 1, 1) labels.

    Raises:
        DataError: Naming the file, split and key at fault.
    """
    try:
        with path.open("rb") as f:
            data = pickle.load(f)
    except Exception as e:  # noqa: BLE001 - unpickling raises many types for a bad file
        raise DataError(f"cannot read pickle {path}: {type(e).__name__}: {e}") from None
    if not isinstance(data, dict):
        raise DataError(f"{path} holds a {type(data).__name__}; expected a dict with "
                        f"{', '.join(SPLITS.values())}")
    out = {}
    for ours, theirs in SPLITS.items():
        part = data.get(theirs)
        if not isinstance(part, dict):
            raise DataError(f"{path} has no split {theirs!r} (a dict); it has: "
                            f"{', '.join(map(str, data)) or 'nothing'}")
        missing = [k for k in (*KEYS.values(), "labels") if k not in part]
        if missing:
            raise DataError(f"{path}: split {theirs!r} lacks {', '.join(missing)}; it has: "
                            f"{', '.join(map(str, part))}")
        labels = np.asarray(part["labels"])
        n = len(labels)
        if labels.size != n or not np.issubdtype(labels.dtype, np.number):
            raise DataError(f"{path}: {theirs}/labels must be (N, 1, 1) scores, got "
                            f"{labels.dtype} {labels.shape}")
        arrays = {"labels": labels.reshape(n).astype(np.float32)}
        for mod, key in KEYS.items():
            x = np.asarray(part[key])
            if x.ndim != 3 or len(x) != n or not np.issubdtype(x.dtype, np.number):
                raise DataError(f"{path}: {theirs}/{key} must be a numeric (N, T, F) array "
                                f"with N={n} (the labels), got {x.dtype} {x.shape}")
            arrays[mod] = x
        out[ours] = arrays
    return out


def cache_recipe(cfg: DataConfig) -> dict[str, Any]:
    """What the cache entry depends on: the pickle's path, size and modification time, and the
    settings."""
    path = pickle_path(cfg).resolve()
    stat = path.stat()
    return {"dataset": NAME, "pickle": str(path), "bytes": stat.st_size,
            "mtime_ns": stat.st_mtime_ns, "settings": {"label": "score >= 0", "audio": "-inf->0"}}


def fingerprint(cfg: DataConfig) -> dict[str, Any]:
    """The pickle (path, size, modification time: hashing gigabytes is left to the cache's
    ``--verify``) and the cache entry's name."""
    recipe = cache_recipe(cfg)
    return {"dataset": NAME, "pickle": recipe["pickle"], "bytes": recipe["bytes"],
            "mtime_ns": recipe["mtime_ns"], "cache_key": f"{NAME}-{cache.recipe_key(recipe)}"}


def prepare(cfg: DataConfig, progress: bool | None = None, force: bool = False) -> cache.Entry:
    """Opens (building if needed) the cache entry of the pickle; returns the Entry."""
    recipe = cache_recipe(cfg)
    path = Path(recipe["pickle"])

    def build(w: cache.Writer) -> dict[str, Any]:
        log.info("%s: reading %s (once; trials then read the cache)", NAME, path)
        data = read_pickle(path)
        info: dict[str, Any] = {"sizes": {}, "audio_neg_inf": {}}
        for split, arrays in data.items():
            for mod in KEYS:
                x = arrays[mod].astype(np.float32)
                if mod == "audio":
                    neg_inf = np.isneginf(x)
                    info["audio_neg_inf"][split] = int(neg_inf.sum())
                    x[neg_inf] = 0.0
                    log.info("%s %s: %d -inf audio values -> 0 (as published)", NAME, split,
                             info["audio_neg_inf"][split])
                bad = int((~np.isfinite(x)).sum())
                if bad:
                    raise DataError(f"{path}: {SPLITS[split]}/{KEYS[mod]} holds {bad} NaN/inf "
                                    "values (only -inf in audio is mapped to 0, as published)")
                w.array(f"{split}_{mod}", x.shape, np.float32)[:] = x
            scores = arrays["labels"]
            if not np.isfinite(scores).all():
                raise DataError(f"{path}: {SPLITS[split]}/labels holds NaN/inf scores")
            w.array(f"{split}_labels", scores.shape, np.int64)[:] = (scores >= 0).astype(np.int64)
            info["sizes"][split] = len(scores)
            cache.STATS["samples_decoded"] += len(scores)
        return info

    cache_dir = Path(cfg.cache_dir).expanduser() if cfg.cache_dir else cache.default_cache_dir()
    return cache.ensure(cache_dir, NAME, recipe, build, force)


def load_mosei(cfg: DataConfig) -> DataBundle:
    """CMU-MOSEI as a DataBundle of ``sequence`` modalities (default visual + text)."""
    mods = clips.select_modalities(NAME, cfg, tuple(KEYS), DEFAULT_MODALITIES)
    entry = prepare(cfg)
    arr = {k: torch.from_numpy(v) for k, v in entry.arrays.items()}
    splits = {s: Split({m: arr[f"{s}_{m}"] for m in mods}, arr[f"{s}_labels"]) for s in SPLITS}
    specs = {m: ModalitySpec("sequence", tuple(arr[f"train_{m}"].shape[1:])) for m in mods}
    return DataBundle(specs, NUM_CLASSES, splits["train"], splits["val"], splits["test"])
