"""Studies on real Ray: the issue's "Must show" list, end to end, with real files.

1. The smoke study through the CLI on a local Ray instance, every result file checked.
2. A trial that raises and one whose loss turns NaN: errored / diverged, the study ends.
3. Ctrl-C (SIGINT) mid-study: exit 3 and the exact resume command, which is then run and
   killed with SIGKILL mid-study (Ray's snapshot and tuner.pkl left cut short), then resumed
   again: every trial exactly once, no ended trial trained again, an interrupted trial
   resumed from its checkpoint, results in the same form as an uninterrupted study.
4. A worker node killed mid-study (``ray.cluster_utils.Cluster``): every trial completes.

Budgets are tiny (a few hundred synthetic samples, the synthetic preset's small model, 3-6
epochs) so the whole file takes a few minutes on 2 cores. The CLI runs in subprocesses with
``RAY_ADDRESS`` removed, so each starts its own local Ray instance.

A killed driver takes its GCS and raylet with it, but some of its Ray processes (agents, idle
workers) can outlive it for a while. They do not affect the resumed study: ``ray.init()``
without an address never joins another instance (only ``RAY_ADDRESS`` or a ``ray start``
cluster would make it), so the resume starts a fresh one. The test removes them afterwards,
by process id, selected by the killed driver's Ray session name. ``ray stop --force`` is not
used: it would stop every Ray instance on the machine, other users' included.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import yaml
from ray import tune

from study.resume import ray_temp, readable
from study.specfile import load_spec

ROOT = Path(__file__).resolve().parents[2]
NOISE_LEVELS = ["0.0", "0.25", "0.5", "0.75", "1.0"]
# The columns Ray adds to each result and the trainable's bookkeeping: never in curves.csv.
NOT_IN_CURVES = {"replayed", "final", "training_iteration", "time_total_s", "done", "pid",
                 "hostname", "node_ip", "checkpoint_dir_name", "timestamp", "date",
                 "should_checkpoint", "time_this_iter_s", "time_since_restore",
                 "iterations_since_restore"}


# ----------------------------------------------------------------------------- helpers


def cli_env() -> dict[str, str]:
    env = dict(os.environ)
    env.pop("RAY_ADDRESS", None)  # a local instance of its own, never someone else's cluster
    env["PYTHONUNBUFFERED"] = "1"
    return env


def run_cli(*args: str, timeout: float = 240) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "study/run.py", *args], cwd=ROOT, env=cli_env(),
                          capture_output=True, text=True, timeout=timeout)


def start_cli(args: list[str], log: Path) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, *args], cwd=ROOT, env=cli_env(),
                            stdout=log.open("w"), stderr=subprocess.STDOUT)


def write_spec(folder: Path, name: str, text: str) -> Path:
    path = folder / f"{name}.yaml"
    path.write_text(text)
    return path


def the_study(storage: Path, space: str) -> Path:
    folders = [p for p in (storage / space).iterdir() if p.is_dir()]
    assert len(folders) == 1, folders
    return folders[0]


def result_rows(study: Path) -> dict[str, list[dict[str, Any]]]:
    """Every trial's result.json rows (as Ray's driver wrote them), by trial id."""
    out: dict[str, list[dict[str, Any]]] = {}
    for f in sorted((study / "ray").glob("*/result.json")):
        rows = []
        for line in f.read_text().splitlines():
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError:  # a line half-written when the driver was killed
                continue
        if rows:
            out[rows[0]["trial_id"]] = rows
    return out


def ended(rows: list[dict[str, Any]]) -> bool:
    return any(r.get("final") for r in rows)


def wait_until(proc: subprocess.Popen, log: Path, ready, timeout: float = 150) -> None:
    """Polls the study until ``ready()``; fails if the driver exits or time runs out."""
    deadline = time.monotonic() + timeout
    while not ready():
        if proc.poll() is not None:
            pytest.fail(f"driver exited ({proc.returncode}) before the kill point:\n"
                        f"{log.read_text()[-3000:]}")
        if time.monotonic() > deadline:
            proc.kill()
            pytest.fail(f"no kill point within {timeout} s:\n{log.read_text()[-3000:]}")
        time.sleep(0.1)


def mid_run(rows: dict[str, list[dict[str, Any]]], min_epochs: int) -> list[str]:
    """Trials running with at least ``min_epochs`` epochs reported (so at least two checkpoints
    were reported, which makes Ray save the experiment state with one of them)."""
    return [t for t, r in rows.items() if not ended(r) and len(r) >= min_epochs]


def session_processes(driver_pid: int) -> list[int]:
    """Processes of the Ray instance a (killed) driver started, found by its session name,
    which ends with the driver's process id (``/tmp/ray/session_<time>_<pid>``)."""
    pattern = re.compile(rf"session_[0-9_-]+_{driver_pid}\b")
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if pattern.search(cmdline):
            found.append(int(proc.name))
    return found


