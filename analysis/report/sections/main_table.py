"""The main table: per data set and variant the headline's mean ± sd, t-interval and
difference to the baseline (an Optuna study: its best configurations)."""

from __future__ import annotations

import pandas as pd

from analysis import tables
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
