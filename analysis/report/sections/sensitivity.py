"""Sensitivity: which parameters move the headline and each outcome (ANOVA, EMMs, Tukey, dose
responses, nested contrasts, survival of censored times), or an Optuna study's importance."""

from __future__ import annotations

import re
from typing import Any

import numpy as np
import pandas as pd

from analysis import family, importance, outcomes, plots, sensitivity, tables
from analysis.format import interval, number, p_eq, p_text
from analysis.report.blocks import Heading, Para, Table
from analysis.report.captions import text
from analysis.report.context import Context
from analysis.stats import ALPHA
from analysis.survival import Survival, survival


def build(ctx: Context) -> None:
    res = ctx.res
    if res.mode == "optuna":
        _importance(ctx)
        ctx.add(Para(text("sensitivity.optuna")))
        return
    metrics = list(dict.fromkeys(["acc", *ctx.metrics]))  # the headline always
    fits = {m: sensitivity.analyse(res, m) for m in metrics if m not in outcomes.CENSORED}
    survs = {m: survival(res, m) for m in metrics if m in outcomes.CENSORED}
    tests = family.fdr(fits, survs)
    ctx.record(fits=fits, survivals=survs, tests=tests)
    q = {m: dict(zip(g["term"], g["q"], strict=True)) for m, g in tests.groupby("metric")}
    fam = text("sensitivity.family", tests=len(tests))
    head = fits["acc"]
    design = text("sensitivity.blocked" if head.blocked else "sensitivity.replicates")
    ctx.add(Para(text("sensitivity.design", design=design, family=fam)))
    _model(ctx, "acc", head, q.get("acc", {}), "%", headline=True)
    ctx.summary.append("ANOVA of the headline accuracy: "
                       + _significance(head, q.get("acc", {})) + ".")
    rot = tables.realised_rotations(res)
    if len(rot):
        ctx.add(Table(rot, text("sensitivity.rotations")))
    others = [m for m in ctx.metrics if m != "acc"]
    if others:
        _outcome_sensitivity(ctx, others, fits, survs, q)
    ctx.summary.append(text("sensitivity.exploratory", family=fam))


def _model(ctx: Context, metric: str, s: sensitivity.Sensitivity, q: dict[str, float], unit: str,
          headline: bool = False) -> None:
    """One outcome's model: ANOVA, marginal means, Tukey, trends, vanilla contrasts."""
    label = "the headline accuracy" if headline else f"`{metric}`"
    if s.formula:
        ctx.add(Para(text("sensitivity.ols", trials=s.n, formula=s.formula)),
                Table(_anova_strings(s.anova, q), text("sensitivity.anova", outcome=label)))
    for note in s.notes:
        ctx.add(Para(note))
    if not s.formula and not len(s.vanilla):
        if not s.notes:
            ctx.add(Para(text("sensitivity.no_model")))
        return
    if len(s.effects):
        ctx.add(Table(_effects_strings(s.effects, unit), text(
            "sensitivity.means_headline" if headline else "sensitivity.means", outcome=label)))
    if len(s.simple):
        ctx.add(Table(_simple_strings(s.simple, unit), text("sensitivity.simple", outcome=label)))
    if len(s.tukey):
        ctx.add(Table(_tukey_strings(s.tukey), text("sensitivity.tukey_headline") if headline
                      else text("sensitivity.tukey", outcome=label)))
    if len(s.trends):
        ctx.add(Table(_trend_strings(s.trends), text("sensitivity.trend", outcome=label)))
    if len(s.vanilla):
        ctx.add(Table(_vanilla_strings(s.vanilla, q), text("sensitivity.vanilla", outcome=label)))


def _outcome_sensitivity(ctx: Context, metrics: list[str], fits: dict[str, sensitivity.Sensitivity],
                        survs: dict[str, Survival],
                        q: dict[str, dict[str, float]]) -> None:
    """The same statistics for each outcome (analysis/outcomes.py); a censored time gets
    Kaplan–Meier and the log-rank test."""
    ctx.add(Heading(3, "Every outcome"), Para(text("sensitivity.outcomes")))
    lines = []
    for metric in metrics:
        what, unit = outcomes.OUTCOMES[metric]
        ctx.add(Heading(4, f"{what} (`{metric}`" + (f", {unit})" if unit else ")")))
        if metric in outcomes.CENSORED:
            lines.append(_censored(ctx, survs[metric], what, q.get(metric, {})))
            continue
        s = fits[metric]
        _model(ctx, metric, s, q.get(metric, {}), unit or "value")
        if s.formula or len(s.vanilla):
            lines.append(f"ANOVA of the {what}: {_significance(s, q.get(metric, {}))}")
        else:
            lines.append(f"{what}: no model ({s.notes[-1] if s.notes else 'no data'})")
    ctx.summary.extend(f"{line}." for line in lines)


