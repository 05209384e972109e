"""A time to an event that may never happen (``outcomes.CENSORED``: epochs until |AIR| falls to
beta after the first rotation) is censored survival data, not a number to average: Kaplan–Meier
per level of each factor and the log-rank test between the levels, stratified by seed."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from analysis.results import SEED, Results, level_str
from analysis.sensitivity import active_factors


@dataclass
class Survival:
    """A time-to-event outcome (``outcomes.CENSORED``) as survival data.

    Attributes:
        column: The time column; ``event`` its indicator (1 event, 0 censored).
        levels: Rows ``factor, level, trials, events, share, median, times, survival`` (the
            Kaplan–Meier estimate: ``survival[i]`` is the share without the event after
            ``times[i]``; ``median`` NaN when under half had it).
        tests: Rows ``factor, levels, chi2, p, strata``: the log-rank test across a factor's
            levels (``survdiff``), stratified by seed.
        n: Trials at risk (the others never started the clock: no rotation fired).
        notes: Sentences for the report.
    """

    column: str
    event: str
    levels: pd.DataFrame = field(default_factory=pd.DataFrame)
    tests: pd.DataFrame = field(default_factory=pd.DataFrame)
    n: int = 0
    notes: list[str] = field(default_factory=list)


def survival(res: Results, column: str = "out_air_convergence") -> Survival:
    """Kaplan–Meier per level of each factor and the log-rank test between the levels
    (statsmodels ``SurvfuncRight`` and ``survdiff``), for a censored time outcome."""
    from statsmodels.duration.survfunc import SurvfuncRight, survdiff

    from analysis.outcomes import CENSORED

    out = Survival(column, CENSORED[column])
    df = res.frame()
    if column not in df or out.event not in df:
        out.notes.append(f"No trial recorded `{column}`.")
        return out
    time = pd.to_numeric(df[column], errors="coerce")
    event = pd.to_numeric(df[out.event], errors="coerce")
    d = df[time.notna() & event.notna()].assign(_t=time, _e=event)
    out.n = len(d)
    if not len(d):
        out.notes.append("No trial started the clock (no rotation fired), so there is nothing "
                         "to analyse.")
        return out
    factors, notes = active_factors(res, d)
    out.notes += notes
    strata = (d["dataset"].astype(str) + ":" + d[SEED].map(level_str))
    levels, tests = [], []
    for key in factors:
        f = res.factor(key)
        present = [lv for lv in f.levels if (d[key] == lv).any()]
        for lv in present:
            g = d[d[key] == lv]
            sf = SurvfuncRight(g["_t"].to_numpy(float), g["_e"].to_numpy(float))
            levels.append({"factor": key, "level": lv, "trials": len(g),
                           "events": int(g["_e"].sum()), "share": float(g["_e"].mean()),
                           "median": float(sf.quantile(0.5)) if g["_e"].any() else np.nan,
                           "times": [float(t) for t in sf.surv_times],
                           "survival": [float(p) for p in sf.surv_prob]})
        group = d[key].astype(str).to_numpy()
        stratified = strata.nunique() >= 2
        try:
            chi2, p = survdiff(d["_t"].to_numpy(float), d["_e"].to_numpy(float), group,
                               strata=strata.to_numpy() if stratified else None)
        except (ValueError, np.linalg.LinAlgError, ZeroDivisionError):
            chi2, p = np.nan, np.nan
        tests.append({"factor": key, "levels": len(present), "chi2": float(chi2),
                      "p": float(p), "strata": "seed" if stratified else "none"})
    out.levels, out.tests = pd.DataFrame(levels), pd.DataFrame(tests)
    return out
