"""Parameter importance of an Optuna study (adaptive, unbalanced: no OLS p-values, the sampler
chose each cell from earlier outcomes): PED-ANOVA (Optuna's default evaluator), built offline
from ``trials.csv``: trials stopped early by ASHA are excluded and counted (Optuna's own journal
records them as COMPLETE), seeds of a configuration are averaged; and the journal's trial states
as a cross-check."""

from __future__ import annotations

import logging
import warnings
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import optuna
import pandas as pd

from analysis.design import searched
from analysis.results import Results, level_str

log = logging.getLogger(__name__)
# The tune metric -> the trials.csv column that summarises it over a trial (and the direction).
METRIC_COLUMN = {"val_acc": "acc_val", "best_val_acc": "acc_val", "test_acc_at_best_val": "acc",
                 "train_loss": "final_train_loss", "val_loss": "acc_val",
                 "val_f1": "val_f1_at_best_val", "test_f1_at_best_val": "test_f1_at_best_val"}
EVALUATOR = ("PED-ANOVA (optuna.importance.PedAnovaImportanceEvaluator, target_quantile 0.1, "
             "region_quantile 1.0: which parameters matter to land in the top 10 %)")


@dataclass
class Importance:
    """Parameter importance of an Optuna study on one data set.

    Attributes:
        dataset: The data set.
        evaluator: The evaluator's name and settings.
        values: Parameter -> importance (sums to 1), most important first.
        configurations: Distinct configurations in the study (seeds averaged).
        trials: Finished trials used.
        stopped: Trials stopped early by ASHA (excluded).
        other_excluded: Errored, diverged or incomplete trials (excluded).
        target: The column the study was built on and its direction.
        notes: Sentences for the report.
    """

    dataset: str
    evaluator: str
    values: dict[str, float]
    configurations: int
    trials: int
    stopped: int
    other_excluded: int
    target: str
    notes: list[str] = field(default_factory=list)


def _param_value(dist: optuna.distributions.BaseDistribution, value: Any) -> Any:
    if isinstance(dist, optuna.distributions.CategoricalDistribution):
        match = [c for c in dist.choices if level_str(c) == level_str(value)]
        return match[0] if match else None
    if isinstance(dist, optuna.distributions.IntDistribution):
        return int(value)
    return float(value)


def importance(res: Results) -> list[Importance]:
    """PED-ANOVA importance per data set, from an Optuna study rebuilt from ``trials.csv``.

    Returns:
        One record per data set with at least two finished configurations (may be empty).
    """
    dists = {k: optuna.distributions.json_to_distribution(e.distribution)
             for k, e in searched(res.designs).items()
             if k != "data.name" and e.distribution is not None}
    column = METRIC_COLUMN.get(res.metric, "acc_val")
    direction = "minimize" if column == "final_train_loss" else "maximize"
    unit = ("final train loss" if column == "final_train_loss" else
            "macro-F1" if "f1" in column else "percent")
    target = (f"{column} ({unit}, "
              f"{direction}d; the tune metric is {res.metric}, {res.objectives[0][1]})")
    out = []
    for ds in res.datasets:
        t = res.trials[res.trials["dataset"] == ds]
        if column not in t:
            continue
        fin = t[(t["status"] == "finished") & (t["duplicate_of"] == "")
                & pd.to_numeric(t[column], errors="coerce").notna()]
        stopped = int((t["status"] == "stopped").sum())
        other = len(t) - len(fin) - stopped
        rows: dict[tuple[str, ...], list[float]] = {}
        params: dict[tuple[str, ...], dict[str, Any]] = {}
        for r in fin.to_dict("records"):
            p = {}
            for k, dist in dists.items():
                v = r.get(k)
                if v is None or (isinstance(v, float) and np.isnan(v)):
                    continue  # an inactive conditional parameter
                val = _param_value(dist, v)
                if val is not None:
                    p[k] = val
            key = tuple(level_str(p.get(k)) for k in dists)
            rows.setdefault(key, []).append(float(r[column]))
            params[key] = p
        notes = []
        if len(rows) < 2:
            continue
        if len(rows) < 20:
            notes.append(f"Only {len(rows)} configurations: importance from so few trials is "
                         f"a rough ranking.")
        study = optuna.create_study(direction=direction)
        study.add_trials([optuna.trial.create_trial(
            value=float(np.mean(vals)), params=params[key],
            distributions={k: dists[k] for k in params[key]}) for key, vals in rows.items()])
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            values = optuna.importance.get_param_importances(
                study, evaluator=optuna.importance.PedAnovaImportanceEvaluator())
        out.append(Importance(ds, EVALUATOR, dict(values), len(rows), len(fin), stopped, other,
                              target, notes))
    return out


def journal_summary(res: Results) -> list[str]:
    """One sentence per ``optuna.journal``: its trials by state, as a cross-check."""
    out = []
    for path in res.journals:
        name = res.designs[0].space
        try:
            storage = optuna.storages.JournalStorage(
                optuna.storages.journal.JournalFileBackend(str(path)))
            names = [s.study_name for s in optuna.get_all_study_summaries(storage)]
            study = optuna.load_study(study_name=name if name in names else names[0],
                                      storage=storage)
            states = pd.Series([t.state.name for t in study.trials]).value_counts()
            counts = ", ".join(f"{n} {s.lower()}" for s, n in states.items()) or "no trials"
            out.append(f"`{path.name}` (study `{study.study_name}`) holds {counts}. It records "
                       f"ASHA-stopped trials as complete, so the importance above is built from "
                       f"trials.csv instead.")
        except Exception as e:  # noqa: BLE001 - a damaged journal must not stop the report
            log.warning("cannot read %s: %s", path, e)
            out.append(f"`{path.name}` could not be read ({type(e).__name__}); the importance "
                       f"is built from trials.csv.")
    return out
