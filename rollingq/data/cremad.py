"""CREMA-D (6 emotions; audio + 3 video frames), as the published code reads it.

Tree under ``data.root`` (every path overridable, see ``DataConfig``)::

    train.csv, test.csv          no header; rows ``clip_id,EMO``; BOM and CRLF allowed
    AudioWAV/<clip>.wav          16 kHz mono WAV (or <clip>.pt: the BalanceBench copy)
    Image-01-FPS/<clip>/*.jpg    frames at 1 fps, usually 2-3 a clip

Labels: NEU 0, HAP 1, SAD 2, FEA 3, DIS 4, ANG 5. Usual split 6,698 train / 744 test; a
validation split is carved from train (stratified, seeded).

Audio as published: read at its own rate with ``soundfile`` (mono: channel mean), resampled to
22,050 Hz with torchaudio (the published code uses librosa's soxr resampler), tiled x3, cut to
3 s, clipped to [-1, 1], STFT (n_fft 512, hop 353, Hann, centred with zero padding as librosa
>= 0.10 does), ``log(|S| + 1e-7)`` -> 257 x 188, stored fp16. The BalanceBench ``.pt`` files
hold the spectrogram already; they are read as given (any 2-D shape, the same for every clip).
Frames: see ``frames.py`` (train: 3 drawn with replacement from the sorted files, sorted;
eval: the centres of thirds).

The files on disk and the published preprocessing: docs/data.md.
"""

from __future__ import annotations

import csv
import threading
from pathlib import Path

import numpy as np
import torch

from rollingq.config import DataConfig
from rollingq.data import clips
from rollingq.data.base import DataBundle
from rollingq.data.clips import Clip, DataError, Problems
from rollingq.data.frames import cremad_eval_slots

