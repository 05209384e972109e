"""The report's captions and methodology paragraphs, read from ``text.md`` beside this module:
one ``## id`` heading a text, the paragraph under it with ``{field}`` where a section fills in a
value (``str.format``). The sections ask for a text by its id; docs/report.md links to the file
instead of restating it."""

from __future__ import annotations

import functools
import re
from pathlib import Path

TEXT_FILE = Path(__file__).with_name("text.md")
HEADING = re.compile(r"^## (\S+)\s*$")


@functools.cache
def texts() -> dict[str, str]:
    """Every text by its id, in the file's order; a text's line breaks are wrapping."""
    out: dict[str, list[str]] = {}
    current = None
    for line in TEXT_FILE.read_text(encoding="utf-8").splitlines():
        heading = HEADING.match(line)
        if heading:
            current = heading.group(1)
            if current in out:
                raise ValueError(f"{TEXT_FILE}: the text {current!r} is defined twice")
            out[current] = []
        elif current is not None and line.strip():
            out[current].append(line.strip())
    return {key: " ".join(lines) for key, lines in out.items()}


def text(key: str, **fields: object) -> str:
    """The text ``key`` with its fields filled in.

    Raises:
        KeyError: No such text, or a field the text names was not given.
    """
    try:
        template = texts()[key]
    except KeyError:
        raise KeyError(f"no text {key!r} in {TEXT_FILE.name}") from None
    return template.format(**fields)
