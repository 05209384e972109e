"""The verdict engine on results folders whose per-seed claim differences the test plants
exactly: the family's Holm correction, equivalence (`no effect`) against `inconclusive` with
the seeds it needs, and the trials each arm lost."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats
from statsmodels.stats.power import TTestPower

from analysis import claims, per_sample, worst_case
from analysis import declarations as declarations_
from analysis import power as planning
from analysis.report import captions, claims_text, sections
from analysis.report.blocks import Figure, Para, Table
from analysis.results import ResultsError, load
from tests.analysis.studies import write_study

ON_OFF = {"rollingq.enabled": {"role": "scientific", "type": "choice", "values": [False, True]}}


def report(folder, tmp_path) -> dict:
    """The report of ``folder`` as data: its sections by key."""
    return sections([folder], out=tmp_path / "report").by_key()


def paragraphs(section) -> list[str]:
    return [b.text for b in section.blocks if isinstance(b, Para)]


def _standard(n: int) -> np.ndarray:
    """n fixed values with mean 0 and sd 1."""
    z = np.linspace(-1, 1, n)
    return (z - z.mean()) / z.std(ddof=1)


def plant_claims(tmp_path, diffs: dict[int, np.ndarray], statuses=None,
                 dataset: str = "synthetic", claims: dict | None = None):
    """A RollingQ on/off study on ``dataset`` whose per-seed on − off differences (claim 1:
    the vanilla |AIR| growth) are exactly ``diffs[claim]``, in the claims' units; ``claims``:
    the spec's claims block."""
    n = len(next(iter(diffs.values())))
    folder = write_study(tmp_path, name=f"verdicts_{dataset}", search=ON_OFF,
                         effect=lambda p: 0.7, seeds=tuple(range(n)), statuses=statuses,
                         fixed={"model.fusion": "attn", "data.name": dataset}, claims=claims)
    t = pd.read_csv(folder / "trials.csv")
    seed, on = t["train.seed"].to_numpy(), t["rollingq.enabled"].to_numpy(dtype=bool)
    x = {k: np.asarray(v, dtype=float)[seed] * on for k, v in diffs.items()}  # 0 for off
    finished = t["status"].eq("finished")
    t["test_acc_at_best_val"] = np.where(finished, 0.70 + x[6] / 100, np.nan)
    for m in ("audio", "visual"):  # per modality: -r = 0.2 + x
        t[f"attn_noise_r_{m}"] = -(0.2 + x[4])
    for lv in (0.0, 0.25, 0.5, 0.75, 1.0):  # straight curves: mean drop = half the slope
        t[f"noise_audio_{lv}"] = np.where(finished, 0.9 - 2 * (20 + x[5]) / 100 * lv, np.nan)
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
    return {c.number: c.sign * declarations_.MARGINS[c.number] * (mean + scale * _standard(n))
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
    """The seeds the report should ask for at seed sd ``sd``, by statsmodels' root finder: 80 %
    power to find an effect of the margin at Bonferroni's level, and 2·P − 1 ≥ 80 % for the
    TOST at no effect."""
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
        if verdict == claims.INCONCLUSIVE:  # a range: at the sd and at its 80 % UCL
            ucl = 0.4 * j.margin * math.sqrt((n - 1) / stats.chi2.ppf(0.2, n - 1))
            assert j.sd_ucl == pytest.approx(ucl)
            low, high = _needed(0.4 * j.margin, j.margin, 6), _needed(ucl, j.margin, 6)
            assert abs(j.seeds_low - max(low, n + 1)) <= 1, (j.claim.number, j.seeds_low, low)
            assert abs(j.seeds_needed - high) <= 1, (j.claim.number, j.seeds_needed, high)
            assert j.power >= 0.8 and j.power_null >= 0.8
            assert (f"needs {j.seeds_needed} seeds; range {j.seeds_low}–{j.seeds_needed}"
                    in claims_text.verdict_text(j))
        else:
            assert j.tost_holm < 0.05 and j.p_holm == pytest.approx(1.0)


def test_failures_are_counted_by_arm_and_tested(tmp_path):
    """Three of five RollingQ trials errored, diverged or timed out, no vanilla trial: each
    claim says it used 2 of 5 on trials, and the Fisher test is scipy's on that table."""
    folder = plant_claims(tmp_path, _effects(0.3, 5, mean=2.0),
                          statuses={5: "errored", 6: "diverged", 8: "timed_out"})
    res = load([folder])
    lost = claims.failures(res).iloc[0]
    assert (lost["on_lost"], lost["on_trials"], lost["off_lost"], lost["off_trials"]) == (
        3, 5, 0, 5)
    assert lost["p"] == pytest.approx(stats.fisher_exact([[3, 2], [0, 5]]).pvalue)
    got = {j.claim.number: j for j in claims.judge(res)}
    assert got[6].used == {"on": 2, "off": 2} and got[6].expected == {"on": 5, "off": 5}
    assert got[1].used == {"off": 5} and got[1].expected == {"off": 5}
    section = report(folder, tmp_path)["claims"]
    assert section.data["lost"].equals(claims.failures(res))
    assert {j.claim.number: j.used for j in section.data["judgements"]}[6] == {"on": 2, "off": 2}


def test_the_report_opens_the_claims_with_the_forest_plot(tmp_path):
    folder = plant_claims(tmp_path, _effects(0.3, 5, mean=2.0))
    section = report(folder, tmp_path)["claims"]
    first = section.blocks[0]
    assert isinstance(first, Figure) and first.path.stem == "claims_forest"
    assert (tmp_path / "report" / "figures" / "claims_forest.png").is_file()
    assert any("(mechanism checks)" in s and "Holm over the 6 claims on synthetic" in s
               for s in section.summary)


def test_the_worst_case_puts_lost_trials_at_chance_and_says_which_verdicts_change(tmp_path):
    """Ten seeds, a clear effect on every claim; one RollingQ trial errored. Put back at
    chance accuracy (25 % with 4 classes) claim 6's mean difference falls by (70 − 25) / 10
    points and it is no longer reproduced; put back at the best accuracy seen it stays so."""
    n = 10
    folder = plant_claims(tmp_path, _effects(0.3, n, mean=3.0), statuses={2 * n - 1: "errored"})
    res = load([folder])
    got = claims.judge(res)
    assert {j.verdict for j in got} == {claims.REPRODUCED}
    assert per_sample.chance_accuracy(res, "synthetic") == pytest.approx(25.0)
    table = worst_case.worst_case(res, got).set_index("claim")
    assert table.loc[6, "lost"] == "on 1, off 0"
    assert table.loc[6, "verdict"] == claims.REPRODUCED and table.loc[6, "for"] == claims.REPRODUCED
    assert table.loc[6, "against"] != claims.REPRODUCED and table.loc[6, "changes"]
    # the vanilla trials lost nothing: claim 1 stands either way
    assert table.loc[1, "against"] == table.loc[1, "for"] == claims.REPRODUCED
    assert not table.loc[1, "changes"]
    # by hand: the errored seed's difference at chance, the other nine as planted
    planted = _effects(0.3, n, mean=3.0)[6]
    t = pd.read_csv(folder / "trials.csv")
    lost_seed = int(t.loc[2 * n - 1, "train.seed"])
    off = 100 * t.loc[(t["train.seed"] == lost_seed) & ~t["rollingq.enabled"],
                      "test_acc_at_best_val"].iloc[0]
    x = planted.copy()
    x[lost_seed] = 25.0 - off
    assert table.loc[6, "effect_against"] == pytest.approx(x.mean())
    p = stats.ttest_1samp(x, 0.0).pvalue
    assert p * 6 > 0.05  # Holm's first step over the six already fails: not reproduced
    line = claims_text.worst_case_text(worst_case.worst_case(res, got))
    assert "(6) reproduced → " in line and "verdict(s) would change" in line
    assert line in paragraphs(report(folder, tmp_path)["claims"])


def test_no_lost_trials_no_worst_case(tmp_path):
    res = load([plant_claims(tmp_path, _effects(0.3, 5, mean=2.0))])
    assert worst_case.worst_case(res, claims.judge(res)).empty
    assert claims_text.worst_case_text(worst_case.worst_case(res, claims.judge(res))) == ""


def test_a_planted_interaction_with_data_set_is_found(tmp_path):
    """RollingQ adds 3 accuracy points on CREMA-D and nothing on Kinetics-Sounds (8 seeds,
    0.3 margins of spread): the ANOVA's RollingQ × data set term finds it (HC3), the simple
    effects give +3 on one and about 0 on the other, and the pooled line of claim 6 says the
    effect differs between the data sets (Welch's test: with two data sets, scipy's Welch t)
    and describes their average with the Welch–Satterthwaite df."""
    from analysis import sensitivity

    n = 8
    folders = []
    for ds, mean in (("cremad", 3.0), ("kinetics_sounds", 0.0)):
        diffs = _effects(0.3, n, mean=2.0)
        diffs[6] = mean + 0.3 * _standard(n)
        folders.append(plant_claims(tmp_path / ds, diffs, dataset=ds))
    res = load(folders)
    assert res.datasets == ["cremad", "kinetics_sounds"]
    s = sensitivity.analyse(res)
    a = s.anova.set_index("term")
    assert a.loc["rollingq.enabled × data set", "p"] < 1e-4
    simple = s.simple.set_index("dataset")
    assert simple.loc["cremad", "delta"] == pytest.approx(3.0, abs=1e-6)
    assert simple.loc["cremad", "low"] > 0 and simple.loc["cremad", "p_holm"] < 0.05
    assert simple.loc["kinetics_sounds", "delta"] == pytest.approx(0.0, abs=1e-6)
    assert simple.loc["kinetics_sounds", "low"] < 0 < simple.loc["kinetics_sounds", "high"]

    got = claims.judge(res)
    v = {(j.dataset, j.claim.number): j for j in got}
    assert v[("cremad", 6)].verdict == claims.REPRODUCED
    assert v[("kinetics_sounds", 6)].verdict != claims.REPRODUCED
    table = claims.pooled(got).set_index("claim")
    x, y = (v[(ds, 6)].diffs.to_numpy() for ds in res.datasets)
    welch = stats.ttest_ind(x, y, equal_var=False)
    assert table.loc[6, "differ_p"] == pytest.approx(welch.pvalue)
    assert table.loc[6, "differ_f"] == pytest.approx(welch.statistic ** 2)
    assert table.loc[6, "effect"] == pytest.approx(1.5)
    assert table.loc[6, "df"] == pytest.approx(welch.df)
    # the average's half-width is half the Welch interval of the difference (same variance / 4)
    ci = welch.confidence_interval(0.95)
    assert table.loc[6, "high"] - table.loc[6, "low"] == pytest.approx((ci.high - ci.low) / 2)
    assert table.loc[2, "differ_p"] > 0.5  # the same planted effect on both
    text = dict(zip(table.index, claims_text.pooled_text(claims.pooled(got), got), strict=True))
    assert "the effect differs between them" in text[6]
    assert "is reproduced on each of these 2 data sets" in text[2]
    got = sections(folders, out=tmp_path / "report").by_key()
    assert text[6] in paragraphs(got["claims"])
    assert len(got["sensitivity"].data["fits"]["acc"].simple)  # each data set's own model


def _with_predictions(folder, samples: int, on_gain: dict[int, int], seed: int = 0):
    """Writes each trial's predictions.npz (one shared test set) and its headline accuracy
    from them: off trials right on a random 70 %; an on trial of seed s right on the same
    samples, with ``on_gain[s]`` of the off trial's wrong ones made right."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 4, samples).astype(np.int16)
    t = pd.read_csv(folder / "trials.csv")
    (folder / "predictions").mkdir(exist_ok=True)
    base = {s: rng.random(samples) < 0.7 for s in t["train.seed"].unique()}
    paths, accs = [], []
    for row in t.to_dict("records"):
        right = base[row["train.seed"]].copy()
        if row["rollingq.enabled"]:
            wrong = np.flatnonzero(~right)
            right[wrong[:on_gain[row["train.seed"]]]] = True
        pred = np.where(right, labels, (labels + 1) % 4).astype(np.int16)
        path = f"predictions/{row['trial_id']}.npz"
        np.savez(folder / path, label=labels, pred=pred, epoch=np.int64(3))
        paths.append(path)
        accs.append(right.mean())
    t["predictions"], t["test_acc_at_best_val"] = paths, accs
    t.to_csv(folder / "trials.csv", index=False)
    return labels


def test_claim_6_from_the_test_set_bootstrap_and_mcnemar(tmp_path):
    """Five seeds, a test set of 600: RollingQ turns 6–14 of the vanilla model's wrong samples
    right per seed. The test-set effect is the seed-level claim's effect exactly; its BCa
    interval is about the normal one; McNemar per seed is the exact binomial test of the
    discordant samples (here all on-only)."""
    from statsmodels.stats.multitest import multipletests

    folder = plant_claims(tmp_path, _effects(0.3, 5, mean=2.0))
    gain = {0: 6, 1: 8, 2: 10, 3: 12, 4: 14}
    _with_predictions(folder, 600, gain)
    res = load([folder])
    j = next(j for j in claims.judge(res) if j.claim.number == 6)
    row = per_sample.test_set(res).iloc[0]
    assert row["pairs"] == 5 and row["samples"] == 600 and not row["reason"]
    assert row["effect"] == pytest.approx(j.effect) == pytest.approx(100 * 10 / 600)
    # each test sample's difference, averaged over the seeds, from the files themselves
    t = pd.read_csv(folder / "trials.csv")
    right = {(r["train.seed"], r["rollingq.enabled"]): np.load(folder / r["predictions"])
             for r in t.to_dict("records")}
    x = 100 * np.mean([(right[(s, True)]["pred"] == right[(s, True)]["label"]).astype(float)
                       - (right[(s, False)]["pred"] == right[(s, False)]["label"])
                       for s in gain], axis=0)
    assert x.mean() == pytest.approx(row["effect"])
    half = stats.norm.ppf(0.975) * x.std(ddof=1) / np.sqrt(len(x))  # the normal interval
    assert row["low"] < row["effect"] < row["high"]
    assert (row["high"] - row["low"]) / 2 == pytest.approx(half, rel=0.15)
    ps = []
    for m in row["mcnemar"]:
        assert m["on_only"] == gain[m["seed"]] and m["off_only"] == 0
        want = stats.binomtest(gain[m["seed"]], gain[m["seed"]], 0.5).pvalue
        assert m["p"] == pytest.approx(want)
        ps.append(want)
    holm = multipletests(ps, method="holm")[1]
    assert [m["p_holm"] for m in row["mcnemar"]] == pytest.approx(list(holm))
    better = int((holm < 0.05).sum())
    assert row["significant"] == f"RollingQ better in {better}, worse in 0 of 5 pairs"
    section = report(folder, tmp_path)["claims"]
    reported = section.data["test_set"].iloc[0]
    assert [(m["seed"], m["on_only"], m["off_only"]) for m in reported["mcnemar"]][0] \
        == (0, 6, 0)
    assert any(isinstance(b, Table) and b.caption.startswith("Claim (6) from the test set's")
               for b in section.blocks)


def test_predictions_that_disagree_with_the_accuracy_are_not_used(tmp_path):
    folder = plant_claims(tmp_path, _effects(0.3, 3, mean=2.0))
    _with_predictions(folder, 200, {0: 5, 1: 5, 2: 5})
    t = pd.read_csv(folder / "trials.csv")
    t["test_acc_at_best_val"] += 0.01  # the files no longer match the recorded accuracy
    t.to_csv(folder / "trials.csv", index=False)
    row = per_sample.test_set(load([folder])).iloc[0]
    assert row["pairs"] == 0 and "6 trial(s) have none" in row["reason"]


def test_an_inconclusive_claim_prints_the_command_that_grows_its_study(tmp_path):
    folder = plant_claims(tmp_path, _effects(0.4, 3))
    res = load([folder])
    got = claims.judge(res)
    lines = claims_text.grow_commands(res, got)
    assert len(lines) == 6
    for j, line in zip(got, lines, strict=True):
        seeds = ",".join(map(str, range(j.seeds_needed)))
        assert line.endswith(f"`python study/run.py --space verdicts_synthetic --resume {folder} "
                             f"--set seeds=[{seeds}]`."), line
    said = paragraphs(report(folder, tmp_path)["claims"])
    caution = captions.text("claims.grow_caution")
    assert said.index(caution) == said.index(lines[-1]) + 1  # right after the commands
    assert said[0] != caution and "no error guarantee" in caution


def test_a_grown_study_says_its_verdicts_read_again_have_no_error_guarantee(tmp_path):
    """experiments.json lists a grown study's Ray experiments and the seeds of each: the
    report names the growth and what rereading costs; a study that never grew says nothing,
    and a malformed file is one line."""
    folder = plant_claims(tmp_path, _effects(0.4, 5))
    section = report(folder, tmp_path / "before")["claims"]
    assert section.data["grown"] == {}
    assert not any("grew by seeds" in p for p in paragraphs(section))
    (folder / "experiments.json").write_text(json.dumps(
        [{"ray": "ray", "seeds": [0, 1, 2]}, {"ray": "ray-2", "seeds": [3, 4]}]))
    section = report(folder, tmp_path / "after")["claims"]
    assert section.data["grown"] == {str(folder): [[0, 1, 2], [3, 4]]}
    grown = [p for p in paragraphs(section) if "grew by seeds" in p]
    assert grown == [captions.text("claims.grown", folder=folder, history="0, 1, 2, then 3, 4")]
    (folder / "experiments.json").write_text('[{"ray": "ray"}]')
    with pytest.raises(ResultsError, match="experiments.json: not a list of"):
        load([folder])


def test_a_data_set_without_a_favoured_modality_says_how_to_declare_one(tmp_path):
    """A features data set declares no favoured modality: claim 5 (the favoured modality's
    noise drop) cannot be judged and says how to declare it; the other claims are judged, and
    the evidence table's simultaneous intervals are at the level of a family of five."""
    res = load([plant_claims(tmp_path, _effects(0.3, 5, mean=2.0), dataset="features")])
    got = {j.claim.number: j for j in claims.judge(res)}
    assert got[5].verdict == claims.CANNOT
    assert "--set data.favoured=<modality>" in got[5].reason
    assert all(got[c].verdict == claims.REPRODUCED for c in (1, 2, 3, 4, 6))
    table = claims_text.evidence_table(res, list(got.values()))
    column = "simultaneous interval (Bonferroni over its family)"
    assert [c for c in table.columns if c.startswith("simultaneous")] == [column]
    assert table.set_index("claim").loc["(6)", column].endswith("(99.0%)")  # a family of 5


def test_seeds_needed_at_a_large_standardised_effect():
    """At d = 1 / 0.32 statsmodels' two-sided power is NaN for 5 to 12 seeds (scipy's
    noncentral t cdf fails in the far tail): the seeds needed must still be the fewest at which
    both powers reach 80 %, here computed from scipy's noncentral t near tail (the far tail is
    below the central t's, level / 2), not the first n past the NaNs."""
    sd, delta, m = 0.3195, 1.0, 6
    want = None
    for n in range(2, 30):
        df, nc, level = n - 1, delta / sd * math.sqrt(n), 0.05 / m
        detect = stats.nct.sf(stats.t.isf(level / 2, df), df, nc)
        null = 2 * stats.nct.sf(stats.t.isf(level, df), df, nc) - 1
        if min(detect, null) >= 0.8:
            want = n
            break
    got, power, _ = planning.seeds_needed(sd, delta, m)
    assert got == want == 5 and power == pytest.approx(detect, abs=1e-2)
