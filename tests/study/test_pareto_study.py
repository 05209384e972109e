"""A two-objective study end to end: the shipped ``pareto_balance`` space (maximise val_acc,
minimise val_abs_air) through the CLI at a tiny budget. Its report's Pareto table holds
pairwise non-dominated rows, and every trial off it is dominated by one on it; the objectives
are those Optuna's sampler was told (Ray's journal) and those ``optuna.db`` holds as a
multi-objective study, whose own ``best_trials`` are the report's front."""

from __future__ import annotations

import re

import numpy as np
import optuna
import pandas as pd
import pytest

from analysis.pareto import non_dominated
from tests.study.test_study_ray import run_cli

pytestmark = pytest.mark.integration  # make test-fast leaves it out (docs/testing.md)

OBJECTIVES, MODES = ["val_acc", "val_abs_air"], ["max", "min"]


def report_front(report: str) -> list[str]:
    """The trial ids of the Pareto table of report.md (its last column)."""
    section = report.split("## Pareto front", 1)[1].split("\n## ", 1)[0]
    rows = [ln for ln in section.splitlines() if ln.startswith("| ") and "---" not in ln]
    header = [c.strip() for c in rows[0].strip("|").split("|")]
    assert header[-2:] == ["seeds", "trials"] and OBJECTIVES[0] in header, header
    return [c.strip() for ln in rows[1:] for c in ln.strip("|").split("|")[-1:]]


def test_two_objective_study_ends_with_a_non_dominated_pareto_table(tmp_path):
    r = run_cli("--space", "pareto_balance", "--storage", str(tmp_path), "--name", "p",
                "--set", "tune.num_samples=6", "--set", "train.epochs=2",
                "--set", "data.train_size=300", "--set", "data.test_size=100",
                "--set", "tune.max_concurrent=2")
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    study = tmp_path / "pareto_balance" / "p"
    trials = pd.read_csv(study / "trials.csv")
    assert len(trials) == 6 and (trials["status"] == "finished").all()
    curves = pd.read_csv(study / "curves.csv")
    last = curves.sort_values("epoch").drop_duplicates("trial_id", keep="last")
    values = last.set_index("trial_id")[OBJECTIVES]
    assert (values["val_abs_air"] >= 0).all()
    assert np.allclose(values["val_abs_air"], last.set_index("trial_id")["val_air"].abs())

    on = report_front((study / "report.md").read_text())
    assert on and set(on) <= set(trials["trial_id"])
    front = values.loc[on].to_numpy()
    assert non_dominated(front, MODES).all()  # pairwise non-dominated
    sign = np.array([-1.0, 1.0])  # minimise both
    for i, a in enumerate(front):
        for j, b in enumerate(front):
            if i != j:
                assert not ((b * sign <= a * sign).all() and (b * sign < a * sign).any())
    for tid in set(trials["trial_id"]) - set(on):  # off the front: one on it dominates it
        x = values.loc[tid].to_numpy() * sign
        assert any(((f * sign) <= x).all() and ((f * sign) < x).any() for f in front), tid
    assert (study / "figures" / "pareto_synthetic.png").stat().st_size > 5000
    assert re.search(r"Pareto front: \d+ of 6 configurations", (study / "report.md").read_text())

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    journal = optuna.load_study(study_name="pareto_balance", storage=optuna.storages.JournalStorage(
        optuna.storages.journal.JournalFileBackend(str(study / "optuna.journal"))))
    assert [d.name for d in journal.directions] == ["MAXIMIZE", "MINIMIZE"]
    told = sorted(tuple(t.values) for t in journal.trials)
    assert np.allclose(told, sorted(map(tuple, values.to_numpy())))  # what the sampler saw

    db = optuna.load_study(study_name="pareto_balance", storage=f"sqlite:///{study / 'optuna.db'}")
    assert [d.name for d in db.directions] == ["MAXIMIZE", "MINIMIZE"]
    assert db.metric_names == OBJECTIVES
    assert len(db.trials) == 6
    for t in db.trials:
        assert t.intermediate_values == {}
        assert np.allclose(t.values, values.loc[t.user_attrs["trial_id"]].to_numpy())
    assert sorted(t.user_attrs["trial_id"] for t in db.best_trials) == sorted(on)
