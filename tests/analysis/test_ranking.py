"""Which variant is best (analysis/ranking.py): P(rank 1) against the exact bootstrap
distribution enumerated in the test, the probability of improvement against the Mann–Whitney U
statistic, the letters on planted groups, the IQM by its definition."""

from __future__ import annotations

import itertools

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from analysis import ranking


def test_p_rank1_is_the_exact_bootstrap_share_over_the_seeds():
    """4 seeds × 3 variants: every one of the 4^4 resamplings of the seeds enumerated, each
    variant's share of first places (ties split) against 40,000 random replicates."""
    x = pd.DataFrame({"a": [70.0, 72.0, 69.0, 75.0], "b": [71.0, 70.0, 73.0, 72.5],
                      "c": [65.0, 74.0, 66.0, 67.0]})
    values = x.to_numpy()
    exact = np.zeros(3)
    for rows in itertools.product(range(4), repeat=4):
        m = values[list(rows)].mean(axis=0)
        winners = np.flatnonzero(m == m.max())
        exact[winners] += 1 / len(winners)
    exact /= 4 ** 4
    got = ranking.ranks(x, replicates=40_000, rng=np.random.default_rng(1)).set_index("variant")
    for k, v in enumerate(x.columns):
        se = np.sqrt(exact[k] * (1 - exact[k]) / 40_000)
        assert got.loc[v, "p_rank1"] == pytest.approx(exact[k], abs=4 * se + 1e-9), v
    assert got["p_rank1"].sum() == pytest.approx(1.0)
    assert list(got.index) == ["b", "a", "c"]  # by mean
    assert got.loc["b", "mean"] == pytest.approx(71.625)


def test_a_clear_best_ranks_first_in_every_replicate():
    rng = np.random.default_rng(2)
    x = pd.DataFrame({"best": 80 + rng.normal(0, 0.5, 5), "mid": 70 + rng.normal(0, 0.5, 5),
                      "low": 60 + rng.normal(0, 0.5, 5)})
    got = ranking.ranks(x).set_index("variant")
    assert got.loc["best", "p_rank1"] == 1.0
    assert (got.loc["best", "rank_low"], got.loc["best", "rank_high"]) == (1.0, 1.0)
    assert (got.loc["low", "rank_low"], got.loc["low", "rank_high"]) == (3.0, 3.0)


def test_probability_of_improvement_is_mann_whitney_u_over_n_m():
    x = [70.0, 71.5, 72.0, 69.0, 71.5]
    y = [69.5, 71.5, 70.0, 68.0]  # a tie with x counts one half
    u = stats.mannwhitneyu(x, y, alternative="two-sided").statistic
    assert ranking.improvement(x, y) == pytest.approx(u / (len(x) * len(y)))
    p, low, high = ranking.improvement_interval(x, y)
    assert low <= p <= high and 0 <= low and high <= 1
    assert ranking.improvement(y, x) == pytest.approx(1 - ranking.improvement(x, y))


def test_letters_of_two_planted_groups():
    """Two groups of two variants 5 points apart, 6 seeds: the pairs across the groups are
    separated, those within are not; the top group is the first two."""
    rng = np.random.default_rng(3)
    seed = rng.normal(0, 1.0, 6)  # a seed's effect shared by every variant (a block)
    x = pd.DataFrame({"A": 75 + seed + rng.normal(0, 0.3, 6),
                      "B": 75.2 + seed + rng.normal(0, 0.3, 6),
                      "C": 70 + seed + rng.normal(0, 0.3, 6),
                      "D": 70.1 + seed + rng.normal(0, 0.3, 6)})
    pairs = ranking.pairwise(x)
    apart = ranking.separated(pairs)
    assert apart == {frozenset(p) for p in (("A", "C"), ("A", "D"), ("B", "C"), ("B", "D"))}
    means = x.mean()
    order = list(means.sort_values(ascending=False).index)
    assert ranking.letters(order, apart) == {"B": "a", "A": "a", "D": "b", "C": "b"}
    assert ranking.top_group(means, pairs) == ["B", "A"]
    p = pairs.set_index(["a", "b"]).loc[("A", "C"), "p"]
    assert p == pytest.approx(stats.ttest_rel(x["A"], x["C"]).pvalue)


