"""The verdict engine on results folders whose per-seed claim differences the test plants
exactly: the family's Holm correction, equivalence (`no effect`) against `inconclusive` with
the seeds it needs, and the trials each arm lost."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats
from statsmodels.stats.power import TTestPower

from analysis import claims
from analysis.report import generate
from analysis.results import load
from tests.analysis.studies import write_study

ON_OFF = {"rollingq.enabled": {"role": "scientific", "type": "choice", "values": [False, True]}}


def _standard(n: int) -> np.ndarray:
    """n fixed values with mean 0 and sd 1."""
    z = np.linspace(-1, 1, n)
    return (z - z.mean()) / z.std(ddof=1)


def plant_claims(tmp_path, diffs: dict[int, np.ndarray], statuses=None):
    """A RollingQ on/off study on synthetic data whose per-seed on − off differences (claim 1:
    the vanilla |AIR| growth) are exactly ``diffs[claim]``, in the claims' units."""
    n = len(next(iter(diffs.values())))
    folder = write_study(tmp_path, name="verdicts", search=ON_OFF, effect=lambda p: 0.7,
                         seeds=tuple(range(n)), statuses=statuses)
    t = pd.read_csv(folder / "trials.csv")
    seed, on = t["train.seed"].to_numpy(), t["rollingq.enabled"].to_numpy(dtype=bool)
    x = {k: np.asarray(v, dtype=float)[seed] * on for k, v in diffs.items()}  # 0 for off
    finished = t["status"].eq("finished")
    t["test_acc_at_best_val"] = np.where(finished, 0.70 + x[6] / 100, np.nan)
    t["attn_noise_pooled_adaptivity"] = 0.2 + x[4]
    t["noise_drop_audio"] = (20 + x[5]) / 100
    imbalance = 0.4 + x[3]
    t["val_share_audio"], t["val_share_visual"] = (1 + imbalance) / 2, (1 - imbalance) / 2
    t.to_csv(folder / "trials.csv", index=False)
    c = pd.read_csv(folder / "curves.csv")
    ends = dict(zip(t["trial_id"], 0.3 + np.asarray(diffs[1], dtype=float)[seed] + x[2],
                    strict=True))
    last = c.groupby("trial_id")["epoch"].transform("max")
    start = 0.3  # every curve starts here: growth = end - 0.3 (on: + the claim-2 difference)
    c["val_air"] = start + (c["trial_id"].map(ends) - start) * c["epoch"] / last
    c.to_csv(folder / "curves.csv", index=False)
    return folder


def _effects(scale: float, n: int, mean: float = 0.0) -> dict[int, np.ndarray]:
    """Every claim's differences: ``mean`` margins on the claimed side plus ``scale`` margins
    of spread."""
    return {c.number: c.sign * claims.MARGINS[c.number] * (mean + scale * _standard(n))
            for c in claims.CLAIMS}


def test_the_planted_differences_come_back_exactly(tmp_path):
    planted = _effects(0.3, 5, mean=2.0)
    got = {j.claim.number: j for j in claims.judge(load([plant_claims(tmp_path, planted)]))}
    for number, x in planted.items():
        assert got[number].diffs.to_numpy() == pytest.approx(x, abs=1e-9), number


def test_six_claims_at_raw_p_003_do_not_all_survive_holm(tmp_path):
    """Each claim's raw p is 0.03: six separate 95 % verdicts would all read `reproduced`;
    over the family of six, Holm keeps none (its smallest adjusted p is 6 × 0.03)."""
    n = 5
    t_crit = stats.t.isf(0.03 / 2, n - 1)
    mean = t_crit / math.sqrt(n)  # in sd units: ttest_1samp's p is then exactly 0.03
    got = claims.judge(load([plant_claims(tmp_path, _effects(1.0, n, mean=mean))]))
    assert [j.p for j in got] == pytest.approx([0.03] * 6, abs=1e-6)
    assert [j.p_holm for j in got] == pytest.approx([0.18] * 6, abs=1e-6)
    assert all(min(j.low * j.claim.sign, j.high * j.claim.sign) > 0 for j in got)  # raw: no 0
    assert {j.verdict for j in got} == {claims.INCONCLUSIVE}
    assert all(j.sim_low < 0 < j.sim_high for j in got)  # the simultaneous ones hold 0