def kill_processes(pids: list[int]) -> None:
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def snapshot_says_running(state_file: Path, trial_id: str) -> bool:
    """Rewinds Ray's experiment snapshot ``state_file`` to a moment before ``trial_id`` ended
    (its status back to RUNNING, its checkpoints kept), as when the driver dies within the few
    seconds between two snapshots. Returns whether the snapshot already said so."""
    state = json.loads(state_file.read_text())
    for entry in state["trial_data"]:
        trial = json.loads(entry[0])
        if trial["trial_id"] == trial_id:
            already = trial["status"] != "TERMINATED"
            trial["status"] = "RUNNING"
            entry[0] = json.dumps(trial)
            state_file.write_text(json.dumps(state))
            return already
    raise AssertionError(f"{trial_id} not in {state_file}")


def newest_snapshot(study: Path) -> Path:
    return sorted((study / "ray").glob("experiment_state-*.json"))[-1]


def staging_folder(driver_pid: int) -> Path:
    """The staging folder of a (killed) driver's Ray session, where Ray writes the state it
    copies to the study's ray/ folder."""
    found = list(Path(ray_temp()).glob(f"session_*_{driver_pid}/artifacts/*/ray/driver_artifacts"))
    assert len(found) == 1, found
    return found[0]


def check_curves(study: Path, trials: pd.DataFrame, epochs: int) -> pd.DataFrame:
    curves = pd.read_csv(study / "curves.csv")
    assert not curves.duplicated(["trial_id", "epoch"]).any()
    assert set(curves["trial_id"]) == set(trials["trial_id"])
    for _, group in curves.groupby("trial_id"):
        assert sorted(group["epoch"]) == list(range(-1, epochs))  # -1: the untrained model
    assert not NOT_IN_CURVES & set(curves.columns)
    return curves


# ----------------------------------------------------------------------------- 1. smoke


