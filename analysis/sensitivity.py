"""Sensitivity statistics: which scientific parameters move an outcome, and by how much.

Grid studies are randomised complete block designs: every configuration trains with each seed
(its initialisation and data order), so the seed is a block. One trial is counted per
experiment (``analysis.results``: structural copies left out). They get
    1. OLS with every scientific parameter as a categorical factor (``C()``) and their
       interactions, the seed block ``C(seed)`` (with several data sets: seeds within each data
       set, the data set a fixed factor and each parameter's interaction with it, the F tests
       HC3-robust), nuisance parameters as additive factors;
    2. a Type II ANOVA table with F, p, η² = SS / SS_total, partial η² = SS / (SS +
       SS_residual) and ω²;
    3. estimated marginal means (EMMs: the model's prediction averaged over a balanced grid of
       the other factors and the blocks) and each level's difference to the reference level
       (the vanilla level where the factor has one, else its first) with its 95 % interval,
       by ``t_test``;
    4. Tukey HSD on the EMMs for factors with more than two levels (Tukey–Kramer with the
       model's covariance, as R's emmeans), so a missing trial does not bias a comparison;
    5. a dose-response test for numeric factors of three or more levels (a linear term, and
       the lack of fit against the categorical model);
       with several data sets, 3–5 come from each data set's own model (the same terms and
       its seed block, on its trials alone): data sets differ in variance (a pooled residual
       variance gives the noisier one false positives and the quieter one wide intervals) and
       in scale (an EMM of raw accuracy averaged over data sets means nothing), and the simple
       effects are those per-data-set differences with Holm over each parameter's;
    6. in a nested design (a parameter that does not exist in the vanilla arm, level ``NA``)
       the factorial model on the RollingQ trials, and the vanilla arm against each RollingQ
       level as Holm-adjusted contrasts of a cell-means model with the block.
The interaction order is lowered (full -> pairs -> main effects) until the model keeps residual
degrees of freedom and full rank; the report says which model was fitted. An outcome that is a
time to an event which may never happen (``out_air_convergence``) is censored survival data:
``survival`` gives Kaplan–Meier per level and the log-rank test instead.

``survival`` is ``analysis/survival.py``; the exploratory family's FDR over every outcome,
``analysis/family.py``. Optuna studies (adaptive, unbalanced) get no OLS
p-values, the sampler having chosen each cell from earlier outcomes: they get parameter
importance (``analysis/importance.py``).
"""

from __future__ import annotations

import itertools
import logging
import math
import warnings
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import patsy
import statsmodels.formula.api as smf
from scipy.stats import studentized_range
from statsmodels.stats.anova import anova_lm

from analysis.results import SEED, Results, level_str
from analysis.stats import ALPHA, holm

log = logging.getLogger(__name__)


@dataclass
class Sensitivity:
    """The statistics of one study.

    Attributes:
        formula: The fitted ANOVA model, with dotted names (empty when none was fitted).
        anova: Rows ``term, df, sum_sq, F, p, eta_sq, partial_eta_sq, omega_sq`` (Residual
            last).
        effects: Rows ``factor, level, n, mean (EMM), delta, low, high, p, reference,
            vanilla``.
        tukey: Rows ``factor, group1, group2, meandiff, low, high, p_adj, reject``.
        trends: Rows ``factor, levels, slope, low, high, p, lack_of_fit_p``.
        simple: With several data sets, each level's effect within each data set (the simple
            effects, from the data set's own model): rows ``dataset, factor, level, reference,
            delta, low, high, p, p_holm`` (Holm over a factor's simple effects). ``effects``,
            ``tukey`` and ``trends`` then have a ``dataset`` column too.
        vanilla: A nested design's contrasts against the vanilla arm: rows ``dataset,
            contrast, cells, n, n_vanilla, delta, low, high, p, p_holm, df``.
        design: A nested design in words (empty for a crossed one).
        blocked: Whether the model has the seed block.
        n: Trials in the model.
        notes: Sentences: skipped factors, the reduced model, what could not be tested.
    """

    formula: str = ""
    anova: pd.DataFrame = field(default_factory=pd.DataFrame)
    effects: pd.DataFrame = field(default_factory=pd.DataFrame)
    tukey: pd.DataFrame = field(default_factory=pd.DataFrame)
    trends: pd.DataFrame = field(default_factory=pd.DataFrame)
    simple: pd.DataFrame = field(default_factory=pd.DataFrame)
    vanilla: pd.DataFrame = field(default_factory=pd.DataFrame)
    design: str = ""
    blocked: bool = False
    n: int = 0
    notes: list[str] = field(default_factory=list)