def _needed(sd: float, delta: float, m: int) -> int:
    """The seeds the report should ask for, by statsmodels' root finder: 80 % power to find an
    effect of the margin at Bonferroni's level, and 2·P − 1 ≥ 80 % for the TOST at no effect."""
    tp = TTestPower()
    detect = tp.solve_power(effect_size=delta / sd, alpha=0.05 / m, power=0.8,
                            alternative="two-sided")
    equivalent = tp.solve_power(effect_size=delta / sd, alpha=0.05 / m, power=0.9,
                                alternative="larger")
    return math.ceil(max(detect, equivalent))


@pytest.mark.parametrize("n,verdict", [(10, claims.NO_EFFECT), (3, claims.INCONCLUSIVE)])
def test_a_small_null_effect_is_no_effect_with_10_seeds_and_inconclusive_with_3(tmp_path, n,
                                                                               verdict):
    """No effect, a spread of 0.4 margins: 10 seeds show it lies within the margin (TOST, Holm
    over six); 3 cannot tell, and say how many seeds would."""
    got = claims.judge(load([plant_claims(tmp_path, _effects(0.4, n))]))
    assert {j.verdict for j in got} == {verdict}
    for j in got:
        assert j.effect == pytest.approx(0.0, abs=1e-9) and j.family == 6
        if verdict == claims.INCONCLUSIVE:
            want = _needed(0.4 * j.margin, j.margin, 6)
            assert abs(j.seeds_needed - want) <= 1, (j.claim.number, j.seeds_needed, want)
            assert j.power >= 0.8 and j.power_null >= 0.8
            assert f"needs {j.seeds_needed} seeds" in claims.verdict_text(j)
        else:
            assert j.tost_holm < 0.05 and j.p_holm == pytest.approx(1.0)


def test_failures_are_counted_by_arm_and_tested(tmp_path):
    """Three of five RollingQ trials errored or diverged, no vanilla trial: each claim says it
    used 2 of 5 on trials, and the Fisher test is scipy's on that table."""
    folder = plant_claims(tmp_path, _effects(0.3, 5, mean=2.0),
                          statuses={5: "errored", 6: "diverged", 8: "errored"})
    res = load([folder])
    lost = claims.failures(res).iloc[0]
    assert (lost["on_lost"], lost["on_trials"], lost["off_lost"], lost["off_trials"]) == (
        3, 5, 0, 5)
    assert lost["p"] == pytest.approx(stats.fisher_exact([[3, 2], [0, 5]]).pvalue)
    got = {j.claim.number: j for j in claims.judge(res)}
    assert got[6].used == {"on": 2, "off": 2} and got[6].expected == {"on": 5, "off": 5}
    assert got[1].used == {"off": 5} and got[1].expected == {"off": 5}
    generate([folder], out=tmp_path / "report")
    md = (tmp_path / "report" / "report.md").read_text()
    assert "| synthetic | 3 of 5 | 0 of 5 |" in md
    assert "on 2 of 5; off 2 of 5" in md


def test_the_report_opens_the_claims_with_the_forest_plot(tmp_path):
    folder = plant_claims(tmp_path, _effects(0.3, 5, mean=2.0))
    generate([folder], out=tmp_path / "report")
    md = (tmp_path / "report" / "report.md").read_text()
    section = md.split("## The paper's claims on this study")[1].split("\n## ")[0]
    assert section.lstrip().startswith("![Each claim's effect per data set")
    assert (tmp_path / "report" / "figures" / "claims_forest.png").is_file()
    assert "mechanism checks" in md and "Holm over the 6 claims × data sets" in md
