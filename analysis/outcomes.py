"""Per-trial outcomes: the quantities the paper's claims are about, from what a trial records.

The study driver adds these columns to ``trials.csv`` (``study/results.py``);
``analysis.results.load`` recomputes them with the same function from ``trials.csv`` and
``curves.csv`` (so folders written before they existed get them too, and several folders read
together share one favoured modality a data set). Every outcome is a number per trial, NaN
where the trial cannot have it (no attention fusion: no AIR; no rotation: no convergence time):

    acc                   headline: test accuracy at the best validation epoch (%)
    out_abs_air           |AIR| on the validation split at the last epoch
    out_favoured_share    the favoured modality's share of the [cls] attention (validation,
                          last epoch)
    out_noise_drop        test accuracy lost (points) from clean (level 0) to the largest noise
                          level on the favoured modality; out_noise_drop_<m> for each modality
                          (NaN without a level 0 and a larger one) m; the trial records it
                          (noise_drop_<m>), older folders get it from the curve
    out_noise_auc         area under the favoured modality's noise curve (points x λ, the
                          trial's noise_auc_<m>)
    out_adaptivity        attention-noise adaptivity, the pooled variant (Table 2: -r between a
                          modality's attention share and "it was the noised one", pooled over
                          the modalities; higher = attention moves away from the noised input)
    out_attn_shift        the favoured modality's attention share when it is noised minus clean,
                          per sample, averaged (share units; the trial's attn_noise_shift_<m>)
    out_rotations         rotations fired
    out_air_convergence   epochs from the first rotation until validation |AIR| first falls to
                          beta or below (0: at once); NaN when no rotation fired or it never does
    out_air_slope         least-squares slope of validation |AIR| per epoch over training,
                          from the untrained model's evaluation (epoch -1) where recorded

The favoured modality of a data set (column ``favoured``) is the one it is built to favour (the
synthetic data declares it: ``favoured_modality``), else the one the vanilla trials' [cls]
attends most, else the one all trials attend most.

``add_outcomes`` needs per trial ``dataset``, ``rollingq_on`` (RollingQ enabled with
max_rotations > 0) and ``rollingq_beta`` (its effective beta, NaN where unknown); the study
driver records the last two from each trial's config.
"""

from __future__ import annotations

import re
from typing import Any

import numpy as np
import pandas as pd

DECLARED = "favoured_modality"  # what a data set declares it favours (synthetic), per trial
FAVOURED = "favoured"  # the favoured modality the outcomes use, per trial
BETA = "rollingq_beta"  # the trial's effective beta (recorded by the study driver)
ON = "rollingq_on"  # RollingQ enabled with max_rotations > 0 (recorded by the study driver)
# outcome column -> (what it is, unit) for tables and plots
OUTCOMES: dict[str, tuple[str, str]] = {
    "acc": ("headline accuracy", "%"),
    "out_abs_air": ("final |AIR| (validation)", ""),
    "out_favoured_share": ("favoured modality's attention share (validation)", ""),
    "out_noise_drop": ("accuracy drop at the largest noise on the favoured modality", "points"),
    "out_noise_auc": ("area under the favoured modality's noise curve", "points x λ"),
    "out_adaptivity": ("attention-noise adaptivity, pooled (Table 2)", ""),
    "out_attn_shift": ("favoured modality's attention share shift when it is noised", "share"),
    "out_rotations": ("rotations fired", ""),
    "out_air_convergence": ("epochs from the first rotation to |AIR| <= beta", "epochs"),
    "out_air_slope": ("slope of |AIR| per epoch", "per epoch"),
}
# noise_<modality>_<level>: accuracy (noise_f1_<m>_<level>, noise_auc_<m>, ... are not)
NOISE_COLUMN = re.compile(
    r"^noise_(?P<modality>[A-Za-z]+)_(?P<level>\d+(?:\.\d+)?(?:e-?\d+)?)$")


def noise_columns(trials: pd.DataFrame) -> dict[str, dict[float, str]]:
    """``noise_<modality>_<level>`` accuracy columns by modality and level."""
    out: dict[str, dict[float, str]] = {}
    for col in trials.columns:
        if match := NOISE_COLUMN.match(col):
            out.setdefault(match["modality"], {})[float(match["level"])] = col
    return out


def _favoured_column(t: pd.DataFrame, template: str) -> list[float]:
    """Per trial, the column ``template.format(favoured modality)`` (NaN where absent)."""
    return [pd.to_numeric(row.get(template.format(row[FAVOURED]), np.nan), errors="coerce")
            if isinstance(row[FAVOURED], str) else np.nan for row in t.to_dict("records")]


def rollingq_on(values: pd.Series) -> pd.Series:
    """The ``rollingq_on`` column as booleans: True, False, or NA for unknown (an errored trial
    the driver could not ask), which is neither arm."""
    return values.map(lambda v: {"True": True, "1": True, "1.0": True, "False": False,
                                 "0": False, "0.0": False}.get(str(v), pd.NA))