def _censored(ctx: Context, surv: Survival, what: str, q: dict[str, float]) -> str:
    """A censored time outcome: Kaplan–Meier per level, the log-rank tests, the figure;
    returns the summary line."""
    metric = surv.column
    for note in surv.notes:
        ctx.add(Para(note))
    if not len(surv.levels):
        return f"{what}: no trial to analyse"
    levels, tests = _survival_strings(surv, q)
    ctx.add(Table(levels, text("sensitivity.km_levels", outcome=metric)))
    if len(tests):
        ctx.add(Table(tests, text("sensitivity.logrank")))
    for key in dict.fromkeys(surv.levels["factor"]):
        name = "km_" + re.sub(r"[^A-Za-z0-9]+", "_", key)
        ctx.figure(name, plots.convergence_km(surv, key),
                   text("sensitivity.km_figure", parameter=key))
    found = [f"`{r['factor']}` (converged "
             + ", ".join(f"{lv['level']}: {lv['share']:.0%}"
                         for lv in surv.levels[surv.levels["factor"] == r["factor"]]
                         .to_dict("records")) + f"; {p_eq('q', q[r['factor']])})"
             for r in surv.tests.to_dict("records")
             if q.get(r["factor"], 1.0) < ALPHA]
    return (f"Log-rank test of the {what}: "
            + (", ".join(found) + " significant at q < 0.05 (BH)" if found
               else "nothing significant at q < 0.05 (BH)"))


def _importance(ctx: Context) -> None:
    res = ctx.res
    imps = importance.importance(res)
    ctx.record(importance=imps)
    ctx.add(Heading(3, "Parameter importance"))
    if not imps:
        ctx.add(Para(text("sensitivity.no_importance")))
    for imp in imps:
        frame = pd.DataFrame({"parameter": list(imp.values),
                              "importance": [f"{v:.3f}" for v in imp.values.values()]})
        ctx.add(Para(text("sensitivity.importance", dataset=imp.dataset,
                          evaluator=imp.evaluator, target=imp.target,
                          configurations=imp.configurations, trials=imp.trials,
                          stopped=imp.stopped, other=imp.other_excluded)),
                Table(frame, text("sensitivity.importance_table", dataset=imp.dataset)))
        for note in imp.notes:
            ctx.add(Para(note))
        top = next(iter(imp.values), None)
        if top:
            ctx.summary.append(f"{imp.dataset}: the most important parameter is `{top}` "
                               f"({imp.values[top]:.2f}, PED-ANOVA).")
    for sentence in importance.journal_summary(res):
        ctx.add(Para(sentence))
    ctx.figure("importance", plots.importance_bars(imps), text("sensitivity.importance_figure"))
    ctx.figure("history", plots.optimization_history(res), text("sensitivity.history"))


def _anova_strings(a: pd.DataFrame, q: dict[str, float] | None = None) -> pd.DataFrame:
    """The ANOVA table; ``q``: term -> its Benjamini–Hochberg q in the report's family."""
    rows = []
    for r in a.to_dict("records"):
        qv = (q or {}).get(r["term"], np.nan)
        sig = "" if pd.isna(qv) else ("yes" if qv < ALPHA else "no")
        rows.append({"term": r["term"], "df": f"{r['df']:.0f}",
                     "sum of squares": number(r["sum_sq"]),
                     "F": number(r["F"]), "p": p_text(r["p"]), "q (BH)": p_text(qv),
                     "η²": number(r["eta_sq"], 3), "partial η²": number(r["partial_eta_sq"], 3),
                     "ω²": number(r["omega_sq"], 3), f"q < {ALPHA}": sig})
    return pd.DataFrame(rows)


def _effects_strings(e: pd.DataFrame, unit: str = "%") -> pd.DataFrame:
    rows = []
    for r in e.to_dict("records"):
        if r["reference"]:
            delta = "reference (vanilla)" if r.get("vanilla") else "reference (first level)"
        else:
            delta = interval(r["delta"], r["low"], r["high"], 2 if unit == "%" else 3)
        rows.append({**_where(r), "parameter": r["factor"], "level": r["level"],
                     "n": str(r["n"]),
                     f"adjusted mean ({unit})": number(r["mean"], 2 if unit == "%" else 3),
                     "Δ vs reference [95% CI]": delta, "p": p_text(r["p"])})
    return pd.DataFrame(rows)


def _simple_strings(e: pd.DataFrame, unit: str = "%") -> pd.DataFrame:
    digits = 2 if unit == "%" else 3
    return pd.DataFrame([{"data set": r["dataset"], "parameter": r["factor"],
                          "level vs reference": f"{r['level']} vs {r['reference']}",
                          "Δ [95% CI]": interval(r["delta"], r["low"], r["high"], digits),
                          "p": p_text(r["p"]), "p (Holm)": p_text(r["p_holm"])}
                         for r in e.to_dict("records")])


def _tukey_strings(t: pd.DataFrame) -> pd.DataFrame:
    rows = []
    for r in t.to_dict("records"):
        rows.append({**_where(r), "parameter": r["factor"], "group1": r["group1"],
                     "group2": r["group2"],
                     "mean diff (2 − 1)": f"{r['meandiff']:+.2f}",
                     "95% CI": f"[{r['low']:.2f}, {r['high']:.2f}]", "p-adj": p_text(r["p_adj"]),
                     "different": "**yes**" if r["reject"] else "no"})
    return pd.DataFrame(rows)


