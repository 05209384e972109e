"""The SLURM batch script on a real single-node SLURM (Debian's ``slurm-wlm`` with munge):
``sbatch deploy/slurm/rollingq-study.sbatch`` runs a small study to its ``trials.csv`` and stops
every Ray process it started.

The test starts its own munged, slurmctld and slurmd (as root, with a configuration, ports,
socket and state folders of its own in a temporary folder, found by ``SLURM_CONF``) and stops
them by process id. Skipped, with the command that installs them, where SLURM is not installed
or the test is not root (the CI setup, ``.ci/run``, installs it).
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import pandas as pd
import psutil
import pytest

from tests.study.test_hand_started import free_port

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "deploy" / "slurm" / "rollingq-study.sbatch"
DAEMONS = ("munged", "slurmctld", "slurmd", "sbatch")
INSTALL = "apt-get install -y slurm-wlm munge"

pytestmark = [pytest.mark.integration, pytest.mark.skipif(
    any(shutil.which(d) is None and not Path(f"/usr/sbin/{d}").exists() for d in DAEMONS)
    or os.geteuid() != 0,
    reason=f"a single-node SLURM needs root and Debian's slurm-wlm with munge: {INSTALL}")]


def _which(name: str) -> str:
    return shutil.which(name) or f"/usr/sbin/{name}"


@pytest.fixture
def slurm():
    """munged + slurmctld + slurmd of our own; the environment that reaches them."""
    tmp = Path(tempfile.mkdtemp(prefix="rq-slurm-", dir="/tmp"))
    for d in ("state", "spool", "log", "munge"):
        (tmp / d).mkdir()
    host = socket.gethostname().split(".")[0]
    ctld_port, d_port = free_port(), free_port()
    sock = tmp / "munge" / "munge.socket"
    (tmp / "slurm.conf").write_text(f"""ClusterName=rqtest
SlurmctldHost={host}
SlurmUser=root
SlurmdUser=root
SlurmctldPort={ctld_port}
SlurmdPort={d_port}
AuthType=auth/munge
AuthInfo=socket={sock}
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
MpiDefault=none
ReturnToService=2
StateSaveLocation={tmp}/state
SlurmdSpoolDir={tmp}/spool
SlurmctldPidFile={tmp}/slurmctld.pid
SlurmdPidFile={tmp}/slurmd.pid
SlurmctldLogFile={tmp}/log/slurmctld.log
SlurmdLogFile={tmp}/log/slurmd.log
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
NodeName={host} CPUs={os.cpu_count()} State=UNKNOWN
PartitionName=test Nodes=ALL Default=YES MaxTime=INFINITE State=UP
""")
    env = {**os.environ, "SLURM_CONF": str(tmp / "slurm.conf")}
    env.pop("RAY_ADDRESS", None)
    procs = []

    def start(*cmd: str) -> None:
        p = subprocess.Popen(list(cmd), env=env, stdout=subprocess.DEVNULL,
                             stderr=(tmp / "log" / f"{Path(cmd[0]).name}.err").open("w"))
        procs.append(psutil.Process(p.pid))

    start(_which("munged"), "--foreground", "--force", f"--socket={sock}",
          f"--pid-file={tmp}/munge/munged.pid", f"--log-file={tmp}/log/munged.log",
          f"--seed-file={tmp}/munge/munge.seed")
    for _ in range(50):
        if sock.exists():
            break
        time.sleep(0.1)
    start(_which("slurmctld"), "-D", "-f", str(tmp / "slurm.conf"))
    time.sleep(1)
    start(_which("slurmd"), "-D", "-f", str(tmp / "slurm.conf"))
    began = time.monotonic()
    while True:
        out = subprocess.run(["sinfo", "-h", "-o", "%T"], env=env, capture_output=True,
                             text=True).stdout.strip()
        if out in ("idle", "mixed"):
            break
        if time.monotonic() - began > 60:
            logs = "\n".join(p.read_text()[-1500:] for p in (tmp / "log").iterdir())
            pytest.fail(f"the test's SLURM did not come up (sinfo: {out!r}):\n{logs}")
        time.sleep(1)
    yield tmp, env
    subprocess.run(["scancel", "--user", "root"], env=env, capture_output=True)
    for p in procs:
        for q in [*p.children(recursive=True), p] if p.is_running() else []:
            try:
                q.terminate()
            except psutil.NoSuchProcess:
                pass
    gone, alive = psutil.wait_procs(procs, timeout=15)
    for p in alive:
        p.kill()
    shutil.rmtree(tmp, ignore_errors=True)


def test_sbatch_runs_a_study_to_its_trials_csv(slurm, tmp_path):
    tmp, env = slurm
    results = tmp_path / "results"
    local = tmp / "job-local"
    job_env = {**env, "SPACE": "smoke", "STORAGE": str(results), "GPUS_PER_TRIAL": "0",
               "EXTRA_ARGS": "--smoke-test --name on-slurm", "LOCAL": str(local),
               "ROLLINGQ_CACHE": str(tmp / "cache"), "RAY_PORT": str(free_port())}
    out = tmp / "job-%j.out"
    p = subprocess.run(["sbatch", "--parsable", "--nodes=1", "--gpus-per-node=0",
                        f"--cpus-per-task={os.cpu_count()}", f"--output={out}", str(SCRIPT)],
                       env=job_env, cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, p.stderr
    job = p.stdout.strip().split(";")[0]
    log = Path(str(out).replace("%j", job))
    began = time.monotonic()
    while subprocess.run(["squeue", "-h", "-j", job], env=env, capture_output=True,
                         text=True).stdout.strip():
        assert time.monotonic() - began < 400, log.read_text()[-3000:] if log.exists() else ""
        time.sleep(2)
    text = log.read_text()
    trials = pd.read_csv(results / "smoke" / "on-slurm" / "trials.csv")
    assert len(trials) == 2 and (trials["status"] == "finished").all(), text[-3000:]
    assert "ray: 1 node(s) alive at " in text and "trials: 2 finished (expected 2)" in text
    assert not local.exists()  # the job's Ray folder and token are removed at its end
    leftovers = [q for q in psutil.process_iter(["cmdline"])
                 if str(local) in " ".join(q.info["cmdline"] or [])]
    assert not leftovers  # every Ray process of the job was stopped
