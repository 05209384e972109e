"""From the files people download to the trees the loaders read: frames and fbank arrays from
raw videos, with PyAV (``av``, whose wheel ships its own FFmpeg: no system ffmpeg).

    python -m rollingq.data prepare --data.name cremad --data.root ROOT --from-videos
    python -m rollingq.data prepare --data.name kinetics_sounds --data.root ROOT --from-videos

CREMA-D: ``ROOT/VideoFlash/<clip>.flv`` -> ``ROOT/Image-01-FPS/<clip>/<index:05d>.jpg``, the
first frame of every second (frame index ``i`` with ``i % int(fps) == 0``, named by ``i``), at
full size, JPEG quality 95, as the published ``video_preprocessing.py`` (OpenCV) does. The audio
is the download's ``AudioWAV/<clip>.wav``. Without ``train.csv``/``test.csv`` they are written:
seeded, stratified by emotion, ``--test-fraction`` of the clips in test (the published 744 / 7,442
is a random 10 %), or with ``--speaker-disjoint`` whole actors (the id's first field) in test.

Kinetics-Sounds: ``ROOT/videos/<train|test>/<class name>/<id>.mp4`` (``KS_CLASSES``: the 31
names, spaces or underscores, label = position; another folder name is refused with its name) ->
``ks_<split>_overlap.txt`` lines ``<id> <label>``; ``train-frames-1fps/train/<id>/`` (test:
``val-frames-1fps/test/<id>/``) ``frame_{t:05d}.jpg``, t = 1..10: the middle frame of each of
the first 10 seconds (frame ``round((t - 0.5) * fps)``) at full size, as the published
``video2frame-1fps.py`` (moviepy) picks them, JPEG quality 75 (imageio's default, which it used:
a guess); ``<split>_spec/<id>.npy``: the published ``process_audio.py`` recipe, the audio at
16 kHz as 16-bit PCM, the whole waveform's mean removed, kaldi fbank of the first channel
(``torchaudio.compliance.kaldi.fbank``: htk-compatible, no energy, Hanning window, 128 mel bins,
no dither, 10 ms shift, its other defaults), zero rows appended or cut to 1024 frames, then
``(x + 4.503877) / (2 * 5.141276)`` (the published normalisation).

Where we differ: the published frame script wraps past the end of a short clip into its last
second so it always writes 10 frames (repeats); here a clip gets the frames it has, and one with
fewer than the 4 the loaders need is a too-short video (below).

Resumable: a clip is written to ``<name>.partial`` and renamed when complete, so a clip already
done is skipped and a half-written one redone. Parallel over ``data.workers`` processes. A video
that cannot be decoded, has no audio (Kinetics-Sounds) or is shorter than the frames the loader
needs is an error naming every such file; with ``data.on_missing=skip`` it is left out, listed
in ``ROOT/videos_failed.tsv``, and the loader reports it as missing (``dropped.tsv``).
"""

from __future__ import annotations

import csv
import logging
import multiprocessing
import os
import random
import shutil
import sys
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from rollingq.config import DataConfig
from rollingq.data import clips, cremad, kinetics_sounds
from rollingq.data.base import DataError

log = logging.getLogger(__name__)
PARTIAL = ".partial"
JPEG_QUALITY = {"cremad": 95, "kinetics_sounds": 75}  # OpenCV's and imageio's defaults
KS_RATE, KS_MEL, KS_FRAMES, KS_SECONDS = 16_000, 128, 1024, 10
KS_MEAN, KS_STD = -4.503877, 5.141276  # published: (x + 4.503877) / (2 * 5.141276)
# The 31 Kinetics-Sounds classes (Kinetics-400 names), label = position: alphabetical, which
# the published lists agree with where checked (a clip of "dribbling basketball" has label 4);
# no published file names them.
KS_CLASSES: tuple[str, ...] = (
    "blowing nose", "blowing out candles", "bowling", "chopping wood", "dribbling basketball",
    "laughing", "mowing lawn", "playing accordion", "playing bagpipes", "playing bass guitar",
    "playing clarinet", "playing drums", "playing guitar", "playing harmonica",
    "playing keyboard", "playing organ", "playing piano", "playing saxophone",
    "playing trombone", "playing trumpet", "playing violin", "playing xylophone",
    "ripping paper", "shoveling snow", "shuffling cards", "singing", "stomping grapes",
    "tap dancing", "tapping guitar", "tapping pen", "tickling")
