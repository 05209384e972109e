"""Verdicts on the paper's data sets (statistics audit 2, N1-N12): margins that are smallest
effects of interest, RollingQ per architecture, several data sets at once, the declared Holm
family, the sign-flip p, deterministic differences and prediction intervals. Each test plants a
results folder (or two) in the format study/run.py writes and checks the report's statistics
against scipy/statsmodels."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats
from statsmodels.stats.multitest import multipletests
from statsmodels.stats.proportion import proportion_confint

from analysis import architectures, claims, sensitivity, tables
from analysis import declarations as declarations_
from analysis.paper import PAPER_TABLE1, paper_comparison
from analysis.report import claims_text, sections
from analysis.report.blocks import Table
from analysis.results import ResultsError, load
from tests.analysis.studies import write_study, write_table1
from tests.analysis.test_verdict_engine import _effects, _standard, plant_claims

ON_OFF = {"rollingq.enabled": {"role": "scientific", "type": "choice", "values": [False, True]}}


@pytest.fixture(scope="module")
def table1(tmp_path_factory):
    """The shipped paper_table1 space on CREMA-D and Kinetics-Sounds, every variant's true
    mean the paper's Table 1 number, a trial sd of 1.5 points, 5 seeds (the audit's setting)."""
    return write_table1(tmp_path_factory.mktemp("table1"), seeds=5, sd=1.5, rng_seed=0)


def test_n1_the_papers_own_effect_is_not_called_no_effect(table1):
    """N1: on planted Table 1 claim 6 averages the Vanilla MT, MT* and MMML pairs (the paper's
    gains 3.1, 0.7, 0.7 on CREMA-D); its margin was Vanilla MT's 3.1, so this study's +1.35
    [−0.86, +3.56] read `no effect`. The margin is now the declared smallest effect of interest
    (0.5 points) and the verdict cannot be `no effect` with an effect of +1.35."""
    res = load(table1)
    six = {j.dataset: j for j in claims.judge(res) if j.claim.number == 6}
    j = six["cremad"]
    assert j.effect == pytest.approx(1.35, abs=0.01)
    assert (j.margin, j.margin_source) == (0.5, "default")
    assert j.verdict != claims.NO_EFFECT and j.tost_holm > 0.05
    assert six["kinetics_sounds"].margin == 0.5


def test_n1_a_declared_margin_is_used_and_named(tmp_path):
    """A study's `claims.margins` replaces the default and the table says where it comes from;
    two folders of one data set that declare different margins are one clear error."""
    a = write_study(tmp_path / "a", name="claims", search=ON_OFF, effect=lambda p: 0.7,
                    fixed={"model.fusion": "attn", "data.name": "cremad"},
                    claims={"family": "dataset", "margins": {6: 2.0, "4": 0.2}})
    res = load([a])
    got = {j.claim.number: j for j in claims.judge(res)}
    assert got[6].margin == 2.0 and got[4].margin == 0.2 and got[5].margin == 1.0
    assert got[6].margin_source == f"{a}/space.yaml"
    table = claims_text.table(res, list(got.values())).set_index("claim")
    assert table.loc["(6) RollingQ improves accuracy (Table 1)", "margin"] == (
        f"±2 ({a}/space.yaml)")
    b = write_study(tmp_path / "b", name="claims", search=ON_OFF, effect=lambda p: 0.7,
                    fixed={"model.fusion": "attn", "data.name": "cremad"},
                    timestamp="20260102-000000", claims={"margins": {6: 1.0}})
    with pytest.raises(ResultsError, match=r"claims.margins.6: 1 .* and 2 .* same data set "
                                           r"cremad"):
        claims.judge(load([a, b]))


def test_n1_a_reproduced_effect_smaller_than_the_papers_says_so(tmp_path):
    """RollingQ adds 1 point to Vanilla MT on CREMA-D where the paper reports 3.1, with a trial
    sd of 0.3 over 10 seeds: the pair is reproduced, and the one-sided test says it is smaller
    than the paper's gain (Holm over the data set's pairs)."""
    means = {"cremad": {"Vanilla MT": 48.8, "Vanilla MT + RollingQ": 49.8}}
    folders = write_table1(tmp_path, ("cremad",), seeds=10, sd=0.3, means=means)
    t = architectures.pairs(load(folders)).set_index("on")
    r = t.loc["attn_rollingq"]
    assert r["paper_gain"] == pytest.approx(3.1)
    assert r["verdict"] == claims.REPRODUCED and architectures.smaller_than_paper(r.to_dict())
    assert r["effect"] == pytest.approx(1.0, abs=0.3)


def test_n8_claim_4s_margin_is_in_its_own_units_not_the_papers_pooled_r(tmp_path):
    """N8: claim 4 measures the per-modality −r; its margin on CREMA-D was the paper's change in
    pooled r (0.24). It is now 0.1 in −r units, and the paper's r only a figure beside it."""
    res = load([plant_claims(tmp_path, _effects(0.3, 5, mean=2.0), dataset="cremad")])
    four = next(j for j in claims.judge(res) if j.claim.number == 4)
    assert (four.margin, four.margin_source) == (0.1, "default")
    assert claims.PAPER_FIGURES[4]["cremad"] == "r 0.52 → 0.76"


