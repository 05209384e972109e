"""The study report: results folder(s) -> report.md, a self-contained report.html and PNG figures.

    python -m analysis.report results/rotation_ablation/20261125-153537/
    python -m analysis.report results/hpo/cremad-run/ results/hpo/ks-run/ --out reports/hpo

The study driver calls ``generate([folder])`` at the end of every study; any study can be
re-reported from its files alone. The report is data first (``sections``: each section's
blocks of headings, paragraphs, tables and figures, its summary lines and the numbers it shows),
rendered twice: Markdown with the figures as files under ``figures/``, and HTML with the same
figures embedded as base64 PNG, so the HTML opens anywhere on its own. Captions and methodology
paragraphs are words of ``text.md`` (``captions``).

Sections, in this order (``build``; one module each under ``sections/``): what the study says
(summary), provenance, trials (excluded ones counted), the main table, which variant is best
across data sets (a grid on two or more), the paper's claims on this study
(analysis/claims.py), a sequential study's design and looks (analysis/looks.py), a
multi-objective study's Pareto front, sensitivity statistics (ANOVA of the headline and of every
outcome of analysis/outcomes.py, or PED-ANOVA importance), figures, the paper comparison,
artifacts. Each section is built on its own: one that fails says so in the report and the rest
is still written (``context.Context.section``).
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from pathlib import Path

import numpy as np

from analysis import outcomes, remote
from analysis.declarations import declarations
from analysis.report import latex
from analysis.report.blocks import Heading, Para, render_html, render_markdown
from analysis.report.captions import text
from analysis.report.context import CLAIMS_TITLE, DEFAULT_METRICS, Context, Section
from analysis.report.sections import (
    across,
    artifacts,
    figures,
    main_table,
    paper,
    pareto,
    provenance,
    sensitivity,
    sequential,
    trials,
)
from analysis.report.sections import claims as claims_section
from analysis.results import ResultsError, load

EXIT_BAD_INPUT = 2


def build(ctx: Context) -> list[Section]:
    """The report's sections, in order ("What the study says" is made from their summaries)."""
    res = ctx.res
    space = res.metas[0].get("space") or res.designs[0].space
    question = res.designs[0].question or res.metas[0].get("question") or ""
    ctx.add(Heading(1, f"Study report: {space}"))
    if question:
        ctx.add(Para(f"**Question:** {question}"))
    ctx.add(Para(f"Generated {time.strftime('%Y-%m-%d %H:%M:%S %Z')} from "
                 + ", ".join(f"`{d}`" for d in res.dirs) + "."))
    ctx.section("provenance", "Provenance", provenance.build)
    ctx.section("trials", "Trials", trials.build)
    if not len(res.finished):
        ctx.section("results", "Results", _nothing)
    else:
        ctx.section("main_table", "Main table", main_table.build)
        if across.wanted(ctx):
            ctx.section("across", "Across data sets", across.build)
        ctx.section("claims", CLAIMS_TITLE, claims_section.build)
        if any(d.sequential for d in res.designs):
            ctx.section("sequential", "Sequential design", sequential.build)
        if len(res.objectives) > 1:
            ctx.section("pareto", "Pareto front", pareto.build)
        ctx.section("sensitivity", "Sensitivity", sensitivity.build)
        ctx.section("figures", "Figures", figures.build)
        ctx.section("paper", "Comparison with the paper", paper.build)
    ctx.section("artifacts", "Artifacts", artifacts.build)
    return ctx.sections


def _nothing(ctx: Context) -> None:
    ctx.add(Para(text("report.nothing", trials=len(ctx.res.trials))))
    ctx.summary.append("There is nothing to analyse yet.")


def sections(dirs: list[Path], out: Path | None = None,
             metrics: tuple[str, ...] = DEFAULT_METRICS) -> Context:
    """The report of ``dirs`` as data: its head and sections, the figures saved under
    ``out/figures`` (``generate`` renders it; the arguments and errors are generate's)."""
    res = load([Path(d) for d in dirs])
    declarations(res)  # a bad `claims:` block stops here, before any statistics
    out = Path(out) if out is not None else res.dirs[0]
    out.mkdir(parents=True, exist_ok=True)
    for stale in [*(out / "figures").glob("*.png"), *(out / "figures").glob("*.pdf")]:
        stale.unlink()  # from an earlier report of this folder
    ctx = Context(res, out, metrics)
    with np.errstate(all="ignore"):
        build(ctx)
    return ctx


def generate(dirs: list[Path], out: Path | None = None,
             metrics: tuple[str, ...] = DEFAULT_METRICS) -> Path:
    """Writes report.md, report.html, figures/*.png and *.pdf, tables/*.tex; returns the
    report.html path.

    Args:
        dirs: Results folders (``results/<space>/<timestamp>/``); several are analysed together
            (e.g. the same study on several data sets).
        out: Where to write (default: the first results folder).
        metrics: The outcomes the sensitivity statistics explain (``analysis.outcomes``).

    Raises:
        ResultsError: A folder is missing or has no trials.csv, a file is malformed, or the
            folders' ``claims:`` blocks are bad or disagree.
    """
    return write(sections(dirs, out, metrics))


def write(ctx: Context) -> Path:
    """Renders a built report into ``ctx.out``: report.md, report.html (its path) and the
    tables as LaTeX (``latex``)."""
    blocks, out = ctx.blocks(), ctx.out
    title = blocks[0].text if blocks and isinstance(blocks[0], Heading) else "Study report"
    (out / "report.md").write_text(render_markdown(blocks, out))
    path = out / "report.html"
    path.write_text(render_html(blocks, title))
    latex.write(ctx.sections, out)
    return path


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m analysis.report",
                                 description="Writes the report of one or more study results "
                                             "folders: report.md, report.html, figures/*.png "
                                             "and *.pdf, tables/*.tex.")
    ap.add_argument("dirs", nargs="+", metavar="RESULTS_DIR",
                    help="results/<space>/<timestamp>/ folder(s) written by study/run.py, or "
                         "their copy on remote storage (s3://BUCKET/studies/<space>/<timestamp>"
                         ", URI options included): read from a local copy, the report "
                         "published beside it")
    ap.add_argument("--out", type=Path, help="output folder (default: the first RESULTS_DIR)")
    ap.add_argument("--metrics", nargs="+", metavar="OUTCOME", default=list(DEFAULT_METRICS),
                    help="the outcomes the sensitivity statistics explain (default: all but "
                         "out_adaptivity_pooled): " + ", ".join(outcomes.OUTCOMES))
    args = ap.parse_args(argv)
    unknown = [m for m in args.metrics if m not in outcomes.OUTCOMES]
    if unknown:
        print(f"error: --metrics {' '.join(unknown)}: no such outcome; valid: "
              f"{', '.join(outcomes.OUTCOMES)}", file=sys.stderr)
        return EXIT_BAD_INPUT
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        dirs = [remote.download(d) if remote.is_uri(d) else Path(d) for d in args.dirs]
    except OSError as e:  # FileNotFoundError, or pyarrow's: no bucket, no endpoint, no access
        print(f"error: {e}", file=sys.stderr)
        return EXIT_BAD_INPUT
    try:
        path = generate(dirs, args.out, tuple(args.metrics))
    except ResultsError as e:
        print(f"error: {e}", file=sys.stderr)
        return EXIT_BAD_INPUT
    print(f"report: {path}")
    print(f"        {path.with_suffix('.md')}")
    if args.out is None and remote.is_uri(args.dirs[0]):
        remote.upload_report(path.parent, args.dirs[0])
        print(f"published beside the study: {args.dirs[0]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
