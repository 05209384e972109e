"""PED-ANOVA importance of an Optuna study (analysis/importance.py), rebuilt from trials.csv
with the trials ASHA stopped counted."""

from __future__ import annotations

from analysis import importance
from analysis.results import load


def test_importance_ranks_the_planted_parameter_first_and_counts_asha(optuna_study):
    res = load([optuna_study])
    imps = importance.importance(res)
    assert len(imps) == 1
    imp = imps[0]
    assert next(iter(imp.values)) == "rollingq.beta"
    assert imp.values["rollingq.beta"] > 0.5
    assert set(imp.values) == {"rollingq.beta", "rollingq.rho", "rollingq.rotation", "optim.lr"}
    assert imp.stopped == 6 and imp.other_excluded == 1 and imp.trials == 41
    assert "PED-ANOVA" in imp.evaluator
    journal = importance.journal_summary(res)
    assert len(journal) == 1 and "47 complete" in journal[0]  # stopped ones look complete there