def active_factors(res: Results, df: pd.DataFrame) -> tuple[list[str], list[str]]:
    """The scientific factors with at least two observed levels, and sentences for the rest."""
    keep, notes = [], []
    for f in res.factors:
        seen = [lv for lv in f.levels if (df[f.key] == lv).any()] if len(df) else []
        if len(seen) >= 2:
            keep.append(f.key)
        else:
            only = seen[0] if seen else "none"
            notes.append(f"`{f.key}` has a single level ({only}) among the finished trials, so it "
                         f"is not a factor here and is skipped.")
    return keep, notes


def analyse(res: Results, metric: str = "acc") -> Sensitivity:
    """The design's model of one outcome on the finished trials (one per experiment).

    A crossed grid gets one OLS of every factor, its interactions and the seed block. A nested
    grid (a factor that does not exist in the vanilla arm, level ``NA``: the rotation kind at 0
    rotations, β when RollingQ is off) gets the factorial model on the RollingQ trials and each
    RollingQ level against the vanilla arm as a contrast (``vanilla``).

    Args:
        metric: The trials' column to explain: ``acc`` (the headline accuracy) or an outcome
            of ``analysis.outcomes`` (trials without it are left out).
    """
    out = Sensitivity()
    df = res.frame()
    if metric not in df:
        out.notes.append(f"No trial recorded `{metric}`: nothing to test.")
        return out
    df = df[pd.to_numeric(df[metric], errors="coerce").notna()]
    if not len(df):
        out.notes.append("No finished trials: nothing to test." if metric == "acc" else
                         f"No finished trial has a `{metric}`: nothing to test.")
        return out
    factors, out.notes = active_factors(res, df)
    if not factors:
        out.notes.append("No scientific parameter has two or more levels among the finished "
                         "trials, so there is no ANOVA.")
        return out
    nested = [k for k in factors if (df[k] == "NA").any()]
    if nested:
        inside = df[~df[nested].eq("NA").any(axis=1)]
        outside = df[df[nested].eq("NA").any(axis=1)]
        keep = [k for k in factors if inside[k].nunique() >= 2]
        out.design = (f"a vanilla arm ({len(outside)} trials where "
                      + ", ".join(f"`{k}`" for k in nested) + " does not apply) beside the "
                      f"factorial of {' × '.join(f'`{k}`' for k in keep) or 'one cell'} "
                      f"({len(inside)} trials)")
        out.notes.append(f"Design: {out.design}. The factorial model is fitted on the RollingQ "
                         f"trials; the vanilla arm enters through the contrasts against it.")
        out.vanilla = _vanilla_contrasts(res, df, keep, metric)
        df, factors = inside, keep
        if not factors:
            return out
    _factorial(res, df, metric, factors, out)
    return out


def _block_terms(df: pd.DataFrame, several: bool) -> list[str]:
    """The seed block: ``C(seed)``, or seeds within each data set."""
    if df[SEED].nunique() < 2:
        return []
    return ["C(dataset):C(seed)"] if several else ["C(seed)"]


