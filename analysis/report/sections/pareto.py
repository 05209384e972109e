"""A multi-objective study's Pareto front (``analysis/pareto.py``)."""

from __future__ import annotations

import pandas as pd

from analysis import pareto
from analysis.report.blocks import Para, Table
from analysis.report.captions import text
from analysis.report.context import Context


def build(ctx: Context) -> None:
    res = ctx.res
    objs = " and ".join(f"{'maximise' if mode == 'max' else 'minimise'} `{m}`"
                        for m, mode in res.objectives)
    keys = [f.key for f in [*res.factors, *res.nuisance]]
    ctx.add(Para(text("pareto.objectives", count=len(res.objectives), objectives=objs)))
    tune = {"metric": [m for m, _ in res.objectives],
            "metric_mode": [mode for _, mode in res.objectives]}
    fronts: dict[str, pareto.Front] = {}
    ctx.record(fronts=fronts)
    for ds in res.datasets:
        t = res.trials[(res.trials["dataset"] == ds) & (res.trials["duplicate_of"] == "")]
        c = res.curves[res.curves["dataset"] == ds]
        if len(res.dirs) > 1:  # trial ids are unique within a study
            t = t.assign(trial_id=t["study"].astype(str) + ":" + t["trial_id"].astype(str))
            c = c.assign(trial_id=c["study"].astype(str) + ":" + c["trial_id"].astype(str))
        f = pareto.front(t, c, tune, keys)
        fronts[ds] = f
        where = f" on {ds}" if len(res.datasets) > 1 else ""
        left = ", ".join(f"{n} {s}" for s, n in f.excluded.items() if n)
        ctx.add(Para(f"{len(f.front)} of {len(f.points)} configurations{where} are on the front"
                     + (f" (left out: {left})." if left else ".")))
        ctx.summary.append(f"Pareto front{where}: {len(f.front)} of {len(f.points)} "
                           f"configurations ({objs}).")
        if not len(f.points):
            continue
        cols = [*f.params, *f.objectives, *[f"{m}_sd" for m in f.objectives
                                             if f.points["seeds"].max() > 1],
                "seeds", "trials"]
        shown = f.front[cols].reset_index(drop=True)
        for m in cols[len(f.params):-2]:
            shown[m] = shown[m].map(lambda v: "" if pd.isna(v) else f"{v:.4f}")
        ctx.add(Table(shown, text("pareto.front", where=where, first=f.objectives[0])))
        ctx.figure(f"pareto_{ds}".replace("/", "_"), pareto.figure(f),
                   text("pareto.figure", where=where, first=f.objectives[0],
                        second=f.objectives[1]))
