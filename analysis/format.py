"""How the report writes numbers: p and q values, intervals, effects, plain numbers.

A cell a table has no value for by definition (the ANOVA residual's p) is empty; a value that
could exist but does not (a claim that was not tested) is ``-``."""

from __future__ import annotations

import pandas as pd


def p_text(p: float) -> str:
    """``0.012``, ``< 0.001``, or empty for a missing p."""
    if pd.isna(p):
        return ""
    return "< 0.001" if p < 0.001 else f"{p:.3f}"


def p_eq(name: str, p: float) -> str:
    """``q = 0.012`` or ``q < 0.001``."""
    text = p_text(p)
    return f"{name} {text}" if text.startswith("<") else f"{name} = {text}"


def number(x: float, digits: int = 2) -> str:
    """``x`` to ``digits`` decimals, or empty when missing."""
    return "" if pd.isna(x) else f"{x:.{digits}f}"


def interval(d: float, lo: float, hi: float, digits: int = 2) -> str:
    if pd.isna(d):
        return "-"
    if pd.isna(lo):
        return f"{d:+.{digits}f}"
    return f"{d:+.{digits}f} [{lo:.{digits}f}, {hi:.{digits}f}]"


def p_rel(p: float) -> str:
    """``= 0.012`` or ``< 0.001``: a p after its name in a sentence."""
    return "< 0.001" if p < 0.001 else f"= {p:.3f}"
def signed(x: float) -> str:
    """An effect with its sign, 3 significant digits below 0.1 (``+0.0123``, ``-1.35``); ``-``
    when missing."""
    if pd.isna(x):
        return "-"
    return f"{x:+.3g}" if abs(x) < 0.1 else f"{x:+.2f}"
def p_or_dash(p: float) -> str:
    """A p in a verdict table: ``-`` when there is none (the claim was not tested)."""
    return "-" if pd.isna(p) else ("< 0.001" if p < 0.001 else f"{p:.3f}")


def mean_sd(mean: float, sd: float, digits: int = 2) -> str:
    """``"51.90 ± 0.40"``; the mean alone without an sd; ``"-"`` without a mean."""
    if pd.isna(mean):
        return "-"
    return f"{mean:.{digits}f}" if pd.isna(sd) else f"{mean:.{digits}f} ± {sd:.{digits}f}"


def bracket(lo: float, hi: float, digits: int = 2) -> str:
    """``[lo, hi]``; ``-`` without an interval."""
    return "-" if pd.isna(lo) else f"[{lo:.{digits}f}, {hi:.{digits}f}]"
