"""bench/verdict_calibration.py: the claims' decision code on simulated studies with a known
truth (few simulations here: the rates are the bench's to measure, their bookkeeping ours)."""

import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "bench"))

import verdict_calibration as vc  # noqa: E402

from analysis import claims  # noqa: E402
from analysis import declarations as declarations_  # noqa: E402

pytestmark = pytest.mark.integration  # make test-fast leaves it out (docs/testing.md)


def test_effects_far_beyond_the_noise_are_decided_and_counted():
    """A margin-sized effect with a seed sd of 1 % of the margin is always reproduced; on the
    other side always contradicted (a false verdict in every family: each data set is one);
    a null with that sd is mostly `no effect` (a t-test still rejects a null at its nominal
    rate)."""
    sd = {c.number: 0.01 * declarations_.MARGINS[c.number] for c in claims.CLAIMS}
    rng = np.random.default_rng(0)
    shares, per_family, per_study = vc.simulate({c.number: 1.0 for c in claims.CLAIMS}, 5, 2,
                                                sd, 4, rng)
    assert set(shares["verdict"]) == {claims.REPRODUCED}
    assert per_family == per_study == 0.0
    assert shares["share"].to_numpy().tolist() == [1.0] * 6  # per claim, over both data sets
    shares, per_family, per_study = vc.simulate({c.number: -1.0 for c in claims.CLAIMS}, 5, 2,
                                                sd, 4, rng)
    assert set(shares["verdict"]) == {claims.CONTRADICTED}
    assert per_family == per_study == 1.0
    shares, _, _ = vc.simulate({c.number: 0.0 for c in claims.CLAIMS}, 10, 1, sd, 10, rng)
    assert shares.groupby("verdict")["share"].sum()[claims.NO_EFFECT] / 6 > 0.9


def test_a_false_verdict_is_counted_per_declared_family():
    """Claim 1's truth lies far on the other side on each of three data sets, the rest on the
    claimed side: every family (a data set, or the report's one) holds a false verdict."""
    sd = {c.number: 0.01 * declarations_.MARGINS[c.number] for c in claims.CLAIMS}
    effects = {c.number: (-1.0 if c.number == 1 else 1.0) for c in claims.CLAIMS}
    rng = np.random.default_rng(1)
    _, per_family, per_study = vc.simulate(effects, 5, 3, sd, 3, rng)
    assert per_family == per_study == 1.0
    _, per_family, _ = vc.simulate(effects, 5, 3, sd, 3, rng, family="report")
    assert per_family == 1.0


def test_the_script_prints_every_scenario(capsys):
    assert vc.main(["--sims", "2", "--studies", "2"]) == 0
    out = capsys.readouterr().out
    for head in ("1. Verdict shares", "2. The power computation", "3. Seeds needed from a "
                 "pilot", "4. Planted Table 1", "RollingQ per architecture", "5. The average "
                 "over data sets", "6. Heteroscedastic data sets"):
        assert head in out
    assert out.count("margin-sized (1 margin)") == len(vc.SEEDS) * len(vc.DATASETS)
    assert "Vanilla MT + RollingQ vs Vanilla MT" in out and "z random effects (before)" in out


def test_the_sequential_design_stops_early_on_large_effects_and_counts_its_errors(capsys):
    from bench import sequential_calibration as sc

    rng = np.random.default_rng(0)
    large = sc.row(sc.TRUTHS["twice the margin"], 1, sc.LOOKS["every seed"], vc.SEED_SD, 8, rng)
    assert large["mean seeds"] < sc.BUDGET and large["power"] > 0.9
    assert large["false decided"] == large["false no effect"] == 0.0
    null = sc.row(sc.TRUTHS["null"], 1, sc.LOOKS["3, 5, 10, 20"], vc.SEED_SD, 8, rng)
    assert null["power"] == 0.0 and null["false no effect"] == 0.0  # no effect is right here
    assert vc.main(["--sequential", "--sims", "1"]) == 0
    out = capsys.readouterr().out
    assert "7. The sequential design (1 studies a row" in out and "1. Verdict" not in out
    assert out.count("every seed") == 2 * 3 + 2  # 1 and 3 data sets; the Table 1 cases: 1
