"""Kinetics-Sounds (31 classes; fbank audio + 3 video frames), as the published code reads it.

Tree under ``data.root`` (every path overridable, see ``DataConfig``)::

    ks_train_overlap.txt, ks_test_overlap.txt   one clip a line: ``<id> ... <label>``
    train_spec/<id>.npy, test_spec/<id>.npy     float (1024, 128) kaldi fbank, normalised
    train-frames-1fps/train/<id>/frame_0000{t}.jpg
    val-frames-1fps/test/<id>/frame_0000{t}.jpg                      t = 1, 2, ... at 1 fps

A line splits on whitespace: the first field is the id, the last the integer label in [0, 31).
The fbank arrays are used as given (stored fp16). As published, clips with at most 3 frames are
dropped (reported, and listed in the entry's ``dropped.tsv``); usual split about 14,799 train /
2,597 test. Frames: ``frames.py`` (train: random within thirds, capped at frame 9; eval: the
published fixed frames). A validation split is carved from train (stratified, seeded).

The files on disk and the published preprocessing: docs/data.md.
"""

from __future__ import annotations

import io
import threading
from pathlib import Path

import numpy as np

from rollingq.config import DataConfig
from rollingq.data import clips
from rollingq.data.base import DataBundle
from rollingq.data.clips import Clip, DataError, Problems
from rollingq.data.frames import kinetics_frame_numbers

NAME = "kinetics_sounds"
NUM_CLASSES = 31
FBANK_SHAPE = (1024, 128)
MIN_FRAMES = 4  # published: clips with <= 3 frames are dropped
TREE = ("ks_train_overlap.txt, ks_test_overlap.txt, train_spec/, test_spec/, "
        "train-frames-1fps/train/ and val-frames-1fps/test/")
FIX = ("data.root, data.train_list, data.test_list, data.audio_dir, data.test_audio_dir, "
       "data.frames_dir, data.test_frames_dir")
# np.load parses a .npy header with ast.literal_eval, and on CPython 3.11 the AST constructor's
# recursion counter is shared by the interpreter's threads: two clips' headers parsed at once
# (a garbage collection in one running another thread's code) raise "SystemError: AST
# constructor recursion depth mismatch" (python/cpython#106905). The cache is built on threads.
_NPY_HEADER = threading.Lock()
DEFAULTS = {
    "train": ("ks_train_overlap.txt", "train_spec", "train-frames-1fps/train"),
    "test": ("ks_test_overlap.txt", "test_spec", "val-frames-1fps/test"),
}


def frame_name(number: int) -> str:
    """The published file name of frame ``number`` (1-based): ``frame_0000{t}.jpg``."""
    return f"frame_0000{number}.jpg"


def load_fbank(path: Path) -> np.ndarray:
    """A ``.npy`` fbank array -> float32 (1024, 128) (leading 1-dims dropped).

    Raises:
        DataError: The file cannot be read or has another shape.
    """
    try:
        raw = Path(path).read_bytes()  # the read outside the lock: the threads' I/O overlaps
        with _NPY_HEADER:
            x = np.load(io.BytesIO(raw), allow_pickle=False)
    except (OSError, ValueError, EOFError) as e:
        raise DataError(f"cannot read {path}: {e}; expected a .npy float array") from None
    while x.ndim > 2 and x.shape[0] == 1:
        x = x[0]
    if x.shape != FBANK_SHAPE or not np.issubdtype(x.dtype, np.number):
        raise DataError(f"{path}: expected a {FBANK_SHAPE} float fbank array, got "
                        f"{x.dtype} {x.shape}")
    return x.astype(np.float32)


def read_list(path: Path) -> list[tuple[str, int]]:
    """``<id> ... <label>`` lines -> (id, label); blank lines skipped."""
    rows = []
    with path.open(encoding="utf-8-sig") as f:
        for line, text in enumerate(f, start=1):
            fields = text.split()
            if not fields:
                continue
            try:
                label = int(fields[-1])
            except ValueError:
                label = -1
            if len(fields) < 2 or not 0 <= label < NUM_CLASSES:
                raise DataError(
                    f"{path} line {line}: expected '<id> ... <label>' with an integer label "
                    f"in [0, {NUM_CLASSES}), got {text.strip()!r}"
                )
            rows.append((fields[0], label))
    return rows


