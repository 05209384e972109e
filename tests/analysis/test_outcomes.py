"""The outcomes behind the paper's claims (analysis/outcomes.py): computed from a trial's curve,
taken as the trials record them, their ANOVAs finding a planted effect and not a planted null,
the attention table's protocol, the declared favoured modality, the imbalance magnitude."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from analysis import migrate, outcomes, sensitivity
from analysis.results import load
from tests.analysis.studies import ON_OFF, PAPER, write_study

SEEDS = (0, 1, 2, 3, 4)


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