def _trend_strings(t: pd.DataFrame) -> pd.DataFrame:
    return pd.DataFrame([{**_where(r), "parameter": r["factor"], "levels": str(r["levels"]),
                          "slope per unit [95% CI]": interval(r["slope"], r["low"], r["high"],
                                                               3),
                          "p (linear)": p_text(r["p"]),
                          "p (lack of fit)": p_text(r["lack_of_fit_p"])}
                         for r in t.to_dict("records")])


def _vanilla_strings(v: pd.DataFrame, q: dict[str, float]) -> pd.DataFrame:
    return pd.DataFrame([{"data set": r["dataset"], "contrast": r["contrast"],
                          "cells": str(r["cells"]), "trials (on / vanilla)":
                          f"{r['n']} / {r['n_vanilla']}",
                          "Δ [95% CI]": interval(r["delta"], r["low"], r["high"], 3),
                          "p": p_text(r["p"]), "p (Holm, data set)": p_text(r["p_holm"]),
                          "q (BH)": p_text(q.get(f"{r['dataset']}: {r['contrast']}", np.nan)),
                          "residual df": f"{r['df']:.0f}"} for r in v.to_dict("records")])


def _survival_strings(surv: Survival,
                      q: dict[str, float]) -> tuple[pd.DataFrame, pd.DataFrame]:
    levels = pd.DataFrame([{"parameter": r["factor"], "level": r["level"],
                            "trials": str(r["trials"]), "converged": str(r["events"]),
                            "share converged": f"{r['share']:.0%}",
                            "median epochs (KM)": ("not reached" if pd.isna(r["median"])
                                                   else f"{r['median']:.0f}")}
                           for r in surv.levels.to_dict("records")])
    tests = pd.DataFrame([{"parameter": r["factor"], "levels": str(r["levels"]),
                           "χ² (log-rank)": number(r["chi2"]), "df": str(r["levels"] - 1),
                           "p": p_text(r["p"]), "q (BH)": p_text(q.get(r["factor"], np.nan)),
                           "strata": r["strata"]}
                          for r in surv.tests.to_dict("records")])
    return levels, tests


def _significance(s: sensitivity.Sensitivity, q: dict[str, float]) -> str:
    """The terms and vanilla contrasts with q < 0.05 and, for a parameter's main effect, which
    way it moves the outcome: its highest and lowest estimated marginal mean, with the
    Tukey-adjusted difference between them where the factor has more than two levels."""
    parts = []
    for term in [t for t in family.tested_terms(s) if q.get(t, 1.0) < ALPHA]:
        e = s.effects[s.effects["factor"] == term] if len(s.effects) else pd.DataFrame()
        e = e.dropna(subset=["mean"]) if len(e) else e
        if len(e) >= 2:
            # with several data sets, each data set's own marginal means (never averaged)
            groups = e.groupby("dataset", sort=False) if "dataset" in e else [("", e)]
            texts = [_extremes(s, term, g, str(ds)) for ds, g in groups if len(g) >= 2]
            parts.append(f"`{term}` (" + "; ".join(texts) + f"; {p_eq('q', q[term])})")
        else:
            parts.append(f"`{term}` ({p_eq('q', q[term])})")
    if len(s.vanilla):
        for r in s.vanilla.to_dict("records"):
            qv = q.get(f"{r['dataset']}: {r['contrast']}", 1.0)
            if qv < ALPHA and r["contrast"].startswith("RollingQ (every cell)"):
                parts.append(f"RollingQ vs vanilla on {r['dataset']} ({r['delta']:+.3g}; "
                             f"{p_eq('q', qv)})")
    if not parts:
        return "nothing significant at q < 0.05 (BH)"
    return ", ".join(parts) + " significant at q < 0.05 (BH)"


def _extremes(s: sensitivity.Sensitivity, term: str, e: pd.DataFrame, dataset: str) -> str:
    """A parameter's highest and lowest marginal mean (on one data set), with their Tukey
    p-adj where the factor has more than two levels."""
    hi, lo = e.loc[e["mean"].idxmax()], e.loc[e["mean"].idxmin()]
    line = (f"{dataset + ': ' if dataset else ''}highest at {hi['level']}: {hi['mean']:.3g}, "
            f"lowest at {lo['level']}: {lo['mean']:.3g}")
    t = s.tukey
    if len(t):
        t = t[(t["factor"] == term) & t["group1"].isin([hi["level"], lo["level"]])
              & t["group2"].isin([hi["level"], lo["level"]])]
        if dataset and "dataset" in t:
            t = t[t["dataset"] == dataset]
    if len(t):
        line += f"; Tukey {p_eq('p-adj', t['p_adj'].iloc[0])}"
    return line


def _where(r: dict[str, Any]) -> dict[str, str]:
    """The data set column of a row from a data set's own model (several data sets)."""
    return {"data set": str(r["dataset"])} if isinstance(r.get("dataset"), str) else {}