def test_letters_of_overlapping_groups():
    """The textbook case: A and C separated, B with both: a, ab, b."""
    assert ranking.letters(["A", "B", "C"], {frozenset(("A", "C"))}) == {
        "A": "a", "B": "ab", "C": "b"}
    assert ranking.letters(["A", "B", "C"], set()) == {"A": "a", "B": "a", "C": "a"}


def test_iqm_is_the_mean_of_the_middle_half():
    scores = [9.0, 1.0, 5.0, 3.0, 100.0, 7.0, -50.0, 4.0]
    middle = sorted(scores)[2:6]
    assert ranking.iqm(scores) == pytest.approx(np.mean(middle))
    assert ranking.iqm(scores) == pytest.approx(stats.trim_mean(scores, 0.25))


def test_each_rollingq_pair_has_its_probability_of_improvement(tmp_path):
    """A planted on/off study: the pair's P(on > off) is the Mann–Whitney U of the on arm's
    seed means against the off arm's over n·m, inside its bootstrap interval."""
    from analysis import architectures, claims
    from analysis.results import load
    from tests.analysis.test_verdict_engine import plant_claims

    diffs = {c.number: np.linspace(-1.0, 2.0, 6) for c in claims.CLAIMS}
    res = load([plant_claims(tmp_path, diffs)])
    row = architectures.pairs(res).iloc[0]
    t = res.finished
    on = t[t["rollingq.enabled"].astype(str) == "True"].groupby("train.seed")["acc"].mean()
    off = t[t["rollingq.enabled"].astype(str) == "False"].groupby("train.seed")["acc"].mean()
    u = stats.mannwhitneyu(on, off).statistic
    assert row["pi"] == pytest.approx(u / (len(on) * len(off)))
    assert row["pi_low"] <= row["pi"] <= row["pi_high"]


@pytest.mark.parametrize("k, q", [(2, 1.960), (5, 2.728), (10, 3.164)])
def test_the_critical_difference_is_demsars(k, q):
    """Demšar (2006), Table 5(a): q_0.05 for the Nemenyi test; CD = q √(k(k+1)/(6N))."""
    n = 12
    assert ranking.critical_difference(k, n) == pytest.approx(
        q * np.sqrt(k * (k + 1) / (6 * n)), abs=2e-3)


def test_friedman_ranks_blocks_and_bars_join_what_the_cd_cannot_split():
    blocks = pd.DataFrame({"a": [3.0, 3.1, 2.9, 3.2], "b": [2.0, 2.2, 1.9, 2.1],
                           "c": [1.0, 2.3, 2.0, 1.1]})
    average, p = ranking.friedman(blocks)
    assert average.to_dict() == {"a": 1.0, "b": 2.5, "c": 2.5}
    assert p == pytest.approx(stats.friedmanchisquare(*blocks.to_numpy().T).pvalue)
    assert ranking.cliques(average, 1.6) == [["a", "b", "c"]]
    assert ranking.cliques(average, 1.0) == [["b", "c"]]


def test_iqm_interval_resamples_each_data_set_on_its_own():
    groups = [[0.50, 0.52, 0.55, 0.51, 0.53], [0.80, 0.82, 0.78, 0.81, 0.79]]
    value, low, high = ranking.iqm_interval(groups)
    assert value == pytest.approx(ranking.iqm(sum(groups, [])))
    assert low < value < high
    assert ranking.profile([0.2, 0.5, 0.9], np.array([0.0, 0.5, 1.0])).tolist() == [1.0, 1 / 3,
                                                                                     0.0]


def test_the_best_variants_improvement_over_each_of_its_group(ablation_sections):
    """The rotation ablation (3 seeds): the main table's group not separable from the best, and
    for each other member P(best > other) as the seeds' Mann–Whitney U / (n·m)."""
    from analysis import tables

    section = ablation_sections.by_key()["main_table"]
    table, res = section.data["table"], ablation_sections.res
    group = table[table["top"]].sort_values("mean", ascending=False)["variant"].tolist()
    rows = section.data["top_improvement"]
    assert [r["other"] for r in rows] == group[1:] and {r["best"] for r in rows} == {group[0]}
    best = tables.per_seed(res, res.finished, "synthetic", group[0])
    for r in rows:
        other = tables.per_seed(res, res.finished, "synthetic", r["other"])
        u = stats.mannwhitneyu(best, other).statistic / (len(best) * len(other))
        assert r["P(best > other) [95% CI]"].startswith(f"{u:.2f} [")
