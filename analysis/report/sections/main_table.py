"""The main table: per data set and variant the headline's mean ± sd, t-interval and
difference to the baseline (an Optuna study: its best configurations)."""

from __future__ import annotations

import logging

import pandas as pd

from analysis import (
    tables,
)
from analysis.format import mean_sd
from analysis.report.blocks import Para, Table
from analysis.report.context import Context

log = logging.getLogger(__name__)


def build(ctx: Context) -> None:
    res = ctx.res
    ctx.table = tables.main_table(res)
    if not len(ctx.table):
        ctx.add(Para("No finished trial has a headline accuracy, so there is no table."))
        return
    t = tables.format_main(ctx.table, res)
    if res.mode == "optuna":
        caption = (f"Top {tables.TOP_CONFIGS} configurations per data set by mean validation "
                   f"accuracy (the search's selection; the best in bold). An Optuna study "
                   f"has no baseline cell, so there is no Δ.")
    else:
        bases = " and ".join(f"`{b}`" for b in dict.fromkeys(
            ctx.table.loc[ctx.table["baseline"], "variant"]))
        caption = (f"Per data set × variant ({res.variant_title}); mean ± sd over seeds "
                   f"(n seeds), 95 % t-interval, the difference to the baseline {bases} "
                   f"with its 95 % interval (paired by seed where the seeds match, else "
                   f"Welch). Bold: the best mean per data set.")
        if any(b != res.baseline for b in ctx.table.loc[ctx.table["baseline"], "variant"]):
            caption += (f" The vanilla cell `{res.baseline}` has no finished trial, so the "
                        f"first variant stands in as the baseline.")
    ctx.add(Para("Headline: **test accuracy at the best validation epoch** "
                 "(`test_acc_at_best_val`). Beside it, labelled, the paper-style number: "
                 "the best test epoch (`best_test_acc`, model selection on the test set "
                 "as the paper reports it). All accuracies in percent."),
            Table(t, caption))
    if (ctx.table["n"] < 2).any():
        ctx.add(Para("Variants with a single finished seed have no sd and no interval; "
                     "run more seeds (`seeds: [0, 1, 2]`) to compare them."))
    if res.nuisance and res.mode != "optuna":
        ctx.add(Para("Each variant uses the nuisance setting with the best mean "
                     "validation accuracy (column `nuisance setting`)."))
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
        ctx.summary.append(line + ").")