FAILED = "videos_failed.tsv"
SHOW = 3


class VideoError(DataError):
    """A video cannot be turned into frames (and audio): the message names the file."""


@dataclass
class Job:
    """One video to extract: where it is and where its outputs go."""

    video: Path
    frames: Path  # the clip's frame folder
    name: str  # "cremad" | "kinetics_sounds": the naming and the audio
    min_frames: int
    audio: Path | None = None  # Kinetics-Sounds: the .npy fbank


def done(job: Job) -> bool:
    return job.frames.is_dir() and (job.audio is None or job.audio.is_file())


def picks(name: str, fps: float) -> Callable[[int], str | None]:
    """Frame index -> the file name it is saved under, or None: CREMA-D the first frame of every
    second (``int(fps)``, as OpenCV's ``CAP_PROP_FPS``), Kinetics-Sounds the middle frame of
    each of the first 10 seconds."""
    if name == "cremad":
        step = int(fps)
        return lambda i: f"{i:05d}.jpg" if i % step == 0 else None
    wanted = {round((t - 0.5) * fps): f"frame_{t:05d}.jpg" for t in range(1, KS_SECONDS + 1)}
    return wanted.get


def extract_frames(job: Job, folder: Path) -> int:
    """``job.video``'s frames at 1 fps (``picks``) as JPEGs in ``folder``; their count.

    Raises:
        VideoError: The video cannot be opened or decoded, or gives too few frames.
    """
    import av
    from torchvision.io import encode_jpeg

    try:
        with av.open(str(job.video)) as container:
            if not container.streams.video:
                raise VideoError(f"{job.video}: no video stream")
            stream = container.streams.video[0]
            rate = stream.average_rate or stream.guessed_rate
            if not rate or float(rate) < 1:
                raise VideoError(f"{job.video}: no frame rate in the stream")
            name_of = picks(job.name, float(rate))
            kept = 0
            for index, frame in enumerate(container.decode(stream)):
                name = name_of(index)
                if name is None:
                    continue
                image = torch.from_numpy(frame.to_ndarray(format="rgb24")).permute(2, 0, 1)
                data = encode_jpeg(image.contiguous(), quality=JPEG_QUALITY[job.name])
                (folder / name).write_bytes(data.numpy())
                kept += 1
    except av.error.FFmpegError as e:
        raise VideoError(f"{job.video}: cannot decode the video ({e})") from None
    if kept < job.min_frames:
        raise VideoError(f"{job.video}: too short: {kept} frame(s) at 1 fps, at least "
                         f"{job.min_frames} needed")
    return kept


def decode_audio(path: Path, rate: int) -> np.ndarray:
    """The first audio stream of ``path`` at ``rate`` Hz as 16-bit PCM read back to float
    (``ffmpeg -acodec pcm_s16le -ar RATE`` then ``torchaudio.load``, as published): (channels,
    samples) float32 in [-1, 1), every channel kept."""
    import av

    try:
        with av.open(str(path)) as container:
            if not container.streams.audio:
                raise VideoError(f"{path}: no audio stream")
            layout = container.streams.audio[0].layout.name
            resampler = av.AudioResampler(format="s16p", layout=layout, rate=rate)
            parts = [r.to_ndarray() for f in container.decode(audio=0)
                     for r in resampler.resample(f)]
            parts += [r.to_ndarray() for r in resampler.resample(None)]
    except av.error.FFmpegError as e:
        raise VideoError(f"{path}: cannot decode the audio ({e})") from None
    if not parts or not sum(p.shape[1] for p in parts):
        raise VideoError(f"{path}: the audio stream holds no samples")
    return (np.concatenate(parts, 1) / 32768.0).astype(np.float32)


