"""The training-throughput benchmark at small shapes, so it cannot rot (figures are not asserted:
speed is measured by the benchmark, never by a timed test)."""

import re
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration  # make test-fast leaves it out (docs/testing.md)

ROOT = Path(__file__).resolve().parents[2]


def test_small_shapes_print_the_figures():
    p = subprocess.run([sys.executable, "bench/train_throughput.py", "--shapes", "small",
                        "--steps", "2", "--warmup", "1", "--batch", "8", "--rollingq-cost"],
                       cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr
    line, cost = p.stdout.strip().splitlines()[-2:]
    m = re.match(r"small cpu fp32 batch 8: ([\d,.]+) samples/s, ([\d.]+) GFLOP a sample, "
                 r"MFU n/a on CPU, peak memory ([\d.]+) GiB; no reference figure$", line)
    assert m, line
    assert float(m[1].replace(",", "")) > 0 and float(m[2]) > 0 and float(m[3]) > 0
    m = re.match(r"small cpu fp32 batch 8 RollingQ cost: running statistics ([+-][\d.]+) % of a "
                 r"step \(([\d.]+) vs ([\d.]+) ms without\); the published full pass adds "
                 r"([\d.]+) % of an epoch at each epoch end it runs \(([\d.]+) ms a batch\)$", cost)
    assert m, cost
    assert float(m[2]) > 0 and float(m[3]) > 0 and float(m[4]) > 0


def test_balance_cost_prints_ogm_ge_pmr_and_the_prototype_pass():
    p = subprocess.run([sys.executable, "bench/train_throughput.py", "--shapes", "small",
                        "--steps", "2", "--warmup", "1", "--batch", "8", "--balance-cost"],
                       cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr
    line = p.stdout.strip().splitlines()[-1]
    m = re.match(r"small cpu fp32 batch 8 balancing cost: OGM-GE ([+-][\d.]+) % of a step, PMR "
                 r"([+-][\d.]+) % \(([\d.]+) and ([\d.]+) vs ([\d.]+) ms without\); OGM-GE's "
                 r"modulation alone ([\d.]+) ms, ([\d.]+) % of a step; PMR's "
                 r"prototype pass adds ([\d.]+) % of an epoch at every epoch start \(([\d.]+) ms "
                 r"a batch, on 10 % of the batches\)$", line)
    assert m, line
    assert all(float(m[i]) > 0 for i in (3, 4, 5, 6, 7, 8, 9))


def test_end_to_end_trains_from_a_cremad_shaped_data_set(tmp_path):
    p = subprocess.run([sys.executable, "bench/train_throughput.py", "--shapes", "cremad",
                        "--steps", "1", "--warmup", "1", "--batch", "2", "--end-to-end", "16",
                        "--work", str(tmp_path)],
                       cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, p.stderr
    line = p.stdout.strip().splitlines()[-1]
    m = re.match(r"cremad cpu fp32 batch 2 end to end \(cache \+ transform \+ step, 16 clips\): "
                 r"([\d.]+) samples/s, ([\d.]+) % of the model-only rate$", line)
    assert m, line
    assert float(m[1]) > 0
    assert (tmp_path / "CREMA-D" / "train.csv").exists() and any((tmp_path / "cache").iterdir())


def test_every_fusion_of_the_comparison_is_timed():
    fusions = ["concat", "mbt", "mmml", "jmt", "mult", "mult_attn"]
    p = subprocess.run([sys.executable, "bench/train_throughput.py", "--shapes", "small",
                        "--steps", "1", "--warmup", "1", "--batch", "4", "--fusions", *fusions],
                       cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr
    lines = p.stdout.strip().splitlines()
    assert len(lines) == len(fusions)
    for fusion, line in zip(fusions, lines, strict=True):
        m = re.match(rf"small {fusion} cpu fp32 batch 4: ([\d,.]+) samples/s, ([\d.]+) GFLOP", line)
        assert m and float(m[1].replace(",", "")) > 0 and float(m[2]) > 0, line
