"""The comparison with the paper's Tables 1-3 (``analysis/paper.py``)."""

from __future__ import annotations

from analysis import paper as paper_tables
from analysis import tables
from analysis.report.blocks import Para, Table
from analysis.report.captions import text
from analysis.report.context import Context


def build(ctx: Context) -> None:
    res = ctx.res
    ours = [d for d in res.datasets if d in paper_tables.PAPER_TABLE1]
    if not ours:
        ctx.add(Para(text("paper.not_paper", datasets=", ".join(res.datasets))))
        return
    ctx.add(Para(text("paper.protocol")))
    comp = paper_tables.paper_comparison(res, ctx.table)
    ctx.record(table1=comp)
    if len(comp):
        ctx.add(Table(comp, text("paper.table1")))
    else:
        ctx.add(Para(text("paper.no_row")))
    noise = paper_tables.paper_noise_comparison(res)
    ctx.record(table3=noise)
    if len(noise):
        recipe = tables.noise_recipe(res)
        axis = "." if recipe == "absolute" else text("paper.table3_axis")
        ctx.add(Table(noise, text("paper.table3", recipe=recipe, axis=axis)))
    attn = paper_tables.paper_attention_comparison(res)
    ctx.record(table2=attn)
    if len(attn):
        ctx.add(Table(attn, text("paper.table2", protocol=tables.attention_protocol(res))))
