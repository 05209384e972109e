"""The embedded default, as a new user runs it: the whole rotation_ablation study on local Ray,
synthetic data and CPU, with no flags but where to write, ending with its report."""

import json
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parents[2]


def test_rotation_ablation_runs_end_to_end_with_its_report(tmp_path):
    began = time.monotonic()
    p = subprocess.run([sys.executable, "study/run.py", "--space", "rotation_ablation",
                        "--storage", str(tmp_path), "--name", "default"],
                       cwd=ROOT, capture_output=True, text=True, timeout=1200)
    wall = time.monotonic() - began
    assert p.returncode == 0, p.stderr[-3000:]
    folder = tmp_path / "rotation_ablation" / "default"
    trials = pd.read_csv(folder / "trials.csv")
    assert len(trials) == 30 and set(trials["status"]) == {"finished"}
    cells = trials.groupby(["rollingq.max_rotations", "rollingq.rotation"])["train.seed"]
    assert len(cells) == 10 and all(sorted(seeds) == [0, 1, 2] for _, seeds in cells)
    assert (trials.loc[trials["rollingq.max_rotations"] == 0, "final_rotations"] == 0).all()
    curves = pd.read_csv(folder / "curves.csv")
    assert not curves.duplicated(["trial_id", "epoch"]).any()
    meta = json.loads((folder / "meta.json").read_text())
    assert meta["trials"]["finished"] == 30 and meta["expected_trials"] == 30
    report = (folder / "report.md").read_text()
    for part in ("rollingq.max_rotations", "ANOVA", "Tukey", "partial η²"):
        assert part in report, part
    html = (folder / "report.html").read_text()
    assert html.count("<img") >= 3 and "data:image/png;base64," in html
    print(f"rotation_ablation: 30 trials and the report in {wall:.0f} s")