def test_n5_rollingq_per_architecture_from_the_trials(table1):
    """N5: every RollingQ pair on every data set, each figure recomputed here from trials.csv:
    the paired seed differences and their t-interval, Holm over the data set's pairs
    (multipletests), the sign-flip p (scipy permutation_test), the paper's gain, the one-sided
    test against it, the Clopper–Pearson interval of the share of seeds improved, and the
    prediction interval of one seed's paper-style difference."""
    res = load(table1)
    t = architectures.pairs(res)
    assert sorted(zip(t["dataset"], t["on"], strict=True)) == sorted(
        (ds, v) for ds in ("cremad", "kinetics_sounds")
        for v in ("attn_rollingq", "attn2_rollingq", "mmml_rollingq"))
    assert set(t["paper_row"]) == {"Vanilla MT + RollingQ vs Vanilla MT",
                                   "Vanilla MT* + RollingQ vs Vanilla MT*",
                                   "MMML + RollingQ vs MMML"}
    raw = {}
    for folder in table1:
        trials = pd.read_csv(folder / "trials.csv")
        ds = "cremad" if folder == table1[0] else "kinetics_sounds"
        acc = trials.pivot(index="train.seed", columns="variant", values="test_acc_at_best_val")
        best = trials.pivot(index="train.seed", columns="variant", values="best_test_acc")
        for on, off in (("attn_rollingq", "attn"), ("attn2_rollingq", "attn2"),
                        ("mmml_rollingq", "mmml")):
            raw[(ds, on)] = (100 * (acc[on] - acc[off]).to_numpy(),
                             100 * (best[on] - best[off]).to_numpy())
    for ds, g in t.groupby("dataset"):
        holm = multipletests([stats.ttest_1samp(raw[(ds, v)][0], 0).pvalue for v in g["on"]],
                             method="holm")[1]
        assert g["p_holm"].to_numpy() == pytest.approx(holm)
        assert set(g["family"]) == {f"the 3 RollingQ pairs on {ds}"}
    paper = PAPER_TABLE1
    for r in t.to_dict("records"):
        x, style = raw[(r["dataset"], r["on"])]
        ci = stats.ttest_1samp(x, 0).confidence_interval(0.95)
        assert (r["effect"], r["low"], r["high"]) == pytest.approx((x.mean(), ci.low, ci.high))
        flips = stats.permutation_test((x,), np.mean, permutation_type="samples",
                                       n_resamples=np.inf)
        assert r["sign_flip_p"] == pytest.approx(flips.pvalue)
        on_row, off_row = r["paper_row"].split(" vs ")
        gain = paper[r["dataset"]][on_row] - paper[r["dataset"]][off_row]
        assert r["paper_gain"] == pytest.approx(gain)
        assert r["smaller_p"] == pytest.approx(stats.ttest_1samp(x, gain,
                                                                 alternative="less").pvalue)
        assert r["improved"] == int((x > 0).sum())
        assert (r["improve_low"], r["improve_high"]) == pytest.approx(
            proportion_confint(r["improved"], 5, method="beta"))
        half = stats.t.ppf(0.975, 4) * style.std(ddof=1) * math.sqrt(1 + 1 / 5)
        assert (r["predict_low"], r["predict_high"]) == pytest.approx(
            (style.mean() - half, style.mean() + half))


def test_n5_the_report_has_the_per_architecture_table(table1, tmp_path):
    # the claims section needs no outcome
    section = sections(table1, out=tmp_path, metrics=("acc",)).by_key()["claims"]
    pairs = section.data["pairs"]
    assert len(pairs) == 6 and set(pairs["dataset"]) == {"cremad", "kinetics_sounds"}
    assert "Vanilla MT + RollingQ vs Vanilla MT" in set(pairs["paper_row"])
    table = next(b for b in section.blocks if isinstance(b, Table)
                 and b.caption.startswith("RollingQ's effect on the headline accuracy per pair"))
    assert len(table.frame) == 6
    assert any(s.startswith("RollingQ per architecture on cremad: Vanilla MT + RollingQ")
               for s in section.summary)


