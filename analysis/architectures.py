"""RollingQ per architecture: the rows of the paper's Table 1, one RollingQ pair at a time.

The claims (analysis/claims.py) average RollingQ's effect over every on/off pair of a data set;
the paper reports it per architecture (Vanilla MT, MT*, MMML, MulT, each with and without
RollingQ). A *pair* here is one RollingQ-on variant and the off trials of the same
configuration but for RollingQ (claims' ``context``) on one data set, compared seed by seed
on the headline accuracy. Per pair:

    - the paired difference over seeds (on − off), its 95 % t-interval, the raw two-sided
      t-test and the exact sign-flip p, Holm over the table's pairs in the study's declared
      family (``declarations_.FAMILIES``: the pairs on one data set, or every pair of the report);
    - the verdict as the claims decide it: ``reproduced`` / ``contradicted`` (Holm p < 0.05),
      ``no effect`` (TOST against claim 6's margin, the declared smallest effect of interest,
      Holm over the table's TOSTs), ``inconclusive`` otherwise;
    - the paper's gain for the same pair (its Table 1, one seed each) and a one-sided t-test
      of "our effect is smaller than the paper's gain" (Holm over the table's one-sided
      tests): the paper's gain is a reference to compare with, never a margin;
    - the seeds improved: the share of seeds where on beats off (a tie counts as no
      improvement), with its Clopper–Pearson interval (statsmodels ``proportion_confint``):
      what a further seed of this pair would do; and rliable's probability of improvement
      P(on > off) over every pair of an on seed and an off seed, ties one half, with its
      stratified-bootstrap interval (``analysis.ranking.improvement_interval``);
    - the prediction interval of one seed's paper-style difference (best test epoch, as the
      paper selects), mean ± t(n − 1)·sd·√(1 + 1/n), against the paper's single-seed gain: can
      a single run of ours give the paper's number?
    - the test set's paired BCa bootstrap and McNemar's test per seed (``per_sample.test_set_row``),
      where the trials saved their predictions.

The table as a report's reader sees it: docs/report.md.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from scipy import stats
from statsmodels.stats.proportion import proportion_confint
from statsmodels.stats.weightstats import DescrStatsW

from analysis import claims, per_sample, ranking
from analysis import declarations as declarations_
from analysis import stats as stats_
from analysis.paper import PAPER_TABLE1, paper_name, variant_values
from analysis.results import SEED, Results
from analysis.stats import ALPHA, holm, prediction_interval

COLUMNS = ["dataset", "pair", "paper_row", "on", "off", "n", "effect", "low", "high", "p",
           "sign_flip_p", "sign_flip_short", "p_holm", "margin", "tost_p", "tost_holm",
           "verdict", "paper_gain", "smaller_p", "smaller_holm", "improved", "predict_low",
           "predict_high", "improve_low", "improve_high", "paper_in_prediction", "family",
           "test_set", "pi", "pi_low", "pi_high"]


def pairs(res: Results) -> pd.DataFrame:
    """Every RollingQ pair of the study, its statistics and verdict: a row per data set × on
    variant (columns ``COLUMNS``; empty when the study has no pair)."""
    df = claims.frame(res)
    family, margins = declarations_.declarations(res)
    rows = []
    for ds in res.datasets:
        d = df[df["dataset"] == ds]
        off = d[~d["on"]]
        for variant in d.loc[d["on"], "variant"].astype(str).unique():
            on = d[d["on"] & (d["variant"].astype(str) == variant)]
            mates = off[off["context"].isin(set(on["context"]))]
            row = _pair(res, ds, variant, on, mates)
            if row is not None:
                row["margin"] = margins.get((6, ds), (declarations_.MARGINS[6], ""))[0]
                rows.append(row)
    decide(rows, family)
    return pd.DataFrame(rows, columns=COLUMNS)


def _seed_means(t: pd.DataFrame, column: str) -> pd.Series:
    return pd.to_numeric(t[column], errors="coerce").groupby(t[SEED]).mean().dropna()


def _pair(res: Results, ds: str, variant: str, on: pd.DataFrame,
          off: pd.DataFrame) -> dict[str, Any] | None:
    """One pair's figures before the family is decided (None without two common seeds)."""
    a, b = _seed_means(on, "acc"), _seed_means(off, "acc")
    seeds = a.index.intersection(b.index)
    if len(seeds) < 2 or not len(off):
        return None
    x = (a.loc[seeds] - b.loc[seeds]).to_numpy(dtype=float)
    tolerance = claims.TOLERANCE * max(1.0, float(np.abs(x).max()))  # points: as claims do
    x = np.where(np.abs(x) <= tolerance, 0.0, x)
    study = int(on["study"].iloc[0])
    on_name = paper_name(variant_values(res, study, variant))
    off_variants = list(dict.fromkeys(off["variant"].astype(str)))
    off_name = paper_name(variant_values(res, int(off["study"].iloc[0]), off_variants[0]))
    paper = PAPER_TABLE1.get(ds, {})
    gain = (paper[on_name] - paper[off_name]) if on_name in paper and off_name in paper \
        else np.nan
    n = len(x)
    row: dict[str, Any] = {
        "dataset": ds, "pair": f"{variant} − {', '.join(off_variants)}",
        "paper_row": f"{on_name} vs {off_name}" if on_name and off_name else "",
        "on": variant, "off": ", ".join(off_variants), "n": n, "effect": float(x.mean()),
        "paper_gain": float(gain), "improved": int((x > 0).sum()),
        "test_set": per_sample.test_set_row(res, pd.concat([on, off]))}
    if np.ptp(x) <= tolerance:  # nothing varies: no test
        row.update(low=row["effect"], high=row["effect"], verdict=claims.DETERMINISTIC)
    else:
        t = stats.ttest_1samp(x, 0.0)
        row.update(low=float(t.confidence_interval(1 - ALPHA).low),
                   high=float(t.confidence_interval(1 - ALPHA).high), p=float(t.pvalue),
                   sign_flip_p=stats_.sign_flip(x), x=x)
        if not np.isnan(gain):
            row["smaller_p"] = float(stats.ttest_1samp(x, gain, alternative="less").pvalue)
    row["improve_low"], row["improve_high"] = proportion_confint(
        row["improved"], n, alpha=ALPHA, method="beta")
    row["pi"], row["pi_low"], row["pi_high"] = ranking.improvement_interval(a.loc[seeds],
                                                                            b.loc[seeds])
    style = (_seed_means(on, "acc_paper").loc[lambda s: s.index.isin(seeds)]
             - _seed_means(off, "acc_paper").loc[lambda s: s.index.isin(seeds)]).dropna()
    if len(style) >= 2:
        low, high = prediction_interval(float(style.mean()), float(style.std(ddof=1)),
                                        len(style), 1 - ALPHA)
        row.update(predict_low=low, predict_high=high)
        if not np.isnan(gain):
            row["paper_in_prediction"] = bool(low <= gain <= high)
    return row


