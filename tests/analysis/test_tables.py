"""The main table (analysis/tables.py): the baseline, the best and the signs marked, a nuisance
parameter tuned away per variant."""

from __future__ import annotations

import pytest

from analysis import sensitivity, tables
from analysis.results import load
from tests.analysis.studies import write_study


def test_main_table_marks_baseline_best_and_signs(ablation):
    res = load([ablation])
    table = tables.main_table(res)
    # the rotation kind does nothing at 0 rotations: one vanilla cell of 3 experiments
    assert list(table["variant"]) == ["0 / NA", "1 / svd", "1 / plane", "2 / svd", "2 / plane"]
    assert table["n"].tolist() == [3] * 5
    base = table[table["baseline"]]
    assert base["variant"].tolist() == ["0 / NA"]
    rotating = table[table["variant"].str.startswith(("1", "2"))]
    assert (rotating["delta"] > 1.0).all() and (rotating["delta_low"] > 0).all()
    assert (rotating["delta_method"] == "paired").all()
    assert table.loc[table["best"], "variant"].iloc[0] in set(rotating["variant"])
    text = tables.format_main(table, res)
    assert text.columns.tolist() == [
        "rollingq.max_rotations", "rollingq.rotation", "n", "test acc at best val (%)",
        "group", "P(rank 1) [rank 95%]", "95% CI", "Δ vs baseline [95% CI]",
        "best test epoch, paper-style (%)"]
    assert text["Δ vs baseline [95% CI]"].iloc[0] == "baseline"
    # bold: the group not separable from the best (analysis/ranking.py), the best among them
    bold = text["test acc at best val (%)"].str.startswith("**").to_numpy()
    assert set(table.loc[bold, "variant"]) == set(table.loc[table["top"], "variant"])
    assert table.loc[table["best"], "top"].all()
    assert table["p_rank1"].sum() == pytest.approx(1.0)


def test_nuisance_parameter_is_tuned_away_per_variant(tmp_path):
    search = {"rollingq.enabled": {"role": "scientific", "type": "choice",
                                   "values": [False, True]},
              "optim.lr": {"role": "nuisance", "type": "choice", "values": [0.001, 0.01]}}
    d = write_study(tmp_path, search=search, seeds=(0, 1, 2),
                    effect=lambda p: 0.6 + 0.02 * p["rollingq.enabled"]
                    + (0.05 if p["optim.lr"] == 0.01 else 0.0))
    res = load([d])
    assert [f.key for f in res.nuisance] == ["optim.lr"]
    table = tables.main_table(res)
    assert table["setting"].tolist() == ["optim.lr=0.01", "optim.lr=0.01"]
    assert table["n"].tolist() == [3, 3] and table["mean"].min() > 64
    assert "nuisance setting (best val)" in tables.format_main(table, res).columns
    s = sensitivity.analyse(res)
    assert s.anova["term"].tolist() == ["rollingq.enabled", "optim.lr", "seed (block)",
                                        "Residual"]
    assert any("Nuisance parameters enter as additive factors" in n for n in s.notes)