def ks_fbank(waveform: np.ndarray) -> np.ndarray:
    """Kinetics-Sounds' normalised (1024, 128) kaldi fbank of a (channels, samples) 16 kHz
    waveform: the mean of the whole waveform removed, the first channel's fbank."""
    from torchaudio.compliance.kaldi import fbank

    x = torch.from_numpy(waveform)
    x = x - x.mean()
    feats = fbank(x, htk_compat=True, sample_frequency=KS_RATE, use_energy=False,
                  window_type="hanning", num_mel_bins=KS_MEL, dither=0.0, frame_shift=10)
    n = feats.shape[0]
    if n < KS_FRAMES:
        feats = torch.nn.functional.pad(feats, (0, 0, 0, KS_FRAMES - n))
    feats = feats[:KS_FRAMES]
    return ((feats - KS_MEAN) / (2 * KS_STD)).numpy().astype(np.float32)


def _one_thread() -> None:
    torch.set_num_threads(1)  # a worker process: parallel over clips, not inside one


def run_job(job: Job) -> tuple[str, int | str]:
    """Extracts one clip (frames, and the fbank for Kinetics-Sounds), atomically: returns
    (video, frame count) or (video, the error)."""
    partial = job.frames.with_name(job.frames.name + PARTIAL)
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)
    try:
        count = extract_frames(job, partial)
        if job.audio is not None:
            feats = ks_fbank(decode_audio(job.video, KS_RATE))
            job.audio.parent.mkdir(parents=True, exist_ok=True)
            tmp = job.audio.with_name(job.audio.name + PARTIAL)
            with open(tmp, "wb") as f:
                np.save(f, feats)
            os.replace(tmp, job.audio)
    except VideoError as e:
        shutil.rmtree(partial, ignore_errors=True)
        return str(job.video), str(e)
    except Exception as e:  # noqa: BLE001 - any failure is this video's, reported by name
        shutil.rmtree(partial, ignore_errors=True)
        return str(job.video), f"{job.video}: {type(e).__name__}: {e}"
    shutil.rmtree(job.frames, ignore_errors=True)
    partial.rename(job.frames)
    return str(job.video), count


def run_jobs(jobs: list[Job], cfg: DataConfig, progress: bool | None) -> dict[str, str]:
    """Runs the jobs not done yet over ``data.workers`` processes; the failures by video."""
    from tqdm import tqdm

    todo = [j for j in jobs if not done(j)]  # a clip interrupted half-way is redone
    if len(todo) < len(jobs):
        log.info("%d of %d videos already extracted; skipped", len(jobs) - len(todo), len(jobs))
    workers = min(cfg.workers or os.cpu_count() or 1, max(len(todo), 1))
    bar = tqdm(total=len(todo), desc="extracting", unit="video", file=sys.stderr,
               disable=(not progress) if progress is not None else None)
    failed: dict[str, str] = {}
    try:
        if workers <= 1:
            for video, outcome in map(run_job, todo):
                if isinstance(outcome, str):
                    failed[video] = outcome
                bar.update(1)
        else:
            context = multiprocessing.get_context("spawn")  # no forked torch threads
            with ProcessPoolExecutor(workers, mp_context=context,
                                     initializer=_one_thread) as pool:
                for video, outcome in pool.map(run_job, todo, chunksize=4):
                    if isinstance(outcome, str):
                        failed[video] = outcome
                    bar.update(1)
    finally:
        bar.close()
    return failed


def report_failures(failed: dict[str, str], total: int, cfg: DataConfig, root: Path) -> None:
    """Every failed video: an error (``on_missing=error``) or listed in ``videos_failed.tsv``."""
    if not failed:
        return
    shown = "; ".join(list(failed.values())[:SHOW])
    more = f"; and {len(failed) - SHOW} more" if len(failed) > SHOW else ""
    if cfg.on_missing == "error":
        raise VideoError(f"{len(failed)} of {total} videos cannot be used: {shown}{more}; fix or "
                         f"remove them, or set data.on_missing=skip to leave them out (listed "
                         f"in {root / FAILED})")
    with open(root / FAILED, "w", newline="") as f:
        w = csv.writer(f, delimiter="\t")
        w.writerow(["video", "reason"])
        w.writerows(failed.items())
    log.warning("data.on_missing=skip: %d of %d videos left out, listed in %s: %s%s",
                len(failed), total, root / FAILED, shown, more)