def _factorial(res: Results, df: pd.DataFrame, metric: str, factors: list[str],
               out: Sensitivity) -> None:
    """OLS of the crossed factors with the seed block; Type II ANOVA, EMMs, Tukey, trends."""
    nuisance = [f.key for f in res.nuisance if df[f.key].nunique() >= 2]
    several = df["dataset"].nunique() >= 2
    if several:
        out.notes.append("The data set enters as a fixed factor, with each parameter's "
                         "interaction with it; the F tests use heteroscedasticity-robust (HC3) "
                         "covariance, as the data sets' variances differ.")
    if nuisance:
        out.notes.append("Nuisance parameters enter as additive factors: "
                         + ", ".join(f"`{k}`" for k in nuisance) + ".")

    safe = {key: f"x{i}" for i, key in enumerate(factors + nuisance)}
    data = pd.DataFrame({"acc": pd.to_numeric(df[metric]), "dataset": df["dataset"],
                         "seed": df[SEED].map(level_str)})
    for key, name in safe.items():
        col = df[key].cat.remove_unused_categories()
        data[name] = col.astype(str)
    names = ({f"C({v})": k for k, v in safe.items()}
             | {"C(dataset)": "data set", "C(seed)": "seed (block)"})

    by_data = [f"C({safe[k]}):C(dataset)" for k in factors] if several else []
    blocks = _block_terms(df, several)
    extra = ([f"C({safe[k]})" for k in nuisance] + (["C(dataset)"] if several else [])
             + by_data)
    model, order, terms = _fit_largest(data, [f"C({safe[k]})" for k in factors], len(factors),
                                       extra, blocks)
    if model is not None and blocks and not any(t in terms for t in blocks):
        out.notes.append("Too few trials to fit the seed block as well; seeds are "
                         "replicates in this model.")
    if model is None:
        out.notes.append(
            f"With {len(data)} finished trials the model of {len(factors)} factor(s) has no "
            f"residual degrees of freedom (one trial per cell?): run more seeds to test effects.")
        return
    if order < len(factors):
        kept = "main effects only" if order == 1 else f"interactions up to order {order}"
        out.notes.append(f"Not enough trials for the full interaction model; fitted {kept}.")
    out.n = int(model.nobs)
    out.blocked = any("seed" in t for t in terms)
    label = "test_acc_at_best_val" if metric == "acc" else metric
    out.formula = f"{label} ~ " + " + ".join(_rename(t, names) for t in terms)
    out.anova = _anova_table(model, names, robust=several)
    if several:
        _per_dataset(res, data, factors, nuisance, safe, order, out)
    else:
        columns = [safe[k] for k in factors + nuisance] + (["seed"] if out.blocked else [])
        out.effects, out.tukey = _emm(data, model, factors, safe, res, columns)
        out.trends = _trends(res, data, model, factors, safe, terms)
    multi = [k for k in factors if df[k].nunique() > 2]
    if not multi:
        out.notes.append("No factor has more than two levels, so there is no Tukey HSD (the "
                         "ANOVA F test is the pairwise test).")


def _fit_largest(data: pd.DataFrame, factors: list[str], order: int, extra: list[str],
                 blocks: list[str]) -> tuple[Any, int, list[str]]:
    """The richest model that fits (``_fit``): the factors' interactions up to ``order``, then
    lower orders, with the ``extra`` terms and the seed ``blocks``, then without the blocks
    (only when the study cannot afford them). ``(model, order, terms)``; model None when
    nothing fits."""
    model, k, terms = None, 0, []
    for block in (blocks, []):
        for k in range(min(order, len(factors)), 0, -1):
            terms = _terms(factors, k) + extra + block
            model = _fit(" + ".join(terms), data)
            if model is not None:
                return model, k, terms
    return None, k, terms


def _terms(factors: list[str], order: int) -> list[str]:
    return [":".join(c) for r in range(1, order + 1) for c in itertools.combinations(factors, r)]