NAME = "cremad"
CLASSES = {"NEU": 0, "HAP": 1, "SAD": 2, "FEA": 3, "DIS": 4, "ANG": 5}
SAMPLE_RATE = 22_050
SECONDS = 3
N_FFT = 512
HOP = 353
EPS = 1e-7
SPEC_SHAPE = (N_FFT // 2 + 1, SAMPLE_RATE * SECONDS // HOP + 1)  # (257, 188)
TREE = "train.csv, test.csv, AudioWAV/<clip>.wav (or .pt) and Image-01-FPS/<clip>/*.jpg"
FIX = "data.root, data.train_list, data.test_list, data.audio_dir, data.frames_dir"

_resamplers: dict[int, torch.nn.Module] = {}
_resamplers_lock = threading.Lock()


def _resampler(rate: int) -> torch.nn.Module:
    import torchaudio

    with _resamplers_lock:
        if rate not in _resamplers:
            _resamplers[rate] = torchaudio.transforms.Resample(rate, SAMPLE_RATE)
        return _resamplers[rate]


def wav_spectrogram(path: Path) -> np.ndarray:
    """A CREMA-D WAV -> the published log-STFT, float32 (257, 188).

    Raises:
        DataError: The file cannot be read, or is too short to make 3 s from 3 copies.
    """
    import soundfile

    try:
        data, rate = soundfile.read(str(path), dtype="float32", always_2d=True)
    except (RuntimeError, OSError, ValueError) as e:
        raise DataError(f"cannot read WAV {path}: {e}") from None
    need = SAMPLE_RATE * SECONDS
    wave = torch.from_numpy(data.mean(axis=1))
    if rate != SAMPLE_RATE and len(wave):
        wave = _resampler(rate)(wave)
    if 3 * len(wave) < need:
        raise DataError(
            f"WAV {path} lasts {len(data) / rate:.2f} s; three copies must cover {SECONDS} s "
            f"(the published preprocessing), so it must last at least {SECONDS / 3:.0f} s"
        )
    wave = wave.repeat(3)[:need].clamp(-1.0, 1.0)
    spec = torch.stft(wave, N_FFT, HOP, window=torch.hann_window(N_FFT), center=True,
                      pad_mode="constant", return_complex=True)
    return torch.log(spec.abs() + EPS).numpy()


def pt_spectrogram(path: Path) -> np.ndarray:
    """A BalanceBench ``<clip>.pt`` -> its 2-D spectrogram as float32 (leading 1-dims dropped).

    Raises:
        DataError: The file cannot be read or does not hold a 2-D tensor.
    """
    try:
        x = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - torch.load raises many types for a bad file
        raise DataError(f"cannot read {path}: {e}") from None
    if not isinstance(x, torch.Tensor):
        raise DataError(f"{path} holds a {type(x).__name__}; expected a spectrogram tensor")
    while x.dim() > 2 and x.shape[0] == 1:
        x = x[0]
    if x.dim() != 2:
        raise DataError(f"{path}: expected a 2-D spectrogram tensor, got shape "
                        f"{tuple(x.shape)}")
    return x.float().numpy()


def read_list(path: Path) -> list[tuple[str, int]]:
    """``clip_id,EMO`` rows (no header; BOM, CRLF and blank lines allowed) -> (id, label)."""
    rows = []
    with path.open(encoding="utf-8-sig", newline="") as f:
        for line, row in enumerate(csv.reader(f), start=1):
            row = [x.strip() for x in row]
            if not any(row):
                continue
            if len(row) < 2 or not row[0]:
                raise DataError(f"{path} line {line}: expected 'clip_id,EMO', got {row!r}")
            if row[1] not in CLASSES:
                raise DataError(
                    f"{path} line {line}: unknown emotion {row[1]!r} for clip {row[0]!r}; "
                    f"valid: {', '.join(CLASSES)}"
                )
            rows.append((row[0], CLASSES[row[1]]))
    return rows


def _audio_format(cfg: DataConfig, audio_dir: Path, first: str) -> str:
    if cfg.audio_format != "auto":
        return cfg.audio_format
    if (audio_dir / f"{first}.wav").is_file():
        return "wav"
    return "pt" if (audio_dir / f"{first}.pt").is_file() else "wav"


def split_lists(cfg: DataConfig) -> dict[str, Path]:
    """The train and test split lists (``data.train_list``, ``data.test_list``)."""
    root = Path(cfg.root).expanduser().absolute()
    return {"train": clips.resolve(root, cfg.train_list, "train.csv"),
            "test": clips.resolve(root, cfg.test_list, "test.csv")}


def list_clips(cfg: DataConfig) -> tuple[dict[str, list[Clip]], Problems, str]:
    """Every listed clip, what is missing, and the audio format (``wav`` or ``pt``)."""
    root = Path(cfg.root).expanduser().absolute()  # absolute: paths are part of the cache key
    clips.check_root(NAME, root, TREE)
    lists = split_lists(cfg)
    audio_dirs = {"train": clips.resolve(root, cfg.audio_dir, "AudioWAV")}
    audio_dirs["test"] = clips.resolve(root, cfg.test_audio_dir, str(audio_dirs["train"]))
    frame_dirs = {"train": clips.resolve(root, cfg.frames_dir, "Image-01-FPS")}
    frame_dirs["test"] = clips.resolve(root, cfg.test_frames_dir, str(frame_dirs["train"]))
    for split, path in lists.items():
        clips.check_list(NAME, split, path, f"data.{split}_list")
    rows = {split: read_list(path) for split, path in lists.items()}
    for split, r in rows.items():
        if not r:
            raise DataError(f"{NAME}: the {split} split list {lists[split]} lists no clips")
    fmt = _audio_format(cfg, audio_dirs["train"], rows["train"][0][0])
    problems = Problems.new()
    out: dict[str, list[Clip]] = {}
    for split, r in rows.items():
        out[split] = []
        for clip_id, label in r:
            audio = audio_dirs[split] / f"{clip_id}.{fmt}"
            if not audio.is_file():
                problems.add(f"audio files (.{fmt})", split, clip_id, audio)
            folder = frame_dirs[split] / clip_id
            names = clips.list_jpgs(folder)
            if names is None:
                problems.add("frame folders", split, clip_id, folder)
                names = []
            elif not names:
                problems.add("frame folders without .jpg files", split, clip_id, folder)
            files = [folder / n for n in names]
            if split != "train" and files:  # eval stores the 3 fixed frames
                files = [files[i] for i in cremad_eval_slots(len(files))]
            out[split].append(Clip(clip_id, label, audio, files, len(names)))
    return out, problems, fmt


def plan(cfg: DataConfig) -> clips.Plan:
    """The checked clips and the decoding settings of the cache entry (``clips.Plan``)."""
    splits, problems, fmt = list_clips(cfg)
    splits, dropped = clips.check_files(NAME, splits, problems, cfg, FIX)
    settings = {"audio_format": fmt, "sample_rate": SAMPLE_RATE, "seconds": SECONDS,
                "n_fft": N_FFT, "hop": HOP, "eps": EPS, "stft_pad": "constant",
                "eval_frames": "centres of thirds"}
    shape = SPEC_SHAPE if fmt == "wav" else pt_spectrogram(splits["train"][0].audio).shape
    return clips.Plan(NAME, split_lists(cfg), splits, dropped,
                      clips.entry_settings(cfg, settings, shape))


def prepare(cfg: DataConfig, progress: bool | None = None, force: bool = False):
    """Checks the files and opens (building if needed) the cache entry; returns the Entry."""
    p = plan(cfg)
    load_audio = wav_spectrogram if p.settings["audio_format"] == "wav" else pt_spectrogram
    return clips.build_entry(NAME, cfg, p.splits, p.dropped, p.settings, load_audio,
                             tuple(p.settings["audio_shape"]), progress=progress, force=force)


def load_cremad(cfg: DataConfig) -> DataBundle:
    """CREMA-D as a DataBundle: audio (257, 188) spectrograms, visual (3, 3, size, size)."""
    entry = prepare(cfg)
    return clips.av_bundle(NAME, entry, cfg, len(CLASSES), "cremad", cremad_eval_slots)
