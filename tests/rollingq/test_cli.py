"""The single-run CLI, as a user runs it: files written, resume, one-line errors with code 2."""

import json
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
import yaml

from rollingq.config import build_config
from rollingq.data import load_data

ROOT = Path(__file__).resolve().parents[2]
FAST = ["--set", "data.train_size=300", "--set", "data.test_size=100", "--quiet"]


def run(*args):
    return subprocess.run(
        [sys.executable, "-m", "rollingq.train", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )


@pytest.mark.integration
def test_a_run_writes_metrics_summary_and_checkpoint(tmp_path):
    cfg = tmp_path / "run.yaml"
    cfg.write_text(yaml.safe_dump({"train": {"epochs": 2}, "rollingq": {"beta": 0.0}}))
    p = run("--config", str(cfg), "--out", str(tmp_path / "out"), *FAST)
    assert p.returncode == 0, p.stderr
    out = tmp_path / "out"
    lines = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    assert [m["epoch"] for m in lines] == [-1, 0, 1] and lines[1]["rotated"] == 1
    summary = json.loads((out / "summary.json").read_text())
    assert summary["status"] == "finished" and summary["epochs"] == 2
    assert summary["config"]["rollingq"]["beta"] == 0.0
    diag = summary["diagnostics"]
    assert set(diag["noise"]["curves"]) == {"audio", "visual"}
    assert len(diag["noise"]["curves"]["audio"]) == 5 and diag["noise"]["recipe"] == "additive"
    attn = diag["attention_noise"]
    assert (attn["recipe"], attn["level"], attn["split"], attn["draws"]) == ("mixing", 1.0,
                                                                               "test", 1)
    assert attn["pooled"]["pairs"] == 200 and attn["evaluations"] == 300
    assert set(diag["missing"]) == {"audio", "visual"}
    assert (out / "checkpoint.pt").is_file() and (out / "config.yaml").is_file()
    assert (out / "best.pt").is_file()
    assert "finished: test acc at best val epoch" in p.stdout

    # the predictions: one row a test sample, the test split's labels, the headline's model
    pred = np.load(out / "predictions.npz")
    data = load_data(build_config(out / "config.yaml").data)
    assert np.array_equal(pred["label"], data.test.labels.numpy())
    assert int(pred["epoch"]) == summary["best_val_epoch"]
    assert (pred["pred"] == pred["label"]).mean() == pytest.approx(
        summary["test_acc_at_best_val"], abs=1e-6)

    # evaluate reloads best.pt and reproduces the headline exactly
    e = subprocess.run([sys.executable, "-m", "rollingq.evaluate", str(out)], cwd=ROOT,
                       capture_output=True, text=True, timeout=300)
    assert e.returncode == 0, e.stderr
    evaluation = json.loads((out / "evaluation.json").read_text())
    assert evaluation["test"]["acc"] == summary["test_acc_at_best_val"]
    assert evaluation["test"]["f1"] == summary["test_f1_at_best_val"]
    assert evaluation["diagnostics"]["noise"] == diag["noise"]
    assert evaluation["epoch"] == summary["best_val_epoch"]
    bad = subprocess.run([sys.executable, "-m", "rollingq.evaluate", str(tmp_path)], cwd=ROOT,
                         capture_output=True, text=True, timeout=300)
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1 and "does not exist" in bad.stderr

    # --resume of a finished run trains nothing more and keeps the history.
    again = run("--config", str(cfg), "--out", str(out), "--resume", *FAST)
    assert again.returncode == 0, again.stderr
    assert len((out / "metrics.jsonl").read_text().splitlines()) == 3


@pytest.mark.integration
def test_bad_input_exits_2_with_one_line(tmp_path):
    cases = [
        (["--set", "rollingq.rotation=qr"], "valid: svd, plane"),
        (["--set", "rollingq.bta=1"], "unknown config key 'rollingq.bta'"),
        (["--config", str(tmp_path / "nope.yaml")], "does not exist"),
        (["--set", "model.pretrained=/nonexistent/vit.pth"], "model.pretrained"),
        (["--resume", "--out", str(tmp_path / "empty")], "no checkpoint.pt"),
        (["--set", "balance.method=ogm_gee"], "valid: none, ogm, ogm_ge, pmr"),
        (["--set", "balance.ogm_window=[0.6,0.2]"], "0 <= start <= end <= 1"),
        (["--set", "balance.alpha=0.5"], "it was replaced by balance.ogm_alpha"),
        (["--set", "balance.method=pmr", "--set", "model.fusion=visual",
          "--set", "rollingq.enabled=false"], "balances two or more modalities"),
        (["--set", "model.fusion=concat"],
         "joint [cls] attention over every modality when rollingq.enabled"),
    ]
    with ThreadPoolExecutor(max_workers=2) as pool:  # each a CLI process: two at a time
        done = list(pool.map(lambda case: run(*case[0], *FAST), cases))
    for (args, message), p in zip(cases, done, strict=True):
        assert p.returncode == 2, (args, p.stderr)
        lines = p.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], p.stderr
