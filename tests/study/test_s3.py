"""``--storage s3://...`` against a real S3 API: moto's server mode (as s3fs's own test suite
runs it), started by this test on 127.0.0.1 and stopped by its process group. The endpoint is
given as URI options (``?endpoint_override=...&scheme=http``, as MinIO or Ceph need), which the
driver must keep at the end of every path it builds (``study.storage.join_uri``); the report reads
the study back from the bucket and is published beside it (``analysis.remote``)."""

from __future__ import annotations

import io
import os
import re
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from study.storage import join_uri
from tests.study.loopback import free_port, server

pytestmark = pytest.mark.integration  # make test-fast leaves it out (docs/testing.md)

ROOT = Path(__file__).resolve().parents[2]
MOTO = shutil.which("moto_server", path=str(Path(sys.executable).parent))
CREDENTIALS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
               "AWS_DEFAULT_REGION": "us-east-1"}


def test_join_uri_keeps_the_query_at_the_end():
    uri = "s3://bkt/studies?endpoint_override=127.0.0.1:9000&scheme=http"
    assert join_uri(uri, "smoke", "s1") == ("s3://bkt/studies/smoke/s1?endpoint_override="
                                            "127.0.0.1:9000&scheme=http")
    assert join_uri("s3://bkt/studies/", "ray") == "s3://bkt/studies/ray"
    assert join_uri("gs://b/x", "y") == "gs://b/x/y"
    assert join_uri("/data/studies/", "smoke") == "/data/studies/smoke"


@pytest.fixture(scope="module")
def s3_endpoint():
    if MOTO is None:
        pytest.skip("moto's server is not installed: pip install -e '.[dev]'")
    port = free_port()
    endpoint = f"127.0.0.1:{port}"
    with server([MOTO, "-H", "127.0.0.1", "-p", str(port)], env={**os.environ, **CREDENTIALS},
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL) as proc:
        from pyarrow import fs

        deadline = time.monotonic() + 30
        while True:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=1):
                    break
            except OSError:
                assert proc.poll() is None and time.monotonic() < deadline, "moto did not start"
                time.sleep(0.2)
        s3 = fs.S3FileSystem(endpoint_override=endpoint, scheme="http", region="us-east-1",
                             access_key="testing", secret_key="testing",
                             allow_bucket_creation=True)
        s3.create_dir("studies-bucket")
        yield endpoint, s3


