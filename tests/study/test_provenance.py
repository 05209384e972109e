"""Provenance beyond the spec (``study.provenance``): a dirty tree's change as a patch that
gives the code back, every installed distribution, the deterministic switch, and a resumed
study refusing data that changed under it. The end-to-end record of a real study is checked in
``test_study_ray.py::test_smoke_study_end_to_end``."""

from __future__ import annotations

import importlib.metadata
import json
import os
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch

from rollingq.config import build_config
from rollingq.data import preflight
from rollingq.device import CUBLAS_WORKSPACE
from rollingq.train import fit
from study import provenance
from study.preflight import check_same_data
from study.space import SpecError
from study.specfile import load_spec
from study.tuner import worker_env

ROOT = Path(__file__).resolve().parents[2]


def git(cwd: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True,
                          text=True).stdout


def files(tree: Path) -> dict[str, bytes]:
    return {str(p.relative_to(tree)): p.read_bytes() for p in sorted(tree.rglob("*"))
            if p.is_file() and ".git" not in p.relative_to(tree).parts}


def test_a_dirty_trees_source_patch_gives_its_code_back(tmp_path):
    dirty, clean, study = tmp_path / "dirty", tmp_path / "clean", tmp_path / "study"
    git(tmp_path, "clone", "-q", str(ROOT), str(dirty))
    study.mkdir()
    # committed tree: no patch (and a stale one from an earlier session is removed)
    (study / provenance.PATCH).write_text("stale")
    record = provenance.git_record(study, cwd=dirty)
    commit = git(dirty, "rev-parse", "HEAD").strip()
    assert record == {"commit": commit, "dirty": False} and not (study / provenance.PATCH).exists()

    # a change of every kind: edited, deleted, staged, untracked text and binary files
    with open(dirty / "README.md", "a") as f:
        f.write("\nan uncommitted line\n")
    (dirty / "Makefile").unlink()
    (dirty / "rollingq" / "new_module.py").write_text("X = 1\n")
    (dirty / "rollingq" / "weights.bin").write_bytes(bytes(range(256)) * 4)
    (dirty / "pyproject.toml").write_text((dirty / "pyproject.toml").read_text() + "# staged\n")
    git(dirty, "add", "pyproject.toml")
    (dirty / "results").mkdir()  # ignored by .gitignore: not part of the code
    (dirty / "results" / "trials.csv").write_text("trial_id\n")
    index_before = git(dirty, "diff", "--cached", "--name-only")
    status_before = git(dirty, "status", "--porcelain")

    big = dirty / "rollingq" / "data.npy"  # a data file kept in the checkout: listed, not copied
    big.write_bytes(b"\0" * (provenance.UNTRACKED_LIMIT + 1))

    record = provenance.git_record(study, cwd=dirty)
    patch = (study / provenance.PATCH).read_bytes()
    assert record["untracked_not_in_patch"] == [{"path": "rollingq/data.npy",
                                                 "bytes": provenance.UNTRACKED_LIMIT + 1}]
    big.unlink()
    assert record["dirty"] is True and record["patch"] == provenance.PATCH
    assert record["patch_applies"] is True and record["patch_bytes"] == len(patch)
    # the user's index and working tree are as they were
    assert git(dirty, "diff", "--cached", "--name-only") == index_before == "pyproject.toml\n"
    assert git(dirty, "status", "--porcelain") == status_before

    # git apply --check on a checkout of the commit, then the patch gives the dirty tree back
    git(tmp_path, "clone", "-q", str(ROOT), str(clean))
    git(clean, "checkout", "-q", commit)
    subprocess.run(["git", "apply", "--check", str(study / provenance.PATCH)], cwd=clean,
                   check=True)
    git(clean, "apply", str(study / provenance.PATCH))
    expected = {k: v for k, v in files(dirty).items() if not k.startswith("results/")}
    assert files(clean) == expected
    # a patch that does not fit the commit is told apart
    assert not provenance.patch_applies(b"diff --git a/nope b/nope\n--- a/nope\n+++ b/nope\n"
                                        b"@@ -1 +1 @@\n-a\n+b\n", commit, cwd=dirty)


def test_every_installed_distribution_is_recorded():
    found = provenance.distributions()
    assert found["torch"] == torch.__version__.split("+")[0] or found["torch"] == torch.__version__
    for name in ("ray", "optuna", "pandas", "statsmodels", "rollingq-studio"):
        assert found[name] == importlib.metadata.version(name), name
    names = {d.metadata["Name"].lower() for d in importlib.metadata.distributions()
             if d.metadata["Name"]}
    assert set(found) == names and list(found) == sorted(found)


def test_the_device_record_without_cuda():
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA: tests/rollingq/test_gpu.py checks the GPU record")
    assert provenance.device_info() == {"device": "cpu"}
    assert provenance.device_info(torch.device("cpu")) == {"device": "cpu"}


def test_deterministic_algorithms_follow_each_runs_setting(monkeypatch):
    """A Ray worker trains trial after trial in one process: each run sets the switch."""
    monkeypatch.delenv("CUBLAS_WORKSPACE_CONFIG", raising=False)
    small = {"data.train_size": 120, "data.test_size": 60, "train.epochs": 1,
             "train.noise_levels": [0.0]}
    try:
        fit(build_config(overrides={**small, "train.deterministic": True}))
        assert torch.are_deterministic_algorithms_enabled()
        assert torch.backends.cudnn.deterministic
        assert os.environ["CUBLAS_WORKSPACE_CONFIG"] == CUBLAS_WORKSPACE
        fit(build_config(overrides=small))
        assert not torch.are_deterministic_algorithms_enabled()
        assert not torch.backends.cudnn.deterministic
    finally:
        torch.use_deterministic_algorithms(False)
        torch.backends.cudnn.deterministic = False


def test_the_workers_get_cublas_setting_when_a_trial_is_deterministic(monkeypatch):
    monkeypatch.delenv("CUBLAS_WORKSPACE_CONFIG", raising=False)
    assert worker_env(load_spec("smoke")) == {}
    spec = load_spec("smoke", ["train.deterministic=true"])
    assert worker_env(spec) == {"CUBLAS_WORKSPACE_CONFIG": CUBLAS_WORKSPACE}


def test_a_resumed_study_refuses_data_that_changed_under_it(tmp_path):
    root = tmp_path / "feats"
    root.mkdir()
    rng = np.random.default_rng(0)
    for split, n in (("train", 40), ("test", 20)):
        np.savez(root / f"{split}.npz", label=np.arange(n) % 3,
                 audio=rng.normal(size=(n, 8, 4)).astype(np.float32),
                 visual=rng.normal(size=(n, 8, 4)).astype(np.float32))
    cfg = build_config(overrides={"data.name": "features", "data.root": str(root)}).data
    before = [preflight(cfg).fingerprint]
    study = tmp_path / "study"
    study.mkdir()
    check_same_data(study, before)  # no meta.json yet: nothing to compare
    (study / "meta.json").write_text(json.dumps({"data": before}))
    check_same_data(study, [preflight(cfg).fingerprint])  # unchanged
    (root / "test.npz").write_bytes((root / "test.npz").read_bytes() + b"\0")
    with pytest.raises(SpecError, match=r"the features data set changed since the study's "
                                        r"trials so far ran \(files\.test\.bytes is \d+ in "
                                        r"meta.json, \d+ now\); restore .*start a new study"):
        check_same_data(study, [preflight(cfg).fingerprint])
