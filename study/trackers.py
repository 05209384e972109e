"""The study's tracker, MLflow or Weights & Biases: one backend per kind behind ``Tracker``,
used live by the study's Ray callback (``study/tracking.py``, the ``--tracker`` of
``study/run.py``) and after the fact by ``python -m study.export`` (``study/export.py``).

    python study/run.py --space hpo --tracker mlflow                      # results/mlflow.db
    python study/run.py --space hpo --tracker mlflow:http://127.0.0.1:5000
    python study/run.py --space hpo --tracker wandb[:PROJECT]             # offline by default
    python -m study.export mlflow[:URI] results/hpo/<timestamp>           # after the fact

What a study becomes:

- MLflow: an experiment named after the space; one parent run per study (its folder's name),
  with the study's files (``trials.csv``, ``curves.csv``, ``meta.json``, ``space.yaml``,
  ``optuna.db``, the report) as artifacts; one child run per trial (``mlflow.parentRunId``),
  named by its trial id, with the trial's config values as parameters, every epoch's metrics as
  they arrive (step = epoch; epoch -1, the untrained model, stays in ``curves.csv``), the final
  report's diagnostics at the last step, and at the study's end the claims' outcomes
  (``out_*``) of ``trials.csv``. Run status: FINISHED (finished or diverged), KILLED (stopped by
  ASHA, or timed out by ``tune.stall_minutes``), FAILED (errored); the study's own status is
  the tag ``rollingq.status``.
  ``--tracker mlflow`` without a URI writes to the sqlite store ``<results root>/mlflow.db``
  (artifacts in ``<results root>/mlartifacts``): ``mlflow ui --backend-store-uri
  sqlite:///results/mlflow.db`` shows it.
- W&B: a run per trial (``job_type=trial``) and one per study (``job_type=study``, the files as
  an artifact), grouped by the study; offline (``WANDB_MODE`` unset) into ``<study>/wandb/``,
  uploaded later with ``wandb sync <study>/wandb/offline-run-*``.

A resumed study, a retried trial (Ray's ``FailureConfig``) and a trial re-reported from its
ledger continue their own runs: runs are found again by their tags (``rollingq.study``, a key
kept in the study folder's ``tracking.json``, and ``rollingq.trial_id``), and an epoch is logged
only if the run does not have it yet (MLflow is asked which steps its run holds; for W&B, whose
offline runs cannot be read back, ``tracking.json`` keeps each trial's last step). At the
study's end every trial's curve is compared with ``curves.csv`` and what the tracker lacks (a
step lost with a killed driver, the outcomes) is added, which is also all that
``study.export`` does: it logs a study that ran without a tracker, or tops one up.

A tracker that fails mid-study (a server gone) prints one warning and the study goes on: the
results files do not depend on it, and ``study.export`` fills the gaps later.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import math
import os
import time
import uuid
from pathlib import Path
from typing import Any, Protocol

from study.results import RAY_COLUMNS

TRACKING = "tracking.json"  # in the study folder: the tracker, the study's key, W&B's steps
KINDS = ("mlflow", "wandb")
INSTALL = "pip install -e '.[tracking]'"
STUDY_FILES = ("trials.csv", "curves.csv", "meta.json", "space.yaml", "optuna.db",
               "experiments.json", "source.patch", "report.md", "report.html")
# Not the trial's metrics: Ray's bookkeeping in a result and the trainable's restart count; the
# trial's clock (time_total_s) is charted
NOT_METRICS = (RAY_COLUMNS - {"time_total_s"}) | {"restarts"}
PARENT, TRIAL = "study", "trial"  # rollingq.role of a run


class TrackerError(ValueError):
    """A --tracker value that cannot be used (one line: what, and the fix)."""


def parse(value: str, results_root: Path) -> dict[str, Any]:
    """``mlflow``, ``mlflow:URI``, ``wandb`` or ``wandb:PROJECT`` -> the tracker's settings;
    a TrackerError names the valid forms, or the install command when the tracker's package is
    missing."""
    kind, _, where = value.partition(":")
    if kind not in KINDS:
        raise TrackerError(f"--tracker {value!r}: the tracker must be one of mlflow, "
                           f"mlflow:URI, wandb, wandb:PROJECT")
    module = "mlflow" if kind == "mlflow" else "wandb"
    if importlib.util.find_spec(module) is None:
        raise TrackerError(f"--tracker {kind} needs the {module} package, which is not "
                           f"installed; install the tracking extra: {INSTALL}")
    if kind == "mlflow":
        if not where:
            root = Path(results_root).resolve()
            return {"kind": kind, "uri": f"sqlite:///{root / 'mlflow.db'}",
                    "artifacts": (root / "mlartifacts").as_uri()}
        return {"kind": kind, "uri": where}
    return {"kind": kind, "project": where or "rollingq-studio",
            "mode": os.environ.get("WANDB_MODE", "offline")}


def settings(folder: Path, requested: dict[str, Any] | None) -> dict[str, Any] | None:
    """The tracker of a study: the one it already logs to (``tracking.json``), or the requested
    one; a resumed study asked for another tracker than its own is a TrackerError."""
    path = Path(folder) / TRACKING
    stored = json.loads(path.read_text()) if path.is_file() else None
    if stored is None or stored.get("tracker") is None:
        return requested
    if requested is not None and requested != stored["tracker"]:
        raise TrackerError(f"--tracker: the study {folder} logs to {describe(stored['tracker'])}, "
                           f"not {describe(requested)}; resume it without --tracker (it goes on "
                           f"logging where it did), and log it to the other tracker too once it "
                           f"has ended: python -m study.export {requested['kind']}[:...] "
                           f"{folder}")
    return stored["tracker"]


def describe(tracker: dict[str, Any]) -> str:
    if tracker["kind"] == "mlflow":
        return f"MLflow at {tracker['uri']}"
    return f"W&B project {tracker['project']} ({tracker['mode']})"


def state(folder: Path, tracker: dict[str, Any] | None = None) -> dict[str, Any]:
    """The study folder's ``tracking.json``, made when missing: the study's key (the tag its
    runs are found by, in any tracker) and the tracker it logs to live (``tracker``)."""
    path = Path(folder) / TRACKING
    data = json.loads(path.read_text()) if path.is_file() else {}
    data.setdefault("key", uuid.uuid4().hex)
    if tracker is not None:
        data.setdefault("tracker", tracker)
    write_state(folder, data)
    return data


def write_state(folder: Path, data: dict[str, Any]) -> None:
    path = Path(folder) / TRACKING
    tmp = path.with_name(f".{TRACKING}.tmp")
    tmp.write_text(json.dumps(data, indent=2) + "\n")
    os.replace(tmp, path)


def metric_value(value: Any) -> float | None:
    """A metric value, or None for what is not one (text, NaN, missing)."""
    if isinstance(value, bool):
        return float(value)
    if hasattr(value, "item") and not isinstance(value, str):
        value = value.item()
    if isinstance(value, int | float) and not math.isnan(value) and not math.isinf(value):
        return float(value)
    return None


def metrics_and_text(result: dict[str, Any]) -> tuple[dict[str, float], dict[str, str]]:
    """A result's (numeric metrics, text values), Ray's bookkeeping left out."""
    metrics, text = {}, {}
    for k, v in result.items():
        if k in NOT_METRICS or v is None:
            continue
        x = metric_value(v)
        if x is not None:
            metrics[k] = x
        elif isinstance(v, str) and v:
            text[k] = v
    return metrics, text


def param_text(value: Any) -> str:
    return json.dumps(value) if isinstance(value, list | dict | tuple) else str(value)


# ----------------------------------------------------------------------------- backends


class Tracker(Protocol):
    """What the study asks of a tracker backend; a trial's run is found again by its tags, so
    every method may be called for a trial that a previous driver started."""

    def trial(self, trial_id: str, params: dict[str, Any]) -> bool:
        """Finds the trial's run or makes it with its parameters; True when made."""

    def has_trial(self, trial_id: str) -> bool:
        """Whether ``trial`` was called for the trial in this process."""

    def logged(self, trial_id: str) -> set[int]:
        """The epochs the trial's run holds."""

    def running(self, trial_id: str) -> None:
        """The trial runs (again)."""

    def log(self, trial_id: str, step: int, metrics: dict[str, float],
            text: dict[str, str] | None = None) -> None:
        """One epoch's metrics (and text values) as a step of the trial's run."""

    def missing(self, trial_id: str, keys: list[str]) -> list[str]:
        """The keys the trial's run has no value of."""

    def summary(self, trial_id: str, values: dict[str, float]) -> None:
        """Values known after the trial (its final metrics, the outcomes)."""

    def end_trial(self, trial_id: str, status: str) -> None:
        """The trial ended with ``status`` (finished, diverged, stopped, errored, incomplete)."""

    def end_study(self, folder: Path, status: str, complete: bool) -> None:
        """The study's files and status on the study's own run."""

    def close(self) -> None:
        """The driver stops: what the backend holds open is closed."""


