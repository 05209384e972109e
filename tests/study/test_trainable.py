"""The trial's working folder: a worker killed mid-trial leaves it behind (with a checkpoint
that is hundreds of MB at the paper's shapes); the next trial on the machine removes it, and
never a live process's folder nor one of the older, pid-less names."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

from study.trainable import WORK_PREFIX, remove_orphaned_work

# What the trainable does before it trains: make its working folder, write a checkpoint.
WORKER = f"""
import os, sys, tempfile, time
work = tempfile.mkdtemp(prefix=f"{WORK_PREFIX}{{os.getpid()}}-", dir=sys.argv[1])
open(os.path.join(work, "checkpoint.pt"), "wb").write(os.urandom(1 << 20))
print(work, flush=True)
time.sleep(600)
"""


def test_a_killed_workers_folder_is_removed_and_nothing_else(tmp_path):
    worker = subprocess.Popen([sys.executable, "-c", WORKER, str(tmp_path)],
                              stdout=subprocess.PIPE, text=True)
    orphan = Path(worker.stdout.readline().strip())
    assert (orphan / "checkpoint.pt").stat().st_size == 1 << 20
    worker.send_signal(signal.SIGKILL)
    worker.wait(timeout=30)
    worker.stdout.close()
    assert orphan.is_dir()  # a killed process removes nothing

    live = tmp_path / f"{WORK_PREFIX}{os.getpid()}-abc"  # this test's own process
    old = tmp_path / f"{WORK_PREFIX}0fb_leur"  # the pid-less name of earlier versions
    other = tmp_path / "rollingq-trial"
    for folder in (live, old, other):
        folder.mkdir()
    assert remove_orphaned_work(str(tmp_path)) == [orphan]
    assert not orphan.exists()
    assert live.is_dir() and old.is_dir() and other.is_dir()
    assert remove_orphaned_work(str(tmp_path)) == []
