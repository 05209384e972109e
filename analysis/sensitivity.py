"""Sensitivity statistics: which scientific parameters move the headline accuracy, and by how much.

Grid studies (balanced, equal budget) get
    1. OLS with every scientific parameter as a categorical factor (``C()``) and their
       interactions, seeds as replicates (they are the residual), the data set as an additive
       fixed factor when there are several, nuisance parameters as additive factors;
    2. a Type II ANOVA table with F, p, η² (share of the total sum of squares) and partial η²
       (``SS / (SS + SS_residual)``);
    3. estimated marginal means (EMMs: the model's prediction averaged over a balanced grid of
       the other factors) and each level's difference to the baseline level with its 95 %
       interval (the sign of an effect);
    4. Tukey HSD on the EMMs for factors with more than two levels (Tukey–Kramer with the
       model's covariance, as R's emmeans), so a missing trial does not bias a comparison.
The interaction order is lowered (full -> pairs -> main effects) until the model keeps residual
degrees of freedom and full rank; the report says which model was fitted.

Optuna studies (adaptive, unbalanced) get parameter importance with PED-ANOVA (Optuna's default
evaluator), built offline from ``trials.csv``: trials stopped early by ASHA are excluded and
counted (Optuna's own journal records them as COMPLETE), seeds of a configuration are averaged.
"""

from __future__ import annotations

import itertools
import logging
import math
import warnings
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import numpy as np
import optuna
import pandas as pd
import statsmodels.formula.api as smf
from scipy import stats
from scipy.stats import studentized_range
from statsmodels.stats.anova import anova_lm

from analysis.results import Results, level_str

log = logging.getLogger(__name__)
ALPHA = 0.05
# The tune metric -> the trials.csv column that summarises it over a trial (and the direction).
METRIC_COLUMN = {"val_acc": "acc_val", "best_val_acc": "acc_val", "test_acc_at_best_val": "acc",
                 "train_loss": "final_train_loss", "val_loss": "acc_val",
                 "val_f1": "val_f1_at_best_val", "test_f1_at_best_val": "test_f1_at_best_val"}
EVALUATOR = ("PED-ANOVA (optuna.importance.PedAnovaImportanceEvaluator, target_quantile 0.1, "
             "region_quantile 1.0: which parameters matter to land in the top 10 %)")


@dataclass
class Sensitivity:
    """The statistics of one study.

    Attributes:
        formula: The fitted ANOVA model, with dotted names (empty when none was fitted).
        anova: Rows ``term, df, sum_sq, F, p, eta_sq, partial_eta_sq`` (Residual last).
        effects: Rows ``factor, level, n, mean (EMM), delta, low, high, p, reference``.
        tukey: Rows ``factor, group1, group2, meandiff, low, high, p_adj, reject``.
        n: Trials in the model.
        notes: Sentences: skipped factors, the reduced model, what could not be tested.
    """

    formula: str = ""
    anova: pd.DataFrame = field(default_factory=pd.DataFrame)
    effects: pd.DataFrame = field(default_factory=pd.DataFrame)
    tukey: pd.DataFrame = field(default_factory=pd.DataFrame)
    n: int = 0
    notes: list[str] = field(default_factory=list)


