"""The design the statistics respect: experiments counted once, seeds as blocks, censored times
as survival data, and the exploratory family corrected (results folders written by the test)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import statsmodels.formula.api as smf
from scipy import stats
from statsmodels.stats.multitest import multipletests

from analysis import family, sensitivity, tables
from analysis.report import sections
from analysis.report.blocks import Figure
from analysis.results import load
from analysis.survival import survival
from tests.analysis.studies import write_study

COPIES = {  # the rotation kind does nothing at 0 rotations: vanilla trains once per kind
    "rollingq.max_rotations": {"role": "scientific", "type": "choice", "values": [0, 3]},
    "rollingq.rotation": {"role": "scientific", "type": "choice", "values": ["svd", "plane"]},
}


def _copies_study(tmp_path):
    return write_study(tmp_path, name="copies", search=COPIES, seeds=(0, 1, 2), noise_sd=0.01,
                       effect=lambda p: 0.60 - 0.01 * (p["rollingq.max_rotations"] > 0))


def test_a_duplicated_vanilla_cell_is_one_experiment_with_its_n_and_df(tmp_path):
    res = load([_copies_study(tmp_path)])
    assert len(res.trials) == 12 and len(res.finished) == 9  # 3 vanilla copies left out
    dup = res.duplicates
    assert len(dup) == 3 and (dup["variant"].astype(str) == "0 / NA").all()
    table = tables.main_table(res)
    assert dict(zip(table["variant"], table["n"], strict=True)) == {
        "0 / NA": 3, "3 / svd": 3, "3 / plane": 3}

    s = sensitivity.analyse(res)
    assert "vanilla arm" in s.design
    v = s.vanilla.set_index("contrast").loc["RollingQ (every cell) − vanilla"]
    # the cell-means model with the block: 9 experiments - 3 cells - 2 seed effects - 1 = 4
    assert (v["n"], v["n_vanilla"], v["df"]) == (6, 3, 4)
    f = res.finished.assign(cell=lambda d: d["variant"].astype(str),
                            seed=lambda d: d["train.seed"].astype(str))
    fit = smf.ols("acc ~ C(cell) + C(seed)", data=f).fit()
    means = f.groupby("cell")["acc"].mean()
    delta = (means["3 / svd"] + means["3 / plane"]) / 2 - means["0 / NA"]
    assert v["delta"] == pytest.approx(delta)
    se = np.sqrt(fit.mse_resid * (1 / 3 * (1 / 4 + 1 / 4) + 1 / 3))  # Var of the contrast
    half = stats.t.ppf(0.975, 4) * se
    assert (v["low"], v["high"]) == pytest.approx((delta - half, delta + half))
    assert s.anova["term"].tolist()[:1] == ["rollingq.rotation"]  # the factorial: on trials


def test_the_report_counts_copies_once_and_names_them(tmp_path):
    folder = _copies_study(tmp_path)
    got = sections([folder], out=tmp_path / "report").by_key()
    trials = got["trials"].data
    assert len(trials["copies"]) == 3 and set(trials["copies"]["variant"]) == {"0 / NA"}
    assert (trials["finished"], trials["total"]) == (9, 9)
    assert got["sensitivity"].data["fits"]["acc"].blocked  # a randomised complete block design
    tests = got["sensitivity"].data["tests"]
    assert tests["q"].notna().all() and len(tests) >= 2  # BH over the section's family


def test_a_planted_seed_effect_is_absorbed_by_the_block(tmp_path):
    """Each seed shifts every configuration by up to ±3 points (its initialisation and order);
    β moves the accuracy by 1 point. The block takes the seed's variance out of the residual,
    so β is found; the same model without the block cannot see it."""
    search = {"rollingq.beta": {"role": "scientific", "type": "choice", "values": [0.1, 0.3]},
              "rollingq.rho": {"role": "scientific", "type": "choice", "values": [1.0, 2.0]}}
    folder = write_study(tmp_path, name="blocks", search=search, seeds=(0, 1, 2, 3, 4, 5),
                         noise_sd=0.002, effect=lambda p: 0.6 + 0.05 * (p["rollingq.beta"] - 0.1))
    path = folder / "trials.csv"
    trials = pd.read_csv(path)
    shift = {0: -0.03, 1: 0.02, 2: 0.03, 3: -0.02, 4: 0.0, 5: 0.01}
    trials["test_acc_at_best_val"] += trials["train.seed"].map(shift)
    trials.to_csv(path, index=False)

    res = load([folder])
    s = sensitivity.analyse(res)
    a = s.anova.set_index("term")
    assert s.blocked and "seed (block)" in s.formula
    assert a.loc["seed (block)", "p"] < 1e-6
    assert a.loc["rollingq.beta", "p"] < 0.01 and a.loc["rollingq.rho", "p"] > 0.05
    eff = s.effects.set_index(["factor", "level"]).loc[("rollingq.beta", "0.3"), "delta"]
    assert eff == pytest.approx(1.0, abs=0.3)
    unblocked = smf.ols("acc ~ C(b) * C(r)", data=res.finished.assign(
        b=lambda d: d["rollingq.beta"].astype(str), r=lambda d: d["rollingq.rho"].astype(str)))
    assert unblocked.fit().pvalues.filter(like="C(b)").min() > 0.05


def test_a_planted_censored_effect_is_found_by_the_log_rank_test(tmp_path):
    """At ρ = 2 validation |AIR| falls under β one epoch after the rotation; at ρ = 0.5 it never
    does (censored at the last epoch). Dropping the censored trials would leave one level."""
    search = {"rollingq.rho": {"role": "scientific", "type": "choice", "values": [0.5, 2.0]}}
    folder = write_study(tmp_path, name="censored", search=search, seeds=tuple(range(6)),
                         fixed={"model.fusion": "attn", "rollingq.beta": 0.2}, epochs=6,
                         effect=lambda p: 0.6)
    path = folder / "curves.csv"
    curves = pd.read_csv(path)
    fast = curves["rollingq.rho"] == 2.0
    curves["val_air"] = np.where(fast & (curves["epoch"] >= 2), 0.1, 0.4)
    curves.to_csv(path, index=False)

    res = load([folder])
    assert res.finished["out_air_converged"].tolist().count(0) == 6  # the slow level: censored
    surv = survival(res)
    levels = surv.levels.set_index("level")
    assert levels.loc["2", "share"] == 1.0 and levels.loc["2", "median"] == 1
    assert levels.loc["0.5", "events"] == 0 and np.isnan(levels.loc["0.5", "median"])
    test = surv.tests.iloc[0]
    assert test["factor"] == "rollingq.rho" and test["strata"] == "seed"
    assert test["p"] < 0.05  # 6 strata of one trial per level: the paired sign-test limit

    got = sections([folder], out=tmp_path / "report").by_key()["sensitivity"]
    reported = got.data["survivals"]["out_air_convergence"]
    assert reported.tests.equals(surv.tests) and reported.levels.equals(surv.levels)
    assert "km_rollingq_rho" in [b.path.stem for b in got.blocks if isinstance(b, Figure)]
    assert (tmp_path / "report" / "figures" / "km_rollingq_rho.png").is_file()


def test_the_exploratory_family_is_benjamini_hochberg_over_every_outcome(tmp_path):
    folder = _copies_study(tmp_path)
    res = load([folder])
    fits = {m: sensitivity.analyse(res, m) for m in ("acc", "out_abs_air")}
    tests = family.fdr(fits)
    assert set(tests["kind"]) == {"anova", "vanilla"}
    assert tests["q"].to_numpy() == pytest.approx(
        multipletests(tests["p"], method="fdr_bh")[1])
    assert not tests["term"].str.contains("block").any()


def test_the_ablation_fixture_reads_as_a_nested_design(ablation):
    """The old rotation_ablation grid (caps 0-2 × kinds): vanilla counted once, the cap's trend
    tested on the RollingQ trials would need three rotating caps, so there is none here."""
    res = load([ablation])
    assert len(res.duplicates) == 3 and len(res.finished) == 15
    assert res.baseline == "0 / NA"
    s = sensitivity.analyse(res)
    v = s.vanilla.set_index("contrast")
    assert set(v.index) == {"RollingQ (every cell) − vanilla",
                            "rollingq.max_rotations = 1 − vanilla",
                            "rollingq.max_rotations = 2 − vanilla",
                            "rollingq.rotation = svd − vanilla",
                            "rollingq.rotation = plane − vanilla"}
    assert (v["n_vanilla"] == 3).all()
    assert (v["p_holm"] >= v["p"]).all()


def test_a_numeric_dose_factor_gets_a_trend_and_a_lack_of_fit_test(planted):
    s = sensitivity.analyse(load([planted]))
    t = s.trends.set_index("factor")
    assert set(t.index) == {"rollingq.beta", "rollingq.rho", "rollingq.max_rotations"}
    beta = t.loc["rollingq.beta"]  # planted: linear, -10 points over 0.3
    assert beta["slope"] == pytest.approx(-100 / 3, rel=0.1) and beta["p"] < 1e-10
    assert beta["lack_of_fit_p"] > 0.01
    assert t.loc["rollingq.max_rotations", "lack_of_fit_p"] < 0.01  # a step at 3, not a line


def test_the_other_balance_methods_keys_do_nothing():
    """Under PMR the OGM keys do nothing, under OGM(-GE) the PMR keys: trials that differ only
    there are one experiment; the method's own keys still tell trials apart."""
    from analysis.results import effective_config

    pmr = {"balance.method": "pmr", "balance.pmr_alpha": 2.0, "balance.ogm_alpha": 0.8,
           "balance.ogm_window": [0.0, 0.5], "balance.prototype_fraction": 0.1}
    assert effective_config(pmr, True) == effective_config(
        {**pmr, "balance.ogm_alpha": 0.1, "balance.ogm_window": [0.0, 1.0]}, True)
    assert effective_config(pmr, True) != effective_config({**pmr, "balance.pmr_alpha": 1.0}, True)
    ogm = {"balance.method": "ogm_ge", "balance.ogm_alpha": 0.8, "balance.pmr_alpha": 2.0,
           "balance.prototype_fraction": 0.1}
    assert effective_config(ogm, True) == effective_config(
        {**ogm, "balance.pmr_alpha": 1.0, "balance.prototype_fraction": 0.2}, True)
    assert effective_config(ogm, True) != effective_config({**ogm, "balance.ogm_alpha": 0.3}, True)


def test_no_balance_method_is_a_level_not_a_missing_value(tmp_path):
    """balance.method: none makes the method's keys do nothing, never the method itself: it
    is the vanilla level of the factor and the main table's baseline (it read NA, and the
    report fell back to another variant as the baseline)."""
    search = {"balance.method": {"role": "scientific", "type": "choice",
                                 "values": ["none", "ogm_ge"]},
              "rollingq.enabled": {"role": "scientific", "type": "choice",
                                   "values": [False, True]}}
    folder = write_study(tmp_path, search=search, effect=lambda p: 0.7, seeds=(0, 1, 2),
                         fixed={"model.fusion": "attn"})
    res = load([folder])
    assert res.trials["balance.method"].notna().all()
    levels = {f.key: f.levels for f in res.factors}
    assert levels["balance.method"] == ["none", "ogm_ge"]
    table = sections([folder], out=tmp_path / "report").by_key()["main_table"].data["table"]
    base = table[table["baseline"]]
    assert base[["balance.method", "rollingq.enabled", "n"]].values.tolist() \
        == [["none", "False", 3]]
