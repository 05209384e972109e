"""The verdict engine, calibrated: how often each verdict comes out when the truth is known.

Runs the claims' own decision code (``analysis.claims.decide``) on simulated studies: per claim
and data set, ``n`` per-seed differences drawn from a normal distribution with the claim's seed
sd and a true effect in units of the claim's margin (null: 0, small: 0.5, paper-sized: 1, the
paper's gap being the margin on its data sets). Prints, per truth × seeds × data sets, the share
of each verdict over the claims, and the family-wise rate of a false ``reproduced`` or
``contradicted`` (any in the family: a decided verdict where the truth is 0, or a
``contradicted`` where the truth lies on the claimed side). Then, at the seeds the report would
recommend (``claims.seeds_needed`` at the true sd), the power it promises beside the power
simulated: ``reproduced`` at a margin-sized effect and ``no effect`` at none (the other claims
set so that Holm's later steps add nothing: the promise is Bonferroni's, a floor).

Goals (issue 21): a family-wise false verdict at most 5 % under the null; a true null judged
``no effect`` at least 80 % of the time with the recommended seeds; the simulated power there
within 5 points of the promise.

    python bench/verdict_calibration.py                   # seed sds of the default study
    python bench/verdict_calibration.py --study results/rotation_ablation/<timestamp>/
    python bench/verdict_calibration.py --sims 200        # quicker, noisier

The built-in seed sds (``SEED_SD``) are the per-seed sds of each claim's differences in the
default study (rotation_ablation, synthetic data, 5 seeds), measured with ``--study``; a
``--study`` folder (say, one on a real data set) replaces them.
"""

from __future__ import annotations

import argparse
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from analysis import claims  # noqa: E402

# Per claim: the sd over seeds of its per-seed differences in the default study (synthetic data,
# 5 seeds, `python bench/verdict_calibration.py --study DIR` prints them).
SEED_SD: dict[int, float] = {1: 0.111, 2: 0.108, 3: 0.043, 4: 0.031, 5: 0.795, 6: 0.320}
TRUTHS = {"null": 0.0, "small (0.5 margin)": 0.5, "paper-sized (1 margin)": 1.0}
SEEDS = (3, 5, 10)
DATASETS = (1, 3)


def measured_sd(folder: Path) -> dict[int, float]:
    """Each claim's sd of per-seed differences in a results folder (pooled over data sets)."""
    from analysis.results import load

    out = {}
    for j in claims.judge(load([folder])):
        if j.judged:
            out.setdefault(j.claim.number, []).append(float(j.diffs.std(ddof=1)))
    return {k: float(np.sqrt(np.mean(np.square(v)))) for k, v in out.items()}


def simulate(effects: dict[int, float], n: int, datasets: int, sd: dict[int, float],
             sims: int, rng: np.random.Generator) -> tuple[pd.DataFrame, float]:
    """``sims`` simulated studies, each claim's true effect ``effects[claim]`` margins on its
    claimed side: the share of each verdict per claim, and the share of studies with a false
    ``reproduced`` or ``contradicted`` (one where the truth is 0) anywhere in the family."""
    counts: Counter = Counter()
    false = 0
    for _ in range(sims):
        family = []
        for d in range(datasets):
            for c in claims.CLAIMS:
                x = rng.normal(c.sign * effects[c.number] * claims.MARGINS[c.number],
                               sd[c.number], n)
                family.append(claims.Judgement(c, f"d{d}", claims.INCONCLUSIVE,
                                               diffs=pd.Series(x)))
        wrong = False
        for j in claims.decide(family, plan=False):
            counts[(j.claim.number, j.verdict)] += 1
            decided = j.verdict in (claims.REPRODUCED, claims.CONTRADICTED)
            wrong |= decided and (effects[j.claim.number] == 0
                                  or j.verdict == claims.CONTRADICTED)
        false += wrong
    shares = pd.DataFrame([{"claim": c, "verdict": v, "share": k / (sims * datasets)}
                           for (c, v), k in counts.items()])
    return shares, false / sims


def verdict_shares(sd: dict[int, float], sims: int, rng: np.random.Generator) -> pd.DataFrame:
    rows = []
    for truth, effect in TRUTHS.items():
        for n in SEEDS:
            for k in DATASETS:
                shares, false = simulate({c.number: effect for c in claims.CLAIMS}, n, k, sd,
                                         sims, rng)
                share = shares.groupby("verdict")["share"].sum() / len(claims.CLAIMS)
                row = {"truth": truth, "seeds": n, "data sets": k}
                row.update({name: f"{share.get(name, 0.0):.3f}" for name in claims.VERDICTS[:4]})
                row["family-wise false"] = f"{false:.3f}"
                rows.append(row)
    return pd.DataFrame(rows)


def promised_power(sd: dict[int, float], sims: int, rng: np.random.Generator) -> pd.DataFrame:
    """Per claim, one data set (a family of six): the seeds the report recommends and the
    power it promises there (Bonferroni's level, Holm's first step), then the simulated rates
    of ``reproduced`` at a margin-sized effect (the other claims null) and of ``no effect`` at
    none (the other claims at their margin): the cases where Holm's later steps add nothing,
    so the promise is what a user can count on."""
    rows = []
    m = len(claims.CLAIMS)
    for c in claims.CLAIMS:
        n, detect, null = claims.seeds_needed(sd[c.number], claims.MARGINS[c.number], m)
        got = {}
        for truth, own, others, verdict in (("margin", 1.0, 0.0, claims.REPRODUCED),
                                            ("null", 0.0, 1.0, claims.NO_EFFECT)):
            effects = {k.number: (own if k.number == c.number else others)
                       for k in claims.CLAIMS}
            shares, _ = simulate(effects, n, 1, sd, sims, rng)
            mine = shares[(shares["claim"] == c.number) & (shares["verdict"] == verdict)]
            got[truth] = float(mine["share"].sum())
        rows.append({"claim": c.number, "seed sd": sd[c.number],
                     "margin": claims.MARGINS[c.number], "recommended seeds": n,
                     "promised: reproduced at the margin": f"{detect:.3f}",
                     "simulated": f"{got['margin']:.3f}",
                     "promised: no effect at the null": f"{null:.3f}",
                     "simulated ": f"{got['null']:.3f}",
                     "within 5 points": "yes" if abs(got["margin"] - detect) <= 0.05
                     and abs(got["null"] - null) <= 0.05 else "NO"})
    return pd.DataFrame(rows)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--study", type=Path, help="take the seed sds from this results folder")
    ap.add_argument("--sims", type=int, default=1000, help="simulated studies per cell")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    sd = dict(SEED_SD)
    if args.study:
        measured = measured_sd(args.study)
        sd.update(measured)
        print("seed sd of each claim's per-seed differences in", args.study)
        print("  " + ", ".join(f"({k}) {v:.4g}" + ("" if k in measured else " (built-in: not "
                                                     "judged in that study)")
                               for k, v in sorted(sd.items())))
    rng = np.random.default_rng(args.seed)
    print(f"\nVerdict shares over the claims ({args.sims} simulated studies a row; the family: "
          f"6 claims x data sets, Holm):")
    print(verdict_shares(sd, args.sims, rng).to_string(index=False))
    print("\nAt the recommended seeds (one data set, a family of six; goal: within 5 points of "
          "the promise, no effect >= 0.80 at the null):")
    print(promised_power(sd, args.sims, rng).to_string(index=False))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
