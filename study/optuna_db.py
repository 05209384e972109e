"""Every study's trials as an Optuna study in ``optuna.db`` (sqlite), for optuna-dashboard:

    optuna-dashboard sqlite:///results/<space>/<timestamp>/optuna.db

Written from the study's results (grid studies included, which have no Optuna storage of their
own), each time they are written, as one Optuna trial a study trial:

- state: finished -> COMPLETE; stopped by ASHA -> PRUNED (Ray's Optuna journal records those
  as COMPLETE with the value at the rung where they stopped, which the dashboard would rank
  beside trials that ran every epoch); errored and diverged -> FAIL (a diverged trial has no
  value: the loss turned NaN; the worst value the searcher was given is not a measurement);
  incomplete (an interrupted study) -> RUNNING;
- the study metric (``tune.metric``) at each epoch as the intermediate values (step = epoch;
  epoch -1, the untrained model, left out), and at the last epoch as the value; a Pareto
  study (a list of metrics) is a multi-objective Optuna study: each metric at the last epoch
  as its values, its directions, and no intermediate values (Optuna keeps none for several
  objectives);
- the searched parameters with their distributions (a grid's values as a categorical
  distribution), seeds and variants as user attributes with the trial id, status, error,
  retries, the headline metrics and the claims' outcomes (``out_*``).

The file is built beside the study folder's and moved into place, so a dashboard open on it
reads either the old study or the new one.
"""

from __future__ import annotations

import json
import math
import os
import warnings
from pathlib import Path
from typing import Any

import pandas as pd

from study.space import VARIANT, Param, Spec

DB = "optuna.db"
STATES = {"finished": "COMPLETE", "stopped": "PRUNED", "errored": "FAIL", "diverged": "FAIL",
          "timed_out": "FAIL", "incomplete": "RUNNING"}
ATTRS = ("trial_id", "status", "error", "retries", "epochs", "best_val_acc", "best_val_epoch",
         "test_acc_at_best_val", "test_f1_at_best_val", "time_total_s")


def plain(value: Any) -> Any:
    """A value as JSON holds it: numpy scalars as Python numbers, lists and dicts as JSON
    text (Optuna's categorical choices must be scalars), NaN/NA as None."""
    if value is None:
        return None
    if isinstance(value, list | tuple | dict):
        return json.dumps(value)
    if hasattr(value, "item") and not isinstance(value, str):
        value = value.item()
    if isinstance(value, float) and math.isnan(value):
        return None
    try:
        if pd.isna(value):
            return None
    except (TypeError, ValueError):
        pass
    return value


def distribution(p: Param, grid: bool) -> Any:
    """The Optuna distribution of a searched parameter (a grid's: its values, categorical)."""
    from optuna.distributions import (
        CategoricalDistribution,
        FloatDistribution,
        IntDistribution,
    )

    if grid or p.type == "choice":
        return CategoricalDistribution([plain(v) for v in p.grid_values()])
    if p.type == "int":
        return IntDistribution(int(p.low), int(p.high), step=int(p.step or 1), log=p.log)
    return FloatDistribution(p.low, p.high, step=p.step, log=p.log)


def _param(p: Param, dist: Any, value: Any) -> Any:
    """The trial's value of a parameter as its distribution holds it (None: not active)."""
    value = plain(value)
    if value is None:
        return None
    if hasattr(dist, "choices"):
        for choice in dist.choices:  # a CSV round trip can turn 1 into 1.0
            if choice == value or str(choice) == str(value):
                return choice
        raise ValueError(f"{p.key}={value!r} is not one of the space's values "
                         f"{list(dist.choices)}")
    return int(value) if p.type == "int" else float(value)


def build_trials(spec: Spec, trials: pd.DataFrame, curves: pd.DataFrame) -> list[Any]:
    """The study's trials as Optuna ``FrozenTrial``s, in ``trials.csv`` order."""
    from optuna.trial import TrialState, create_trial

    metrics = [m for m, _ in spec.objectives]
    pareto = len(metrics) > 1
    dists = {p.key: distribution(p, spec.grid) for p in spec.search}
    by_trial = ({tid: g.sort_values("epoch") for tid, g in curves.groupby("trial_id")}
                if len(curves) and "trial_id" in curves else {})
    out = []
    for row in trials.to_dict("records"):
        status = str(row.get("status"))
        curve = by_trial.get(row["trial_id"], pd.DataFrame())
        series: dict[str, dict[int, float]] = {m: {} for m in metrics}
        for m in metrics:
            if m in curve:
                for epoch, v in zip(curve["epoch"], curve[m], strict=True):
                    if epoch >= 0 and plain(v) is not None:
                        series[m][int(epoch)] = float(v)
        params = {}
        for p in spec.search:
            value = _param(p, dists[p.key], row.get(p.key))
            if value is not None:
                params[p.key] = value
        attrs = {k: plain(row.get(k)) for k in ATTRS if k in row}
        attrs["seed"] = plain(row.get("train.seed"))
        if VARIANT in row and VARIANT not in params:
            attrs["variant"] = plain(row[VARIANT])
        attrs.update({k: plain(v) for k, v in row.items() if str(k).startswith("out_")})
        attrs = {k: v for k, v in attrs.items() if v is not None and v != ""}
        state = TrialState[STATES.get(status, "FAIL")]
        values = None
        if state == TrialState.COMPLETE:  # each objective at the last epoch (what Optuna saw)
            values = [s[max(s)] if s else plain(row.get(m)) for m, s in series.items()]
            lacking = [m for m, v in zip(metrics, values, strict=True) if v is None]
            if lacking:  # finished without the metric: nothing to rank it by
                state, values = TrialState.FAIL, None
                attrs["fail_reason"] = f"no {', '.join(lacking)} recorded"
        # a multi-objective Optuna study has no intermediate values (no pruning either)
        steps = {} if pareto else series[metrics[0]]
        out.append(create_trial(state=state, values=values, params=params,
                                distributions={k: dists[k] for k in params},
                                intermediate_values=steps, user_attrs=attrs))
    return out


def write(folder: Path, spec: Spec, trials: pd.DataFrame, curves: pd.DataFrame) -> Path:
    """Writes ``folder/optuna.db`` from the study's results (replacing an earlier one)."""
    import optuna

    path = folder / DB
    tmp = folder / f".{DB}.tmp-{os.getpid()}"
    tmp.unlink(missing_ok=True)
    built = build_trials(spec, trials, curves)
    level = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.WARNING)  # not "A new study created" each time
    try:
        storage = optuna.storages.RDBStorage(f"sqlite:///{tmp}")
        study = optuna.create_study(
            storage=storage, study_name=spec.name,
            directions=["maximize" if mode == "max" else "minimize"
                        for _, mode in spec.objectives])
        with warnings.catch_warnings():  # set_metric_names is experimental in Optuna 5
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            study.set_metric_names([m for m, _ in spec.objectives])  # not "Objective 0"
        study.set_user_attr("question", spec.question)
        study.set_user_attr("metric", spec.tune["metric"])  # a list in a Pareto study
        study.set_user_attr("mode", spec.tune["mode"])
        study.add_trials(built)
        storage.engine.dispose()
    finally:
        optuna.logging.set_verbosity(level)
    os.replace(tmp, path)
    return path
