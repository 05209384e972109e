"""Which variant is best across the data sets, descriptive and labelled so
(``analysis/ranking.py``): the IQM of chance-normalised accuracies with stratified-bootstrap
intervals, the performance profiles, and the critical-difference diagram over data set × seed
blocks."""

from __future__ import annotations

import numpy as np
import pandas as pd

from analysis import per_sample, plots, ranking, tables
from analysis.format import p_text
from analysis.report.blocks import Para, Table
from analysis.report.captions import text
from analysis.report.context import Context


def wanted(ctx: Context) -> bool:
    """A grid study on two or more data sets."""
    return ctx.res.mode == "grid" and len(ctx.res.datasets) >= 2


def build(ctx: Context) -> None:
    res = ctx.res
    table = ctx.table if len(ctx.table) else tables.main_table(res)
    held = table.groupby("variant", sort=False)["dataset"].nunique()
    variants = [v for v in dict.fromkeys(table["variant"]) if held[v] == len(res.datasets)]
    if len(variants) < 2:
        ctx.add(Para(text("across.none")))
        return
    blocks, scores = [], {v: [] for v in variants}
    for ds in res.datasets:
        wide = pd.DataFrame({v: tables.per_seed(res, res.finished, ds, v) for v in variants})
        chance = per_sample.chance_accuracy(res, ds)
        for v in variants:
            scores[v].append(((wide[v] - chance) / (100 - chance)).dropna().to_numpy())
        blocks.append(wide.set_index(ds + ":" + wide.index.astype(str)))
    blocks = pd.concat(blocks)
    average, p = ranking.friedman(blocks)
    n = len(blocks.dropna())
    cd = ranking.critical_difference(len(variants), n)
    bars = ranking.cliques(average, cd)
    rows = []
    for v in variants:
        value, low, high = ranking.iqm_interval(scores[v])
        rows.append({"variant": v, "IQM": value, "low": low, "high": high,
                     "average rank": average[v]})
    shown = pd.DataFrame(rows).sort_values("IQM", ascending=False)
    ctx.record(blocks=blocks, average=average, friedman_p=p, cd=cd, bars=bars, iqm=shown)
    ctx.add(Para(text("across.method", datasets=len(res.datasets), blocks=n,
                      seeds=n // len(res.datasets), variants=len(variants))))
    ctx.add(Table(shown.assign(**{
        "IQM [95% CI]": [f"{r.IQM:.3f} [{r.low:.3f}, {r.high:.3f}]" for r in shown.itertuples()],
        "average rank": shown["average rank"].map(lambda r: f"{r:.2f}")})[
        ["variant", "IQM [95% CI]", "average rank"]], text("across.table")))
    ctx.figure("performance_profiles", plots.performance_profiles(
        {v: np.concatenate(s) for v, s in scores.items()}), text("across.profiles"))
    ctx.figure("critical_difference", plots.cd_diagram(average, cd, bars),
               text("across.cd", cd=f"{cd:.2f}", blocks=n, p=p_text(p) or "-"))
    ctx.summary.append(f"Across the {len(res.datasets)} data sets (descriptive): highest IQM of "
                       f"chance-normalised accuracy `{shown.iloc[0]['variant']}`; Friedman p "
                       f"{p_text(p) or '-'} over {n} data set × seed blocks, critical "
                       f"difference {cd:.2f} ranks.")
