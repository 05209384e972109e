"""prepare --from-videos: real tiny videos in the real containers (FLV for CREMA-D, MP4 for
Kinetics-Sounds, each with an audio track), written by the test with PyAV, through the frames,
the fbank arrays and the split lists to one epoch of training."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import av
import numpy as np
import pytest
import torch
from torchvision.io import decode_jpeg, read_file

from rollingq.data import DataError, load_data, videos
from rollingq.train import fit
from tests.docs import readme
from tests.rollingq.data.fakes import EMOTIONS, config, cremad_id, level, write_video, write_wav

ROOT = Path(__file__).resolve().parents[3]


def cremad_download(root: Path, n: int = 12, seconds=(2.5, 3.2, 1.4)) -> list[str]:
    """What a CREMA-D download holds: AudioWAV/*.wav and VideoFlash/*.flv, no lists."""
    (root / "AudioWAV").mkdir(parents=True)
    ids = []
    for i in range(n):
        clip, _ = cremad_id(i)
        write_wav(root / "AudioWAV" / f"{clip}.wav", seconds=2.0)
        write_video(root / "VideoFlash" / f"{clip}.flv", seconds[i % len(seconds)])
        ids.append(clip)
    return ids


def jpeg_level(path: Path) -> float:
    return float(decode_jpeg(read_file(str(path))).float().mean())


def test_cremad_from_videos_frames_lists_and_one_epoch(tmp_path):
    root = tmp_path / "CREMA-D"
    ids = cremad_download(root, n=18)
    cfg = config("cremad", root, **{"data.cache_dir": str(tmp_path / "cache"),
                                    "data.workers": 1, "train.epochs": 1})
    notes = videos.from_videos(cfg.data, test_fraction=0.1, seed=0, progress=False)
    assert any("seeded (seed 0), stratified by emotion" in n for n in notes)
    # the first frame of every second, named by its frame index (30 fps), full size, JPEG
    for i, clip in enumerate(ids):
        folder = root / "Image-01-FPS" / clip
        seconds = (2.5, 3.2, 1.4)[i % 3]
        expected = [f"{30 * s:05d}.jpg" for s in range(math_ceil(seconds))]
        assert sorted(p.name for p in folder.iterdir()) == expected, clip
        for s, name in enumerate(expected):
            img = decode_jpeg(read_file(str(folder / name)))
            assert img.shape == (3, 48, 64)
            assert abs(jpeg_level(folder / name) - level(s)) < 6
    train = (root / "train.csv").read_text().splitlines()
    test = (root / "test.csv").read_text().splitlines()
    assert len(train) + len(test) == 18 and len(test) == 6  # one clip of each emotion
    assert sorted(r.split(",")[1] for r in test) == sorted(EMOTIONS)
    assert all(r.split(",")[1] == r.split(",")[0].split("_")[2] for r in train + test)
    r = fit(cfg)
    assert r.status == "finished" and r.summary["epochs"] == 1


def math_ceil(x: float) -> int:
    return int(-(-x // 1))


def test_speaker_disjoint_lists_put_whole_actors_in_test():
    ids = [f"{1001 + a}_DFA_{e}_XX" for a in range(10) for e in EMOTIONS]
    labels = [videos.cremad_label(i, Path(i)) for i in ids]
    train, test = videos.split_cremad(ids, labels, 0.2, seed=3, speaker_disjoint=True)
    actors = {s: {ids[k].split("_")[0] for k in rows} for s, rows in (("train", train),
                                                                     ("test", test))}
    assert len(actors["test"]) == 2 and not actors["train"] & actors["test"]
    assert sorted(train + test) == list(range(len(ids)))
    again = videos.split_cremad(ids, labels, 0.2, seed=3, speaker_disjoint=True)
    assert again == (train, test)  # seeded


def test_too_few_videos_to_split_is_an_error_before_any_extraction(tmp_path):
    root = tmp_path / "CREMA-D"
    cremad_download(root, n=6, seconds=(2.5,))  # one clip an emotion: nothing left to train on
    with pytest.raises(DataError, match=r"emotion\(s\) ANG, DIS, FEA, HAP, NEU, SAD have a "
                                        r"single video"):
        videos.from_videos(config("cremad", root).data, progress=False)
    one = tmp_path / "one-actor"
    cremad_download(one, n=1, seconds=(2.5,))  # whole actors in test: nobody left to train on
    with pytest.raises(DataError, match="1 videos leave no clip for the train split"):
        videos.from_videos(config("cremad", one).data, speaker_disjoint=True, progress=False)
    assert not (root / "train.csv").exists() and not (root / "Image-01-FPS").exists()


def test_resumable_a_done_clip_is_skipped_a_half_written_one_redone(tmp_path, caplog):
    root = tmp_path / "CREMA-D"
    ids = cremad_download(root, n=12, seconds=(2.5,))
    cfg = config("cremad", root, **{"data.workers": 1}).data
    videos.from_videos(cfg, progress=False)
    done = root / "Image-01-FPS" / ids[0] / "00000.jpg"
    stamp = done.stat().st_mtime_ns
    half = root / "Image-01-FPS" / ids[1]
    half.rename(half.with_name(half.name + videos.PARTIAL))  # as if killed before the rename
    (half.with_name(half.name + videos.PARTIAL) / "00030.jpg").unlink()
    caplog.set_level("INFO")
    videos.from_videos(cfg, progress=False)
    assert "11 of 12 videos already extracted; skipped" in caplog.text
    assert done.stat().st_mtime_ns == stamp
    assert sorted(p.name for p in half.iterdir()) == ["00000.jpg", "00030.jpg", "00060.jpg"]
    assert not list(root.glob("Image-01-FPS/*.partial"))


def test_a_corrupt_video_is_named_and_skip_records_it(tmp_path):
    root = tmp_path / "CREMA-D"
    ids = cremad_download(root, n=18, seconds=(2.5,))
    bad = root / "VideoFlash" / f"{ids[2]}.flv"
    bad.write_bytes(b"FLV\x01 this is not a video" * 10)
    cfg = config("cremad", root, **{"data.workers": 1}).data
    with pytest.raises(DataError, match=rf"1 of 18 videos cannot be used: {bad}: cannot decode"):
        videos.from_videos(cfg, progress=False)
    skip = config("cremad", root, **{"data.workers": 1, "data.on_missing": "skip",
                                     "data.cache_dir": str(tmp_path / "cache")}).data
    videos.from_videos(skip, progress=False)
    assert str(bad) in (root / videos.FAILED).read_text()
    data = load_data(skip)  # the loader drops the clip as missing its frames, and says so
    assert len(data.train) + len(data.val) + len(data.test) == 17


@pytest.fixture
def ks_classes():
    assert len(videos.KS_CLASSES) == 31 and videos.KS_CLASSES[4] == "dribbling basketball"
    return videos.KS_CLASSES


def ks_download(root: Path, classes, seconds=5.0) -> dict[str, list[str]]:
    out = {"train": [], "test": []}
    for split, n in (("train", 6), ("test", 3)):
        for k in range(n):
            cls = classes[k % 3].replace(" ", "_") if k == 1 else classes[k % 3]  # either form
            vid = f"{split}{k:02d}"
            write_video(root / "videos" / split / cls / f"{vid}.mp4", seconds, fps=25,
                        fmt="mp4", audio_rate=44_100)
            out[split].append(vid)
    return out


def test_kinetics_sounds_from_videos_fbank_frames_lists_and_one_epoch(tmp_path, ks_classes):
    root = tmp_path / "KS"
    made = ks_download(root, ks_classes)
    cfg = config("kinetics_sounds", root, **{"data.cache_dir": str(tmp_path / "cache"),
                                             "data.workers": 2, "train.epochs": 1})
    videos.from_videos(cfg.data, progress=False)  # two worker processes
    lines = (root / "ks_train_overlap.txt").read_text().splitlines()
    assert sorted(lines) == sorted(f"{v} {ks_classes.index(ks_classes[k % 3])}"
                                   for k, v in enumerate(made["train"]))
    folder = root / "val-frames-1fps" / "test" / made["test"][0]
    # the middle frame of each second, 1-based, as the loader names them (frame_0000{t}.jpg)
    assert sorted(p.name for p in folder.iterdir()) == [f"frame_0000{t}.jpg" for t in range(1, 6)]
    for t in range(1, 6):
        assert abs(jpeg_level(folder / f"frame_0000{t}.jpg") - level(t - 1)) < 6
    # exactly the published frame of each second: round((t - 0.5) * fps), Python's round as
    # the published script (12, 38, 62, 88, 112 at 25 fps), told apart by a level a frame
    exact = root / "exact.mp4"
    write_video(exact, 5.0, fps=25, fmt="mp4", frame_level=lambda i: (i * 16) % 256)
    job = videos.Job(exact, tmp_path / "exact", "kinetics_sounds", 4)
    (tmp_path / "exact").mkdir()
    assert videos.extract_frames(job, tmp_path / "exact") == 5
    for t, index in enumerate([12, 38, 62, 88, 112], start=1):
        assert abs(jpeg_level(tmp_path / "exact" / f"frame_{t:05d}.jpg") - index * 16 % 256) < 6
    # the fbank, against a reference computed here from the decoded 16 kHz audio
    fb = np.load(root / "train_spec" / f"{made['train'][0]}.npy")
    assert fb.shape == (1024, 128) and fb.dtype == np.float32
    wave = decode_16k(root / "videos" / "train" / ks_classes[0] / f"{made['train'][0]}.mp4")
    from torchaudio.compliance.kaldi import fbank

    x = torch.from_numpy(wave)[None]  # the published recipe: a 16 kHz pcm_s16le wav, loaded
    ref = fbank(x - x.mean(), htk_compat=True, sample_frequency=16000, use_energy=False,
                window_type="hanning", num_mel_bins=128, dither=0.0, frame_shift=10).numpy()
    n = ref.shape[0]  # 5 s at a 10 ms shift: about 498 frames (AAC adds a few), then padding
    assert 490 < n < 520
    np.testing.assert_allclose(fb[:n], (ref + 4.503877) / (2 * 5.141276), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(fb[n:], 4.503877 / (2 * 5.141276), rtol=1e-6)  # zero-padded
    r = fit(cfg)
    assert r.status == "finished" and r.summary["epochs"] == 1


def decode_16k(path: Path) -> np.ndarray:
    """The first channel at 16 kHz as 16-bit PCM, read back as torchaudio.load reads a wav."""
    with av.open(str(path)) as c:
        resampler = av.AudioResampler(format="s16", layout="mono", rate=16000)
        parts = [r.to_ndarray().reshape(-1) for f in c.decode(audio=0)
                 for r in resampler.resample(f)]
        parts += [r.to_ndarray().reshape(-1) for r in resampler.resample(None)]
    return (np.concatenate(parts) / 32768).astype(np.float32)


def test_ks_too_short_video_and_unknown_class_are_named(tmp_path, ks_classes):
    root = tmp_path / "KS"
    ks_download(root, ks_classes)
    short = root / "videos" / "test" / ks_classes[0] / "short.mp4"
    write_video(short, 2.0, fps=25, fmt="mp4")
    cfg = config("kinetics_sounds", root, **{"data.workers": 1}).data
    with pytest.raises(DataError, match=rf"{short}: too short: 2 frame\(s\) at 1 fps, at least "
                                        r"4 needed"):
        videos.from_videos(cfg, progress=False)
    (root / "videos" / "test" / "juggling").mkdir()
    with pytest.raises(DataError, match=r"class folder\(s\) 'juggling' that are not "
                                        r"Kinetics-Sounds classes; the 31 are: "):
        videos.from_videos(cfg, progress=False)


@pytest.mark.integration
def test_the_readme_prepares_a_cremad_download(tmp_path):
    """The README's command as printed, beside a CREMA-D download (its cache under
    ``ROLLINGQ_CACHE``, not the user's): one line per step."""
    root = tmp_path / "CREMA-D"
    cremad_download(root, n=18, seconds=(2.5,))
    p = subprocess.run(readme.command("python -m rollingq.data prepare"), cwd=tmp_path,
                       env=readme.shell_env(ROLLINGQ_CACHE=str(tmp_path / "cache")),
                       capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr
    out = [line for line in p.stdout.splitlines() if line.startswith("cremad: ")]
    assert out[0].startswith(f"cremad: wrote {root / 'train.csv'}"), p.stdout
    assert out[1] == "cremad: frames of 18 videos in " + str(root / "Image-01-FPS")
    assert out[2].startswith("cremad: built ")
    assert any((tmp_path / "cache").iterdir())
    bad = subprocess.run([sys.executable, "-m", "rollingq.data", "prepare", "--data.name",
                          "mosei", "--data.root", str(root), "--from-videos"], cwd=ROOT,
                         capture_output=True, text=True, timeout=300)
    assert bad.returncode == 2 and "--from-videos reads the raw videos of cremad or " \
        "kinetics_sounds" in bad.stderr
