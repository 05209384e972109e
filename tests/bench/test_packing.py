"""The packing benchmark end to end through Ray Tune on CPU, so it cannot rot (figures are not
asserted: speed is measured by the benchmark, never by a timed test)."""

import re
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration  # make test-fast leaves it out (docs/testing.md)

ROOT = Path(__file__).resolve().parents[2]


def test_packing_runs_every_k_through_ray_tune():
    p = subprocess.run([sys.executable, "bench/packing.py", "--device", "cpu", "--ks", "1", "2",
                        "--trials", "2", "--epochs", "2", "--train-size", "200", "--dim", "32"],
                       cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]
    rates = {}
    for k in (1, 2):
        m = re.search(rf"^k={k} \(([\d.]+) CPU a trial\): 2 trials in ([\d.]+) s, aggregate "
                      r"([\d,]+) samples/s, one trial while training ([\d,]+) samples/s$",
                      p.stdout, re.M)
        assert m, p.stdout[-3000:]
        assert float(m[2]) > 0 and float(m[4].replace(",", "")) > 0
        rates[k] = m
    assert float(rates[1][1]) == 2 * float(rates[2][1])  # 1/k of the CPUs a trial
    assert re.search(r"^ratio k=2 / k=1: [\d.]+x$", p.stdout, re.M)


def test_bad_arguments_exit_with_one_line():
    p = subprocess.run([sys.executable, "bench/packing.py", "--ks", "4", "--trials", "2"],
                       cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert p.returncode == 2
    assert "--trials >= the largest k; got --ks [4] --trials 2" in p.stderr
    assert "Traceback" not in p.stderr