class MLflow:
    """One study's runs in an MLflow tracking store, through ``MlflowClient``."""

    def __init__(self, tracker: dict[str, Any], key: str, space: str, name: str,
                 question: str = ""):
        from mlflow.tracking import MlflowClient

        os.environ.setdefault("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT", "true")  # 2 lines a run
        self.client = MlflowClient(tracker["uri"])
        self.key, self.name = key, name
        exp = self.client.get_experiment_by_name(space)
        where = tracker.get("artifacts") and f"{tracker['artifacts']}/{space}"
        self.experiment = (exp.experiment_id if exp is not None else
                           self.client.create_experiment(space, artifact_location=where))
        self.parent = self._find(PARENT) or self.client.create_run(
            self.experiment, run_name=name,
            tags={"rollingq.study": key, "rollingq.role": PARENT,
                  "mlflow.note.content": question}).info.run_id
        self.runs: dict[str, str] = {}
        self.steps: dict[str, set[int]] = {}

    def _find(self, role: str, trial_id: str | None = None) -> str | None:
        query = f"tags.`rollingq.study` = '{self.key}' and tags.`rollingq.role` = '{role}'"
        if trial_id is not None:
            query += f" and tags.`rollingq.trial_id` = '{trial_id}'"
        runs = self.client.search_runs([self.experiment], filter_string=query, max_results=2)
        return runs[0].info.run_id if runs else None

    def trial(self, trial_id: str, params: dict[str, Any]) -> bool:
        """Finds the trial's run, or makes it with the trial's parameters (True)."""
        from mlflow.entities import Param

        if trial_id in self.runs:
            return False
        run = self._find(TRIAL, trial_id)
        created = run is None
        if created:
            run = self.client.create_run(self.experiment, run_name=trial_id, tags={
                "mlflow.parentRunId": self.parent, "rollingq.study": self.key,
                "rollingq.role": TRIAL, "rollingq.trial_id": trial_id}).info.run_id
            items = [Param(k, param_text(v)[:6000]) for k, v in sorted(params.items())]
            for i in range(0, len(items), 100):  # MLflow takes 100 parameters a call
                self.client.log_batch(run, params=items[i:i + 100])
            self.steps[trial_id] = set()
        else:
            self.steps[trial_id] = {m.step for m in self.client.get_metric_history(run, "epoch")}
        self.runs[trial_id] = run
        return created

    def logged(self, trial_id: str) -> set[int]:
        return self.steps[trial_id]

    def has_trial(self, trial_id: str) -> bool:
        return trial_id in self.runs

    def log(self, trial_id: str, step: int, metrics: dict[str, float],
            text: dict[str, str] | None = None) -> None:
        """One step's metrics with the ``epoch`` marker last (the steps a run holds are those
        of its ``epoch`` metric: a step cut short is logged again)."""
        self._log(trial_id, step, metrics, text, marker=True)

    def summary(self, trial_id: str, values: dict[str, float]) -> None:
        """The values at the run's last epoch (0 when it has none), without the marker."""
        self._log(trial_id, max(self.steps[trial_id], default=0), values, None, marker=False)

    def _log(self, trial_id: str, step: int, metrics: dict[str, float],
             text: dict[str, str] | None, marker: bool) -> None:
        from mlflow.entities import Metric, RunTag

        ms = int(time.time() * 1000)
        items = [Metric(k, v, ms, step) for k, v in sorted(metrics.items()) if k != "epoch"]
        if marker:
            items.append(Metric("epoch", float(step), ms, step))
        tags = [RunTag(f"rollingq.{k}", v[:5000]) for k, v in sorted((text or {}).items())]
        for i in range(0, len(items), 1000):  # 1000 metrics a call
            self.client.log_batch(self.runs[trial_id], metrics=items[i:i + 1000],
                                  tags=tags if i + 1000 >= len(items) else [])
        if marker:
            self.steps[trial_id].add(step)

    def running(self, trial_id: str) -> None:
        self.client.update_run(self.runs[trial_id], status="RUNNING")

    def missing(self, trial_id: str, keys: list[str]) -> list[str]:
        have = self.client.get_run(self.runs[trial_id]).data.metrics
        return [k for k in keys if k not in have]

    def end_trial(self, trial_id: str, status: str) -> None:
        run = self.runs[trial_id]
        self.client.set_tag(run, "rollingq.status", status)
        state = {"stopped": "KILLED", "timed_out": "KILLED", "errored": "FAILED",
                 "incomplete": "RUNNING"}.get(status, "FINISHED")
        if state == "RUNNING":
            self.client.update_run(run, status="RUNNING")
        else:
            self.client.set_terminated(run, state)

    def end_study(self, folder: Path, status: str, complete: bool) -> None:
        for name in STUDY_FILES:
            if (folder / name).is_file():
                self.client.log_artifact(self.parent, str(folder / name))
        if (folder / "figures").is_dir():
            self.client.log_artifacts(self.parent, str(folder / "figures"), "figures")
        self.client.set_tag(self.parent, "rollingq.status", status)
        self.client.set_tag(self.parent, "rollingq.folder", str(folder))
        if complete:
            self.client.set_terminated(self.parent, "FINISHED")

    def close(self) -> None:
        """Nothing is held open: ``MlflowClient`` keeps no run, and a trial run left RUNNING by
        a stopped driver is continued by its tags when the study resumes."""


