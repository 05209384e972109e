"""The decode-once cache: every trial on a node reads the same memory-mapped arrays.

A data set is decoded once (WAV -> log-STFT, JPEG -> uint8 frames, pickle -> float arrays) into
an *entry*, a folder of ``.npy`` files named by what produced it::

    <cache_dir>/<dataset>-<key>/          complete entries only (renamed into place)
        manifest.json                     written last: version, recipe, shape/dtype/bytes/blake2b
        train_audio.npy, train_visual.npy, ...
        ids.json, dropped.tsv
    <cache_dir>/<dataset>-<key>.lock      fcntl lock taken while an entry is checked and built
    <cache_dir>/<dataset>-<key>.tmp-...   an entry being built (removed if the build fails)

``key`` hashes the recipe: ``CACHE_VERSION``, the preprocessing settings and the exact sample
list (ids, labels, source paths), so a changed setting or split gets a new entry and an old one
is never read by mistake. Source files are identified by path, not content: after replacing
files in place, delete the entry (or ``prepare --force``).

Safety between processes: an entry becomes visible by one atomic ``rename`` after its manifest
is written, so no reader sees half an entry. Builders take an exclusive ``fcntl.flock`` and
check again once they hold it, so parallel trials decode a data set once; the others wait and
then read. Opening an entry checks every file's size, dtype and shape against the manifest; a
truncated or mismatched entry is set aside and rebuilt. ``verify`` also compares checksums.
The lock is per node: keep ``data.cache_dir`` on a local disk (flock over NFS is unreliable).
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import logging
import os
import secrets
import shutil
import socket
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

log = logging.getLogger(__name__)

CACHE_VERSION = 1  # bump when an entry's layout or a decoder's output changes
MANIFEST = "manifest.json"

# Counts for this process: ``builds`` (entries built), ``reuses`` (entries opened without
# building) and ``samples_decoded`` (samples the loaders decoded). Tests read them.
STATS: Counter[str] = Counter()


def default_cache_dir() -> Path:
    """``$ROLLINGQ_CACHE``, else ``$XDG_CACHE_HOME/rollingq``, else ``~/.cache/rollingq``."""
    if os.environ.get("ROLLINGQ_CACHE"):
        return Path(os.environ["ROLLINGQ_CACHE"])
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "rollingq"


def recipe_key(recipe: dict[str, Any]) -> str:
    """A short stable hash of a JSON-serialisable recipe (with the cache version)."""
    text = json.dumps({"cache_version": CACHE_VERSION, **recipe}, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


@dataclass
class Entry:
    """An opened cache entry.

    Attributes:
        path: The entry folder.
        arrays: Name -> memory-mapped array (copy-on-write: writes never reach the file).
        info: What the builder returned (sizes, shapes, counts).
        built: Whether this call built the entry.
    """

    path: Path
    arrays: dict[str, np.ndarray]
    info: dict[str, Any]
    built: bool = False


@dataclass
class Writer:
    """Handed to a builder: creates the entry's arrays and text files in the build folder."""

    path: Path
    files: dict[str, np.ndarray] = field(default_factory=dict)

    def array(self, name: str, shape: tuple[int, ...], dtype: Any) -> np.ndarray:
        """A new zero-filled ``name.npy`` opened for writing (memory-mapped)."""
        arr = np.lib.format.open_memmap(self.path / f"{name}.npy", "w+", np.dtype(dtype), shape)
        self.files[name] = arr
        return arr

    def text(self, name: str, text: str) -> Path:
        path = self.path / name
        path.write_text(text)
        return path


def _checksum(path: Path) -> str:
    h = hashlib.blake2b(digest_size=16)
    with path.open("rb") as f:
        while chunk := f.read(1 << 22):
            h.update(chunk)
    return h.hexdigest()


def _open(path: Path, key: str) -> tuple[Entry | None, str]:
    """Opens a complete entry, or returns (None, why it is unusable)."""
    manifest_path = path / MANIFEST
    if not path.is_dir():
        return None, "absent"
    try:
        manifest = json.loads(manifest_path.read_text())
    except (OSError, ValueError) as e:
        return None, f"{manifest_path} is unreadable ({e})"
    if manifest.get("version") != CACHE_VERSION or manifest.get("key") != key:
        return None, f"{manifest_path} is from another version or recipe"
    arrays = {}
    for name, meta in manifest["files"].items():
        file = path / f"{name}.npy"
        try:
            size = file.stat().st_size
        except OSError:
            return None, f"{file} is missing"
        if size != meta["bytes"]:
            return None, f"{file} has {size} bytes, the manifest says {meta['bytes']} (truncated?)"
        try:
            mode = "c" if int(np.prod(meta["shape"])) > 0 else None
            arr = np.load(file, mmap_mode=mode, allow_pickle=False)
        except (OSError, ValueError) as e:
            return None, f"{file} is unreadable ({e})"
        if list(arr.shape) != meta["shape"] or str(arr.dtype) != meta["dtype"]:
            return None, f"{file} holds {arr.dtype}{arr.shape}, the manifest says " \
                f"{meta['dtype']}{tuple(meta['shape'])}"
        arrays[name] = arr
    return Entry(path, arrays, manifest.get("info", {})), "ok"