def decide(rows: list[dict[str, Any]], family: str) -> None:
    """Holm over each family of pairs (``declarations_.FAMILIES``), TOST against the margin, the
    one-sided tests against the paper's gain, and the verdicts, in place."""
    groups: dict[str, list[dict[str, Any]]] = {}
    for r in rows:
        if r.get("verdict") != claims.DETERMINISTIC:
            groups.setdefault(r["dataset"] if family == "dataset" else "", []).append(r)
    for key, tested in groups.items():
        m = len(tested)
        name = (f"the {m} RollingQ pairs on {key}" if family == "dataset"
                else f"the {m} RollingQ pairs of this report")
        for r in tested:
            r["family"] = name
            r["tost_p"] = float(DescrStatsW(r["x"]).ttost_mean(-r["margin"], r["margin"])[0])
        raw = np.array([r["p"] for r in tested])
        p = holm(raw, ALPHA)
        tost = holm([r["tost_p"] for r in tested], ALPHA)
        levels = claims.holm_levels(raw, p, ALPHA)
        for r, ph, pt, level in zip(tested, p, tost, levels, strict=True):
            r["p_holm"], r["tost_holm"] = float(ph), float(pt)
            r["sign_flip_short"] = 2.0 / 2 ** r["n"] >= level
            r["verdict"] = claims.verdict(r["effect"], +1, ph, pt)  # claimed: RollingQ helps
        gains = [r for r in tested if not pd.isna(r.get("smaller_p", np.nan))]
        if gains:
            for r, q in zip(gains, holm([r["smaller_p"] for r in gains], ALPHA), strict=True):
                r["smaller_holm"] = float(q)


def smaller_than_paper(r: dict[str, Any]) -> bool:
    """Whether a pair's effect is shown smaller than the paper's gain (Holm p < 0.05)."""
    return bool(not pd.isna(r.get("smaller_holm")) and r["smaller_holm"] < ALPHA)