def _pooled_coverage(k: int, tau: float, sims: int, rng: np.random.Generator) -> float:
    """Share of simulated studies whose average-over-data-sets interval covers the average of
    the data sets' true effects (5 seeds, per-seed sd 1.5, true effects 1 + τ·z)."""
    covered = 0
    for _ in range(sims):
        truth = 1.0 + tau * rng.standard_normal(k)
        family = [claims.Judgement(claims.CLAIMS[5], f"d{i}", claims.INCONCLUSIVE,
                                   diffs=pd.Series(rng.normal(truth[i], 1.5, 5)))
                  for i in range(k)]
        r = claims.pooled(claims.decide(family, plan=False)).iloc[0]
        covered += r["low"] <= truth.mean() <= r["high"]
    return covered / sims


@pytest.mark.parametrize("k,tau", [(2, 0.0), (3, 2.0)])
def test_n2_the_average_over_data_sets_covers_its_truth(k, tau):
    """N2: the z random-effects interval covered the data sets' average effect in 75–91 % of
    studies with 2–3 data sets; the Welch–Satterthwaite t interval of their common-effect
    average covers it at least 93 % of the time (400 simulated studies, Monte-Carlo se 0.011)."""
    assert _pooled_coverage(k, tau, 400, np.random.default_rng(k)) >= 0.93


def test_n2_the_sentence_follows_the_verdicts(table1):
    """N2: with claim 6 decided on one data set and undecided on the other, the sentence names
    both as they are; it never says a decided data set has too few seeds."""
    res = load(table1)
    got = claims.judge(res)
    v = {j.dataset: j.verdict for j in got if j.claim.number == 6}
    text = claims_text.pooled_text(claims.pooled(got), got)[-1]
    assert text.startswith("Claim (6)") and "too few seeds" not in text
    for ds, verdict in v.items():
        if verdict == claims.INCONCLUSIVE:
            assert f"we cannot tell yet on {ds}" in text
        else:
            assert f"{verdict} on {ds}" in text
    assert "a description of these data sets, not a test" in text


def test_n3_simple_effects_use_each_data_sets_own_variance(tmp_path):
    """N3: four levels with no true difference, CREMA-D's seed sd 3 points and Kinetics-Sounds'
    0.3. The pooled model gave both data sets the same interval (±1.86); each data set's own
    model gives intervals about ten times wider on the noisier one, equal to that data set's
    own OLS fit."""
    import statsmodels.formula.api as smf

    search = {"model.fusion_layers": {"role": "scientific", "type": "choice",
                                      "values": [1, 2, 3, 4]}}
    folders = [write_study(tmp_path / ds, name="layers", search=search, seeds=(0, 1, 2, 3, 4),
                           effect=lambda p: 0.6, noise_sd=sd, rng_seed=i,
                           fixed={"model.fusion": "attn", "data.name": ds})
               for i, (ds, sd) in enumerate((("cremad", 0.03), ("kinetics_sounds", 0.003)))]
    s = sensitivity.analyse(load(folders))
    half = (s.simple["high"] - s.simple["low"]).groupby(s.simple["dataset"]).mean() / 2
    assert half["cremad"] / half["kinetics_sounds"] > 5
    t = pd.read_csv(folders[0] / "trials.csv").assign(
        y=lambda d: 100 * d["test_acc_at_best_val"], x=lambda d: d["model.fusion_layers"],
        seed=lambda d: d["train.seed"])
    own = smf.ols("y ~ C(x) + C(seed)", data=t).fit()
    ci = own.conf_int().loc["C(x)[T.2]"]
    row = s.simple[(s.simple["dataset"] == "cremad") & (s.simple["level"] == "2")].iloc[0]
    assert (row["low"], row["high"]) == pytest.approx((ci[0], ci[1]))
    assert set(s.tukey["dataset"]) == {"cremad", "kinetics_sounds"}  # no cross-data-set EMMs


def _six_at(p: float, n: int) -> dict[int, np.ndarray]:
    """Every claim's differences with raw p exactly ``p`` on the claimed side."""
    mean = stats.t.isf(p / 2, n - 1) / math.sqrt(n)
    return {c.number: c.sign * declarations_.MARGINS[c.number] * (mean + _standard(n))
            for c in claims.CLAIMS}


