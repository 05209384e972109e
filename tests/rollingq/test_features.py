"""The generic ``features`` data set: real .npz files, shapes, the carved val split, errors."""

import numpy as np
import pytest

from rollingq.config import build_config
from rollingq.data import load_data
from rollingq.train import fit


def write(path, n, classes=3, seed=0, **extra):
    rng = np.random.default_rng(seed)
    arrays = {
        "audio": rng.normal(size=(n, 6, 10)).astype(np.float32),
        "text": rng.normal(size=(n, 7)).astype(np.float32),
        "label": np.arange(n) % classes,
    }
    arrays.update(extra)
    np.savez(path, **arrays)


def cfg(root, **kw):
    return build_config(overrides={"data.name": "features", "data.root": str(root), **kw})


def test_loads_shapes_and_carves_val(tmp_path):
    write(tmp_path / "train.npz", 60)
    write(tmp_path / "test.npz", 15, seed=1)
    data = load_data(cfg(tmp_path).data)
    assert {m: s.shape for m, s in data.specs.items()} == {"audio": (6, 10), "text": (7,)}
    assert data.num_classes == 3 and len(data.test) == 15
    assert len(data.val) == 6 and len(data.train) == 54  # 10 % of each class carved off
    assert sorted(data.val.labels.tolist()) == [0, 0, 1, 1, 2, 2]


def test_uses_val_npz_when_present_and_trains(tmp_path):
    for name, n in (("train", 48), ("val", 12), ("test", 12)):
        write(tmp_path / f"{name}.npz", n)
    c = cfg(tmp_path, **{"model.dim": 16, "model.heads": 2, "model.depth": 1, "train.epochs": 1})
    assert len(load_data(c.data).val) == 12
    result = fit(c)
    assert result.status == "finished" and "val_share_text" in result.history[-1]


@pytest.mark.parametrize(
    "setup, message",
    [
        (lambda d: write(d / "train.npz", 10), "lacks test.npz"),
        (
            lambda d: [
                write(d / "train.npz", 10),
                np.savez(d / "test.npz", audio=np.zeros((3, 6, 10))),
            ],
            "test.npz has no 'label' array; it has: audio",
        ),
        (
            lambda d: [write(d / "train.npz", 10), (d / "test.npz").write_bytes(b"not a zip")],
            "cannot read",
        ),
        (
            lambda d: [
                write(d / "train.npz", 10),
                write(d / "test.npz", 4, audio=np.zeros((5, 6, 10))),
            ],
            "modality 'audio' must be (N, L, D) or (N, D) with N=4",
        ),
        (
            lambda d: [
                write(d / "train.npz", 10),
                write(d / "test.npz", 4, audio=np.zeros((4, 2, 10))),
            ],
            "test.npz has modalities audio (2 x 10)",
        ),
        (
            lambda d: [
                write(d / "train.npz", 10),
                write(d / "test.npz", 4, label=np.array([0.5] * 4)),
            ],
            "'label' must be a 1-D integer array",
        ),
    ],
)
def test_errors_name_the_file_and_the_problem(tmp_path, setup, message):
    setup(tmp_path)
    with pytest.raises(ValueError) as e:
        load_data(cfg(tmp_path).data)
    assert message in str(e.value)
