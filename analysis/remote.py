"""Study folders on remote storage (``s3://``, ``gs://``, with URI options such as
``?endpoint_override=HOST:PORT&scheme=http``; ``AWS_ENDPOINT_URL`` works too), read and
written through pyarrow's filesystems, which Ray's storage uses.

The report reads a remote study from a local copy of its files (Ray's experiment folder
``ray*/``, with the checkpoints, is left out: the report reads the tables) and publishes the
report's files beside the study's in the bucket.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

REPORT_FILES = ("report.md", "report.html", "figures")


def is_uri(path: str | Path) -> bool:
    return "://" in str(path)


def download(uri: str, into: Path | None = None) -> Path:
    """Copies a remote study folder's files but Ray's experiment folders to a local folder
    (a new temporary one by default), named as the study; returns it.

    Raises:
        FileNotFoundError: Nothing at the URI.
    """
    from pyarrow import fs

    remote, base = fs.FileSystem.from_uri(uri)
    base = base.rstrip("/")
    infos = remote.get_file_info(fs.FileSelector(base, recursive=True, allow_not_found=True))
    files = [i for i in infos if i.type == fs.FileType.File
             and not i.path[len(base) + 1:].split("/")[0].startswith("ray")]
    if not files:
        raise FileNotFoundError(f"{uri}: no study files there (expected trials.csv, "
                                f"space.yaml, meta.json)")
    local = (into or Path(tempfile.mkdtemp(prefix="rollingq-report-"))) / Path(base).name
    for info in files:
        target = local / info.path[len(base) + 1:]
        target.parent.mkdir(parents=True, exist_ok=True)
        with remote.open_input_stream(info.path) as src:
            target.write_bytes(src.read())
    return local


def upload_report(local: Path, uri: str) -> None:
    """Copies the report's files (report.md, report.html, figures/) of a local folder to the
    remote study folder, replacing an earlier report's figures."""
    from pyarrow import fs

    remote, base = fs.FileSystem.from_uri(uri)
    base = base.rstrip("/")
    if remote.get_file_info(f"{base}/figures").type == fs.FileType.Directory:
        remote.delete_dir(f"{base}/figures")
    for name in REPORT_FILES:
        path = local / name
        if path.is_dir():
            fs.copy_files(str(path), f"{base}/{name}", source_filesystem=fs.LocalFileSystem(),
                          destination_filesystem=remote)
        elif path.is_file():
            with remote.open_output_stream(f"{base}/{name}") as out:
                out.write(path.read_bytes())
