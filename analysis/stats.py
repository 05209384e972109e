"""The statistics every table and test of the report shares: Holm's adjustment, a sample's
t-interval, a difference between two cells (paired by seed where it can be, else Welch's), and
the prediction interval of one more seed. scipy and statsmodels do the arithmetic."""

from __future__ import annotations

import gc
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats
from statsmodels.stats.multitest import multipletests

ALPHA = 0.05  # every family's level
SIGN_FLIP_EXACT = 16  # up to this many seeds the sign-flip p enumerates every flip
SIGN_FLIP_RESAMPLES = 99_999  # beyond: random flips


def holm(pvals: Any, alpha: float = 0.05) -> np.ndarray:
    """Holm-adjusted p-values: statsmodels ``multipletests(method="holm")``.

    statsmodels runs ``gc.collect()`` inside every Holm call, and a full collection walks every
    tracked object of the process: in a study driver or a test process (Ray, torch and pandas
    loaded) that cost about half a second a call, several hundred a report. The objects alive
    before the call are frozen out of the collector's sight meanwhile (``gc.freeze``, undone
    after: nothing is kept from collection).
    """
    gc.freeze()
    try:
        return multipletests(pvals, alpha=alpha, method="holm")[1]
    finally:
        gc.unfreeze()


def t_interval(values: Any, level: float = 0.95) -> tuple[float, float, float, float, int]:
    """Mean, sd, and the t-interval of a sample (scipy ``ttest_1samp``): ``(mean, sd, low,
    high, n)``; NaN where n < 2, the mean itself where the sd is 0."""
    x = np.asarray(pd.Series(values).dropna(), dtype=float)
    n = len(x)
    if n == 0:
        return (np.nan, np.nan, np.nan, np.nan, 0)
    mean = float(x.mean())
    if n < 2:
        return (mean, np.nan, np.nan, np.nan, 1)
    sd = float(x.std(ddof=1))
    if sd == 0:
        return (mean, sd, mean, mean, n)
    ci = stats.ttest_1samp(x, 0.0).confidence_interval(level)
    return (mean, sd, float(ci.low), float(ci.high), n)


def difference(a: pd.Series, b: pd.Series, level: float = 0.95) -> tuple[float, float, float, str]:
    """``mean(a) - mean(b)`` with its interval; a and b are indexed by seed.

    Returns:
        ``(delta, low, high, method)``, method ``paired`` (by seed, over the seeds both have:
        the t-interval of the differences), ``Welch`` (scipy ``ttest_ind(equal_var=False)``) or
        ``-`` (too few seeds for an interval).
    """
    a, b = a.dropna(), b.dropna()
    if not len(a) or not len(b):
        return (np.nan, np.nan, np.nan, "-")
    common = a.index.intersection(b.index)
    if a.index.is_unique and b.index.is_unique and len(common) >= 2:
        d = a.loc[common].to_numpy() - b.loc[common].to_numpy()
        mean, _, lo, hi, n = t_interval(d, level)
        return (mean, lo, hi, "paired" if n == max(len(a), len(b)) else f"paired, {n} seeds")
    delta = float(a.mean() - b.mean())
    if len(a) < 2 or len(b) < 2:
        return (delta, np.nan, np.nan, "-")
    if a.var(ddof=1) + b.var(ddof=1) == 0:
        return (delta, delta, delta, "Welch")
    ci = stats.ttest_ind(a.to_numpy(float), b.to_numpy(float),
                         equal_var=False).confidence_interval(level)
    return (delta, float(ci.low), float(ci.high), "Welch")


def prediction_interval(mean: float, sd: float, n: int,
                        level: float = 0.95) -> tuple[float, float]:
    """Where one more seed's value falls with probability ``level`` (normal seeds):
    ``mean ± t(1 − (1 − level)/2, n − 1) · sd · √(1 + 1/n)``; NaN below two seeds."""
    if n < 2 or pd.isna(sd):
        return (np.nan, np.nan)
    half = float(stats.t.ppf(1 - (1 - level) / 2, n - 1) * sd * np.sqrt(1 + 1 / n))
    return (mean - half, mean + half)


def sign_flip(x: np.ndarray) -> float:
    """The two-sided sign-flip (one-sample permutation) p of the mean of ``x`` against 0:
    scipy ``permutation_test`` over every flip up to ``SIGN_FLIP_EXACT`` values, else random
    flips (seeded)."""
    n = len(x)
    r = stats.permutation_test(
        (x,), lambda v, axis: np.mean(v, axis=axis), permutation_type="samples",
        vectorized=True, alternative="two-sided", rng=np.random.default_rng(0),
        n_resamples=np.inf if n <= SIGN_FLIP_EXACT else SIGN_FLIP_RESAMPLES)
    return float(r.pvalue)
