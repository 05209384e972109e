"""optuna-dashboard on a study's ``optuna.db`` (``study.optuna_db``), for real: an ASHA study
through the CLI, its ``optuna.db`` read back with Optuna, then a real ``optuna-dashboard``
server started on 127.0.0.1 by this test (stopped by its process group): ``/api/studies`` lists
the study with as many trials as ``trials.csv`` and its stopped trials PRUNED, and headless
chromium renders the dashboard's page (screenshot kept in ``artifacts/study/``, gitignored).
The grid study's ``optuna.db`` is checked in ``test_study_ray.py::test_smoke_study_end_to_end``.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import matplotlib.image
import optuna
import pandas as pd
import pytest

from tests.study.loopback import free_port, server

pytestmark = pytest.mark.integration  # make test-fast leaves it out (docs/testing.md)

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "artifacts" / "study"
DASHBOARD = shutil.which("optuna-dashboard", path=str(Path(sys.executable).parent)) or \
    shutil.which("optuna-dashboard")
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--hide-scrollbars"]


def cli_env() -> dict[str, str]:
    env = dict(os.environ)
    env.pop("RAY_ADDRESS", None)
    return env


@pytest.fixture(scope="module")
def asha_study(tmp_path_factory) -> Path:
    """The hpo space (TPE + ASHA) at a tiny budget, one trial at a time (so ASHA's decisions,
    and which trials it stops, repeat run after run)."""
    storage = tmp_path_factory.mktemp("asha")
    r = subprocess.run(
        [sys.executable, "study/run.py", "--space", "hpo", "--storage", str(storage),
         "--no-report", "--set", "tune.num_samples=6", "--set", "train.epochs=4",
         "--set", "data.train_size=300", "--set", "data.test_size=200",
         "--set", "tune.grace_period=1", "--set", "tune.max_concurrent=1"],
        cwd=ROOT, env=cli_env(), capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    (folder,) = (storage / "hpo").iterdir()
    return folder


def test_the_optuna_db_holds_every_trial_with_asha_stopped_ones_pruned(asha_study):
    trials = pd.read_csv(asha_study / "trials.csv")
    curves = pd.read_csv(asha_study / "curves.csv")
    stopped = set(trials.loc[trials["status"] == "stopped", "trial_id"])
    assert len(trials) == 6 and stopped  # this budget stops some: the check below can fail
    study = optuna.load_study(study_name="hpo", storage=f"sqlite:///{asha_study / 'optuna.db'}")
    assert len(study.trials) == len(trials)
    by_id = {t.user_attrs["trial_id"]: t for t in study.trials}
    assert set(by_id) == set(trials["trial_id"])
    for row in trials.to_dict("records"):
        t = by_id[row["trial_id"]]
        expected = {"finished": "COMPLETE", "stopped": "PRUNED", "diverged": "FAIL",
                    "errored": "FAIL"}[row["status"]]
        assert t.state.name == expected, row["trial_id"]
        assert t.user_attrs["status"] == row["status"] and t.user_attrs["seed"] == 0
        curve = curves[(curves["trial_id"] == row["trial_id"]) & (curves["epoch"] >= 0)]
        assert t.intermediate_values == dict(zip(curve["epoch"], curve["val_acc"], strict=True))
        if expected == "COMPLETE":
            assert t.value == curve["val_acc"].iloc[-1]
        for key in ("rollingq.beta", "rollingq.rho", "optim.lr", "optim.weight_decay"):
            assert t.params[key] == pytest.approx(row[key])
        assert t.user_attrs["out_abs_air"] == pytest.approx(row["out_abs_air"])
    # Ray's own journal records the ASHA-stopped trials as COMPLETE: the reason for optuna.db
    journal = optuna.load_study(study_name="hpo", storage=optuna.storages.JournalStorage(
        optuna.storages.journal.JournalFileBackend(str(asha_study / "optuna.journal"))))
    assert {t.state.name for t in journal.trials} == {"COMPLETE"}


def get_json(url: str) -> dict:
    with urllib.request.urlopen(url, timeout=10) as r:
        return json.loads(r.read().decode())


@pytest.mark.skipif(DASHBOARD is None, reason="optuna-dashboard is not installed: "
                                              "pip install -e '.[dev]'")
def test_optuna_dashboard_serves_the_study(asha_study, tmp_path):
    trials = pd.read_csv(asha_study / "trials.csv")
    port = free_port()
    with (tmp_path / "dashboard.log").open("w") as log, server(
            [DASHBOARD, f"sqlite:///{asha_study / 'optuna.db'}", "--host", "127.0.0.1",
             "--port", str(port)], stdout=log, stderr=subprocess.STDOUT) as proc:
        check_dashboard(f"http://127.0.0.1:{port}", proc, trials, tmp_path)


def check_dashboard(base: str, proc: subprocess.Popen, trials: pd.DataFrame,
                    tmp_path: Path) -> None:
    """The API lists the study with its trials and states; chromium renders its page."""
    deadline = time.monotonic() + 60
    while True:
        try:
            summaries = get_json(f"{base}/api/studies")["study_summaries"]
            break
        except OSError:
            assert proc.poll() is None, (tmp_path / "dashboard.log").read_text()[-2000:]
            assert time.monotonic() < deadline, "the dashboard did not answer within 60 s"
            time.sleep(0.3)
    assert [s["study_name"] for s in summaries] == ["hpo"]
    detail = get_json(f"{base}/api/studies/{summaries[0]['study_id']}")
    assert len(detail["trials"]) == len(trials)
    states = pd.Series([t["state"] for t in detail["trials"]]).value_counts()
    assert states.get("Pruned", 0) == (trials["status"] == "stopped").sum() > 0
    assert states.get("Complete", 0) == (trials["status"] == "finished").sum()
    if CHROMIUM is None:
        pytest.skip("chromium is not installed (apt-get install -y chromium): the API was "
                    "checked, the screenshot was not taken")
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    shot = ARTIFACTS / "optuna-dashboard.png"
    shot.unlink(missing_ok=True)
    p = subprocess.run([CHROMIUM, *FLAGS, f"--user-data-dir={tmp_path / 'profile'}",
                        "--window-size=1280,900", "--virtual-time-budget=15000",
                        f"--screenshot={shot}",
                        f"{base}/dashboard/studies/{summaries[0]['study_id']}"],
                       capture_output=True, text=True, timeout=120)
    assert p.returncode == 0 and shot.is_file(), p.stderr[-2000:]
    img = matplotlib.image.imread(shot)
    assert img.shape[:2] == (900, 1280)
    assert img[..., :3].std() > 0.05  # the page rendered, not a blank canvas
