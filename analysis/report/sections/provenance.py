"""How each results folder was produced: commit, versions, hardware, data, hours."""

from __future__ import annotations

import pandas as pd

from analysis import tables
from analysis.report.blocks import Code, Heading, Para, Table
from analysis.report.captions import text
from analysis.report.context import Context


def build(ctx: Context) -> None:
    res = ctx.res
    per_folder: list[pd.DataFrame] = []
    ctx.record(provenance=per_folder)
    for i, d in enumerate(res.dirs):
        if len(res.dirs) > 1:
            ctx.add(Heading(3, f"{i}: `{d.name}`"))
        fields = pd.DataFrame(tables.provenance(res, i), columns=["field", "value"])
        per_folder.append(fields)
        ctx.add(Table(fields))
        spec = d / "space.yaml"
        if spec.is_file():
            ctx.add(Para(text("provenance.spec")),
                    Code(spec.read_text().rstrip(), "yaml", "space.yaml"))
    for note in res.notes:
        ctx.add(Para(note))