@dataclass
class Importance:
    """Parameter importance of an Optuna study on one data set.

    Attributes:
        dataset: The data set.
        evaluator: The evaluator's name and settings.
        values: Parameter -> importance (sums to 1), most important first.
        configurations: Distinct configurations in the study (seeds averaged).
        trials: Finished trials used.
        stopped: Trials stopped early by ASHA (excluded).
        other_excluded: Errored, diverged or incomplete trials (excluded).
        target: The column the study was built on and its direction.
        notes: Sentences for the report.
    """

    dataset: str
    evaluator: str
    values: dict[str, float]
    configurations: int
    trials: int
    stopped: int
    other_excluded: int
    target: str
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
    """OLS + Type II ANOVA, adjusted effects and Tukey HSD on the finished trials.

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
    nuisance = [f.key for f in res.nuisance if df[f.key].nunique() >= 2]
    several = df["dataset"].nunique() >= 2
    if several:
        out.notes.append("The data set enters as an additive fixed factor.")
    if nuisance:
        out.notes.append("Nuisance parameters enter as additive factors: "
                         + ", ".join(f"`{k}`" for k in nuisance) + ".")

    safe = {key: f"x{i}" for i, key in enumerate(factors + nuisance)}
    data = pd.DataFrame({"acc": pd.to_numeric(df[metric]), "dataset": df["dataset"]})
    for key, name in safe.items():
        col = df[key].cat.remove_unused_categories()
        data[name] = col.astype(str)
    names = {f"C({v})": k for k, v in safe.items()} | {"C(dataset)": "data set"}

    extra = [f"C({safe[k]})" for k in nuisance] + (["C(dataset)"] if several else [])
    model, order = None, 0
    for order in range(len(factors), 0, -1):
        terms = _terms([f"C({safe[k]})" for k in factors], order) + extra
        candidate = _fit(" + ".join(terms), data)
        if candidate is not None:
            model = candidate
            break
    if model is None:
        out.notes.append(
            f"With {len(data)} finished trials the model of {len(factors)} factor(s) has no "
            f"residual degrees of freedom (one trial per cell?): run more seeds to test effects.")
        return out
    if order < len(factors):
        kept = "main effects only" if order == 1 else f"interactions up to order {order}"
        out.notes.append(f"Not enough trials for the full interaction model; fitted {kept}.")
    out.n = int(model.nobs)
    label = "test_acc_at_best_val" if metric == "acc" else metric
    out.formula = f"{label} ~ " + " + ".join(_rename(t, names) for t in terms)
    out.anova = _anova_table(model, names)
    columns = [safe[k] for k in factors + nuisance] + (["dataset"] if several else [])
    out.effects, out.tukey = _emm(data, model, factors, safe, res, columns)
    multi = [k for k in factors if df[k].nunique() > 2]
    if not multi:
        out.notes.append("No factor has more than two levels, so there is no Tukey HSD (the "
                         "ANOVA F test is the pairwise test).")
    return out


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
    return " × ".join(names.get(p, p) for p in term.split(":"))


def _anova_table(model: Any, names: dict[str, str]) -> pd.DataFrame:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        a = anova_lm(model, typ=2)
    total = a["sum_sq"].sum()
    resid = a.loc["Residual", "sum_sq"]
    a["eta_sq"] = a["sum_sq"] / total if total > 0 else np.nan
    a["partial_eta_sq"] = a["sum_sq"] / (a["sum_sq"] + resid) if resid + total > 0 else np.nan
    a.loc["Residual", ["partial_eta_sq", "F", "PR(>F)"]] = np.nan
    a = a.rename(columns={"PR(>F)": "p"})
    a.insert(0, "term", [("Residual" if t == "Residual" else _rename(t, names)) for t in a.index])
    return a.reset_index(drop=True)[["term", "df", "sum_sq", "F", "p", "eta_sq",
                                     "partial_eta_sq"]]


def _emm_rows(model: Any, data: pd.DataFrame, columns: list[str]) -> tuple[np.ndarray,
                                                                             pd.DataFrame]:
    """The design matrix of the balanced grid of the model's factor levels (for EMMs)."""
    levels = [list(dict.fromkeys(data[c])) for c in columns]
    if math.prod(len(lv) for lv in levels) > 200_000:
        grid = data[columns].drop_duplicates()
    else:
        grid = pd.DataFrame(list(itertools.product(*levels)), columns=columns)
    # The same formula on the grid codes the same levels into the same columns.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        on_grid = smf.ols(model.model.formula, data=grid.assign(acc=0.0))
    if list(on_grid.exog_names) != list(model.model.exog_names):
        raise ValueError(f"the EMM grid codes columns {on_grid.exog_names}, the model "
                         f"{model.model.exog_names}")
    return np.asarray(on_grid.exog, dtype=float), grid


