"""Ray's resume state after a killed driver (``study.resume``): truncated files are found
without unpickling them, ``tuner.pkl`` is rebuilt from the spec, a truncated snapshot is
copied back from Ray's staging folder when a whole copy of it is there (never from an older
session), and a state past repair stops ``--resume`` with one line before Ray starts.

The state files are Ray's own (``tuner.pkl`` from constructing the study's real Tuner) or
written here in Ray's formats and layout (the trial snapshot as JSON, the variant generator's
as a pickle with a ``.json`` name, the staging folders under ``RAY_TMPDIR``). The end-to-end
case, a resume after SIGKILL with ``tuner.pkl`` cut short, is in
``test_study_ray.py::test_interrupt_kill_and_resume``."""

from __future__ import annotations

import json
import os
import pickle
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from study.growth import RAY_DIR
from study.resume import RepairError, readable, repair
from study.specfile import load_spec
from study.tuner import build_tuner

ROOT = Path(__file__).resolve().parents[2]
OLD, NEW = "2026-11-29_09-00-00", "2026-11-29_09-05-00"


def new_study(tmp_path: Path) -> tuple[Path, str, object]:
    """A study folder whose ray/ holds the tuner.pkl that building its real Tuner writes."""
    spec = load_spec("smoke")
    folder = tmp_path / "study"
    folder.mkdir()
    (folder / "space.yaml").write_text(yaml.safe_dump(spec.to_dict(), sort_keys=False))
    build_tuner(spec, str(folder), folder)
    return folder, str(folder / RAY_DIR), spec


