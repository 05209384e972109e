"""Each claim's verdict (analysis/claims.py) on results folders the tests write with the
paper's effects planted, reversed or absent (tests/analysis/studies.py), and in the report's
claims section. The outcomes the claims rest on: test_outcomes.py."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from analysis import claims, outcomes, plots
from analysis.report import claims_text, sections
from analysis.report.blocks import Para
from analysis.results import load
from tests.analysis.studies import ON_OFF, PAPER, rotating, write_study

ROOT = Path(__file__).resolve().parents[2]
SEEDS = (0, 1, 2, 3, 4)


def on(p: dict) -> bool:
    return rotating(p)



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
    section = sections([folder], out=tmp_path / "report").by_key()["claims"]
    assert [j.verdict for j in section.data["judgements"]] == [claims.CANNOT] * 6
    paragraphs = [b.text for b in section.blocks if isinstance(b, Para)]
    assert all(s in paragraphs for s in sentences)
    assert sentences[0].startswith("synthetic: claim (1) cannot be judged: the study has no "
                                   "vanilla arm")


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
    said = sections([a, b], out=tmp_path / "report").by_key()["claims"].summary
    assert any(s.startswith("The paper's claims on cremad: (1) reproduced") for s in said)
    assert any(s.startswith("The paper's claims on kinetics_sounds: (1) contradicted")
               for s in said)