def test_a_study_on_s3_with_the_endpoint_as_uri_options(s3_endpoint, tmp_path, request):
    endpoint, s3 = s3_endpoint
    storage = f"s3://studies-bucket/studies?endpoint_override={endpoint}&scheme=http"
    env = {k: v for k, v in os.environ.items() if k not in ("RAY_ADDRESS", "AWS_ENDPOINT_URL")}
    local = ROOT / "results" / "smoke" / f"s3-{tmp_path.name}"  # the driver's local copy

    def remove_local() -> None:
        shutil.rmtree(local, ignore_errors=True)
        for parent in (local.parent, local.parent.parent):  # results/smoke, results: if empty
            if parent.is_dir() and not any(parent.iterdir()):
                parent.rmdir()

    request.addfinalizer(remove_local)
    r = subprocess.run([sys.executable, "study/run.py", "--space", "smoke", "--storage", storage,
                        "--name", f"s3-{tmp_path.name}", "--no-report"], cwd=ROOT,
                       env={**env, **CREDENTIALS}, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    folder = f"studies-bucket/studies/smoke/s3-{tmp_path.name}"
    assert f"copied the results folder to {join_uri(storage, 'smoke', f's3-{tmp_path.name}')}" \
        in r.stdout
    with s3.open_input_stream(f"{folder}/trials.csv") as f:
        trials = pd.read_csv(io.BytesIO(f.read()))
    assert len(trials) == 2 and trials["trial_id"].is_unique
    assert (trials["status"] == "finished").all()
    # Ray's experiment, the trials' ledgers and the optuna.db are in the bucket too
    from pyarrow import fs

    names = {i.path.removeprefix(folder + "/") for i in
             s3.get_file_info(fs.FileSelector(folder, recursive=True))}
    assert {"meta.json", "space.yaml", "curves.csv", "optuna.db", "ray"} <= names
    ledgers = [n for n in names if n.startswith("ray/") and n.endswith("/final.json")]
    assert len(ledgers) == 2

    # the report of the study in the bucket, read back from it and published beside it
    uri = join_uri(storage, "smoke", f"s3-{tmp_path.name}")
    r = subprocess.run([sys.executable, "-m", "analysis.report", uri], cwd=ROOT,
                       env={**env, **CREDENTIALS}, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    assert f"published beside the study: {uri}" in r.stdout
    with s3.open_input_stream(f"{folder}/report.md") as f:
        report = f.read().decode()
    assert "2 trial(s) on cpu" in report  # the provenance table, from the bucket's meta.json
    figures = s3.get_file_info(fs.FileSelector(f"{folder}/figures"))
    pngs = [i for i in figures if i.path.endswith(".png")]
    assert pngs and all(i.size > 1000 for i in pngs)
    assert {i.path.removesuffix(".pdf") for i in figures if i.path.endswith(".pdf")} == {
        i.path.removesuffix(".png") for i in pngs}  # each figure also as PDF, for papers
    # nothing at the URI: one line, exit 2
    r = subprocess.run([sys.executable, "-m", "analysis.report",
                        join_uri(storage, "smoke", "no-such-study")], cwd=ROOT,
                       env={**env, **CREDENTIALS}, capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and r.stderr.strip().count("\n") == 0, r.stderr
    assert "no study files there" in r.stderr


KILLED = """\
# Does a study on S3 survive a killed driver? 4 trials x 5 epochs, one at a time.
fixed:
  model.fusion: attn
  rollingq.enabled: true
  rollingq.beta: 0.0
  train.epochs: 5
  data.train_size: 300
  data.test_size: 100
search:
  rollingq.max_rotations: {role: scientific, type: choice, values: [0, 1]}
seeds: [0, 1]
tune: {mode: grid, metric: val_acc, scheduler: fifo, resources: {cpu: 1, gpu: 0},
       max_failures: 1, max_concurrent: 1}
"""


def test_a_study_on_s3_killed_and_resumed_with_aws_endpoint_url(s3_endpoint, tmp_path, request):
    """The endpoint the way AWS tools take it (``AWS_ENDPOINT_URL``), a plain ``s3://`` storage;
    SIGKILL once a trial has ended in the bucket and another has a checkpoint there; the resume,
    on a machine without the driver's local copy (``--resume s3://...``), ends the study: every
    trial once in the bucket's trials.csv, the report beside it, and
    ``analysis.report s3://...`` reads it back."""
    from pyarrow import fs

    from tests.study.test_study_ray import kill_processes, session_processes

    endpoint, s3 = s3_endpoint
    name = f"k-{tmp_path.name}"
    spec = tmp_path / "s3killed.yaml"
    spec.write_text(KILLED)
    storage = "s3://studies-bucket/studies"
    env = {**{k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}, **CREDENTIALS,
           "AWS_ENDPOINT_URL": f"http://{endpoint}", "PYTHONUNBUFFERED": "1"}
    local = ROOT / "results" / "s3killed" / name

    def remove_local() -> None:
        shutil.rmtree(local, ignore_errors=True)
        for parent in (local.parent, local.parent.parent):
            if parent.is_dir() and not any(parent.iterdir()):
                parent.rmdir()

    request.addfinalizer(remove_local)
    folder = f"studies-bucket/studies/s3killed/{name}"

    def in_bucket() -> list[str]:
        return [i.path.removeprefix(f"{folder}/ray/") for i in s3.get_file_info(
            fs.FileSelector(f"{folder}/ray", recursive=True, allow_not_found=True))]

    def kill_point() -> bool:
        names = in_bucket()
        ended = {n.split("/")[0] for n in names if n.endswith("/final.json")}
        running = {n.split("/")[0] for n in names if "/checkpoint_" in n} - ended
        return bool(ended) and bool(running)

    log = tmp_path / "driver.log"
    argv = [sys.executable, "study/run.py", "--space", str(spec), "--storage", storage,
            "--name", name]
    driver = subprocess.Popen(argv, cwd=ROOT, env=env, stdout=log.open("w"),
                              stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 240
        while not kill_point():
            assert driver.poll() is None, log.read_text()[-3000:]
            assert time.monotonic() < deadline, log.read_text()[-3000:]
            time.sleep(0.2)
        driver.kill()
        driver.wait(timeout=30)
    finally:
        if driver.poll() is None:
            driver.kill()
        kill_processes(session_processes(driver.pid))
    # the head node is lost with the driver: its local copy goes too; resume from the bucket
    assert (local / "space.yaml").is_file()
    shutil.rmtree(local)
    r = subprocess.run([sys.executable, "study/run.py", "--space", str(spec), "--resume",
                        f"{storage}/s3killed/{name}"], cwd=ROOT, env=env,
                       capture_output=True, text=True, timeout=400)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    assert f"resume: copied the study's files from {storage}/s3killed/{name} to {local}" \
        in r.stdout
    assert f"copied the results folder to {storage}/s3killed/{name}" in r.stdout
    with s3.open_input_stream(f"{folder}/trials.csv") as f:
        trials = pd.read_csv(io.BytesIO(f.read()))
    assert len(trials) == 4 and trials["trial_id"].is_unique
    assert (trials["status"] == "finished").all()
    assert sorted(zip(trials["rollingq.max_rotations"], trials["train.seed"], strict=True)) == [
        (0, 0), (0, 1), (1, 0), (1, 1)]
    with s3.open_input_stream(f"{folder}/curves.csv") as f:
        curves = pd.read_csv(io.BytesIO(f.read()))
    assert not curves.duplicated(["trial_id", "epoch"]).any()
    assert (curves.groupby("trial_id")["epoch"].apply(sorted).map(list)
            == [list(range(-1, 5))] * 4).all()
    with s3.open_input_stream(f"{folder}/report.md") as f:
        published = f.read().decode()
    assert "4 trial(s) on cpu" in published  # the report, published beside the study
    s3.delete_file(f"{folder}/report.md")
    r = subprocess.run([sys.executable, "-m", "analysis.report", f"{storage}/s3killed/{name}"],
                       cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    with s3.open_input_stream(f"{folder}/report.md") as f:  # read from the bucket, written back
        again = f.read().decode()
    assert "4 trial(s) on cpu" in again
    main = re.compile(r"## Main table\n.*?\n## ", re.S)  # the same numbers either way
    assert main.search(again).group(0) == main.search(published).group(0)
