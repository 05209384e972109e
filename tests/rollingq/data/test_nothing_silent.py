"""Nothing silent: the cases a new user met with pre-extracted features (issue 14), each written
by the test in the real format, must fail with one line naming the file, what and how many;
``data.nonfinite=zero`` is the explicit way to train on zeros."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from rollingq.config import build_config
from rollingq.data import DataError, load_data
from rollingq.data.base import same_device
from tests.rollingq.data.fakes import config, make_cremad

ROOT = Path(__file__).resolve().parents[3]


def write_features(root: Path, n=(40, 20), classes=(3, 3), nan_audio=0.0, test_label=None,
                   one_class=False, test_modality="visual") -> Path:
    rng = np.random.default_rng(0)
    root.mkdir(parents=True, exist_ok=True)
    for split, size, c in (("train", n[0], classes[0]), ("test", n[1], classes[1])):
        audio = rng.normal(size=(size, 8, 4)).astype(np.float32)
        if split == "train" and nan_audio:
            audio[: int(size * nan_audio), :, 0] = np.nan
        labels = np.zeros(size, np.int64) if one_class and split == "train" else (
            np.arange(size) % c)
        if split == "test" and test_label is not None:
            labels[:2] = test_label
        other = test_modality if split == "test" else "visual"
        np.savez(root / f"{split}.npz", audio=audio, label=labels,
                 **{other: rng.normal(size=(size, 8, 4)).astype(np.float32)})
    return root


def cli(*sets: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "rollingq.train", "--quiet",
                           *[a for s in sets for a in ("--set", s)]], cwd=ROOT,
                          capture_output=True, text=True, timeout=300)


def features_cfg(root: Path, **kw):
    return build_config(overrides={"data.name": "features", "data.root": str(root),
                                   "train.epochs": 1, **kw})


CASES = {
    "nan_features": (dict(nan_audio=0.5), ["train.npz: modality 'audio' holds 160 NaN/inf values "
                                           "of 1,280 (in 20 samples)", "data.nonfinite=zero"]),
    "unseen_test_label": (dict(test_label=7), ["test label(s) 7 (2 of 20 samples) never occur "
                                               "in training (classes 0, 1, 2)"]),
    "one_training_class": (dict(one_class=True), ["the training split has 1 class (label 0) in "
                                                  "36 samples; a classifier needs two or more"]),
    "other_modality_names": (dict(test_modality="text"), [
        "test.npz has modalities audio (8 x 4), text (8 x 4), but train.npz has audio (8 x 4), "
        "visual (8 x 4)"]),
}


@pytest.mark.integration
@pytest.mark.parametrize("case", list(CASES))
def test_bad_features_are_one_line_errors_in_the_cli(tmp_path, case):
    kwargs, expected = CASES[case]
    root = write_features(tmp_path / "features", **kwargs)
    with pytest.raises(DataError) as e:
        load_data(features_cfg(root).data)
    for part in expected:
        assert part in str(e.value)
    p = cli("data.name=features", f"data.root={root}", "train.epochs=1")
    assert p.returncode == 2, p.stdout + p.stderr
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and expected[0] in lines[0]
    assert "ModalitySpec(" not in p.stderr and "Traceback" not in p.stderr


def test_nonfinite_zero_trains_on_zeros_and_says_so(tmp_path, caplog):
    root = write_features(tmp_path / "features", nan_audio=0.5)
    bundle = load_data(features_cfg(root, **{"data.nonfinite": "zero"}).data)
    for split in (bundle.train, bundle.val, bundle.test):
        assert torch.isfinite(split.batch()["audio"]).all()
    assert "160 NaN/inf values of 1,280 replaced by 0 (data.nonfinite=zero)" in caplog.text


def test_nonfinite_decoded_audio_names_the_file_and_count(tmp_path):
    rows = make_cremad(tmp_path / "CREMA-D", audio="pt")
    bad = tmp_path / "CREMA-D" / "AudioWAV" / f"{rows['train'][3][0]}.pt"
    x = torch.zeros(257, 188)
    x[:10, :5] = float("nan")
    torch.save(x, bad)
    cfg = config("cremad", tmp_path / "CREMA-D", **{"data.cache_dir": str(tmp_path / "cache")})
    with pytest.raises(DataError, match=rf"{bad}: audio holds 50 NaN/inf values .* of 48,316; "
                                        r".*data.nonfinite=zero"):
        load_data(cfg.data)
    zero = config("cremad", tmp_path / "CREMA-D", **{"data.cache_dir": str(tmp_path / "cache"),
                                                     "data.nonfinite": "zero"})
    assert torch.isfinite(load_data(zero.data).train.batch()["audio"].float()).all()


def test_same_device_tells_cuda_indices_apart():
    d = torch.device
    assert same_device(d("cpu"), d("cpu"))
    assert not same_device(d("cpu"), d("cuda:0"), current=0)
    assert same_device(d("cuda"), d("cuda:0"), current=0)
    assert not same_device(d("cuda:0"), d("cuda:1"), current=0)
    assert not same_device(d("cuda"), d("cuda:1"), current=0)
    assert same_device(d("cuda"), d("cuda:1"), current=1)
