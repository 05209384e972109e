"""A study's plan before any GPU hour (``python study/run.py --space NAME --plan [--pilot DIR]``):
the trials and trial hours of each look, each claim's margin and the seeds it needs, and the
budget. It reads the spec (and the pilot's results) and trains nothing; Ray does not start.

The seeds a claim needs are the fixed design's (``analysis.power.seeds_range``: the fewest at
which its Bonferroni-level t-test finds an effect of its margin and its equivalence test shows
no effect when there is none, each with 80 % power), at the pilot's seed sd of the claim's
differences and at that sd's 80 % upper confidence limit; without a pilot at an assumed sd of one
to two margins, labelled as an assumption. A sequential design needs a few per cent more seeds
than these for the same power, and stops earlier when an effect is clear. The trial hours are the
pilot's measured mean trial time times the trials; without a pilot they are not estimated (the
training core has no throughput model to trust across machines), and the plan says how to get
them: run the first look as a pilot.

A bad plan is a SpecError of one line: no claim the grid can judge, or a time budget that does
not cover the first look at the pilot's trial time.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from analysis.looks import describe
from study.sequential import judged_claims
from study.space import Spec, SpecError

ASSUMED_SD = (1.0, 2.0)  # without a pilot: a claim's seed sd assumed between these margins


def lines(spec: Spec, pilot: Path | None) -> list[str]:
    """The plan, as printed.

    Raises:
        SpecError: No claim the grid can judge; the pilot cannot be read; the time budget is
            below the first look.
    """
    judged = judged_claims(spec, "--plan")
    design = spec.sequential or {"budget": len(spec.seeds), "looks": [len(spec.seeds)],
                                 "hours": None, "spending": None}
    res = _pilot(pilot) if pilot else None
    per_trial = _trial_hours(res, pilot) if res is not None else None
    points = len(spec.grid_points())
    out = [f"plan: {spec.name} ({spec.source})",
           ("sequential design: " + describe(design)) if spec.sequential else
           f"fixed design: one look at {len(spec.seeds)} seed(s)",
           "data sets: " + "; ".join(f"{ds}: claims {', '.join(map(str, c)) or 'none'}"
                                      for ds, c in judged.items()), ""]
    out += _looks(design, points, per_trial)
    out += [""] + _claims(spec, judged, res)
    total = points * design["budget"]
    hours = (f"{per_trial * total:.2f} trial hours at the pilot's trial time" if per_trial
             else "trial hours not estimated")
    out += ["", f"budget: {design['budget']} seeds per data set = {total} trials, {hours}"
            + (f"; time budget {design['hours']:g} trial hours" if design["hours"] else "")]
    if per_trial and design["hours"] is not None:
        first = per_trial * points * design["looks"][0]
        if first > design["hours"]:
            raise SpecError(f"--plan: the first look ({points * design['looks'][0]} trials) takes "
                            f"{first:.2f} trial hours at the pilot's trial time, more than "
                            f"sequential.hours={design['hours']:g}; raise the time budget or "
                            f"start with fewer seeds (sequential.looks)")
    return out


def _pilot(pilot: Path):
    from analysis.results import ResultsError, load

    try:
        return load([pilot])
    except ResultsError as e:
        raise SpecError(f"--pilot {pilot}: {e}") from None


def _trial_hours(res, pilot: Path) -> float | None:
    """The pilot's mean trial time (hours) over its finished trials."""
    t = res.finished["time_total_s"].astype(float) if "time_total_s" in res.finished else []
    if not len(t):
        raise SpecError(f"--pilot {pilot}: no finished trial with its time (trials.csv "
                        f"time_total_s); give a finished study")
    return float(np.mean(t)) / 3600


def _looks(design: dict, points: int, per_trial: float | None) -> list[str]:
    where = (f"at the pilot's mean trial time, {per_trial * 3600:.1f} s" if per_trial
             else "not estimated: no pilot; run the first look as a fixed study (--set "
                  "seeds=[...] with its seeds) and plan again with --pilot DIR")
    out = [f"trial hours: {where}",
           f"{'look':>4}  {'seeds':>5}  {'new trials':>10}  {'trials':>6}"
           + (f"  {'new hours':>9}  {'hours':>7}" if per_trial else "")]
    before = 0
    for k, n in enumerate(design["looks"]):
        new = points * (n - before)
        row = f"{k + 1:>4}  {n:>5}  {new:>10}  {points * n:>6}"
        if per_trial:
            row += f"  {per_trial * new:>9.2f}  {per_trial * points * n:>7.2f}"
        out.append(row)
        before = n
    return out


def _claims(spec: Spec, judged: dict[str, list[int]], res) -> list[str]:
    """Each claim's margin and seeds needed (module docstring)."""
    from analysis.claims import CLAIMS, judge
    from analysis.declarations import MARGINS
    from analysis.power import seeds_needed, seeds_range

    margins = {**MARGINS, **{int(k): v for k, v in (spec.claims.get("margins") or {}).items()}}
    family = spec.claims.get("family", "dataset")
    sizes = {ds: len(c) for ds, c in judged.items()}
    total = sum(sizes.values())
    pilots = {}
    if res is not None:
        pilots = {(j.claim.number, j.dataset): j for j in judge(res, plan=False)}
    how = ("at the pilot's seed sd … its 80 % upper confidence limit" if res is not None else
           f"no pilot: at an assumed seed sd of {ASSUMED_SD[0]:g} … {ASSUMED_SD[1]:g} margins")
    out = [f"seeds needed (fixed design, 80 % power at the Bonferroni level; {how}):"]
    names = {c.number: c.text for c in CLAIMS}
    for ds, numbers in judged.items():
        m = sizes[ds] if family == "dataset" else total
        for number in numbers:
            margin = margins[number]
            head = f"  {ds} ({number}) {names[number]}: margin {margin:g}"
            j = pilots.get((number, ds))
            if res is None:
                low, high = (seeds_needed(s * margin, margin, m)[0] for s in ASSUMED_SD)
                out.append(f"{head}; seeds {_range(low, high)}")
            elif j is None or not j.judged or not j.sd > 0:
                why = "not in the pilot" if j is None else j.reason or j.verdict
                out.append(f"{head}; pilot: {why}")
            else:
                low, high, *_ = seeds_range(j.sd, j.n, margin, m)
                out.append(f"{head}; pilot sd {j.sd:.3g} over {j.n} seeds; seeds "
                           f"{_range(low, high)}")
    return out


def _range(low: int, high: int) -> str:
    def one(n: int) -> str:
        return str(n) if n else "more than 200"

    return one(low) if low == high else f"{one(low)}–{one(high)}"
