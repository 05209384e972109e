"""The outcomes behind the paper's claims, their ANOVAs, and each claim's verdict, on results
folders the tests write with planted effects (tests/analysis/studies.py)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from analysis import claims, migrate, outcomes, plots, sensitivity
from analysis.report import claims_text, generate
from analysis.results import load
from tests.analysis.studies import rotating, write_study

ROOT = Path(__file__).resolve().parents[2]
ON_OFF = {"rollingq.enabled": {"role": "scientific", "type": "choice", "values": [False, True]}}
SEEDS = (0, 1, 2, 3, 4)


def on(p: dict) -> bool:
    return rotating(p)


# What the paper claims, planted: RollingQ lowers |AIR| (0.45 -> 0.10), the favoured (audio)
# share (0.70 -> 0.52), the noise drop (0.30 -> 0.12), raises adaptivity (0.1 -> 0.4) and the
# accuracy (+3 points); without it |AIR| grows 0.03 an epoch.
PAPER = {
    "abs_air": lambda p: 0.10 if on(p) else 0.45,
    "air_slope": lambda p: -0.08 if on(p) else 0.03,
    "share": lambda p: 0.52 if on(p) else 0.70,
    "drop": lambda p: 0.12 if on(p) else 0.30,
    "adaptivity": lambda p: 0.40 if on(p) else 0.10,
}


def reverse(planted: dict) -> dict:
    """The opposite of every planted effect (the paper contradicted)."""
    flip = {"abs_air": lambda p: 0.45 if on(p) else 0.10,
            "air_slope": lambda p: 0.03 if on(p) else -0.03,
            "share": lambda p: 0.70 if on(p) else 0.52,
            "drop": lambda p: 0.30 if on(p) else 0.12,
            "adaptivity": lambda p: 0.10 if on(p) else 0.40}
    return {k: flip[k] for k in planted}


NULL = {"abs_air": lambda p: 0.3, "air_slope": lambda p: 0.0, "share": lambda p: 0.6,
        "drop": lambda p: 0.2, "adaptivity": lambda p: 0.25}


def verdicts(folder: Path) -> dict[int, claims.Judgement]:
    return {j.claim.number: j for j in claims.judge(load([folder]))}


@pytest.mark.parametrize("planted,effect,expected", [
    (PAPER, lambda p: 0.70 + (0.03 if on(p) else 0.0), claims.REPRODUCED),
    (reverse(PAPER), lambda p: 0.70 - (0.03 if on(p) else 0.0), claims.CONTRADICTED),
    (NULL, lambda p: 0.70, None),
], ids=["reproduced", "contradicted", "null"])
def test_each_claims_verdict_follows_the_planted_effect(tmp_path, planted, effect, expected):
    folder = write_study(tmp_path, name="planted_claims", search=ON_OFF, effect=effect,
                         seeds=SEEDS, planted=planted, noise_sd=0.01 if expected is None
                         else 0.004, rng_seed=1)
    got = verdicts(folder)
    for j in got.values():
        assert j.n == len(SEEDS) and j.family == 6
        assert j.sim_low <= j.low <= j.effect <= j.high <= j.sim_high  # simultaneous is wider
        assert j.p <= j.p_holm
        decided = j.verdict in (claims.REPRODUCED, claims.CONTRADICTED)
        assert decided == (j.holm_low > 0 or j.holm_high < 0)  # the interval reads the verdict
        assert j.label.startswith("mechanism check")  # synthetic data
        if expected is None:  # a null: never a verdict for or against, 0 inside the family's
            assert j.verdict in (claims.NO_EFFECT, claims.INCONCLUSIVE)
            assert j.sim_low < 0 < j.sim_high
        else:
            assert j.verdict == expected and j.p_holm < 0.05
            assert np.sign(j.effect) == j.claim.sign * (1 if expected == claims.REPRODUCED
                                                        else -1)
    assert "manipulation check" in got[2].label
    # the planted sizes come back (claim 2: 0.10 - 0.45; claim 5: (0.12 - 0.30) / 2 x 100 points
    # (the drop averaged over λ in [0, 1] of a straight curve is half its slope);
    # claim 1: 0.03 an epoch over 3 epochs; claim 3: imbalance 0.09 / 0.95 - 0.45 / 0.95)
    if expected == claims.REPRODUCED:
        assert got[2].effect == pytest.approx(-0.35, abs=0.02)
        assert got[5].effect == pytest.approx(-9, abs=0.8)  # a linear curve's mean drop
        assert got[1].effect == pytest.approx(0.09, abs=0.01)
        assert got[3].effect == pytest.approx((0.09 - 0.45) / 0.95, abs=0.02)


def test_a_study_without_a_vanilla_arm_says_which_claims_it_cannot_judge(tmp_path):
    search = {"rollingq.beta": {"role": "scientific", "type": "choice", "values": [0.1, 0.3]}}
    folder = write_study(tmp_path, name="no_vanilla", search=search, effect=lambda p: 0.7,
                         planted=PAPER)
    got = claims.judge(load([folder]))
    assert {j.verdict for j in got} == {claims.CANNOT}
    sentences = claims_text.cannot_judge(got)
    assert len(sentences) == 6 and all("no vanilla arm" in s for s in sentences)
    md = generate([folder], out=tmp_path / "report").with_suffix(".md").read_text()
    section = md.split("## The paper's claims on this study")[1].split("\n## ")[0]
    assert "claim (1) cannot be judged: the study has no vanilla arm" in section
    assert section.count("**cannot judge**") == 6


def test_claims_pair_rollingq_with_the_vanilla_trial_of_the_same_configuration(tmp_path):
    """Two fusion depths: RollingQ helps by 2 points at depth 1 and 4 at depth 2, and depth 2
    is 10 points worse. The RollingQ arm at depth 2 ran for seed 0 only (the others errored),
    so pooling every on trial against every off trial would credit RollingQ with the depth
    (+7 points for seeds 1 and 2); pairing within a depth gives +3, +2, +2."""
    search = {**ON_OFF, "model.fusion_layers": {"role": "scientific", "type": "choice",
                                                "values": [1, 2]}}

    def effect(p):
        depth = p["model.fusion_layers"]
        return 0.8 - 0.1 * (depth - 1) + (0.02 * depth if on(p) else 0.0)

    folder = write_study(tmp_path, name="paired", search=search, effect=effect, planted=PAPER,
                         noise_sd=0.0, configs=[
                             {"rollingq.enabled": True, "model.fusion_layers": 1},
                             {"rollingq.enabled": False, "model.fusion_layers": 1},
                             {"rollingq.enabled": True, "model.fusion_layers": 2},
                             {"rollingq.enabled": False, "model.fusion_layers": 2}],
                         statuses={7: "errored", 8: "errored"})  # depth 2, on: seeds 1, 2
    j = verdicts(folder)[6]
    assert j.effect == pytest.approx((3 + 2 + 2) / 3, abs=0.01)
    assert j.n == 3 and "mean over 2 configurations" in j.test


@pytest.mark.parametrize("column,key", [
    ("out_abs_air", "abs_air"), ("out_favoured_share", "share"), ("out_noise_drop", "drop"),
    ("out_adaptivity", "adaptivity"), ("out_air_slope", "air_slope"),
])
def test_each_outcomes_anova_finds_the_planted_effect_and_not_the_planted_null(tmp_path,
                                                                               column, key):
    """max_rotations 0 vs 2 carries the planted effect; the rotation kind carries none. The
    kind does nothing at 0 rotations (a nested design): the factorial of the RollingQ trials
    tests the kind, the contrast against the vanilla arm carries the effect."""
    search = {"rollingq.max_rotations": {"role": "scientific", "type": "choice",
                                         "values": [0, 2]},
              "rollingq.rotation": {"role": "scientific", "type": "choice",
                                    "values": ["svd", "plane"]}}
    folder = write_study(tmp_path, name="outcomes", search=search, effect=lambda p: 0.7,
                         planted={key: PAPER[key]}, seeds=(0, 1, 2, 3))
    s = sensitivity.analyse(load([folder]), column)
    a = s.anova.set_index("term")
    assert a.loc["rollingq.rotation", "p"] > 0.05
    v = s.vanilla.set_index("contrast").loc["RollingQ (every cell) − vanilla"]
    assert v["p_holm"] < 0.001 and (v["n"], v["n_vanilla"]) == (8, 4)
    planted = PAPER[key]({"rollingq.max_rotations": 2}) - PAPER[key]({"rollingq.max_rotations": 0})
    scale = 100 if key == "drop" else 1  # the drop is reported in points
    assert np.sign(v["delta"]) == np.sign(planted)
    assert v["delta"] == pytest.approx(planted * scale, abs=0.05 * scale)
    assert s.formula.startswith(f"{column} ~ ") and "vanilla arm" in s.design


def test_outcomes_of_one_trial_from_its_curve():
    curve = pd.DataFrame({"epoch": range(6), "val_air": [0.3, -0.5, 0.35, 0.25, 0.18, 0.1],
                          "rotated": [0, 1, 0, 0, 0, 0]})
    out = outcomes.curve_outcomes(curve, beta=0.2)
    assert out["out_abs_air"] == pytest.approx(0.1)
    assert out["out_air_convergence"] == 3  # rotated at epoch 1, |AIR| <= 0.2 first at 4
    assert out["out_air_converged"] == 1
    assert out["out_air_slope"] == pytest.approx(np.polyfit(range(6), np.abs(
        curve["val_air"]), 1)[0])
    never = outcomes.curve_outcomes(curve.assign(rotated=0), 0.2)  # no rotation: no clock
    assert np.isnan(never["out_air_convergence"]) and np.isnan(never["out_air_converged"])
    censored = outcomes.curve_outcomes(curve, 0.05)  # never converges: censored at the end
    assert censored["out_air_convergence"] == 4 and censored["out_air_converged"] == 0


def test_outcomes_take_what_the_trials_record():
    """A trial's recorded drop, area and share shift are used as recorded (the analysis does
    not recompute them); only a folder without them gets the drop from its curve, on load
    (``analysis.migrate``)."""
    t = pd.DataFrame({"dataset": ["s", "s"], "trial_id": ["a", "b"], "rollingq_on": [False, True],
                      "rollingq_beta": [0.1, 0.1], "favoured_modality": ["audio", "audio"],
                      "noise_audio_0.0": [0.9, 0.8], "noise_audio_0.5": [0.8, 0.8],
                      "noise_audio_1.0": [0.5, 0.6],
                      "noise_f1_audio_0.0": [0.1, 0.1],  # not a modality called "f1_audio"
                      "noise_drop_audio": [0.33, 0.11], "noise_auc_audio": [0.7, 0.72],
                      "attn_noise_r_audio": [-0.6, -0.3], "attn_noise_shift_audio": [-0.2, -0.05],
                      "attn_noise_r_visual": [-0.2, None],  # b: visual's r undefined
                      "attn_noise_shift_visual": [-0.05, -0.01],
                      "attn_noise_r_text": [None, None],  # a modality neither trial has
                      "attn_noise_pooled_adaptivity": [0.5, 0.4]})
    out = outcomes.add_outcomes(t, pd.DataFrame())
    assert out["out_noise_drop"].tolist() == pytest.approx([33.0, 11.0])  # recorded, in points
    assert out["out_noise_auc"].tolist() == pytest.approx([70.0, 72.0])
    # the whole curve: clean minus the trapezoid mean, (0.9 - (0.85 + 0.65) / 2) = 0.15
    assert out["out_noise_mean_drop"].tolist() == pytest.approx([15.0, 5.0])
    assert out["out_noise_mean_drop"].tolist() == pytest.approx(
        [(a[0] - np.trapezoid(a, [0, 0.5, 1])) * 100 for a in ([0.9, 0.8, 0.5], [0.8, 0.8, 0.6])])
    assert out["out_attn_shift"].tolist() == [-0.2, -0.05]
    # per-modality -r averaged over the modalities a trial evaluated; undefined when one is
    assert out["out_adaptivity"].iloc[0] == pytest.approx(0.4)
    assert np.isnan(out["out_adaptivity"].iloc[1])
    assert out["out_adaptivity_pooled"].tolist() == [0.5, 0.4]
    assert set(outcomes.noise_columns(t)) == {"audio"}
    older = outcomes.add_outcomes(migrate.trials(t.drop(columns="noise_drop_audio")),
                                  pd.DataFrame())
    assert older["out_noise_drop"].tolist() == pytest.approx([40.0, 20.0])


def test_the_attention_table_states_the_protocol_and_reads_older_folders(tmp_path):
    from analysis import tables

    folder = write_study(tmp_path, name="attn", search=ON_OFF, effect=lambda p: 0.7,
                         seeds=SEEDS)
    trials = pd.read_csv(folder / "trials.csv")  # as written before the per-modality r
    trials.drop(columns=[c for c in trials if c.startswith(("attn_noise_r_", "attn_noise_shift_"))]
                ).to_csv(folder / "trials.csv", index=False)
    old = load([folder])  # written with the earlier names (attn_noise_r, ...)
    assert "attn_noise_pooled_r" in old.finished and "attn_noise_r" not in old.finished
    assert "pooled r only" in tables.attention_protocol(old)
    assert not len(tables.attention_noise_table(old))  # no per-modality r recorded
    trials = pd.read_csv(folder / "trials.csv")
    on = trials["rollingq.enabled"].astype(str) == "True"
    trials = trials.assign(attn_noise_recipe="mixing", attn_noise_level=1.0,
                           attn_noise_split="test", attn_noise_draws=1,
                           attn_noise_evaluations=300, attn_noise_r_audio=np.where(on, -0.3, -0.6),
                           attn_noise_shift_audio=np.where(on, -0.1, -0.25),
                           attn_noise_r_visual=-0.2, attn_noise_shift_visual=-0.05)
    trials.to_csv(folder / "trials.csv", index=False)
    res = load([folder])
    table = tables.attention_noise_table(res)
    assert len(table) == 4 and set(table["noised modality"]) == {"audio", "visual"}
    audio = table[table["noised modality"] == "audio"]
    assert sorted(audio["share shift"]) == ["-0.100 ± 0.000", "-0.250 ± 0.000"]
    assert "recipe mixing; level 1; split test; draws 1" in tables.attention_protocol(res)


def test_the_favoured_modality_is_declared_never_chosen_from_the_shares_under_test():
    t = pd.DataFrame({"dataset": ["a", "a", "b", "b", "cremad", "mosei"],
                      "rollingq_on": [False, True] * 3,
                      "val_share_audio": [0.3, 0.6, 0.7, 0.4, 0.2, 0.2],
                      "val_share_visual": [0.6, 0.3, 0.2, 0.5, 0.8, 0.8],
                      "favoured_modality": [None, None, "visual", "visual", None, None]})
    fav = outcomes.favoured_modalities(t)
    assert fav["a"][0] is None and "not declared" in fav["a"][1]  # vanilla's visual ignored
    assert fav["b"] == ("visual", "declared by the trials: the data set's built-in bias or "
                          "`data.favoured`")
    assert fav["cremad"][0] == "audio" and fav["mosei"][0] == "text"  # the paper's, not argmax


def test_the_imbalance_magnitude_does_not_reward_an_overshoot():
    """Claim 3's quantity: 0.7/0.3 and 0.3/0.7 are equally imbalanced (an overshoot to the
    other modality is not a rebalance); 0.5/0.5 is balanced."""
    t = pd.DataFrame({"dataset": ["a"] * 3, "trial_id": ["x", "y", "z"],
                      "rollingq_on": [False, True, True], "rollingq_beta": 0.2,
                      "val_share_audio": [0.7, 0.3, 0.5], "val_share_visual": [0.3, 0.7, 0.5]})
    out = outcomes.add_outcomes(t, pd.DataFrame())
    assert out["out_imbalance"].tolist() == pytest.approx([0.4, 0.4, 0.0])


@pytest.mark.integration
def test_report_metrics_option_and_a_bad_outcome_name(tmp_path):
    folder = write_study(tmp_path, name="metrics", search=ON_OFF, effect=lambda p: 0.7,
                         planted=PAPER)
    p = subprocess.run([sys.executable, "-m", "analysis.report", str(folder), "--metrics",
                        "out_abs_air", "--out", str(tmp_path / "r")], cwd=ROOT,
                       capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr
    md = (tmp_path / "r" / "report.md").read_text()
    assert "`out_abs_air ~ rollingq.enabled + seed (block)`" in md
    assert "out_adaptivity ~" not in md
    bad = subprocess.run([sys.executable, "-m", "analysis.report", str(folder), "--metrics",
                          "accuracy"], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2
    assert bad.stderr.strip().splitlines() == [
        "error: --metrics accuracy: no such outcome; valid: " + ", ".join(outcomes.OUTCOMES)]


def test_several_data_sets_get_a_verdict_column_each_beside_the_papers_figure(tmp_path):
    a = write_study(tmp_path / "a", name="claims", search=ON_OFF, planted=PAPER,
                    effect=lambda p: 0.70 + (0.03 if on(p) else 0.0),
                    fixed={"model.fusion": "attn", "data.name": "cremad"})
    b = write_study(tmp_path / "b", name="claims", search=ON_OFF, planted=reverse(PAPER),
                    effect=lambda p: 0.70 - (0.03 if on(p) else 0.0),
                    fixed={"model.fusion": "attn", "data.name": "kinetics_sounds"})
    res = load([a, b])
    t = claims_text.table(res, claims.judge(res)).set_index(["claim", "data set"])
    six = "(6) RollingQ improves accuracy (Table 1)"
    assert t.loc[(six, "cremad"), "verdict"] == "**reproduced**"
    assert t.loc[(six, "kinetics_sounds"), "verdict"] == "**contradicted**"
    assert t.loc[(six, "cremad"), "paper"] == "48.8 → 51.9 %"
    assert t.loc[(six, "cremad"), "margin"] == "±0.5 (default)"  # not the paper's gain
    assert t.loc[("(1) Without RollingQ |AIR| grows during training", "cremad"),
                 "margin"] == "±0.05 (default)"
    for fig in (plots.air_convergence(res), plots.noise_curves(res)):  # a facet per data set
        titles = [ax.get_title() for ax in fig.axes if ax.get_title()]
        assert [t.split(":")[0] for t in titles[:: len(titles) // 2]] == ["cremad",
                                                                          "kinetics_sounds"]
    md = generate([a, b], out=tmp_path / "report").with_suffix(".md").read_text()
    assert "The paper's claims on cremad: (1) reproduced" in md
    assert "The paper's claims on kinetics_sounds: (1) contradicted" in md