def favoured_modalities(trials: pd.DataFrame) -> dict[str, tuple[str | None, str]]:
    """The favoured modality of each data set and how it was chosen (module docstring)."""
    shares = [c for c in trials.columns if c.startswith("val_share_")]
    out: dict[str, tuple[str | None, str]] = {}
    for ds, t in trials.groupby("dataset", sort=False):
        declared = t[DECLARED].dropna().astype(str) if DECLARED in t else pd.Series(dtype=str)
        declared = declared[declared != ""]
        if len(declared):
            out[ds] = (declared.mode().iloc[0], "the data set is built to favour it")
            continue
        vanilla = rollingq_on(t[ON]).eq(False).fillna(False).astype(bool)
        pick, whose = (t[vanilla], "the vanilla trials") if vanilla.any() else (t, "all trials")
        means = pick[shares].apply(pd.to_numeric, errors="coerce").mean() if shares else None
        if means is None or not means.notna().any():
            out[ds] = (None, "no attention shares were recorded")
        else:
            out[ds] = (means.idxmax().removeprefix("val_share_"),
                       f"{whose}' [cls] attends it most")
    return out


def _slope(epochs: np.ndarray, values: np.ndarray) -> float:
    if len(values) < 2 or np.ptp(epochs) == 0:
        return np.nan
    return float(np.polyfit(epochs, values, 1)[0])


def _convergence(epochs: np.ndarray, abs_air: np.ndarray, rotated: np.ndarray,
                 beta: float) -> float:
    if not np.isfinite(beta) or not rotated.any():
        return np.nan
    first = epochs[rotated][0]
    after = (epochs >= first) & (abs_air <= beta)
    return float(epochs[after][0] - first) if after.any() else np.nan


def curve_outcomes(curve: pd.DataFrame, beta: float) -> dict[str, float]:
    """``out_abs_air``, ``out_air_convergence`` and ``out_air_slope`` of one trial's curve."""
    out = {"out_abs_air": np.nan, "out_air_convergence": np.nan, "out_air_slope": np.nan}
    if not len(curve) or "val_air" not in curve or "epoch" not in curve:
        return out
    c = curve.assign(val_air=pd.to_numeric(curve["val_air"], errors="coerce"))
    c = c.dropna(subset=["val_air"]).sort_values("epoch")
    if not len(c):
        return out
    epochs = c["epoch"].to_numpy(dtype=float)
    abs_air = c["val_air"].abs().to_numpy(dtype=float)
    rotated = (pd.to_numeric(c.get("rotated", 0), errors="coerce").fillna(0) > 0).to_numpy()
    out["out_abs_air"] = float(abs_air[-1])
    out["out_air_slope"] = _slope(epochs, abs_air)
    out["out_air_convergence"] = _convergence(epochs, abs_air, rotated, beta)
    return out


def add_outcomes(trials: pd.DataFrame, curves: pd.DataFrame,
                 scale: float = 100.0) -> pd.DataFrame:
    """``trials`` with the outcome columns and ``favoured`` filled in.

    Args:
        trials: One row a trial with ``dataset``, ``trial_id``, ``rollingq_on`` and
            ``rollingq_beta`` (and ``study`` when several folders are read together);
            accuracies as the files hold them.
        curves: One row a trial x epoch with ``trial_id`` (and ``study``).
        scale: 100 when accuracies are fractions (drops are reported in points).
    """
    t = trials.copy()
    favoured = {ds: m for ds, (m, _) in favoured_modalities(t).items()}
    t[FAVOURED] = t["dataset"].map(favoured)
    t["out_favoured_share"] = np.nan
    for ds, m in favoured.items():
        if m and f"val_share_{m}" in t:
            here = t["dataset"] == ds
            t.loc[here, "out_favoured_share"] = pd.to_numeric(t.loc[here, f"val_share_{m}"],
                                                              errors="coerce")
    noise = noise_columns(t)
    for m, cols in noise.items():
        if f"noise_drop_{m}" in t:  # recorded by the trial
            t[f"out_noise_drop_{m}"] = pd.to_numeric(t[f"noise_drop_{m}"], errors="coerce") * scale
        elif 0.0 not in cols or max(cols) <= 0:
            t[f"out_noise_drop_{m}"] = np.nan  # no clean accuracy, or no noise level
        else:  # a folder written before the trials recorded it
            t[f"out_noise_drop_{m}"] = (pd.to_numeric(t[cols[0.0]], errors="coerce")
                                        - pd.to_numeric(t[cols[max(cols)]], errors="coerce")
                                        ) * scale
    t["out_noise_drop"] = _favoured_column(t, "out_noise_drop_{}")
    t["out_noise_auc"] = np.asarray(_favoured_column(t, "noise_auc_{}"), dtype=float) * scale
    t["out_adaptivity"] = pd.to_numeric(t.get("attn_noise_pooled_adaptivity", np.nan),
                                        errors="coerce")
    t["out_attn_shift"] = _favoured_column(t, "attn_noise_shift_{}")
    t["out_rotations"] = pd.to_numeric(t.get("final_rotations", np.nan), errors="coerce")
    keys = ["study", "trial_id"] if "study" in t and "study" in curves else ["trial_id"]
    by_trial = dict(tuple(curves.groupby(keys))) if len(curves) and "trial_id" in curves else {}
    rows: list[dict[str, Any]] = []
    for _, row in t.iterrows():
        curve = by_trial.get(tuple(row[k] for k in keys), pd.DataFrame())
        rows.append(curve_outcomes(curve, float(pd.to_numeric(row[BETA], errors="coerce"))))
    for col in ("out_abs_air", "out_air_convergence", "out_air_slope"):
        t[col] = [r[col] for r in rows]
    return t
