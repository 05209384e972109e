"""One driver a study: ``hold(folder)`` takes the study folder's lock for the life of the
process, or refuses with one line naming the driver that holds it.

The lock is ``fcntl.flock`` on ``<study>/.driver.lock``: the kernel releases it when its process
ends, however it ends (a killed driver leaves no stuck lock, and no stale file can block a
resume). The file records the holder's pid, host and start time for the refusal's message. A
second driver on the same study would otherwise start its own Ray and run the same trials into
the same storage beside the first.
"""

from __future__ import annotations

import fcntl
import json
import os
import socket
import time
from pathlib import Path
from typing import IO

from study.space import SpecError

LOCK = ".driver.lock"
_held: dict[Path, IO[str]] = {}  # the study folders this process holds, kept open


def hold(folder: Path) -> None:
    """Takes ``folder``'s driver lock (creating the folder), held until the process ends.

    Raises:
        SpecError: Another live driver holds it.
    """
    folder = folder.resolve()
    if folder in _held:
        return
    folder.mkdir(parents=True, exist_ok=True)
    f = (folder / LOCK).open("a+")
    try:
        fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        f.seek(0)
        try:
            holder = json.loads(f.read() or "{}")
        except json.JSONDecodeError:
            holder = {}
        f.close()
        who = (f"pid {holder.get('pid')} on {holder.get('host')}, since {holder.get('since')}"
               if holder else "another process")
        raise SpecError(f"study {folder} is being run by another driver ({who}); wait for it "
                        f"to end, or stop it and --resume the study") from None
    f.seek(0)
    f.truncate()
    f.write(json.dumps({"pid": os.getpid(), "host": socket.gethostname(),
                        "since": time.strftime("%Y-%m-%dT%H:%M:%S%z")}))
    f.flush()
    _held[folder] = f


def release(folder: Path) -> None:
    """Gives ``folder``'s lock back before the process ends (a driver that runs several
    studies one after another)."""
    f = _held.pop(folder.resolve(), None)
    if f is not None:
        fcntl.flock(f, fcntl.LOCK_UN)
        f.close()
