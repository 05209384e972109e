"""CMU-MOSEI: the pickle's keys and (N, 1, 1) labels -> splits, subsets, -inf, errors."""

import dataclasses
import pickle

import numpy as np
import pytest
import torch

from rollingq.config import ConfigError
from rollingq.data import load_data
from rollingq.data.clips import DataError
from tests.rollingq.data.fakes import config, make_mosei, mosei_arrays


def test_default_is_visual_and_text_with_the_published_sizes(tmp_path):
    make_mosei(tmp_path)
    data = load_data(config("mosei", tmp_path).data)
    assert list(data.specs) == ["visual", "text"] and data.num_classes == 2
    assert {m: s.shape for m, s in data.specs.items()} == {"visual": (5, 35), "text": (4, 300)}
    assert all(s.kind == "sequence" for s in data.specs.values())
    assert (len(data.train), len(data.val), len(data.test)) == (20, 6, 8)
    assert data.train.inputs["visual"].dtype == torch.float32


def test_labels_are_score_sign(tmp_path):
    make_mosei(tmp_path)
    data = load_data(config("mosei", tmp_path).data)
    scores = mosei_arrays(20, 0)["labels"].reshape(-1)
    assert data.train.labels.tolist() == [int(s >= 0) for s in scores]
    assert data.train.labels[0] == 1 and data.train.labels[1] == 0  # 0.0 -> 1, -0.01 -> 0


def test_all_three_and_single_modalities(tmp_path):
    make_mosei(tmp_path)
    data = load_data(config("mosei", tmp_path, **{"data.modalities": "audio,visual,text"}).data)
    assert list(data.specs) == ["audio", "visual", "text"]
    audio = data.train.inputs["audio"]
    assert audio.shape == (20, 6, 74) and torch.isfinite(audio).all()
    assert (audio[0, 0, :5] == 0).all(), "-inf in audio becomes 0, as published"
    np.testing.assert_allclose(audio[0, 0, 5:].numpy(), mosei_arrays(20, 0)["audio"][0, 0, 5:])
    one = load_data(config("mosei", tmp_path, **{"data.modalities": "text"}).data)
    assert list(one.specs) == ["text"] and set(one.test.inputs) == {"text"}


def test_aligned_file_and_an_explicit_pickle(tmp_path):
    make_mosei(tmp_path / "a", name="mosei_senti_data.pkl")
    assert len(load_data(config("mosei", tmp_path / "a").data).train) == 20
    path = make_mosei(tmp_path / "b", name="other.pkl", sizes=(9, 3, 4))
    cfg = config("mosei", "", **{"data.pickle": str(path)})
    assert len(load_data(cfg.data).train) == 9


def test_errors_name_the_file_and_key(tmp_path):
    with pytest.raises(DataError, match="holds neither mosei_senti_data_noalign.pkl nor "
                                        "mosei_senti_data.pkl; set data.pickle"):
        load_data(config("mosei", tmp_path).data)
    bad = tmp_path / "mosei_senti_data_noalign.pkl"
    bad.write_bytes(b"not a pickle")
    with pytest.raises(DataError, match=f"cannot read pickle {bad}"):
        load_data(config("mosei", tmp_path).data)

    def write(data):
        bad.write_bytes(pickle.dumps(data))

    splits = {s: mosei_arrays(4, i) for i, s in enumerate(("train", "valid", "test"))}
    write({"train": splits["train"], "test": splits["test"]})
    with pytest.raises(DataError, match=f"{bad} has no split 'valid'"):
        load_data(config("mosei", tmp_path).data)
    del splits["valid"]["vision"]
    write(splits)
    with pytest.raises(DataError, match=f"{bad}: split 'valid' lacks vision"):
        load_data(config("mosei", tmp_path).data)
    splits["valid"] = mosei_arrays(4, 1)
    splits["test"]["labels"] = np.zeros((4, 2, 1))
    write(splits)
    with pytest.raises(DataError, match=r"test/labels must be \(N, 1, 1\) scores"):
        load_data(config("mosei", tmp_path).data)
    splits["test"] = mosei_arrays(4, 2)
    splits["test"]["vision"][1, 1, 1] = np.nan
    write(splits)
    with pytest.raises(DataError, match="test/vision holds 1 NaN/inf values"):
        load_data(config("mosei", tmp_path).data)
    splits["test"] = mosei_arrays(4, 2)
    write(splits)
    unchecked = dataclasses.replace(config("mosei", tmp_path).data, modalities="speech")
    with pytest.raises(DataError, match="mosei has no modality speech"):
        load_data(unchecked)
    with pytest.raises(ConfigError, match="data.modalities"):
        config("mosei", tmp_path, **{"data.modalities": "text,speech"})
    assert len(load_data(config("mosei", tmp_path).data).test) == 4
