"""The study report: results folder(s) -> report.md, a self-contained report.html and PNG figures.

    python -m analysis.report results/rotation_ablation/20261125-153537/
    python -m analysis.report results/hpo/cremad-run/ results/hpo/ks-run/ --out reports/hpo

The study driver calls ``generate([folder])`` at the end of every study; any study can be
re-reported from its files alone. The report is a list of blocks (headings, paragraphs, tables,
figures) rendered twice: Markdown with the figures as files under ``figures/``, and HTML with
the same figures embedded as base64 PNG, so the HTML opens anywhere on its own.

Sections: what the study says (summary), provenance, trials (excluded ones counted), the main
table, the paper's claims on this study (analysis/claims.py), sensitivity statistics (ANOVA of
the headline and of every outcome of analysis/outcomes.py, or PED-ANOVA importance), figures,
the paper comparison, artifacts. Each section is built on its own: one that fails says so in
the report and the rest is still written.
"""

from __future__ import annotations

import argparse
import base64
import html
import logging
import re
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from analysis import (
    architectures,
    claims,
    family,
    importance,
    outcomes,
    paper,
    pareto,
    plots,
    remote,
    sensitivity,
    tables,
)
from analysis.claims import SYNTHETIC
from analysis.results import (
    INACTIVE,
    STATUSES,
    Results,
    ResultsError,
    identical_results,
    level_str,
    load,
)
from analysis.stats import ALPHA
from analysis.survival import Survival, survival

log = logging.getLogger(__name__)
EXIT_BAD_INPUT = 2
MAX_POINT_PLOTS = 6
PAPER_DATASETS = "CREMA-D (`cremad`), Kinetics-Sounds (`kinetics_sounds`), MOSEI (`mosei`)"
CLAIMS_TITLE = "The paper's claims on this study"
# the headline, then every outcome but the pooled adaptivity (kept for the paper's Table 2 number)
DEFAULT_METRICS = tuple(m for m in outcomes.OUTCOMES if m != "out_adaptivity_pooled")


# -- blocks ----------------------------------------------------------------------------------

@dataclass
class Heading:
    level: int
    text: str


@dataclass
class Para:
    text: str


@dataclass
class Bullets:
    items: list[str]


@dataclass
class Code:
    text: str
    lang: str = ""
    summary: str = ""  # HTML: folded under this line


@dataclass
class Table:
    frame: pd.DataFrame
    caption: str = ""


@dataclass
class Figure:
    path: Path  # the saved PNG
    caption: str


Block = Heading | Para | Bullets | Code | Table | Figure


# -- formatting ------------------------------------------------------------------------------

def _p(p: float) -> str:
    if pd.isna(p):
        return ""
    return "< 0.001" if p < 0.001 else f"{p:.3f}"


def _eq(name: str, p: float) -> str:
    """``q = 0.012`` or ``q < 0.001``."""
    text = _p(p)
    return f"{name} {text}" if text.startswith("<") else f"{name} = {text}"


def _num(x: float, digits: int = 2) -> str:
    return "" if pd.isna(x) else f"{x:.{digits}f}"


def _anova_strings(a: pd.DataFrame, q: dict[str, float] | None = None) -> pd.DataFrame:
    """The ANOVA table; ``q``: term -> its Benjamini–Hochberg q in the report's family."""
    rows = []
    for r in a.to_dict("records"):
        qv = (q or {}).get(r["term"], np.nan)
        sig = "" if pd.isna(qv) else ("yes" if qv < ALPHA else "no")
        rows.append({"term": r["term"], "df": f"{r['df']:.0f}", "sum of squares": _num(r["sum_sq"]),
                     "F": _num(r["F"]), "p": _p(r["p"]), "q (BH)": _p(qv),
                     "η²": _num(r["eta_sq"], 3), "partial η²": _num(r["partial_eta_sq"], 3),
                     "ω²": _num(r["omega_sq"], 3), f"q < {ALPHA}": sig})
    return pd.DataFrame(rows)


def _interval(d: float, lo: float, hi: float, digits: int = 2) -> str:
    if pd.isna(d):
        return "-"
    if pd.isna(lo):
        return f"{d:+.{digits}f}"
    return f"{d:+.{digits}f} [{lo:.{digits}f}, {hi:.{digits}f}]"


def _effects_strings(e: pd.DataFrame, unit: str = "%") -> pd.DataFrame:
    rows = []
    for r in e.to_dict("records"):
        if r["reference"]:
            delta = "reference (vanilla)" if r.get("vanilla") else "reference (first level)"
        else:
            delta = _interval(r["delta"], r["low"], r["high"], 2 if unit == "%" else 3)
        rows.append({**_where(r), "parameter": r["factor"], "level": r["level"],
                     "n": str(r["n"]),
                     f"adjusted mean ({unit})": _num(r["mean"], 2 if unit == "%" else 3),
                     "Δ vs reference [95% CI]": delta, "p": _p(r["p"])})
    return pd.DataFrame(rows)


def _where(r: dict[str, Any]) -> dict[str, str]:
    """The data set column of a row from a data set's own model (several data sets)."""
    return {"data set": str(r["dataset"])} if isinstance(r.get("dataset"), str) else {}


def _test_set_strings(t: pd.DataFrame) -> pd.DataFrame:
    rows = []
    for r in t.to_dict("records"):
        tests = "; ".join(f"seed {level_str(m['seed'])}: {m['on_only']}/{m['off_only']}, p "
                          f"{_p(m['p'])} (Holm {_p(m['p_holm'])})" for m in r["mcnemar"])
        rows.append({"data set": r["dataset"], "pairs": str(r["pairs"]),
                     "test samples": str(r["samples"]),
                     "effect (points) [BCa 95% CI]": r["reason"] or _interval(
                         r["effect"], r["low"], r["high"], 2),
                     "McNemar per pair (on-only/off-only)": tests or (
                         "- (each pair averages several trials of an arm)" if r["pairs"]
                         else "-"),
                     "pairs significant (Holm)": r["significant"] or "-"})
    return pd.DataFrame(rows)


