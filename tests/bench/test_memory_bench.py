"""bench/memory.py on CPU: the estimate beside the bytes a real step saves, at both paper shapes
(the figures are not asserted beyond the format: the tests of rollingq/memory.py do that)."""

import re
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration  # make test-fast leaves it out (docs/testing.md)

ROOT = Path(__file__).resolve().parents[2]


def test_cpu_rows_print_both_shapes_and_precisions():
    p = subprocess.run([sys.executable, "bench/memory.py"], cwd=ROOT, capture_output=True,
                       text=True, timeout=600)
    assert p.returncode == 0, p.stderr
    lines = p.stdout.strip().splitlines()
    assert len(lines) == 4
    for line, (name, precision) in zip(lines, [(n, q) for n in ("cremad", "kinetics_sounds")
                                               for q in ("fp32", "bf16")], strict=True):
        m = re.match(rf"{name} batch 2 {precision}: saved for backward ([\d.]+) MiB, estimate "
                     rf"([\d.]+) MiB, ratio ([\d.]+)$", line)
        assert m, line
        assert float(m[1]) > 100 and abs(float(m[3]) - 1) < 0.1
