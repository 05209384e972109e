"""The embedded default as a new user runs it: the rotation_ablation study on local Ray,
synthetic data and CPU, ending with its report. The whole study (45 trials, about 8 minutes on
2 cores) is the opt-in `pytest -m slow` case; the suite runs its grid on 2 seeds at a ninth of
the budget (4 epochs, 1000 training samples: 18 trials). Growing a study by seeds is tested on
the smoke space (tests/study/test_grow.py)."""

import json
import re
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from tests.analysis.test_report_in_browser import CHROMIUM, chromium

pytestmark = pytest.mark.integration  # make test-fast leaves it out (docs/testing.md)

ROOT = Path(__file__).resolve().parents[2]


QUICK = ["--set", "seeds=[0,1]", "--set", "train.epochs=4", "--set", "data.train_size=1000"]


@pytest.mark.parametrize("sets, seeds", [
    pytest.param(QUICK, [0, 1], id="2-seeds-short"),
    pytest.param([], [0, 1, 2, 3, 4], id="whole", marks=pytest.mark.slow),
])
def test_rotation_ablation_runs_end_to_end_with_its_report(tmp_path, sets, seeds):
    began = time.monotonic()
    p = subprocess.run([sys.executable, "study/run.py", "--space", "rotation_ablation",
                        "--storage", str(tmp_path), "--name", "default", *sets],
                       cwd=ROOT, capture_output=True, text=True, timeout=1800)
    wall = time.monotonic() - began
    assert p.returncode == 0, p.stderr[-3000:]
    folder = tmp_path / "rotation_ablation" / "default"
    trials = pd.read_csv(folder / "trials.csv")
    n = 9 * len(seeds)  # vanilla and the 4 caps x 2 kinds, per seed
    assert len(trials) == n and set(trials["status"]) == {"finished"}
    # vanilla (0 rotations) once per seed, the rotation kind only where a rotation is allowed
    vanilla = trials[trials["rollingq.max_rotations"] == 0]
    assert sorted(vanilla["train.seed"]) == seeds and vanilla["rollingq.rotation"].isna().all()
    assert (vanilla["final_rotations"] == 0).all()
    cells = trials.dropna(subset=["rollingq.rotation"]).groupby(
        ["rollingq.max_rotations", "rollingq.rotation"])["train.seed"]
    assert len(cells) == 8 and all(sorted(s) == seeds for _, s in cells)
    curves = pd.read_csv(folder / "curves.csv")
    assert not curves.duplicated(["trial_id", "epoch"]).any()
    meta = json.loads((folder / "meta.json").read_text())
    assert meta["trials"]["finished"] == n and meta["expected_trials"] == n
    # the outcomes the claims rest on, recorded by the study
    assert trials["rollingq_on"].tolist() == (trials["rollingq.max_rotations"] > 0).tolist()
    assert (trials["rollingq_beta"] == 0.2).all() and (trials["favoured_modality"] == "audio").all()
    for col in ("out_abs_air", "out_favoured_share", "out_noise_drop", "out_noise_mean_drop",
                "out_adaptivity", "out_adaptivity_pooled", "out_air_slope", "out_noise_auc",
                "out_attn_shift"):
        assert trials[col].notna().all(), col
    # the diagnostics ran on the headline's model; Table 2's protocol and per-modality numbers
    assert (trials["noise_audio_0.0"] == trials["test_acc_at_best_val"]).all()
    assert (trials["noise_visual_0.0"] == trials["test_acc_at_best_val"]).all()
    for col in ("attn_noise_r_audio", "attn_noise_shift_audio", "attn_noise_pooled_r",
                "missing_audio_acc", "test_f1_at_best_val"):
        assert trials[col].notna().all(), col
    assert (curves.groupby("trial_id")["epoch"].min() == -1).all()  # the untrained model
    assert len(list((folder / "predictions").glob("*.npz"))) == n
    fired = trials["final_rotations"] > 0
    assert trials.loc[~fired, "out_air_convergence"].isna().all()
    report = (folder / "report.md").read_text()
    for part in ("rollingq.max_rotations", "ANOVA", "Tukey", "partial η²", "ω²",
                 "randomised complete block design", "Log-rank test", "Dose response",
                 "Rotations that fired per rotation cap",
                 "Does attention follow input quality? (Table 2.)", "recipe mixing; level 1",
                 "## The paper's claims on this study", "| (2) RollingQ lowers \\|AIR\\| |",
                 "`out_abs_air ~ rollingq.max_rotations"):
        assert part in report, part
    section = report.split("## The paper's claims on this study")[1].split("\n## ")[0]
    rows = [line for line in section.splitlines() if line.startswith("| (") and "**" in line]
    verdicts = [v for line in rows for v in ("**reproduced**", "**contradicted**",
                                             "**no effect**", "**inconclusive**") if v in line]
    assert len(rows) == 6 and len(verdicts) == 6  # one verdict a claim, none "cannot judge"
    # each inconclusive claim with a seeds-needed figure: the command that grows the study
    for line in rows:
        needs = re.search(r"needs (\d+) seeds", line)
        if needs:
            grown = ",".join(map(str, range(int(needs.group(1)))))
            assert (f"`python study/run.py --space rotation_ablation --resume {folder} --set "
                    f"seeds=[{grown}]`") in section, line
    html = (folder / "report.html").read_text()
    assert html.count("<img") >= 3 and "data:image/png;base64," in html
    if CHROMIUM:  # the claims table as a browser renders it
        p = chromium(tmp_path, "--dump-dom", (folder / "report.html").as_uri())
        assert p.returncode == 0, p.stderr[-2000:]
        assert "<h2>The paper's claims on this study</h2>" in p.stdout
        assert "(6) RollingQ improves accuracy (Table 1)</td>" in p.stdout
    print(f"rotation_ablation {' '.join(sets) or '(the whole study)'}: {n} trials and the "
          f"report in {wall:.0f} s")