def test_n9_the_family_does_not_change_with_how_folders_are_grouped(tmp_path):
    """N9: each claim's raw p is 0.007 on each of two data sets. Holm over one data set's six
    claims rejects them all (6 × 0.007 = 0.042); over the twelve of a combined report it
    rejected none. With the default family (per data set) the combined report gives the
    verdicts each folder's own report gives; a study that declares `family: report` gets the
    larger family, and the report says which per-study verdicts that changes."""
    folders = [plant_claims(tmp_path / ds, _six_at(0.007, 6), dataset=ds)
               for ds in ("cremad", "kinetics_sounds")]
    alone = [claims.judge(load([f])) for f in folders]
    assert all(j.verdict == claims.REPRODUCED and j.family == 6 for js in alone for j in js)
    together = claims.judge(load(folders))
    assert all(j.verdict == claims.REPRODUCED and j.family == 6 for j in together)
    assert {j.family_name for j in together} == {"the 6 claims on cremad",
                                                 "the 6 claims on kinetics_sounds"}
    assert claims_text.regrouped(load(folders), together) == []
    folders[1] = plant_claims(tmp_path / "declared", _six_at(0.007, 6), dataset="kinetics_sounds",
                              claims={"family": "report"})  # the same trials, declared so
    res = load(folders)
    report = claims.judge(res)
    assert all(j.verdict == claims.INCONCLUSIVE and j.family == 12 for j in report)
    changed = claims_text.regrouped(res, report)
    assert len(changed) == 12 and "is reproduced in" in changed[0]
    assert "(Holm over the 6 claims on cremad, 6 seeds) and inconclusive here" in changed[0]


def test_n10_the_sign_flip_p_and_where_it_cannot_reach_holm(tmp_path):
    """N10: the exact sign-flip p beside the t p: with 5 seeds all on the claimed side it is
    2/2^5 = 0.0625, above any Holm level, so the verdict rests on normality (†); with 10 seeds
    it can reach Holm's level and is not flagged."""
    for n, short in ((5, True), (10, False)):
        res = load([plant_claims(tmp_path / str(n), _effects(0.3, n, mean=2.0))])
        got = claims.judge(res)
        for j in got:
            x = j.diffs.to_numpy()
            want = stats.permutation_test((x,), np.mean, permutation_type="samples",
                                          n_resamples=np.inf).pvalue
            assert j.sign_flip_p == pytest.approx(want)
            assert j.sign_flip_short is short
        assert got[0].sign_flip_p == pytest.approx(2 / 2 ** n)
        text = claims_text.table(res, got)["sign-flip p"].iloc[0]
        assert text.endswith("†") is short


def test_n11_no_spread_is_deterministic_and_float_noise_is_zero(tmp_path):
    """N11: every seed's difference equal (sd 0) gave p = 0 and `reproduced` from two seeds; it
    is now `deterministic: no test`, outside the family. Differences of 1e-15 are 0."""
    diffs = _effects(0.3, 4, mean=2.0)
    diffs[6] = np.full(4, 2.0)  # RollingQ adds exactly 2 points on every seed
    diffs[5] = np.array([1e-15, -2e-15, 0.0, 1e-15])
    res = load([plant_claims(tmp_path, diffs)])
    got = {j.claim.number: j for j in claims.judge(res)}
    assert got[6].verdict != "reproduced" and np.isnan(got[6].p)  # was: p 0, from no spread
    for number in (5, 6):
        assert got[number].verdict == claims.DETERMINISTIC and not got[number].judged
        assert np.isnan(got[number].p) and got[number].family == 0
    assert got[5].effect == 0.0 and (got[5].diffs == 0).all()
    assert got[6].effect == pytest.approx(2.0)
    assert got[1].family == 4  # the four claims that vary
    assert "deterministic: no test" in claims_text.verdict_text(got[6])


def test_n12_the_paper_comparison_has_a_single_seed_prediction_interval(table1):
    """N12: the paper's number is one seed; the comparison gives where one seed of ours falls
    (mean ± t(n − 1)·sd·√(1 + 1/n) of our paper-style numbers) and whether the paper's is
    inside."""
    res = load(table1)
    comp = paper_comparison(res, tables.main_table(res))
    row = comp[(comp["data set"] == "cremad") & (comp["variant"] == "visual")].iloc[0]
    trials = pd.read_csv(table1[0] / "trials.csv")
    x = 100 * trials.loc[trials["variant"] == "visual", "best_test_acc"].to_numpy()
    half = stats.t.ppf(0.975, 4) * x.std(ddof=1) * math.sqrt(1.2)
    assert row["one seed of ours, paper-style [95% PI]"] == (
        f"[{x.mean() - half:.1f}, {x.mean() + half:.1f}]")
    inside = x.mean() - half <= 36.3 <= x.mean() + half
    assert row["paper's number inside"] == ("yes" if inside else "**no**")


def test_a_bad_claims_block_stops_the_report_with_one_line(tmp_path, capsys):
    """A folder whose space.yaml declares a bad margin: `python -m analysis.report` exits 2
    with one line naming the rule, the value and the file, and writes no report."""
    from analysis.report import main

    folder = write_study(tmp_path, name="claims", search=ON_OFF, effect=lambda p: 0.7,
                         claims={"margins": {6: -1}})
    assert main([str(folder)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "`claims.margins.6 > 0` must hold, but got -1" in err[0], err
    assert f"{folder}/space.yaml" in err[0]
    assert not (folder / "report.md").exists()
