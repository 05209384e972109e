"""Kinetics-Sounds: lists, fbank .npy, frame_0000{t}.jpg -> shapes, labels, published rules."""

import numpy as np
import torch

from rollingq.data import load_data
from rollingq.data.frames import IMAGENET_MEAN, IMAGENET_STD, kinetics_frame_numbers
from tests.rollingq.data.fakes import config, ks_frame, make_ks

SMALL = {"data.decode_size": 32, "data.frame_size": 32}  # frames are flat colours: size is moot
NO_VAL = {"data.val_fraction": 0.0}


def frame_number(frames: torch.Tensor) -> torch.Tensor:
    """Normalised frames -> which frame t each is (frames are coloured 10 + 12 t)."""
    level = (frames[..., 0, :, :].mean((-1, -2)) * IMAGENET_STD[0] + IMAGENET_MEAN[0]) * 255
    return ((level - 10) / 12).round().long()


def test_shapes_labels_splits_and_the_three_frame_rule(tmp_path):
    rows = make_ks(tmp_path)
    data = load_data(config("kinetics_sounds", tmp_path).data)
    assert data.num_classes == 31
    assert data.specs["audio"].shape == (1024, 128) and data.specs["visual"].shape[:2] == (3, 3)
    # train clip 3 (2 frames) and test clip 2 (3 frames) are dropped, as published
    assert len(data.train) + len(data.val) == 5 and len(data.test) == 2
    assert (len(data.train), len(data.val)) == (3, 2)
    assert data.test.labels.tolist() == [r[1] for r in rows["test"][:2]] == [0, 30]
    (entry,) = [p for p in (tmp_path / "cache").glob("kinetics_sounds-*") if p.is_dir()]
    dropped = (entry / "dropped.tsv").read_text()
    assert "train\ttrain_clip03\t2 frames" in dropped and "test\ttest_clip02\t3 frames" in dropped


def test_label_is_the_last_field_and_fbank_is_as_given(tmp_path):
    make_ks(tmp_path)
    data = load_data(config("kinetics_sounds", tmp_path, **{"data.val_fraction": 0.0}).data)
    assert data.train.labels.tolist() == [0, 30, 0, 0, 30]  # "id label" and "id a b label"
    values = data.train.inputs["audio"][:, 0, 0].float()
    np.testing.assert_allclose(values.numpy(), [0.0, 0.1, 0.2, 0.4, 0.5], atol=1e-3)
    assert data.train.batch()["audio"].dtype == torch.float32


def test_eval_frames_follow_the_published_rule(tmp_path):
    make_ks(tmp_path, test_counts=(10, 9, 7, 13, 5))
    data = load_data(config("kinetics_sounds", tmp_path, **SMALL, **NO_VAL).data)
    got = frame_number(data.test.batch()["visual"]).tolist()
    assert got == [kinetics_frame_numbers(n, train=False) for n in (10, 9, 7, 13, 5)]
    assert got[0] == [1, 4, 7] and got[3] == [2, 6, 10] and got[4] == [1, 1, 1]
    # validation clips come from train and get the same fixed rule
    counts = [10, 7, 5, 10, 8]  # the kept train clips
    assert frame_number(data.val.batch()["visual"]).tolist() == [
        kinetics_frame_numbers(n, train=False) for n in counts]


def test_train_frames_are_random_within_thirds(tmp_path):
    make_ks(tmp_path, train_counts=(10, 5, 20, 8))
    data = load_data(config("kinetics_sounds", tmp_path, **SMALL, **NO_VAL).data)
    torch.manual_seed(0)
    seen = [[set() for _ in range(3)] for _ in range(4)]
    for _ in range(150):  # P(a frame of 6 never drawn) = (5/6)^150, negligible
        for c, row in enumerate(frame_number(data.train.batch()["visual"]).tolist()):
            for i, t in enumerate(row):
                seen[c][i].add(t)
    assert seen[0] == [{1, 2, 3}, {4, 5, 6}, {7, 8, 9}]
    assert seen[1] == [{1}, {1}, {1}]  # 4-6 frames: frame 1 three times (published)
    assert seen[2] == [{1, 2, 3, 4, 5, 6}, {7, 8, 9}, {9}]  # capped at frame 9
    assert seen[3] == [{1, 2}, {3, 4}, {5, 6}]


def test_frame_colours_are_distinct():
    assert len({ks_frame(t) for t in range(1, 21)}) == 20 and ks_frame(20) <= 255


def test_fbank_files_are_read_safely_on_the_cache_builders_threads(tmp_path):
    """The cache decodes clips on threads, and ``np.load`` parses each .npy header with
    ``ast.literal_eval``, which on CPython 3.11 can raise ``SystemError: AST constructor
    recursion depth mismatch`` when two threads parse at once (a garbage collection during one
    parse runs the other thread; CI met it once in a cache build). Four threads at different
    stack depths read fbank files under steady collections of cycles with finalizers, the
    conditions that raised it in 7 of 8 runs before ``load_fbank`` parsed under a lock."""
    import gc
    import sys
    from concurrent.futures import ThreadPoolExecutor

    from rollingq.data.kinetics_sounds import load_fbank

    path = tmp_path / "clip.npy"
    np.save(path, np.zeros((1024, 128), np.float32))

    class Cycle:
        def __init__(self):
            self.me = self

        def __del__(self):  # Python code a collection runs, on whichever thread it is in
            sum(range(50))

    def read(depth: int) -> None:
        if depth:
            return read(depth - 1)
        for _ in range(3000):
            Cycle(), Cycle()
            load_fbank(path)

    thresholds, interval = gc.get_threshold(), sys.getswitchinterval()
    gc.set_threshold(10, 1, 1)
    sys.setswitchinterval(1e-6)
    try:
        with ThreadPoolExecutor(4) as pool:
            list(pool.map(read, (0, 7, 14, 21)))  # raises what a thread raised
    finally:
        gc.set_threshold(*thresholds)
        sys.setswitchinterval(interval)