class WandB:
    """One study's runs in W&B (offline by default): a run per trial, grouped by the study.

    A run is opened only when something is logged to it, so topping up a study that W&B already
    has whole opens nothing (an offline run opened again would be a second directory)."""

    def __init__(self, tracker: dict[str, Any], key: str, space: str, name: str,
                 folder: Path, data: dict[str, Any]):
        os.environ.setdefault("WANDB_SILENT", "true")
        self.tracker, self.key, self.space, self.name = tracker, key, space, name
        self.folder, self.data = Path(folder), data
        self.runs: dict[str, Any] = {}
        self.params: dict[str, dict[str, Any]] = {}

    def _init(self, run_id: str, name: str, job: str, config: dict[str, Any] | None = None):
        import wandb

        return wandb.init(project=self.tracker["project"], mode=self.tracker["mode"],
                          dir=str(self.folder), id=run_id, name=name, job_type=job,
                          group=f"{self.space}/{self.name}", config=config, resume="allow",
                          reinit="create_new", tags=[self.space],
                          settings=wandb.Settings(console="off", x_disable_stats=True))

    def _record(self, trial_id: str) -> dict[str, Any]:
        return self.data.setdefault("wandb", {}).setdefault(
            trial_id, {"step": -1, "summary": [], "status": None})

    def _run(self, trial_id: str) -> Any:
        if trial_id not in self.runs:
            params = self.params.get(trial_id, {})
            self.runs[trial_id] = self._init(f"{self.key[:8]}-{trial_id}", trial_id, TRIAL,
                                             {k: params[k] for k in sorted(params)})
        return self.runs[trial_id]

    def trial(self, trial_id: str, params: dict[str, Any]) -> bool:
        created = trial_id not in self.data.get("wandb", {})
        self.params.setdefault(trial_id, params)
        self._record(trial_id)
        return created

    def has_trial(self, trial_id: str) -> bool:
        return trial_id in self.params

    def logged(self, trial_id: str) -> set[int]:
        return set(range(self._record(trial_id)["step"] + 1))

    def running(self, trial_id: str) -> None:
        self._record(trial_id)["status"] = None

    def log(self, trial_id: str, step: int, metrics: dict[str, float],
            text: dict[str, str] | None = None) -> None:
        run = self._run(trial_id)
        run.log({**metrics, "epoch": step}, step=step)
        for k, v in (text or {}).items():
            run.summary[k] = v
        rec = self._record(trial_id)
        rec["step"] = max(step, rec["step"])
        rec["summary"] += [k for k in metrics if k not in rec["summary"]]  # the latest values
        write_state(self.folder, self.data)

    def missing(self, trial_id: str, keys: list[str]) -> list[str]:
        """The values a trial's run lacks; none for a run that has ended (opening an offline run
        again makes a second directory: values known only after the trial, the outcomes, are
        in the study run's ``trials`` table)."""
        rec = self._record(trial_id)
        if rec["status"] is not None and trial_id not in self.runs:
            return []
        return [k for k in keys if k not in set(rec["summary"])]

    def summary(self, trial_id: str, values: dict[str, float]) -> None:
        run = self._run(trial_id)
        for k, v in values.items():
            run.summary[k] = v
        rec = self._record(trial_id)
        rec["summary"] += [k for k in values if k not in rec["summary"]]
        write_state(self.folder, self.data)

    def end_trial(self, trial_id: str, status: str) -> None:
        rec = self._record(trial_id)
        if rec["status"] == status and trial_id not in self.runs:
            return
        run = self._run(trial_id)
        run.summary["status"] = status
        run.finish(exit_code=1 if status in ("errored", "timed_out") else 0)
        del self.runs[trial_id]
        rec["status"] = status
        write_state(self.folder, self.data)

    def end_study(self, folder: Path, status: str, complete: bool) -> None:
        """The study run: its files as an artifact and ``trials.csv`` as the table ``trials``
        (logged again only when the study changed since)."""
        import pandas as pd
        import wandb

        digest = hashlib.sha256(b"".join((folder / n).read_bytes() for n in STUDY_FILES[:2]
                                         if (folder / n).is_file())).hexdigest()
        if self.data.get("wandb_study") == digest:
            return
        run = self._init(f"{self.key[:8]}-study", self.name, PARENT)
        run.log({"trials": wandb.Table(dataframe=pd.read_csv(folder / "trials.csv"))})
        art = wandb.Artifact(f"{self.space}-{self.name}".replace("/", "-"), type="study")
        for name in STUDY_FILES:
            if (folder / name).is_file():
                art.add_file(str(folder / name))
        if (folder / "figures").is_dir():
            art.add_dir(str(folder / "figures"), name="figures")
        run.log_artifact(art)
        run.summary["status"] = status
        run.finish()
        self.data["wandb_study"] = digest
        write_state(self.folder, self.data)

    def close(self) -> None:
        for trial_id in list(self.runs):
            self.runs.pop(trial_id).finish(exit_code=1)  # the study stopped mid-trial


