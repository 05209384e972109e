"""A sequential study's design and looks (``analysis/looks.py``): the plan, why it stopped, a
table of the looks, each claim's statistic against its boundaries, and the verdicts with their
repeated confidence intervals and median-unbiased estimates."""

from __future__ import annotations

from typing import Any

import pandas as pd

from analysis import plots
from analysis.claims import NO_EFFECT
from analysis.format import bracket, signed
from analysis.looks import describe
from analysis.report.blocks import Heading, Para, Table
from analysis.report.captions import text
from analysis.report.context import Context


def sequential(ctx: Context) -> list[int]:
    """The folders (their index) of the report that are sequential studies."""
    return [i for i, d in enumerate(ctx.res.designs) if d.sequential]


def build(ctx: Context) -> None:
    res = ctx.res
    for i in sequential(ctx):
        folder, design, looks = res.dirs[i], res.designs[i].sequential, res.looks[i]
        if len(res.dirs) > 1:
            ctx.add(Heading(3, f"`{folder}`"))
        ctx.add(Para(text("sequential.plan", plan=describe(design))))
        ctx.record(**{f"looks_{i}": looks})
        if not looks:
            ctx.add(Para(text("sequential.no_look", folder=folder)))
            ctx.summary.append(f"Sequential design (`{folder}`): no look judged yet.")
            continue
        last = looks[-1]
        ctx.add(Para(_where(last, design, folder)))
        ctx.add(Table(_looks_table(looks), text("sequential.looks")))
        ctx.figure(f"sequential_{i}", plots.sequential_paths(looks),
                   text("sequential.figure"))
        final = _final(looks)
        ctx.add(Table(_final_table(final, looks), text("sequential.final")))
        for x in last["excluded"]:
            ctx.add(Para(f"({x['claim']}) on {x['dataset']} is outside the sequential family: "
                         f"{x['verdict']} at the first look ({x['reason'] or 'not testable'})."))
        verdicts = ", ".join(f"({c['claim']}) {c['verdict']}" + (
            f" on {c['dataset']}" if len(res.datasets) > 1 else "") for c in final)
        ctx.summary.append(f"Sequential design (`{folder}`): after look {last['look']} of "
                           f"{len(design['looks'])} ({_stopped(last)}): {verdicts}.")


def _stopped(last: dict[str, Any]) -> str:
    return f"stopped: {last['stop']}" if last.get("stop") else "going on"


def _where(last: dict[str, Any], design: dict[str, Any], folder: Any) -> str:
    seeds = len(last["seeds"])
    if last.get("stop"):
        return text("sequential.stopped", look=last["look"], seeds=seeds, reason=last["stop"],
                    hours=f"{last.get('trial_hours') or 0:.2f}")
    return text("sequential.going", look=last["look"], looks=len(design["looks"]), seeds=seeds,
                folder=folder)


def _looks_table(looks: list[dict[str, Any]]) -> pd.DataFrame:
    rows = []
    for entry in looks:
        for family in entry["families"]:
            for c in family["claims"]:
                rows.append({
                    "look": entry["look"], "seeds": len(entry["seeds"]),
                    "claim": f"({c['claim']}) {c['dataset']}", "effect": signed(c["effect"]),
                    "p": _small(c["p"]), "level": f"{c['level']:.4f}",
                    "boundary p": _small(c["nominal_p"]), "α spent": _small(c["spent"]),
                    "TOST p": _small(c["tost_p"]),
                    "TOST boundary p": _small(c["equivalence_nominal_p"]),
                    "verdict": c["verdict"] + (f" (look {c['decided_at']})"
                                               if c["decided_at"] else "")})
    return pd.DataFrame(rows)


def _small(p: float) -> str:
    """A p or a level beside a boundary's nominal p, which is often far below 0.001: two
    significant digits there (``3.2e-05``), three decimals above."""
    if pd.isna(p):
        return "-"
    return f"{p:.2g}" if p < 0.001 else f"{p:.3f}"


def _final(looks: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Each claim's record at the look it was decided at, or at the last look."""
    out = []
    for family in looks[-1]["families"]:
        for c in family["claims"]:
            at = c["decided_at"] or looks[-1]["look"]
            then = next(x for f in looks[at - 1]["families"] for x in f["claims"]
                        if (x["claim"], x["dataset"]) == (c["claim"], c["dataset"]))
            out.append({**then, "verdict": c["verdict"], "decided_at": c["decided_at"],
                        "look": at, "seeds": len(looks[at - 1]["seeds"])})
    return out


def _final_table(final: list[dict[str, Any]], looks: list[dict[str, Any]]) -> pd.DataFrame:
    return pd.DataFrame([{
        "claim": f"({c['claim']}) {c['dataset']}", "verdict": c["verdict"],
        "at look (seeds)": f"{c['look']} ({c['seeds']})" + ("" if c["decided_at"] else
                                                              ", undecided"),
        "naive estimate": signed(c["effect"]),
        "median-unbiased": "-" if c["verdict"] == NO_EFFECT else signed(c["median_unbiased"]),
        "repeated CI": bracket(*(float("nan") if v is None else v for v in c["interval"]),
                               digits=3),
        "margin": f"±{c['margin']:g}"} for c in final])
