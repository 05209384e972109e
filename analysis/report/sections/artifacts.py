"""The files of the study and of the report."""

from __future__ import annotations

from analysis.report.blocks import Bullets
from analysis.report.context import Context


def build(ctx: Context) -> None:
    res = ctx.res
    items = []
    for i, d in enumerate(res.dirs):
        files = ", ".join(f"`{p.name}`" for p in sorted(d.iterdir()) if p.is_file())
        items.append(f"`{d}`: {files}")
        command = res.metas[i].get("command")
        if command:
            items.append(f"reproduce: `{command}`")
    if ctx.figdir.is_dir():
        items.append(f"figures: `{ctx.figdir}`")
    items.append("re-render this report: `python -m analysis.report "
                 + " ".join(str(d) for d in res.dirs) + "`")
    ctx.add(Bullets(items))