def _fit(rhs: str, data: pd.DataFrame) -> Any:
    """The OLS fit, or None when it has no residual degrees of freedom or is rank deficient."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = smf.ols(f"acc ~ {rhs}", data=data).fit()
    exog = model.model.exog
    if model.df_resid < 1 or np.linalg.matrix_rank(exog) < exog.shape[1]:
        return None
    return model


def _rename(term: str, names: dict[str, str]) -> str:
    return " × ".join(names.get(p, p) for p in term.split(":")).replace(
        "data set × seed (block)", "seed within data set (block)")


def _anova_table(model: Any, names: dict[str, str], robust: bool = False) -> pd.DataFrame:
    """Type II ANOVA: sums of squares, η² = SS / SS_total (``model.centered_tss``), partial η²
    = SS / (SS + SS_residual), ω² = (SS − df·MS_residual) / (SS_total + MS_residual); with
    ``robust`` the F tests use HC3 covariance (the sums of squares stay the classical ones)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        a = anova_lm(model, typ=2)
        if robust:
            r = anova_lm(model, typ=2, robust="hc3")
            a[["F", "PR(>F)"]] = r[["F", "PR(>F)"]]
    total = float(model.centered_tss)
    resid = a.loc["Residual", "sum_sq"]
    mse = resid / a.loc["Residual", "df"]
    a["eta_sq"] = a["sum_sq"] / total if total > 0 else np.nan
    a["partial_eta_sq"] = a["sum_sq"] / (a["sum_sq"] + resid) if resid + total > 0 else np.nan
    a["omega_sq"] = ((a["sum_sq"] - a["df"] * mse) / (total + mse)) if total > 0 else np.nan
    a.loc["Residual", ["partial_eta_sq", "omega_sq", "F", "PR(>F)"]] = np.nan
    a = a.rename(columns={"PR(>F)": "p"})
    a.insert(0, "term", [("Residual" if t == "Residual" else _rename(t, names)) for t in a.index])
    return a.reset_index(drop=True)[["term", "df", "sum_sq", "F", "p", "eta_sq",
                                     "partial_eta_sq", "omega_sq"]]


def _emm_rows(model: Any, data: pd.DataFrame, columns: list[str]) -> tuple[np.ndarray,
                                                                             pd.DataFrame]:
    """The design matrix of the balanced grid of the model's factor levels (for EMMs), coded
    by the fitted model's own design (patsy's ``build_design_matrices``)."""
    levels = [list(dict.fromkeys(data[c])) for c in columns]
    if math.prod(len(lv) for lv in levels) > 200_000:
        grid = data[columns].drop_duplicates()
    else:
        grid = pd.DataFrame(list(itertools.product(*levels)), columns=columns)
    (X,) = patsy.build_design_matrices([model.model.data.model_spec], grid.assign(acc=0.0))
    return np.asarray(X, dtype=float), grid


def _contrast(model: Any, c: np.ndarray) -> tuple[float, float, float, float, float]:
    """A linear contrast of the coefficients: (estimate, standard error, two-sided p, and the
    95 % interval), from statsmodels' ``t_test``."""
    t = model.t_test(c.reshape(1, -1))
    se = float(np.asarray(t.sd).ravel()[0])
    est = float(np.asarray(t.effect).ravel()[0])
    p = float(np.asarray(t.pvalue).ravel()[0]) if se > 0 else 0.0
    low, high = (np.asarray(t.conf_int(alpha=ALPHA)).ravel() if se > 0 else (est, est))
    return est, se, p, float(low), float(high)


