"""Audio-visual clips (CREMA-D, Kinetics-Sounds): file checks, the cached arrays, the splits.

The two audio-visual loaders list their clips (``Clip``: id, label, audio file, the frame files
to store) and hand them here:

1. ``check_files``: every missing file is found up front. ``data.on_missing=error`` raises one
   ``DataError`` naming what is missing, how many samples it affects and the first paths;
   ``skip`` drops those samples, says how many, and lists their ids in the entry's
   ``dropped.tsv``.
2. ``build_entry``: decodes every clip once into a cache entry (``cache.py``), threads in
   parallel, with a progress bar on stderr. Per split: ``audio`` (N, H, W) fp16, ``visual``
   (N, K, 3, S, S) uint8 (train: every frame the published rule can pick, padded by repeating
   the last; eval: the 3 fixed frames), ``meta`` (N, 3) int32 (frame count, original height,
   width) and ``labels`` (N,) int64.
3. ``av_bundle``: memory-mapped tensors -> Splits with an ``AVTransform`` (``frames.py``).
   Validation rows are carved from train (stratified, seed 0) and get the eval frames.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import sys
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import torch

from rollingq.config import DataConfig
from rollingq.data import cache
from rollingq.data.base import DataBundle, DataError, ModalitySpec, Split, stratified_split
from rollingq.data.frames import FRAMES_PER_CLIP, AVTransform, FrameError, decode_frame

log = logging.getLogger(__name__)

SHOW = 3  # paths quoted per kind of missing file


@dataclass
class Clip:
    """One sample as found on disk.

    Attributes:
        id: The clip id from the split list.
        label: The class index.
        audio: The audio file.
        frames: The frame files to store, in slot order.
        count: The clip's number of frames, which the train frame rule draws from.
    """

    id: str
    label: int
    audio: Path
    frames: list[Path]
    count: int


def resolve(root: Path, value: str, default: str) -> Path:
    """A configured path: absolute as given, else relative to ``root``; "" means ``default``."""
    path = Path(value or default).expanduser()
    return path if path.is_absolute() else root / path


def check_root(name: str, root: Path, expected: str) -> None:
    if not root.is_dir():
        raise DataError(
            f"{name}: data.root={str(root)!r} does not exist or is not a folder; it should "
            f"hold {expected}"
        )


def check_list(name: str, split: str, path: Path, key: str) -> None:
    if not path.is_file():
        raise DataError(
            f"{name}: the {split} split list {path} does not exist, so no {split} sample can "
            f"be loaded; set {key} to its path (relative to data.root or absolute)"
        )


def list_jpgs(folder: Path) -> list[str] | None:
    """Sorted ``*.jpg``/``*.jpeg`` names in ``folder``, or None if it is not a folder."""
    try:
        return sorted(e.name for e in os.scandir(folder)
                      if e.name.lower().endswith((".jpg", ".jpeg")) and e.is_file())
    except (FileNotFoundError, NotADirectoryError):
        return None


@dataclass
class Problems:
    """Missing files by kind ("audio files", "frame folders", ...) as (split, id, path)."""

    missing: dict[str, list[tuple[str, str, Path]]]
    dropped: list[tuple[str, str, str]]  # (split, id, reason): dropped by a published rule

    @classmethod
    def new(cls) -> Problems:
        return cls({}, [])

    def add(self, kind: str, split: str, clip_id: str, path: Path) -> None:
        self.missing.setdefault(kind, []).append((split, clip_id, path))


def check_files(
    name: str,
    splits: dict[str, list[Clip]],
    problems: Problems,
    cfg: DataConfig,
    fix: str,
) -> tuple[dict[str, list[Clip]], list[tuple[str, str, str]]]:
    """Applies ``data.on_missing`` to the missing files found while listing the clips.

    Args:
        name: The data set name, for messages.
        splits: Split -> every listed clip (dropped-by-rule clips already removed).
        problems: What is missing, and what a published rule dropped.
        cfg: The data config (``on_missing``).
        fix: The keys to point at the right paths, for the message.

    Returns:
        The clips to use, and every dropped (split, id, reason) for ``dropped.tsv``.

    Raises:
        DataError: Files are missing and ``on_missing`` is ``error``, or a split is left empty.
    """
    bad = {(s, i) for rows in problems.missing.values() for s, i, _ in rows}
    total = sum(len(v) for v in splits.values())
    lines = []
    for kind, rows in problems.missing.items():
        folders = sorted({str(p.parent) for _, _, p in rows if not p.parent.exists()})
        where = f" (folder {folders[0]} does not exist)" if len(folders) == 1 else ""
        shown = ", ".join(str(p) for _, _, p in rows[:SHOW])
        more = f" and {len(rows) - SHOW} more" if len(rows) > SHOW else ""
        lines.append(f"  {len(rows)} {kind}{where}: {shown}{more}")
    dropped = list(problems.dropped)
    if bad and cfg.on_missing == "error":
        raise DataError(
            f"{name}: {len(bad)} of {total} samples have missing files "
            f"(data.root={cfg.root!r}):\n" + "\n".join(lines) + f"\nfix the paths ({fix}) "
            "or set data.on_missing=skip to drop these samples and list their ids"
        )
    if bad:
        log.warning("%s: data.on_missing=skip drops %d of %d samples with missing files:\n%s",
                    name, len(bad), total, "\n".join(lines))
        reasons = {(s, i): f"missing {kind}: {p}" for kind, rows in problems.missing.items()
                   for s, i, p in rows}
        dropped += [(s, c.id, reasons[(s, c.id)]) for s, clips in splits.items() for c in clips
                    if (s, c.id) in bad]
        splits = {s: [c for c in clips if (s, c.id) not in bad] for s, clips in splits.items()}
    for s, clips in splits.items():
        if not clips:
            raise DataError(f"{name}: no {s} samples are left after dropping missing files; "
                            f"check {fix}")
    return splits, dropped


def recipe(name: str, settings: dict[str, Any], splits: dict[str, list[Clip]],
           dropped: list[tuple[str, str, str]]) -> dict[str, Any]:
    """What an entry depends on: settings, and a hash of every clip's id, label and files."""
    h = hashlib.sha256()
    for s, clips in splits.items():
        for c in clips:
            h.update(json.dumps([s, c.id, c.label, str(c.audio), [str(f) for f in c.frames],
                                 c.count]).encode())
    h.update(json.dumps(dropped).encode())
    sizes = {s: len(c) for s, c in splits.items()}
    return {"dataset": name, "settings": settings, "clips": h.hexdigest(), "sizes": sizes}


