"""bench/verdict_calibration.py: the claims' decision code on simulated studies with a known
truth (few simulations here: the rates are the bench's to measure, their bookkeeping ours)."""

import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "bench"))

import verdict_calibration as vc  # noqa: E402

from analysis import claims  # noqa: E402


def test_effects_far_beyond_the_noise_are_decided_and_counted():
    """A margin-sized effect with a seed sd of 1 % of the margin is always reproduced; on the
    other side always contradicted (a false verdict in every study); a null with that sd is
    mostly `no effect` (a t-test still rejects a null at its nominal rate)."""
    sd = {c.number: 0.01 * claims.MARGINS[c.number] for c in claims.CLAIMS}
    rng = np.random.default_rng(0)
    shares, false = vc.simulate({c.number: 1.0 for c in claims.CLAIMS}, 5, 2, sd, 4, rng)
    assert set(shares["verdict"]) == {claims.REPRODUCED} and false == 0.0
    assert shares["share"].to_numpy().tolist() == [1.0] * 6  # per claim, over both data sets
    shares, false = vc.simulate({c.number: -1.0 for c in claims.CLAIMS}, 5, 1, sd, 4, rng)
    assert set(shares["verdict"]) == {claims.CONTRADICTED} and false == 1.0
    shares, _ = vc.simulate({c.number: 0.0 for c in claims.CLAIMS}, 10, 1, sd, 10, rng)
    assert shares.groupby("verdict")["share"].sum()[claims.NO_EFFECT] / 6 > 0.9


def test_the_script_prints_both_tables(capsys):
    assert vc.main(["--sims", "2"]) == 0
    out = capsys.readouterr().out
    assert "family-wise false" in out and "recommended seeds" in out
    assert out.count("paper-sized (1 margin)") == len(vc.SEEDS) * len(vc.DATASETS)
