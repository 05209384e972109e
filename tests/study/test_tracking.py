"""Studies in the researcher's tracker, with the real trackers (``study/tracking.py``,
``study/trackers.py``, ``study/export.py``):

1. A real ``mlflow server`` (sqlite backend) on 127.0.0.1, started and stopped by the test by
   process group: the smoke study logs one child run per trial under one parent run, each with
   its whole ``val_acc`` history; a study whose driver is SIGKILLed mid-study and resumed adds
   no run and no duplicate step (queried through ``MlflowClient``).
2. W&B in offline mode: one offline run directory per trial (read back from W&B's own record
   file), and exporting the study again adds none.
3. ``python -m study.export mlflow:sqlite:///...`` logs a study after the fact, and a second
   export adds nothing.
4. Bad input: an unknown tracker, a tracker that is not installed, a server that does not
   answer, another tracker on resume: exit 2 with one line, before Ray starts.
"""

from __future__ import annotations

import json
import struct
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from tests.study.loopback import free_port, server
from tests.study.test_study_ray import (
    ROOT,
    cli_env,
    kill_processes,
    run_cli,
    session_processes,
    start_cli,
    wait_until,
    write_spec,
)

mlflow = pytest.importorskip("mlflow")
pytest.importorskip("wandb")
from mlflow.tracking import MlflowClient  # noqa: E402

pytestmark = pytest.mark.integration  # make test-fast leaves it out (docs/testing.md)

KILLED = """\
# Does a tracked study survive a killed driver? 4 trials x 5 epochs, one at a time, no
# checkpoint before the last epoch: a trial cut short trains again from its first epoch.
fixed:
  model.fusion: attn
  train.checkpoint_every: 0
  rollingq.enabled: true
  rollingq.beta: 0.0
  train.epochs: 5
  data.train_size: 300
  data.test_size: 100
search:
  rollingq.max_rotations: {role: scientific, type: choice, values: [0, 1]}
seeds: [0, 1]
tune: {mode: grid, metric: val_acc, scheduler: fifo, resources: {cpu: 1, gpu: 0},
       max_failures: 1, max_concurrent: 1}
"""


@pytest.fixture(scope="module")
def mlflow_server(tmp_path_factory):
    """``mlflow server`` with a sqlite backend and served artifacts on a free loopback port."""
    where = tmp_path_factory.mktemp("mlflow")
    port = free_port()
    log = (where / "server.log").open("w")
    argv = [str(Path(sys.executable).with_name("mlflow")), "server", "--backend-store-uri",
            f"sqlite:///{where / 'mlflow.db'}", "--artifacts-destination", str(where / "art"),
            "--host", "127.0.0.1", "--port", str(port), "--workers", "1"]
    uri = f"http://127.0.0.1:{port}"
    with server(argv, stdout=log, stderr=subprocess.STDOUT) as proc:
        deadline = time.monotonic() + 120
        while True:
            try:
                urllib.request.urlopen(f"{uri}/health", timeout=2)
                break
            except OSError:
                assert proc.poll() is None, (where / "server.log").read_text()[-2000:]
                assert time.monotonic() < deadline, "mlflow server did not start in 120 s"
                time.sleep(0.3)
        yield uri


def runs_of(client: MlflowClient, space: str) -> tuple[Any, list[Any]]:
    """(the parent run, the child runs) of the one study logged to the space's experiment."""
    exp = client.get_experiment_by_name(space)
    assert exp is not None
    runs = client.search_runs([exp.experiment_id], max_results=1000)
    parents = [r for r in runs if r.data.tags.get("rollingq.role") == "study"]
    assert len(parents) == 1, [r.info.run_name for r in parents]
    children = [r for r in runs if r.data.tags.get("rollingq.role") == "trial"]
    assert all(r.data.tags["mlflow.parentRunId"] == parents[0].info.run_id for r in children)
    assert len(runs) == 1 + len(children)  # nothing else in the experiment
    return parents[0], children


