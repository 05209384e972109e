"""The trials: counts by status, the ones left out and why, structural copies, identical
results, realised rotations."""

from __future__ import annotations

from analysis import tables
from analysis.report.blocks import Para, Table
from analysis.report.captions import text
from analysis.report.context import Context
from analysis.results import INACTIVE, identical_results, shown_statuses


def build(ctx: Context) -> None:
    res = ctx.res
    counts = tables.status_counts(res)
    ctx.add(Table(counts, text("trials.counts")))
    n_fin = len(res.finished)
    total = len(res.trials) - len(res.duplicates)
    excluded = {s: int((res.trials["status"] == s).sum())
                for s in shown_statuses(res.trials)[1:]}
    no_metric = int(((res.trials["status"] == "finished") & res.trials["acc"].isna()).sum())
    parts = [f"{n} {s.replace('_', ' ')}" for s, n in excluded.items() if n]
    if no_metric:
        parts.append(f"{no_metric} finished without a headline accuracy")
    if n_fin:
        line = (f"The statistics use the {n_fin} finished experiments of {total}"
                + (" (structural copies counted once)" if len(res.duplicates) else ""))
        line += f"; excluded: {', '.join(parts)}." if parts else "; none is excluded."
    else:
        line = f"No trial of {total} has finished" + (f" ({', '.join(parts)})."
                                                    if parts else ".")
    if excluded.get("stopped"):
        line += " " + text("trials.stopped", stopped=excluded["stopped"])
    ctx.add(Para(line))
    ctx.summary.append(line)
    ctx.record(counts=counts, finished=n_fin, total=total, excluded=excluded,
               no_metric=no_metric)
    ex = tables.excluded_trials(res)
    if len(ex):
        ctx.add(Table(ex, text("trials.excluded")))
    dup = tables.duplicate_trials(res)
    if len(dup):
        ctx.add(Para(text("trials.copies", copies=len(dup), inactive="; ".join(INACTIVE))),
                Table(dup, text("trials.copies_table")))
        ctx.summary.append(f"{len(dup)} structural copies counted once (see Trials).")
    same = identical_results(res)
    ctx.record(excluded_trials=ex, copies=dup, identical=same)
    if same:
        groups = ("; ".join(", ".join(f"`{t}`" for t in g) for g in same[:20])
                  + (f"; and {len(same) - 20} more groups" if len(same) > 20 else ""))
        ctx.add(Para(text("trials.identical", groups=groups)))