def test_smoke_study_end_to_end(tmp_path):
    """`python study/run.py --space smoke`: 2 finished trials and every result file."""
    r = run_cli("--space", "smoke", "--storage", str(tmp_path))
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    assert "trials: 2 finished (expected 2)" in r.stdout
    study = the_study(tmp_path, "smoke")

    trials = pd.read_csv(study / "trials.csv")
    assert len(trials) == 2 and trials["trial_id"].is_unique
    assert (trials["status"] == "finished").all()
    assert trials["error"].isna().all()
    assert sorted(trials["rollingq.enabled"]) == [False, True]
    assert (trials["train.seed"] == 0).all()
    assert (trials["epochs"] == 2).all() and (trials["retries"] == 0).all()
    for col in ("test_acc_at_best_val", "best_val_acc", "best_test_acc", "final_val_acc",
                "final_test_acc"):
        assert trials[col].between(0.25, 1.0).all(), col  # 4 classes: better than chance
    assert trials["final_train_loss"].notna().all() and trials["final_air"].notna().all()
    noise = [f"noise_{m}_{level}" for m in ("audio", "visual") for level in NOISE_LEVELS]
    assert set(noise) <= set(trials.columns)
    assert ((trials[noise] >= 0) & (trials[noise] <= 1)).all().all()
    assert (trials["noise_recipe"] == "additive").all()
    assert trials["params_paper"].gt(0).all()
    assert trials["time_total_s"].gt(0).all() and (trials["gpu"] == 0).all()
    # the diagnostics ran on the selected model: λ = 0 is the headline, on every modality
    for m in ("audio", "visual"):
        assert (trials[f"noise_{m}_0.0"] == trials["test_acc_at_best_val"]).all()
        for col in (f"noise_f1_{m}_0.0", f"noise_auc_{m}", f"noise_drop_{m}",
                    f"noise_rel_drop_{m}", f"missing_{m}_acc", f"missing_{m}_f1"):
            assert trials[col].notna().all(), col
    assert (trials["diagnostics_epoch"] == trials["best_val_epoch"]).all()
    assert trials["test_f1_at_best_val"].between(0, 1).all()
    assert (trials["noise_f1_audio_0.0"] - trials["test_f1_at_best_val"]).abs().max() < 1e-9
    # Table 2 with its protocol recorded (the smoke study's arms are attention fusions)
    assert (trials["attn_noise_recipe"] == "mixing").all()
    assert (trials["attn_noise_level"] == 1.0).all() and (trials["attn_noise_draws"] == 1).all()
    assert (trials["attn_noise_split"] == "test").all()
    for col in ("attn_noise_pooled_r", "attn_noise_r_audio", "attn_noise_shift_visual",
                "attn_noise_shift_audio_low", "attn_noise_shift_audio_high"):
        assert trials[col].notna().all(), col
    # each trial's test predictions, collected into the results folder
    for _, row in trials.iterrows():
        pred = np.load(study / row["predictions"])
        assert (pred["pred"] == pred["label"]).mean() == pytest.approx(
            row["test_acc_at_best_val"], abs=1e-6)
        assert int(pred["epoch"]) == row["best_val_epoch"]

    curves = check_curves(study, trials, epochs=2)
    assert len(curves) == 6
    before = curves[curves["epoch"] == -1]
    assert before["val_air"].notna().all() and before["train_loss"].isna().all()
    assert {"rollingq.enabled", "train.seed", "train_loss", "val_acc", "air"} <= set(curves.columns)

    merged = load_spec("smoke").to_dict()
    assert yaml.safe_load((study / "space.yaml").read_text()) == merged

    meta = json.loads((study / "meta.json").read_text())
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True,
                          text=True).stdout.strip()
    assert meta["git"]["commit"] == head and isinstance(meta["git"]["dirty"], bool)
    assert {"python", "torch", "ray", "optuna", "pandas", "numpy"} <= set(meta["versions"])
    assert meta["command"].endswith(f"study/run.py --space smoke --storage {tmp_path}")
    assert meta["cluster"]["nodes"] == 1 and meta["cluster"]["resources"]["CPU"] >= 1
    assert not any("_group_" in k for k in meta["cluster"]["resources"])
    assert 0 < meta["wall_hours"] < 0.5 and meta["trial_hours"] > 0 and meta["gpu_hours"] == 0
    assert meta["expected_trials"] == 2 and meta["resumed"] is False
    assert meta["trials"] == {"finished": 2, "diverged": 0, "stopped": 0, "timed_out": 0,
                              "errored": 0, "incomplete": 0, "retried": 0}
    # provenance beyond the spec (study.provenance; the patch itself: test_provenance.py)
    dirty = bool(subprocess.run(["git", "status", "--porcelain"], cwd=ROOT, capture_output=True,
                                text=True).stdout.strip())
    assert meta["git"]["dirty"] is dirty and (study / "source.patch").exists() is dirty
    if dirty:
        assert meta["git"]["patch_applies"] is True
    import importlib.metadata

    assert meta["distributions"]["ray"] == importlib.metadata.version("ray")
    assert len(meta["distributions"]) > 50
    host = trials["host"].iloc[0]
    assert meta["devices"] == [{"host": host, "device": "cpu", "trials": 2}]
    assert meta["deterministic"] == "no" and not trials["deterministic"].any()
    from rollingq.config import build_config
    from rollingq.data import preflight

    expected = preflight(build_config(overrides=load_spec("smoke").fixed).data).fingerprint
    assert meta["data"] == [json.loads(json.dumps(expected))]
    # every study, grid ones included, as an Optuna study for optuna-dashboard
    import optuna

    db = optuna.load_study(study_name="smoke", storage=f"sqlite:///{study / 'optuna.db'}")
    assert db.metric_names == ["val_acc"] and len(db.trials) == 2
    for t in db.trials:
        row = trials[trials["trial_id"] == t.user_attrs["trial_id"]].iloc[0]
        curve = curves[(curves["trial_id"] == row["trial_id"]) & (curves["epoch"] >= 0)]
        assert t.state.name == "COMPLETE" and t.value == curve["val_acc"].iloc[-1]
        assert t.params == {"rollingq.enabled": bool(row["rollingq.enabled"])}
        assert t.intermediate_values == dict(zip(curve["epoch"], curve["val_acc"], strict=True))
    report = (study / "report.md").read_text()
    assert f"| devices | 2 trial(s) on cpu at {host} |" in report
    assert f"| data fingerprint | synthetic: generator settings key {expected['key']} |" in report
    assert "| deterministic algorithms | no |" in report


