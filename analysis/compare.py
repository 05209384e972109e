"""Two studies side by side: ``python -m analysis.compare A B [--out DIR]``.

Before and after a code change, on two machines, on two data preparations: the comparison
report (``compare.md`` and a self-contained ``compare.html``, by default in ``B/compare/``)
says, per claim, the two verdicts and effects with a flag where the verdict changed (each study
judged on its own, in its own Holm family); per data set and variant the two headline means and
the change B − A with its 95 % interval (paired by seed where the seeds match, as the main table
pairs, else Welch); and what differs in how the two were produced: the spec's fixed values and
seeds, the commit, the packages, the data fingerprints, the devices.

Exit codes: 0 written; 2 bad input (one line): a folder cannot be read, or the two studies
share no variant on any data set.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import pandas as pd

from analysis import claims, tables
from analysis.format import bracket, signed
from analysis.report.blocks import Bullets, Heading, Para, Table, render_html, render_markdown
from analysis.results import Results, ResultsError, load
from analysis.stats import difference

EXIT_BAD_INPUT = 2
# provenance rows that differ between any two runs and say nothing about the difference
SAME_BY_NATURE = {"folder", "started / finished", "hours", "command"}


def variants(a: Results, b: Results) -> list[tuple[str, str]]:
    """The (data set, variant) cells both studies have, in A's order."""
    ta, tb = tables.main_table(a), tables.main_table(b)
    if not len(ta) or not len(tb):
        return []
    held = set(zip(tb["dataset"], tb["variant"], strict=True))
    return [c for c in zip(ta["dataset"], ta["variant"], strict=True) if c in held]


def claim_rows(a: Results, b: Results) -> pd.DataFrame:
    """Per claim and data set both judge: the two verdicts and effects, and whether the verdict
    changed."""
    ja = {(j.claim.number, j.dataset): j for j in claims.judge(a)}
    rows = []
    for j in claims.judge(b):
        before = ja.get((j.claim.number, j.dataset))
        if before is None:
            continue
        rows.append({"claim": f"({j.claim.number})", "data set": j.dataset,
                     "A: verdict": before.verdict, "A: effect": signed(before.effect),
                     "B: verdict": j.verdict, "B: effect": signed(j.effect),
                     "changed": "**changed**" if before.verdict != j.verdict else ""})
    return pd.DataFrame(rows)


def variant_rows(a: Results, b: Results, cells: list[tuple[str, str]]) -> pd.DataFrame:
    """Per shared cell: n and mean of each study and the change B − A with its interval."""
    rows = []
    for ds, v in cells:
        xa = tables.per_seed(a, a.finished, ds, v)
        xb = tables.per_seed(b, b.finished, ds, v)
        delta, low, high, how = difference(xb, xa)
        rows.append({"data set": ds, "variant": v, "A: n": len(xa),
                     "A: mean": f"{xa.mean():.2f}", "B: n": len(xb), "B: mean": f"{xb.mean():.2f}",
                     "B − A [95% CI]": "-" if np.isnan(delta) else
                     f"{delta:+.2f} (no interval: fewer than two seeds)" if np.isnan(low) else
                     f"{delta:+.2f} {bracket(low, high)} ({how})"})
    return pd.DataFrame(rows)


def provenance_rows(a: Results, b: Results) -> pd.DataFrame:
    """What differs in how the two studies were produced: the design's fixed values and seeds,
    then the provenance rows of the report (commit, versions, data, devices, ...)."""
    rows = []
    da, db = a.designs[0], b.designs[0]
    for key in sorted(set(da.fixed) | set(db.fixed)):
        if da.fixed.get(key) != db.fixed.get(key):
            rows.append({"what": f"fixed {key}", "A": str(da.fixed.get(key, "-")),
                         "B": str(db.fixed.get(key, "-"))})
    if da.seeds != db.seeds:
        rows.append({"what": "seeds", "A": str(da.seeds), "B": str(db.seeds)})
    pa, pb = dict(tables.provenance(a, 0)), dict(tables.provenance(b, 0))
    for key in pa:
        if key not in SAME_BY_NATURE and pa[key] != pb.get(key):
            rows.append({"what": key, "A": pa[key], "B": pb.get(key, "-")})
    return pd.DataFrame(rows, columns=["what", "A", "B"])


def compare(a_dir: Path, b_dir: Path, out: Path | None = None) -> Path:
    """Writes the comparison report of study A and study B; returns ``compare.md``.

    Raises:
        ResultsError: A folder cannot be read, or the studies share no variant.
    """
    a, b = load([a_dir]), load([b_dir])
    cells = variants(a, b)
    if not cells:
        names = {name: sorted(set(tables.main_table(r).get("variant", []))) for name, r in
                 (("A", a), ("B", b))}
        raise ResultsError(f"{a_dir} and {b_dir} share no variant on any data set (A: "
                           f"{names['A']}, B: {names['B']}); compare two runs of the same space")
    out = Path(out) if out else Path(b_dir) / "compare"
    out.mkdir(parents=True, exist_ok=True)
    verdicts, means, produced = claim_rows(a, b), variant_rows(a, b, cells), provenance_rows(a, b)
    changed = int((verdicts["changed"] != "").sum()) if len(verdicts) else 0
    blocks = [Heading(1, "Two studies compared"),
              Bullets([f"A: `{a_dir}`", f"B: `{b_dir}`",
                       f"{changed} of {len(verdicts)} verdicts changed; {len(cells)} shared "
                       f"variant cell(s); {len(produced)} difference(s) in how they were "
                       f"produced."]),
              Heading(2, "The paper's claims"),
              Para("Each study judged on its own (its own Holm family and margins); a changed "
                   "verdict is flagged. Two verdicts that differ are not a test of a "
                   "difference between the studies: the change per variant below is."),
              Table(verdicts, "Verdicts and effects, A then B.") if len(verdicts) else
              Para("Neither study has a claim both judge."),
              Heading(2, "Headline accuracy per variant"),
              Table(means, "Test accuracy at the best validation epoch (%), mean over seeds; "
                           "B − A with its 95 % interval, paired by seed where the seeds "
                           "match, else Welch."),
              Heading(2, "How they were produced"),
              Table(produced, "What differs (the spec's fixed values and seeds, then the "
                              "provenance rows of the reports).") if len(produced) else
              Para("Nothing recorded differs.")]
    (out / "compare.md").write_text(render_markdown(blocks, out))
    (out / "compare.html").write_text(render_html(blocks, "Two studies compared"))
    return out / "compare.md"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m analysis.compare",
                                 description=__doc__.split("\n")[0])
    ap.add_argument("a", type=Path, help="the first study's results folder (A)")
    ap.add_argument("b", type=Path, help="the second study's results folder (B)")
    ap.add_argument("--out", type=Path, help="where to write (default: B/compare/)")
    args = ap.parse_args(argv)
    try:
        path = compare(args.a, args.b, args.out)
    except ResultsError as e:
        print(f"error: {e}", file=sys.stderr)
        return EXIT_BAD_INPUT
    print(f"comparison: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