def _emm(data: pd.DataFrame, model: Any, factors: list[str], safe: dict[str, str],
         res: Results, columns: list[str]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Estimated marginal means of each factor's levels, effects and Tukey HSD from them.

    An EMM is the model's prediction averaged over a balanced grid of the other factors (and
    the seed blocks), so an unbalanced study (a trial errored) does not shift a level's mean;
    contrasts are ``model.t_test``s. Tukey: ``p = P(Q_{k, df} > |Δ| / se · √2)``, interval
    ``Δ ± q(.95; k, df) / √2 · se`` (Tukey–Kramer, as R's emmeans).
    """
    X, grid = _emm_rows(model, data, columns)
    beta = model.params.to_numpy()
    dof = float(model.df_resid)
    effects, tukey = [], []
    for key in factors:
        name = safe[key]
        f = res.factor(key)
        col = data[name]
        levels = [lv for lv in (f.levels if f else []) if (col == lv).any()]
        base = f.baseline if f is not None and f.baseline in levels else levels[0]
        L = {lv: X[(grid[name] == lv).to_numpy()].mean(axis=0) for lv in levels}
        for lv in levels:
            row = {"factor": key, "level": lv, "n": int((col == lv).sum()),
                   "mean": float(L[lv] @ beta), "reference": lv == base,
                   "vanilla": f is not None and lv == f.baseline and lv == _vanilla_level(f)}
            if lv == base:
                row.update(delta=0.0, low=np.nan, high=np.nan, p=np.nan)
            else:
                d, _, p, low, high = _contrast(model, L[lv] - L[base])
                row.update(delta=d, low=low, high=high, p=p)
            effects.append(row)
        k = len(levels)
        if k <= 2:
            continue
        q_crit = float(studentized_range.ppf(1 - ALPHA, k, dof)) / np.sqrt(2)
        for a, b in itertools.combinations(levels, 2):
            d, se, *_ = _contrast(model, L[b] - L[a])
            p = float(studentized_range.sf(abs(d) / se * np.sqrt(2), k, dof)) if se > 0 else 0.0
            p = min(max(p, 0.0), 1.0)
            tukey.append({"factor": key, "group1": a, "group2": b, "meandiff": d,
                          "low": d - q_crit * se, "high": d + q_crit * se, "p_adj": p,
                          "reject": p < ALPHA})
    return pd.DataFrame(effects), pd.DataFrame(tukey)


def _per_dataset(res: Results, data: pd.DataFrame, factors: list[str], nuisance: list[str],
                 safe: dict[str, str], order: int, out: Sensitivity) -> None:
    """EMMs, Tukey, trends and simple effects from each data set's own model: the factors
    with two or more levels there, interactions up to ``order`` (lowered until it fits),
    nuisance factors and the seed block, on the data set's trials alone."""
    effects, tukey, trends = [], [], []
    for ds in data["dataset"].unique():
        d = data[data["dataset"] == ds]
        here = [k for k in factors if d[safe[k]].nunique() >= 2]
        extra = [f"C({safe[k]})" for k in nuisance if d[safe[k]].nunique() >= 2]
        block = ["C(seed)"] if d["seed"].nunique() >= 2 else []
        model, _, terms = _fit_largest(d, [f"C({safe[f]})" for f in here], order, extra, block)
        if model is None:
            out.notes.append(f"{ds}: too few trials for its own model, so it has no marginal "
                             f"means or simple effects.")
            continue
        columns = ([safe[k] for k in here] + [c[2:-1] for c in extra]
                   + (["seed"] if "C(seed)" in terms else []))
        e, t = _emm(d, model, here, safe, res, columns)
        effects.append(e.assign(dataset=ds))
        tukey.append(t.assign(dataset=ds))
        trends.append(_trends(res, d, model, here, safe, terms).assign(dataset=ds))
    out.effects, out.tukey, out.trends = (pd.concat([f for f in frames if len(f)],
                                                    ignore_index=True)
                                          if any(len(f) for f in frames) else pd.DataFrame()
                                          for frames in (effects, tukey, trends))
    out.notes.append("With several data sets, the marginal means, Tukey HSD, dose responses "
                     "and simple effects come from each data set's own model (its trials, its "
                     "seed block, its residual variance); the ANOVA above tests the "
                     "interactions with the data set.")
    if not len(out.effects):
        return
    simple = out.effects[~out.effects["reference"]].copy()
    base = out.effects[out.effects["reference"]].set_index(["dataset", "factor"])["level"]
    simple["reference"] = [base.get((ds, f), "") for ds, f in
                           zip(simple["dataset"], simple["factor"], strict=True)]
    parts = []
    for _, g in simple.groupby("factor", sort=False):
        parts.append(g.assign(p_holm=holm(g["p"].astype(float).to_numpy(), ALPHA)))
    out.simple = pd.concat(parts, ignore_index=True)[
        ["dataset", "factor", "level", "reference", "delta", "low", "high", "p", "p_holm"]]


def _vanilla_level(f: Any) -> str | None:
    """The level of a factor that is the vanilla arm (RollingQ off), if it has one."""
    from analysis.results import VANILLA

    if f.key in VANILLA:
        return level_str(VANILLA[f.key])
    return "NA" if f.baseline == "NA" else None


def _trends(res: Results, data: pd.DataFrame, model: Any, factors: list[str],
            safe: dict[str, str], terms: list[str]) -> pd.DataFrame:
    """A dose-response test for each numeric factor with three or more levels: the main-effect
    model with the factor as a number (its slope per unit, 95 % interval and p) against the
    same model with it categorical (lack of fit: an F test, ``anova_lm``)."""
    rows = []
    for key in factors:
        f = res.factor(key)
        name = safe[key]
        levels = data[name].unique()
        if f is None or not f.numeric or len(levels) < 3:
            continue
        others = [t for t in terms if ":" not in t and t != f"C({name})"]
        others += [t for t in terms if t.endswith("C(seed)") and ":" in t]
        numeric = data.assign(dose=pd.to_numeric(data[name]))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            linear = smf.ols("acc ~ " + " + ".join(["dose", *others]), data=numeric).fit()
            categorical = smf.ols("acc ~ " + " + ".join([f"C({name})", *others]),
                                  data=numeric).fit()
            lack = anova_lm(linear, categorical)
        low, high = linear.conf_int(ALPHA).loc["dose"]
        rows.append({"factor": key, "levels": len(levels), "slope": float(linear.params["dose"]),
                     "low": float(low), "high": float(high),
                     "p": float(linear.pvalues["dose"]),
                     "lack_of_fit_p": float(lack["Pr(>F)"].iloc[1])})
    return pd.DataFrame(rows)


def _vanilla_contrasts(res: Results, df: pd.DataFrame, factors: list[str],
                       metric: str) -> pd.DataFrame:
    """Each RollingQ level (averaged over the other RollingQ factors) and the whole RollingQ
    arm against the vanilla arm, per data set: ``y ~ C(cell) + C(seed)`` (a cell = a variant),
    contrasts of cell means by ``t_test``, Holm-adjusted over the data set's contrasts."""
    rows = []
    for ds in res.datasets:
        d = df[df["dataset"] == ds]
        if not len(d):
            continue
        cell = d["variant"].astype(str)
        data = pd.DataFrame({"acc": pd.to_numeric(d[metric]), "cell": cell,
                             "seed": d[SEED].map(level_str)})
        vanilla_cells = set(cell[d[factors].eq("NA").any(axis=1)]) if factors else set()
        vanilla_cells = vanilla_cells or set(cell[~outcome_on(d)])
        if not vanilla_cells or set(cell) <= vanilla_cells:
            continue
        rhs = "C(cell)" + (" + C(seed)" if data["seed"].nunique() >= 2 else "")
        model = _fit(rhs, data) or (_fit("C(cell)", data) if "seed" in rhs else None)
        if model is None:
            continue
        X, grid = _emm_rows(model, data, ["cell"] + (["seed"] if "C(seed)" in
                                                      model.model.formula else []))
        means = {c: X[(grid["cell"] == c).to_numpy()].mean(axis=0) for c in cell.unique()}
        base = np.mean([means[c] for c in vanilla_cells], axis=0)
        on_cells = [c for c in cell.unique() if c not in vanilla_cells]
        groups = [("RollingQ (every cell)", on_cells)]
        for key in factors:
            for lv in [lv for lv in res.factor(key).levels if (d[key] == lv).any()]:
                here = sorted(set(cell[d[key] == lv]) - vanilla_cells)
                if here:
                    groups.append((f"{key} = {lv}", here))
        block = []
        for what, cells in groups:
            c = np.mean([means[x] for x in cells], axis=0) - base
            est, _, p, low, high = _contrast(model, c)
            block.append({"dataset": ds, "contrast": f"{what} − vanilla", "cells": len(cells),
                          "n": int(cell.isin(cells).sum()),
                          "n_vanilla": int(cell.isin(vanilla_cells).sum()), "delta": est,
                          "low": low, "high": high, "p": p,
                          "df": float(model.df_resid)})
        adjusted = holm([r["p"] for r in block], ALPHA)
        for r, p in zip(block, adjusted, strict=True):
            r["p_holm"] = float(p)
        rows += block
    return pd.DataFrame(rows)


def outcome_on(d: pd.DataFrame) -> pd.Series:
    """The trials' RollingQ arm as booleans (unknown: off)."""
    from analysis.outcomes import ON, rollingq_on

    return rollingq_on(d[ON]).fillna(False).astype(bool)