@pytest.mark.integration
def test_balance_rollingq_smoke_test_end_to_end(tmp_path):
    """`python study/run.py --space balance_rollingq --smoke-test`: a balancing method trains
    in a study and its per-epoch ratio and coefficients reach curves.csv."""
    r = run_cli("--space", "balance_rollingq", "--smoke-test", "--storage", str(tmp_path),
                "--no-report")
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    assert "trials: 2 finished (expected 2)" in r.stdout
    study = the_study(tmp_path, "balance_rollingq")
    trials = pd.read_csv(study / "trials.csv")
    assert sorted(trials["balance.method"]) == ["none", "ogm_ge"]
    assert (trials["status"] == "finished").all()
    curves = pd.read_csv(study / "curves.csv")
    ogm = curves[(curves["balance.method"] == "ogm_ge") & (curves["epoch"] >= 0)]  # trained
    for m in ("audio", "visual"):
        assert ogm[f"balance_ratio_{m}"].notna().all()
        assert ogm[f"balance_coef_{m}"].between(0, 1).all()
    assert curves[curves["balance.method"] == "none"]["balance_coef_audio"].isna().all()


@pytest.mark.integration
def test_paper_table1_smoke_test_end_to_end(tmp_path):
    """`python study/run.py --space paper_table1 --smoke-test`: its first two rows finish."""
    r = run_cli("--space", "paper_table1", "--smoke-test", "--storage", str(tmp_path),
                "--no-report")
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    assert "trials: 2 finished (expected 2)" in r.stdout
    trials = pd.read_csv(the_study(tmp_path, "paper_table1") / "trials.csv")
    assert (trials["status"] == "finished").all() and trials["variant"].nunique() == 2
    # --no-report: the results, no report
    assert not (the_study(tmp_path, "paper_table1") / "report.md").exists()
    assert "report:" not in r.stdout


# ----------------------------------------------------------------------------- 2. failures

FAILING = """\
# Do failing trials end the study? One trial raises, one diverges.
fixed:
  model.fusion: attn
  rollingq.enabled: false
  optim.name: sgd
  optim.warmup_epochs: 0
  train.epochs: 3
  data.train_size: 300
  data.test_size: 100
search:
  model.pretrained: {role: nuisance, type: choice, values: ["", /nonexistent/vit.pth]}
  optim.lr: {role: nuisance, type: choice, values: [0.01, 1.0e+30]}
seeds: [0]
tune: {mode: grid, metric: val_acc, scheduler: fifo, resources: {cpu: 1, gpu: 0},
       max_failures: 0, max_concurrent: 2}
"""


