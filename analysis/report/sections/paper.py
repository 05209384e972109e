"""The comparison with the paper's Tables 1-3 (``analysis/paper.py``)."""

from __future__ import annotations

import logging

from analysis import paper as paper_tables
from analysis import (
    tables,
)
from analysis.report.blocks import Para, Table
from analysis.report.context import Context

log = logging.getLogger(__name__)


PAPER_DATASETS = "CREMA-D (`cremad`), Kinetics-Sounds (`kinetics_sounds`), MOSEI (`mosei`)"


def build(ctx: Context) -> None:
    res = ctx.res
    ours = [d for d in res.datasets if d in paper_tables.PAPER_TABLE1]
    if not ours:
        ctx.add(Para(f"The data set ({', '.join(res.datasets)}) is not one of the paper's "
                     f"({PAPER_DATASETS}), so there is nothing to compare with."))
        return
    ctx.add(Para(paper_tables.PROTOCOL))
    comp = paper_tables.paper_comparison(res, ctx.table)
    if len(comp):
        ctx.add(Table(comp, "Table 1 of the paper beside ours (percent). The paper's "
                            "number is one seed at its best test epoch; the prediction "
                            "interval (mean ± t(n − 1)·sd·√(1 + 1/n) of our paper-style "
                            "numbers) says where one seed of ours would fall 95 % of the "
                            "time, so a paper number outside it is unlikely to come from "
                            "one run of this setup."))
    else:
        ctx.add(Para("None of the variants corresponds to a row of the paper's Table 1."))
    noise = paper_tables.paper_noise_comparison(res)
    if len(noise):
        recipe = tables.noise_recipe(res)
        ctx.add(Table(noise, "Table 3 (Kinetics-Sounds, noise on audio) beside ours; the "
                             "paper cites MultiBench's white noise (x + λ·N(0, 1), our "
                             f"`absolute` recipe); ours: {recipe}"
                             + ("." if recipe == "absolute" else
                                ", whose λ axis is not the paper's.")))
    attn = paper_tables.paper_attention_comparison(res)
    if len(attn):
        ctx.add(Table(attn, "Table 2: Pearson r between attention share and \"input is "
                            "noise\" (the paper's protocol and sign are unpublished; it "
                            "reports positive values and reads |r| as strength). Ours in "
                            "claim 4's sign, −r (> 0: attention moves away from the noised "
                            "input), and |r|; the pooled variant is the one comparable with "
                            "the paper's single number, claim 4 tests the per-modality one. "
                            f"Ours: {tables.attention_protocol(res)}."))