def file_digest(path: Path) -> dict[str, Any]:
    """A file's path, size and SHA-256 (read in 1 MiB blocks)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return {"path": str(path), "bytes": path.stat().st_size, "sha256": h.hexdigest()}


@dataclass
class Plan:
    """A clip data set as checked, and what its cache entry depends on.

    Attributes:
        name: The data set name.
        lists: Split -> its list file.
        splits: Split -> the clips kept (``check_files``).
        dropped: (split, id, why) of each clip left out.
        settings: The decoding settings (part of the cache key).
    """

    name: str
    lists: dict[str, Path]
    splits: dict[str, list[Clip]]
    dropped: list[tuple[str, str, str]]
    settings: dict[str, Any]

    def summary(self) -> str:
        return f"{self.name}: " + ", ".join(f"{len(c)} {s} clips" for s, c in self.splits.items())

    def fingerprint(self) -> dict[str, Any]:
        """The split lists (path, size, SHA-256), the clips hash (every kept clip's id, label
        and files), the counts and the cache entry's name, which a rebuilt or changed data
        set changes."""
        rec = recipe(self.name, self.settings, self.splits, self.dropped)
        return {"dataset": self.name, "lists": {s: file_digest(p) for s, p in self.lists.items()},
                "clips_sha256": rec["clips"], "sizes": rec["sizes"], "dropped": len(self.dropped),
                "cache_key": f"{self.name}-{cache.recipe_key(rec)}"}


def entry_settings(cfg: DataConfig, settings: dict[str, Any],
                   audio_shape: tuple[int, ...]) -> dict[str, Any]:
    """A loader's decoding settings with the config's that shape the stored arrays: the frame
    size, the audio shape and the NaN/inf rule (only when zeros replace them)."""
    out = {**settings, "decode_size": cfg.decode_size, "audio_shape": list(audio_shape)}
    if cfg.nonfinite != "error":
        out["nonfinite"] = cfg.nonfinite
    return out


def _workers(cfg: DataConfig) -> int:
    if cfg.workers:
        return cfg.workers
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def build_entry(
    name: str,
    cfg: DataConfig,
    splits: dict[str, list[Clip]],
    dropped: list[tuple[str, str, str]],
    settings: dict[str, Any],
    load_audio: Callable[[Path], np.ndarray],
    audio_shape: tuple[int, ...],
    progress: bool | None = None,
    force: bool = False,
) -> cache.Entry:
    """Opens the cache entry of these clips, decoding them first if needed.

    Args:
        name: The data set name (the entry's prefix).
        cfg: The data config (``decode_size``, ``cache_dir``, ``workers``).
        splits: Split -> clips to store.
        dropped: (split, id, reason) of every dropped sample, written to ``dropped.tsv``.
        settings: The preprocessing settings, the cache key's (``entry_settings``).
        load_audio: Path -> float32 array of ``audio_shape``; raises naming the file.
        audio_shape: The per-clip audio array shape.
        progress: Show a progress bar on stderr (None: only when stderr is a terminal).
        force: Rebuild even if a valid entry exists.
    """
    size = cfg.decode_size

    def build(w: cache.Writer) -> dict[str, Any]:
        info: dict[str, Any] = {"sizes": {}, "frames_stored": {}, "dropped": len(dropped)}
        w.text("ids.json", json.dumps({s: [c.id for c in clips] for s, clips in splits.items()}))
        w.text("dropped.tsv", "split\tid\treason\n"
               + "".join(f"{s}\t{i}\t{r}\n" for s, i, r in dropped))
        threads = _workers(cfg)
        previous = torch.get_num_threads()
        if threads > 1:
            torch.set_num_threads(1)  # parallel over clips, not inside one
        try:
            for split, clips in splits.items():
                k = max(len(c.frames) for c in clips)
                arrays = (w.array(f"{split}_audio", (len(clips), *audio_shape), np.float16),
                          w.array(f"{split}_visual", (len(clips), k, 3, size, size), np.uint8),
                          w.array(f"{split}_meta", (len(clips), 3), np.int32))
                w.array(f"{split}_labels", (len(clips),), np.int64)[:] = [c.label for c in clips]
                store = partial(_store_clip, clips, arrays, load_audio, tuple(audio_shape), size,
                                cfg.nonfinite)
                _decode_all(store, len(clips), threads, f"{name} {split}: decoding", progress)
                info["sizes"][split] = len(clips)
                info["frames_stored"][split] = k
        finally:
            torch.set_num_threads(previous)
        return info

    cache_dir = Path(cfg.cache_dir).expanduser() if cfg.cache_dir else cache.default_cache_dir()
    return cache.ensure(cache_dir, name, recipe(name, settings, splits, dropped), build, force)


def _store_clip(clips: list[Clip], arrays: tuple[np.ndarray, np.ndarray, np.ndarray],
                load_audio: Callable[[Path], np.ndarray], audio_shape: tuple[int, ...],
                size: int, nonfinite: str, i: int) -> None:
    """Decodes clip ``i`` into the entry's arrays: its audio as float16 (NaN/inf per
    ``data.nonfinite``), its frames (the last repeated to the split's frame count) and its
    (count, height, width) record."""
    audio, visual, meta = arrays
    c = clips[i]
    a = load_audio(c.audio)
    if a.shape != audio_shape:
        raise DataError(f"{c.audio}: audio of shape {a.shape}, expected {audio_shape} like the "
                        f"other clips")
    a16 = a.astype(np.float16)
    bad = ~np.isfinite(a16)
    if bad.any():
        what = (f"{c.audio}: audio holds {int(bad.sum()):,} NaN/inf values (or values beyond "
                f"the float16 range) of {a16.size:,}")
        if nonfinite == "error":
            raise DataError(what + "; fix or drop the file, or set data.nonfinite=zero to store "
                            "zeros in their place")
        log.warning("%s; replaced by 0 (data.nonfinite=zero)", what)
        a16[bad] = 0
    audio[i] = a16
    hw = (size, size)
    for j, f in enumerate(c.frames):
        try:
            img, orig = decode_frame(f, size)
        except FrameError as e:
            raise DataError(str(e)) from None
        visual[i, j] = img.numpy()
        hw = orig if j == 0 else hw
    visual[i, len(c.frames):] = visual[i, len(c.frames) - 1]
    meta[i] = (c.count, *hw)


def _decode_all(store: Callable[[int], None], n: int, threads: int, desc: str,
                progress: bool | None) -> None:
    """``store(i)`` for every clip, the first in this thread (the decoders import their
    libraries lazily, and torchvision cannot be imported from two threads at once), the rest on
    ``threads`` threads; the first error cancels the clips not begun and is raised."""
    from tqdm import tqdm

    bar = tqdm(total=n, desc=desc, unit="clip", file=sys.stderr,
               disable=(not progress) if progress is not None else None)
    try:
        store(0)
        cache.STATS["samples_decoded"] += 1
        bar.update(1)
        with ThreadPoolExecutor(max_workers=threads) as pool:
            futures = [pool.submit(store, i) for i in range(1, n)]
            try:
                for fut in futures:
                    fut.result()
                    cache.STATS["samples_decoded"] += 1
                    bar.update(1)
            except BaseException:
                for fut in futures:
                    fut.cancel()
                raise
    finally:
        bar.close()


def select_modalities(name: str, cfg: DataConfig, available: tuple[str, ...],
                      default: tuple[str, ...]) -> list[str]:
    """``data.modalities`` as a list, checked against what the data set has."""
    mods = [m.strip() for m in cfg.modalities.split(",") if m.strip()] or list(default)
    unknown = [m for m in mods if m not in available]
    if unknown:
        raise DataError(f"{name} has no modality {', '.join(unknown)} (data.modalities="
                        f"{cfg.modalities!r}); it has: {', '.join(available)}")
    return mods


def report_dropped(name: str, entry: cache.Entry) -> None:
    n = entry.info.get("dropped", 0)
    if n:
        log.warning("%s: %d listed samples are not used (missing files, or a published rule "
                    "such as Kinetics-Sounds' <= 3 frames); ids and reasons: %s", name, n,
                    entry.path / "dropped.tsv")


def av_bundle(
    name: str,
    entry: cache.Entry,
    cfg: DataConfig,
    num_classes: int,
    rule: str,
    eval_slots: Callable[[int], list[int]],
) -> DataBundle:
    """The train/val/test Splits of an audio-visual entry.

    Args:
        name: The data set name (messages).
        entry: The opened cache entry.
        cfg: The data config (``val_fraction``, ``frame_size``, ``modalities``).
        num_classes: Number of classes.
        rule: The train frame rule (``frames.SAMPLERS``).
        eval_slots: Frame count -> the 3 fixed slots in a train clip's stored frames (for val).
    """
    report_dropped(name, entry)
    mods = select_modalities(name, cfg, ("audio", "visual"), ("audio", "visual"))
    arr = {k: torch.from_numpy(v) for k, v in entry.arrays.items()}
    size = cfg.frame_size

    def pick(inputs: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        keep = set(mods) | ({"visual_meta"} if "visual" in mods else set())
        return {k: v for k, v in inputs.items() if k in keep}

    labels = arr["train_labels"]
    store = {"audio": arr["train_audio"], "visual": arr["train_visual"],
             "visual_meta": arr["train_meta"]}
    if cfg.val_fraction > 0:
        keep, held = stratified_split(labels, cfg.val_fraction, seed=0)
        if len(held) == 0:
            raise DataError(
                f"{name}: data.val_fraction={cfg.val_fraction} carves no validation clips from "
                f"{len(labels)} training clips (a class needs 2 clips to give one); raise it, "
                "or set 0 to validate on the training clips with eval frames"
            )
        # lazy: the training rows stay memory-mapped, read a batch at a time
        train = Split(pick(store), labels[keep], AVTransform(True, size, rule), rows=keep)
    else:  # validation = the training clips with eval frames; train stays memory-mapped
        held = torch.arange(len(labels))
        train = Split(pick(store), labels, AVTransform(True, size, rule))
    counts = arr["train_meta"][held, 0].tolist()
    slots = torch.tensor([eval_slots(int(c)) for c in counts], dtype=torch.long).view(-1, 3)
    val_inputs = {"audio": arr["train_audio"][held]}
    if "visual" in mods:
        val_inputs["visual"] = arr["train_visual"][held[:, None], slots]  # (n, 3, 3, S, S)
    val = Split({m: val_inputs[m] for m in mods}, labels[held], AVTransform(False, size, rule))
    test_inputs = {"audio": arr["test_audio"], "visual": arr["test_visual"]}
    test = Split({m: test_inputs[m] for m in mods}, arr["test_labels"],
                 AVTransform(False, size, rule))
    specs = {
        "audio": ModalitySpec("spectrogram", tuple(arr["train_audio"].shape[1:])),
        "visual": ModalitySpec("frames", (FRAMES_PER_CLIP, 3, size, size)),
    }
    return DataBundle({m: specs[m] for m in mods}, num_classes, train, val, test)