def open_backend(folder: Path, tracker: dict[str, Any], space: str,
                 live: bool = False) -> Tracker:
    """The study's backend; ``live``: the study is running (its tracker is recorded in
    ``tracking.json``)."""
    import yaml

    data = state(folder, tracker if live else None)
    name = Path(folder).name
    if tracker["kind"] == "mlflow":
        spec = Path(folder) / "space.yaml"
        tree = yaml.safe_load(spec.read_text()) if spec.is_file() else None
        return MLflow(tracker, data["key"], space, name, (tree or {}).get("question") or "")
    return WandB(tracker, data["key"], space, name, folder, data)


def log_metrics(backend: Tracker, trial_id: str, step: int, metrics: dict[str, float],
                text: dict[str, str] | None = None) -> None:
    if step not in backend.logged(trial_id):
        backend.log(trial_id, step, metrics, text)


def check(tracker: dict[str, Any]) -> None:
    """Before Ray starts: the tracker answers (an MLflow server that is down, a sqlite store in
    a folder that cannot be written) -- a TrackerError of one line otherwise."""
    if tracker["kind"] != "mlflow":
        return
    if tracker["uri"].startswith("sqlite:///"):
        parent = Path(tracker["uri"][len("sqlite:///"):]).parent
        try:
            parent.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise TrackerError(f"--tracker mlflow: cannot make the folder of its store {parent} "
                               f"({e.strerror}); pass mlflow:URI with a writable place") from None
    retries = os.environ.get("MLFLOW_HTTP_REQUEST_MAX_RETRIES")
    os.environ["MLFLOW_HTTP_REQUEST_MAX_RETRIES"] = "0"  # a server that is down: say so now
    try:
        from mlflow.tracking import MlflowClient

        MlflowClient(tracker["uri"]).search_experiments(max_results=1)
    except Exception as e:  # noqa: BLE001 - any failure to reach the store is the user's to fix
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise TrackerError(f"--tracker mlflow:{tracker['uri']}: the tracking server does not "
                           f"answer ({first[:200]}); start it (mlflow server --host 127.0.0.1 "
                           f"--port 5000) or pass its URI") from None
    finally:
        if retries is None:
            os.environ.pop("MLFLOW_HTTP_REQUEST_MAX_RETRIES", None)
        else:
            os.environ["MLFLOW_HTTP_REQUEST_MAX_RETRIES"] = retries