def snapshot(exp: str, stamp: str, trials: list[str], cut: bool = False) -> None:
    """One driver session's state: the trial snapshot (knowing ``trials``) and the variant
    generator's pickle; ``cut`` leaves the trial snapshot half-written."""
    entries = [[json.dumps({"trial_id": t[-5:], "relative_logdir": t, "status": "RUNNING"}),
                "{}"] for t in trials]
    text = json.dumps({"trial_data": entries, "runner_data": {}, "stats": {}}).encode()
    Path(exp, f"experiment_state-{stamp}.json").write_bytes(text[:len(text) // 2] if cut
                                                             else text)
    Path(exp, f"basic-variant-state-{stamp}.json").write_bytes(
        pickle.dumps({"_iterators": [], "_trial_generator": len(trials)}))
    for t in trials:
        Path(exp, t).mkdir(exist_ok=True)


def never() -> None:
    raise AssertionError("tuner.pkl was rebuilt though it was whole")


def test_readable_finds_every_cut(tmp_path):
    _, exp, _ = new_study(tmp_path)
    for data in (Path(exp, "tuner.pkl").read_bytes(), json.dumps({"a": [1, 2, 3]}).encode(),
                 pickle.dumps({"_iterators": list(range(50))})):
        assert readable(data)
        assert not any(readable(data[:n]) for n in range(len(data)))


def test_whole_state_is_left_alone(tmp_path):
    _, exp, _ = new_study(tmp_path)
    snapshot(exp, OLD, ["t_00000"])
    before = {p.name: p.read_bytes() for p in Path(exp).iterdir() if p.is_file()}
    assert repair(exp, never) == []
    assert {p.name: p.read_bytes() for p in Path(exp).iterdir() if p.is_file()} == before


@pytest.mark.parametrize("damage", ["truncated", "missing"])
def test_tuner_pkl_rebuilt_from_the_spec(tmp_path, damage):
    folder, exp, spec = new_study(tmp_path)
    tuner = Path(exp, "tuner.pkl")
    whole = pickle.loads(tuner.read_bytes())
    snapshot(exp, OLD, ["t_00000"])
    if damage == "truncated":
        tuner.write_bytes(tuner.read_bytes()[:200])
    else:
        tuner.unlink()
    lines = repair(exp, lambda: build_tuner(spec, str(folder), folder))
    assert lines == [f"tuner.pkl was {damage}: rebuilt from the study's space.yaml"]
    rebuilt = pickle.loads(tuner.read_bytes())
    assert rebuilt["__trainable_name"] == whole["__trainable_name"]
    assert rebuilt["__flattened_param_space_keys"] == whole["__flattened_param_space_keys"]


def test_no_snapshot_no_rebuild(tmp_path):
    """Killed before Ray's first snapshot: nothing to restore, so nothing to rebuild (the
    driver starts the study afresh, as before)."""
    _, exp, _ = new_study(tmp_path)
    Path(exp, "tuner.pkl").write_bytes(b"")
    assert repair(exp, never) == []


def staged(tmp_path: Path, session: str, exp: str, stamp: str) -> Path:
    """Ray's staging folder of a driver session under ``RAY_TMPDIR`` (set to tmp_path), with
    a copy of the study's snapshot files of ``stamp`` as they are in ``exp`` now."""
    folder = tmp_path / "ray" / session / "artifacts" / "2026-11-29_09-00-00" / RAY_DIR
    folder = folder / "driver_artifacts"
    folder.mkdir(parents=True)
    for f in Path(exp).glob(f"*state-{stamp}.json"):
        (folder / f.name).write_bytes(f.read_bytes())
    return folder


def cut_short(path: Path) -> None:
    path.write_bytes(path.read_bytes()[:len(path.read_bytes()) // 2])


@pytest.mark.parametrize("name", [f"experiment_state-{NEW}.json",
                                  f"basic-variant-state-{NEW}.json"])
def test_truncated_snapshot_restored_from_rays_staging_copy(tmp_path, monkeypatch, name):
    monkeypatch.setenv("RAY_TMPDIR", str(tmp_path))
    _, exp, _ = new_study(tmp_path)
    snapshot(exp, OLD, ["t_00000"])
    snapshot(exp, NEW, ["t_00000", "t_00001"])
    staging = staged(tmp_path, "session_2026-11-29_09-05-00_1_42", exp, NEW)
    staged(tmp_path, "session_2026-11-29_08-00-00_1_41", exp, OLD)  # another session's
    whole = Path(exp, name).read_bytes()
    cut_short(Path(exp, name))
    assert repair(exp, never) == [f"{name} was truncated: restored from Ray's whole copy in "
                                  f"{staging}"]
    assert Path(exp, name).read_bytes() == whole
    assert repair(exp, never) == []  # repaired once; the other files were left alone


@pytest.mark.parametrize("other", ["another version", "another study"])
def test_only_the_copy_the_cut_file_came_from(tmp_path, monkeypatch, other):
    """A staging copy that does not begin with the cut file's bytes, or whose trials are not
    the study's, is not the file the copy was reading: refused with one message, nothing
    written."""
    monkeypatch.setenv("RAY_TMPDIR", str(tmp_path))
    _, exp, _ = new_study(tmp_path)
    if other == "another version":  # the same trials, another status
        snapshot(exp, NEW, ["t_00000"])
        staged(tmp_path, "session_2026-11-29_09-05-00_1_42", exp, NEW)
        state = Path(exp, f"experiment_state-{NEW}.json")
        state.write_text(state.read_text().replace("RUNNING", "TERMINATED"))
    else:
        snapshot(exp, NEW, ["u_00000"])
        staged(tmp_path, "session_2026-11-29_09-05-00_1_42", exp, NEW)
        Path(exp, "u_00000").rmdir()
        snapshot(exp, NEW, ["t_00000"])
        state = Path(exp, f"experiment_state-{NEW}.json")
        state.write_bytes(b"...")  # opened by the copy, nothing written yet
    state.write_bytes(state.read_bytes()[:-3])
    cut = state.read_bytes()
    with pytest.raises(RepairError, match=rf"experiment_state-{NEW}.json is truncated .* no "
                                          rf"whole copy is left in Ray's staging folders"):
        repair(exp, never)
    assert state.read_bytes() == cut


def test_a_trial_begun_after_the_staged_snapshot_is_fine(tmp_path, monkeypatch):
    """Ray's snapshot lags its trials by up to a snapshot period: a trial folder it does not
    know yet does not make it another study's (Ray starts that trial again, as on any
    resume)."""
    monkeypatch.setenv("RAY_TMPDIR", str(tmp_path))
    _, exp, _ = new_study(tmp_path)
    snapshot(exp, NEW, ["t_00000"])
    staging = staged(tmp_path, "session_2026-11-29_09-05-00_1_42", exp, NEW)
    Path(exp, "t_00001").mkdir()
    cut_short(Path(exp, f"experiment_state-{NEW}.json"))
    assert repair(exp, never)[0].endswith(f"restored from Ray's whole copy in {staging}")


def test_an_older_session_is_never_used_instead(tmp_path, monkeypatch):
    """The session before points at checkpoints Ray has since deleted: with no staging copy
    the study cannot be resumed, whatever older snapshots there are."""
    monkeypatch.setenv("RAY_TMPDIR", str(tmp_path))
    _, exp, _ = new_study(tmp_path)
    snapshot(exp, OLD, ["t_00000"])
    snapshot(exp, NEW, ["t_00000"], cut=True)
    with pytest.raises(RepairError, match="the study cannot be resumed"):
        repair(exp, never)


@pytest.mark.integration
def test_resume_past_repair_is_one_line_before_ray(tmp_path):
    folder, exp, _ = new_study(tmp_path)
    snapshot(exp, OLD, ["t_00000"], cut=True)
    r = subprocess.run([sys.executable, "study/run.py", "--space", "smoke", "--resume",
                        str(folder), "--storage", str(tmp_path)], cwd=ROOT, capture_output=True,
                       text=True, timeout=120, env={**os.environ, "RAY_TMPDIR": str(tmp_path)})
    assert r.returncode == 2, r.stdout + r.stderr
    assert r.stderr.count("\n") == 1 and "Traceback" not in r.stderr
    assert r.stderr.startswith(f"error: Ray's snapshot {exp}/experiment_state-{OLD}.json is "
                               f"truncated (its driver was killed while writing it) and no "
                               f"whole copy is left"), r.stderr
    assert "Started a local Ray instance" not in r.stdout + r.stderr
