"""The sequential design calibrated (``python bench/verdict_calibration.py --sequential``): how
often a study that grows by looks until its claims are decided reaches a false verdict, how
much power it keeps, and how many seeds it uses, against the fixed design at the same budget.

Each simulated study draws, per data set and claim, ``BUDGET`` per-seed differences from a
normal distribution with the claim's seed sd and a true effect in units of its margin on its
claimed side (null 0, at the margin 1, twice the margin 2). It looks at the planned seed counts:
at each look a data set's six claims are judged by ``analysis.sequential.Sequential`` (Holm's α
recycling within the data set, O'Brien–Fleming-type spending, the difference and the equivalence
tests each with its own α), and the data set grows to its next look only while one of its claims
is inconclusive, up to the budget. The fixed design is the same rule with one look at the budget
(Holm, as ``claims.decide`` does).

Per row: the family-wise rate of a false ``reproduced``/``contradicted`` (a decided verdict
where the truth is 0, a ``contradicted`` where it lies on the claimed side) and of a false
``no effect`` (where the truth is at or beyond the margin) per data set, each with its
Monte-Carlo standard error; the share of claims ``reproduced`` (power) sequential and fixed;
and the mean seeds used.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from analysis import claims
from analysis import declarations as declarations_
from analysis.sequential import Sequential

BUDGET = 20
LOOKS = {"3, 5, 10, 20": (3, 5, 10, 20), "every seed": tuple(range(3, BUDGET + 1))}
TRUTHS = {"null": 0.0, "at the margin": 1.0, "twice the margin": 2.0}


def study(draws: dict[str, np.ndarray], signs: dict[str, int], margins: dict[str, float],
          datasets: int, looks: tuple[int, ...]) -> tuple[list[dict[str, str]], float]:
    """One simulated study: the verdicts per data set at its stop, and the mean seeds its data
    sets used (each data set grows until its own claims are decided, or to the budget)."""
    verdicts, used = [], []
    for d in range(datasets):
        family = Sequential(signs)
        for k, n in enumerate(looks):
            fractions = [m / BUDGET for m in looks[: k + 1]]
            got = family.look({c: draws[c][d, :n] for c in signs}, margins, fractions)
            if claims.INCONCLUSIVE not in got.values():
                break
        verdicts.append(got)
        used.append(n)
    return verdicts, float(np.mean(used))


def _false(verdicts: list[dict[str, str]], truth: float) -> tuple[int, int]:
    """Data sets with a false reproduced/contradicted, and with a false no effect."""
    decided = (claims.REPRODUCED, claims.CONTRADICTED)
    wrong_decided = sum(any((v in decided) if truth == 0 else v == claims.CONTRADICTED
                            for v in per.values()) for per in verdicts)
    wrong_none = sum(truth >= 1 and any(v == claims.NO_EFFECT for v in per.values())
                     for per in verdicts)
    return wrong_decided, wrong_none


def row(truth: float, datasets: int, looks: tuple[int, ...], sd: dict[int, float],
        sims: int, rng: np.random.Generator) -> dict[str, float]:
    signs = {str(c.number): c.sign for c in claims.CLAIMS}
    margins = {str(c.number): declarations_.MARGINS[c.number] for c in claims.CLAIMS}
    counts = np.zeros(6)  # false decided, false none: sequential, fixed; reproduced: both
    seeds = 0
    for _ in range(sims):
        draws = {str(c.number): rng.normal(c.sign * truth * margins[str(c.number)],
                                           sd[c.number], (datasets, BUDGET))
                 for c in claims.CLAIMS}
        got, used = study(draws, signs, margins, datasets, looks)
        fixed, _ = study(draws, signs, margins, datasets, (BUDGET,))
        seeds += used
        counts[0:2] += _false(got, truth)
        counts[2:4] += _false(fixed, truth)
        counts[4] += sum(v == claims.REPRODUCED for per in got for v in per.values())
        counts[5] += sum(v == claims.REPRODUCED for per in fixed for v in per.values())
    families, verdicts = sims * datasets, sims * datasets * len(claims.CLAIMS)
    return {"false decided": counts[0] / families, "false no effect": counts[1] / families,
            "fixed: false decided": counts[2] / families,
            "fixed: false no effect": counts[3] / families,
            "power": counts[4] / verdicts, "fixed: power": counts[5] / verdicts,
            "mean seeds": seeds / sims, "families": families}


def table(sd: dict[int, float], sims: int, rng: np.random.Generator) -> pd.DataFrame:
    rows = []
    for truth_name, truth in TRUTHS.items():
        for datasets in (1, 3):
            for looks_name, looks in LOOKS.items():
                r = row(truth, datasets, looks, sd, sims, rng)
                se = np.sqrt(0.05 * 0.95 / r["families"])
                ok = (r["false decided"] <= 0.05 + 2 * se and r["false no effect"] <= 0.05 + 2 * se
                      and (truth == 0 or r["power"] >= r["fixed: power"] - 0.03)
                      and (truth < 2 or r["mean seeds"] < BUDGET))
                rows.append({
                    "truth": truth_name, "data sets": datasets, "looks": looks_name,
                    "false reproduced/contradicted": f"{r['false decided']:.3f}",
                    "false no effect": f"{r['false no effect']:.3f}",
                    "Monte-Carlo se": f"{se:.3f}",
                    "fixed 20: false r/c, no effect":
                        f"{r['fixed: false decided']:.3f}, {r['fixed: false no effect']:.3f}",
                    "power": f"{r['power']:.3f}", "fixed 20: power": f"{r['fixed: power']:.3f}",
                    "mean seeds": f"{r['mean seeds']:.1f}", "goal": "ok" if ok else "NO"})
    return pd.DataFrame(rows)
