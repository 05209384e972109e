"""What a study's ``meta.json`` records of how it was produced, beyond its spec.

- ``git``: the commit, whether the tree had uncommitted changes, and for a dirty tree the
  change itself, written as ``source.patch`` in the study folder: ``git diff --binary`` of the
  whole working tree (untracked files that git does not ignore included) against the commit,
  checked to apply to that commit with ``git apply --check``. ``git checkout COMMIT && git
  apply source.patch`` gives back the code the study ran.
- ``distributions``: every installed Python distribution and its version
  (``importlib.metadata``), of the driver's environment.
- ``devices``: the devices the trials trained on, each with its host and how many trials:
  ``cpu``, or a GPU's name and memory, the driver, and the CUDA and cuDNN versions (each trial
  records its own, ``device_info``); and ``driver_device``, the driver's own.
- ``data``: the fingerprint of each data setting the study reads (``rollingq.data.preflight``).
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import os
import subprocess
import tempfile
from pathlib import Path
from typing import Any

from study.space import ROOT

PATCH = "source.patch"  # the uncommitted change of a dirty tree, in the study folder
UNTRACKED_LIMIT = 10 * 2**20  # bytes: a larger untracked file is listed, not put in the patch


def _git(*args: str, env: dict[str, str] | None = None, stdin: bytes | None = None,
         cwd: Path = ROOT) -> subprocess.CompletedProcess[bytes] | None:
    try:
        return subprocess.run(["git", *args], cwd=cwd, capture_output=True, timeout=60,
                              env={**os.environ, **(env or {})}, input=stdin)
    except (OSError, subprocess.TimeoutExpired):
        return None


def source_patch(cwd: Path = ROOT) -> tuple[str | None, bytes | None, list[dict[str, Any]]]:
    """(commit, the working tree's change against it, the untracked files left out of it) of
    the git checkout at ``cwd``.

    The change is ``git diff --binary`` of the tree as it is, untracked files that git does
    not ignore included (staged through a temporary index: the user's own index is not
    touched), or None for a clean tree or when git fails. Untracked files over
    ``UNTRACKED_LIMIT`` bytes (a data set or weights kept in the checkout) are left out and
    listed (path, bytes). Commit and change are None outside a git checkout.
    """
    head = _git("rev-parse", "HEAD", cwd=cwd)
    if head is None or head.returncode != 0:
        return None, None, []
    commit = head.stdout.decode().strip()
    others = _git("ls-files", "--others", "--exclude-standard", "-z", cwd=cwd)
    untracked = [n for n in (others.stdout.decode(errors="surrogateescape").split("\0")
                             if others is not None and others.returncode == 0 else []) if n]
    sizes = {n: (cwd / n).stat().st_size for n in untracked if (cwd / n).is_file()}
    skipped = [{"path": n, "bytes": b} for n, b in sizes.items() if b > UNTRACKED_LIMIT]
    small = [n for n in untracked if sizes.get(n, 0) <= UNTRACKED_LIMIT]
    with tempfile.TemporaryDirectory(prefix="rollingq-index-") as tmp:
        env = {"GIT_INDEX_FILE": str(Path(tmp) / "index")}
        steps = [("read-tree", "HEAD"), ("add", "-u")]
        steps += [("add", "--", *small[i:i + 500]) for i in range(0, len(small), 500)]
        for args in steps:
            done = _git(*args, env=env, cwd=cwd)
            if done is None or done.returncode != 0:
                return commit, None, skipped
        diff = _git("diff", "--cached", "--binary", "HEAD", env=env, cwd=cwd)
    if diff is None or diff.returncode != 0:
        return commit, None, skipped
    return commit, diff.stdout or None, skipped


def patch_applies(patch: bytes, commit: str, cwd: Path = ROOT) -> bool:
    """Whether ``git apply --check`` accepts the patch on the commit's tree (checked against
    the commit's files in a temporary index, without a checkout)."""
    with tempfile.TemporaryDirectory(prefix="rollingq-index-") as tmp:
        env = {"GIT_INDEX_FILE": str(Path(tmp) / "index")}
        read = _git("read-tree", commit, env=env, cwd=cwd)
        if read is None or read.returncode != 0:
            return False
        done = _git("apply", "--check", "--cached", "-", env=env, stdin=patch, cwd=cwd)
    return done is not None and done.returncode == 0


def git_record(folder: Path | None, cwd: Path = ROOT) -> dict[str, Any]:
    """The ``git`` entry of ``meta.json`` for the checkout at ``cwd`` (the project's); with a
    dirty tree and a ``folder``, writes the change to ``folder/source.patch`` and records its
    name, size, SHA-256, whether it applies to the commit, and the untracked files too large to
    be in it; ``patch_error`` says why a dirty tree has no patch."""
    commit, patch, skipped = source_patch(cwd)
    status = _git("status", "--porcelain", cwd=cwd)
    dirty = bool(status.stdout.strip()) if status is not None and status.returncode == 0 \
        else patch is not None
    record: dict[str, Any] = {"commit": commit, "dirty": dirty}
    if folder is not None and (folder / PATCH).exists():
        (folder / PATCH).unlink()  # an earlier session's
    if patch is not None and folder is not None:
        (folder / PATCH).write_bytes(patch)
        record.update(patch=PATCH, patch_bytes=len(patch),
                      patch_sha256=hashlib.sha256(patch).hexdigest(),
                      patch_applies=patch_applies(patch, commit, cwd))
    elif dirty and commit is not None:
        record["patch_error"] = "git could not write the working tree's diff"
    if skipped:
        record["untracked_not_in_patch"] = skipped
    return record


def distributions() -> dict[str, str]:
    """Every installed distribution -> its version, sorted by name (lower case)."""
    out: dict[str, str] = {}
    for dist in importlib.metadata.distributions():
        name = dist.metadata["Name"]
        if name:
            out.setdefault(name.lower(), dist.version)
    return dict(sorted(out.items()))


def _driver_version() -> str | None:
    """The NVIDIA kernel driver's version, from ``/proc`` or ``nvidia-smi``."""
    try:
        text = Path("/proc/driver/nvidia/version").read_text()
        for word in text.split():
            if word.count(".") >= 1 and word.replace(".", "").isdigit():
                return word
    except OSError:
        pass
    try:
        out = subprocess.run(["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
                             capture_output=True, text=True, timeout=20)
        return out.stdout.strip().splitlines()[0] if out.returncode == 0 and out.stdout else None
    except (OSError, subprocess.TimeoutExpired, IndexError):
        return None


def device_info(device: Any = None) -> dict[str, Any]:
    """The device a run trains on (a ``torch.device``; None: this process's CUDA device when
    there is one): ``{"device": "cpu"}``, or for a GPU its name and memory (GiB), the driver,
    and the CUDA and cuDNN versions torch runs with."""
    import torch

    if not torch.cuda.is_available() or (device is not None and device.type != "cuda"):
        return {"device": "cpu"}
    i = device.index if device is not None and device.index is not None else \
        torch.cuda.current_device()
    props = torch.cuda.get_device_properties(i)
    cudnn = torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None
    return {"device": "cuda", "gpu": props.name, "gpu_gib": round(props.total_memory / 2**30, 1),
            "driver": _driver_version(), "cuda": torch.version.cuda,
            "cudnn": str(cudnn) if cudnn is not None else None}
