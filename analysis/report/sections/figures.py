"""The figures: AIR and attention over training, noise curves, heatmaps, parallel coordinates
and point plots."""

from __future__ import annotations

import re

from analysis import plots, tables
from analysis.report.blocks import Para, Table
from analysis.report.captions import text
from analysis.report.context import Context

MAX_POINT_PLOTS = 6  # point plots at most, one a parameter


def build(ctx: Context) -> None:
    res = ctx.res
    _, _, lines = plots.series(res, res.finished)
    per = text("figures.per", lines=lines)
    if not ctx.figure("air", plots.air_curves(res), text("figures.air", per=per)):
        ctx.add(Para(text("figures.no_air")))
    ctx.figure("attention_shares", plots.attention_shares(res), text("figures.shares", per=per))
    if ctx.figure("noise", plots.noise_curves(res), text("figures.noise", per=per)):
        ctx.add(Table(tables.noise_table(res),
                      text("figures.noise_table", recipe=tables.noise_recipe(res))))
    else:
        ctx.add(Para(text("figures.no_noise")))
    attn = tables.attention_noise_table(res)
    ctx.record(attention_noise=attn)
    if len(attn):
        ctx.add(Table(attn, text("figures.attention_noise",
                                 protocol=tables.attention_protocol(res))))
    ctx.figure("beta_rho", plots.beta_rho_heatmaps(res), text("figures.beta_rho"))
    ctx.figure("parallel_coordinates", plots.parallel_coordinates(res),
               text("figures.parallel"))
    for key, hue in _point_plots(ctx):
        name = "points_" + re.sub(r"[^A-Za-z0-9]+", "_", key)
        ctx.figure(name, plots.factor_points(res, key, hue),
                   text("figures.points", parameter=key, hue=f" per `{hue}`" if hue else ""))


def _point_plots(ctx: Context) -> list[tuple[str, str | None]]:
    res = ctx.res
    df = res.finished
    active = [f for f in res.factors
              if 2 <= df[f.key].nunique() <= 12]
    first = ("rollingq.max_rotations", "model.fusion_layers")
    active.sort(key=lambda f: (f.key not in first, res.factors.index(f)))
    out = []
    for f in active[:MAX_POINT_PLOTS]:
        hues = [g for g in active if g.key != f.key and df[g.key].nunique() <= 4]
        hue = min(hues, key=lambda g: df[g.key].nunique()).key if hues else None
        out.append((f.key, hue))
    return out
