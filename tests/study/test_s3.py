"""``--storage s3://...`` against a real S3 API: moto's server mode (as s3fs's own test suite
runs it), started by this test on 127.0.0.1 and stopped by its process group. The endpoint is
given as URI options (``?endpoint_override=...&scheme=http``, as MinIO or Ceph need), which the
driver must keep at the end of every path it builds (``study.run.join_uri``); the report reads
the study back from the bucket and is published beside it (``analysis.remote``)."""

from __future__ import annotations

import io
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from study.run import join_uri
from tests.study.loopback import free_port, server

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
    assert figures and all(i.path.endswith(".png") and i.size > 1000 for i in figures)
    # nothing at the URI: one line, exit 2
    r = subprocess.run([sys.executable, "-m", "analysis.report",
                        join_uri(storage, "smoke", "no-such-study")], cwd=ROOT,
                       env={**env, **CREDENTIALS}, capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and r.stderr.strip().count("\n") == 0, r.stderr
    assert "no study files there" in r.stderr
