"""bench/checkpoint_cost.py runs and prints every figure it promises (small shapes)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_the_checkpoint_bench_prints_each_write_and_each_scheme(tmp_path):
    p = subprocess.run([sys.executable, "bench/checkpoint_cost.py", "--shapes", "small",
                        "--repeats", "1", "--dir", str(tmp_path)], cwd=ROOT,
                       capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stdout[-2000:] + p.stderr[-2000:]
    sizes = dict(re.findall(r"^  ((?:checkpoint|best)\.pt.+?): ([\d,]+) MiB in [\d.]+ s",
                            p.stdout, re.M))
    assert len(sizes) == 3, p.stdout
    shares = re.findall(r"^  (previous default|now).*: ([\d.e+-]+) s an epoch = ([\d.e+-]+) "
                        r"of the epoch \([\d.]+%\)$", p.stdout, re.M)
    assert len(shares) == 5, p.stdout
    assert float(shares[-1][1]) < float(shares[3][1])  # every 10 minutes < every epoch
    assert list(tmp_path.iterdir()) == []  # its files removed