@pytest.mark.integration
def test_errored_and_diverged_trials(tmp_path):
    """Missing weights raise in the trial (errored, with the message); lr 1e30 gives a NaN loss
    (diverged); the study still ends, exit 4, and the results say so."""
    spec = write_spec(tmp_path, "failing", FAILING)
    r = run_cli("--space", str(spec), "--storage", str(tmp_path / "out"), "--no-report")
    assert r.returncode == 4, r.stdout[-3000:] + r.stderr[-3000:]
    assert "trials: 1 finished, 1 diverged, 2 errored (expected 4)" in r.stdout
    assert "study ended with 2 errored trial(s)" in r.stderr
    assert "--resume" in r.stderr
    study = the_study(tmp_path / "out", "failing")

    trials = pd.read_csv(study / "trials.csv", keep_default_na=False)
    assert len(trials) == 4
    by = {(row["model.pretrained"], float(row["optim.lr"])): row for _, row in trials.iterrows()}
    assert by[("", 0.01)]["status"] == "finished"
    diverged = by[("", 1e30)]
    assert diverged["status"] == "diverged" and diverged["error"] == ""
    assert float(diverged["final_val_acc"] or 0) == 0  # never NaN: the worst value of val_acc
    for lr in (0.01, 1e30):
        bad = by[("/nonexistent/vit.pth", lr)]
        assert bad["status"] == "errored"
        assert "FileNotFoundError" in bad["error"] and "/nonexistent/vit.pth" in bad["error"]
        assert bad["epochs"] == 0
        # its arm from its config, as the trials that ran report it (design.json's analysis
        # reads it and never builds a config)
        assert (bad["rollingq_on"], bad["rollingq_beta"]) == (
            by[("", lr)]["rollingq_on"], by[("", lr)]["rollingq_beta"])
        assert str(bad["rollingq_on"]) in ("True", "False")
    design = json.loads((study / "design.json").read_text())
    assert [s["key"] for s in design["search"]] == ["model.pretrained", "optim.lr"]
    curves = pd.read_csv(study / "curves.csv")
    assert not curves.duplicated(["trial_id", "epoch"]).any()
    div = curves[curves["trial_id"] == diverged["trial_id"]]
    assert div["status"].iloc[-1] == "diverged" and pd.isna(div["train_loss"].iloc[-1])
    meta = json.loads((study / "meta.json").read_text())
    assert meta["trials"] == {"finished": 1, "diverged": 1, "stopped": 0, "timed_out": 0,
                              "errored": 2, "incomplete": 0, "retried": 0}


# ----------------------------------------------------------------------------- 3. interrupt

CHAIN = """\
# Does a study survive Ctrl-C and a killed driver? 6 trials x 6 epochs, two at a time.
fixed:
  model.fusion: attn
  rollingq.enabled: true
  rollingq.beta: 0.0
  train.epochs: 6
  data.train_size: 400
  data.test_size: 100
search:
  rollingq.max_rotations: {role: scientific, type: choice, values: [0, 1, 2]}
seeds: [0, 1]
tune: {mode: grid, metric: val_acc, scheduler: fifo, resources: {cpu: 1, gpu: 0},
       max_failures: 1, max_concurrent: 2}
"""
EPOCHS = 6


