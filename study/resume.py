"""Ray's resume state of a study, made readable again after its driver was killed.

Ray Tune's driver writes its state (``tuner.pkl``, ``experiment_state-<stamp>.json``, the
searcher's ``*-state-<stamp>.*``) in a staging folder on its machine and copies the whole folder
over the study's ``ray/`` folder every few seconds; the copy truncates each file before it
writes it. A driver killed (SIGKILL, the OOM killer, a pre-empted job) during a copy leaves a
truncated file, and ``Tuner.restore`` then stops on ``EOFError`` or ``JSONDecodeError``: the
study could not be resumed at all. ``repair`` runs before the restore:

- ``tuner.pkl`` holds only what the study was built with (the spec's trainable, param space,
  searcher before its first trial, run config): it is rebuilt from the spec;
- a truncated snapshot of the newest driver session is copied back from Ray's staging folder
  (``<tmp>/ray/session_*/artifacts/*/ray/driver_artifacts/``), which the copy was reading and
  which is whole. A staging copy is taken only if it begins with the bytes the cut copy holds
  and its trial snapshot knows a trial folder of the study. When it is gone too (the driver's
  machine lost, its temporary folder cleaned), ``RepairError`` says the study cannot be
  resumed. An older session's snapshot is never used instead: it points at checkpoints Ray
  has since deleted and does not know the trials begun since, which would train again.

Files are checked without unpickling anything (``pickletools`` walks the opcodes).
"""

from __future__ import annotations

import json
import os
import pickletools
from collections.abc import Callable
from pathlib import Path, PurePosixPath

TUNER = "tuner.pkl"
SNAPSHOTS = ("experiment_state-", "searcher-state-", "basic-variant-state-")
TRIALS = SNAPSHOTS[0]


class RepairError(RuntimeError):
    """Ray's state of the study cannot be made readable."""


def readable(data: bytes) -> bool:
    """Whether a state file's bytes are whole: a pickle (protocol 2 or later, as Ray writes
    them, whatever the file's extension: ``basic-variant-state-*.json`` is one) whose opcodes
    run to its STOP, or else JSON that parses."""
    if not data:
        return False
    if data[:1] != b"\x80":
        try:
            json.loads(data)
        except ValueError:
            return False
        return True
    try:
        for _ in pickletools.genops(data):
            pass
    except (ValueError, EOFError):
        return False
    return True


def repair(exp: str, rebuild_tuner: Callable[[], None]) -> list[str]:
    """Makes Ray's state in the experiment folder ``exp`` (a path or a storage URI) readable;
    returns a line per repair (none when every file was whole).

    Args:
        rebuild_tuner: Writes ``tuner.pkl`` anew (constructing the study's ``tune.Tuner``).
    """
    import pyarrow.fs

    fs, root = filesystem(exp)
    infos = fs.get_file_info(pyarrow.fs.FileSelector(root, allow_not_found=True))
    files = {PurePosixPath(f.path).name for f in infos if f.type == pyarrow.fs.FileType.File}
    folders = {PurePosixPath(f.path).name for f in infos
               if f.type == pyarrow.fs.FileType.Directory}

    def read(name: str) -> bytes:
        with fs.open_input_stream(f"{root}/{name}") as f:
            return f.readall()

    lines: list[str] = []
    sessions: dict[str, list[str]] = {}  # a driver session's files end with its stamp
    for name in sorted(files):
        for prefix in SNAPSHOTS:
            if name.startswith(prefix):
                sessions.setdefault(name[len(prefix):].rsplit(".", 1)[0], []).append(name)
    stamps = sorted(sessions)
    if stamps:  # Ray restores the newest session's snapshot
        session = {n: read(n) for n in sessions[stamps[-1]]}
        cut = {n: data for n, data in session.items() if not readable(data)}
        if cut:
            found = staging_copy(f"{TRIALS}{stamps[-1]}.json", cut, folders)
            if found is None:
                raise RepairError(
                    f"Ray's snapshot {exp}/{', '.join(cut)} is truncated (its driver was "
                    f"killed while writing it) and no whole copy is left in Ray's staging "
                    f"folders on this machine ({ray_temp()}/session_*/artifacts/*/"
                    f"driver_artifacts): the study cannot be resumed; start it again under "
                    f"another --name")
            staging, whole = found
            for name, data in whole.items():
                write_atomic(fs, f"{root}/{name}", data)
            lines.append(f"{', '.join(cut)} was truncated: restored from Ray's whole copy in "
                         f"{staging}")
    if stamps and (TUNER not in files or not readable(read(TUNER))):
        rebuild_tuner()
        if not readable(read(TUNER)):
            raise RepairError(f"{exp}/{TUNER} is still unreadable after rebuilding it")
        lines.append(f"{TUNER} was {'truncated' if TUNER in files else 'missing'}: "
                     f"rebuilt from the study's space.yaml")
    return lines


def staging_copy(snapshot: str, cut: dict[str, bytes],
                 folders: set[str]) -> tuple[Path, dict[str, bytes]] | None:
    """The newest of Ray's staging folders on this machine holding the files the copy was
    reading, with their whole bytes: each of ``cut`` (name: the bytes the copy wrote) whole
    there and beginning with those bytes, and the trial snapshot ``snapshot``, whole, knowing a
    trial folder of the study (``folders``) when it has any; else None."""
    found = {p.resolve() for p in  # session_latest is a link to one of them
             Path(ray_temp()).glob(f"session_*/artifacts/*/*/driver_artifacts/{snapshot}")}
    for path in sorted(found, key=lambda p: p.stat().st_mtime, reverse=True):
        whole = {name: continuation(path.parent / name, start) for name, start in cut.items()}
        if None in whole.values():
            continue
        data = whole.get(snapshot) or path.read_bytes()
        if readable(data) and (not folders or folders & known_trials(data)):
            return path.parent, whole
    return None


def continuation(path: Path, start: bytes) -> bytes | None:
    """The bytes of ``path`` if it is a whole state file that begins with ``start``."""
    if not path.is_file():
        return None
    data = path.read_bytes()
    return data if readable(data) and data.startswith(start) else None


def known_trials(snapshot: bytes) -> set[str]:
    """The trial folders an experiment snapshot (``experiment_state-*.json``) knows."""
    state = json.loads(snapshot)
    return {json.loads(entry[0])["relative_logdir"] for entry in state["trial_data"]}


def ray_temp() -> str:
    """Ray's temporary folder on this machine (where its sessions stage their files)."""
    from ray._common.utils import get_default_system_temp_dir

    return os.path.join(get_default_system_temp_dir(), "ray")


def write_atomic(fs, path: str, data: bytes) -> None:
    """Writes through a temporary file and a move, so a kill now leaves the old file (the
    temporary one is hidden: no name Ray or ``repair`` reads)."""
    folder, name = path.rsplit("/", 1)
    tmp = f"{folder}/.{name}.tmp"
    with fs.open_output_stream(tmp) as f:
        f.write(data)
    fs.move(tmp, path)


def filesystem(exp: str):
    """The pyarrow filesystem and the path within it of a local folder or a storage URI."""
    import pyarrow.fs

    if "://" in exp:
        return pyarrow.fs.FileSystem.from_uri(exp)
    return pyarrow.fs.LocalFileSystem(), os.path.abspath(exp)