def check_histories(client: MlflowClient, children: list[Any], study: Path) -> None:
    """Each child run holds its trial's ``val_acc`` at every epoch once, as ``curves.csv``."""
    trials = pd.read_csv(study / "trials.csv")
    curves = pd.read_csv(study / "curves.csv")
    by_id = {r.data.tags["rollingq.trial_id"]: r for r in children}
    assert sorted(by_id) == sorted(trials["trial_id"])  # one run per trial, no more
    for tid, run in by_id.items():
        curve = curves[(curves["trial_id"] == tid) & (curves["epoch"] >= 0)].sort_values("epoch")
        history = sorted((m.step, m.value) for m in
                         client.get_metric_history(run.info.run_id, "val_acc"))
        steps = [s for s, _ in history]
        assert len(steps) == len(set(steps)), (tid, steps)  # no step twice
        assert steps == list(curve["epoch"]), (tid, steps)
        assert [v for _, v in history] == pytest.approx(list(curve["val_acc"]))
        epoch_steps = [m.step for m in client.get_metric_history(run.info.run_id, "epoch")]
        assert sorted(epoch_steps) == steps
        row = trials[trials["trial_id"] == tid].iloc[0]
        assert run.info.status == "FINISHED" and run.data.tags["rollingq.status"] == row["status"]
        assert run.data.metrics["test_acc_at_best_val"] == pytest.approx(
            row["test_acc_at_best_val"])
        assert run.data.metrics["out_abs_air"] == pytest.approx(row["out_abs_air"])
        assert run.data.params["train.seed"] == str(row["train.seed"])


def test_mlflow_server_smoke_study(tmp_path, mlflow_server):
    r = run_cli("--space", "smoke", "--storage", str(tmp_path), "--name", "s",
                "--tracker", f"mlflow:{mlflow_server}")
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    assert "warning" not in r.stderr, r.stderr[-3000:]
    assert f"tracker: MLflow at {mlflow_server} holds the study" in r.stdout
    study = tmp_path / "smoke" / "s"
    client = MlflowClient(mlflow_server)
    parent, children = runs_of(client, "smoke")
    assert len(children) == 2 and parent.info.run_name == "s"
    assert parent.info.status == "FINISHED"
    assert parent.data.tags["rollingq.status"] == "2 finished"
    check_histories(client, children, study)
    enabled = sorted(c.data.params["rollingq.enabled"] for c in children)
    assert enabled == ["False", "True"]
    assert all(c.data.params["train.epochs"] == "2" for c in children)  # fixed values too
    art = {a.path for a in client.list_artifacts(parent.info.run_id)}
    assert {"trials.csv", "curves.csv", "meta.json", "space.yaml", "optuna.db",
            "report.html", "report.md", "figures"} <= art
    local = client.download_artifacts(parent.info.run_id, "trials.csv", str(tmp_path / "dl"))
    assert Path(local).read_bytes() == (study / "trials.csv").read_bytes()
    # TensorBoard: Ray's event files in each trial folder (tensorboard --logdir <study>/ray)
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    curves = pd.read_csv(study / "curves.csv")
    for tid in pd.read_csv(study / "trials.csv")["trial_id"]:
        (folder,) = (study / "ray").glob(f"*{tid}*/")
        events = EventAccumulator(str(folder))
        events.Reload()
        scalars = [(e.step, e.value) for e in events.Scalars("ray/tune/val_acc")]
        curve = curves[(curves["trial_id"] == tid) & (curves["epoch"] >= 0)]
        assert [s for s, _ in scalars] == list(curve["epoch"] + 1)  # Ray's training_iteration
        assert [v for _, v in scalars] == pytest.approx(list(curve["val_acc"]), abs=1e-6)
    # the study folder keeps its tracker: a resume logs where the study did
    kept = json.loads((study / "tracking.json").read_text())
    assert kept["tracker"] == {"kind": "mlflow", "uri": mlflow_server}
    assert parent.data.tags["rollingq.study"] == kept["key"]