@pytest.mark.integration
def test_interrupt_kill_and_resume(tmp_path):
    """SIGINT -> exit 3 + the resume command; that command, SIGKILLed mid-study; resumed
    again -> the 6 trials once each, nothing trained twice, the same form as a plain study."""
    spec = write_spec(tmp_path, "chain", CHAIN)
    storage = tmp_path / "out"
    log = tmp_path / "driver.log"
    killed: int | None = None
    t0 = time.monotonic()
    try:
        # -- A: Ctrl-C once 2 trials have ended and another is mid-run
        driver = start_cli(["study/run.py", "--space", str(spec), "--storage", str(storage),
                            "--name", "s"], log)
        study = storage / "chain" / "s"

        def two_ended_one_mid() -> bool:
            rows = result_rows(study)
            return sum(map(ended, rows.values())) >= 2 and bool(mid_run(rows, 3))

        wait_until(driver, log, two_ended_one_mid)
        before_int = result_rows(study)
        driver.send_signal(signal.SIGINT)
        assert driver.wait(timeout=120) == 3, log.read_text()[-3000:]
        print(f"A: SIGINT, exit 3 after {time.monotonic() - t0:.1f} s")
        out = log.read_text()
        assert "study incomplete" in out and "Resume with:" in out
        command = out.split("Resume with:", 1)[1].strip().splitlines()[0]
        assert command == f"python study/run.py --space chain --resume {study}"
        partial = pd.read_csv(study / "trials.csv")
        assert (partial["status"] == "incomplete").any()
        assert (partial["status"] == "finished").sum() >= 2

        # -- B: the printed command; SIGKILL once another trial has ended and one is mid-run
        args = shlex.split(command)
        assert args[0] == "python"
        ended_a = {t for t, r in result_rows(study).items() if ended(r)}
        driver = start_cli(args[1:], log)

        def one_more_one_mid() -> bool:
            rows = result_rows(study)
            done = {t for t, r in rows.items() if ended(r)} - ended_a
            return len(done) >= 1 and bool(mid_run(rows, 3))

        wait_until(driver, log, one_more_one_mid)
        driver.kill()
        killed_at = time.time()
        driver.wait(timeout=30)
        killed = driver.pid
        print(f"B: SIGKILL after {time.monotonic() - t0:.1f} s; left behind: "
              f"{len(session_processes(killed))} Ray processes of its session")
        before_kill = result_rows(study)
        ended_b = {t for t, r in before_kill.items() if ended(r)}
        interrupted = mid_run(before_kill, 3)
        # the trial that ended last, as if the driver had died before Ray's next snapshot
        last = max(ended_b - ended_a, key=lambda t: before_kill[t][-1]["timestamp"])
        # ... and killed while Ray copied that snapshot and tuner.pkl from its staging folder to
        # the study's ray/ folder: both are cut short there, the staging copy is whole
        state = newest_snapshot(study)
        staged = staging_folder(killed) / state.name
        if not readable(staged.read_bytes()):  # killed as Ray wrote it: the copy is the newest
            staged.write_bytes(state.read_bytes())
        snapshot_says_running(staged, last)
        state.write_bytes(staged.read_bytes()[:1000])
        tuner_pkl = study / "ray" / "tuner.pkl"
        tuner_pkl.write_bytes(tuner_pkl.read_bytes()[:100])
        # ... and a trial's result.json, copied with them, short of an epoch (the 3rd of a trial
        # that ended in A: Ray never runs it again, so only the trial's history.json has it)
        gap = sorted(ended_a)[0]
        results_file = next((study / "ray").glob(f"*{gap}*/result.json"))
        lines = results_file.read_text().splitlines(keepends=True)
        assert json.loads(lines[2])["epoch"] == 2
        results_file.write_text("".join(lines[:2] + lines[3:]))

        # -- C: resume with the same command: the study ends
        r = run_cli(*args[2:], "--no-report")
        assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
        assert "trials: 6 finished" in r.stdout
        assert (f"resume: {state.name} was truncated: restored from Ray's whole copy in "
                f"{staged.parent.resolve()}\n") in r.stdout
        assert "resume: tuner.pkl was truncated: rebuilt from the study's space.yaml" in r.stdout
        assert "Started a local Ray instance" in r.stderr  # not the killed driver's
        print(f"C: resumed study ended after {time.monotonic() - t0:.1f} s")
    finally:
        if killed is not None:
            kill_processes(session_processes(killed))

    after = result_rows(study)
    trials = pd.read_csv(study / "trials.csv")
    assert len(trials) == 6 and trials["trial_id"].is_unique
    assert (trials["status"] == "finished").all() and (trials["epochs"] == EPOCHS).all()
    combos = set(zip(trials["rollingq.max_rotations"], trials["train.seed"], strict=True))
    assert combos == {(m, s) for m in (0, 1, 2) for s in (0, 1)}

    # Every epoch of every trial was trained at most once after it was reported, so an ended
    # trial trains no more: what a trial reports after an interruption is either a replay of
    # its ledger (final.json) or epochs it had not reported yet ...
    for before in (before_int, before_kill):
        for tid, rows in before.items():
            new = after[tid][len(rows):]
            if ended(rows):
                assert all(r.get("replayed") for r in new), (tid, new)
    # ... and the trial rewound in Ray's snapshot was started again and only replayed.
    replays = after[last][len(before_kill[last]):]
    assert len(replays) == 1 and replays[0]["replayed"] and replays[0]["epoch"] == EPOCHS - 1
    row = trials.set_index("trial_id").loc[last]
    assert row["retries"] == before_kill[last][-1]["restarts"]  # it did not restart
    # An interrupted trial resumed from a checkpoint, not from epoch 0 (not necessarily the one
    # after the last epoch its result.json shows: the snapshot can know a later one)
    for tid in interrupted:
        new = after[tid][len(before_kill[tid]):]
        assert new and new[-1].get("final")
        assert new[0]["epoch"] >= 1, new[0]["epoch"]
        # rows without a restart were reported before the kill and reached the storage only
        # with Ray's staging copy, which the resumed study restores
        assert all(r["restarts"] >= 1 or r["timestamp"] <= killed_at for r in new), [
            (r["epoch"], r["restarts"], r["timestamp"] - killed_at) for r in new]
        # a trial that looked mid-run may have ended before the kill, its last epochs still in
        # the staging copy (the flake this test once had); else it went on from a checkpoint
        if new[-1]["restarts"] == 0:
            assert all(r["timestamp"] <= killed_at for r in new)
            continue
        assert trials.set_index("trial_id").loc[tid, "retries"] >= 1
    curves = check_curves(study, trials, EPOCHS)  # every epoch of every trial, the gap's too
    assert 2 not in [r["epoch"] for r in after[gap]]
    filled = curves[(curves["trial_id"] == gap) & (curves["epoch"] == 2)].iloc[0]
    history = json.loads(next((study / "ray").glob(f"*{gap}*/history.json")).read_text())
    saved = next(h for h in history if h["epoch"] == 2)
    assert filled["val_acc"] == saved["val_acc"] and filled["air"] == saved["air"]

    # The same form as an uninterrupted study of the same space (one seed of it)
    ref = run_cli("--space", str(spec), "--storage", str(tmp_path / "ref"), "--set", "seeds=[0]",
                  "--set", "train.epochs=2", "--no-report")
    assert ref.returncode == 0, ref.stdout[-3000:] + ref.stderr[-3000:]
    ref_study = the_study(tmp_path / "ref", "chain")
    assert list(pd.read_csv(ref_study / "trials.csv").columns) == list(trials.columns)
    assert set(pd.read_csv(ref_study / "curves.csv").columns) == set(curves.columns)
    meta = json.loads((study / "meta.json").read_text())
    assert meta["resumed"] is True and meta["trials"]["finished"] == 6
    # optuna.db rewritten from the resumed study: each trial once, each epoch once
    import optuna

    db = optuna.load_study(study_name="chain", storage=f"sqlite:///{study / 'optuna.db'}")
    assert sorted(t.user_attrs["trial_id"] for t in db.trials) == sorted(trials["trial_id"])
    assert all(t.state.name == "COMPLETE" and sorted(t.intermediate_values) == list(
        range(EPOCHS)) for t in db.trials)


