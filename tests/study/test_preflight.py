"""The driver's data preflight: bad data on disk (written by the tests in the real formats)
stops a study before Ray starts, with one line; good data passes with a summary line."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from study.specfile import load_spec
from tests.rollingq.data.fakes import make_cremad
from tests.rollingq.data.test_nothing_silent import write_features

ROOT = Path(__file__).resolve().parents[2]


def run(tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "RAY_TMPDIR": str(tmp_path / "ray-tmp")}  # where a Ray session would go
    return subprocess.run([sys.executable, "study/run.py", "--space", "smoke", "--storage",
                           str(tmp_path / "results"), *args], cwd=ROOT, capture_output=True,
                          text=True, timeout=300, env=env)


def bad_cremad(tmp_path: Path) -> Path:
    root = tmp_path / "CREMA-D"
    rows = make_cremad(root, n_train=8, n_test=4)
    for clip, _ in rows["train"][:3]:
        (root / "AudioWAV" / f"{clip}.wav").unlink()
    return root


CASES = {
    "no_root": (lambda t: t / "no" / "such" / "dir", "cremad",
                ["cremad: data.root=", "does not exist or is not a folder",
                 "it should hold train.csv, test.csv"]),
    "missing_files": (bad_cremad, "cremad",
                      ["cremad: 3 of 12 samples have missing files", "3 audio files (.wav): ",
                       "data.on_missing=skip"]),
    "nan_features": (lambda t: write_features(t / "features", nan_audio=0.5), "features",
                     ["modality 'audio' holds 160 NaN/inf values", "data.nonfinite=zero"]),
    "unseen_label": (lambda t: write_features(t / "features", test_label=7), "features",
                     ["test label(s) 7 (2 of 20 samples) never occur in training"]),
    "one_class": (lambda t: write_features(t / "features", one_class=True), "features",
                  ["the training split has 1 class (label 0)"]),
    "other_modalities": (lambda t: write_features(t / "features", test_modality="text"),
                         "features", ["test.npz has modalities audio (8 x 4), text (8 x 4), but "
                                      "train.npz has audio (8 x 4), visual (8 x 4)"]),
}


@pytest.mark.integration
@pytest.mark.parametrize("case", list(CASES))
def test_bad_data_stops_the_study_before_ray_starts(tmp_path, case):
    make, dataset, expected = CASES[case]
    root = make(tmp_path)
    p = run(tmp_path, "--dataset", dataset, "--data-root", str(root))
    assert p.returncode == 2, p.stdout[-2000:] + p.stderr[-2000:]
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), p.stderr
    for part in expected:
        assert part in lines[0], (part, lines[0])
    assert not (tmp_path / "ray-tmp").exists()  # no Ray session was started
    assert not (tmp_path / "results").exists()  # no study folder, no trial
    assert "Traceback" not in p.stderr


def test_good_data_passes_and_every_data_setting_of_the_spec_is_checked(tmp_path, capsys):
    from study.preflight import check_data, data_overrides
    from study.space import SpecError

    good = write_features(tmp_path / "good")
    check_data(load_spec("smoke", ["data.name=features", f"data.root={good}"]))
    assert capsys.readouterr().out.strip() == (
        "data: features: 40 train+val and 20 test samples, audio, visual")
    nan = write_features(tmp_path / "nan", nan_audio=0.5)
    space = tmp_path / "nonfinite.yaml"
    space.write_text(f"""# Do zeros in place of NaN features hurt?
# Run: python study/run.py --space {space}
fixed: {{data.name: features, data.root: "{nan}", rollingq.enabled: false}}
search:
  data.nonfinite: {{role: scientific, type: choice, values: [zero, error]}}
seeds: [0]
tune: {{mode: grid, metric: val_acc, scheduler: fifo, resources: {{cpu: 1, gpu: 0}}}}
""")
    spec = load_spec(str(space))
    assert [o["data.nonfinite"] for o in data_overrides(spec)] == ["zero", "error"]
    with pytest.raises(SpecError, match="modality 'audio' holds 160 NaN/inf values"):
        check_data(spec)  # zero passes; error, the second searched value, stops the study
    assert "data: features: 40 train+val" in capsys.readouterr().out  # the zero setting passed


@pytest.mark.integration
def test_a_study_whose_trials_do_not_fit_their_gpu_share_stops_before_ray(tmp_path, capsys):
    """The shipped cluster's A10G (24 GB) split four ways gives 6 GiB a trial, 5.25 less a CUDA
    context; CREMA-D at batch 64 in bf16 needs more (with 15 % for the allocator's
    fragmentation), so the study is refused with the fixes, before Ray starts."""
    root = tmp_path / "CREMA-D"
    make_cremad(root, n_train=8, n_test=4)
    p = run(tmp_path, "--dataset", "cremad", "--data-root", str(root), "--gpus-per-trial",
            "0.25", "--gpu-gib", "24")
    assert p.returncode == 2, p.stdout[-2000:] + p.stderr[-2000:]
    (line,) = p.stderr.strip().splitlines()
    assert line.startswith("error: a trial (rollingq.enabled=False) does not fit: estimated peak")
    assert "with 15% for the allocator's fragmentation > 5.25 GiB available" in line
    assert "train.activation_checkpointing=true" in line
    assert "(GPU share 0.25 of 24 GiB, less a CUDA context)" in line
    assert not (tmp_path / "ray-tmp").exists() and not (tmp_path / "results").exists()
    from study.preflight import check_memory

    spec = load_spec("smoke", ["data.name=cremad", f"data.root={root}",
                               "tune.resources.gpu=0.5"])
    check_memory(spec, 24.0)  # 0.5 x 24 - 0.75 = 11.25 GiB a trial: fits
    out = capsys.readouterr().out
    assert out.startswith("memory: the largest trial needs ") and "of the 11.25 GiB" in out
    check_memory(load_spec("smoke", ["data.name=cremad", f"data.root={root}"]), 24.0)
    assert capsys.readouterr().out == ""  # CPU trials: nothing to check