def _architecture_strings(t: pd.DataFrame) -> pd.DataFrame:
    rows = []
    for r in t.to_dict("records"):
        verdict = f"**{r['verdict']}**"
        if architectures.smaller_than_paper(r):
            verdict += ", smaller than the paper's"
        tested = r["test_set"]
        test_set = "-"
        if tested["pairs"]:
            test_set = _interval(tested["effect"], tested["low"], tested["high"], 2)
            if tested["significant"]:
                test_set += f"; McNemar: {tested['significant']}"
        gain = r["paper_gain"]
        predicted = "-" if pd.isna(r["predict_low"]) else (
            f"[{r['predict_low']:+.2f}, {r['predict_high']:+.2f}]"
            + ("" if pd.isna(gain) else
               " (holds the paper's)" if r["paper_in_prediction"] else " (**not** the paper's)"))
        rows.append({
            "data set": r["dataset"], "pair (on − off)": r["pair"],
            "paper's rows": r["paper_row"] or "-", "seeds": str(r["n"]),
            "effect (points) [95% CI]": _interval(r["effect"], r["low"], r["high"], 2),
            "p": _p(r["p"]) or "-",
            "sign-flip p": "-" if pd.isna(r["sign_flip_p"]) else
            _p(r["sign_flip_p"]) + (" †" if r["sign_flip_short"] else ""),
            "p (Holm)": _p(r["p_holm"]) or "-",
            "Holm family": r["family"] if isinstance(r["family"], str) else "-",
            "TOST p (Holm)": _p(r["tost_holm"]) or "-", "verdict": verdict,
            "paper's gain": "-" if pd.isna(gain) else f"{gain:+.1f}",
            "smaller than the paper's: p (Holm)": _p(r["smaller_holm"]) or "-",
            "P(improvement) [95% CI]": f"{r['improved']}/{r['n']} "
            f"[{r['improve_low']:.2f}, {r['improve_high']:.2f}]",
            "one seed of ours, paper-style [95% PI]": predicted,
            "test set: BCa 95% CI": test_set})
    return pd.DataFrame(rows)


def _pooled_strings(t: pd.DataFrame) -> pd.DataFrame:
    return pd.DataFrame([{"claim": f"({r['claim']})", "data sets": r["datasets"],
                          "verdicts": r["verdicts"],
                          "the average over these data sets [95% CI]": _interval(
                              r["effect"], r["low"], r["high"], 3),
                          "df (Welch–Satterthwaite)": f"{r['df']:.1f}",
                          "differs between data sets: Welch F (p)":
                              f"{r['differ_f']:.2f} ({_p(r['differ_p'])})"}
                         for r in t.to_dict("records")])


def _simple_strings(e: pd.DataFrame, unit: str = "%") -> pd.DataFrame:
    digits = 2 if unit == "%" else 3
    return pd.DataFrame([{"data set": r["dataset"], "parameter": r["factor"],
                          "level vs reference": f"{r['level']} vs {r['reference']}",
                          "Δ [95% CI]": _interval(r["delta"], r["low"], r["high"], digits),
                          "p": _p(r["p"]), "p (Holm)": _p(r["p_holm"])}
                         for r in e.to_dict("records")])


def _tukey_strings(t: pd.DataFrame) -> pd.DataFrame:
    rows = []
    for r in t.to_dict("records"):
        rows.append({**_where(r), "parameter": r["factor"], "group1": r["group1"],
                     "group2": r["group2"],
                     "mean diff (2 − 1)": f"{r['meandiff']:+.2f}",
                     "95% CI": f"[{r['low']:.2f}, {r['high']:.2f}]", "p-adj": _p(r["p_adj"]),
                     "different": "**yes**" if r["reject"] else "no"})
    return pd.DataFrame(rows)


def _trend_strings(t: pd.DataFrame) -> pd.DataFrame:
    return pd.DataFrame([{**_where(r), "parameter": r["factor"], "levels": str(r["levels"]),
                          "slope per unit [95% CI]": _interval(r["slope"], r["low"], r["high"],
                                                               3),
                          "p (linear)": _p(r["p"]), "p (lack of fit)": _p(r["lack_of_fit_p"])}
                         for r in t.to_dict("records")])