# ----------------------------------------------------------------------------- 4. node kill

NODES = """\
# Does a study survive losing a worker node? 4 trials x 5 epochs, two at a time.
fixed:
  model.fusion: attn
  rollingq.enabled: true
  train.epochs: 5
  data.train_size: 400
  data.test_size: 100
search:
  rollingq.max_rotations: {role: scientific, type: choice, values: [0, 1]}
seeds: [0, 1]
tune: {mode: grid, metric: val_acc, scheduler: fifo, resources: {cpu: 1, gpu: 0},
       max_failures: 2, max_concurrent: 2}
"""
# The cluster of the running test. Tune pickles its callbacks into the experiment state, and a
# Cluster holds locks, so the callback looks it up here when it fires.
CLUSTER: dict[str, Any] = {}


class KillWorkerNode(tune.Callback):
    """At the first result of ``at`` iterations, removes the worker node ungracefully and adds
    a replacement (from the driver's main thread, where Tune calls back)."""

    def __init__(self, at: int):
        self.at = at
        self.fired = False

    def on_trial_result(self, iteration: int, trials: list, trial: Any, result: dict,
                        **info: Any) -> None:
        if self.fired or result["training_iteration"] < self.at:
            return
        self.fired = True
        cluster = CLUSTER["cluster"]
        CLUSTER["running"] = sorted(t.trial_id for t in trials if t.status == "RUNNING")
        CLUSTER["firing"] = trial.trial_id
        cluster.remove_node(CLUSTER["worker"], allow_graceful=False)
        CLUSTER["worker"] = cluster.add_node(num_cpus=2)


