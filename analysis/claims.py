"""The paper's claims, judged on one study: effect, 95 % interval, test, p and a verdict each.

RollingQ's paper (Ni et al., ICML 2025) claims a mechanism and its consequences:

    1. without RollingQ |AIR| grows during training           vanilla trials' |AIR| slope > 0
    2. RollingQ lowers |AIR|                                  final |AIR|: on - off < 0
    3. RollingQ lowers the favoured modality's share          its attention share: on - off < 0
    4. RollingQ makes attention follow input quality          adaptivity (Table 2): on - off > 0
    5. RollingQ degrades less under noise on the favoured     accuracy drop at the largest
       modality (Table 3)                                     noise: on - off < 0
    6. RollingQ improves accuracy (Table 1)                   headline: on - off > 0

The arms: a trial is *RollingQ on* when it enables RollingQ with a rotation allowed
(``rollingq.enabled`` and ``rollingq.max_rotations > 0``), *off* (vanilla) otherwise. A
comparison pairs an on trial with the off trials of the same configuration but for RollingQ
(every config value except ``rollingq.*`` and ``model.readout``, which RollingQ needs) and the
same seed: per seed the mean difference over the configurations that have both arms, then a
paired t-test over seeds (claim 1: a one-sample t-test of the vanilla slopes, seed means).
Verdict: ``reproduced`` when the 95 % interval lies on the claimed side of 0, ``contradicted``
when it lies on the other side, ``inconclusive`` when it crosses 0 (or fewer than 2 seeds pair).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

from analysis import outcomes
from analysis.results import SEED, Results, config_values, level_str

REPRODUCED, CONTRADICTED, INCONCLUSIVE, CANNOT = (
    "reproduced", "contradicted", "inconclusive", "cannot judge")


@dataclass(frozen=True)
class Claim:
    number: int
    text: str
    column: str  # the outcome (analysis.outcomes)
    sign: int  # the claimed direction of the effect: +1 or -1
    paired: bool  # RollingQ on vs off (else: the vanilla trials alone, against 0)
    quantity: str  # what the effect measures


CLAIMS = (
    Claim(1, "Without RollingQ |AIR| grows during training", "out_air_slope", +1, False,
          "vanilla trials' slope of validation |AIR| per epoch (vs 0)"),
    Claim(2, "RollingQ lowers |AIR|", "out_abs_air", -1, True,
          "final validation |AIR|, on − off"),
    Claim(3, "RollingQ lowers the favoured modality's attention share", "out_favoured_share",
          -1, True, "favoured modality's validation attention share, on − off"),
    Claim(4, "RollingQ makes attention follow input quality (Table 2)", "out_adaptivity", +1,
          True, "attention-noise adaptivity, on − off"),
    Claim(5, "RollingQ degrades less under noise on the favoured modality (Table 3)",
          "out_noise_drop", -1, True,
          "accuracy drop (points) at the largest noise on the favoured modality, on − off"),
    Claim(6, "RollingQ improves accuracy (Table 1)", "acc", +1, True,
          "headline accuracy (%), on − off"),
)

# The paper's own figures, per claim and data set (Tables 1-3; claims 1-3 are figures only).
PAPER_FIGURES: dict[int, dict[str, str]] = {
    4: {"cremad": "r 0.52 → 0.76", "kinetics_sounds": "r 0.44 → 0.78"},
    5: {"kinetics_sounds": "audio noise λ=1: drop 32.3 → 28.7 points"},
    6: {"cremad": "48.8 → 51.9 %", "kinetics_sounds": "67.0 → 69.3 %", "mosei": "62.7 → 63.2 %"},
}
IGNORED_PREFIXES = ("rollingq.", "model.readout", "train.seed")


@dataclass
class Judgement:
    """One claim on one data set."""

    claim: Claim
    dataset: str
    verdict: str
    effect: float = np.nan
    low: float = np.nan
    high: float = np.nan
    p: float = np.nan
    n: int = 0
    test: str = ""
    reason: str = ""


def _context(values: dict[str, Any]) -> str:
    """A trial's configuration but for RollingQ: what an on and an off trial must share."""
    keep = {k: level_str(v) for k, v in values.items() if not k.startswith(IGNORED_PREFIXES)}
    return repr(sorted(keep.items()))


def frame(res: Results) -> pd.DataFrame:
    """The finished trials with ``context`` (configuration but for RollingQ) and ``on``."""
    df = res.finished
    if not len(df):
        return df.assign(context=pd.Series(dtype=str), on=pd.Series(dtype=bool))
    values = config_values(df, res.specs)
    on = outcomes.rollingq_on(df[outcomes.ON])
    return df.assign(context=[_context(v) for v in values], on=on)[on.notna()].assign(
        on=lambda d: d["on"].astype(bool))


