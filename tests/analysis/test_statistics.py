"""Tables and sensitivity statistics on results folders with planted effects."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import stats
from statsmodels.stats.multicomp import pairwise_tukeyhsd

from analysis import importance, sensitivity, tables
from analysis import stats as stats_
from analysis.results import ResultsError, level_str, load
from tests.analysis.studies import write_study


def test_level_strings_agree_between_yaml_and_csv():
    assert level_str(False) == level_str(np.bool_(False)) == "False"
    assert level_str(0) == level_str(0.0) == level_str(np.int64(0)) == "0"
    assert level_str(0.25) == "0.25" and level_str("svd") == "svd"
    assert level_str(float("nan")) == level_str(None) == "NA"


def test_load_reads_factors_baseline_and_percent(planted):
    res = load([planted])
    assert [f.key for f in res.factors] == ["rollingq.beta", "rollingq.rho",
                                            "rollingq.max_rotations"]
    assert res.factor("rollingq.max_rotations").baseline == "1"  # no vanilla level: the first
    assert res.baseline == "0 / 0.5 / 1"
    assert res.datasets == ["synthetic"]  # data.name absent from fixed
    assert len(res.trials) == 81 and len(res.finished) == 78
    assert res.finished["acc"].between(50, 80).all()  # fractions became percent


def test_vanilla_level_is_the_baseline_even_when_not_first(tmp_path):
    search = {"rollingq.enabled": {"role": "scientific", "type": "choice",
                                   "values": [True, False]}}
    d = write_study(tmp_path, search=search, effect=lambda p: 0.5, seeds=(0, 1))
    res = load([d])
    assert res.baseline == "False"
    table = tables.main_table(res)
    assert table.loc[table["baseline"], "variant"].tolist() == ["False"]


def test_t_interval_matches_scipy():
    x = np.array([60.1, 61.5, 59.8, 60.9])
    mean, sd, lo, hi, n = stats_.t_interval(x)
    ref = stats.t.interval(0.95, len(x) - 1, loc=x.mean(), scale=stats.sem(x))
    assert n == 4 and mean == pytest.approx(x.mean()) and sd == pytest.approx(x.std(ddof=1))
    assert (lo, hi) == pytest.approx(ref)
    assert np.isnan(stats_.t_interval([1.0])[2])


def test_difference_is_paired_by_seed_when_seeds_match():
    a = pd.Series([61.0, 62.0, 63.5], index=[0, 1, 2])
    b = pd.Series([60.0, 60.5, 62.0], index=[0, 1, 2])
    delta, lo, hi, method = stats_.difference(a, b)
    ref = stats.ttest_rel(a, b).confidence_interval(0.95)
    assert method == "paired" and delta == pytest.approx(1.333333, abs=1e-5)
    assert (lo, hi) == pytest.approx((ref.low, ref.high))
    delta, lo, hi, method = stats_.difference(a, pd.Series([60.0, 61.0], index=[5, 6]))
    ref = stats.ttest_ind(a, [60.0, 61.0], equal_var=False).confidence_interval(0.95)
    assert method == "Welch" and (lo, hi) == pytest.approx((ref.low, ref.high))


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
        "95% CI", "Δ vs baseline [95% CI]", "best test epoch, paper-style (%)"]
    assert text["Δ vs baseline [95% CI]"].iloc[0] == "baseline"
    assert sum(cell.startswith("**") for cell in text["test acc at best val (%)"]) == 1


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


def test_missing_folder_and_missing_trials_raise_one_line(tmp_path):
    with pytest.raises(ResultsError, match="does not exist"):
        load([tmp_path / "nope"])
    with pytest.raises(ResultsError, match="no trials.csv"):
        load([tmp_path])


def test_searched_data_set_is_the_data_set_not_a_variant(tmp_path):
    search = {"data.name": {"role": "scientific", "type": "choice",
                            "values": ["synthetic", "features"]},
              "rollingq.enabled": {"role": "scientific", "type": "choice",
                                   "values": [False, True]}}
    d = write_study(tmp_path, search=search, effect=lambda p: 0.6 + 0.05 * p["rollingq.enabled"]
                    + (0.2 if p["data.name"] == "features" else 0.0))
    res = load([d])
    assert res.datasets == ["synthetic", "features"] and res.variants == ["False", "True"]
    table = tables.main_table(res)
    assert table["dataset"].tolist() == ["synthetic", "synthetic", "features", "features"]
    assert (table.loc[~table["baseline"], "delta"] > 4).all()
    a = sensitivity.analyse(res).anova.set_index("term")
    assert a.loc["data set", "p"] < 1e-6 and "data.name" not in a.index


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


def test_holm_is_statsmodels_and_leaves_the_collector_as_it_was():
    """``analysis.stats.holm`` is statsmodels' Holm, and the freeze it runs under is undone: nothing
    stays out of the garbage collector's reach."""
    import gc

    from statsmodels.stats.multitest import multipletests

    from analysis.stats import holm

    p = [0.01, 0.04, 0.03, 0.2, 0.005]
    np.testing.assert_array_equal(holm(p), multipletests(p, method="holm")[1])
    np.testing.assert_allclose(holm(p), [0.04, 0.09, 0.09, 0.2, 0.025])
    assert gc.get_freeze_count() == 0