def test_mlflow_killed_and_resumed_study(tmp_path, mlflow_server):
    """SIGKILL with one trial ended and one mid-run; the resume command (no --tracker: the study
    goes on logging where it did) ends the study: 4 runs, each epoch once."""
    spec = write_spec(tmp_path, "tracked", KILLED)
    storage = tmp_path / "out"
    log = tmp_path / "driver.log"
    study = storage / "tracked" / "k"
    driver = start_cli(["study/run.py", "--space", str(spec), "--storage", str(storage),
                        "--name", "k", "--tracker", f"mlflow:{mlflow_server}"], log)
    killed = None
    client = MlflowClient(mlflow_server)

    def logged() -> dict[str, list[Any]]:
        """Each trial run's ``epoch`` entries so far (the experiment made by the driver)."""
        exp = client.get_experiment_by_name("tracked")
        if exp is None:
            return {}
        return {r.data.tags["rollingq.trial_id"]: client.get_metric_history(r.info.run_id, "epoch")
                for r in client.search_runs([exp.experiment_id])
                if r.data.tags.get("rollingq.role") == "trial"}

    def one_ended_one_mid(state: dict[str, Any]) -> bool:
        state["logged"] = logged()
        done = [t for t, h in state["logged"].items() if len(h) == 5]
        mid = [t for t, h in state["logged"].items() if 3 <= len(h) < 5]
        state["mid"] = mid
        return bool(done) and bool(mid)

    try:
        seen: dict[str, Any] = {}
        wait_until(driver, log, lambda: one_ended_one_mid(seen), timeout=240)
        driver.kill()
        killed_at = time.time() * 1000
        driver.wait(timeout=30)
        killed = driver.pid
        _, before = runs_of(client, "tracked")
        assert 2 <= len(before) <= 3  # the ended trial, the one mid-run (and maybe the next)
        interrupted = seen["mid"]
        r = subprocess.run([sys.executable, "study/run.py", "--space", str(spec), "--resume",
                            str(study)], cwd=ROOT, env=cli_env(), capture_output=True, text=True,
                           timeout=400)
        assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
        assert "warning" not in r.stderr, r.stderr[-3000:]
    finally:
        if driver.poll() is None:
            driver.kill()
        if killed is not None:
            kill_processes(session_processes(killed))
    trials = pd.read_csv(study / "trials.csv")
    assert len(trials) == 4 and (trials["status"] == "finished").all()
    after = logged()
    for tid in interrupted:  # it trained again from epoch 0 (no checkpoint): its first epochs,
        early = [m for m in after[tid] if m.step < 3]  # reported twice, were logged once
        assert sorted(m.step for m in early) == [0, 1, 2]
        assert all(m.timestamp < killed_at for m in early)
    parent, children = runs_of(client, "tracked")
    assert {c.info.run_id for c in before} <= {c.info.run_id for c in children}  # the same runs
    check_histories(client, children, study)
    assert parent.info.status == "FINISHED"


# ----------------------------------------------------------------------------- W&B offline


def wandb_records(path: Path) -> list[Any]:
    """The protobuf records of a W&B run file (``run-<id>.wandb``): its header (``:W&B``, magic,
    version), then LevelDB's log format, 32 KiB blocks of (crc32, length, type) chunks."""
    from wandb.proto import wandb_internal_pb2 as pb

    data = path.read_bytes()
    assert data[:4] == b":W&B"
    records, pos, chunk = [], 7, b""
    while pos + 7 <= len(data):
        left = 32768 - pos % 32768
        if left < 7:  # a block's tail too short for a chunk header is padding
            pos += left
            continue
        length, kind = struct.unpack("<HB", data[pos + 4:pos + 7])
        if length == 0 and kind == 0:
            pos += left
            continue
        chunk += data[pos + 7:pos + 7 + length]
        pos += 7 + length
        if kind in (1, 4):  # FULL, LAST
            rec = pb.Record()
            rec.ParseFromString(chunk)
            records.append(rec)
            chunk = b""
    return records


def offline_run(folder: Path) -> dict[str, Any]:
    """An offline run directory's id, job type, config keys and history (step -> values)."""
    (path,) = folder.glob("*.wandb")
    out: dict[str, Any] = {"history": {}, "config": set()}
    for rec in wandb_records(path):
        kind = rec.WhichOneof("record_type")
        if kind == "run":
            out.update(id=rec.run.run_id, job=rec.run.job_type, group=rec.run.run_group)
            out["config"] |= {item.key for item in rec.run.config.update}
        elif kind == "config":
            out["config"] |= {item.key or "/".join(item.nested_key) for item in rec.config.update}
        elif kind == "history":
            values = {item.key or "/".join(item.nested_key): json.loads(item.value_json)
                      for item in rec.history.item}
            out["history"][rec.history.step.num] = values
    return out


@pytest.fixture(scope="module")
def wandb_study(tmp_path_factory):
    storage = tmp_path_factory.mktemp("wandb")
    r = run_cli("--space", "smoke", "--storage", str(storage), "--name", "w", "--tracker",
                "wandb:rq-test", "--no-report")
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    assert "W&B project rq-test (offline) holds the study" in r.stdout
    return storage / "smoke" / "w"