def split_lists(cfg: DataConfig) -> dict[str, Path]:
    """The train and test split lists (``data.train_list``, ``data.test_list``)."""
    root = Path(cfg.root).expanduser().absolute()
    return {split: clips.resolve(root, key, DEFAULTS[split][0])
            for split, key in (("train", cfg.train_list), ("test", cfg.test_list))}


def list_clips(cfg: DataConfig) -> tuple[dict[str, list[Clip]], Problems]:
    """Every listed clip with the frames to store, and what is missing or dropped."""
    root = Path(cfg.root).expanduser().absolute()  # absolute: paths are part of the cache key
    clips.check_root(NAME, root, TREE)
    keys = {"train": (cfg.train_list, cfg.audio_dir, cfg.frames_dir),
            "test": (cfg.test_list, cfg.test_audio_dir, cfg.test_frames_dir)}
    problems = Problems.new()
    out: dict[str, list[Clip]] = {}
    for split, (list_key, audio_key, frames_key) in keys.items():
        list_default, audio_default, frames_default = DEFAULTS[split]
        list_path = clips.resolve(root, list_key, list_default)
        audio_dir = clips.resolve(root, audio_key, audio_default)
        frames_dir = clips.resolve(root, frames_key, frames_default)
        clips.check_list(NAME, split, list_path, f"data.{split}_list")
        rows = read_list(list_path)
        if not rows:
            raise DataError(f"{NAME}: the {split} split list {list_path} lists no clips")
        out[split] = []
        for clip_id, label in rows:
            audio = audio_dir / f"{clip_id}.npy"
            folder = frames_dir / clip_id
            names = clips.list_jpgs(folder)
            missing = not audio.is_file()
            if missing:
                problems.add("audio files (.npy)", split, clip_id, audio)
            if names is None:
                problems.add("frame folders", split, clip_id, folder)
                out[split].append(Clip(clip_id, label, audio, [], 0))
                continue
            if len(names) < MIN_FRAMES:
                if missing:  # counted once, as missing
                    out[split].append(Clip(clip_id, label, audio, [], len(names)))
                else:
                    problems.dropped.append(
                        (split, clip_id, f"{len(names)} frames (published rule: <= 3 dropped)"))
                continue
            numbers = kinetics_frame_numbers(len(names), train=split == "train")
            if split == "train":  # validation clips come from train and need the eval frames
                last = max(numbers + kinetics_frame_numbers(len(names), train=False))
                numbers = list(range(1, last + 1))
            files = [folder / frame_name(t) for t in numbers]
            present = set(names)
            absent = [f for f in dict.fromkeys(files) if f.name not in present]
            if absent:
                problems.add("frame files", split, clip_id, absent[0])
            out[split].append(Clip(clip_id, label, audio, files, len(names)))
    return out, problems


def plan(cfg: DataConfig) -> clips.Plan:
    """The checked clips and the decoding settings of the cache entry (``clips.Plan``)."""
    splits, problems = list_clips(cfg)
    splits, dropped = clips.check_files(NAME, splits, problems, cfg, FIX)
    settings = {"fbank_shape": list(FBANK_SHAPE), "min_frames": MIN_FRAMES,
                "frame_rule": "published thirds, train capped at 9"}
    return clips.Plan(NAME, split_lists(cfg), splits, dropped,
                      clips.entry_settings(cfg, settings, FBANK_SHAPE))


def prepare(cfg: DataConfig, progress: bool | None = None, force: bool = False):
    """Checks the files and opens (building if needed) the cache entry; returns the Entry."""
    p = plan(cfg)
    return clips.build_entry(NAME, cfg, p.splits, p.dropped, p.settings, load_fbank,
                             FBANK_SHAPE, progress=progress, force=force)


def _eval_slots(count: int) -> list[int]:
    return [t - 1 for t in kinetics_frame_numbers(count, train=False)]


def load_kinetics_sounds(cfg: DataConfig) -> DataBundle:
    """Kinetics-Sounds as a DataBundle: audio (1024, 128) fbank, visual (3, 3, size, size)."""
    entry = prepare(cfg)
    return clips.av_bundle(NAME, entry, cfg, NUM_CLASSES, "kinetics_sounds", _eval_slots)
