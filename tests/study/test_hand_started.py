"""On-prem clusters: a study on hand-started Ray nodes (``ray start --head``, ``ray start
--address``, ``study/run.py --address``) and the SLURM batch script's Ray functions.

Both start real Ray nodes on loopback in a temporary Ray folder, with Ray 2.60's token
authentication (``RAY_AUTH_MODE=token`` and a per-test ``RAY_AUTH_TOKEN``, so ``~/.ray`` is not
touched), and stop everything they started by process id (``ray stop`` would stop every Ray
instance on the machine).
"""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd
import psutil
import pytest

pytestmark = pytest.mark.integration  # make test-fast leaves it out (docs/testing.md)

ROOT = Path(__file__).resolve().parents[2]
RAY = Path(sys.executable).with_name("ray")
SCRIPT = ROOT / "deploy" / "slurm" / "rollingq-study.sbatch"
SPACE = """# Does a study survive a lost node?
# Run: python study/run.py --space {path}
fixed:
  model.fusion: attn
  data.train_size: 400
  data.test_size: 200
  train.epochs: 6
  train.checkpoint_every: 1
search:
  rollingq.max_rotations: {{role: scientific, type: choice, values: [0, 1, 2]}}
seeds: [0, 1]
tune:
  {{mode: grid, metric: val_acc, scheduler: fifo, resources: {{cpu: 1, gpu: 0}}, max_failures: 3}}
"""


# Ports Ray takes by default whatever --port says (the dashboard agent's HTTP port is in the
# kernel's range of free ports: a head given it fails to start).
RAY_FIXED_PORTS = {6379, 8265, 10001, 52365}


def free_port() -> int:
    while True:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        if port not in RAY_FIXED_PORTS:
            return port


@pytest.fixture
def ray_env():
    """The environment of every node and the driver: token auth, a short temporary folder
    (Ray's socket paths must stay short), no cluster address inherited."""
    tmp = Path(tempfile.mkdtemp(prefix="rq-", dir="/tmp"))
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    env.update(RAY_AUTH_MODE="token", RAY_AUTH_TOKEN=secrets.token_hex(16),
               PYTHONUNBUFFERED="1", RAY_TMPDIR=str(tmp))
    started: list[psutil.Process] = []
    yield tmp, env, started
    for p in started:  # everything the test started, by process id
        for q in [*p.children(recursive=True), p] if p.is_running() else []:
            try:
                q.kill()
            except psutil.NoSuchProcess:
                pass
    psutil.wait_procs(started, timeout=30)
    leftovers = [p for p in psutil.process_iter(["cmdline"])
                 if str(tmp) in " ".join(p.info["cmdline"] or [])]
    for p in leftovers:  # a node's processes that outlived their raylet
        p.kill()
    shutil.rmtree(tmp, ignore_errors=True)


def start_node(env: dict, started: list, *args: str) -> psutil.Process:
    p = subprocess.Popen([str(RAY), "start", "--block", "--node-ip-address=127.0.0.1",
                          "--disable-usage-stats", *args], env=env, stdout=subprocess.DEVNULL,
                         stderr=subprocess.DEVNULL, cwd=ROOT)
    proc = psutil.Process(p.pid)
    started.append(proc)
    return proc


def raylet(node: psutil.Process, timeout: float = 60) -> psutil.Process:
    began = time.monotonic()
    while time.monotonic() - began < timeout:
        found = [c for c in node.children(recursive=True) if c.name() == "raylet"]
        if found:
            return found[0]
        time.sleep(0.5)
    raise AssertionError("the node's raylet did not start")


def test_a_study_on_hand_started_nodes_survives_a_killed_worker(ray_env, tmp_path):
    """A head without CPUs (it only coordinates), a worker with 2: the study runs on the
    worker; its raylet is killed when the first trial finishes, a second worker joins, and
    every trial finishes, the interrupted ones resumed from their checkpoints."""
    tmp, env, started = ray_env
    port = free_port()
    head = start_node(env, started, "--head", f"--port={port}", "--num-cpus=0",
                      "--include-dashboard=false", f"--temp-dir={tmp / 'ray'}")
    raylet(head)
    worker = start_node(env, started, f"--address=127.0.0.1:{port}", "--num-cpus=2")
    victim = raylet(worker)
    space = tmp_path / "lost_node.yaml"
    space.write_text(SPACE.format(path=space))
    log = tmp_path / "driver.log"
    began = time.monotonic()
    driver = subprocess.Popen([sys.executable, "study/run.py", "--space", str(space),
                               "--address", f"127.0.0.1:{port}", "--storage",
                               str(tmp_path / "results"), "--name", "two-nodes", "--no-report"],
                              cwd=ROOT,
                              env=env, stdout=log.open("w"), stderr=subprocess.STDOUT)
    started.append(psutil.Process(driver.pid))
    while "[1/6] trial" not in log.read_text():
        assert driver.poll() is None, log.read_text()[-3000:]
        assert time.monotonic() - began < 300, log.read_text()[-3000:]
        time.sleep(0.5)
    victim.send_signal(signal.SIGKILL)  # the worker node is lost mid-study
    start_node(env, started, f"--address=127.0.0.1:{port}", "--num-cpus=2")
    assert driver.wait(timeout=600) == 0, log.read_text()[-4000:]
    wall = time.monotonic() - began
    trials = pd.read_csv(tmp_path / "results" / "lost_node" / "two-nodes" / "trials.csv")
    assert len(trials) == 6 and (trials["status"] == "finished").all()
    retried = int((trials["retries"] > 0).sum())
    assert retried >= 1, trials[["trial_id", "status", "retries"]]  # the killed node's trials
    assert (trials["epochs"] == 6).all()
    print(f"hand-started two-node study: 6 trials in {wall:.0f} s, {retried} retried after the "
          f"worker's raylet was killed")


