"""Group-sequential boundaries and Holm's α recycling (analysis/sequential.py): the published
Lan–DeMets O'Brien–Fleming boundaries, the level against scipy's multivariate normal and of
every spending function by simulating the z process, the graph's update, and decisions at the
look a boundary allows."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats
from statsmodels.stats.weightstats import DescrStatsW

from analysis import claims
from analysis.sequential import (
    Graph,
    Sequential,
    boundaries,
    crossed,
    look_tests,
    median_unbiased,
    nominal_p,
    repeated_interval,
    sequential_holm,
    spent,
    stagewise_p,
    thresholds,
)

FIVE = (0.2, 0.4, 0.6, 0.8, 1.0)


def test_obrien_fleming_boundaries_are_the_published_ones():
    """Lan–DeMets O'Brien–Fleming-type spending, two-sided α = 0.05, five equally spaced looks
    (gsDesign's sfLDOF and rpact's asOF give these)."""
    assert boundaries(0.05, FIVE) == pytest.approx((4.8769, 3.3570, 2.6803, 2.2898, 2.0310),
                                                   abs=1e-3)
    assert spent(0.025, 1.0) == pytest.approx(0.025) and spent(0.025, 1.0, "pocock") == 0.025
    assert boundaries(0.05, (1.0,)) == pytest.approx((stats.norm.isf(0.025),))  # one look: z


@pytest.mark.parametrize("sides", [2, 1])
def test_the_z_processs_joint_normal_crosses_the_boundaries_with_probability_alpha(sides):
    """The boundaries come from a recursive integration; scipy's multivariate normal of the z
    process (correlation sqrt(t_i / t_j)) gives the same level."""
    fractions = np.array([3 / 20, 5 / 20, 10 / 20, 1.0])
    c = np.array(boundaries(0.05, fractions, sides=sides))
    cov = np.sqrt(np.minimum.outer(fractions, fractions) / np.maximum.outer(fractions, fractions))
    inside = stats.multivariate_normal.cdf(c, np.zeros(4), cov, abseps=1e-8, releps=0,
                                           lower_limit=-c if sides == 2 else None,
                                           rng=np.random.default_rng(0))
    assert 1 - inside == pytest.approx(0.05, abs=2e-5)


@pytest.mark.parametrize("spending,sides", [("obrien_fleming", 2), ("pocock", 2),
                                            ("obrien_fleming", 1), ("pocock", 1)])
def test_every_boundary_set_holds_its_level_on_the_z_process(spending, sides):
    """400,000 simulated z processes under the null, looked at 3, 5, 10 and 20 of 20 seeds: the
    share crossing a boundary at any look is the level, look by look the α spent."""
    fractions = (3 / 20, 5 / 20, 10 / 20, 1.0)
    c = np.array(boundaries(0.05, fractions, spending, sides))
    rng = np.random.default_rng(7)
    n = 400_000
    steps = rng.standard_normal((n, 4)) * np.sqrt(np.diff((0.0, *fractions)))
    z = np.cumsum(steps, axis=1) / np.sqrt(fractions)
    hit = (np.abs(z) if sides == 2 else z) >= c
    first = np.where(hit.any(axis=1), hit.argmax(axis=1), -1)
    se = np.sqrt(0.05 * 0.95 / n)
    assert (first >= 0).mean() == pytest.approx(0.05, abs=4 * se)
    cumulative = [sides * spent(0.05 / sides, t, spending) for t in fractions]
    for k, want in enumerate(cumulative):
        assert ((first >= 0) & (first <= k)).mean() == pytest.approx(want, abs=4 * se + 1e-4)


def _null_t_p(rng: np.random.Generator, studies: int, seeds: tuple[int, ...],
               sides: int) -> np.ndarray:
    """The t-tests' p at each look of ``studies`` null studies of normal seeds."""
    x = rng.standard_normal((studies, seeds[-1]))
    n = np.asarray(seeds)
    mean = np.cumsum(x, 1)[:, n - 1] / n
    sd = np.sqrt((np.cumsum(x * x, 1)[:, n - 1] - n * mean**2) / (n - 1))
    t = mean / (sd / np.sqrt(n))
    return 2 * stats.t.sf(np.abs(t), n - 1) if sides == 2 else stats.t.sf(t, n - 1)


