"""The exploratory family of a report: every test of the sensitivity section (ANOVA terms,
vanilla-arm contrasts, log-rank tests) of every outcome, Benjamini–Hochberg adjusted together,
apart from the claims' confirmatory family (``analysis/claims.py``, Holm)."""

from __future__ import annotations

import pandas as pd
from statsmodels.stats.multitest import multipletests

from analysis.sensitivity import ALPHA, Sensitivity
from analysis.survival import Survival


def fdr(fits: dict[str, Sensitivity],
        survivals: dict[str, Survival] | None = None) -> pd.DataFrame:
    """The exploratory family of a report: every ANOVA term test (blocks aside), every
    vanilla-arm contrast and every log-rank test of every outcome, Benjamini–Hochberg adjusted
    together (``multipletests(method="fdr_bh")``). Rows ``metric, kind, term, p, q``."""
    rows = []
    for metric, surv in (survivals or {}).items():
        if len(surv.tests):
            rows += [{"metric": metric, "kind": "log-rank", "term": t, "p": p}
                     for t, p in zip(surv.tests["factor"], surv.tests["p"], strict=True)]
    for metric, s in fits.items():
        if len(s.anova):
            a = _tested(s)
            rows += [{"metric": metric, "kind": "anova", "term": t, "p": p}
                     for t, p in zip(a["term"], a["p"], strict=True)]
        if len(s.vanilla):
            rows += [{"metric": metric, "kind": "vanilla", "term": f"{ds}: {c}", "p": p}
                     for ds, c, p in zip(s.vanilla["dataset"], s.vanilla["contrast"],
                                         s.vanilla["p"], strict=True)]
    out = pd.DataFrame(rows, columns=["metric", "kind", "term", "p"])
    out = out[pd.to_numeric(out["p"], errors="coerce").notna()].reset_index(drop=True)
    out["q"] = (multipletests(out["p"].astype(float), alpha=ALPHA, method="fdr_bh")[1]
                if len(out) else [])
    return out


def _tested(s: Sensitivity) -> pd.DataFrame:
    """The ANOVA rows that test an effect (the residual and the blocks aside)."""
    if not len(s.anova):
        return s.anova
    return s.anova[(s.anova["term"] != "Residual")
                   & ~s.anova["term"].str.contains("(block)", regex=False)]


def tested_terms(s: Sensitivity) -> list[str]:
    """The ANOVA terms that test an effect (blocks aside)."""
    return list(_tested(s)["term"]) if len(s.anova) else []
