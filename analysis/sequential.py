"""Group-sequential tests for claims judged at several looks: spending functions, boundaries,
and Holm's α recycling across the claims (the graphical approach). Numbers only.

A sequential study looks at its claims after n_1 < n_2 < ... seeds of a budget of N seeds; the
information fraction of look k is t_k = n_k / N. A claim's test spends its level α over the
looks by a spending function (Lan & DeMets 1983):

    O'Brien–Fleming-type  f(a, t) = 2 − 2 Φ(z_{1−a/2} / √t)     (almost nothing early)
    Pocock-type           f(a, t) = a · ln(1 + (e − 1) t)

where a is the one-sided level: a two-sided test at level α spends α/2 on each side (so five
equally spaced looks at α = 0.05 give the published O'Brien–Fleming-type boundaries 4.8769,
3.3570, 2.6803, 2.2898, 2.0310), a one-sided test (each side of an equivalence test) spends α.
The boundary c_k of look k makes the probability under the null of first crossing there equal
to the α spent between t_{k−1} and t_k, for the z process whose looks are jointly normal with
correlation √(t_i / t_j). It is computed by the recursive numerical integration over the
process's independent increments (Armitage, McPherson & Rowe 1969; Jennison & Turnbull 2000,
ch. 19), look by look with scipy's normal: deterministic, accurate to 1e-9 at 1,201 points,
and fast enough for a look after every seed (18 looks in 0.6 s, where scipy's multivariate
normal CDF took 170 s; the tests check the level against it).

A look's statistic is a t statistic of n_k − 1 degrees of freedom, not a z. Compared through
its p-value with the z boundary's nominal p (two-sided 2(1 − Φ(c_k)), one-sided 1 − Φ(c_k):
the "significance level approach", exact at each look alone), the level is not held over many
looks at few seeds: the t statistics of one study share their noisy standard deviations, so
their joint tails are heavier than the z process's (``bench/verdict_calibration.py``: 0.055 for
a look after every seed from 3 to 20, measured over 20,000 studies). So where the looks' seed
counts are known (``seeds``), each look after the first rejects when its t-test's p is at most a
threshold matched on the t process itself: ``T_PATHS`` simulated null studies of normal seeds
(the t statistic's distribution does not depend on the seeds' sd) are run through the looks,
and look k's threshold is the p-value that makes the share of them first crossing by look k
equal to the α spent by t_k (the z boundary's nominal p where that would move less than one
path). The first look's threshold is the z boundary's nominal p, which is exact there. The
paths are drawn from a fixed seed, a seed column at a time, so a look's threshold never changes
when a later look is added.

Several claims: Holm's procedure as a graph (Bretz et al. 2009), applied to group-sequential
tests (Maurer & Bretz 2013): each open hypothesis is tested at α times its weight with its own
boundaries; when one is rejected its weight moves to the others, whose boundaries are computed
again at their larger level and checked at every look so far; repeated until none is rejected.

After a look: the repeated confidence interval (``repeated_interval``: valid at every look at
once, so whenever the study stops) and, once stopped, the median-unbiased estimate under the
stage-wise ordering (``median_unbiased``), beside the naive mean that early stopping at a
boundary overstates.

Where no package fits: ``gsdesign`` (PyPI 0.1.5, alpha) offers only the numerical-integration
primitives, no spending functions or boundaries; the rest of the field's tools are R packages
(gsDesign, rpact, ldbounds).
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
from scipy import optimize, special, stats

from analysis.claims import INCONCLUSIVE, verdict

SPENDING_NAMES = {"obrien_fleming": "O'Brien–Fleming", "pocock": "Pocock"}
SPENDINGS = tuple(SPENDING_NAMES)
GRID = 1201  # points of the numerical integration on a look's continuation region (odd)
TAIL = 9.0  # S_k is integrated within ±9 of its sd: the mass beyond is below 1e-18
T_PATHS = 200_000  # simulated null studies the t process's thresholds are matched on
T_SEED = 2506_11465  # their draws' seed (the paper's arXiv number)


def spent(level: float, t: float, spending: str = "obrien_fleming") -> float:
    """The one-sided α spent by information fraction ``t`` (0 < t, capped at 1) of a one-sided
    ``level``."""
    t = min(float(t), 1.0)
    if spending == "obrien_fleming":
        return float(2 - 2 * stats.norm.cdf(stats.norm.ppf(1 - level / 2) / np.sqrt(t)))
    if spending == "pocock":
        return float(level * np.log1p((np.e - 1) * t))
    raise ValueError(f"spending {spending!r}; valid: {', '.join(SPENDINGS)}")


@dataclass(frozen=True)
class _Look:
    """The boundaries up to a look and, on a grid of the score S_k = Z_k √t_k over the region
    where no boundary has been crossed, the probability mass of the paths still going."""

    c: tuple[float, ...]
    s: np.ndarray
    mass: np.ndarray


def _simpson(lo: float, hi: float) -> tuple[np.ndarray, np.ndarray]:
    s = np.linspace(lo, hi, GRID)
    w = np.ones(GRID)
    w[1:-1:2], w[2:-1:2] = 4.0, 2.0
    return s, w * (hi - lo) / (GRID - 1) / 3


@functools.lru_cache(maxsize=1024)
def _look(alpha: float, fractions: tuple[float, ...], spending: str, sides: int) -> _Look:
    """The last look of ``fractions``, built on the one before (the recursive integration of
    Armitage, McPherson & Rowe 1969 over the z process's independent score increments)."""
    before = _look(alpha, fractions[:-1], spending, sides) if len(fractions) > 1 else None
    t, side = fractions[-1], alpha / sides
    step = sides * (spent(side, t, spending)
                    - (spent(side, fractions[-2], spending) if before else 0.0))
    sd = np.sqrt(t)
    d = np.sqrt(t - fractions[-2]) if before else sd

    def cross(c: float) -> float:
        """P(no crossing before, crossing at this look at boundary c)."""
        if before is None:
            return sides * float(stats.norm.sf(c))
        out = stats.norm.sf((c * sd - before.s) / d)
        if sides == 2:
            out = out + stats.norm.cdf((-c * sd - before.s) / d)
        return float(before.mass @ out)

    if step <= 1e-15 or cross(0.0) <= step:
        c = float("inf")
    else:  # crossing at this look alone is at least as likely as crossing here first
        c = float(optimize.brentq(lambda c: cross(c) - step, 0.0,
                                  stats.norm.isf(step / sides) + 0.5, xtol=1e-7))
    hi = min(c, TAIL) * sd
    s, w = _simpson(-hi if sides == 2 else -TAIL * sd, hi)
    mass = (stats.norm.pdf(s / sd) / sd * w if before is None
            else _carry(before.s, before.mass, s, w, d))
    return _Look((*(before.c if before else ()), c), s, mass)


def _carry(s: np.ndarray, mass: np.ndarray, s_next: np.ndarray, w_next: np.ndarray, d: float,
           drift: float = 0.0) -> np.ndarray:
    """The mass on the grid ``s_next`` (Simpson weights ``w_next``) of the paths going on from
    ``mass`` on ``s`` to the next look, the score's increment N(drift, d²)."""
    z = (s_next[:, None] - s[None, :] - drift) / d
    return np.exp(-0.5 * z * z) @ mass / (d * np.sqrt(2 * np.pi)) * w_next  # the normal pdf


def boundaries(alpha: float, fractions: Sequence[float], spending: str = "obrien_fleming",
               sides: int = 2) -> tuple[float, ...]:
    """The z boundaries of looks at ``fractions`` (increasing, the last at most 1) for a test at
    level ``alpha``: two-sided (``sides=2``, reject when |Z_k| ≥ c_k, α/2 a side) or one-sided
    (reject when Z_k ≥ c_k). A look that spends nothing more gets an infinite boundary."""
    if sides not in (1, 2):
        raise ValueError(f"sides {sides}; valid: 1, 2")
    if spending not in SPENDINGS:
        raise ValueError(f"spending {spending!r}; valid: {', '.join(SPENDINGS)}")
    fractions = tuple(float(f) for f in fractions)
    if not fractions or fractions[0] <= 0 or any(
            b <= a for a, b in zip(fractions, fractions[1:], strict=False)):
        raise ValueError(f"information fractions {fractions}: increasing and positive")
    return _look(float(alpha), fractions, spending, sides).c


def nominal_p(c: float, sides: int = 2) -> float:
    """The p-value a look's test must reach to cross the boundary c."""
    return float(sides * stats.norm.sf(c))


@dataclass
class Graph:
    """A multiple-testing graph (Bretz et al. 2009): each open hypothesis's share of α and the
    shares it passes on when rejected."""

    weights: dict[str, float]
    moves: dict[str, dict[str, float]]

    @classmethod
    def holm(cls, names: Sequence[str]) -> Graph:
        """Holm's procedure: equal shares; a rejected hypothesis passes its share on equally."""
        m = len(names)
        return cls({n: 1 / m for n in names},
                   {n: {o: 1 / (m - 1) for o in names if o != n} for n in names})

    def reject(self, name: str) -> Graph:
        """The graph after ``name`` is rejected (the algorithm of Bretz et al. 2009)."""
        rest = [n for n in self.weights if n != name]
        weights = {n: self.weights[n] + self.weights[name] * self.moves[name].get(n, 0.0)
                   for n in rest}
        moves: dict[str, dict[str, float]] = {}
        for a in rest:
            moves[a] = {}
            for b in rest:
                if a == b:
                    continue
                a_to, b_to = self.moves[a].get(name, 0.0), self.moves[name].get(b, 0.0)
                denominator = 1 - a_to * self.moves[name].get(a, 0.0)
                moves[a][b] = ((self.moves[a].get(b, 0.0) + a_to * b_to) / denominator
                               if denominator > 1e-12 else 0.0)
        return Graph(weights, moves)


@functools.lru_cache(maxsize=4096)
def _nominal(level: float, fractions: tuple[float, ...], spending: str,
             sides: int) -> tuple[float, ...]:
    return tuple(nominal_p(c, sides) for c in boundaries(level, fractions, spending, sides))


class _NullPaths:
    """``T_PATHS`` null studies of standard normal seeds, drawn a seed column at a time (so the
    first n columns are the same however many are drawn), and their t-tests' p after n seeds."""

    def __init__(self) -> None:
        self.rng = np.random.default_rng(T_SEED)
        self.total = np.zeros(T_PATHS)
        self.squares = np.zeros(T_PATHS)
        self.t: list[np.ndarray] = []  # the t statistic after n = 1, 2, ... seeds (NaN at 1)

    @functools.lru_cache(maxsize=256)  # noqa: B019 (one instance, for the process's life)
    def p(self, n: int, sides: int) -> np.ndarray:
        while len(self.t) < n:
            x = self.rng.standard_normal(T_PATHS)
            self.total += x
            self.squares += x * x
            m = len(self.t) + 1
            mean = self.total / m
            sd = np.sqrt(np.maximum(self.squares - m * mean * mean, 0.0) / max(m - 1, 1))
            with np.errstate(divide="ignore", invalid="ignore"):  # one seed: no t statistic
                self.t.append((mean / (sd / np.sqrt(m))).astype(np.float32))
        t = self.t[n - 1].astype(float)
        return 2 * special.stdtr(n - 1, -np.abs(t)) if sides == 2 else special.stdtr(n - 1, -t)


_PATHS = _NullPaths()


@functools.lru_cache(maxsize=1024)
def _t_look(level: float, seeds: tuple[int, ...], fractions: tuple[float, ...], spending: str,
            sides: int) -> tuple[tuple[float, ...], np.ndarray]:
    """The t-test thresholds (nominal p) of the looks at ``seeds`` matched on the null paths
    (the module docstring), and which paths have crossed none of them."""
    before = _t_look(level, seeds[:-1], fractions[:-1], spending, sides) if len(seeds) > 1 \
        else ((), np.ones(T_PATHS, dtype=bool))
    thresholds, going = before
    p = _PATHS.p(seeds[-1], sides)
    need = round(sides * spent(level / sides, fractions[-1], spending) * T_PATHS
                 - (T_PATHS - int(going.sum())))
    if len(seeds) == 1 or need < 1:
        bound = _nominal(level, fractions, spending, sides)[-1]
    else:
        alive = p[going]
        bound = float(np.partition(alive, need - 1)[need - 1]) if need <= len(alive) else 1.0
    return (*thresholds, bound), going & ~(p <= bound)


def thresholds(level: float, fractions: Sequence[float], spending: str = "obrien_fleming",
               sides: int = 2, seeds: Sequence[int] | None = None) -> tuple[float, ...]:
    """The p-value each look's test must reach to reject at ``level``: matched on the t process
    where the looks' ``seeds`` are given, else the z boundaries' nominal p."""
    fractions = tuple(float(f) for f in fractions)
    if seeds is None or min(seeds) < 2:
        return _nominal(float(level), fractions, spending, sides)
    return _t_look(float(level), tuple(int(n) for n in seeds), fractions, spending, sides)[0]


def crossed(pvalues: Sequence[float], level: float, fractions: Sequence[float], spending: str,
            sides: int, seeds: Sequence[int] | None = None) -> int | None:
    """The first look (0-based) whose p-value reaches its threshold at ``level``
    (``thresholds``)."""
    k = len(pvalues)
    bounds = thresholds(level, fractions[:k], spending, sides, None if seeds is None
                        else seeds[:k])
    for k, (p, bound) in enumerate(zip(pvalues, bounds, strict=True)):
        if p <= bound:  # False for NaN: no test at that look
            return k
    return None


@dataclass
class Recycling:
    """Holm's α recycling over group-sequential tests, look after look: the graph of the open
    hypotheses and the look each rejected one was decided at."""

    graph: Graph
    rejected: dict[str, int]
    alpha: float = 0.05
    spending: str = "obrien_fleming"
    sides: int = 2
    levels: dict[str, float] = field(default_factory=dict)  # each rejected one's level then

    def level(self, name: str) -> float:
        """The level a hypothesis is tested at now, or was rejected at."""
        return self.levels.get(name, self.alpha * self.graph.weights.get(name, 0.0))

    def look(self, pvalues: Mapping[str, Sequence[float]], fractions: Sequence[float],
             seeds: Sequence[int] | None = None) -> None:
        """Decides at the newest look: the open hypotheses are tested at α times their weight,
        every look so far against the thresholds of that level (``thresholds``: on the t
        process where the looks' ``seeds`` are given), until none more is rejected."""
        now = max(len(p) for p in pvalues.values()) - 1
        while True:
            newly = [n for n, w in self.graph.weights.items() if w > 0 and crossed(
                pvalues[n], self.alpha * w, fractions, self.spending, self.sides,
                seeds) is not None]
            if not newly:
                return
            for name in newly:
                self.rejected[name] = now
                self.levels[name] = self.alpha * self.graph.weights[name]
                self.graph = self.graph.reject(name)


def sequential_holm(pvalues: Mapping[str, Sequence[float]], fractions: Sequence[float],
                    alpha: float = 0.05, spending: str = "obrien_fleming", sides: int = 2,
                    graph: Graph | None = None,
                    seeds: Sequence[int] | None = None) -> dict[str, int]:
    """The hypotheses rejected by the looks so far, each with the look (0-based) it was decided
    at, replayed look by look (``Recycling.look``); a decision stays (later looks only add).

    Args:
        pvalues: Each hypothesis's p-value at every look so far (NaN: no test at that look).
        fractions: The information fraction of each look (of the budget).
        alpha: The family's level.
        spending: ``obrien_fleming`` or ``pocock``.
        sides: 2 for two-sided p-values, 1 for one-sided (an equivalence test's larger p).
        graph: The α-recycling graph (default: Holm's over every hypothesis).
        seeds: The seeds at each look (thresholds on the t process; None: the z boundaries').
    """
    state = Recycling(graph or Graph.holm(list(pvalues)), {}, alpha, spending, sides)
    for look in range(max(len(p) for p in pvalues.values())):
        state.look({n: p[: look + 1] for n, p in pvalues.items()}, fractions, seeds)
    return state.rejected


def look_tests(x: np.ndarray, margin: float) -> tuple[float, float, float]:
    """One look's tests of a claim's per-seed differences ``x``: the mean, the two-sided
    one-sample t-test's p and the equivalence test's (TOST against ±margin: the larger of its
    two one-sided t-tests' p), as the fixed design computes them with scipy's ``ttest_1samp``
    and statsmodels' ``ttost_mean``; written out because the bench calls it for every look of
    thousands of studies, and pinned to those two by a test."""
    n, mean = len(x), float(np.mean(x))
    se = float(np.std(x, ddof=1)) / np.sqrt(n)
    df = n - 1  # special.stdtr(df, t) is the t distribution's cdf, without a frozen distribution
    p = float(2 * special.stdtr(df, -abs(mean) / se))
    tost = max(float(special.stdtr(df, -(mean + margin) / se)),
               float(special.stdtr(df, (mean - margin) / se)))
    return mean, p, tost


@dataclass
class Sequential:
    """One family's claims judged look by look: each claim's effect, p and TOST p at every look,
    the two recyclings (the difference tests two-sided, the equivalence tests one-sided, each
    with its own spending of α), and the verdicts so far.

    A claim is ``reproduced`` / ``contradicted`` (by the sign of its effect at that look) at the
    look its difference test is rejected, ``no effect`` at the look its equivalence test is,
    whichever comes first (the difference test on a tie), and then frozen; ``inconclusive``
    until then. ``t_process``: the looks' thresholds matched on the t process at their seed
    counts (``thresholds``), else the z boundaries' nominal p (looks recorded before it)."""

    signs: dict[str, int]
    alpha: float = 0.05
    spending: str = "obrien_fleming"
    t_process: bool = True
    seeds: list[int] = field(init=False)
    effects: dict[str, list[float]] = field(init=False)
    p: dict[str, list[float]] = field(init=False)
    tost: dict[str, list[float]] = field(init=False)
    differ: Recycling = field(init=False)
    equal: Recycling = field(init=False)

    def __post_init__(self) -> None:
        names = list(self.signs)
        self.seeds = []
        self.effects = {n: [] for n in names}
        self.p = {n: [] for n in names}
        self.tost = {n: [] for n in names}
        self.differ = Recycling(Graph.holm(names), {}, self.alpha, self.spending, 2)
        self.equal = Recycling(Graph.holm(names), {}, self.alpha, self.spending, 1)

    def look(self, diffs: Mapping[str, np.ndarray], margins: Mapping[str, float],
             fractions: Sequence[float]) -> dict[str, str]:
        """Adds a look (each claim's per-seed differences so far) and returns the verdicts."""
        tests = {n: look_tests(np.asarray(diffs[n], dtype=float), margins[n]) for n in self.signs}
        return self.add({n: t[0] for n, t in tests.items()}, {n: t[1] for n, t in tests.items()},
                        {n: t[2] for n, t in tests.items()}, fractions,
                        max(len(diffs[n]) for n in self.signs))

    def add(self, effects: Mapping[str, float], p: Mapping[str, float],
            tost: Mapping[str, float], fractions: Sequence[float],
            seeds: int | None = None) -> dict[str, str]:
        """Adds a look from its tests (each claim's mean, p and TOST p; NaN: no test) at
        ``seeds`` seeds (with ``t_process``) and returns the verdicts: a look recorded earlier
        is replayed this way."""
        for name in self.signs:
            self.effects[name].append(float(effects[name]))
            self.p[name].append(float(p[name]))
            self.tost[name].append(float(tost[name]))
        self.seeds.append(int(seeds) if seeds is not None else 0)
        counts = self.seeds if self.t_process and min(self.seeds) >= 2 else None
        self.differ.look(self.p, fractions, counts)
        self.equal.look(self.tost, fractions, counts)
        return self.verdicts()

    def verdicts(self) -> dict[str, str]:
        """Each claim's verdict by the fixed design's rule (``claims.verdict``), read at the look
        it was first decided at."""
        out = {}
        for name, sign in self.signs.items():
            differ, equal = self.differ.rejected.get(name), self.equal.rejected.get(name)
            first = differ is not None and (equal is None or differ <= equal)
            look = differ if first else equal
            out[name] = INCONCLUSIVE if look is None else verdict(
                self.effects[name][look], sign, 0.0 if first else 1.0, 0.0, self.alpha)
        return out


def repeated_interval(x: np.ndarray, c: float, sides: int = 2) -> tuple[float, float]:
    """The repeated confidence interval of a look (Jennison & Turnbull 2000, ch. 9): the mean of
    the seed differences ``x`` ± the t quantile of the look boundary ``c``'s nominal p times the
    standard error. Over every look of a design its level holds simultaneously, so it stays
    valid whenever the study stops."""
    n = len(x)
    half = float(stats.t.isf(nominal_p(c, sides) / sides, n - 1)) * float(np.std(x, ddof=1)) \
        / np.sqrt(n)
    return float(np.mean(x)) - half, float(np.mean(x)) + half


def stagewise_p(theta: float, z: float, look: int, c: Sequence[float],
                fractions: Sequence[float]) -> float:
    """P_θ(an outcome at least as high as stopping at ``look`` (0-based) with Z = ``z``) under
    the stage-wise ordering (Jennison & Turnbull 2000, §8.4): an upward crossing at an earlier
    look ranks higher, then Z at this look; θ is the drift of the z process, E Z_k = θ √t_k, and
    the looks before continue while |Z_j| < c_j."""
    t = np.asarray(fractions[: look + 1], dtype=float)
    sd = np.sqrt(t)
    if look == 0:
        return float(stats.norm.sf(z - theta * sd[0]))
    total = 0.0
    s, w = _simpson(-min(c[0], TAIL) * sd[0], min(c[0], TAIL) * sd[0])
    mass = stats.norm.pdf((s - theta * t[0]) / sd[0]) / sd[0] * w
    total += float(stats.norm.sf(c[0] - theta * sd[0]))
    for j in range(1, look + 1):
        d = np.sqrt(t[j] - t[j - 1])
        drift = theta * (t[j] - t[j - 1])
        edge = (z if j == look else c[j]) * sd[j]
        total += float(mass @ stats.norm.sf((edge - s - drift) / d))
        if j == look:
            break
        hi = min(c[j], TAIL) * sd[j]
        s_next, w_next = _simpson(-hi, hi)
        mass, s = _carry(s, mass, s_next, w_next, d, drift), s_next
    return total


def median_unbiased(z: float, look: int, c: Sequence[float],
                    fractions: Sequence[float]) -> float:
    """The median-unbiased drift θ̂ after stopping at ``look`` with Z = ``z`` (two-sided
    boundaries ``c``): the θ whose stage-wise p is one half. The naive estimate Z/√t overstates
    an effect that stopped early at a boundary; in effect units the estimate is
    θ̂ √t_look · (the look's mean / its Z)."""
    width = 10.0 + abs(z) / np.sqrt(fractions[look])
    return float(optimize.brentq(lambda th: stagewise_p(th, z, look, c, fractions) - 0.5,
                                 -width, width, xtol=1e-6))