# ---- CREMA-D ---------------------------------------------------------------------------------

def cremad_label(clip_id: str, path: Path) -> int:
    """The emotion class of a CREMA-D id ``<actor>_<sentence>_<EMO>_<level>``."""
    parts = clip_id.split("_")
    if len(parts) < 3 or parts[2] not in cremad.CLASSES:
        raise VideoError(f"{path}: the file name {clip_id!r} is not a CREMA-D clip id "
                         f"(<actor>_<sentence>_<EMO>_<level>, EMO one of "
                         f"{', '.join(cremad.CLASSES)})")
    return cremad.CLASSES[parts[2]]


def split_cremad(ids: list[str], labels: list[int], test_fraction: float, seed: int,
                 speaker_disjoint: bool) -> tuple[list[int], list[int]]:
    """Seeded train/test indices: stratified by emotion, or whole actors in test."""
    rng = random.Random(seed)
    if speaker_disjoint:
        actors = sorted({i.split("_")[0] for i in ids})
        rng.shuffle(actors)
        held = set(actors[: max(1, round(test_fraction * len(actors)))])
        test = [k for k, i in enumerate(ids) if i.split("_")[0] in held]
    else:
        test = []
        for c in sorted(set(labels)):
            members = [k for k, lab in enumerate(labels) if lab == c]
            rng.shuffle(members)
            test += members[: max(1, round(test_fraction * len(members)))]
    held_set = set(test)
    return [k for k in range(len(ids)) if k not in held_set], sorted(test)


def prepare_cremad(cfg: DataConfig, test_fraction: float, seed: int, speaker_disjoint: bool,
                   progress: bool | None) -> list[str]:
    """Frames from ``VideoFlash/*.flv`` (and the split lists if absent); messages for the user."""
    root = Path(cfg.root).expanduser().absolute()
    videos = root / "VideoFlash"
    if not videos.is_dir():
        raise DataError(f"cremad: {videos} does not exist; --from-videos reads the download's "
                        f"VideoFlash/<clip>.flv (and AudioWAV/<clip>.wav)")
    found = {p.stem: p for p in sorted(videos.glob("*.flv"))}
    if not found:
        raise DataError(f"cremad: {videos} holds no .flv video")
    lists = {s: clips.resolve(root, getattr(cfg, f"{s}_list"), f"{s}.csv")
             for s in ("train", "test")}
    notes = []
    if all(p.is_file() for p in lists.values()):
        wanted = [i for p in lists.values() for i, _ in cremad.read_list(p)]
        notes.append(f"kept the split lists {lists['train']} and {lists['test']}")
    elif any(p.is_file() for p in lists.values()):
        have = next(p for p in lists.values() if p.is_file())
        raise DataError(f"cremad: {have} exists but not its partner; give both split lists or "
                        f"neither (then --from-videos writes them)")
    else:
        ids = list(found)
        labels = [cremad_label(i, found[i]) for i in ids]
        single = sorted(e for e, c in cremad.CLASSES.items() if labels.count(c) == 1)
        if single and not speaker_disjoint:
            raise DataError(f"cremad: emotion(s) {', '.join(single)} have a single video, "
                            f"which cannot be both trained on and tested; add videos or write "
                            f"the split lists")
        train, test = split_cremad(ids, labels, test_fraction, seed, speaker_disjoint)
        for split, rows in (("train", train), ("test", test)):
            if not rows:
                raise DataError(f"cremad: {len(ids)} videos leave no clip for the {split} split "
                                f"(--test-fraction {test_fraction:g}, at least one clip of "
                                f"each emotion in test); add videos or write the split lists")
        for split, rows in (("train", train), ("test", test)):
            lists[split].write_text("".join(f"{ids[k]},{ids[k].split('_')[2]}\r\n"
                                            for k in rows))
        how = ("speaker-disjoint (whole actors in test)" if speaker_disjoint
               else "stratified by emotion")
        notes.append(f"wrote {lists['train']} ({len(train)} clips) and {lists['test']} "
                     f"({len(test)} clips): seeded (seed {seed}), {how}, test fraction "
                     f"{test_fraction:g}")
        wanted = ids
    missing = [i for i in wanted if i not in found]
    frames = clips.resolve(root, cfg.frames_dir, "Image-01-FPS")
    jobs = [Job(found[i], frames / i, "cremad", 1) for i in wanted if i in found]
    failed = run_jobs(jobs, cfg, progress)
    report_failures(failed, len(jobs), cfg, root)
    if missing:  # the loader reports them as missing frame folders, per data.on_missing
        notes.append(f"{len(missing)} listed clips have no video in {videos} (e.g. "
                     f"{', '.join(missing[:SHOW])})")
    notes.append(f"frames of {len(jobs) - len(failed)} videos in {frames}")
    return notes