@pytest.mark.integration
def test_worker_node_killed_mid_study(tmp_path, monkeypatch):
    """The node running both trials dies at their 2nd epoch: they are retried from their
    checkpoints on a new node, and the study ends with every trial finished."""
    from ray.cluster_utils import Cluster

    from study import run

    monkeypatch.setenv("PYTHONPATH", str(ROOT))  # the nodes' workers import study/ and rollingq/
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    spec = write_spec(tmp_path, "nodes", NODES)
    # The head runs no trials: every trial runs on the worker node, and all of them fail.
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 0})
    try:
        CLUSTER.update(cluster=cluster, worker=cluster.add_node(num_cpus=2))
        cluster.wait_for_nodes()
        code = run.main(["--space", str(spec), "--storage", str(tmp_path / "out"),
                         "--address", cluster.address, "--no-report"],
                        callbacks=[KillWorkerNode(at=2)])
        running, firing = CLUSTER.get("running", []), CLUSTER.get("firing")
    finally:
        CLUSTER.clear()
        cluster.shutdown()
    assert code == 0
    study = the_study(tmp_path / "out", "nodes")
    trials = pd.read_csv(study / "trials.csv").set_index("trial_id")
    assert len(trials) == 4 and (trials["status"] == "finished").all()
    assert (trials["epochs"] == 5).all()
    check_curves(study, trials.reset_index(), epochs=5)
    # Both trials were running on the lost node and both were retried. The one whose 2nd epoch
    # triggered the kill went on from its 1st epoch's checkpoint (Tune asks for the next epoch
    # only once the last checkpoint is registered): epoch 0 trained once, epoch 1 twice.
    assert len(running) == 2 and firing in running
    assert (trials.loc[running, "retries"] >= 1).all()
    assert (trials.drop(index=running)["retries"] == 0).all()
    rows = result_rows(study)[firing]
    assert [r["epoch"] for r in rows] == [0, 1, 1, 2, 3, 4]
    assert [r["restarts"] for r in rows] == [0, 0, 1, 1, 1, 1]
    meta = json.loads((study / "meta.json").read_text())
    assert meta["cluster"]["nodes"] == 2 and meta["trials"]["retried"] == 2
