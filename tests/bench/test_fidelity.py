"""bench/fidelity.py at a tiny size, so the measurements in docs/method.md §7 cannot rot (the
figures are the script's output, not asserted beyond their form and what must hold whatever the
data)."""

import re
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration  # make test-fast leaves it out (docs/testing.md)

ROOT = Path(__file__).resolve().parents[2]


def bench(*args: str) -> str:
    p = subprocess.run([sys.executable, "bench/fidelity.py", *args], cwd=ROOT,
                       capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, p.stderr[-3000:]
    return p.stdout


def test_precision_prints_both_data_sets_fp32_beside_bf16():
    out = bench("precision", "--seeds", "0", "--epochs", "1", "--train-size", "300")
    assert "synthetic: seeds [0], 1 epochs" in out and "features: seeds [0], 1 epochs" in out
    for key in ("air at 1st rotation", "angle of 1st (deg)", "end: AIR, same model"):
        rows = [line for line in out.splitlines() if line.startswith(key)]
        assert len(rows) == 2, key  # one per data set
    # the same weights: the statistics under bf16 autocast differ from fp32 only a little
    for line in out.splitlines():
        if line.startswith("end: AIR, same model"):
            assert abs(float(line.split("|")[-1])) < 0.05, line


def test_heads_prints_a_correlation_per_arm():
    out = bench("heads", "--seeds", "0", "--epochs", "3", "--train-size", "600")
    for arm, heads in (("MT (1 published layer)", 1), ("MT*, 4-head pre-norm 2nd", 4),
                       ("MT*, published 2nd", 1)):
        lines = [x for x in out.splitlines() if x.startswith(arm)]
        assert len(lines) == 2, arm  # RollingQ off and on
        for line, rollingq in zip(lines, ("off", "on, 3 rot."), strict=True):
            cells = [c.strip() for c in line.split("|")]
            assert int(cells[1]) == heads and cells[2].startswith(rollingq), line
            assert -1 <= float(cells[3]) <= 1, line
            assert re.fullmatch(r"-?\d+\.\d{3}", cells[4]), line
