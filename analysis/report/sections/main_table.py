"""The main table: per data set and variant the headline's mean ± sd, t-interval and
difference to the baseline (an Optuna study: its best configurations)."""

from __future__ import annotations

import pandas as pd

from analysis import ranking, tables
from analysis.format import mean_sd
from analysis.report.blocks import Para, Table
from analysis.report.captions import text
from analysis.report.context import Context


def build(ctx: Context) -> None:
    res = ctx.res
    ctx.table = tables.main_table(res)
    ctx.record(table=ctx.table)
    if not len(ctx.table):
        ctx.add(Para(text("main_table.none")))
        return
    t = tables.format_main(ctx.table, res)
    if res.mode == "optuna":
        caption = text("main_table.caption_optuna", top=tables.TOP_CONFIGS)
    else:
        bases = " and ".join(f"`{b}`" for b in dict.fromkeys(
            ctx.table.loc[ctx.table["baseline"], "variant"]))
        caption = text("main_table.caption", variants=res.variant_title, baselines=bases)
        if any(b != res.baseline for b in ctx.table.loc[ctx.table["baseline"], "variant"]):
            caption += " " + text("main_table.stand_in", baseline=res.baseline)
    ctx.add(Para(text("main_table.headline")), Table(t, caption))
    if (ctx.table["n"] < 2).any():
        ctx.add(Para(text("main_table.one_seed")))
    top = _top_group_improvement(ctx)
    if len(top):
        ctx.add(Table(top, text("main_table.improvement")))
    if res.nuisance and res.mode != "optuna":
        ctx.add(Para(text("main_table.nuisance")))
    for ds, d in ctx.table.groupby("dataset", sort=False):
        best = d[d["best"]].iloc[0]
        line = (f"{ds}: best {res.variant_title} = `{best['variant']}` "
                f"({mean_sd(best['mean'], best['sd'])} %")
        if res.mode != "optuna" and not best["baseline"] and not pd.isna(best["delta"]):
            line += f", Δ vs baseline {best['delta']:+.2f}"
            if not pd.isna(best["delta_low"]):
                line += f" [{best['delta_low']:.2f}, {best['delta_high']:.2f}]"
        elif best["baseline"]:
            line += ", the baseline itself"
        line += ")"
        group = d.loc[d["top"] & ~d["best"], "variant"].tolist()
        if res.mode != "optuna" and d["letters"].ne("").any():
            line += (f"; not separable from it: {', '.join(f'`{v}`' for v in group)}" if group
                     else "; separable from every other variant")
            line += f", P(rank 1) {best['p_rank1']:.2f}"
        ctx.summary.append(line + ".")


def _top_group_improvement(ctx: Context) -> pd.DataFrame:
    """Within each data set's top group: the best variant's probability of improvement over
    each other member, with its stratified-bootstrap interval (``analysis.ranking``)."""
    res, rows = ctx.res, []
    if res.mode == "optuna":
        return pd.DataFrame()
    for ds, d in ctx.table.groupby("dataset", sort=False):
        group = d[d["top"]].sort_values("mean", ascending=False)
        if len(group) < 2 or not d["letters"].ne("").any():
            continue
        best = group.iloc[0]["variant"]
        x = tables.per_seed(res, res.finished, ds, best)
        for other in group["variant"].iloc[1:]:
            p, low, high = ranking.improvement_interval(x, tables.per_seed(res, res.finished,
                                                                            ds, other))
            rows.append({"data set": ds, "best": best, "other": other,
                         "P(best > other) [95% CI]": f"{p:.2f} [{low:.2f}, {high:.2f}]"})
    ctx.record(top_improvement=rows)
    return pd.DataFrame(rows)
