"""Tiny data sets written in each exact on-disk format (METHOD.md §4)."""

from __future__ import annotations

import pickle
from pathlib import Path

import av
import numpy as np
import soundfile
import torch
from torchvision.io import write_jpeg

from rollingq.config import build_config

EMOTIONS = ["NEU", "HAP", "SAD", "FEA", "DIS", "ANG"]
TINY_MODEL = {"model.dim": 32, "model.depth": 1, "model.heads": 2, "model.patch_size": 16}


def grey(k: int) -> int:
    """The grey level of frame ``k`` (0-based): frames are told apart by their colour."""
    return 30 + 40 * k


def write_wav(path: Path, seconds: float = 2.0, rate: int = 16_000, freq: float = 1000.0,
              channels: int = 1) -> None:
    t = np.arange(int(seconds * rate)) / rate
    x = (0.3 * np.sin(2 * np.pi * freq * t)).astype(np.float32)
    soundfile.write(path, np.stack([x] * channels, 1) if channels > 1 else x, rate,
                    subtype="PCM_16")


def write_frame(path: Path, value: int, h: int = 36, w: int = 48) -> None:
    write_jpeg(torch.full((3, h, w), value, dtype=torch.uint8), str(path), quality=95)


def cremad_id(i: int) -> tuple[str, str]:
    emo = EMOTIONS[i % 6]
    return f"{1001 + i}_DFA_{emo}_XX", emo


def make_cremad(root: Path, n_train: int = 12, n_test: int = 6, frames=(2, 3),
                audio: str = "wav") -> dict[str, list[tuple[str, str]]]:
    """CREMA-D: train.csv/test.csv (BOM, CRLF), AudioWAV/<clip>.wav|.pt, Image-01-FPS/<clip>/."""
    (root / "AudioWAV").mkdir(parents=True)
    (root / "Image-01-FPS").mkdir()
    rows = {"train": [cremad_id(i) for i in range(n_train)],
            "test": [cremad_id(i) for i in range(n_train, n_train + n_test)]}
    for split, r in rows.items():
        text = "".join(f"{clip},{emo}\r\n" for clip, emo in r)
        (root / f"{split}.csv").write_bytes(b"\xef\xbb\xbf" + text.encode())
        for i, (clip, _) in enumerate(r):
            if audio == "wav":
                write_wav(root / "AudioWAV" / f"{clip}.wav", seconds=1.5 + 0.1 * (i % 5))
            else:
                torch.save(torch.full((257, 188), float(i)), root / "AudioWAV" / f"{clip}.pt")
            folder = root / "Image-01-FPS" / clip
            folder.mkdir()
            for k in range(frames[i % len(frames)]):
                write_frame(folder / f"{k:04d}.jpg", grey(k))
    return rows


def ks_frame(t: int) -> int:
    """The grey level of Kinetics-Sounds frame t (1-based, up to 20)."""
    return 10 + 12 * t


def make_ks(root: Path, train_counts=(10, 7, 5, 2, 10, 8), test_counts=(10, 9, 3)) -> dict:
    """Kinetics-Sounds: split lists, <split>_spec/<id>.npy (1024, 128), frame_0000{t}.jpg."""
    layout = {"train": ("ks_train_overlap.txt", "train_spec", "train-frames-1fps/train"),
              "test": ("ks_test_overlap.txt", "test_spec", "val-frames-1fps/test")}
    rows = {}
    for split, counts in (("train", train_counts), ("test", test_counts)):
        lst, spec, frames = layout[split]
        (root / spec).mkdir(parents=True)
        rows[split] = []
        lines = []
        for i, n in enumerate(counts):
            label = 30 * (i % 2)  # 0, 30, 0, ...: the highest class, and every test label trains
            clip = f"{split}_clip{i:02d}"
            rows[split].append((clip, label, n))
            # some lines carry extra middle fields, as the published lists do
            lines.append(f"{clip} 30 40 {label}" if i % 2 else f"{clip} {label}")
            np.save(root / spec / f"{clip}.npy",
                    np.full((1024, 128), i / 10, dtype=np.float32))
            folder = root / frames / clip
            folder.mkdir(parents=True)
            for t in range(1, n + 1):
                write_frame(folder / f"frame_0000{t}.jpg", ks_frame(t), 24, 32)
        (root / lst).write_text("\n".join(lines) + "\n")
    return rows


def mosei_arrays(n: int, seed: int) -> dict:
    rng = np.random.default_rng(seed)
    audio = rng.normal(size=(n, 6, 74)).astype(np.float32)
    audio[0, 0, :5] = -np.inf
    scores = rng.uniform(-3, 3, size=(n, 1, 1)).astype(np.float32)
    scores[0, 0, 0] = 0.0  # 0 is positive
    scores[1, 0, 0] = -0.01
    return {"vision": rng.normal(size=(n, 5, 35)).astype(np.float32), "audio": audio,
            "text": rng.normal(size=(n, 4, 300)).astype(np.float32), "labels": scores,
            "id": np.array([[f"v{seed}_{i}", "0", "1"] for i in range(n)])}


def make_mosei(root: Path, name: str = "mosei_senti_data_noalign.pkl", sizes=(20, 6, 8)) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    data = {split: mosei_arrays(n, seed) for seed, (split, n)
            in enumerate(zip(("train", "valid", "test"), sizes, strict=True))}
    path = root / name
    with path.open("wb") as f:
        pickle.dump(data, f)
    return path


def config(name: str, root: Path, **kw):
    return build_config(overrides={"data.name": name, "data.root": str(root), **TINY_MODEL, **kw})


def level(second: int) -> int:
    """The grey level of every frame in second ``second`` of a test video (five levels)."""
    return 40 + 50 * (second % 5)


def write_video(path: Path, seconds: float, fps: int = 30, fmt: str = "flv",
                audio_rate: int = 22_050, size=(64, 48), vcodec: str = "",
                channels: int = 1, frame_level=None) -> None:
    """A video whose frames are grey, one level a second, with a 440 Hz audio track (PyAV;
    FLV: Sorenson H.263 + MP3 as CREMA-D's VideoFlash; MP4: MPEG-4 part 2 or ``vcodec``,
    + AAC). ``frame_level``: frame index -> grey level instead (to tell frames apart)."""
    default, acodec = {"flv": ("flv", "mp3"), "mp4": ("mpeg4", "aac")}[fmt]
    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), "w", format=fmt) as c:
        v = c.add_stream(vcodec or default, rate=fps)
        v.width, v.height, v.pix_fmt = *size, "yuv420p"
        a = c.add_stream(acodec, rate=audio_rate)
        a.layout = "mono" if channels == 1 else "stereo"
        for i in range(int(seconds * fps)):
            grey = frame_level(i) if frame_level else level(i // fps)
            img = np.full((size[1], size[0], 3), grey, np.uint8)
            for p in v.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                c.mux(p)
        for p in v.encode():
            c.mux(p)
        t = np.arange(int(seconds * audio_rate)) / audio_rate
        wave = np.repeat((0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)[None],
                         channels, 0)
        frame = av.AudioFrame.from_ndarray(wave, format="fltp", layout=a.layout.name)
        frame.sample_rate = audio_rate
        for p in a.encode(frame):
            c.mux(p)
        for p in a.encode(None):
            c.mux(p)
