"""The data-throughput benchmark on a tiny data set, so it cannot rot (figures are not asserted:
speed is measured by the benchmark, never by a timed test)."""

import re
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration  # make test-fast leaves it out (docs/testing.md)

ROOT = Path(__file__).resolve().parents[2]


def test_tiny_data_set_prints_every_figure(tmp_path):
    p = subprocess.run([sys.executable, "bench/data_throughput.py", "--clips", "40",
                        "--published-samples", "5", "--seconds", "0.2", "--batch", "8",
                        "--ks-rows", "24", "--dir", str(tmp_path / "CREMA-D")],
                       cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr
    out = p.stdout
    figures = {
        "published": r"\(a\) published per-sample decoding, 1 core: ([\d.]+) samples/s",
        "cached": r"\(b\) cached \+ batched train transform on cpu, batch 8: (\d+) samples/s "
                  r"\(34 training clips",
        "streamed": r"streamed from the host .*: (\d+) samples/s",
        "ratio": r"ratio \(b\) / \(a\): ([\d.]+)x",
        "ks gather": r"\(c\) streamed host gather, Kinetics-Sounds-shaped rows \(24\): (\d+) "
                     r"samples/s \(([\d.]+) GB/s\)",
    }
    for name, pattern in figures.items():
        m = re.search(pattern, out)
        assert m and float(m[1]) > 0, (name, out)
    assert (tmp_path / "CREMA-D" / "train.csv").read_text().count("\n") == 34
