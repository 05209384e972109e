"""What the lost trials could change: the verdicts again with every lost trial (diverged,
errored, incomplete) put back at the worst value for its claim, and at the best."""

from __future__ import annotations

import numpy as np
import pandas as pd

from analysis.claims import (
    CANNOT,
    CLAIMS,
    FAILED,
    Judgement,
    frame,
    judge,
)
from analysis.per_sample import chance_accuracy
from analysis.results import Results
from analysis.stats import ALPHA


def worst_case(res: Results, judgements: list[Judgement], alpha: float = ALPHA) -> pd.DataFrame:
    """The verdicts again with the lost trials (diverged, timed out, errored, incomplete) put
    back at the worst value for each claim, and at the best: one row per claim × data set with
    lost trials (none when the study lost none).

    Against a claim, a lost RollingQ trial takes the value least favourable to it (accuracy:
    chance, ``chance_accuracy``; the other outcomes: the least favourable value any trial of
    the data set reached) and a lost vanilla trial the most favourable to the vanilla arm; in
    the claim's favour, the reverse. Columns: ``dataset``, ``claim``, ``lost`` (per arm),
    ``verdict``, ``against``, ``for`` (the verdicts), ``effect_against``, ``effect_for`` (the
    effects), ``changes`` (whether either verdict differs from ``verdict``).
    """
    t = res.trials[(res.trials["duplicate_of"] == "") & res.trials["status"].isin(FAILED)]
    columns = ["dataset", "claim", "lost", "verdict", "against", "for", "effect_against",
               "effect_for", "changes"]
    if not len(t):
        return pd.DataFrame(columns=columns)
    finished = frame(res)
    lost = frame(res, t)
    out = {}
    for direction, name in ((-1, "against"), (+1, "for")):
        imputed = lost.copy()
        for ds, idx in lost.groupby("dataset").groups.items():
            seen = finished[finished["dataset"] == ds]
            for claim in CLAIMS:
                if claim.column not in seen:
                    continue
                y = pd.to_numeric(seen[claim.column], errors="coerce").dropna()
                if not len(y):
                    continue
                # the on arm's value that helps the claim most / least
                helps, hurts = (y.max(), y.min()) if claim.sign > 0 else (y.min(), y.max())
                if claim.column == "acc":
                    hurts = min(hurts, chance_accuracy(res, ds))  # a lost trial at chance
                on = imputed.loc[idx, "on"].astype(bool)
                if not claim.paired:  # claim 1: the vanilla trials' own growth
                    value = np.where(on, np.nan, hurts if direction < 0 else helps)
                elif direction < 0:
                    value = np.where(on, hurts, helps)
                else:
                    value = np.where(on, helps, hurts)
                imputed.loc[idx, claim.column] = value
        both = pd.concat([finished, imputed.assign(acc=imputed["acc"].astype(float))])
        out[name] = {(j.dataset, j.claim.number): (j.verdict, j.effect)
                     for j in judge(res, alpha, both, plan=False)}
    arms_lost = lost.groupby(["dataset", "on"]).size()
    rows = []
    for j in judgements:
        n_on = int(arms_lost.get((j.dataset, True), 0))
        n_off = int(arms_lost.get((j.dataset, False), 0))
        if not n_on + n_off:
            continue
        key = (j.dataset, j.claim.number)
        (against, low), (favour, high) = (out[k].get(key, (CANNOT, np.nan))
                                          for k in ("against", "for"))
        rows.append({"dataset": j.dataset, "claim": j.claim.number,
                     "lost": f"on {n_on}, off {n_off}", "verdict": j.verdict,
                     "against": against, "for": favour, "effect_against": low,
                     "effect_for": high,
                     "changes": against != j.verdict or favour != j.verdict})
    return pd.DataFrame(rows, columns=columns)
