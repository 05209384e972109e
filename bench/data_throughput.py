"""Data throughput: per-sample decoding as published vs the decode-once cache + batched transform.

Builds a CREMA-D-shaped data set on disk (real 16 kHz mono WAV files of 2-3 s and three
480x360 JPEG frames a clip, the published tree), then measures samples/s of

(a) the published data path, one sample at a time on one core: WAV read + resample to
    22,050 Hz + log-STFT, and 3 JPEG decodes + RandomResizedCrop(224) + flip + normalise
    (PIL + torchvision transforms as published; soundfile + torchaudio stand in for librosa);
(b) ours: batches of 64 in random epoch orders from the memory-mapped cache through the
    training transform (frame choice, RandomResizedCrop + flip + normalisation, fp16 -> fp32
    audio), on ``--device`` (default: this machine's CPUs, every core): with the data resident
    on the device, and streamed from the host a batch at a time (what large data sets do).

It also reports the one-off cost of building the cache, and with ``--ks-rows N`` (c) the
streamed host gather alone for N Kinetics-Sounds-shaped rows (what feeds a GPU when the data
set is too large for it). With ``--videos N`` it measures instead (d) ``prepare --from-videos``
(rollingq/data/videos.py) on every core: N CREMA-D-shaped FLV videos (480x360, 30 fps, 2.5 s,
frames only) and N Kinetics-Sounds-shaped MP4 videos (H.264 640x360, 30 fps, 10 s, AAC stereo:
frames and fbank), in clips a second and the time that implies for the full data sets. Example:

    python bench/data_throughput.py --clips 300
    python bench/data_throughput.py --clips 2000 --device cuda   # on a GPU node
    python bench/data_throughput.py --videos 40
"""

from __future__ import annotations

import argparse
import os
import random
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from rollingq.config import build_config  # noqa: E402
from rollingq.data import cremad, load_data  # noqa: E402

EMOTIONS = ["NEU", "HAP", "SAD", "FEA", "DIS", "ANG"]
KS_ROW_BYTES = 1024 * 128 * 2 + 10 * 3 * 224 * 224  # a Kinetics-Sounds cache row: 1.77 MB


