"""The paper's claims, judged on one study as a reviewer would accept them.

RollingQ's paper (Ni et al., ICML 2025) claims a mechanism and its consequences:

    1. without RollingQ |AIR| grows during training   Vanilla MT trials' |AIR| growth from
                                                      initialisation to the last epoch > 0
    2. RollingQ lowers |AIR| (a manipulation check:   final |AIR|: on - off < 0
       the trigger rotates until |AIR| <= beta)
    3. RollingQ rebalances attention                  imbalance magnitude: on - off < 0
    4. RollingQ makes attention follow input quality  adaptivity (Table 2: -r per modality,
                                                      averaged): on - off > 0
    5. RollingQ degrades less under noise on the      accuracy drop averaged over the noise
       favoured modality (Table 3)                    curve: on - off < 0
    6. RollingQ improves accuracy (Table 1)           headline: on - off > 0

The arms: a trial is *RollingQ on* when it enables RollingQ with a rotation allowed
(``rollingq.enabled`` and ``rollingq.max_rotations > 0``), *off* (vanilla) otherwise. A
comparison pairs an on trial with the off trials of the same configuration but for RollingQ
(every config value except ``rollingq.*`` and ``model.readout``, which RollingQ needs) and the
same seed; per seed the mean difference over the configurations that have both arms: the
per-seed differences ``x`` (claim 1: the seed means of the Vanilla MT trials' growth).

The inference runs over one declared family (the study's ``claims.family``, ``FAMILIES``; by
default ``dataset``: the claims judged on one data set, so how folders are grouped into a report
changes no verdict). Per claim and data set:
    - differences within ``TOLERANCE`` of the claim's scale are 0; when every seed gives the
      same difference there is nothing to test (``deterministic: no test``, outside the family);
    - the raw two-sided one-sample t-test of ``x`` (scipy ``ttest_1samp``) and its 95 % interval,
      and beside it the exact sign-flip p (scipy ``permutation_test``: every sign flip of ``x``
      up to ``SIGN_FLIP_EXACT`` seeds), flagged where its smallest value 2 / 2^n cannot reach
      the claim's Holm level (the verdict then rests on the t-test's normality);
    - the Holm-adjusted p over the family (statsmodels ``multipletests``), the interval at
      the claim's Holm level (0.05 / (m - k + 1) for the k-th smallest p while Holm rejects,
      else the level where it stopped: it excludes 0 exactly when the verdict says so), and the
      simultaneous interval at Bonferroni's level 1 - 0.05/m (it covers all m effects at once,
      and can touch 0 where Holm, the stronger procedure, rejects);
    - the equivalence test (TOST, statsmodels ``DescrStatsW.ttost_mean``) against the claim's
      smallest effect of interest: ``MARGINS``, declared independently of the paper (a claimed
      effect is not a smallest effect of interest), or the study's ``claims.margins``;
      Holm-adjusted over the family's equivalence tests;
    - d_z = mean / sd of ``x``, and the seeds needed (statsmodels ``TTestPower``) as a range:
      the fewest at which the Bonferroni-level test finds an effect of the margin with 80 %
      power and the TOST finds "no effect" with 80 % power when there is none (its power
      bounded below by 2·P - 1 from the one-sided tests' P), at the observed sd and at its
      ``SD_UCL`` upper confidence limit (chi-square); the upper end is the recommendation, and
      never fewer than the seeds run plus one.
Verdicts: ``reproduced`` (Holm p < 0.05 on the claimed side), ``contradicted`` (Holm p < 0.05
on the other side), ``no effect`` (the TOST's Holm p < 0.05: the effect lies within the
margin), ``inconclusive`` (none of these: too few seeds to tell, with the seeds needed). On
the synthetic data set, built to show the mechanism, a verdict is a *mechanism check*. The
paper's own gain is a reference, not a margin: ``analysis.architectures`` tests each RollingQ
pair against it ("smaller than the paper's").

The seeds-needed computation is ``analysis/power.py``, the sign-flip test
``analysis/stats.py``, claim (6) on the test set's per-sample predictions
``analysis/per_sample.py``, the lost trials' worst case ``analysis/worst_case.py``, and the
claims in words ``analysis/report/claims_text.py``: this module returns numbers and verdicts.
Every verdict and what it assumes, for readers of a report: docs/report.md.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats
from statsmodels.stats.oneway import anova_oneway
from statsmodels.stats.weightstats import DescrStatsW

from analysis import outcomes
from analysis.declarations import DEFAULT_FAMILY, MARGINS, declarations
from analysis.format import p_rel, signed
from analysis.paper import PAPER_TABLE3, PAPER_TABLE3_LEVELS, paper_name
from analysis.power import seeds_range
from analysis.results import SEED, Results, config_values, level_str
from analysis.stats import ALPHA, holm, sign_flip

REPRODUCED, CONTRADICTED, NO_EFFECT, INCONCLUSIVE, CANNOT, DETERMINISTIC = (
    "reproduced", "contradicted", "no effect", "inconclusive", "cannot judge",
    "deterministic: no test")
VERDICTS = (REPRODUCED, CONTRADICTED, NO_EFFECT, INCONCLUSIVE, CANNOT, DETERMINISTIC)
TOLERANCE = 1e-9  # a difference within this share of the claim's scale is 0 (floating point)
SYNTHETIC = "synthetic"  # built to show the mechanism: its verdicts are mechanism checks
# a trial the arm lost (ASHA's stops are not)
FAILED = ("diverged", "timed_out", "errored", "incomplete")


@dataclass(frozen=True)
class Claim:
    number: int
    text: str
    column: str  # the outcome (analysis.outcomes)
    sign: int  # the claimed direction of the effect: +1 or -1
    paired: bool  # RollingQ on vs off (else: the Vanilla MT trials alone, against 0)
    quantity: str  # what the effect measures
    kind: str = "claim"  # or "manipulation check"


CLAIMS = (
    Claim(1, "Without RollingQ |AIR| grows during training", "out_air_growth", +1, False,
          "Vanilla MT trials' validation |AIR| at the last epoch − at initialisation"),
    Claim(2, "RollingQ lowers |AIR|", "out_abs_air", -1, True,
          "final validation |AIR|, on − off", "manipulation check"),
    Claim(3, "RollingQ rebalances the modalities' attention", "out_imbalance", -1, True,
          "attention imbalance |s_a − s_b| / (s_a + s_b), validation, on − off"),
    Claim(4, "RollingQ makes attention follow input quality (Table 2)", "out_adaptivity", +1,
          True, "attention-noise adaptivity −r (each modality clean vs noised, averaged over "
                "the modalities), on − off"),
    Claim(5, "RollingQ degrades less under noise on the favoured modality (Table 3)",
          "out_noise_mean_drop", -1, True,
          "accuracy drop (points) averaged over the favoured modality's noise curve, on − off"),
    Claim(6, "RollingQ improves accuracy (Table 1)", "acc", +1, True,
          "headline accuracy (%), on − off"),
)

# Table 3's curves summarised as claim 5 summarises ours: the mean drop over λ in [0, 1].
PAPER_MEAN_DROP = {name: outcomes.mean_drop(list(PAPER_TABLE3_LEVELS), list(accs))
                   for name, accs in PAPER_TABLE3.items()}
# The paper's own figures, per claim and data set (Tables 1-3; claims 1-3 are figures only).
PAPER_FIGURES: dict[int, dict[str, str]] = {
    4: {"cremad": "r 0.52 → 0.76", "kinetics_sounds": "r 0.44 → 0.78"},
    5: {"kinetics_sounds": "audio noise λ 0–1: mean drop {:.1f} → {:.1f} points (at λ=1: 32.3 → "
                           "28.7)".format(PAPER_MEAN_DROP["Vanilla MT"],
                                          PAPER_MEAN_DROP["Vanilla MT + RollingQ"])},
    6: {"cremad": "48.8 → 51.9 %", "kinetics_sounds": "67.0 → 69.3 %", "mosei": "62.7 → 63.2 %"},
}
IGNORED_PREFIXES = ("rollingq.", "model.readout", "train.seed")
# Outcomes of the favoured modality: NaN where a data set declares none.
FAVOURED_OUTCOMES = ("out_noise_drop", "out_noise_mean_drop", "out_noise_auc",
                     "out_favoured_share", "out_attn_shift")

# Why an outcome can be missing from every trial, where it is not plain.
UNRECORDED = {
    "out_adaptivity": " (Table 2's per-modality r: attention fusions record it; a folder written "
                      "before it was recorded has only the pooled r, `out_adaptivity_pooled`, "
                      "which the Table 2 comparison shows)",
    "out_noise_mean_drop": " (Table 3's noise curve with a clean level 0 and a larger one: "
                           "`train.noise_levels`)",
}


@dataclass
class Judgement:
    """One claim on one data set.

    Attributes:
        diffs: The per-seed differences (on − off; claim 1: the vanilla growth), by seed.
        effect, low, high, p: Their mean, raw 95 % t-interval and raw two-sided p.
        sim_low, sim_high: The simultaneous interval (Bonferroni level 1 − 0.05 / family).
        holm_low, holm_high: The interval at the judgement's Holm level ``holm_level``
            (``_holm_intervals``): it excludes 0 exactly when Holm rejects, as the verdict.
        sd: The sd of the per-seed differences.
        p_holm: The Holm-adjusted p over the family; ``family`` its size, ``family_name``
            which claims it holds.
        sign_flip_p: The exact sign-flip (permutation) p; ``sign_flip_short``: its smallest
            possible value 2 / 2^n is above the claim's Holm level, so it cannot confirm a
            decided verdict.
        margin, margin_source: The equivalence margin (``MARGINS`` or the study's declared
            one) and where it comes from; tost_p, tost_holm its TOST p (raw, Holm over the
            family's equivalence tests).
        d_z: mean / sd of the differences.
        seeds_needed, seeds_low, sd_ucl, power, power_null: The seeds recommended (module
            docstring: at the sd's ``SD_UCL`` upper confidence limit ``sd_ucl``; 0 when more
            than ``MOST_SEEDS``), the same at the observed sd (the range's lower end), and the
            power there to find an effect of the margin and to show no effect when there is
            none, at ``sd_ucl``.
        used, expected: Trials used per arm (``on``, ``off``) and the arm's trials in the study.
        label: ``mechanism check`` on synthetic data, ``manipulation check`` for claim 2.
    """

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
    diffs: pd.Series = field(default_factory=lambda: pd.Series(dtype=float))
    sim_low: float = np.nan
    sim_high: float = np.nan
    holm_low: float = np.nan
    holm_high: float = np.nan
    holm_level: float = np.nan
    sd: float = np.nan
    p_holm: float = np.nan
    family: int = 0
    family_name: str = ""
    sign_flip_p: float = np.nan
    sign_flip_short: bool = False
    margin: float = np.nan
    margin_source: str = ""
    tost_p: float = np.nan
    tost_holm: float = np.nan
    d_z: float = np.nan
    seeds_needed: int = 0
    seeds_low: int = 0
    sd_ucl: float = np.nan
    power: float = np.nan
    power_null: float = np.nan
    used: dict[str, int] = field(default_factory=dict)
    expected: dict[str, int] = field(default_factory=dict)
    label: str = ""
    trend: str = ""  # claim 1: the saturation-robust trend test beside the growth

    @property
    def judged(self) -> bool:
        """Tested in the family: two or more seeds that do not all give the same difference."""
        return self.verdict not in (CANNOT, DETERMINISTIC) and len(self.diffs) >= 2


def context(values: dict[str, Any]) -> str:
    """A trial's configuration but for RollingQ: what an on and an off trial must share."""
    keep = {k: level_str(v) for k, v in values.items() if not k.startswith(IGNORED_PREFIXES)}
    return repr(sorted(keep.items()))


def frame(res: Results, trials: pd.DataFrame | None = None) -> pd.DataFrame:
    """The finished trials (or ``trials``) with ``context`` (configuration but for RollingQ),
    ``on`` and ``vanilla_mt`` (an off trial of the paper's Vanilla MT: attention fusion, one
    layer, no balance method)."""
    df = res.finished if trials is None else trials
    if not len(df):
        return df.assign(context=pd.Series(dtype=str), on=pd.Series(dtype=bool),
                         vanilla_mt=pd.Series(dtype=bool))
    values = config_values(df, res.designs)
    on = outcomes.rollingq_on(df[outcomes.ON])
    return df.assign(context=[context(v) for v in values], on=on,
                     vanilla_mt=[paper_name(v) == "Vanilla MT" for v in values])[
        on.notna()].assign(on=lambda d: d["on"].astype(bool))


def arms(res: Results) -> pd.DataFrame:
    """Every experiment of the study (structural copies aside) with its data set, arm and
    status: what each arm was expected to give and what it lost."""
    t = res.trials[res.trials["duplicate_of"] == ""]
    on = outcomes.rollingq_on(t[outcomes.ON])
    return pd.DataFrame({"dataset": t["dataset"], "on": on.fillna(False).astype(bool),
                         "status": t["status"], "vanilla_mt": [
                             paper_name(v) == "Vanilla MT" for v in config_values(t, res.designs)]})


def judge(res: Results, alpha: float = ALPHA, df: pd.DataFrame | None = None,
          plan: bool = True) -> list[Judgement]:
    """Every claim on every data set of the study, decided over the whole family; ``df``: the
    trials judged (default: the finished ones, ``frame``)."""
    df = frame(res) if df is None else df
    expected = arms(res)
    family, margins = declarations(res)
    out = []
    for ds in res.datasets:
        d = df[df["dataset"] == ds]
        e = expected[expected["dataset"] == ds]
        for claim in CLAIMS:
            j = _evidence(claim, d, ds)
            j.expected = {"on": int(e["on"].sum()), "off": int((~e["on"]).sum())}
            if not claim.paired:  # the Vanilla MT trials
                j.expected = {"off": int((~e["on"] & e["vanilla_mt"]).sum())}
            j.margin, j.margin_source = margins.get((claim.number, ds),
                                                    (np.nan, ""))
            out.append(j)
    return decide(out, alpha, plan, family)


def _evidence(claim: Claim, d: pd.DataFrame, ds: str) -> Judgement:
    """The claim's per-seed differences on one data set (not yet decided)."""
    def cannot(reason: str) -> Judgement:
        return Judgement(claim, ds, CANNOT, reason=reason)

    if claim.column not in d:
        return cannot(f"no `{claim.column}` was recorded")
    undeclared = "favoured" in d and len(d) and d["favoured"].isna().all()
    if claim.column in FAVOURED_OUTCOMES and undeclared:
        return cannot(f"no favoured modality is declared for {ds} (`{claim.column}` is the "
                      f"favoured modality's); declare it with `--set data.favoured=<modality>`")
    d = d.assign(y=pd.to_numeric(d[claim.column], errors="coerce")).dropna(subset=["y"])
    if not len(d):
        return cannot(f"no trial recorded `{claim.column}`" + UNRECORDED.get(claim.column, ""))
    off, on = d[~d["on"]], d[d["on"]]
    if not len(off):
        return cannot("the study has no vanilla arm (RollingQ off or 0 rotations) with this "
                      "outcome")
    if not claim.paired:
        pool = off[off["vanilla_mt"]]
        if not len(pool):
            return cannot("the study has no Vanilla MT trial (attention fusion, one layer, "
                          "RollingQ off, no balance method) with this outcome")
        diffs = pool.groupby(SEED)["y"].mean()
        j = Judgement(claim, ds, INCONCLUSIVE, diffs=diffs, used={"off": len(pool)})
        j.test = f"one-sample t-test over {len(diffs)} seed(s), Vanilla MT trials"
        if "out_air_tau" in pool:
            tau = pd.to_numeric(pool["out_air_tau"], errors="coerce")
            per_seed = tau.groupby(pool[SEED]).mean().dropna()
            if len(per_seed) >= 2 and per_seed.std(ddof=1) > 0:
                p = float(stats.ttest_1samp(per_seed, 0.0).pvalue)
                j.trend = (f"Kendall τ (epoch, |AIR|) {per_seed.mean():+.2f} over seeds, "
                           f"p {p_rel(p)}")
        return j
    if not len(on):
        return cannot("the study has no RollingQ arm with this outcome")
    off_means = off.groupby(["context", SEED])["y"].mean()
    on_means = on.groupby(["context", SEED])["y"].mean()
    both = on_means.index.intersection(off_means.index)
    if not len(both):
        return cannot("no RollingQ trial has a vanilla trial of the same configuration and seed")
    diffs = (on_means.loc[both] - off_means.loc[both]).groupby(level=SEED).mean()
    pairs = pd.MultiIndex.from_frame(d[["context", SEED]])
    used = d[pairs.isin(both)]
    contexts = len(set(both.get_level_values("context")))
    j = Judgement(claim, ds, INCONCLUSIVE, diffs=diffs,
                  used={"on": int(used["on"].sum()), "off": int((~used["on"]).sum())})
    j.test = (f"paired t-test over {len(diffs)} seed(s)"
              + (f", mean over {contexts} configurations" if contexts > 1 else ""))
    return j


def _clean(j: Judgement) -> np.ndarray:
    """The judgement's differences with floating-point noise (within ``TOLERANCE`` of the
    claim's scale: its margin or its largest difference) set to 0."""
    x = j.diffs.to_numpy(dtype=float)
    if len(x):
        scale = max(j.margin if j.margin > 0 else 0.0, float(np.max(np.abs(x))))
        x = np.where(np.abs(x) <= TOLERANCE * scale, 0.0, x)
        j.diffs = pd.Series(x, index=j.diffs.index)
    return x


def decide(judgements: list[Judgement], alpha: float = ALPHA, plan: bool = True,
           family: str = DEFAULT_FAMILY) -> list[Judgement]:
    """Tests every judgement with two or more seeds and decides its verdict within its family
    (``FAMILIES``: per data set, or the report's), as the module docstring says; the others
    stay ``cannot judge`` or ``inconclusive``, or are ``deterministic: no test``. A judgement
    without a margin takes ``MARGINS``'. ``plan``: give each inconclusive one the seeds it
    needs, and each its sign-flip p (what a report prints beside a verdict; a simulation of
    verdicts may skip both)."""
    for j in judgements:
        j.label = ("manipulation check" if j.claim.kind == "manipulation check" else "")
        if j.dataset == SYNTHETIC:
            j.label = "mechanism check" + (" (manipulation check)" if j.label else "")
        if not j.margin > 0:
            j.margin, j.margin_source = MARGINS[j.claim.number], "default"
        x = _clean(j)
        j.n = len(x)
        if j.n:
            j.effect = float(x.mean())
        if j.verdict != CANNOT and j.n < 2:
            j.reason = f"{j.n} seed(s); at least 2 are needed"
        elif j.verdict != CANNOT and np.ptp(x) <= TOLERANCE * max(j.margin, abs(j.effect)):
            j.verdict, j.sd = DETERMINISTIC, 0.0
            j.low = j.high = j.effect
            j.reason = (f"every seed gives the difference {signed(j.effect)}: nothing varies, "
                        f"so there is nothing to test")
    families: dict[str, list[Judgement]] = {}
    for j in judgements:
        if j.judged:
            families.setdefault(j.dataset if family == "dataset" else "", []).append(j)
    for key, members in families.items():
        name = (f"the {len(members)} claims on {key}" if family == "dataset" else
                f"the {len(members)} claims × data sets of this report")
        _decide_family(members, alpha, plan, name)
    return judgements


def verdict(effect: float, sign: int, p_holm: float, tost_holm: float,
            alpha: float = ALPHA) -> str:
    """The verdict rule (module docstring): a Holm-significant effect is ``reproduced`` on the
    claimed side (``sign``) and ``contradicted`` on the other; else a Holm-significant TOST is
    ``no effect``; else ``inconclusive``."""
    if p_holm < alpha and effect != 0:
        return REPRODUCED if np.sign(effect) == sign else CONTRADICTED
    return NO_EFFECT if tost_holm < alpha else INCONCLUSIVE


def _decide_family(family: list[Judgement], alpha: float, plan: bool, name: str) -> None:
    """The tests and verdicts of one Holm family."""
    m = len(family)
    for j in family:
        x = j.diffs.to_numpy(dtype=float)
        sd = j.sd = float(x.std(ddof=1))
        j.family, j.family_name = m, name
        t = stats.ttest_1samp(x, 0.0)
        j.p = float(t.pvalue)
        j.low, j.high = map(float, t.confidence_interval(1 - alpha))
        j.sim_low, j.sim_high = map(float, t.confidence_interval(1 - alpha / m))
        j.tost_p = float(DescrStatsW(x).ttost_mean(-j.margin, j.margin)[0])
        j.d_z = j.effect / sd
        if plan:
            j.sign_flip_p = sign_flip(x)
    holm_p = holm([j.p for j in family], alpha)
    tost = holm([j.tost_p for j in family], alpha)
    _holm_intervals(family, holm_p, alpha)
    for j, ph, pt in zip(family, holm_p, tost, strict=True):
        j.p_holm, j.tost_holm = float(ph), float(pt)
        j.sign_flip_short = plan and 2.0 / 2 ** j.n >= j.holm_level
        j.verdict = verdict(j.effect, j.claim.sign, ph, pt, alpha)
        if j.verdict == INCONCLUSIVE and plan:
            (j.seeds_low, j.seeds_needed, j.power, j.power_null,
             j.sd_ucl) = seeds_range(j.sd, j.n, j.margin, m, alpha)


def holm_levels(p: np.ndarray, holm_p: np.ndarray, alpha: float = ALPHA) -> np.ndarray:
    """The level at which Holm tests each p: the k-th smallest at alpha / (m − k + 1) while
    Holm rejects, the rest at the level where it stopped, alpha / (m − r) with r rejections."""
    m = len(p)
    order = np.argsort(p, kind="stable")
    rejected = int((np.asarray(holm_p) < alpha).sum())
    levels = np.empty(m)
    for k, i in enumerate(order):
        levels[i] = alpha / (m - k) if k < rejected else alpha / (m - rejected)
    return levels


def _holm_intervals(family: list[Judgement], holm_p: np.ndarray, alpha: float) -> None:
    """Each judgement's interval at its Holm level (``holm_levels``), so the interval excludes
    0 exactly when Holm rejects."""
    levels = holm_levels(np.array([j.p for j in family]), holm_p, alpha)
    for j, level in zip(family, levels, strict=True):
        j.holm_level = float(level)
        t = stats.ttest_1samp(j.diffs.to_numpy(dtype=float), 0.0)
        j.holm_low, j.holm_high = map(float, t.confidence_interval(1 - level))


def failures(res: Results) -> pd.DataFrame:
    """Per data set: the trials each arm lost (diverged, timed out, errored, incomplete) and a
    Fisher exact test of losing a trial by arm (scipy ``fisher_exact``)."""
    a = arms(res)
    rows = []
    for ds, d in a.groupby("dataset", sort=False):
        lost = d["status"].isin(FAILED)
        counts = {arm: (int((lost & (d["on"] == flag)).sum()), int((d["on"] == flag).sum()))
                  for arm, flag in (("on", True), ("off", False))}
        row = {"dataset": ds, "on_lost": counts["on"][0], "on_trials": counts["on"][1],
               "off_lost": counts["off"][0], "off_trials": counts["off"][1], "p": np.nan}
        if counts["on"][1] and counts["off"][1]:
            tab = [[counts[k][0], counts[k][1] - counts[k][0]] for k in ("on", "off")]
            row["p"] = float(stats.fisher_exact(tab).pvalue)
        rows.append(row)
    return pd.DataFrame(rows, columns=["dataset", "on_lost", "on_trials", "off_lost",
                                       "off_trials", "p"])




def pooled(judgements: list[Judgement], alpha: float = ALPHA) -> pd.DataFrame:
    """Each claim tested on two or more data sets: the average over these k data sets and
    whether the effect differs between them. A description, with no p of its own and outside
    the Holm family: the verdicts are the per-data-set ones.

    The average is the common-effect (unweighted) mean of the data sets' effects, with variance
    Σ(sd_i² / n_i) / k² and Welch–Satterthwaite degrees of freedom (Σ v_i)² / Σ(v_i² / (n_i − 1)),
    v_i = sd_i² / n_i: a t interval that treats neither the seed sds as known nor these data
    sets as a sample of data sets (with 2–3 of them a random-effects interval is either too
    narrow with z or uninformative with t). Whether the effect differs: Welch's heteroscedastic
    one-way ANOVA of the per-seed differences across data sets (statsmodels ``anova_oneway``,
    ``use_var="unequal"``).

    Columns: ``claim, datasets, k, verdicts, effect, low, high, df, differ_f, differ_p``.
    """
    columns = ["claim", "datasets", "k", "verdicts", "effect", "low", "high", "df",
               "differ_f", "differ_p"]
    rows = []
    for claim in CLAIMS:
        here = [j for j in judgements if j.claim == claim and j.judged]
        if len(here) < 2:
            continue
        k = len(here)
        v = np.array([j.sd ** 2 / j.n for j in here])
        dof = float(v.sum() ** 2 / np.sum(v ** 2 / (np.array([j.n for j in here]) - 1)))
        effect = float(np.mean([j.effect for j in here]))
        half = float(stats.t.ppf(1 - alpha / 2, dof) * np.sqrt(v.sum()) / k)
        differ = anova_oneway([j.diffs.to_numpy(dtype=float) for j in here], use_var="unequal",
                              welch_correction=True)
        rows.append({"claim": claim.number, "datasets": ", ".join(j.dataset for j in here),
                     "k": k, "verdicts": ", ".join(j.verdict for j in here), "effect": effect,
                     "low": effect - half, "high": effect + half, "df": dof,
                     "differ_f": float(differ.statistic), "differ_p": float(differ.pvalue)})
    return pd.DataFrame(rows, columns=columns)


