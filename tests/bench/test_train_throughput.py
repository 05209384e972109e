"""The training-throughput benchmark at small shapes, so it cannot rot (figures are not asserted:
speed is measured by the benchmark, never by a timed test)."""

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_small_shapes_print_the_figures():
    p = subprocess.run([sys.executable, "bench/train_throughput.py", "--shapes", "small",
                        "--steps", "2", "--warmup", "1", "--batch", "8"],
                       cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr
    line = p.stdout.strip().splitlines()[-1]
    m = re.match(r"small cpu fp32 batch 8: ([\d,.]+) samples/s, ([\d.]+) GFLOP a sample, "
                 r"MFU n/a on CPU, peak memory ([\d.]+) GiB; no reference figure$", line)
    assert m, line
    assert float(m[1].replace(",", "")) > 0 and float(m[2]) > 0 and float(m[3]) > 0