def _vanilla_strings(v: pd.DataFrame, q: dict[str, float]) -> pd.DataFrame:
    return pd.DataFrame([{"data set": r["dataset"], "contrast": r["contrast"],
                          "cells": str(r["cells"]), "trials (on / vanilla)":
                          f"{r['n']} / {r['n_vanilla']}",
                          "Δ [95% CI]": _interval(r["delta"], r["low"], r["high"], 3),
                          "p": _p(r["p"]), "p (Holm, data set)": _p(r["p_holm"]),
                          "q (BH)": _p(q.get(f"{r['dataset']}: {r['contrast']}", np.nan)),
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
                           "χ² (log-rank)": _num(r["chi2"]), "df": str(r["levels"] - 1),
                           "p": _p(r["p"]), "q (BH)": _p(q.get(r["factor"], np.nan)),
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
            parts.append(f"`{term}` (" + "; ".join(texts) + f"; {_eq('q', q[term])})")
        else:
            parts.append(f"`{term}` ({_eq('q', q[term])})")
    if len(s.vanilla):
        for r in s.vanilla.to_dict("records"):
            qv = q.get(f"{r['dataset']}: {r['contrast']}", 1.0)
            if qv < ALPHA and r["contrast"].startswith("RollingQ (every cell)"):
                parts.append(f"RollingQ vs vanilla on {r['dataset']} ({r['delta']:+.3g}; "
                             f"{_eq('q', qv)})")
    if not parts:
        return "nothing significant at q < 0.05 (BH)"
    return ", ".join(parts) + " significant at q < 0.05 (BH)"


def _extremes(s: sensitivity.Sensitivity, term: str, e: pd.DataFrame, dataset: str) -> str:
    """A parameter's highest and lowest marginal mean (on one data set), with their Tukey
    p-adj where the factor has more than two levels."""
    hi, lo = e.loc[e["mean"].idxmax()], e.loc[e["mean"].idxmin()]
    text = (f"{dataset + ': ' if dataset else ''}highest at {hi['level']}: {hi['mean']:.3g}, "
            f"lowest at {lo['level']}: {lo['mean']:.3g}")
    t = s.tukey
    if len(t):
        t = t[(t["factor"] == term) & t["group1"].isin([hi["level"], lo["level"]])
              & t["group2"].isin([hi["level"], lo["level"]])]
        if dataset and "dataset" in t:
            t = t[t["dataset"] == dataset]
    if len(t):
        text += f"; Tukey {_eq('p-adj', t['p_adj'].iloc[0])}"
    return text


# -- sections --------------------------------------------------------------------------------

class Builder:
    """Builds the report's blocks for one set of results, saving figures under ``out``."""

    def __init__(self, res: Results, out: Path, metrics: tuple[str, ...] = DEFAULT_METRICS):
        self.res = res
        self.out = out
        self.metrics = metrics
        self.figdir = out / "figures"
        self.blocks: list[Block] = []
        self.summary: list[str] = []
        self.table = pd.DataFrame()

    def add(self, *blocks: Block) -> None:
        self.blocks.extend(blocks)

    def figure(self, name: str, fig: object | None, caption: str) -> bool:
        if fig is None:
            return False
        path = plots.save(fig, self.figdir / f"{name}.png")
        self.add(Figure(path, caption))
        return True

    def section(self, title: str, build: Callable[[], None]) -> None:
        """A heading and its content; a failure is reported in place of the content."""
        self.add(Heading(2, title))
        try:
            build()
        except Exception as e:  # noqa: BLE001 - one broken section must not lose the report
            log.exception("report section %r failed", title)
            self.add(Para(f"This section could not be generated ({type(e).__name__}: {e})."))

    # 1. provenance
    def provenance(self) -> None:
        res = self.res
        for i, d in enumerate(res.dirs):
            if len(res.dirs) > 1:
                self.add(Heading(3, f"{i}: `{d.name}`"))
            self.add(Table(pd.DataFrame(tables.provenance(res, i), columns=["field", "value"])))
            spec = d / "space.yaml"
            if spec.is_file():
                self.add(Para("The merged spec (`space.yaml`), verbatim:"),
                         Code(spec.read_text().rstrip(), "yaml", "space.yaml"))
        for note in res.notes:
            self.add(Para(note))

    # 2. trials
    def trials(self) -> None:
        res = self.res
        counts = tables.status_counts(res)
        self.add(Table(counts, "Trials by status (retried: trials restarted after a failure)."))
        n_fin = len(res.finished)
        total = len(res.trials) - len(res.duplicates)
        excluded = {s: int((res.trials["status"] == s).sum()) for s in STATUSES[1:]}
        no_metric = int(((res.trials["status"] == "finished") & res.trials["acc"].isna()).sum())
        parts = [f"{n} {s}" for s, n in excluded.items() if n]
        if no_metric:
            parts.append(f"{no_metric} finished without a headline accuracy")
        if n_fin:
            text = (f"The statistics use the {n_fin} finished experiments of {total}"
                    + (" (structural copies counted once)" if len(res.duplicates) else ""))
            text += f"; excluded: {', '.join(parts)}." if parts else "; none is excluded."
        else:
            text = f"No trial of {total} has finished" + (f" ({', '.join(parts)})."
                                                        if parts else ".")
        if excluded.get("stopped"):
            text += (f" The {excluded['stopped']} trials stopped early by ASHA ran a shorter "
                     f"budget and are not comparable, so they are excluded and counted.")
        self.add(Para(text))
        self.summary.append(text)
        ex = tables.excluded_trials(res)
        if len(ex):
            self.add(Table(ex, "Trials left out of the statistics (first 30)."))
        dup = tables.duplicate_trials(res)
        if len(dup):
            text = (f"{len(dup)} finished trials are structural copies: their effective "
                    f"configuration (the config with the keys that do nothing removed: "
                    f"{'; '.join(INACTIVE)}) and seed are those of another trial, so they are "
                    f"the same experiment and every statistic counts it once.")
            self.add(Para(text), Table(dup, "Structural copies, counted once (as the trial in "
                                            "`copy of`)."))
            self.summary.append(f"{len(dup)} structural copies counted once (see Trials).")
        same = identical_results(res)
        if same:
            self.add(Para("Trials with bit-identical results although their configurations "
                          "differ (kept, as they are distinct experiments; a parameter that "
                          "did not act, such as a rotation cap above what fires): "
                          + "; ".join(", ".join(f"`{t}`" for t in g) for g in same[:20])
                          + (f"; and {len(same) - 20} more groups" if len(same) > 20 else "")
                          + "."))

    # 3. main table
    def main_table(self) -> None:
        res = self.res
        self.table = tables.main_table(res)
        if not len(self.table):
            self.add(Para("No finished trial has a headline accuracy, so there is no table."))
            return
        t = tables.format_main(self.table, res)
        if res.mode == "optuna":
            caption = (f"Top {tables.TOP_CONFIGS} configurations per data set by mean validation "
                       f"accuracy (the search's selection; the best in bold). An Optuna study "
                       f"has no baseline cell, so there is no Δ.")
        else:
            bases = " and ".join(f"`{b}`" for b in dict.fromkeys(
                self.table.loc[self.table["baseline"], "variant"]))
            caption = (f"Per data set × variant ({res.variant_title}); mean ± sd over seeds "
                       f"(n seeds), 95 % t-interval, the difference to the baseline {bases} "
                       f"with its 95 % interval (paired by seed where the seeds match, else "
                       f"Welch). Bold: the best mean per data set.")
            if any(b != res.baseline for b in self.table.loc[self.table["baseline"], "variant"]):
                caption += (f" The vanilla cell `{res.baseline}` has no finished trial, so the "
                            f"first variant stands in as the baseline.")
        self.add(Para("Headline: **test accuracy at the best validation epoch** "
                      "(`test_acc_at_best_val`). Beside it, labelled, the paper-style number: "
                      "the best test epoch (`best_test_acc`, model selection on the test set "
                      "as the paper reports it). All accuracies in percent."),
                 Table(t, caption))
        if (self.table["n"] < 2).any():
            self.add(Para("Variants with a single finished seed have no sd and no interval; "
                          "run more seeds (`seeds: [0, 1, 2]`) to compare them."))
        if res.nuisance and res.mode != "optuna":
            self.add(Para("Each variant uses the nuisance setting with the best mean "
                          "validation accuracy (column `nuisance setting`)."))
        for ds, d in self.table.groupby("dataset", sort=False):
            best = d[d["best"]].iloc[0]
            line = (f"{ds}: best {res.variant_title} = `{best['variant']}` "
                    f"({tables.mean_sd(best['mean'], best['sd'])} %")
            if res.mode != "optuna" and not best["baseline"] and not pd.isna(best["delta"]):
                line += f", Δ vs baseline {best['delta']:+.2f}"
                if not pd.isna(best["delta_low"]):
                    line += f" [{best['delta_low']:.2f}, {best['delta_high']:.2f}]"
            elif best["baseline"]:
                line += ", the baseline itself"
            self.summary.append(line + ").")

    # 4. sensitivity
    def sensitivity(self) -> None:
        res = self.res
        if res.mode == "optuna":
            self.importance()
            self.add(Para("No ANOVA and no p-values: the Optuna sampler chose each "
                          "configuration from the outcomes of the trials before it, so the "
                          "sample is adaptive and an OLS test's error rate does not hold. Read "
                          "the importance above and the best configurations of the main table."))
            return
        metrics = list(dict.fromkeys(["acc", *self.metrics]))  # the headline always
        fits = {m: sensitivity.analyse(res, m) for m in metrics if m not in outcomes.CENSORED}
        survs = {m: survival(res, m) for m in metrics if m in outcomes.CENSORED}
        tests = family.fdr(fits, survs)
        q = {m: dict(zip(g["term"], g["q"], strict=True)) for m, g in tests.groupby("metric")}
        fam = (f"the Benjamini–Hochberg q over the family of all {len(tests)} effect tests "
               f"of this section (every outcome's ANOVA terms, blocks aside, its contrasts "
               f"against the vanilla arm and its log-rank tests), false discovery rate 5 %")
        head = fits["acc"]
        design = ("a randomised complete block design: every configuration is trained once "
                  "with each seed (its initialisation and data order), so the seed is a block "
                  "(`C(seed)`; with several data sets, seeds within each data set)"
                  if head.blocked else
                  "seeds as replicates (too few trials for the seed block)")
        self.add(Para(f"Design: {design}. One trial per experiment: structural copies are "
                      f"counted once (see Trials). Every parameter is a categorical factor; "
                      f"Type II ANOVA; η² = SS / SS_total, partial η² = SS / (SS + "
                      f"SS_residual), ω² = (SS − df·MS_residual) / (SS_total + MS_residual). "
                      f"q (BH) is {fam}; p is unadjusted."))
        self.model("acc", head, q.get("acc", {}), "%", headline=True)
        self.summary.append("ANOVA of the headline accuracy: "
                            + _significance(head, q.get("acc", {})) + ".")
        rot = tables.realised_rotations(res)
        if len(rot):
            self.add(Table(rot, "Rotations that fired per rotation cap (`out_rotations`): a "
                                "cap above what fires trains the same model as a lower one."))
        others = [m for m in self.metrics if m != "acc"]
        if others:
            self.outcome_sensitivity(others, fits, survs, q)
        self.summary.append(f"These significance lines are exploratory: q is {fam}.")

    def model(self, metric: str, s: sensitivity.Sensitivity, q: dict[str, float], unit: str,
              headline: bool = False) -> None:
        """One outcome's model: ANOVA, marginal means, Tukey, trends, vanilla contrasts."""
        label = "the headline accuracy" if headline else f"`{metric}`"
        if s.formula:
            self.add(Para(f"OLS on {s.n} trials: `{s.formula}`."),
                     Table(_anova_strings(s.anova, q), f"Type II ANOVA of {label}."))
        for note in s.notes:
            self.add(Para(note))
        if not s.formula and not len(s.vanilla):
            if not s.notes:
                self.add(Para("No model could be fitted."))
            return
        if len(s.effects):
            self.add(Table(_effects_strings(s.effects, unit),
                           f"Estimated marginal means of {label} (the model's prediction "
                           f"averaged over a balanced grid of the other parameters and the "
                           f"seed blocks) and each level's difference to the reference level "
                           f"(the vanilla level where the parameter has one, else its first) "
                           f"with its 95 % interval; each p is unadjusted, Tukey HSD below "
                           f"controls the family-wise error within a parameter."
                           if headline else f"Estimated marginal means of {label} and each "
                           f"level's difference to the reference level (95 % interval)."))
        if len(s.simple):
            self.add(Table(_simple_strings(s.simple, unit),
                           f"Simple effects of {label}: each level against the reference level "
                           f"within each data set, from the data set's own model (its trials, "
                           f"its seed block, its residual variance: data sets differ in both "
                           f"scale and noise); p (Holm) over each parameter's simple effects "
                           f"(every data set × level). A parameter whose interaction with the "
                           f"data set is significant above acts differently per data set."))
        if len(s.tukey):
            self.add(Table(_tukey_strings(s.tukey),
                           "Tukey HSD on the estimated marginal means for parameters with more "
                           "than two levels (Tukey–Kramer, family-wise 5 % within a "
                           "parameter); mean diff = group2 − group1." if headline else
                           f"Tukey HSD of {label}."))
        if len(s.trends):
            self.add(Table(_trend_strings(s.trends),
                           f"Dose response of {label}: the numeric parameter as a linear term "
                           f"(slope per unit of the parameter) in the main-effect model with "
                           f"the blocks, and the lack of fit of that line against the "
                           f"categorical factor (small p: the response is not linear)."))
        if len(s.vanilla):
            self.add(Table(_vanilla_strings(s.vanilla, q),
                           f"The vanilla arm against RollingQ ({label}): per data set, a "
                           f"cell-means model with the seed block; each contrast averages the "
                           f"RollingQ cells it names with equal weight; p (Holm) over the data "
                           f"set's contrasts."))

    def outcome_sensitivity(self, metrics: list[str], fits: dict[str, sensitivity.Sensitivity],
                            survs: dict[str, Survival],
                            q: dict[str, dict[str, float]]) -> None:
        """The same statistics for each outcome (analysis/outcomes.py); a censored time gets
        Kaplan–Meier and the log-rank test."""
        self.add(Heading(3, "Every outcome"),
                 Para("The same model fitted to each outcome the claims rest on; a trial "
                      "without the outcome (no attention fusion: no AIR) is left out of that "
                      "outcome's model. The time to convergence is censored (a trial whose "
                      "|AIR| never falls to β is still running when training ends), so it is "
                      "survival data: Kaplan–Meier per level and a log-rank test stratified "
                      "by seed, not an ANOVA."))
        lines = []
        for metric in metrics:
            what, unit = outcomes.OUTCOMES[metric]
            self.add(Heading(4, f"{what} (`{metric}`" + (f", {unit})" if unit else ")")))
            if metric in outcomes.CENSORED:
                lines.append(self.censored(survs[metric], what, q.get(metric, {})))
                continue
            s = fits[metric]
            self.model(metric, s, q.get(metric, {}), unit or "value")
            if s.formula or len(s.vanilla):
                lines.append(f"ANOVA of the {what}: {_significance(s, q.get(metric, {}))}")
            else:
                lines.append(f"{what}: no model ({s.notes[-1] if s.notes else 'no data'})")
        self.summary.extend(f"{line}." for line in lines)

    def censored(self, surv: Survival, what: str, q: dict[str, float]) -> str:
        """A censored time outcome: Kaplan–Meier per level, the log-rank tests, the figure;
        returns the summary line."""
        metric = surv.column
        for note in surv.notes:
            self.add(Para(note))
        if not len(surv.levels):
            return f"{what}: no trial to analyse"
        levels, tests = _survival_strings(surv, q)
        self.add(Table(levels, f"`{metric}` per level: trials whose clock started (a rotation "
                               f"fired), how many converged, and the Kaplan–Meier median "
                               f"(`not reached`: under half converged)."))
        if len(tests):
            self.add(Table(tests, "Log-rank test across each parameter's levels "
                                  "(statsmodels `survdiff`), stratified by seed (within data "
                                  "set); p unadjusted, q (BH) in the section's family."))
        for key in dict.fromkeys(surv.levels["factor"]):
            name = "km_" + re.sub(r"[^A-Za-z0-9]+", "_", key)
            self.figure(name, plots.convergence_km(surv, key),
                        f"Kaplan–Meier: share of trials whose |AIR| is still above β, epochs "
                        f"after the first rotation, per level of `{key}`.")
        found = [f"`{r['factor']}` (converged "
                 + ", ".join(f"{lv['level']}: {lv['share']:.0%}"
                             for lv in surv.levels[surv.levels["factor"] == r["factor"]]
                             .to_dict("records")) + f"; {_eq('q', q[r['factor']])})"
                 for r in surv.tests.to_dict("records")
                 if q.get(r["factor"], 1.0) < ALPHA]
        return (f"Log-rank test of the {what}: "
                + (", ".join(found) + " significant at q < 0.05 (BH)" if found
                   else "nothing significant at q < 0.05 (BH)"))

    # the paper's claims
    def claims(self) -> None:
        res = self.res
        judgements = claims.judge(res)
        family, _ = claims.declarations(res)
        self.figure("claims_forest", plots.claims_forest(judgements),
                    "Each claim's effect per data set in units of its equivalence margin "
                    "(the claimed direction to the right), with its interval at its Holm level "
                    "(the one the verdict reads); 0 solid, the margin ±1 dashed; the colour "
                    "is the verdict.")
        self.add(Para(
            f"Each claim of the paper tested on this study's trials: RollingQ on (enabled, a "
            f"rotation allowed) against off (vanilla), paired by seed within each configuration "
            f"that has both arms, the per-seed differences averaged over configurations "
            f"(claim 1: the Vanilla MT trials' growth of |AIR| from initialisation). The Holm "
            f"family is declared by the study (`claims.family: {family}`: "
            f"{claims.FAMILIES[family]}) and named beside each verdict: p (Holm) is "
            f"Holm-adjusted over it, and each effect's interval is at its Holm level "
            f"(0.05 / (m − k + 1) for the k-th smallest of the family's m p-values while Holm "
            f"rejects, else the level where it stopped), so it excludes 0 exactly when the "
            f"verdict does; the simultaneous interval over the family (Bonferroni, level "
            f"1 − 0.05/m) is in the evidence table. p is the raw two-sided one-sample t-test; "
            f"beside it the exact sign-flip p, which needs no normality (†: with n seeds its "
            f"smallest value 2/2ⁿ is above the claim's Holm level, so only the t-test's normal "
            f"model can decide the claim). Verdict: "
            f"**reproduced** / **contradicted** when p (Holm) < 0.05 on the claimed / the "
            f"other side; **no effect** when the equivalence test (TOST) against the margin "
            f"(the smallest effect of interest, declared independently of the paper) "
            f"has Holm p < 0.05 over the family's equivalence tests; **inconclusive** "
            f"(we cannot tell yet) otherwise, with the seeds needed as a range: the verdict is "
            f"reached with 80 % power (at an effect of the margin, and at no effect) at the "
            f"observed seed sd (the lower end) and at its {100 * claims.SD_UCL:.0f} % upper "
            f"confidence limit (the recommendation); **deterministic: no test** when every seed "
            f"gives the same difference."),
                 Table(claims.table(res, judgements),
                       "The paper's claims: the effect (on − off, or the vanilla growth) with "
                       "its interval at its Holm level, the raw t and sign-flip p, the Holm p "
                       "and its family, the equivalence margin (the default in "
                       "docs/report.md, or the one the study's spec declares) and the TOST's "
                       "Holm p, the verdict, and the paper's figure (a reference, not a "
                       "margin)."),
                 Table(claims.evidence_table(res, judgements),
                       "What each verdict rests on: the per-seed differences, the raw 95 % "
                       "t-interval, the simultaneous interval over the family, the "
                       "standardised effect d_z, and the trials used per arm "
                       "of those the study ran for it."))
        per_pair = self.architectures()
        if SYNTHETIC in res.datasets:
            self.add(Para("The synthetic data set is built to show RollingQ's mechanism, so "
                          "its verdicts are mechanism checks, not evidence about the paper's "
                          "data sets. Claim 2 is a manipulation check everywhere: the trigger "
                          "rotates until |AIR| ≤ β."))
        lost = claims.failures(res)
        if len(lost) and (lost["on_lost"] + lost["off_lost"]).sum():
            self.add(Table(self._failures(lost),
                           "Trials lost by arm (diverged, errored or incomplete) and the Fisher "
                           "exact test of losing a trial by arm: a method that fails more "
                           "often is judged on its survivors."))
            line = claims.worst_case_text(claims.worst_case(res, judgements))
            if line:
                self.add(Para(line))
        fav = outcomes.favoured_modalities(res.trials)
        self.add(Para("Favoured modality (declared, never chosen from the shares under test): "
                      + "; ".join(f"{ds}: `{m}` ({how})" if m else f"{ds}: none ({how})"
                                  for ds, (m, how) in fav.items()) + "."))
        tested = claims.test_set(res)
        if len(tested) and (tested["pairs"] > 0).any():
            self.add(Table(_test_set_strings(tested),
                           "Claim (6) from the test set's per-sample predictions, beside the "
                           "seed-level test above: the same on/off pairs, each test sample's "
                           "accuracy difference averaged as the claim averages (its mean is "
                           "the claim's effect), a paired bootstrap over test samples (BCa, "
                           f"{claims.BOOTSTRAP_RESAMPLES} resamples, 95 %), and per pair "
                           "McNemar's test (on-only / off-only correct samples; exact under 25 "
                           "discordant) with Holm over the data set's pairs. Given the trained "
                           "models this is the test set's sampling uncertainty only; the "
                           "verdict rests on the seeds, as the claim is about training runs."))
        across = claims.pooled(judgements)
        if len(across):
            self.add(Table(_pooled_strings(across),
                           "Each claim on several data sets: the average over these data sets "
                           "(the unweighted mean of their effects, a t interval with "
                           "Welch–Satterthwaite df: the seed sds are estimated, and the data "
                           "sets are these, not a sample of data sets), a description with no p "
                           "and outside the Holm family; and Welch's heteroscedastic test of "
                           "whether the effect differs between the data sets."))
            for sentence in claims.pooled_text(across, judgements):
                self.add(Para(sentence))
        for sentence in (claims.cannot_judge(judgements) + claims.grow_commands(res, judgements)
                         + claims.regrouped(res, judgements)):
            self.add(Para(sentence))
        self.figure("air_convergence", plots.air_convergence(res),
                    "Validation |AIR| over epochs, RollingQ on vs off (each arm averaged "
                    "within a seed, then the mean and 95 % t-band over seeds), β dashed: "
                    "claims 1 and 2, a column per data set.")
        for ds in res.datasets:
            here = [j for j in judgements if j.dataset == ds]
            verdicts = ", ".join(f"({j.claim.number}) {j.verdict}" for j in here)
            check = " (mechanism checks)" if ds == SYNTHETIC else ""
            names = sorted({j.family_name for j in here if j.family_name})
            self.summary.append(f"The paper's claims{' on ' + ds if len(res.datasets) > 1 else ''}"
                                f"{check}: {verdicts}"
                                + (f"; Holm over {' and '.join(names)}" if names else "") + ".")
        self.summary.extend(per_pair)

    def architectures(self) -> list[str]:
        """RollingQ per architecture: each on/off pair of the study on each data set; returns
        the summary's lines."""
        t = architectures.pairs(self.res)
        if not len(t):
            return []
        family, _ = claims.declarations(self.res)
        margin = sorted({f"±{m:g}" for m in t["margin"]})
        self.add(Heading(3, "RollingQ per architecture"),
                 Table(_architecture_strings(t),
                       f"RollingQ's effect on the headline accuracy per pair (a RollingQ "
                       f"variant against the same configuration without it, the paper's Table "
                       f"1 rows), per data set: the paired difference over seeds with its 95 % "
                       f"t-interval, the raw t and exact sign-flip p (†: it cannot reach the "
                       f"pair's Holm level with these seeds), Holm over "
                       f"{claims.FAMILIES[family].replace('claims', 'pairs')} (the declared "
                       f"family), the TOST against claim 6's margin ({', '.join(margin)}), the "
                       f"verdict as the claims decide it; the paper's gain for the pair (one "
                       f"seed each, best test epoch) with a one-sided test that ours is smaller "
                       f"(Holm over the same pairs); the share of seeds where RollingQ wins "
                       f"(a tie is no win) with its Clopper–Pearson interval; the 95 % "
                       f"prediction interval of one seed's paper-style difference, against the "
                       f"paper's single-seed gain; and the test set's paired BCa bootstrap "
                       f"with McNemar per seed where the trials saved predictions. The claims "
                       f"above average these pairs and stay the headline."))
        lines = []
        for ds, g in t.groupby("dataset", sort=False):
            # the paper's row names a pair unless several pairs share it (a rotation ablation)
            named = g["paper_row"].ne("") & ~g["paper_row"].duplicated(keep=False)
            g = g.assign(label=np.where(named, g["paper_row"].str.split(" vs ").str[0],
                                        "`" + g["on"] + "`"))
            parts = [f"{r['label']} {r['effect']:+.2f} "
                     f"({r['verdict']}" + (", smaller than the paper's"
                                            if architectures.smaller_than_paper(r) else "")
                     + ")" for r in g.to_dict("records")]
            lines.append(f"RollingQ per architecture"
                         f"{' on ' + str(ds) if len(self.res.datasets) > 1 else ''}: "
                         + "; ".join(parts) + ".")
        return lines

    @staticmethod
    def _failures(lost: pd.DataFrame) -> pd.DataFrame:
        return pd.DataFrame([{"data set": r["dataset"],
                              "RollingQ on: lost of trials": f"{r['on_lost']} of {r['on_trials']}",
                              "off: lost of trials": f"{r['off_lost']} of {r['off_trials']}",
                              "Fisher p": _p(r["p"])} for r in lost.to_dict("records")])

    def importance(self) -> None:
        res = self.res
        imps = importance.importance(res)
        self.add(Heading(3, "Parameter importance"))
        if not imps:
            self.add(Para("Fewer than two finished configurations: no importance."))
        for imp in imps:
            frame = pd.DataFrame({"parameter": list(imp.values),
                                  "importance": [f"{v:.3f}" for v in imp.values.values()]})
            self.add(Para(f"{imp.dataset}: evaluator {imp.evaluator}. The study is rebuilt "
                          f"offline from trials.csv on {imp.target}: {imp.configurations} "
                          f"configurations from {imp.trials} finished trials (seeds averaged); "
                          f"excluded: {imp.stopped} stopped early by ASHA, "
                          f"{imp.other_excluded} errored, diverged or incomplete."),
                     Table(frame, f"Importance ({imp.dataset})."))
            for note in imp.notes:
                self.add(Para(note))
            top = next(iter(imp.values), None)
            if top:
                self.summary.append(f"{imp.dataset}: the most important parameter is `{top}` "
                                    f"({imp.values[top]:.2f}, PED-ANOVA).")
        for sentence in importance.journal_summary(res):
            self.add(Para(sentence))
        self.figure("importance", plots.importance_bars(imps), "PED-ANOVA parameter importance.")
        self.figure("history", plots.optimization_history(res),
                    "Optimization history: each finished trial's validation accuracy and the "
                    "running best.")

    # 5. figures
    def figures(self) -> None:
        res = self.res
        _, _, lines = plots.series(res, res.finished)
        per = f"one line per {lines}, mean and 95 % t-band over seeds"
        if not self.figure("air", plots.air_curves(res),
                           f"AIR over epochs ({per}); ▼ marks a rotation event of a trial."):
            self.add(Para("No AIR was recorded (no attention fusion, or no curves.csv)."))
        self.figure("attention_shares", plots.attention_shares(res),
                    f"Attention share of each modality over epochs, validation split ({per}).")
        if self.figure("noise", plots.noise_curves(res),
                       f"Test accuracy under Gaussian noise on one modality at a time ({per})."):
            self.add(Table(tables.noise_table(res),
                           f"Accuracy (%) under noise, the paper's Table 3 layout; recipe: "
                           f"{tables.noise_recipe(res)}."))
        else:
            self.add(Para("No noise-robustness diagnostics in trials.csv."))
        attn = tables.attention_noise_table(res)
        if len(attn):
            self.add(Table(attn, "Does attention follow input quality? (Table 2.) Per noised "
                                 "modality: r between its attention share and \"it is noised\" "
                                 "over clean and noised evaluations of the same samples (< 0: "
                                 "attention moves away from the noise), and the mean share "
                                 "shift (noised − clean); the pooled r mixes the modalities' "
                                 "share gap into its variance and is kept for the paper's "
                                 f"number. Protocol: {tables.attention_protocol(res)}."))
        self.figure("beta_rho", plots.beta_rho_heatmaps(res),
                    "β × ρ: mean of the headline and its seed sd (other parameters averaged).")
        for key, hue in self._point_plots():
            name = "points_" + re.sub(r"[^A-Za-z0-9]+", "_", key)
            self.figure(name, plots.factor_points(res, key, hue),
                        f"Effect of `{key}`" + (f" per `{hue}`" if hue else "")
                        + ": mean and 95 % t-interval over seeds.")

    def _point_plots(self) -> list[tuple[str, str | None]]:
        res = self.res
        df = res.finished
        active = [f for f in res.factors
                  if 2 <= df[f.key].nunique() <= 12]
        first = ("rollingq.max_rotations", "model.fusion_layers")
        active.sort(key=lambda f: (f.key not in first, res.factors.index(f)))
        out = []
        for f in active[:MAX_POINT_PLOTS]:
            hues = [g for g in active if g.key != f.key and df[g.key].nunique() <= 4]
            hue = min(hues, key=lambda g: df[g.key].nunique()).key if hues else None
            out.append((f.key, hue))
        return out

    # 6. the paper
    def paper(self) -> None:
        res = self.res
        ours = [d for d in res.datasets if d in paper.PAPER_TABLE1]
        if not ours:
            self.add(Para(f"The data set ({', '.join(res.datasets)}) is not one of the paper's "
                          f"({PAPER_DATASETS}), so there is nothing to compare with."))
            return
        self.add(Para(paper.PROTOCOL))
        comp = paper.paper_comparison(res, self.table)
        if len(comp):
            self.add(Table(comp, "Table 1 of the paper beside ours (percent). The paper's "
                                 "number is one seed at its best test epoch; the prediction "
                                 "interval (mean ± t(n − 1)·sd·√(1 + 1/n) of our paper-style "
                                 "numbers) says where one seed of ours would fall 95 % of the "
                                 "time, so a paper number outside it is unlikely to come from "
                                 "one run of this setup."))
        else:
            self.add(Para("None of the variants corresponds to a row of the paper's Table 1."))
        noise = paper.paper_noise_comparison(res)
        if len(noise):
            recipe = tables.noise_recipe(res)
            self.add(Table(noise, "Table 3 (Kinetics-Sounds, noise on audio) beside ours; the "
                                  "paper cites MultiBench's white noise (x + λ·N(0, 1), our "
                                  f"`absolute` recipe); ours: {recipe}"
                                  + ("." if recipe == "absolute" else
                                     ", whose λ axis is not the paper's.")))
        attn = paper.paper_attention_comparison(res)
        if len(attn):
            self.add(Table(attn, "Table 2: Pearson r between attention share and \"input is "
                                 "noise\" (the paper's protocol and sign are unpublished; it "
                                 "reports positive values and reads |r| as strength). Ours in "
                                 "claim 4's sign, −r (> 0: attention moves away from the noised "
                                 "input), and |r|; the pooled variant is the one comparable with "
                                 "the paper's single number, claim 4 tests the per-modality one. "
                                 f"Ours: {tables.attention_protocol(res)}."))

    # Pareto studies
    def pareto(self) -> None:
        res = self.res
        objs = " and ".join(f"{'maximise' if mode == 'max' else 'minimise'} `{m}`"
                            for m, mode in res.objectives)
        keys = [f.key for f in [*res.factors, *res.nuisance]]
        self.add(Para(f"The study has {len(res.objectives)} objectives: {objs}, each at the "
                      f"trial's last epoch (what the sampler was given). A configuration is on "
                      f"the front when no other is at least as good in every objective and "
                      f"better in one; seeds of a configuration are averaged first (sd beside "
                      f"the mean)."))
        tune = {"metric": [m for m, _ in res.objectives],
                "metric_mode": [mode for _, mode in res.objectives]}
        for ds in res.datasets:
            t = res.trials[(res.trials["dataset"] == ds) & (res.trials["duplicate_of"] == "")]
            c = res.curves[res.curves["dataset"] == ds]
            if len(res.dirs) > 1:  # trial ids are unique within a study
                t = t.assign(trial_id=t["study"].astype(str) + ":" + t["trial_id"].astype(str))
                c = c.assign(trial_id=c["study"].astype(str) + ":" + c["trial_id"].astype(str))
            f = pareto.front(t, c, tune, keys)
            where = f" on {ds}" if len(res.datasets) > 1 else ""
            left = ", ".join(f"{n} {s}" for s, n in f.excluded.items() if n)
            text = (f"{len(f.front)} of {len(f.points)} configurations{where} are on the front"
                    + (f" (left out: {left})." if left else "."))
            self.add(Para(text))
            self.summary.append(f"Pareto front{where}: {len(f.front)} of {len(f.points)} "
                                f"configurations ({objs}).")
            if not len(f.points):
                continue
            cols = [*f.params, *f.objectives, *[f"{m}_sd" for m in f.objectives
                                                 if f.points["seeds"].max() > 1],
                    "seeds", "trials"]
            shown = f.front[cols].reset_index(drop=True)
            for m in cols[len(f.params):-2]:
                shown[m] = shown[m].map(lambda v: "" if pd.isna(v) else f"{v:.4f}")
            self.add(Table(shown,
                           f"The non-dominated configurations{where}, by "
                           f"{f.objectives[0]}."))
            self.figure(f"pareto_{ds}".replace("/", "_"), pareto.figure(f),
                        f"Every finished configuration{where} on {f.objectives[0]} and "
                        f"{f.objectives[1]}; the front in red.")

    # 7. artifacts
    def artifacts(self) -> None:
        res = self.res
        items = []
        for i, d in enumerate(res.dirs):
            files = ", ".join(f"`{p.name}`" for p in sorted(d.iterdir()) if p.is_file())
            items.append(f"`{d}`: {files}")
            command = res.metas[i].get("command")
            if command:
                items.append(f"reproduce: `{command}`")
        if self.figdir.is_dir():
            items.append(f"figures: `{self.figdir}`")
        items.append("re-render this report: `python -m analysis.report "
                     + " ".join(str(d) for d in res.dirs) + "`")
        self.add(Bullets(items))

    def build(self) -> list[Block]:
        res = self.res
        space = res.metas[0].get("space") or res.designs[0].space
        question = res.designs[0].question or res.metas[0].get("question") or ""
        self.add(Heading(1, f"Study report: {space}"))
        if question:
            self.add(Para(f"**Question:** {question}"))
        self.add(Para(f"Generated {time.strftime('%Y-%m-%d %H:%M:%S %Z')} from "
                      + ", ".join(f"`{d}`" for d in res.dirs) + "."))
        head = len(self.blocks)
        self.section("Provenance", self.provenance)
        self.section("Trials", self.trials)
        if not len(res.finished):
            self.add(Heading(2, "Results"),
                     Para(f"There is nothing to analyse: none of the {len(res.trials)} trials "
                          f"finished with a headline accuracy."))
            self.summary.append("There is nothing to analyse yet.")
        else:
            self.section("Main table", self.main_table)
            self.section(CLAIMS_TITLE, self.claims)
            if len(res.objectives) > 1:
                self.section("Pareto front", self.pareto)
            self.section("Sensitivity", self.sensitivity)
            self.section("Figures", self.figures)
            self.section("Comparison with the paper", self.paper)
        self.section("Artifacts", self.artifacts)
        self.blocks[head:head] = [Heading(2, "What the study says"), Bullets(self.summary)]
        return self.blocks


# -- rendering -------------------------------------------------------------------------------

def _md_cell(x: object) -> str:
    return str(x).replace("|", "\\|").replace("\n", " ")


def render_markdown(blocks: list[Block], out: Path) -> str:
    lines: list[str] = []
    for b in blocks:
        if isinstance(b, Heading):
            lines += ["#" * b.level + " " + b.text, ""]
        elif isinstance(b, Para):
            lines += [b.text, ""]
        elif isinstance(b, Bullets):
            lines += [f"- {item}" for item in b.items] + [""]
        elif isinstance(b, Code):
            lines += [f"```{b.lang}", b.text, "```", ""]
        elif isinstance(b, Table):
            cols = [str(c) for c in b.frame.columns]
            lines += ["| " + " | ".join(_md_cell(c) for c in cols) + " |",
                      "|" + "|".join("---" for _ in cols) + "|"]
            lines += ["| " + " | ".join(_md_cell(v) for v in row) + " |"
                      for row in b.frame.itertuples(index=False)]
            if b.caption:
                lines += ["", f"*{b.caption}*"]
            lines.append("")
        elif isinstance(b, Figure):
            rel = b.path.relative_to(out) if b.path.is_relative_to(out) else b.path
            lines += [f"![{b.caption}]({rel.as_posix()})", "", f"*{b.caption}*", ""]
    return "\n".join(lines).rstrip() + "\n"


def _inline(text: str) -> str:
    """Escaped HTML with ``**bold**`` and ```code``` spans."""
    out = html.escape(str(text), quote=False)
    out = re.sub(r"\*\*(.+?)\*\*", r"<strong>\1</strong>", out)
    return re.sub(r"`([^`]+)`", r"<code>\1</code>", out)


CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; margin: 2rem auto;
       max-width: 1200px; padding: 0 1rem; color: #222; line-height: 1.45; }
h1 { border-bottom: 2px solid #444; } h2 { border-bottom: 1px solid #bbb; margin-top: 2rem; }
table { border-collapse: collapse; margin: 0.6rem 0 1.2rem; font-size: 0.85rem; }
th, td { border: 1px solid #ccc; padding: 0.2rem 0.5rem; text-align: left; vertical-align: top; }
th { background: #f0f0f0; } tr:nth-child(even) td { background: #fafafa; }
caption { caption-side: bottom; text-align: left; font-style: italic; color: #555;
          padding-top: 0.3rem; }
code, pre { background: #f4f4f4; font-size: 0.85rem; } pre { padding: 0.6rem; overflow-x: auto; }
figure { margin: 1rem 0; } figure img { max-width: 100%; height: auto; border: 1px solid #ddd; }
figcaption { font-style: italic; color: #555; } summary { cursor: pointer; color: #225; }
"""


def render_html(blocks: list[Block], title: str) -> str:
    parts = ["<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
             '<meta name="viewport" content="width=device-width, initial-scale=1">',
             f"<title>{html.escape(title)}</title><style>{CSS}</style></head><body>"]
    for b in blocks:
        if isinstance(b, Heading):
            parts.append(f"<h{b.level}>{_inline(b.text)}</h{b.level}>")
        elif isinstance(b, Para):
            parts.append(f"<p>{_inline(b.text)}</p>")
        elif isinstance(b, Bullets):
            parts.append("<ul>" + "".join(f"<li>{_inline(i)}</li>" for i in b.items) + "</ul>")
        elif isinstance(b, Code):
            pre = f"<pre><code>{html.escape(b.text)}</code></pre>"
            if b.summary:
                pre = f"<details><summary>{html.escape(b.summary)}</summary>{pre}</details>"
            parts.append(pre)
        elif isinstance(b, Table):
            head = "".join(f"<th>{_inline(c)}</th>" for c in b.frame.columns)
            body = "".join("<tr>" + "".join(f"<td>{_inline(v)}</td>" for v in row) + "</tr>"
                           for row in b.frame.itertuples(index=False))
            caption = f"<caption>{_inline(b.caption)}</caption>" if b.caption else ""
            parts.append(f"<table>{caption}<thead><tr>{head}</tr></thead>"
                         f"<tbody>{body}</tbody></table>")
        elif isinstance(b, Figure):
            data = base64.b64encode(b.path.read_bytes()).decode("ascii")
            parts.append(f'<figure><img src="data:image/png;base64,{data}" '
                         f'alt="{html.escape(b.caption)}"><figcaption>{_inline(b.caption)}'
                         f"</figcaption></figure>")
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"


# -- entry points ----------------------------------------------------------------------------

def generate(dirs: list[Path], out: Path | None = None,
             metrics: tuple[str, ...] = DEFAULT_METRICS) -> Path:
    """Writes report.md, report.html and figures/*.png; returns the report.html path.

    Args:
        dirs: Results folders (``results/<space>/<timestamp>/``); several are analysed together
            (e.g. the same study on several data sets).
        out: Where to write (default: the first results folder).
        metrics: The outcomes the sensitivity statistics explain (``analysis.outcomes``).

    Raises:
        ResultsError: A folder is missing or has no trials.csv, a file is malformed, or the
            folders' ``claims:`` blocks are bad or disagree.
    """
    res = load([Path(d) for d in dirs])
    claims.declarations(res)  # a bad `claims:` block stops here, before any statistics
    out = Path(out) if out is not None else res.dirs[0]
    out.mkdir(parents=True, exist_ok=True)
    for stale in (out / "figures").glob("*.png"):  # from an earlier report of this folder
        stale.unlink()
    with np.errstate(all="ignore"):
        blocks = Builder(res, out, metrics).build()
    title = blocks[0].text if blocks and isinstance(blocks[0], Heading) else "Study report"
    (out / "report.md").write_text(render_markdown(blocks, out))
    path = out / "report.html"
    path.write_text(render_html(blocks, title))
    return path


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m analysis.report",
                                 description="Writes the report of one or more study results "
                                             "folders: report.md, report.html, figures/*.png.")
    ap.add_argument("dirs", nargs="+", metavar="RESULTS_DIR",
                    help="results/<space>/<timestamp>/ folder(s) written by study/run.py, or "
                         "their copy on remote storage (s3://BUCKET/studies/<space>/<timestamp>"
                         ", URI options included): read from a local copy, the report "
                         "published beside it")
    ap.add_argument("--out", type=Path, help="output folder (default: the first RESULTS_DIR)")
    ap.add_argument("--metrics", nargs="+", metavar="OUTCOME", default=list(DEFAULT_METRICS),
                    help="the outcomes the sensitivity statistics explain (default: all but "
                         "out_adaptivity_pooled): " + ", ".join(outcomes.OUTCOMES))
    args = ap.parse_args(argv)
    unknown = [m for m in args.metrics if m not in outcomes.OUTCOMES]
    if unknown:
        print(f"error: --metrics {' '.join(unknown)}: no such outcome; valid: "
              f"{', '.join(outcomes.OUTCOMES)}", file=sys.stderr)
        return EXIT_BAD_INPUT
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        dirs = [remote.download(d) if remote.is_uri(d) else Path(d) for d in args.dirs]
    except OSError as e:  # FileNotFoundError, or pyarrow's: no bucket, no endpoint, no access
        print(f"error: {e}", file=sys.stderr)
        return EXIT_BAD_INPUT
    try:
        path = generate(dirs, args.out, tuple(args.metrics))
    except ResultsError as e:
        print(f"error: {e}", file=sys.stderr)
        return EXIT_BAD_INPUT
    print(f"report: {path}")
    print(f"        {path.with_suffix('.md')}")
    if args.out is None and remote.is_uri(args.dirs[0]):
        remote.upload_report(path.parent, args.dirs[0])
        print(f"published beside the study: {args.dirs[0]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