def test_wandb_offline_one_run_directory_per_trial(wandb_study):
    study = wandb_study
    trials = pd.read_csv(study / "trials.csv")
    curves = pd.read_csv(study / "curves.csv")
    key = json.loads((study / "tracking.json").read_text())["key"][:8]
    dirs = sorted((study / "wandb").glob("offline-run-*"))
    runs = [offline_run(d) for d in dirs]
    trial_runs = {r["id"]: r for r in runs if r["job"] == "trial"}
    assert sorted(trial_runs) == sorted(f"{key}-{t}" for t in trials["trial_id"])
    assert len(dirs) == len(trials) + 1  # a directory per trial, and the study's run
    assert [r["job"] for r in runs].count("study") == 1
    assert {r["group"] for r in runs} == {"smoke/w"}
    for tid in trials["trial_id"]:
        run = trial_runs[f"{key}-{tid}"]
        curve = curves[(curves["trial_id"] == tid) & (curves["epoch"] >= 0)].sort_values("epoch")
        assert sorted(run["history"]) == list(curve["epoch"])
        assert [run["history"][s]["val_acc"] for s in sorted(run["history"])] == pytest.approx(
            list(curve["val_acc"]))
        assert {"rollingq.enabled", "train.seed", "train.epochs"} <= run["config"]
    # exporting the study again: W&B has it whole, nothing is opened again
    r = subprocess.run([sys.executable, "-m", "study.export", "wandb:rq-test", str(study)],
                       cwd=ROOT, env=cli_env(), capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert "0 run(s), 0 epoch(s), 0 value(s) added" in r.stdout
    assert sorted((study / "wandb").glob("offline-run-*")) == dirs


def test_export_mlflow_after_the_fact(wandb_study, tmp_path):
    """A study that never met MLflow (it logged to W&B), exported to a sqlite store; a second
    export adds nothing."""
    uri = f"sqlite:///{tmp_path / 'm.db'}"

    def export() -> subprocess.CompletedProcess:
        r = subprocess.run([sys.executable, "-m", "study.export", f"mlflow:{uri}",
                            str(wandb_study)], cwd=ROOT, env=cli_env(), capture_output=True,
                           text=True, timeout=180)
        assert r.returncode == 0, r.stderr
        return r

    assert "2 run(s), 4 epoch(s)" in export().stdout
    client = MlflowClient(uri)
    parent, children = runs_of(client, "smoke")
    check_histories(client, children, wandb_study)
    assert {"trials.csv", "meta.json"} <= {a.path for a in client.list_artifacts(
        parent.info.run_id)}
    assert "0 run(s), 0 epoch(s), 0 value(s) added" in export().stdout
    _, again = runs_of(client, "smoke")
    assert sorted(r.info.run_id for r in again) == sorted(r.info.run_id for r in children)
    check_histories(client, again, wandb_study)
    # the study still logs to W&B live: the export changed no setting of it
    assert json.loads((wandb_study / "tracking.json").read_text())["tracker"]["kind"] == "wandb"
    r = subprocess.run([sys.executable, "-m", "study.export", "mlflow", str(wandb_study.parent)],
                       cwd=ROOT, env=cli_env(), capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and "no space.yaml" in r.stderr


# ----------------------------------------------------------------------------- bad input


def test_the_old_export_command_says_where_it_moved_and_runs_it(tmp_path):
    r = subprocess.run([sys.executable, "-m", "analysis.export", "mlflow", str(tmp_path)],
                       cwd=ROOT, env=cli_env(), capture_output=True, text=True, timeout=120)
    note, error = r.stderr.splitlines()
    assert "moved to python -m study.export" in note
    assert r.returncode == 2 and "no space.yaml" in error  # study.export's own check ran


def test_tracker_bad_input(tmp_path, monkeypatch, capsys):
    from study import run

    def cli(*args: str) -> str:
        code = run.main(["--space", "smoke", "--storage", str(tmp_path), *args])
        err = capsys.readouterr().err
        assert code == 2 and err.count("\n") == 1, err
        return err

    assert "must be one of mlflow, mlflow:URI, wandb, wandb:PROJECT" in cli("--tracker", "neptune")
    dead = f"http://127.0.0.1:{free_port()}"
    t0 = time.monotonic()
    assert f"{dead}: the tracking server does not answer" in cli("--tracker", f"mlflow:{dead}")
    assert time.monotonic() - t0 < 30
    monkeypatch.setitem(sys.modules, "wandb", None)  # as if W&B were not installed
    assert "pip install -e '.[tracking]'" in cli("--tracker", "wandb")
    monkeypatch.delitem(sys.modules, "wandb")
    assert not (tmp_path / "smoke").exists()  # nothing started, nothing written


def test_resume_with_another_tracker_is_refused(wandb_study, capsys):
    from study import run

    code = run.main(["--space", "smoke", "--resume", str(wandb_study), "--tracker", "mlflow"])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1, err
    assert "logs to W&B project rq-test (offline), not MLflow at sqlite:///" in err
