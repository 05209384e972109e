"""How the report writes numbers: p and q values, intervals, plain numbers; one convention for
every table (an empty cell for a value that is missing)."""

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
