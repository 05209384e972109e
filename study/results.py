"""Ray's experiment folder -> the study's result files.

    trials.csv   one row a trial: trial id, status (finished | diverged | stopped | timed_out |
                 errored | incomplete), error, the searched parameters and the seed under
                 their dotted names, the headline and final metrics, the diagnostics, retries, time
    curves.csv   one row a trial x epoch (de-duplicated after retries: the last report wins;
                 epoch -1 is the untrained model's evaluation)
    predictions/ <trial_id>.npz: an ended trial's clean test predictions per sample (label,
                 pred, p_true, in test split order; the selected model's)
    meta.json    provenance: git commit, versions, command line, cluster resources, hours

Everything is read back from the experiment folder on disk (``tune.ExperimentAnalysis``), so
the files can be rebuilt for any study, finished, interrupted or resumed.
"""

from __future__ import annotations

import json
import platform
import sys
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow.fs
from ray import tune
from ray.tune.experiment import Trial

from analysis import outcomes
from study import provenance, stall
from study.space import Spec

STATUS_ORDER = ("finished", "diverged", "stopped", "timed_out", "errored", "incomplete")
DIAGNOSTIC_PREFIXES = ("noise_", "attn_noise", "params_", "missing_", "diagnostics_", "device")
HEADLINE = ("test_acc_at_best_val", "test_f1_at_best_val", "test_binary_f1_at_best_val",
            "val_f1_at_best_val", "best_val_acc", "best_val_epoch", "best_test_acc")
PREDICTIONS_DIR = "predictions"  # <trial_id>.npz: each trial's clean test predictions
RECORDED = (outcomes.DECLARED, outcomes.ON, outcomes.BETA)  # the final report's config facts
RAY_COLUMNS = {"timestamp", "checkpoint_dir_name", "should_checkpoint", "done", "time_this_iter_s",
               "time_since_restore", "iterations_since_restore", "pid", "hostname", "node_ip",
               "date", "config", "experiment_tag", "time_total_s", "training_iteration", "final",
               "trial_id", "logdir", "replayed", "checkpoint_note", stall.AFTER}


def _status(trial: Trial, last: dict[str, Any], early_stopping: bool,
            ledger: dict[str, Any] | None) -> str:
    if ledger and ledger.get("status") == stall.TIMED_OUT:  # Ray may call it an error or not
        return stall.TIMED_OUT
    if trial.status == Trial.ERROR:
        return "errored"
    if last.get("final") and last.get("status") in ("finished", "diverged"):
        return last["status"]
    if trial.status == Trial.TERMINATED and early_stopping and last:
        return "stopped"  # ended by the ASHA scheduler before the last epoch
    return "incomplete"


def _error(trial: Trial, status: str, ledger: dict[str, Any] | None) -> str:
    if status == stall.TIMED_OUT:
        return f"timed out: no epoch reported for {ledger.get(stall.AFTER, 0):.0f} s"
    if trial.status != Trial.ERROR:
        return ""
    try:
        text = trial.get_error()
    except Exception:  # noqa: BLE001 - an unreadable error file must not lose the row
        return "errored (error file unreadable)"
    lines = [ln.strip() for ln in str(text).strip().splitlines() if ln.strip()]
    return lines[-1] if lines else "errored"


def trial_params(spec: Spec, config: dict[str, Any]) -> dict[str, Any]:
    """The searched parameters and the seed of a trial, by dotted name."""
    point = config.get("_point") or {}  # a conditional grid's point; absent: NA
    row = {p.key: point.get(p.key, config.get(p.key)) for p in spec.search}
    if "__trial_index__" in config and "_seeds" in config:
        row["train.seed"] = config["_seeds"][config["__trial_index__"]]
    else:
        row["train.seed"] = config.get("train.seed", spec.fixed.get("train.seed", 0))
    return row


def _arm(config: dict[str, Any]) -> dict[str, Any]:
    """``study.trainable.arm`` of a trial's config; nothing when the config does not build (the
    analysis then reads the arm from the config values)."""
    from rollingq.config import ConfigError, build_config
    from study.trainable import arm, trial_config

    try:
        return arm(build_config(overrides=trial_config(config)))
    except (ConfigError, TypeError):
        return {}


