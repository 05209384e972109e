"""A data set's fingerprint (``rollingq.data.preflight``): what a study's ``meta.json`` records of
the data its trials read. It names the very cache entry the trials open, and changes when the
files change."""

from __future__ import annotations

import hashlib

import numpy as np
from fakes import config, make_cremad, make_ks, make_mosei
from test_nothing_silent import write_features

from rollingq.config import build_config
from rollingq.data import cremad, kinetics_sounds, mosei, preflight


def sha256(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_a_clip_data_sets_fingerprint_names_its_cache_entry_and_follows_its_lists(tmp_path):
    root = tmp_path / "cremad"
    make_cremad(root)
    cfg = config("cremad", root).data
    checked = preflight(cfg)
    fp = checked.fingerprint
    assert checked.summary == "cremad: 12 train clips, 6 test clips"
    assert fp["sizes"] == {"train": 12, "test": 6} and fp["dropped"] == 0
    assert fp["lists"]["train"] == {"path": str(root / "train.csv"),
                                    "bytes": (root / "train.csv").stat().st_size,
                                    "sha256": sha256(root / "train.csv")}
    assert fp["lists"]["test"]["sha256"] == sha256(root / "test.csv")
    entry = cremad.prepare(cfg, progress=False)
    assert entry.path.name == fp["cache_key"]  # the entry the trials read
    assert preflight(cfg).fingerprint == fp  # stable

    # one clip fewer in the train list: another list hash, clips hash and cache entry
    lines = (root / "train.csv").read_bytes().split(b"\r\n")
    (root / "train.csv").write_bytes(b"\r\n".join(lines[:-2] + [b""]))
    changed = preflight(cfg).fingerprint
    assert changed["sizes"]["train"] == 11
    for key in ("clips_sha256", "cache_key"):
        assert changed[key] != fp[key], key
    assert changed["lists"]["train"]["sha256"] != fp["lists"]["train"]["sha256"]
    assert changed["lists"]["test"] == fp["lists"]["test"]


def test_kinetics_sounds_fingerprint_names_its_cache_entry(tmp_path):
    root = tmp_path / "ks"
    make_ks(root)
    cfg = config("kinetics_sounds", root).data
    fp = preflight(cfg).fingerprint
    assert fp["dataset"] == "kinetics_sounds" and fp["dropped"] == 2  # <= 3 frames: dropped
    assert kinetics_sounds.prepare(cfg, progress=False).path.name == fp["cache_key"]
    assert set(fp["lists"]) == {"train", "test"}


def test_mosei_and_features_fingerprints(tmp_path):
    path = make_mosei(tmp_path / "mosei")
    cfg = config("mosei", tmp_path / "mosei").data
    fp = preflight(cfg).fingerprint
    assert fp["pickle"] == str(path.resolve()) and fp["bytes"] == path.stat().st_size
    assert mosei.prepare(cfg).path.name == fp["cache_key"]

    root = write_features(tmp_path / "feats")
    cfg = config("features", root).data
    fp = preflight(cfg).fingerprint
    assert set(fp["files"]) == {"train", "test"}  # no val.npz: carved from train
    assert fp["files"]["test"]["sha256"] == sha256(root / "test.npz")
    with np.load(root / "test.npz") as z:
        arrays = dict(z)
    arrays["audio"][0, 0, 0] += 1.0  # one value changed
    np.savez(root / "test.npz", **arrays)
    again = preflight(cfg).fingerprint
    assert again["files"]["test"]["sha256"] != fp["files"]["test"]["sha256"]
    assert again["files"]["train"] == fp["files"]["train"]


def test_the_synthetic_fingerprint_is_the_generators_settings():
    fp = preflight(build_config().data).fingerprint
    assert fp["settings"]["data_seed"] == 1234 and fp["settings"]["train_size"] == 3000
    other = preflight(build_config(overrides={"data.easy_snr": 2.0}).data).fingerprint
    assert other["key"] != fp["key"] and other["settings"]["easy_snr"] == 2.0
    # a setting the generator does not read leaves it alone
    same = preflight(build_config(overrides={"data.cache_dir": "/elsewhere"}).data).fingerprint
    assert same == fp
