"""Which variant is best on a data set, and how sure: numbers only (issue 37's comparison; the
report's tables use them).

On one data set the seeds are blocks: every variant trains with each seed (the same data order
and initialisation), so a study is a seeds × variants matrix of headline means (``wide``).

- **P(rank 1) and rank intervals** (``ranks``): the bootstrap over seeds within the data set
  resamples whole seeds (a seed's row keeps its variants together, as the blocks pair them);
  per replicate each variant's mean over the resampled seeds is ranked (1 = highest; ties share
  their ranks' mean). P(rank 1) is the share of replicates a variant ranks first (a tie for
  first splits the replicate), the rank interval the 2.5 and 97.5 percentiles of its rank.
- **Separable from the best** (``pairwise``, ``top_group``, ``letters``): every pair of
  variants by the paired t-test of their per-seed differences over the seeds both have
  (scipy ``ttest_rel``: each pair's differences have their own variance, so no variance is
  assumed equal across variants), Holm over all pairs (statsmodels ``multipletests``). The
  group not separable from the best is the highest-mean variant with every variant whose
  pair with it Holm does not reject; the compact letter display (Piepho 2004, insert and
  absorb) gives variants that share a letter no rejected pair between them.
- **Probability of improvement** (``improvement``): P(X > Y) over every pair of a seed of X
  and a seed of Y, ties counting one half: rliable's definition (Agarwal et al. 2021), equal to
  the Mann–Whitney U statistic of X / (n·m); its interval by the stratified bootstrap, each
  variant's seeds resampled on their own (scipy ``bootstrap``, percentile).
- **IQM** (``iqm``): the interquartile mean, the mean of the middle half of the scores (scipy
  ``trim_mean(..., 0.25)``), rliable's robust aggregate.

rliable itself is archived (2025): its few pieces are written here with scipy and pinned by
tests against their published definitions.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence

import numpy as np
import pandas as pd
from scipy import stats
from statsmodels.stats.multitest import multipletests

from analysis.stats import ALPHA

REPLICATES = 2000  # bootstrap replicates of P(rank 1), the rank intervals and P(X > Y)


def ranks(x: pd.DataFrame, replicates: int = REPLICATES,
          rng: np.random.Generator | None = None) -> pd.DataFrame:
    """Per variant (``x``'s columns; rows: seeds) its mean, P(rank 1) and 95 % rank interval
    over ``replicates`` resamplings of the seeds, sorted by mean (module docstring)."""
    rng = np.random.default_rng(0) if rng is None else rng
    values = x.to_numpy(dtype=float)
    n = len(values)
    picks = rng.integers(0, n, size=(replicates, n))
    means = np.nanmean(values[picks], axis=1)  # replicates × variants
    order = stats.rankdata(-means, method="average", axis=1)
    top = order.min(axis=1, keepdims=True)
    first = (order == top) / (order == top).sum(axis=1, keepdims=True)
    out = pd.DataFrame({"variant": list(x.columns), "mean": np.nanmean(values, axis=0),
                        "p_rank1": first.mean(axis=0),
                        "rank_low": np.percentile(order, 2.5, axis=0),
                        "rank_high": np.percentile(order, 97.5, axis=0)})
    return out.sort_values("mean", ascending=False, kind="stable").reset_index(drop=True)


def pairwise(x: pd.DataFrame, alpha: float = ALPHA) -> pd.DataFrame:
    """Every pair of variants: the mean paired difference (a − b) over the seeds both have, its
    paired t-test p and the Holm-adjusted p over all pairs (module docstring)."""
    rows = []
    for a, b in itertools.combinations(x.columns, 2):
        both = x[[a, b]].dropna()
        d = (both[a] - both[b]).to_numpy()
        p = (float(stats.ttest_rel(both[a], both[b]).pvalue)
             if len(d) >= 2 and np.ptp(d) > 0 else (1.0 if not np.any(d) else 0.0))
        rows.append({"a": a, "b": b, "diff": float(d.mean()) if len(d) else np.nan,
                     "n": len(d), "p": p})
    out = pd.DataFrame(rows, columns=["a", "b", "diff", "n", "p"])
    out["p_holm"] = multipletests(out["p"], alpha=alpha, method="holm")[1] if len(out) else []
    return out


def separated(pairs: pd.DataFrame, alpha: float = ALPHA) -> set[frozenset[str]]:
    """The pairs Holm rejects."""
    return {frozenset((r.a, r.b)) for r in pairs.itertuples() if r.p_holm < alpha}


def top_group(means: pd.Series, pairs: pd.DataFrame, alpha: float = ALPHA) -> list[str]:
    """The highest-mean variant and those not separable from it, by mean."""
    order = list(means.sort_values(ascending=False, kind="stable").index)
    apart = separated(pairs, alpha)
    return [v for v in order if v == order[0] or frozenset((v, order[0])) not in apart]


def letters(order: Sequence[str], apart: set[frozenset[str]]) -> dict[str, str]:
    """The compact letter display (Piepho 2004): ``order`` the variants by mean, highest first;
    ``apart`` the separated pairs. Variants that share a letter have no separated pair between
    them, and every separated pair shares none; ``a`` marks the columns of the highest means."""
    columns = [list(order)]
    for pair in apart:
        i, j = tuple(pair)
        grown = []
        for col in columns:  # insert: a column holding both splits in two
            if i in col and j in col:
                grown += [[v for v in col if v != i], [v for v in col if v != j]]
            else:
                grown.append(col)
        columns = [c for k, c in enumerate(grown)  # absorb: a column inside another goes
                   if not any(set(c) < set(o) or (set(c) == set(o) and m < k)
                              for m, o in enumerate(grown) if m != k)]
    rank = {v: k for k, v in enumerate(order)}
    columns.sort(key=lambda c: sorted(rank[v] for v in c))
    out = {v: "" for v in order}
    for letter, col in zip("abcdefghijklmnopqrstuvwxyz", columns, strict=False):
        for v in col:
            out[v] += letter
    return out


def improvement(x: Sequence[float], y: Sequence[float]) -> float:
    """P(X > Y): the share of pairs (a seed of X, a seed of Y) where X is higher, ties counting
    one half (rliable's probability of improvement on one task)."""
    a, b = np.asarray(x, dtype=float)[:, None], np.asarray(y, dtype=float)[None, :]
    return float(((a > b) + 0.5 * (a == b)).mean())


def improvement_interval(x: Sequence[float], y: Sequence[float], replicates: int = REPLICATES,
                         rng: np.random.Generator | None = None) -> tuple[float, float, float]:
    """P(X > Y) and its 95 % stratified-bootstrap interval (each variant's seeds resampled on
    their own, percentile method)."""
    rng = np.random.default_rng(0) if rng is None else rng
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    if len(x) < 2 or len(y) < 2:
        return improvement(x, y), np.nan, np.nan

    def statistic(a: np.ndarray, b: np.ndarray, axis: int = -1) -> np.ndarray:
        a, b = np.moveaxis(a, axis, -1), np.moveaxis(b, axis, -1)
        d = a[..., :, None] - b[..., None, :]
        return ((d > 0) + 0.5 * (d == 0)).mean(axis=(-2, -1))

    res = stats.bootstrap((x, y), statistic, n_resamples=replicates, method="percentile",
                          random_state=rng, vectorized=True)
    return improvement(x, y), float(res.confidence_interval.low), float(
        res.confidence_interval.high)


def iqm(scores: Sequence[float]) -> float:
    """The interquartile mean: the mean of the middle half of the scores (all runs pooled)."""
    return float(stats.trim_mean(np.ravel(np.asarray(scores, dtype=float)), 0.25))


# -- across data sets: descriptive ----------------------------------------------------------

def friedman(blocks: pd.DataFrame) -> tuple[pd.Series, float]:
    """Blocks (rows: a data set × seed) × variants: each variant's average rank (1 = highest,
    ties the mean of their ranks) over the complete blocks, and Friedman's p (scipy
    ``friedmanchisquare``; NaN with fewer than three variants or two blocks)."""
    full = blocks.dropna()
    ranks = full.rank(axis=1, ascending=False, method="average").mean()
    if full.shape[1] < 3 or len(full) < 2:
        return ranks, np.nan
    return ranks, float(stats.friedmanchisquare(*full.to_numpy().T).pvalue)


def critical_difference(k: int, n: int, alpha: float = ALPHA) -> float:
    """Nemenyi's critical difference of average ranks for ``k`` variants over ``n`` blocks
    (Demšar 2006): q_α √(k(k+1) / (6n)), q_α the studentized range's upper α quantile with
    infinite degrees of freedom over √2 (scipy ``studentized_range``)."""
    q = float(stats.studentized_range.ppf(1 - alpha, k, np.inf)) / np.sqrt(2)
    return q * float(np.sqrt(k * (k + 1) / (6 * n)))


def cliques(average: pd.Series, cd: float) -> list[list[str]]:
    """The maximal runs of variants (by average rank) whose ranks lie within ``cd`` of each
    other: the bars of a critical-difference diagram."""
    order = list(average.sort_values().index)
    runs = []
    for i, v in enumerate(order):
        run = [w for w in order[i:] if average[w] - average[v] < cd]
        if len(run) > 1 and not any(set(run) <= set(r) for r in runs):
            runs.append(run)
    return runs


def iqm_interval(groups: Sequence[Sequence[float]], replicates: int = REPLICATES,
                 rng: np.random.Generator | None = None) -> tuple[float, float, float]:
    """The IQM of the pooled scores and its 95 % stratified-bootstrap interval: each group (one
    data set's seeds) resampled with replacement on its own, percentile method (rliable's)."""
    rng = np.random.default_rng(0) if rng is None else rng
    arrays = [np.asarray(g, dtype=float) for g in groups if len(g)]
    draws = [np.concatenate([g[rng.integers(0, len(g), len(g))] for g in arrays])
             for _ in range(replicates)]
    boot = stats.trim_mean(np.stack(draws), 0.25, axis=1)
    return iqm(np.concatenate(arrays)), float(np.percentile(boot, 2.5)), float(
        np.percentile(boot, 97.5))


def profile(scores: Sequence[float], thresholds: np.ndarray) -> np.ndarray:
    """The performance profile: the share of runs whose score exceeds each threshold."""
    x = np.asarray(scores, dtype=float)[:, None]
    return (x > np.asarray(thresholds)[None, :]).mean(axis=0)