def collect(exp_paths: list[str],
            spec: Spec) -> tuple[pd.DataFrame, pd.DataFrame, dict[str, bytes]]:
    """Reads the study's Ray experiment folders (one, and one more per growth by seeds) into
    (trials, curves) tables and each ended trial's ``predictions.npz`` (by trial id; the column
    ``predictions`` names its file in the results folder)."""
    from rollingq.evaluate import PREDICTIONS
    from study.trainable import LEDGER, read_json

    early = spec.tune["scheduler"] == "asha"
    rows, curves, predictions = [], [], {}
    found, frames = [], {}
    for exp_path in exp_paths:
        analysis = tune.ExperimentAnalysis(exp_path)
        clash = {t.trial_id for t in analysis.trials} & {t.trial_id for t in found}
        if clash:  # Ray's trial ids carry a random prefix per experiment
            raise RuntimeError(f"trial id {sorted(clash)[0]} is in two of the study's Ray "
                               f"experiments ({', '.join(exp_paths)})")
        found += sorted(analysis.trials, key=lambda t: t.trial_id)
        frames.update(analysis.trial_dataframes)
    for trial in found:
        history = with_saved_epochs(frames.get(trial.trial_id, pd.DataFrame()), trial)
        if "epoch" in history:
            history = history.dropna(subset=["epoch"]).drop_duplicates("epoch", keep="last")
            history = history.sort_values("epoch")
        last = history.iloc[-1].to_dict() if len(history) else {}
        last = {k: v for k, v in last.items() if not (isinstance(v, float) and pd.isna(v))}
        params = trial_params(spec, trial.config)
        ledger = read_json(trial.storage.storage_filesystem, trial.path, LEDGER)
        status = _status(trial, last, early, ledger)
        row = {"trial_id": trial.trial_id, "status": status,
               "error": _error(trial, status, ledger), **params}
        for key in HEADLINE:
            if key in last or key != "test_binary_f1_at_best_val":
                row[key] = last.get(key)
        row["epochs"] = int(last["epoch"]) + 1 if "epoch" in last else 0
        for key in ("val_acc", "val_f1", "test_acc", "test_f1", "train_loss", "air", "rotations"):
            row[f"final_{key}"] = last.get(key)
        row.update({k: v for k, v in last.items() if k.startswith("val_share_")})
        row.update({k: v for k, v in last.items() if k.startswith(DIAGNOSTIC_PREFIXES)})
        row.update({k: last[k] for k in RECORDED if k in last})
        if outcomes.ON not in row:  # the trial ended before its final report: its config says
            row.update(_arm(trial.config))
        row["host"] = last.get("hostname")
        row["deterministic"] = last.get("deterministic")
        if last.get("checkpoint_note"):  # a broken checkpoint and what the trial did instead
            row["checkpoint_note"] = last["checkpoint_note"]
        # restarts: restores from a checkpoint (after a failure or a resumed study); the
        # failure that ended an errored trial was not retried, nor the timed-out trial's kill
        retried_failures = trial.num_failures - (status in ("errored", stall.TIMED_OUT))
        row["retries"] = max(int(last.get("restarts", 0) or 0), retried_failures)
        row["time_total_s"] = (float(history["time_total_s"].max())
                               if "time_total_s" in history else 0.0)
        row["gpu"] = spec.tune["resources"]["gpu"]
        row["trial_dir"] = trial.path
        saved = read_bytes(trial.storage.storage_filesystem, trial.path, PREDICTIONS)
        if saved is not None:
            predictions[trial.trial_id] = saved
        row["predictions"] = f"{PREDICTIONS_DIR}/{trial.trial_id}.npz" if saved else ""
        rows.append(row)
        if len(history):
            keep = [c for c in history.columns if c not in RAY_COLUMNS
                    and not c.startswith(DIAGNOSTIC_PREFIXES) and not c.startswith("config/")
                    and c not in RECORDED]
            curve = history[keep].copy()
            curve.insert(0, "trial_id", trial.trial_id)
            for i, (k, v) in enumerate(params.items()):
                curve.insert(1 + i, k, v)
            curves.append(curve)
    trials = pd.DataFrame(rows)
    curve_df = pd.concat(curves, ignore_index=True) if curves else pd.DataFrame()
    return with_outcomes(trials, curve_df, spec), curve_df, predictions


def read_bytes(fs: pyarrow.fs.FileSystem, folder: str, name: str) -> bytes | None:
    """A file of a trial's folder in the study storage, or None when it is not there."""
    path = f"{folder}/{name}"
    if fs.get_file_info(path).type == pyarrow.fs.FileType.NotFound:
        return None
    with fs.open_input_stream(path) as f:
        return f.read()


def with_saved_epochs(history: pd.DataFrame, trial: Trial) -> pd.DataFrame:
    """Ray's results of a trial, with the epochs its ``result.json`` misses taken from the
    trial's own ``history.json`` (``study.trainable``): the file Ray copies to the storage with
    its snapshot can lack an epoch the trial went past when the driver was killed mid-copy."""
    from study.trainable import HISTORY, read_json

    saved = read_json(trial.storage.storage_filesystem, trial.path, HISTORY)
    if not saved:
        return history
    have = set(history["epoch"].dropna().astype(int)) if "epoch" in history else set()
    missing = [h for h in saved if h.get("epoch") not in have]
    return pd.concat([history, pd.DataFrame(missing)], ignore_index=True) if missing else history


