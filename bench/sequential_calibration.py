"""The sequential design calibrated (``python bench/verdict_calibration.py --sequential``): how
often a study that grows by looks until its claims are decided reaches a false verdict, how
much power it keeps, and how many seeds it uses, against the fixed design at the same budget.

Each simulated study draws, per data set and claim, ``BUDGET`` per-seed differences from a
normal distribution with the claim's seed sd and a true effect in units of its margin on its
claimed side (``TRUTHS``: every claim null, at the margin or at twice it; or the audit's Table 1
case, claims 1-5 clear and claim 6 null or at its margin with a real data set's seed sd). It
looks at the planned seed counts: at each look a data set's six claims are judged by
``analysis.sequential.Sequential`` (Holm's α recycling within the data set, O'Brien–Fleming-type
spending, the difference and the equivalence tests each with its own α), and the data set grows
to its next look only while one of its claims is inconclusive, up to the budget. The fixed
design is the same rule with one look at the budget (Holm, as ``claims.decide`` does).

Per row: the family-wise rate of a false ``reproduced``/``contradicted`` (a decided verdict
where the truth is 0, a ``contradicted`` where it lies on the claimed side) and of a false
``no effect`` (where the truth is at or beyond the margin) per data set, each with its
Monte-Carlo standard error; the same rates of the fixed design at the budget and of the fixed
design's rule read again at every look with the same stopping (a grown fixed study reread);
the share of claims ``reproduced`` (power) sequential and fixed; the mean seeds used; and the
false rates of the same sequential design with the z boundaries' nominal p instead of the
thresholds matched on the t process (``analysis.sequential``: why they are matched).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from analysis import claims
from analysis import declarations as declarations_
from analysis.sequential import Sequential

BUDGET = 20
LOOKS = {"3, 5, 10, 20": (3, 5, 10, 20), "every seed": tuple(range(3, BUDGET + 1))}
# Each claim's true effect in units of its margin on its claimed side, by scenario: the same
# for the six claims, or the Table 1 case of the statistics audit (claims 1-5 clear at three
# margins, claim 6, the accuracy, in doubt at a seed sd of 1.5 points and a margin of 1 point).
TRUTHS: dict[str, dict[int, float]] = {
    "null": dict.fromkeys(range(1, 7), 0.0),
    "at the margin": dict.fromkeys(range(1, 7), 1.0),
    "twice the margin": dict.fromkeys(range(1, 7), 2.0),
    "Table 1: claim 6 null": {**dict.fromkeys(range(1, 6), 3.0), 6: 0.0},
    "Table 1: claim 6 at the margin": {**dict.fromkeys(range(1, 6), 3.0), 6: 1.0},
}
TABLE1 = {"sd": 1.5, "margin": 1.0}  # claim 6 in the Table 1 scenarios


def study(draws: dict[str, np.ndarray], signs: dict[str, int], margins: dict[str, float],
          datasets: int, looks: tuple[int, ...], naive: bool = False,
          t_process: bool = True) -> tuple[list[dict[str, str]], float]:
    """One simulated study: the verdicts per data set at its stop, and the mean seeds its data
    sets used (each data set grows until its own claims are decided, or to the budget).
    ``naive``: each look judged as if it were the only one (the fixed design's rule read again
    after every growth, what a user who grows a fixed study and rereads its report does).
    ``t_process``: the thresholds matched on the t process, else the z boundaries' nominal p."""
    verdicts, used = [], []
    for d in range(datasets):
        family = Sequential(signs, t_process=t_process)
        for k, n in enumerate(looks):
            fractions = [m / BUDGET for m in looks[: k + 1]]
            if naive:
                family, fractions = Sequential(signs), [1.0]
            got = family.look({c: draws[c][d, :n] for c in signs}, margins, fractions)
            if claims.INCONCLUSIVE not in got.values():
                break
        verdicts.append(got)
        used.append(n)
    return verdicts, float(np.mean(used))


def _false(verdicts: list[dict[str, str]], truth: dict[str, float]) -> tuple[int, int]:
    """Data sets with a false reproduced/contradicted (decided where the truth is 0, or
    contradicted), and with a false no effect (where the truth is at the margin or beyond)."""
    decided = (claims.REPRODUCED, claims.CONTRADICTED)
    wrong_decided = sum(any((v in decided) if truth[c] == 0 else v == claims.CONTRADICTED
                            for c, v in per.items()) for per in verdicts)
    wrong_none = sum(any(truth[c] >= 1 and v == claims.NO_EFFECT for c, v in per.items())
                     for per in verdicts)
    return wrong_decided, wrong_none