def write_dataset(root: Path, clips: int, seed: int = 0) -> None:
    """``clips`` CREMA-D-shaped clips under ``root``: 90 % in train.csv, 10 % in test.csv."""
    from torchvision.io import write_jpeg

    rng = np.random.default_rng(seed)
    (root / "AudioWAV").mkdir(parents=True)
    (root / "Image-01-FPS").mkdir()
    ids = [f"{1001 + i // 60}_{['DFA', 'IEO', 'ITH'][i % 3]}_{EMOTIONS[i % 6]}_{i:04d}"
           for i in range(clips)]
    n_test = max(6, clips // 10)
    for name, part in (("train", ids[n_test:]), ("test", ids[:n_test])):
        (root / f"{name}.csv").write_text("".join(f"{c},{c.split('_')[2]}\n" for c in part))
    for clip in ids:
        rate, seconds = 16_000, rng.uniform(2.0, 3.0)
        t = np.arange(int(rate * seconds)) / rate
        wave = 0.2 * np.sin(2 * np.pi * rng.uniform(100, 400) * t) + 0.05 * rng.normal(size=t.size)
        soundfile.write(root / "AudioWAV" / f"{clip}.wav", wave.astype(np.float32), rate,
                        subtype="PCM_16")
        folder = root / "Image-01-FPS" / clip
        folder.mkdir()
        base = torch.from_numpy(rng.integers(0, 256, (3, 45, 60), dtype=np.uint8))
        for k in range(3):  # a smooth image (realistic JPEG size), 480x360 like CREMA-D
            img = torch.nn.functional.interpolate(base[None].float(), size=(360, 480),
                                                  mode="bilinear")[0].clamp(0, 255)
            write_jpeg((img + 8 * k).clamp(0, 255).to(torch.uint8), str(folder / f"{k:04d}.jpg"),
                       quality=90)


def published_sample(audio: Path, frames: list[Path], transform) -> tuple[torch.Tensor, ...]:
    """One training sample as the published data loaders make it, decoded from the files."""
    from PIL import Image

    spec = torch.from_numpy(cremad.wav_spectrogram(audio))  # soundfile + resample + log-STFT
    pick = sorted(random.choices(range(len(frames)), k=3))  # with replacement, sorted
    images = [transform(Image.open(frames[i]).convert("RGB")) for i in pick]
    return spec, torch.stack(images)


def bench_published(root: Path, n: int) -> float:
    from torchvision import transforms

    transform = transforms.Compose([
        transforms.RandomResizedCrop(224),
        transforms.RandomHorizontalFlip(),
        transforms.ToTensor(),
        transforms.Normalize([0.485, 0.456, 0.406], [0.229, 0.224, 0.225]),
    ])
    rows = cremad.read_list(root / "train.csv")[:n]
    work = [(root / "AudioWAV" / f"{c}.wav", sorted((root / "Image-01-FPS" / c).iterdir()))
            for c, _ in rows]
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # one core, as the reference figure was measured
    try:
        published_sample(*work[0], transform)  # warm-up
        began = time.perf_counter()
        for audio, frames in work:
            published_sample(audio, frames, transform)
        return len(work) / (time.perf_counter() - began)
    finally:
        torch.set_num_threads(threads)


def bench_cached(cfg, device: str, batch: int, seconds: float, streamed: bool = False
                 ) -> tuple[float, int]:
    """Samples/s of training batches (the train transform applied) over random epoch orders.

    ``streamed``: the inputs stay on the host and a background thread gathers the next batches
    into (on CUDA, pinned) memory, as ``fit`` does with ``train.data_on_device=never`` or when the
    data are too large for the device; otherwise the split is resident on ``device``.
    """
    data = load_data(cfg.data)
    split = data.train.stream_to(device) if streamed else data.train.to(device)
    n = len(split)
    g = torch.Generator().manual_seed(0)

    def sync() -> None:
        if device.startswith("cuda"):
            torch.cuda.synchronize()

    def epochs():
        while True:
            order = torch.randperm(n, generator=g).to(split.labels.device)
            for b in split.batches(batch, order):
                out = b.batch()
                assert out["visual"].shape == (len(b), 3, 3, 224, 224)
                yield len(b)

    stream = epochs()
    next(stream)  # warm-up
    sync()
    done, began = 0, time.perf_counter()
    while time.perf_counter() - began < seconds or done < 5 * batch:
        done += next(stream)
    sync()
    rate = done / (time.perf_counter() - began)
    stream.close()
    return rate, n


def bench_ks_gather(folder: Path, rows: int, batch: int, seconds: float) -> float:
    """Samples/s of the streamed host gather alone for Kinetics-Sounds-shaped cache rows
    (fp16 1024 x 128 fbank + 10 stored uint8 224^2 frames: 1.77 MB a sample), random order."""
    from rollingq.data.base import Split

    audio = np.lib.format.open_memmap(folder / "audio.npy", mode="w+", dtype=np.float16,
                                      shape=(rows, 1024, 128))
    visual = np.lib.format.open_memmap(folder / "visual.npy", mode="w+", dtype=np.uint8,
                                       shape=(rows, 10, 3, 224, 224))
    audio[:], visual[:] = 1, 7  # written: the pages exist (and sit in the page cache)
    audio.flush(), visual.flush()
    store = {m: torch.from_numpy(np.load(folder / f"{m}.npy", mmap_mode="r+"))
             for m in ("audio", "visual")}
    split = Split(store, torch.zeros(rows, dtype=torch.long)).stream_to("cpu")
    g = torch.Generator().manual_seed(0)
    done, began = 0, time.perf_counter()
    while time.perf_counter() - began < seconds:
        for b in split.batches(batch, torch.randperm(rows, generator=g)):
            done += len(b)
    return done / (time.perf_counter() - began)


FULL = {"cremad": 7442, "kinetics_sounds": 17400}  # clips in the full data sets


def bench_videos(tmp: Path, n: int) -> None:
    """(d): ``prepare --from-videos`` extraction on every core, clips a second."""
    from rollingq.data import videos
    from tests.rollingq.data.fakes import cremad_id, write_video  # the tests' video writer

    shapes = {"cremad": dict(seconds=2.5, fps=30, fmt="flv", size=(480, 360)),
              "kinetics_sounds": dict(seconds=10.0, fps=30, fmt="mp4", size=(640, 360),
                                      vcodec="h264", channels=2, audio_rate=44_100)}
    for name, shape in shapes.items():
        root = tmp / name
        jobs = []
        began = time.perf_counter()
        for i in range(n):
            clip = cremad_id(i)[0] if name == "cremad" else f"clip{i:05d}"
            video = root / "videos" / f"{clip}.{shape['fmt']}"
            write_video(video, **shape)
            audio = root / "spec" / f"{clip}.npy" if name == "kinetics_sounds" else None
            jobs.append(videos.Job(video, root / "frames" / clip, name, 1, audio))
        written = time.perf_counter() - began
        cfg = build_config(overrides={"data.workers": 0}).data  # every core
        began = time.perf_counter()
        failed = videos.run_jobs(jobs, cfg, progress=False)
        rate = n / (time.perf_counter() - began)
        assert not failed, failed
        what = "frames" if name == "cremad" else "frames + fbank"
        print(f"(d) {name} from videos ({what}), {os.cpu_count()} processes: {rate:.1f} clips/s "
              f"({n} clips, written in {written:.0f} s); the full {FULL[name]:,} clips: "
              f"{FULL[name] / rate / 60:.0f} min")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--clips", type=int, default=2000, help="clips to write (default 2000)")
    ap.add_argument("--dir", help="where to write the data set (default: a temporary folder)")
    ap.add_argument("--published-samples", type=int, default=100,
                    help="samples timed for (a) (default 100)")
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--seconds", type=float, default=10.0, help="time spent measuring (b)")
    ap.add_argument("--device", default="cpu", help="where (b)'s transform runs: cpu or cuda")
    ap.add_argument("--ks-rows", type=int, default=0,
                    help="also time the streamed host gather of this many Kinetics-Sounds-shaped "
                         "rows (1.77 MB each, written to the temporary folder)")
    ap.add_argument("--videos", type=int, default=0, metavar="N",
                    help="only (d): time prepare --from-videos on N videos of each data set")
    args = ap.parse_args()
    if args.videos:
        with tempfile.TemporaryDirectory(prefix="rollingq-bench-") as tmp:
            bench_videos(Path(tmp), args.videos)
        return 0

    with tempfile.TemporaryDirectory(prefix="rollingq-bench-") as tmp:
        root = Path(args.dir) if args.dir else Path(tmp) / "CREMA-D"
        cache_dir = Path(tmp) / "cache"
        print(f"load average before: {os.getloadavg()}; {os.cpu_count()} CPUs; "
              f"torch threads {torch.get_num_threads()}")
        began = time.perf_counter()
        if not (root / "train.csv").exists():
            threads = torch.get_num_threads()
            torch.set_num_threads(1)  # many small ops: threads only contend
            write_dataset(root, args.clips)
            torch.set_num_threads(threads)
        print(f"data set: {args.clips} clips in {root} ({time.perf_counter() - began:.1f} s)")

        a = bench_published(root, min(args.published_samples, args.clips - 10))
        print(f"(a) published per-sample decoding, 1 core: {a:.1f} samples/s "
              f"({1000 / a:.1f} ms a sample)")

        cfg = build_config(overrides={"data.name": "cremad", "data.root": str(root),
                                      "data.cache_dir": str(cache_dir), "data.val_fraction": 0})
        began = time.perf_counter()
        cremad.prepare(cfg.data, progress=False)
        built = time.perf_counter() - began
        b, n = bench_cached(cfg, args.device, args.batch, args.seconds)
        print(f"    decode once into the cache: {built:.1f} s for {args.clips} clips "
              f"({args.clips / built:.0f} clips/s, every core)")
        print(f"(b) cached + batched train transform on {args.device}, batch {args.batch}: "
              f"{b:.0f} samples/s ({n} training clips, torch threads {torch.get_num_threads()})")
        s, _ = bench_cached(cfg, args.device, args.batch, args.seconds, streamed=True)
        print(f"    the same streamed from the host (prefetching thread, pinned on CUDA): "
              f"{s:.0f} samples/s")
        if args.device == "cpu" and torch.get_num_threads() > 1:
            threads = torch.get_num_threads()
            torch.set_num_threads(1)
            b1, _ = bench_cached(cfg, args.device, args.batch, args.seconds)
            torch.set_num_threads(threads)
            print(f"    the same on 1 core: {b1:.0f} samples/s; per-core ratio to (a): "
                  f"{b1 / a:.1f}x")
        print(f"ratio (b) / (a): {b / a:.1f}x; (a) would need {b / a:.0f} cores to match (b)")
        if args.ks_rows:
            ks = bench_ks_gather(Path(tmp), args.ks_rows, args.batch, args.seconds)
            print(f"(c) streamed host gather, Kinetics-Sounds-shaped rows ({args.ks_rows}): "
                  f"{ks:.0f} samples/s ({ks * KS_ROW_BYTES / 1e9:.2f} GB/s)")
        print(f"load average after: {os.getloadavg()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
