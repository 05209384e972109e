"""The report's tables as LaTeX and its figures as PDF, for papers (analysis/report/latex.py):
the cells' Markdown and symbols written as LaTeX, and the tables of a real report compiled by
pdflatex and rendered to PNG (the TeX Live and poppler packages `.ci/run` installs)."""

from __future__ import annotations

import shutil
import subprocess

import matplotlib.image
import pandas as pd
import pytest

from analysis.report import latex


def test_cells_keep_their_bold_code_and_symbols_as_latex():
    assert latex.cell("**51.9 ± 0.4**") == r"\textbf{51.9 $\pm$ 0.4}"
    assert latex.cell("`rollingq.max_rotations` & 5 %") == (
        r"\texttt{rollingq.max\_rotations} \& 5 \%")
    assert latex.cell("Δ vs baseline −0.4 [95% CI], p < 0.001, η²") == (
        r"$\Delta$ vs baseline $-$0.4 [95\% CI], p \textless{} 0.001, $\eta$$^2$")
    t = latex.table(pd.DataFrame({"a_b": ["x"], "c": ["**y**"]}), "A caption.", "tab:t")
    assert r"\toprule" in t and r"\midrule" in t and r"\bottomrule" in t
    assert r"a\_b & c \\" in t and r"x & \textbf{y} \\" in t


@pytest.mark.integration
@pytest.mark.skipif(not (shutil.which("pdflatex") and shutil.which("pdftoppm")),
                    reason="pdflatex or pdftoppm is not installed (apt-get install -y "
                           "texlive-latex-base texlive-latex-recommended poppler-utils; "
                           ".ci/run does)")
def test_a_reports_tables_compile_and_render(paper_report, tmp_path):
    """The two-data-set report: its tables (the main table with its letters, the claims, the
    pairs, the comparison across data sets) compile with pdflatex, and the PDF's pages render to
    PNGs that are not blank; each figure has its PDF."""
    out = paper_report.parent
    tables = sorted(p.stem for p in (out / "tables").glob("*.tex"))
    for wanted in ("main_table-1", "claims-1", "across-1", "tables"):
        assert wanted in tables, tables
    work = tmp_path / "tables"
    shutil.copytree(out / "tables", work)
    done = subprocess.run(["pdflatex", "-interaction=nonstopmode", "-halt-on-error",
                           "tables.tex"], cwd=work, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout[-3000:]
    pages = subprocess.run(["pdftoppm", "-png", "-r", "40", "tables.pdf", "page"], cwd=work,
                           capture_output=True, text=True, timeout=120)
    assert pages.returncode == 0, pages.stderr
    pngs = sorted(work.glob("page-*.png"))
    assert len(pngs) == len(tables) - 1  # a page a table
    for png in pngs:
        img = matplotlib.image.imread(png)
        assert img[..., :3].std() > 0.02, png  # ink on the page
    for figure in (out / "figures").glob("*.png"):
        pdf = figure.with_suffix(".pdf")
        assert pdf.read_bytes()[:5] == b"%PDF-", pdf