@contextmanager
def _locked(lock_path: Path) -> Iterator[None]:
    with lock_path.open("a") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            log.info("waiting for %s: another process is building this cache entry", lock_path)
            fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def _fsync(path: Path) -> None:
    """Flushes a file or folder to disk, so a crash cannot leave a renamed, empty entry."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def ensure(
    cache_dir: Path,
    name: str,
    recipe: dict[str, Any],
    build: Callable[[Writer], dict[str, Any]],
    force: bool = False,
) -> Entry:
    """Opens the entry for ``recipe``, building it first if it is absent or broken.

    Args:
        cache_dir: The cache folder (created if needed).
        name: The data set name, the entry's prefix.
        recipe: Everything the entry's contents depend on (JSON-serialisable).
        build: Fills a Writer with the entry's arrays; returns a JSON-serialisable info dict.
        force: Rebuild even when a valid entry exists.

    Returns:
        The opened Entry; ``built`` says whether this call built it.
    """
    key = recipe_key(recipe)
    final = cache_dir / f"{name}-{key}"
    if not force:
        entry, _ = _open(final, key)
        if entry is not None:
            STATS["reuses"] += 1
            return entry
    cache_dir.mkdir(parents=True, exist_ok=True)
    with _locked(cache_dir / f"{name}-{key}.lock"):
        entry, why = _open(final, key)
        if entry is not None and not force:  # another process built it while we waited
            STATS["reuses"] += 1
            return entry
        if final.exists():
            log.warning("rebuilding cache entry %s: %s", final, "forced" if force else why)
            aside = final.with_name(f"{final.name}.broken-{os.getpid()}")
            final.rename(aside)
            shutil.rmtree(aside, ignore_errors=True)
        for stale in cache_dir.glob(f"{name}-{key}.tmp-*"):  # left by a killed builder
            shutil.rmtree(stale, ignore_errors=True)
        tmp = cache_dir / f"{name}-{key}.tmp-{os.getpid()}-{secrets.token_hex(4)}"
        tmp.mkdir()
        began = time.perf_counter()
        try:
            writer = Writer(tmp)
            info = build(writer)
            manifest = _seal(tmp, writer, {"version": CACHE_VERSION, "key": key, "name": name,
                                           "recipe": recipe, "info": info}, began)
            tmp.rename(final)  # the moment the entry becomes visible, complete
            _fsync(cache_dir)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        STATS["builds"] += 1
        entry, why = _open(final, key)
        if entry is None:
            raise RuntimeError(f"the cache entry {final} just built does not open: {why}")
        entry.built = True
        log.info("built cache entry %s in %.1f s", final, manifest["build_seconds"])
        return entry



def _seal(tmp: Path, writer: Writer, head: dict[str, Any], began: float) -> dict[str, Any]:
    """Flushes and checksums every array the build wrote, writes the manifest (``head`` with
    the files, the builder and the build's time) and syncs it all to disk; returns the
    manifest."""
    files = {}
    for fname, arr in writer.files.items():
        if isinstance(arr, np.memmap):
            arr.flush()
        path = tmp / f"{fname}.npy"
        files[fname] = {"shape": list(arr.shape), "dtype": str(arr.dtype),
                        "bytes": path.stat().st_size, "blake2b": _checksum(path)}
        _fsync(path)
    writer.files.clear()
    manifest = {**head, "files": files,
                "built_by": {"host": socket.gethostname(), "pid": os.getpid()},
                "build_seconds": round(time.perf_counter() - began, 3),
                "created": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
    (tmp / MANIFEST).write_text(json.dumps(manifest, indent=1, default=str) + "\n")
    for path in tmp.iterdir():
        if path.suffix != ".npy":
            _fsync(path)
    _fsync(tmp)
    return manifest

def verify(entry: Entry) -> list[str]:
    """Compares every file's checksum with the manifest; returns the problems (none: [])."""
    manifest = json.loads((entry.path / MANIFEST).read_text())
    problems = []
    for name, meta in manifest["files"].items():
        got = _checksum(entry.path / f"{name}.npy")
        if got != meta["blake2b"]:
            problems.append(f"{entry.path / name}.npy: checksum {got}, manifest {meta['blake2b']}")
    return problems


def entry_bytes(entry: Entry) -> int:
    return sum(f.stat().st_size for f in entry.path.iterdir() if f.is_file())
