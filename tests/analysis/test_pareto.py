"""The Pareto front (analysis/pareto.py): ``non_dominated`` pinned to Optuna's own
``Study.best_trials``; seeds averaged per configuration; what is left out is counted."""

from __future__ import annotations

import numpy as np
import optuna
import pandas as pd
import pytest

from analysis.pareto import front, non_dominated

optuna.logging.set_verbosity(optuna.logging.WARNING)


def optuna_front(values: np.ndarray, modes: list[str]) -> set[int]:
    study = optuna.create_study(directions=["maximize" if m == "max" else "minimize"
                                            for m in modes])
    for row in values:
        study.add_trial(optuna.trial.create_trial(values=[float(v) for v in row]))
    return {t.number for t in study.best_trials}


@pytest.mark.parametrize("k, modes", [(2, ["max", "min"]), (2, ["min", "min"]),
                                      (3, ["max", "min", "max"])])
def test_non_dominated_is_optunas_front(k, modes):
    rng = np.random.default_rng(k)
    for _ in range(20):
        values = rng.integers(0, 6, size=(int(rng.integers(1, 25)), k)).astype(float)  # ties
        mine = set(np.flatnonzero(non_dominated(values, modes)))
        assert mine == optuna_front(values, modes), values


def test_equal_points_are_both_on_the_front():
    assert non_dominated(np.array([[1.0, 1.0], [1.0, 1.0], [0.0, 2.0]]), ["max", "min"]).tolist() \
        == [True, True, False]


def test_front_averages_seeds_and_counts_what_it_leaves_out():
    trials = pd.DataFrame({
        "trial_id": ["a0", "a1", "b0", "c0", "d0", "e0"],
        "status": ["finished", "finished", "finished", "finished", "diverged", "finished"],
        "rollingq.beta": [0.1, 0.1, 0.2, np.nan, 0.3, 0.4],
        "train.seed": [0, 1, 0, 0, 0, 0],
    })
    rows = []
    for tid, acc, air in [("a0", 0.8, 0.2), ("a1", 0.6, 0.0), ("b0", 0.7, 0.05),
                          ("c0", 0.5, 0.2), ("d0", 0.0, 1e9)]:
        rows += [{"trial_id": tid, "epoch": 0, "val_acc": 0.1, "val_abs_air": 0.9},
                 {"trial_id": tid, "epoch": 1, "val_acc": acc, "val_abs_air": air}]
    rows += [{"trial_id": "e0", "epoch": 0, "val_acc": 0.9, "val_abs_air": 0.0},
             {"trial_id": "e0", "epoch": 1, "val_acc": 0.9}]  # none at its last epoch
    f = front(trials, pd.DataFrame(rows), {"metric": ["val_acc", "val_abs_air"],
                                           "metric_mode": ["max", "min"]}, ["rollingq.beta"])
    pts = f.points.set_index("rollingq.beta")
    assert list(pts.index) == ["0.1", "0.2", "inactive"]
    assert pts.loc["0.1", "seeds"] == 2 and pts.loc["0.1", "trials"] == "a0, a1"
    assert pts.loc["0.1", "val_acc"] == pytest.approx(0.7)  # the last epoch, seeds averaged
    assert pts.loc["0.1", "val_abs_air"] == pytest.approx(0.1)
    assert pts.loc["0.1", "val_acc_sd"] == pytest.approx(np.std([0.8, 0.6], ddof=1))
    # (0.7, 0.1) and (0.7, 0.05): b dominates a; c (0.5, 0.2) is dominated
    assert pts["front"].to_dict() == {"0.1": False, "0.2": True, "inactive": False}
    assert f.excluded == {"diverged": 1, "finished without every objective": 1}
    assert list(f.front["trials"]) == ["b0"]


def test_a_single_objective_study_has_no_front():
    assert front(pd.DataFrame({"trial_id": [], "status": []}), pd.DataFrame(),
                 {"metric": "val_acc", "metric_mode": "max"}, []) is None