def test_the_slurm_script_parses_and_its_ray_functions_start_and_stop_nodes(tmp_path):
    """``bash -n``, then the script's own functions outside SLURM: a token, a head and a worker
    on loopback, both alive, then stopped by the process ids the script recorded."""
    assert subprocess.run(["bash", "-n", str(SCRIPT)], capture_output=True).returncode == 0
    local = Path(tempfile.mkdtemp(prefix="rq-slurm-", dir="/tmp"))
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    env.update(ROLLINGQ_SLURM_LIB="1", LOCAL=str(local), PYTHON=sys.executable,
               RAY_PORT=str(free_port()), RAY_TMPDIR=str(local))
    script = f"""
source {SCRIPT}
auth_token
[[ "$RAY_AUTH_MODE" == token && ${{#RAY_AUTH_TOKEN}} == 64 ]] || exit 11
[[ $(stat -c %a "$LOCAL/ray-auth-token") == 600 ]] || exit 12
ray_start_head 127.0.0.1 1 0
ray_start_worker 127.0.0.1 127.0.0.1 1 0
ray_wait_nodes 127.0.0.1 2 120 || exit 13
echo "pids ${{RAY_PIDS[*]}}"
ray_stop_all
echo "stopped ${{#RAY_PIDS[@]}}"
"""
    try:
        p = subprocess.run(["bash", "-c", script], env=env, capture_output=True, text=True,
                           timeout=300, cwd=ROOT)
        assert p.returncode == 0, p.stdout + p.stderr
        assert "ray: 2 node(s) alive at 127.0.0.1:" in p.stdout
        pids = [int(x) for x in p.stdout.split("pids ")[1].splitlines()[0].split()]
        assert len(pids) == 2 and "stopped 0" in p.stdout
        time.sleep(2)
        assert not [x for x in pids if psutil.pid_exists(x)
                    and psutil.Process(x).status() != psutil.STATUS_ZOMBIE]
        alive = [q for q in psutil.process_iter(["cmdline"])
                 if str(local) in " ".join(q.info["cmdline"] or [])]
        assert not alive, [q.info["cmdline"][:3] for q in alive]  # every node process stopped
    finally:
        for q in psutil.process_iter(["cmdline"]):
            if str(local) in " ".join(q.info["cmdline"] or []):
                q.kill()
        shutil.rmtree(local, ignore_errors=True)


def test_the_slurm_scripts_wait_fails_at_once_when_the_head_exits(tmp_path):
    """A head that cannot start (here Ray's own dashboard-agent port as --port, which it
    refuses) makes the wait fail within seconds, not after its 300 s, and the job prints the
    end of the head's log, which says why."""
    local = Path(tempfile.mkdtemp(prefix="rq-slurm-", dir="/tmp"))
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    env.update(ROLLINGQ_SLURM_LIB="1", LOCAL=str(local), PYTHON=sys.executable,
               RAY_PORT="52365", RAY_TMPDIR=str(local))
    script = f"""
source {SCRIPT}
auth_token
ray_start_head 127.0.0.1 1 0
ray_wait_nodes 127.0.0.1 1 300 || {{ echo "wait failed"; ray_logs; }}
ray_stop_all
"""
    try:
        p = subprocess.run(["bash", "-c", script], env=env, capture_output=True, text=True,
                           timeout=150, cwd=ROOT)
        assert "wait failed" in p.stdout, p.stdout + p.stderr
        assert ("ray: 1 of the 1 Ray node(s) started exited before 1 were alive at "
                "127.0.0.1:52365") in p.stderr
        assert f"== {local}/ray-head.log" in p.stderr
        assert "trying to use a port number 52365" in p.stderr
    finally:
        for q in psutil.process_iter(["cmdline"]):
            if str(local) in " ".join(q.info["cmdline"] or []):
                q.kill()
        shutil.rmtree(local, ignore_errors=True)