# ---- Kinetics-Sounds -------------------------------------------------------------------------

def ks_videos(root: Path) -> dict[str, list[tuple[str, int, Path]]]:
    """``videos/<split>/<class>/<id>.mp4`` -> split -> (id, label, path); unknown classes are an
    error naming them."""
    index = {c: k for k, c in enumerate(KS_CLASSES)}
    index.update({c.replace(" ", "_"): k for k, c in enumerate(KS_CLASSES)})
    out: dict[str, list[tuple[str, int, Path]]] = {}
    for split in ("train", "test"):
        folder = root / "videos" / split
        if not folder.is_dir():
            raise DataError(f"kinetics_sounds: {folder} does not exist; --from-videos reads "
                            f"videos/<train|test>/<class name>/<id>.mp4")
        classes = sorted(p.name for p in folder.iterdir() if p.is_dir())
        unknown = [c for c in classes if c not in index]
        if unknown:
            raise DataError(f"kinetics_sounds: {folder} has class folder(s) "
                            f"{', '.join(map(repr, unknown))} that are not Kinetics-Sounds "
                            f"classes; the 31 are: {', '.join(KS_CLASSES)}")
        out[split] = [(p.stem, index[c], p) for c in classes
                      for p in sorted((folder / c).glob("*.mp4"))]
        if not out[split]:
            raise DataError(f"kinetics_sounds: {folder} holds no <class>/<id>.mp4 video")
    return out


def prepare_ks(cfg: DataConfig, progress: bool | None) -> list[str]:
    """Lists, 1 fps frames and fbank arrays from ``videos/``; messages for the user."""
    root = Path(cfg.root).expanduser().absolute()
    videos = ks_videos(root)
    notes, jobs = [], []
    keys = {"train": (cfg.train_list, cfg.audio_dir, cfg.frames_dir),
            "test": (cfg.test_list, cfg.test_audio_dir, cfg.test_frames_dir)}
    for split, (list_key, audio_key, frames_key) in keys.items():
        list_default, audio_default, frames_default = kinetics_sounds.DEFAULTS[split]
        list_path = clips.resolve(root, list_key, list_default)
        if list_path.is_file():
            notes.append(f"kept the split list {list_path}")
        else:
            list_path.write_text("".join(f"{i} {label}\n" for i, label, _ in videos[split]))
            notes.append(f"wrote {list_path} ({len(videos[split])} clips, labels from the "
                         f"class folders)")
        audio_dir = clips.resolve(root, audio_key, audio_default)
        frames_dir = clips.resolve(root, frames_key, frames_default)
        jobs += [Job(p, frames_dir / i, "kinetics_sounds", kinetics_sounds.MIN_FRAMES,
                     audio_dir / f"{i}.npy") for i, _, p in videos[split]]
    failed = run_jobs(jobs, cfg, progress)
    report_failures(failed, len(jobs), cfg, root)
    notes.append(f"frames and fbank arrays of {len(jobs) - len(failed)} videos")
    return notes


def from_videos(cfg: DataConfig, test_fraction: float = 0.1, seed: int = 0,
                speaker_disjoint: bool = False, progress: bool | None = None) -> list[str]:
    """Extracts ``cfg.name``'s tree from its raw videos (see the module docstring)."""
    if cfg.name == "cremad":
        return prepare_cremad(cfg, test_fraction, seed, speaker_disjoint, progress)
    if cfg.name == "kinetics_sounds":
        return prepare_ks(cfg, progress)
    raise DataError(f"--from-videos reads the raw videos of cremad or kinetics_sounds, not "
                    f"data.name={cfg.name!r}")