def _interval(x: np.ndarray, claim: Claim) -> Judgement:
    n = len(x)
    j = Judgement(claim, "", INCONCLUSIVE, n=n)
    if n < 2:
        j.reason = f"{n} paired seed(s); at least 2 are needed"
        if n == 1:
            j.effect = float(x[0])
        return j
    mean, sd = float(x.mean()), float(x.std(ddof=1))
    j.effect = mean
    if sd == 0:
        j.low = j.high = mean
        j.p = 0.0 if mean != 0 else 1.0
    else:
        half = float(stats.t.ppf(0.975, n - 1)) * sd / np.sqrt(n)
        j.low, j.high = mean - half, mean + half
        j.p = float(stats.ttest_1samp(x, 0.0).pvalue)
    signed_low, signed_high = sorted((claim.sign * j.low, claim.sign * j.high))
    if signed_low > 0:
        j.verdict = REPRODUCED
    elif signed_high < 0:
        j.verdict = CONTRADICTED
    return j


def judge(res: Results) -> list[Judgement]:
    """Every claim on every data set of the study."""
    df = frame(res)
    out = []
    for ds in res.datasets:
        d = df[df["dataset"] == ds]
        for claim in CLAIMS:
            out.append(_judge_one(claim, d, ds))
    return out


def _judge_one(claim: Claim, d: pd.DataFrame, ds: str) -> Judgement:
    def cannot(reason: str) -> Judgement:
        return Judgement(claim, ds, CANNOT, reason=reason)

    if claim.column not in d:
        return cannot(f"no `{claim.column}` was recorded")
    d = d.assign(y=pd.to_numeric(d[claim.column], errors="coerce")).dropna(subset=["y"])
    off, on = d[~d["on"]], d[d["on"]]
    if not len(off):
        return cannot("the study has no vanilla arm (RollingQ off or 0 rotations) with this "
                      "outcome")
    if not claim.paired:
        per_seed = off.groupby(SEED)["y"].mean()
        j = _interval(per_seed.to_numpy(dtype=float), claim)
        j.dataset, j.test = ds, f"one-sample t-test over {len(per_seed)} seed(s), vanilla trials"
        return j
    if not len(on):
        return cannot("the study has no RollingQ arm with this outcome")
    off_means = off.groupby(["context", SEED])["y"].mean()
    on_means = on.groupby(["context", SEED])["y"].mean()
    both = on_means.index.intersection(off_means.index)
    if not len(both):
        return cannot("no RollingQ trial has a vanilla trial of the same configuration and seed")
    diff = (on_means.loc[both] - off_means.loc[both]).groupby(level=SEED).mean()
    j = _interval(diff.to_numpy(dtype=float), claim)
    contexts = len(set(both.get_level_values("context")))
    j.dataset = ds
    j.test = (f"paired t-test over {len(diff)} seed(s)"
              + (f", mean over {contexts} configurations" if contexts > 1 else ""))
    return j


def _number(x: float) -> str:
    if pd.isna(x):
        return "-"
    return f"{x:+.3g}" if abs(x) < 0.1 else f"{x:+.2f}"


def table(res: Results, judgements: list[Judgement]) -> pd.DataFrame:
    """One row a claim: what it rests on, then per data set the effect, test, p and verdict
    (and the paper's figure where the paper has one for that data set)."""
    several = len(res.datasets) > 1
    rows = []
    for claim in CLAIMS:
        row = {"claim": f"({claim.number}) {claim.text}", "effect measured": claim.quantity,
               "claimed sign": "> 0" if claim.sign > 0 else "< 0"}
        for j in (j for j in judgements if j.claim == claim):
            pre = f"{j.dataset}: " if several else ""
            if j.verdict == CANNOT:
                row[f"{pre}effect [95% CI]"] = "-"
                row[f"{pre}test, p"] = "-"
            else:
                ci = (f" [{_number(j.low)}, {_number(j.high)}]" if not pd.isna(j.low) else "")
                row[f"{pre}effect [95% CI]"] = _number(j.effect) + ci
                p = "" if pd.isna(j.p) else (", p < 0.001" if j.p < 0.001 else f", p = {j.p:.3f}")
                row[f"{pre}test, p"] = j.test + p
            row[f"{pre}verdict"] = f"**{j.verdict}**" + (f" ({j.reason})" if j.reason else "")
            row[f"{pre}paper"] = PAPER_FIGURES.get(claim.number, {}).get(j.dataset, "-")
        rows.append(row)
    return pd.DataFrame(rows)


def cannot_judge(judgements: list[Judgement]) -> list[str]:
    """Sentences naming the claims a study cannot judge, and why."""
    out = []
    for j in judgements:
        if j.verdict == CANNOT:
            out.append(f"{j.dataset}: claim ({j.claim.number}) cannot be judged: {j.reason}.")
    return out
