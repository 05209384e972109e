"""The trials: counts by status, the ones left out and why, structural copies, identical
results, realised rotations."""

from __future__ import annotations

import logging

from analysis import (
    tables,
)
from analysis.report.blocks import Para, Table
from analysis.report.context import Context
from analysis.results import INACTIVE, STATUSES, identical_results

log = logging.getLogger(__name__)


def build(ctx: Context) -> None:
    res = ctx.res
    counts = tables.status_counts(res)
    ctx.add(Table(counts, "Trials by status (retried: trials restarted after a failure)."))
    n_fin = len(res.finished)
    total = len(res.trials) - len(res.duplicates)
    excluded = {s: int((res.trials["status"] == s).sum()) for s in STATUSES[1:]}
    no_metric = int(((res.trials["status"] == "finished") & res.trials["acc"].isna()).sum())
    parts = [f"{n} {s}" for s, n in excluded.items() if n]
    if no_metric:
        parts.append(f"{no_metric} finished without a headline accuracy")
    if n_fin:
        text = (f"The statistics use the {n_fin} finished experiments of {total}"
                + (" (structural copies counted once)" if len(res.duplicates) else ""))
        text += f"; excluded: {', '.join(parts)}." if parts else "; none is excluded."
    else:
        text = f"No trial of {total} has finished" + (f" ({', '.join(parts)})."
                                                    if parts else ".")
    if excluded.get("stopped"):
        text += (f" The {excluded['stopped']} trials stopped early by ASHA ran a shorter "
                 f"budget and are not comparable, so they are excluded and counted.")
    ctx.add(Para(text))
    ctx.summary.append(text)
    ex = tables.excluded_trials(res)
    if len(ex):
        ctx.add(Table(ex, "Trials left out of the statistics (first 30)."))
    dup = tables.duplicate_trials(res)
    if len(dup):
        text = (f"{len(dup)} finished trials are structural copies: their effective "
                f"configuration (the config with the keys that do nothing removed: "
                f"{'; '.join(INACTIVE)}) and seed are those of another trial, so they are "
                f"the same experiment and every statistic counts it once.")
        ctx.add(Para(text), Table(dup, "Structural copies, counted once (as the trial in "
                                       "`copy of`)."))
        ctx.summary.append(f"{len(dup)} structural copies counted once (see Trials).")
    same = identical_results(res)
    if same:
        ctx.add(Para("Trials with bit-identical results although their configurations "
                     "differ (kept, as they are distinct experiments; a parameter that "
                     "did not act, such as a rotation cap above what fires): "
                     + "; ".join(", ".join(f"`{t}`" for t in g) for g in same[:20])
                     + (f"; and {len(same) - 20} more groups" if len(same) > 20 else "")
                     + "."))
