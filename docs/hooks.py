"""mkdocs hooks: the configuration reference, generated from ``rollingq/config.py`` at build
time; the one table of differences, gathered from the pages that explain them; and the maths
rendered to MathML at build time.

A page holding the line ``<!-- config-reference -->`` gets, in its place, one table per config
group (``data``, ``model``, ``rollingq``, ``balance``, ``optim``, ``train``): every key, its type,
its default (from the dataclasses themselves), its valid choices (the field's ``Literal[...]``,
which ``Config.validate`` checks: ``config.CHOICES``) and the comment written beside it in the
source (or the comment block just above it). The reference cannot drift from the code: it is
the code.

A page holding ``<!-- differences-table -->`` gets the rows of the RollingQ differences table
(``method.md`` §6) and of the baselines' (``baselines.md`` §7) as one table: each row is
written once, beside its reasons, and the combined table is derived from them.

A page holding ``<!-- report-words -->`` gets every caption and methodology paragraph of the
study report, from ``analysis/report/text.md``, the one place they are written.

Maths is written ``$...$`` and ``$$...$$`` (GitHub renders the same source); pymdownx.arithmatex
marks it and ``on_page_content`` converts each formula with latex2mathml into MathML, which
browsers render natively: the site needs no script and no network to show its maths, and a
formula latex2mathml cannot convert fails the build.
"""

from __future__ import annotations

import ast
import dataclasses
import html
import re
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MARK = "<!-- config-reference -->"
DIFFERENCES = "<!-- differences-table -->"
WORDS = "<!-- report-words -->"
# pymdownx.arithmatex, generic mode: inline \(...\) in a span, display \[...\] in a div.
MATH = re.compile(r'<(span|div) class="arithmatex">\\([(\[])(.*?)\\[)\]]</\1>', re.S)


def comments(source: str) -> dict[tuple[str, str], str]:
    """(class, field) -> the comment beside the field, else the comment lines just above it."""
    lines = source.splitlines()
    out: dict[tuple[str, str], str] = {}
    for node in ast.parse(source).body:
        if not isinstance(node, ast.ClassDef):
            continue
        for stmt in node.body:
            if not isinstance(stmt, ast.AnnAssign) or not isinstance(stmt.target, ast.Name):
                continue
            line = lines[stmt.lineno - 1]
            text = ""
            if "  # " in line:
                text = line.split("  # ", 1)[1].strip()
            else:
                above, i = [], stmt.lineno - 2
                while i >= 0 and lines[i].strip().startswith("#"):
                    above.insert(0, lines[i].strip().lstrip("#").strip())
                    i -= 1
                text = " ".join(above)
            out[(node.name, stmt.target.id)] = text
    return out


def cell(text: object) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def reference() -> str:
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    from rollingq import config as module

    source = (ROOT / "rollingq" / "config.py").read_text()
    notes, valid = comments(source), module.CHOICES
    parts = []
    for group in dataclasses.fields(module.Config):
        cls = group.default_factory
        parts += [f"### `{group.name}`", "", "| key | type | default | valid | meaning |",
                  "|---|---|---|---|---|"]
        instance = cls()
        for f in dataclasses.fields(cls):
            key = f"{group.name}.{f.name}"
            default = getattr(instance, f.name)
            kind = f.type if isinstance(f.type, str) else getattr(f.type, "__name__", f.type)
            kind = "str" if key in valid else kind  # a Literal[...]: its values are listed
            parts.append(f"| `{key}` | `{cell(kind)}` | `{cell(repr(default))}` | "
                         f"{cell(', '.join(valid.get(key, ())))} | "
                         f"{cell(notes.get((cls.__name__, f.name), ''))} |")
        parts.append("")
    return "\n".join(parts)


def table_rows(page: Path, section: int) -> list[str]:
    """The body rows of the first table in ``## <section>.`` of a docs page."""
    text = page.read_text()
    found = re.search(rf"^## {section}\..*?(?=^## |\Z)", text, re.S | re.M)
    rows = [line for line in found.group(0).splitlines() if line.startswith("|")] if found else []
    if len(rows) < 3:
        raise ValueError(f"{page.name} has no table in its section {section}")
    return rows[2:]  # past the header and the |---| line


def differences(docs: Path) -> str:
    head = ["| reference | what | the reference | here (default) | the published behaviour |",
            "|---|---|---|---|---|"]
    rollingq = [f"| RollingQ {row}" for row in table_rows(docs / "method.md", 6)]
    # baselines.md §7: | method | the reference | ours | switch |, no "what" column
    baselines = ["|{}| |{}".format(*row.split("|", 2)[1:]) for row in
                 table_rows(docs / "baselines.md", 7)]
    return "\n".join(head + rollingq + baselines)


def report_words() -> str:
    """Every text of ``analysis/report/text.md`` (``analysis.report.captions``) under its id,
    in a ``text`` block: ``{field}`` is what the report fills in."""
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    from analysis.report.captions import texts

    parts = []
    for key, words in texts().items():
        parts += [f"#### `{key}`", "", "```text", textwrap.fill(words, 96), "```", ""]
    return "\n".join(parts)


def on_page_markdown(markdown: str, page, config, files) -> str:
    if MARK in markdown:
        markdown = markdown.replace(MARK, reference())
    if DIFFERENCES in markdown:
        markdown = markdown.replace(DIFFERENCES, differences(Path(config["docs_dir"])))
    if WORDS in markdown:
        markdown = markdown.replace(WORDS, report_words())
    return markdown


def mathml(match: re.Match) -> str:
    from latex2mathml.converter import convert

    tag, opening, tex = match.groups()
    display = "block" if opening == "[" else "inline"
    out = convert(html.unescape(tex).strip(), display=display)
    if "<merror" in out:
        raise ValueError(f"latex2mathml cannot convert the formula {tex!r}")
    return f'<{tag} class="arithmatex">{out}</{tag}>'


def on_page_content(content: str, page, config, files) -> str:
    return MATH.sub(mathml, content)