def with_outcomes(trials: pd.DataFrame, curves: pd.DataFrame, spec: Spec) -> pd.DataFrame:
    """The trials with the outcome columns of ``analysis.outcomes`` (the claims' quantities)."""
    if not len(trials):
        return trials
    t = trials.copy()
    fixed = spec.fixed.get("data.name", "synthetic")
    if "data.name" in t:
        t["dataset"] = t["data.name"].fillna(fixed)
    elif "variant" in t:  # a variant may name its data set
        t["dataset"] = [spec.variants.get(v, {}).get("data.name", fixed) for v in t["variant"]]
    else:
        t["dataset"] = fixed
    for key in (outcomes.ON, outcomes.BETA):  # an errored trial reported neither
        if key not in t:
            t[key] = pd.NA
    t = outcomes.add_outcomes(t, curves, scale=100.0)
    return t.drop(columns="dataset")


def counts(trials: pd.DataFrame) -> dict[str, int]:
    """Trials by status, plus how many were retried."""
    out = {s: int((trials.get("status", pd.Series(dtype=str)) == s).sum()) for s in STATUS_ORDER}
    out["retried"] = int((trials.get("retries", pd.Series(dtype=int)) > 0).sum())
    return out


def _versions() -> dict[str, str]:
    import numpy
    import optuna
    import ray
    import torch

    return {"python": platform.python_version(), "torch": torch.__version__, "ray": ray.__version__,
            "optuna": optuna.__version__, "pandas": pd.__version__, "numpy": numpy.__version__}


def devices(trials: pd.DataFrame) -> list[dict[str, Any]]:
    """The distinct (host, device) the trials trained on, each with its number of trials."""
    if "device" not in trials or not len(trials):
        return []
    table = trials.reindex(columns=["host", *[c for c in trials.columns if c == "device"
                                              or c.startswith("device_")]]).astype(object)
    out: dict[str, dict[str, Any]] = {}
    for row in table.where(table.notna(), None).to_dict("records"):
        if row.get("device") is None:  # an errored trial reported no device
            continue
        entry = {k.removeprefix("device_") if k != "device" else k: v for k, v in row.items()
                 if v is not None}
        key = json.dumps(entry, sort_keys=True, default=str)
        out.setdefault(key, {**entry, "trials": 0})["trials"] += 1
    return list(out.values())


def deterministic(trials: pd.DataFrame) -> str:
    """Whether the trials ran PyTorch's deterministic algorithms: yes, no, mixed or unknown."""
    seen = set(trials.get("deterministic", pd.Series(dtype=object)).dropna().astype(bool))
    return {frozenset({True}): "yes", frozenset({False}): "no"}.get(
        frozenset(seen), "mixed" if seen else "unknown")


def meta(spec: Spec, trials: pd.DataFrame, *, argv: list[str], resources: dict[str, float],
         nodes: int, wall_seconds: float, started: str, finished: str,
         resumed: bool = False, folder: Path | None = None,
         data: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """The provenance record of a study (``meta.json``; ``study.provenance``). With a
    ``folder``, a dirty tree's change is written there as ``source.patch``; ``data`` are the
    fingerprints of the study's data settings (``rollingq.data.preflight``)."""
    trial_hours = float(trials["time_total_s"].sum()) / 3600 if len(trials) else 0.0
    gpu_hours = float((trials["time_total_s"] * trials["gpu"]).sum()) / 3600 if len(trials) else 0.0
    return {
        "space": spec.name,
        "question": spec.question,
        "source": spec.source,
        "command": " ".join([Path(sys.executable).name, *argv]),
        "git": provenance.git_record(folder),
        "versions": _versions(),
        "distributions": provenance.distributions(),
        "devices": devices(trials),
        "driver_device": provenance.device_info(),
        "deterministic": deterministic(trials),
        "data": data or [],
        "platform": platform.platform(),
        "cluster": {"nodes": nodes, "resources": resources},
        "started": started,
        "resumed": resumed,
        "finished": finished,
        "wall_hours": wall_seconds / 3600,
        "trial_hours": trial_hours,
        "gpu_hours": gpu_hours,
        "expected_trials": spec.expected_trials(),
        "trials": counts(trials),
    }


def write(study_dir: Path, trials: pd.DataFrame, curves: pd.DataFrame,
          info: dict[str, Any], predictions: dict[str, bytes] | None = None) -> None:
    """Writes trials.csv, curves.csv, meta.json and predictions/<trial_id>.npz into the study
    folder."""
    if predictions:
        (study_dir / PREDICTIONS_DIR).mkdir(exist_ok=True)
        for trial_id, data in predictions.items():
            (study_dir / PREDICTIONS_DIR / f"{trial_id}.npz").write_bytes(data)
    trials.to_csv(study_dir / "trials.csv", index=False)
    curves.to_csv(study_dir / "curves.csv", index=False)
    (study_dir / "meta.json").write_text(json.dumps(info, indent=2, default=str) + "\n")
