"""How many seeds a claim needs: the power of its test and of its equivalence test at a given
number of seeds (statsmodels ``TTestPower``), and the seeds needed as a range, at the observed
sd and at its upper confidence limit (chi-square)."""

from __future__ import annotations

import numpy as np
from scipy import stats
from statsmodels.stats.power import TTestPower

from analysis.stats import ALPHA

POWER = 0.8
MOST_SEEDS = 200  # the seeds-needed search stops here
SD_UCL = 0.8  # the seeds-needed recommendation plans for the sd's 80 % upper confidence limit


def powers(sd: float, delta: float, level: float, n: np.ndarray) -> tuple[np.ndarray,
                                                                           np.ndarray]:
    """At ``n`` seeds with per-seed sd ``sd``: the power of the two-sided t-test at ``level``
    to find an effect of ``delta``, and the TOST's power at no effect with margin ``delta``
    (its lower bound 2·P − 1 from the one-sided tests' power P)."""
    tp = TTestPower()
    detect = tp.power(effect_size=delta / sd, nobs=n, alpha=level, alternative="two-sided")
    # At large effects scipy's noncentral t cdf of the far (wrong-side) tail returns NaN, and so
    # the two-sided power; that tail is then negligible: the near tail's power (level / 2) alone
    detect = np.where(np.isnan(detect), tp.power(effect_size=delta / sd, nobs=n, alpha=level / 2,
                                                 alternative="larger"), detect)
    one = tp.power(effect_size=delta / sd, nobs=n, alpha=level, alternative="larger")
    return np.asarray(detect, dtype=float), np.clip(2 * np.asarray(one, dtype=float) - 1, 0, 1)


def seeds_needed(sd: float, delta: float, family: int, alpha: float = ALPHA,
                 power: float = POWER, at_least: int = 2) -> tuple[int, float, float]:
    """The fewest seeds (at least ``at_least``, at most ``MOST_SEEDS``) at which, with per-seed
    sd ``sd``, the Bonferroni-level (``alpha / family``) two-sided t-test finds an effect of
    ``delta`` with ``power`` and the TOST with margin ``delta`` finds no effect when there is
    none with ``power`` (``powers``); and those two powers there. (0, NaN, NaN) when not
    computable or above ``MOST_SEEDS``."""
    if not (sd > 0 and delta > 0 and family > 0):
        return 0, np.nan, np.nan
    n = np.arange(max(2, at_least), MOST_SEEDS + 1)
    detect, null = powers(sd, delta, alpha / family, n)
    ok = np.flatnonzero(np.minimum(detect, null) >= power)
    if not len(ok):
        return 0, np.nan, np.nan
    i = ok[0]
    return int(n[i]), float(detect[i]), float(null[i])


def sd_upper(sd: float, n: int, confidence: float = SD_UCL) -> float:
    """The one-sided upper confidence limit of a normal sd from ``n`` values (chi-square):
    ``sd · √((n − 1) / χ²_{1−confidence, n−1})``."""
    return float(sd * np.sqrt((n - 1) / stats.chi2.ppf(1 - confidence, n - 1)))


def seeds_range(sd: float, n: int, delta: float, family: int,
                alpha: float = ALPHA) -> tuple[int, int, float, float, float]:
    """The seeds needed as a range from a pilot of ``n`` seeds with sd ``sd``: ``(low, high,
    power, power_null, sd_ucl)``; ``low`` at the observed sd, ``high`` (the recommendation) at
    its ``SD_UCL`` upper confidence limit ``sd_ucl``, both at least ``n + 1``, with the powers
    at ``high`` and ``sd_ucl``; 0 for an end above ``MOST_SEEDS``."""
    ucl = sd_upper(sd, n)
    low = seeds_needed(sd, delta, family, alpha, at_least=n + 1)[0]
    high, detect, null = seeds_needed(ucl, delta, family, alpha, at_least=n + 1)
    return low, high, detect, null, ucl
