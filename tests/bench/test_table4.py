"""bench/table4.py: our models' thop-style parameter counts and the published computation's
thop MACs against the numbers Table 4 prints (the paper's, not ours: a reproduction check)."""

import math
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "bench"))

import table4  # noqa: E402

pytestmark = pytest.mark.integration  # make test-fast leaves it out (docs/testing.md)


def test_every_row_reproduces_table_4():
    one, three = table4.table(1), table4.table(3)
    for r, (name, _, paper_params, paper_gflops) in zip(one, table4.ROWS, strict=True):
        m = r["params"] / 1e6
        assert paper_params in (math.floor(m * 100) / 100, round(m, 2)), name
        assert round(r["macs"] * table4.BATCH / 1e9, 2) == paper_gflops, name
        assert r["ours"] > 0
    # the paper's ratios hold at its 1-frame shapes only; at 3 frames JMT's padding costs more
    ratio = {r["row"]: r["macs"] / three[0]["macs"] for r in three}
    assert ratio["JMT"] > 1.04 and 1.83 < ratio["MBT"] < 1.845


def test_the_script_prints_both_tables():
    p = subprocess.run([sys.executable, "bench/table4.py"], cwd=ROOT, capture_output=True,
                       text=True, timeout=300)
    assert p.returncode == 0, p.stderr
    assert "| JMT | 62,227,986 | 62.2280 | 62.23 | 69,603,858 |" in p.stdout
    assert "| MBT | 2746.90 | 2746.90 | 1.8446 | 1.8446 |" in p.stdout