@pytest.mark.parametrize("sides", [2, 1])
def test_t_statistics_at_a_look_after_every_seed_hold_the_level_on_the_t_process(sides):
    """A look after every seed from 3 to 20: the z boundaries' nominal p applied to t-tests
    rejects a null too often (the t statistics share their noisy sds); the thresholds matched
    on the t process hold the level, on draws independent of the paths they were matched on."""
    seeds = tuple(range(3, 21))
    fractions = tuple(n / 20 for n in seeds)
    p = _null_t_p(np.random.default_rng(5), 100_000, seeds, sides)
    se = np.sqrt(0.05 * 0.95 / len(p))
    z_way = (p <= np.array(thresholds(0.05, fractions, sides=sides))).any(axis=1).mean()
    matched = np.array(thresholds(0.05, fractions, sides=sides, seeds=seeds))
    t_way = (p <= matched).any(axis=1).mean()
    assert abs(t_way - 0.05) < 3 * se, t_way
    assert z_way > t_way + 3 * se, (z_way, t_way)
    assert matched[0] == pytest.approx(nominal_p(boundaries(0.05, fractions[:1], sides=sides)[0],
                                                 sides))  # exact at the first look
    assert thresholds(0.05, fractions[:5], sides=sides, seeds=seeds[:5]) == tuple(matched[:5])


def test_a_look_past_the_budget_spends_nothing_more():
    c = boundaries(0.05, (0.5, 1.0, 1.25))
    assert c[:2] == boundaries(0.05, (0.5, 1.0)) and c[2] == float("inf")
    with pytest.raises(ValueError, match="increasing and positive"):
        boundaries(0.05, (0.5, 0.5))
    with pytest.raises(ValueError, match="valid: obrien_fleming, pocock"):
        spent(0.05, 0.5, "haybittle")


def test_holms_graph_passes_a_rejected_share_on_equally():
    g = Graph.holm(["a", "b", "c"])
    assert g.weights == pytest.approx({"a": 1 / 3, "b": 1 / 3, "c": 1 / 3})
    after = g.reject("a")
    assert after.weights == pytest.approx({"b": 0.5, "c": 0.5})
    assert after.moves == {"b": {"c": 1.0}, "c": {"b": 1.0}}
    assert after.reject("b").weights == pytest.approx({"c": 1.0})


def test_holms_recycling_rejects_a_second_claim_where_bonferroni_does_not():
    """Two claims looked at half and all of the budget. At the first look claim a is far past
    its boundary; claim b's p lies between the nominal p of the first boundary at α/2 and at
    α, so it is rejected once a's share passes to it, and never by Bonferroni."""
    fractions = (0.5, 1.0)
    half, whole = (nominal_p(boundaries(level, fractions)[0]) for level in (0.025, 0.05))
    assert half < whole
    p = {"a": [1e-9], "b": [np.sqrt(half * whole)]}
    assert sequential_holm(p, fractions) == {"a": 0, "b": 0}
    bonferroni = Graph({"a": 0.5, "b": 0.5}, {"a": {"b": 0.0}, "b": {"a": 0.0}})
    assert sequential_holm(p, fractions, graph=bonferroni) == {"a": 0}


def test_a_planted_large_effect_is_decided_at_the_first_look_its_boundary_allows():
    """Seed differences with a large planted effect, looked at 3, 5, 10 and 20 seeds: the
    decision comes at the first look whose t-test p reaches the boundary's nominal p, and a
    planted null is never decided."""
    rng = np.random.default_rng(3)
    seeds = (3, 5, 10, 20)
    fractions = tuple(n / 20 for n in seeds)
    large, null = rng.normal(1.5, 1.0, 20), rng.normal(0.0, 1.0, 20)
    p = {name: [stats.ttest_1samp(x[:n], 0.0).pvalue for n in seeds]
         for name, x in (("large", large), ("null", null))}
    c = boundaries(0.025, fractions)  # each claim's first share of α = 0.05
    first = next(k for k, pk in enumerate(p["large"]) if pk <= nominal_p(c[k]))
    assert first > 0  # O'Brien–Fleming: nothing at 3 seeds
    assert sequential_holm(p, fractions) == {"large": first}
    assert crossed(p["null"], 0.05, fractions, "obrien_fleming", 2) is None


def test_a_looks_tests_are_scipys_t_test_and_statsmodels_tost():
    x = np.random.default_rng(1).normal(0.2, 1.0, 7)
    effect, p, tost = look_tests(x, 0.5)
    assert effect == pytest.approx(x.mean())
    assert p == pytest.approx(stats.ttest_1samp(x, 0.0).pvalue)
    assert tost == pytest.approx(DescrStatsW(x).ttost_mean(-0.5, 0.5)[0])


