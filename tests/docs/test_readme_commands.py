"""Every command README.md prints runs as printed: here, or in the test named for it in ``RUN``
(which takes its argv from the README through ``tests.docs.readme.command``). A command that
needs a download or a cloud account runs at least through its argument parsing and its
preflight; one that starts a long study runs until its first trial has started.

Not run here, and why: ``make test`` is the suite itself (CI runs it as printed, through
``.ci/run``) and ``make test-fast`` is a subset of it; the whole default study, 45 trials
(about 4 minutes), is the opt-in ``pytest -m slow`` case of ``tests/study/test_default_study.py``.
"""

from __future__ import annotations

import inspect
import json
import os
import shutil
import signal
import sqlite3
import subprocess
import time
from pathlib import Path

import pytest

from tests.docs import readme
from tests.study.test_study_ray import kill_processes, session_processes

pytestmark = pytest.mark.integration  # each starts a process (make test-fast leaves them out)

ROOT = readme.ROOT
DATA = ROOT / "tests" / "analysis" / "data"

# README command -> the test that runs it as printed
RUN = {
    "make study": "test_make_study_starts_the_default_study_as_printed",
    "make test": "test_the_make_targets_of_the_suite_run_what_ci_and_the_docs_say",
    "make test-fast": "test_the_make_targets_of_the_suite_run_what_ci_and_the_docs_say",
    "make run": "test_make_run_trains_one_model_as_printed",
    "make docs": "tests/docs/test_docs.py::site",
    "python -m rollingq.data prepare --data.name cremad --data.root CREMA-D --from-videos":
        "tests/rollingq/data/test_videos.py::test_the_readme_prepares_a_cremad_download",
    "python study/run.py --space paper_table1 --dataset cremad --data-root CREMA-D":
        "test_the_cremad_commands_reach_their_data_preflight",
    "python study/run.py --resume results/paper_table1/<timestamp>":
        "test_the_cremad_commands_reach_their_data_preflight",
    "python study/run.py --space sequential_rollingq --plan": "test_the_plan_as_printed",
    "python -m analysis.compare results/smoke/<before> results/smoke/<after>":
        "test_compare_two_studies_as_printed",
    "ray up ray_cluster.yaml -y": "test_ray_up_reads_the_cluster_file_as_printed",
    "ray up": "test_ray_up_reads_the_cluster_file_as_printed",
    "python study/run.py --space hpo --tracker mlflow":
        "test_the_mlflow_study_starts_as_printed",
    "python study/run.py --list": "test_the_list_as_printed",
    "python study/run.py --space rotation_ablation --storage /tmp/default --name default":
        "tests/study/test_default_study.py::test_rotation_ablation_runs_end_to_end_with_its_report",
}


def _source(target: str) -> str:
    path, _, name = target.rpartition("::")
    if not path:
        return inspect.getsource(globals()[name])
    return (ROOT / path).read_text()


def test_every_command_the_readme_prints_is_run_by_a_test():
    """A command added to the README without a test fails here; each named test exists and
    takes its command from the README (or, for the docs build and the default study's
    measurement, runs the same command line)."""
    assert sorted(readme.commands()) == sorted(RUN)
    for target in RUN.values():
        name = target.rpartition("::")[2]
        source = _source(target)
        assert f"def {name}(" in source, target
    videos = _source(RUN["python -m rollingq.data prepare --data.name cremad --data.root "
                          "CREMA-D --from-videos"])
    assert 'readme.command("python -m rollingq.data prepare")' in videos


@pytest.fixture(scope="module")
def checkout(tmp_path_factory) -> Path:
    return readme.checkout(tmp_path_factory.mktemp("checkout"))


