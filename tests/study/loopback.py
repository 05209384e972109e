"""Servers the tests start on 127.0.0.1 (optuna-dashboard, moto's S3): a free port, and a
server process in a process group of its own, stopped with its children by that group."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def server(argv: list[str], **popen: Any) -> Iterator[subprocess.Popen]:
    """Runs ``argv`` in a new process group; on exit SIGTERM to the group (SIGKILL after
    20 s), so a server's workers (gunicorn's, werkzeug's reloader) go with it."""
    proc = subprocess.Popen(argv, start_new_session=True, **popen)
    try:
        yield proc
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