def test_verdicts_are_decided_at_their_look_and_then_frozen():
    """Claim a: a large effect on its claimed side, decided reproduced at the first look its
    boundary allows and kept when later seeds point the other way; claim b: a precise zero,
    no effect; claim c: noise far wider than its margin, inconclusive to the budget."""
    rng = np.random.default_rng(5)
    seq = Sequential({"a": 1, "b": 1, "c": -1})
    draws = {"a": rng.normal(3.0, 1.0, 20), "b": rng.normal(0.0, 0.05, 20),
             "c": rng.normal(0.0, 5.0, 20)}
    draws["a"][10:] = -8.0 + rng.normal(0.0, 1.0, 10)  # the later seeds contradict it
    margins = {"a": 1.0, "b": 1.0, "c": 1.0}
    looks = (3, 5, 10, 20)
    history = []
    for k, n in enumerate(looks):
        history.append(seq.look({c: x[:n] for c, x in draws.items()}, margins,
                                [m / 20 for m in looks[: k + 1]]))
    assert history[-1] == {"a": claims.REPRODUCED, "b": claims.NO_EFFECT,
                           "c": claims.INCONCLUSIVE}
    decided = seq.differ.rejected["a"]
    assert all(h["a"] == claims.INCONCLUSIVE for h in history[:decided])
    assert seq.effects["a"][-1] < 0 < seq.effects["a"][decided]  # frozen at its look
    fixed = Sequential({"a": 1, "b": 1, "c": -1})
    assert fixed.look(draws, margins, [1.0])["a"] == claims.INCONCLUSIVE  # the whole budget


def test_the_median_unbiased_estimate_is_median_unbiased_after_early_stopping():
    """Two looks at half and all of the information, O'Brien–Fleming-type boundaries, a true
    drift of 2.5: the stage-wise p of each simulated outcome at the true drift is uniform, so
    the estimate lies above the truth in half the studies; the naive one does not. One look:
    the estimate is the naive one."""
    fractions = (0.5, 1.0)
    c = boundaries(0.05, fractions)
    theta = 2.5
    rng = np.random.default_rng(11)
    z1 = rng.standard_normal(2000) + theta * np.sqrt(0.5)
    z2 = (z1 * np.sqrt(0.5) + rng.standard_normal(2000) * np.sqrt(0.5) + theta * 0.5) / 1.0
    early = np.abs(z1) >= c[0]
    upper = [stagewise_p(theta, z1[i], 0, c, fractions) if early[i]
             else stagewise_p(theta, z2[i], 1, c, fractions) for i in range(2000)]
    assert np.mean(np.array(upper) <= 0.5) == pytest.approx(0.5, abs=0.035)
    naive = np.where(early, z1 / np.sqrt(0.5), z2)
    assert np.mean(naive[early] >= theta) > 0.7  # stopping at the boundary selects the high
    assert median_unbiased(2.3, 0, (1.96,), (1.0,)) == pytest.approx(2.3, abs=1e-5)


def test_repeated_intervals_of_t_statistics_cover_at_every_look_at_once():
    """Seeds looked at 3, 5, 10 and 20 of 20 with t statistics mapped on the z boundaries:
    every look's repeated interval covers the true effect in at least 95 % of studies at once
    (within the Monte-Carlo error)."""
    seeds = (3, 5, 10, 20)
    c = boundaries(0.05, tuple(n / 20 for n in seeds))
    rng = np.random.default_rng(2)
    covered = 0
    for _ in range(2000):
        x = rng.normal(0.3, 1.0, 20)
        covered += all(lo <= 0.3 <= hi for lo, hi in
                       (repeated_interval(x[:n], ck) for n, ck in zip(seeds, c, strict=True)))
    assert covered / 2000 >= 0.95 - 2 * np.sqrt(0.05 * 0.95 / 2000)


@pytest.mark.parametrize("sd, ends", [(1.0, claims.NO_EFFECT), (3.0, claims.INCONCLUSIVE)])
def test_a_planted_null_runs_to_the_budget_and_ends_as_its_data_say(sd, ends):
    """Six claims with no effect at a seed sd of 1 or 3 margins, looked at 3, 5, 10 and 20
    seeds: nothing is decided before the budget, nothing is ever reproduced or contradicted,
    and at the budget a claim is `no effect` exactly where its equivalence test reaches its
    boundary at the level Holm's recycling gives it (a small sd: every claim), else
    inconclusive (a large one)."""
    rng = np.random.default_rng(12)
    names = [str(c.number) for c in claims.CLAIMS]
    seq = Sequential({n: 1 for n in names})
    draws = {n: rng.normal(0.0, sd, 20) for n in names}
    margins = dict.fromkeys(names, 1.0)
    looks = (3, 5, 10, 20)
    for k, n in enumerate(looks):
        verdicts = seq.look({c: x[:n] for c, x in draws.items()}, margins,
                            [m / 20 for m in looks[: k + 1]])
        if k < len(looks) - 1:
            assert set(verdicts.values()) == {claims.INCONCLUSIVE}  # the study goes on
    assert set(verdicts.values()) == {ends}
    assert not seq.differ.rejected
    for name in names:  # as its data say: the last look's TOST p against its boundary
        level = seq.equal.level(name)
        bound = nominal_p(boundaries(level, [m / 20 for m in looks], sides=1)[-1], sides=1)
        assert (seq.tost[name][-1] <= bound) == (verdicts[name] == claims.NO_EFFECT)