def _contrast(L: dict[str, np.ndarray], beta: np.ndarray, cov: np.ndarray, a: str,
              b: str) -> tuple[float, float]:
    """``EMM_b - EMM_a`` and its standard error."""
    c = L[b] - L[a]
    return float(c @ beta), float(np.sqrt(max(c @ cov @ c, 0.0)))


def _emm(data: pd.DataFrame, model: Any, factors: list[str], safe: dict[str, str],
         res: Results, columns: list[str]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Estimated marginal means of each factor's levels, effects and Tukey HSD from them.

    An EMM is the model's prediction averaged over a balanced grid of the other factors, so an
    unbalanced study (a trial errored) does not shift a level's mean; contrasts get their
    standard error from the model's covariance. Tukey: ``p = P(Q_{k, df} > |Δ| / se · √2)``,
    interval ``Δ ± q(.95; k, df) / √2 · se`` (Tukey–Kramer, as R's emmeans).
    """
    X, grid = _emm_rows(model, data, columns)
    beta = model.params.to_numpy()
    cov = model.cov_params().to_numpy()
    dof = float(model.df_resid)
    t_crit = float(stats.t.ppf(1 - ALPHA / 2, dof))
    effects, tukey = [], []
    for key in factors:
        name = safe[key]
        f = res.factor(key)
        col = data[name]
        levels = [lv for lv in (f.levels if f else []) if (col == lv).any()]
        base = f.baseline if f is not None and f.baseline in levels else levels[0]
        L = {lv: X[(grid[name] == lv).to_numpy()].mean(axis=0) for lv in levels}
        contrast = partial(_contrast, L, beta, cov)
        for lv in levels:
            row = {"factor": key, "level": lv, "n": int((col == lv).sum()),
                   "mean": float(L[lv] @ beta), "reference": lv == base}
            if lv == base:
                row.update(delta=0.0, low=np.nan, high=np.nan, p=np.nan)
            else:
                d, se = contrast(base, lv)
                p = float(2 * stats.t.sf(abs(d) / se, dof)) if se > 0 else 0.0
                row.update(delta=d, low=d - t_crit * se, high=d + t_crit * se, p=p)
            effects.append(row)
        k = len(levels)
        if k <= 2:
            continue
        q_crit = float(studentized_range.ppf(1 - ALPHA, k, dof)) / np.sqrt(2)
        for a, b in itertools.combinations(levels, 2):
            d, se = contrast(a, b)
            p = float(studentized_range.sf(abs(d) / se * np.sqrt(2), k, dof)) if se > 0 else 0.0
            p = min(max(p, 0.0), 1.0)
            tukey.append({"factor": key, "group1": a, "group2": b, "meandiff": d,
                          "low": d - q_crit * se, "high": d + q_crit * se, "p_adj": p,
                          "reject": p < ALPHA})
    return pd.DataFrame(effects), pd.DataFrame(tukey)


def significant_terms(s: Sensitivity, alpha: float = ALPHA) -> list[str]:
    """ANOVA terms with p < alpha."""
    if not len(s.anova):
        return []
    a = s.anova[s.anova["term"] != "Residual"]
    return list(a.loc[a["p"] < alpha, "term"])


# -- Optuna importance -----------------------------------------------------------------------

def _distribution(raw: dict[str, Any]) -> optuna.distributions.BaseDistribution | None:
    kind = raw.get("type", "choice")
    if kind == "choice":
        return optuna.distributions.CategoricalDistribution(list(raw.get("values") or []))
    low, high, log_, step = raw.get("low"), raw.get("high"), bool(raw.get("log")), raw.get("step")
    if low is None or high is None:
        return None
    if kind == "int":
        return optuna.distributions.IntDistribution(int(low), int(high), log=log_,
                                                    step=int(step or 1))
    return optuna.distributions.FloatDistribution(float(low), float(high), log=log_,
                                                  step=None if step is None else float(step))


def _param_value(dist: optuna.distributions.BaseDistribution, value: Any) -> Any:
    if isinstance(dist, optuna.distributions.CategoricalDistribution):
        match = [c for c in dist.choices if level_str(c) == level_str(value)]
        return match[0] if match else None
    if isinstance(dist, optuna.distributions.IntDistribution):
        return int(value)
    return float(value)


def importance(res: Results) -> list[Importance]:
    """PED-ANOVA importance per data set, from an Optuna study rebuilt from ``trials.csv``.

    Returns:
        One record per data set with at least two finished configurations (may be empty).
    """
    search: dict[str, dict[str, Any]] = {}
    for spec in res.specs:
        for k, raw in (spec.get("search") or {}).items():
            search.setdefault(k, raw)
    dists = {k: d for k, raw in search.items() if k != "data.name"
             and (d := _distribution(raw)) is not None}
    column = METRIC_COLUMN.get(res.metric, "acc_val")
    tune = (res.specs[0].get("tune") if res.specs else None) or {}
    direction = "minimize" if column == "final_train_loss" else "maximize"
    unit = ("final train loss" if column == "final_train_loss" else
            "macro-F1" if "f1" in column else "percent")
    target = (f"{column} ({unit}, "
              f"{direction}d; the tune metric is {res.metric}, {tune.get('metric_mode', 'max')})")
    out = []
    for ds in res.datasets:
        t = res.trials[res.trials["dataset"] == ds]
        if column not in t:
            continue
        fin = t[(t["status"] == "finished") & pd.to_numeric(t[column], errors="coerce").notna()]
        stopped = int((t["status"] == "stopped").sum())
        other = len(t) - len(fin) - stopped
        rows: dict[tuple[str, ...], list[float]] = {}
        params: dict[tuple[str, ...], dict[str, Any]] = {}
        for r in fin.to_dict("records"):
            p = {}
            for k, dist in dists.items():
                v = r.get(k)
                if v is None or (isinstance(v, float) and np.isnan(v)):
                    continue  # an inactive conditional parameter
                val = _param_value(dist, v)
                if val is not None:
                    p[k] = val
            key = tuple(level_str(p.get(k)) for k in dists)
            rows.setdefault(key, []).append(float(r[column]))
            params[key] = p
        notes = []
        if len(rows) < 2:
            continue
        if len(rows) < 20:
            notes.append(f"Only {len(rows)} configurations: importance from so few trials is "
                         f"a rough ranking.")
        study = optuna.create_study(direction=direction)
        study.add_trials([optuna.trial.create_trial(
            value=float(np.mean(vals)), params=params[key],
            distributions={k: dists[k] for k in params[key]}) for key, vals in rows.items()])
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            values = optuna.importance.get_param_importances(
                study, evaluator=optuna.importance.PedAnovaImportanceEvaluator())
        out.append(Importance(ds, EVALUATOR, dict(values), len(rows), len(fin), stopped, other,
                              target, notes))
    return out


def journal_summary(res: Results) -> list[str]:
    """One sentence per ``optuna.journal``: its trials by state, as a cross-check."""
    out = []
    for path in res.journals:
        name = next((s.get("name") for s in res.specs if s.get("name")), None)
        try:
            storage = optuna.storages.JournalStorage(
                optuna.storages.journal.JournalFileBackend(str(path)))
            names = [s.study_name for s in optuna.get_all_study_summaries(storage)]
            study = optuna.load_study(study_name=name if name in names else names[0],
                                      storage=storage)
            states = pd.Series([t.state.name for t in study.trials]).value_counts()
            counts = ", ".join(f"{n} {s.lower()}" for s, n in states.items()) or "no trials"
            out.append(f"`{path.name}` (study `{study.study_name}`) holds {counts}. It records "
                       f"ASHA-stopped trials as complete, so the importance above is built from "
                       f"trials.csv instead.")
        except Exception as e:  # noqa: BLE001 - a damaged journal must not stop the report
            log.warning("cannot read %s: %s", path, e)
            out.append(f"`{path.name}` could not be read ({type(e).__name__}); the importance "
                       f"is built from trials.csv.")
    return out