def run(argv: list[str], cwd: Path, timeout: float = 120,
        env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(argv, cwd=cwd, env=env or readme.shell_env(), capture_output=True,
                          text=True, timeout=timeout)


def test_the_make_targets_of_the_suite_run_what_ci_and_the_docs_say(checkout):
    """``make test`` is the command CI runs (``.ci/run`` ends with it) and ``make test-fast``
    the subset docs/testing.md describes; both resolve to pytest in the project's
    environment (``make -n`` prints what they run)."""
    assert (ROOT / ".ci" / "run").read_text().rstrip().endswith("make test")
    test = run(readme.command("make test") + ["-n"], checkout)
    assert test.stdout.strip().splitlines()[-1] == ".venv/bin/python -m pytest -q --durations=30"
    fast = run(readme.command("make test-fast") + ["-n"], checkout)
    assert fast.stdout.strip().splitlines()[-1].startswith(".venv/bin/python -m pytest -q -n 2")


def test_make_run_trains_one_model_as_printed(checkout):
    r = run(readme.command("make run"), checkout, timeout=300)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    out = checkout / "runs" / "synthetic-rollingq"
    summary = json.loads((out / "summary.json").read_text())
    assert summary["status"] == "finished" and summary["rotations"][0] >= 1, summary
    assert (out / "metrics.jsonl").is_file()


def _started(argv: list[str], cwd: Path, ready, log: Path, timeout: float = 150) -> str:
    """Starts a study command, waits until ``ready()`` (its first trial has started: the
    preflight passed and Ray is running it), then kills it and its Ray instance; its output."""
    with log.open("w") as f:
        proc = subprocess.Popen(argv, cwd=cwd, env=readme.shell_env(), stdout=f,
                                stderr=subprocess.STDOUT, start_new_session=True)
    driver = None
    try:
        deadline = time.monotonic() + timeout
        while not ready():
            assert proc.poll() is None, f"exited {proc.returncode}:\n{log.read_text()[-3000:]}"
            assert time.monotonic() < deadline, f"not started in {timeout} s:\n" \
                                                f"{log.read_text()[-3000:]}"
            time.sleep(0.2)
        driver = _python_of(proc.pid)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
        if driver is not None:
            kill_processes(session_processes(driver))
    return log.read_text()


def _python_of(pid: int) -> int:
    """The driver: ``pid`` itself, or the python process ``make`` started."""
    children = (Path("/proc") / str(pid) / "task" / str(pid) / "children").read_text().split()
    return int(children[0]) if children else pid


def _trial_started(results: Path, space: str):
    return lambda: any((results / space).glob("*/ray/*/params.json"))


def test_make_study_starts_the_default_study_as_printed(checkout, tmp_path):
    """The default study passes its checks and Ray starts its trials (the whole study, 45
    trials, is the opt-in slow test)."""
    out = _started(readme.command("make study"), checkout,
                   _trial_started(checkout / "results", "rotation_ablation"),
                   tmp_path / "study.log")
    study = next((checkout / "results" / "rotation_ablation").iterdir())
    assert (study / "space.yaml").is_file() and (study / "design.json").is_file(), out[-2000:]
    assert "error:" not in out, out[-3000:]


def test_the_mlflow_study_starts_as_printed(checkout, tmp_path):
    """``--tracker mlflow`` without a URI: the sqlite store beside the results, created before
    the first trial starts."""
    results = checkout / "results"
    out = _started(readme.command("python study/run.py --space hpo --tracker mlflow"), checkout,
                   lambda: (results / "mlflow.db").is_file() and _trial_started(results, "hpo")(),
                   tmp_path / "hpo.log")
    with sqlite3.connect(results / "mlflow.db") as db:
        names = {n for (n,) in db.execute("select name from experiments")}
    assert "hpo" in names, out[-3000:]


def test_the_list_as_printed(checkout):
    r = run(readme.command("python study/run.py --list"), checkout)
    assert r.returncode == 0, r.stderr
    for space in sorted(p.stem for p in (ROOT / "searchspaces").glob("*.yaml")):
        assert space in r.stdout, space


def test_the_plan_as_printed(checkout):
    r = run(readme.command("python study/run.py --space sequential_rollingq --plan"), checkout)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    assert "hours" in r.stdout and not (checkout / "results" / "sequential_rollingq").exists()


def test_compare_two_studies_as_printed(checkout):
    smoke = checkout / "results" / "smoke"
    for name, source in (("before", "smoke_finished"), ("after", "smoke_test_size_300")):
        shutil.copytree(DATA / source, smoke / name)
    r = run(readme.command("python -m analysis.compare", before="before", after="after"),
            checkout)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    assert r.stdout == "comparison: results/smoke/after/compare/compare.md\n"
    text = (smoke / "after" / "compare" / "compare.md").read_text()
    assert "A: `results/smoke/before`" in text and "B: `results/smoke/after`" in text


def test_the_cremad_commands_reach_their_data_preflight(checkout):
    """Without the CREMA-D download in the checkout, the Table 1 study and the resume of one
    begun with it stop at the data check with one line naming the folder (exit 2, before
    Ray)."""
    from study.design import write
    from study.options import parse, requested_spec

    table1 = readme.command("python study/run.py --space paper_table1")
    r = run(table1, checkout)
    assert r.returncode == 2, r.stdout[-2000:] + r.stderr[-2000:]
    assert len(r.stderr.strip().splitlines()) == 1 and "CREMA-D" in r.stderr, r.stderr
    assert "ray" not in r.stdout.lower()
    folder = checkout / "results" / "paper_table1" / "20261208-000000"
    folder.mkdir(parents=True)  # the folder such a study writes before its first trial
    os.chdir(checkout)
    try:
        write(folder, requested_spec(parse(table1[2:], "run")))
    finally:
        os.chdir(ROOT)
    resume = run(readme.command("python study/run.py --resume", timestamp=folder.name),
                 checkout)
    assert resume.returncode == 2, resume.stdout[-2000:] + resume.stderr[-2000:]
    assert (len(resume.stderr.strip().splitlines()) == 1 and "CREMA-D" in resume.stderr
            and "--space" not in resume.stderr), resume.stderr


def test_ray_up_reads_the_cluster_file_as_printed(checkout, tmp_path):
    """Without AWS credentials ``ray up`` gets as far as the cloud: the file is read and
    validated, the cluster named, and the first AWS call is refused for want of credentials."""
    env = {k: v for k, v in readme.shell_env().items() if not k.startswith("AWS_")}
    env.update(HOME=str(tmp_path), AWS_EC2_METADATA_DISABLED="true",
               AWS_CONFIG_FILE=str(tmp_path / "none"),
               AWS_SHARED_CREDENTIALS_FILE=str(tmp_path / "none"))
    r = run(readme.command("ray up ray_cluster.yaml"), checkout, timeout=120, env=env)
    out = r.stdout + r.stderr
    assert r.returncode != 0, out[-3000:]
    assert "Cluster: rollingq-study" in out and "Checking AWS environment settings" in out, \
        out[-3000:]
    assert out.rstrip().endswith("NoCredentialsError: Unable to locate credentials"), out[-3000:]