def row(truths: dict[int, float], datasets: int, looks: tuple[int, ...], sd: dict[int, float],
        sims: int, rng: np.random.Generator,
        declared: dict[int, float] | None = None) -> dict[str, float]:
    """One scenario's rates over ``sims`` studies (``truths``: each claim's true effect in
    margins; ``declared``: margins replacing the defaults, as a spec's ``claims.margins``)."""
    signs = {str(c.number): c.sign for c in claims.CLAIMS}
    margins = {str(n): m for n, m in {**declarations_.MARGINS, **(declared or {})}.items()}
    truth = {str(n): t for n, t in truths.items()}
    counts = np.zeros(10)  # false decided, false none: sequential, fixed, naive, z; reproduced
    seeds = 0
    for _ in range(sims):
        draws = {str(c.number): rng.normal(c.sign * truth[str(c.number)]
                                           * margins[str(c.number)],
                                           sd[c.number], (datasets, BUDGET))
                 for c in claims.CLAIMS}
        got, used = study(draws, signs, margins, datasets, looks)
        fixed, _ = study(draws, signs, margins, datasets, (BUDGET,))
        reread, _ = study(draws, signs, margins, datasets, looks, naive=True)
        z_way, _ = study(draws, signs, margins, datasets, looks, t_process=False)
        seeds += used
        counts[0:2] += _false(got, truth)
        counts[2:4] += _false(fixed, truth)
        counts[6:8] += _false(reread, truth)
        counts[8:10] += _false(z_way, truth)
        counts[4] += sum(v == claims.REPRODUCED for per in got for c, v in per.items()
                         if truth[c] > 0)
        counts[5] += sum(v == claims.REPRODUCED for per in fixed for c, v in per.items()
                         if truth[c] > 0)
    families = sims * datasets
    verdicts = max(1, families * sum(t > 0 for t in truth.values()))
    return {"false decided": counts[0] / families, "false no effect": counts[1] / families,
            "fixed: false decided": counts[2] / families,
            "fixed: false no effect": counts[3] / families,
            "reread: false decided": counts[6] / families,
            "reread: false no effect": counts[7] / families,
            "z: false decided": counts[8] / families, "z: false no effect": counts[9] / families,
            "power": counts[4] / verdicts, "fixed: power": counts[5] / verdicts,
            "mean seeds": seeds / sims, "families": families}


def table(sd: dict[int, float], sims: int, rng: np.random.Generator) -> pd.DataFrame:
    rows = []
    for truth_name, truths in TRUTHS.items():
        table1 = truth_name.startswith("Table 1")
        sds = {**sd, 6: TABLE1["sd"]} if table1 else sd
        margins = {6: TABLE1["margin"]} if table1 else None
        for datasets in ((1,) if table1 else (1, 3)):
            for looks_name, looks in LOOKS.items():
                r = row(truths, datasets, looks, sds, sims, rng, margins)
                se = np.sqrt(0.05 * 0.95 / r["families"])
                some = any(t > 0 for t in truths.values())
                ok = (r["false decided"] <= 0.05 + 2 * se and r["false no effect"] <= 0.05 + 2 * se
                      and (not some or r["power"] >= r["fixed: power"] - 0.03)
                      and (min(truths.values()) < 2 or r["mean seeds"] < BUDGET))
                rows.append({
                    "truth": truth_name, "data sets": datasets, "looks": looks_name,
                    "false reproduced/contradicted": f"{r['false decided']:.3f}",
                    "false no effect": f"{r['false no effect']:.3f}",
                    "Monte-Carlo se": f"{se:.3f}",
                    "fixed 20: false r/c, no effect":
                        f"{r['fixed: false decided']:.3f}, {r['fixed: false no effect']:.3f}",
                    "fixed reread at each look: false r/c, no effect":
                        f"{r['reread: false decided']:.3f}, {r['reread: false no effect']:.3f}",
                    "z boundaries' p: false r/c, no effect":
                        f"{r['z: false decided']:.3f}, {r['z: false no effect']:.3f}",
                    "power": f"{r['power']:.3f}" if some else "-",
                    "fixed 20: power": f"{r['fixed: power']:.3f}" if some else "-",
                    "mean seeds": f"{r['mean seeds']:.1f}", "goal": "ok" if ok else "NO"})
    return pd.DataFrame(rows)
