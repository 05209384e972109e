"""Where a study lives: its local folder, and Ray's storage on a local disk, NFS or a bucket.

    results/<space>/<name>/           the study's files on the driver (trials.csv, the report...)
    <storage>/<space>/<name>/ray*/    Ray's experiment folders: the same folder when --storage is
                                      local, s3://BUCKET/.../<space>/<name>/ in a bucket, where
                                      the study's files are published too (``publish``)

``locate`` answers both for a new study and for one to resume, local or in a bucket
(``--resume s3://...``: its files are copied to the driver first), so the rest of the driver
never tells a path from a URI itself (``is_remote``).
"""

from __future__ import annotations

import time
import urllib.parse
from dataclasses import dataclass
from pathlib import Path

from analysis.remote import is_uri as is_remote
from study.space import SpecError

ROOT = Path(__file__).resolve().parents[1]
LOCAL_RESULTS = ROOT / "results"  # the driver's copy of a study whose storage is a bucket


@dataclass(frozen=True)
class Location:
    """A study's places.

    Attributes:
        folder: The study's folder on the driver (absolute).
        storage: Where Ray keeps the study's experiments: ``folder`` itself, or its URI.
        root: The results root the study is under (``--storage``, or the bucket URI a
            ``--resume s3://...`` named): what a resume command passes again.
    """

    folder: Path
    storage: str
    root: str

    @property
    def remote(self) -> bool:
        return is_remote(self.storage)


def local_root(root: str) -> Path:
    """The driver's results root: ``root`` itself, or ``results/`` when it is a bucket."""
    return LOCAL_RESULTS if is_remote(root) else Path(root)


def locate(space: str, root: str, resume: str | None = None, name: str | None = None) -> Location:
    """The study's places: a new study (``name``, default a timestamp) under ``root``, or the
    one ``resume`` names (a folder, ``latest`` of the space, or a bucket URI).

    Raises:
        SpecError: No study to resume, a folder that is not a study's, a study folder that
            exists already, or a URI that does not fit the space or ``root``.
    """
    if resume and is_remote(resume):
        resume, root = _from_bucket(resume, space, root)
    if resume == "latest":
        candidates = sorted(p for p in (local_root(root) / space).glob("*")
                            if (p / "space.yaml").exists())
        if not candidates:
            raise SpecError(f"--resume: no study of space {space!r} under "
                            f"{local_root(root) / space}; pass the study folder: "
                            f"--resume results/{space}/<timestamp>")
        folder = candidates[-1]
    elif resume:
        folder = Path(resume)
        if not (folder / "space.yaml").exists():
            raise SpecError(f"--resume {folder}: not a study folder (no space.yaml)")
    else:
        folder = local_root(root) / space / (name or time.strftime("%Y%m%d-%H%M%S"))
        if folder.exists() and any(folder.iterdir()):
            raise SpecError(f"study folder {folder} exists; pick another --name or --resume it")
    folder = folder.resolve()
    storage = join_uri(root, space, folder.name) if is_remote(root) else str(folder)
    return Location(folder, storage, root)


def study_space(resume: str) -> str | None:
    """The space of the study ``--resume`` names, read from the study itself (its
    ``space.yaml``'s name, else its parent folder's; a bucket URI's ``.../<space>/<name>``), or
    None where it names no study (``locate`` then says why)."""
    if is_remote(resume):
        parts = urllib.parse.urlsplit(resume).path.rstrip("/").split("/")
        return parts[-2] if len(parts) >= 3 and parts[-2] else None
    path = Path(resume) / "space.yaml"
    if not path.is_file():
        return None
    import yaml

    try:
        name = (yaml.safe_load(path.read_text()) or {}).get("name")
    except (yaml.YAMLError, AttributeError):
        name = None
    return name if isinstance(name, str) and name else Path(resume).resolve().parent.name


def _from_bucket(uri: str, space: str, root: str) -> tuple[str, str]:
    """``--resume s3://BUCKET/studies/<space>/<name>`` -> (the driver's local copy of the study,
    the storage root ``s3://BUCKET/studies``); the study's files (but Ray's folders, which the
    restore reads from the bucket) are copied to ``results/<space>/<name>`` when that is missing
    (a new head node)."""
    from analysis.remote import download

    scheme, netloc, path, query, fragment = urllib.parse.urlsplit(uri)
    parts = path.rstrip("/").split("/")
    if len(parts) < 3 or not parts[-1]:
        raise SpecError(f"--resume {uri}: not a study folder URI; expected "
                        f"{scheme}://BUCKET/.../{space}/<name>")
    if parts[-2] != space:
        raise SpecError(f"--resume {uri}: a study of space {parts[-2]!r}, not "
                        f"{space!r}; pass --space {parts[-2]}")
    base = urllib.parse.urlunsplit((scheme, netloc, "/".join(parts[:-2]), query, fragment))
    if is_remote(root) and root.rstrip("/") != base.rstrip("/"):
        raise SpecError(f"--resume {uri} is not under --storage {root}; drop "
                        f"--storage (the URI names the study's storage)")
    local = LOCAL_RESULTS / space / parts[-1]
    if not (local / "space.yaml").is_file():
        try:
            download(uri, into=local.parent)
        except OSError as e:  # nothing there, no bucket, no endpoint, no access
            raise SpecError(f"--resume {uri}: {e}") from None
        print(f"resume: copied the study's files from {uri} to {local}", flush=True)
    return str(local), base


def join_uri(base: str, *parts: str) -> str:
    """A path or URI with path parts added to its path, its query (``?endpoint_override=...&
    scheme=http``, as MinIO or Ceph need) kept at the end, never joined into."""
    scheme, netloc, path, query, fragment = urllib.parse.urlsplit(base)
    if not scheme:
        return "/".join([base.rstrip("/"), *parts])
    path = "/".join([path.rstrip("/"), *parts])
    return urllib.parse.urlunsplit((scheme, netloc, path, query, fragment))


def publish(folder: Path, uri: str) -> None:
    """Copies the study's files (tables, spec, meta, journal, report) beside Ray's experiment
    folder on remote storage (``s3://``, ``gs://``, ``file://``), so they outlive the head node."""
    from pyarrow import fs

    remote, base = fs.FileSystem.from_uri(uri)
    remote.create_dir(base, recursive=True)
    fs.copy_files(str(folder), base, source_filesystem=fs.LocalFileSystem(),
                  destination_filesystem=remote)
