"""The report's tables for a paper: each table of the report also as a LaTeX ``table`` with
booktabs rules, ``tables/<section>-<k>.tex`` beside report.md (k counts the section's tables
from 1), and ``tables/tables.tex``, a document that inputs them all and compiles as it is
(``pdflatex tables.tex``). The figures are written as PDF beside their PNG
(``context.Context.figure``).

A cell's Markdown (``**bold**``, backticks) becomes ``\\textbf``/``\\texttt``; LaTeX's special
characters are escaped, and the symbols the report uses (±, −, Δ, α, ≤, ², …) are written as
LaTeX commands, so the files compile with pdflatex and the packages of a basic TeX Live
(booktabs, graphicx, geometry).
"""

from __future__ import annotations

import re
from pathlib import Path

import pandas as pd

from analysis.report.blocks import Table

ESCAPES = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#",
           "_": r"\_", "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}",
           "^": r"\textasciicircum{}", "<": r"\textless{}", ">": r"\textgreater{}",
           "|": r"\textbar{}"}
SYMBOLS = {"±": r"$\pm$", "−": r"$-$", "–": "--", "—": "---", "Δ": r"$\Delta$",
           "α": r"$\alpha$", "β": r"$\beta$", "ρ": r"$\rho$", "τ": r"$\tau$", "θ": r"$\theta$",
           "η": r"$\eta$", "ω": r"$\omega$", "χ": r"$\chi$", "σ": r"$\sigma$", "μ": r"$\mu$",
           "λ": r"$\lambda$", "²": r"$^2$", "×": r"$\times$", "≤": r"$\le$", "≥": r"$\ge$",
           "≈": r"$\approx$", "≠": r"$\neq$", "→": r"$\to$", "←": r"$\leftarrow$",
           "…": r"\ldots{}", "·": r"$\cdot$", "†": r"\dag{}", "√": r"$\surd$", "∞": r"$\infty$",
           "’": "'", "‘": "`", "“": "``", "”": "''"}
DOCUMENT = r"""\documentclass{article}
\usepackage[T1]{fontenc}
\usepackage{booktabs}
\usepackage{graphicx}
\usepackage[landscape,margin=1.5cm]{geometry}
\begin{document}
%s
\end{document}
"""


def cell(x: object) -> str:
    """A cell or a caption as LaTeX (module docstring)."""
    s = "".join(ESCAPES.get(c, SYMBOLS.get(c, c)) for c in str(x))
    s = re.sub(r"\*\*(.+?)\*\*", r"\\textbf{\1}", s)
    return re.sub(r"`(.+?)`", r"\\texttt{\1}", s)


def table(frame: pd.DataFrame, caption: str, label: str) -> str:
    """One table: a ``table`` float, its tabular scaled to the text width, booktabs rules."""
    columns = "l" * len(frame.columns)
    head = " & ".join(cell(c) for c in frame.columns) + r" \\"
    body = "\n".join(" & ".join(cell(v) for v in row) + r" \\"
                     for row in frame.itertuples(index=False))
    return "\n".join([
        r"\begin{table}[htbp]", r"\centering", r"\caption{" + cell(caption) + "}",
        r"\label{" + label + "}", r"\resizebox{\linewidth}{!}{%",
        r"\begin{tabular}{" + columns + "}", r"\toprule", head, r"\midrule", body,
        r"\bottomrule", r"\end{tabular}}", r"\end{table}", ""])


def write(sections: list, out: Path) -> list[Path]:
    """Writes every table of the report's sections into ``out/tables/`` (stale ones removed)
    and ``tables.tex``; returns the tables' paths."""
    folder = out / "tables"
    folder.mkdir(parents=True, exist_ok=True)
    for stale in folder.glob("*.tex"):
        stale.unlink()
    written = []
    for section in sections:
        tables = [b for b in section.blocks if isinstance(b, Table) and len(b.frame.columns)]
        for k, t in enumerate(tables, 1):
            name = f"{section.key}-{k}"
            path = folder / f"{name}.tex"
            path.write_text(table(t.frame, t.caption or section.title, f"tab:{name}"))
            written.append(path)
    (folder / "tables.tex").write_text(DOCUMENT % "\n".join(  # a page each: floats never pile up
        r"\input{" + p.stem + r"}\clearpage" for p in written))
    return written
