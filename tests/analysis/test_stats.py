"""The shared statistics (analysis/stats.py) pinned to scipy and statsmodels: the t-interval,
the paired or Welch difference, Holm."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from analysis import stats as stats_


def test_t_interval_matches_scipy():
    x = np.array([60.1, 61.5, 59.8, 60.9])
    mean, sd, lo, hi, n = stats_.t_interval(x)
    ref = stats.t.interval(0.95, len(x) - 1, loc=x.mean(), scale=stats.sem(x))
    assert n == 4 and mean == pytest.approx(x.mean()) and sd == pytest.approx(x.std(ddof=1))
    assert (lo, hi) == pytest.approx(ref)
    assert np.isnan(stats_.t_interval([1.0])[2])


def test_difference_is_paired_by_seed_when_seeds_match():
    a = pd.Series([61.0, 62.0, 63.5], index=[0, 1, 2])
    b = pd.Series([60.0, 60.5, 62.0], index=[0, 1, 2])
    delta, lo, hi, method = stats_.difference(a, b)
    ref = stats.ttest_rel(a, b).confidence_interval(0.95)
    assert method == "paired" and delta == pytest.approx(1.333333, abs=1e-5)
    assert (lo, hi) == pytest.approx((ref.low, ref.high))
    delta, lo, hi, method = stats_.difference(a, pd.Series([60.0, 61.0], index=[5, 6]))
    ref = stats.ttest_ind(a, [60.0, 61.0], equal_var=False).confidence_interval(0.95)
    assert method == "Welch" and (lo, hi) == pytest.approx((ref.low, ref.high))


def test_holm_is_statsmodels_and_leaves_the_collector_as_it_was():
    """``analysis.stats.holm`` is statsmodels' Holm, and the freeze it runs under is undone: nothing
    stays out of the garbage collector's reach."""
    import gc

    from statsmodels.stats.multitest import multipletests

    from analysis.stats import holm

    p = [0.01, 0.04, 0.03, 0.2, 0.005]
    np.testing.assert_array_equal(holm(p), multipletests(p, method="holm")[1])
    np.testing.assert_allclose(holm(p), [0.04, 0.09, 0.09, 0.2, 0.025])
    assert gc.get_freeze_count() == 0
