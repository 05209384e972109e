"""The sensitivity statistics (analysis/sensitivity.py) on results folders with planted effects:
the ANOVA's sign and size, a null factor, Tukey HSD against statsmodels, single levels, no
residual, several data sets."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import stats
from statsmodels.stats.multicomp import pairwise_tukeyhsd

from analysis import sensitivity, tables
from analysis.results import load
from tests.analysis.studies import write_study


def test_strong_beta_effect_is_significant_with_the_right_sign_and_large_eta(planted):
    s = sensitivity.analyse(load([planted]))
    a = s.anova.set_index("term")
    beta = a.loc["rollingq.beta"]
    assert beta["p"] < 1e-10 and beta["eta_sq"] > 0.5 and beta["partial_eta_sq"] > 0.9
    assert "rollingq.beta × rollingq.rho × rollingq.max_rotations" in a.index  # full model
    eff = s.effects[s.effects["factor"] == "rollingq.beta"].set_index("level")
    assert eff.loc["0", "reference"]
    assert eff.loc["0.3", "delta"] == pytest.approx(-10.0, abs=0.5)  # planted: -10 points
    assert eff.loc["0.3", "high"] < 0 and eff.loc["0.1", "high"] < 0
    acc = load([planted]).finished["acc"]
    total = float(((acc - acc.mean()) ** 2).sum())  # η² divides by the total sum of squares
    assert a["eta_sq"].to_numpy() == pytest.approx(a["sum_sq"].to_numpy() / total)
    mse = a.loc["Residual", "sum_sq"] / a.loc["Residual", "df"]
    assert beta["omega_sq"] == pytest.approx((beta["sum_sq"] - beta["df"] * mse) / (total + mse))
    assert "seed (block)" in a.index and s.blocked


def test_null_factor_is_not_significant(planted):
    s = sensitivity.analyse(load([planted]))
    a = s.anova.set_index("term")
    assert a.loc["rollingq.rho", "p"] > 0.05 and a.loc["rollingq.rho", "eta_sq"] < 0.01
    tested = a.drop(index=[t for t in a.index if t == "Residual" or "(block)" in t])
    assert list(tested.index[tested["p"] < 0.05]) == ["rollingq.beta", "rollingq.max_rotations"]
    rho = s.tukey[s.tukey["factor"] == "rollingq.rho"]
    assert len(rho) == 3 and not rho["reject"].any()


def test_tukey_finds_the_planted_pair(planted):
    s = sensitivity.analyse(load([planted]))
    t = s.tukey[s.tukey["factor"] == "rollingq.max_rotations"]
    found = {(r.group1, r.group2) for r in t.itertuples() if r.reject}
    assert found == {("1", "3"), ("2", "3")}
    pair = t[(t["group1"] == "1") & (t["group2"] == "3")].iloc[0]
    assert pair["meandiff"] == pytest.approx(3.0, abs=0.3) and pair["low"] > 0


def _one_factor_study(tmp_path):
    search = {"rollingq.beta": {"role": "scientific", "type": "choice",
                                "values": [0.0, 0.1, 0.2, 0.3]}}
    return load([write_study(tmp_path, search=search, seeds=(0, 1, 2, 3), noise_sd=0.01,
                             effect=lambda p: 0.6 + 0.1 * p["rollingq.beta"])])


def test_tukey_in_the_seed_blocked_design_matches_the_two_way_layout(tmp_path):
    """A balanced one-factor RCBD: the EMMs are the level means and the residual is the level
    × seed interaction, so Tukey must equal the textbook two-way formula (scipy's studentized
    range on MSE = SS_interaction / ((k − 1)(b − 1)), se = √(2 MSE / b))."""
    res = _one_factor_study(tmp_path)
    ours = sensitivity.analyse(res).tukey
    y = res.finished.pivot_table(index="rollingq.beta", columns="train.seed", values="acc",
                                 observed=True).to_numpy()
    k, b = y.shape
    inter = y - y.mean(axis=1, keepdims=True) - y.mean(axis=0, keepdims=True) + y.mean()
    df = (k - 1) * (b - 1)
    se = np.sqrt(2 * (inter ** 2).sum() / df / b)
    for r in ours.itertuples():
        i, j = (["0", "0.1", "0.2", "0.3"].index(g) for g in (r.group1, r.group2))
        d = y[j].mean() - y[i].mean()
        assert r.meandiff == pytest.approx(d)
        assert r.p_adj == pytest.approx(stats.studentized_range.sf(abs(d) / se * np.sqrt(2),
                                                                   k, df), abs=1e-6)
        half = stats.studentized_range.ppf(0.95, k, df) / np.sqrt(2) * se
        assert (r.low, r.high) == pytest.approx((d - half, d + half))


def test_tukey_without_the_block_equals_statsmodels(tmp_path):
    """Without the block (each seed once: the block cannot be fitted beside a saturated
    model, so it falls back) and with one factor, the result is pairwise_tukeyhsd's."""
    res = _one_factor_study(tmp_path)
    res.trials["train.seed"] = range(len(res.trials))  # every trial its own seed: no block
    s = sensitivity.analyse(res)
    assert not s.blocked
    df = res.finished
    ref = pairwise_tukeyhsd(df["acc"], df["rollingq.beta"].astype(str))
    header, *rows = ref.summary().data
    ref = pd.DataFrame(rows, columns=header)
    ours = s.tukey
    assert ours["meandiff"].to_numpy() == pytest.approx(ref["meandiff"].to_numpy(), abs=1e-3)
    assert ours["low"].to_numpy() == pytest.approx(ref["lower"].to_numpy(), abs=2e-3)
    assert ours["reject"].tolist() == ref["reject"].tolist()
    assert ours["p_adj"].to_numpy() == pytest.approx(ref["p-adj"].to_numpy(), abs=2e-3)


def test_single_level_factor_is_skipped_with_a_sentence(tmp_path):
    search = {"rollingq.beta": {"role": "scientific", "type": "choice", "values": [0.0, 0.2]},
              "rollingq.rotation": {"role": "scientific", "type": "choice", "values": ["svd"]}}
    d = write_study(tmp_path, search=search, effect=lambda p: 0.6 + 0.1 * p["rollingq.beta"])
    s = sensitivity.analyse(load([d]))
    assert any("`rollingq.rotation` has a single level (svd)" in n for n in s.notes)
    assert s.anova["term"].tolist() == ["rollingq.beta", "seed (block)", "Residual"]
    assert any("no Tukey HSD" in n for n in s.notes)


def test_one_seed_per_cell_says_there_is_no_residual(tmp_path):
    search = {"rollingq.enabled": {"role": "scientific", "type": "choice",
                                   "values": [False, True]}}
    d = write_study(tmp_path, search=search, effect=lambda p: 0.6, seeds=(0,))
    s = sensitivity.analyse(load([d]))
    assert not len(s.anova) and any("no residual degrees of freedom" in n for n in s.notes)


def test_several_data_sets_enter_as_a_factor(paper_studies):
    res = load(paper_studies)
    assert res.datasets == ["cremad", "kinetics_sounds"]
    s = sensitivity.analyse(res)
    a = s.anova.set_index("term")
    assert a.loc["data set", "p"] < 1e-10  # 49 % vs 67 %
    assert a.loc["rollingq.enabled", "p"] < 1e-6
    table = tables.main_table(res)
    assert table.groupby("dataset")["baseline"].sum().tolist() == [1, 1]
    assert table.loc[table["baseline"], "variant"].tolist() == ["False / 1", "False / 1"]
