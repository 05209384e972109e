"""Per-trial outcomes: the quantities the paper's claims are about, from what a trial records.

This module owns them. ``analysis.results.load`` computes them from ``trials.csv`` and
``curves.csv`` whenever a folder is read, and those are the values every statistic uses (so
folders written before they existed get them too, and several folders read together share one
favoured modality a data set). The study driver calls the same function once to add the columns
to the ``trials.csv`` it writes (``study/results.py``), for people who open the file and for the
tracker: a copy the analysis never reads back. Every outcome is a number per trial, NaN where
the trial cannot have it (no attention fusion: no AIR; no rotation: no convergence time):

    acc                   headline: test accuracy at the best validation epoch (%)
    out_abs_air           |AIR| on the validation split at the last epoch
    out_favoured_share    the favoured modality's share of the [cls] attention (validation,
                          last epoch)
    out_noise_drop        test accuracy lost (points) from clean (level 0) to the largest noise
                          level on the favoured modality; out_noise_drop_<m> for each modality
                          (NaN without a level 0 and a larger one) m; the trial records it
                          (noise_drop_<m>; older folders: ``analysis.migrate``)
    out_noise_auc         area under the favoured modality's noise curve (points x λ, the
                          trial's noise_auc_<m>)
    out_noise_mean_drop   test accuracy lost (points) averaged over the favoured modality's
                          whole noise curve: clean accuracy minus the curve's area (trapezoid
                          rule, ``np.trapezoid``) over its λ range (what claim 5 tests; every
                          level counts, not the largest alone); out_noise_mean_drop_<m> for
                          each modality m (NaN without a level 0 and a larger one)
    out_adaptivity        attention-noise adaptivity (Table 2), per modality: -r between a
                          modality's attention share and "it is noised" over the clean and the
                          noised evaluations of the same samples (the trial's attn_noise_r_<m>),
                          averaged over the modalities (higher = attention moves away from a
                          noised input; no favoured modality needed; the between-modality gap
                          of the shares does not enter, as it does in the pooled r)
    out_adaptivity_pooled the pooled variant (-r over all (sample, modality) pairs, one random
                          modality noised per sample): for comparison with the paper only
    out_attn_shift        the favoured modality's attention share when it is noised minus clean,
                          per sample, averaged (share units; the trial's attn_noise_shift_<m>)
    out_rotations         rotations fired
    out_air_convergence   epochs from the first rotation until validation |AIR| first falls to
                          beta or below (0: at once), or, when it never does, until the last
                          epoch (censored: out_air_converged is 0); NaN when no rotation fired
    out_air_converged     1 when |AIR| fell to beta after the first rotation, 0 when it never
                          did (a censored time), NaN when no rotation fired
    out_air_slope         least-squares slope of validation |AIR| per epoch over training,
                          from the untrained model's evaluation (epoch -1) where recorded
    out_air_growth        validation |AIR| at the last epoch minus at initialisation (the
                          untrained model's epoch -1 where recorded, else the first epoch):
                          what claim 1 tests (a slope over all epochs cannot see a rise that
                          saturates early)
    out_air_tau           Kendall's tau between epoch and validation |AIR| (a trend test that
                          a saturating rise does not fool)
    out_imbalance         attention imbalance magnitude (max share - min share) / (sum of the
                          shares) over the modalities, validation, last epoch: |s_a - s_b| /
                          (s_a + s_b) with two (no favoured modality needed; an overshoot to
                          the other modality is not a rebalance)

The favoured modality of a data set (column ``favoured``) is declared, never chosen from the
attention shares under test: the one the data set is built to favour (the synthetic data
records it: ``favoured_modality``), else the paper's (``PAPER_FAVOURED``: audio on CREMA-D and
Kinetics-Sounds, text on MOSEI), else none (the favoured-modality outcomes are then NaN, and
the report says how to declare one).

``add_outcomes`` needs per trial ``dataset``, ``rollingq_on`` (RollingQ enabled with
max_rotations > 0) and ``rollingq_beta`` (its effective beta, NaN where unknown); the study
driver records the last two from each trial's config (``study.trainable.arm``; an older folder's
come from ``analysis.migrate``).
"""

from __future__ import annotations

import re
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

DECLARED = "favoured_modality"  # what a data set declares it favours (synthetic), per trial
# The modality the paper reports each of its data sets to favour (its Figures 1 and 4).
PAPER_FAVOURED = {"cremad": "audio", "kinetics_sounds": "audio", "mosei": "text"}
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
    "out_noise_mean_drop": ("accuracy drop averaged over the favoured modality's noise curve",
                            "points"),
    "out_adaptivity": ("attention-noise adaptivity (−r), mean over the modalities (Table 2)", ""),
    "out_adaptivity_pooled": ("attention-noise adaptivity (−r), pooled (Table 2, the paper's "
                              "single number)", ""),
    "out_attn_shift": ("favoured modality's attention share shift when it is noised", "share"),
    "out_rotations": ("rotations fired", ""),
    "out_air_convergence": ("epochs from the first rotation to |AIR| <= beta (censored)",
                            "epochs"),
    "out_air_slope": ("slope of |AIR| per epoch", "per epoch"),
    "out_air_growth": ("growth of |AIR| from initialisation to the last epoch", ""),
    "out_imbalance": ("attention imbalance magnitude (validation)", ""),
}
# noise_<modality>_<level>: accuracy (noise_f1_<m>_<level>, noise_auc_<m>, ... are not)
NOISE_COLUMN = re.compile(
    r"^noise_(?P<modality>[A-Za-z]+)_(?P<level>\d+(?:\.\d+)?(?:e-?\d+)?)$")


ATTN_R = re.compile(r"^attn_noise_r_[A-Za-z]+$")  # Table 2's per-modality r


def noise_columns(trials: pd.DataFrame) -> dict[str, dict[float, str]]:
    """``noise_<modality>_<level>`` accuracy columns by modality and level."""
    out: dict[str, dict[float, str]] = {}
    for col in trials.columns:
        if match := NOISE_COLUMN.match(col):
            out.setdefault(match["modality"], {})[float(match["level"])] = col
    return out


def mean_drop(levels: list[float], acc: list[float]) -> float:
    """Accuracy lost averaged over a noise curve: the clean accuracy (λ = 0) minus the curve's
    area (``np.trapezoid`` over λ) divided by its λ range; NaN without a λ = 0 and a larger level,
    or with a missing accuracy."""
    x, y = np.asarray(levels, dtype=float), np.asarray(acc, dtype=float)
    order = np.argsort(x)
    x, y = x[order], y[order]
    if len(x) < 2 or x[0] != 0 or x[-1] <= 0 or not np.isfinite(y).all():
        return np.nan
    return float(y[0] - np.trapezoid(y, x) / x[-1])


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
    """The favoured modality of each data set and where the declaration comes from (module
    docstring); never from the attention shares the claims test."""
    out: dict[str, tuple[str | None, str]] = {}
    for ds, t in trials.groupby("dataset", sort=False):
        declared = t[DECLARED].dropna().astype(str) if DECLARED in t else pd.Series(dtype=str)
        declared = declared[declared != ""]
        if len(declared):
            out[ds] = (declared.mode().iloc[0], "declared by the trials: the data set's built-in "
                                                "bias or `data.favoured`")
        elif ds in PAPER_FAVOURED:
            out[ds] = (PAPER_FAVOURED[ds], "the paper reports this data set favours it")
        else:
            out[ds] = (None, "not declared: the data set records no favoured modality and "
                             "is not one of the paper's; declare it with "
                             "`--set data.favoured=<modality>`")
    return out


def _slope(epochs: np.ndarray, values: np.ndarray) -> float:
    if len(values) < 2 or np.ptp(epochs) == 0:
        return np.nan
    return float(np.polyfit(epochs, values, 1)[0])


CENSORED = {"out_air_convergence": "out_air_converged"}  # a time -> its event indicator


def _convergence(epochs: np.ndarray, abs_air: np.ndarray, rotated: np.ndarray,
                 beta: float) -> tuple[float, float]:
    """(epochs from the first rotation to |AIR| <= beta or to the last epoch, converged)."""
    if not np.isfinite(beta) or not rotated.any():
        return np.nan, np.nan
    first = epochs[rotated][0]
    after = (epochs >= first) & (abs_air <= beta)
    if after.any():
        return float(epochs[after][0] - first), 1.0
    return float(epochs[-1] - first), 0.0


def curve_outcomes(curve: pd.DataFrame, beta: float) -> dict[str, float]:
    """``out_abs_air``, ``out_air_convergence`` (with ``out_air_converged``) and
    ``out_air_slope`` of one trial's curve."""
    out = {"out_abs_air": np.nan, "out_air_convergence": np.nan, "out_air_converged": np.nan,
           "out_air_slope": np.nan, "out_air_growth": np.nan, "out_air_tau": np.nan}
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
    if len(abs_air) >= 2:
        out["out_air_growth"] = float(abs_air[-1] - abs_air[0])
        tau = stats.kendalltau(epochs, abs_air).statistic
        out["out_air_tau"] = float(tau) if np.isfinite(tau) else np.nan
    out["out_air_convergence"], out["out_air_converged"] = _convergence(epochs, abs_air,
                                                                         rotated, beta)
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
        t[f"out_noise_drop_{m}"] = pd.to_numeric(  # NaN: no clean level, or no noise level
            t.get(f"noise_drop_{m}", np.nan), errors="coerce") * scale
        levels = sorted(cols)
        accs = t[[cols[lv] for lv in levels]].apply(pd.to_numeric, errors="coerce").to_numpy()
        t[f"out_noise_mean_drop_{m}"] = [mean_drop(levels, a) * scale for a in accs]
    t["out_noise_drop"] = _favoured_column(t, "out_noise_drop_{}")
    t["out_noise_mean_drop"] = _favoured_column(t, "out_noise_mean_drop_{}")
    t["out_noise_auc"] = np.asarray(_favoured_column(t, "noise_auc_{}"), dtype=float) * scale
    r_cols = [c for c in t.columns if ATTN_R.match(c)]
    r = t[r_cols].apply(pd.to_numeric, errors="coerce")
    # the modalities a trial evaluated have a share shift (a mean, always defined); one of them
    # with an undefined r (no variation) leaves the mean undefined rather than dropping it
    shift = t.reindex(columns=[c.replace("_r_", "_shift_") for c in r_cols]).apply(
        pd.to_numeric, errors="coerce").set_axis(r_cols, axis=1)
    evaluated = shift.notna() | r.notna()
    complete = (r.notna() | ~evaluated).all(axis=1) & evaluated.any(axis=1)
    t["out_adaptivity"] = (-r.mean(axis=1)).where(complete)
    t["out_adaptivity_pooled"] = pd.to_numeric(t.get("attn_noise_pooled_adaptivity", np.nan),
                                               errors="coerce")
    t["out_attn_shift"] = _favoured_column(t, "attn_noise_shift_{}")
    t["out_rotations"] = pd.to_numeric(t.get("final_rotations", np.nan), errors="coerce")
    keys = ["study", "trial_id"] if "study" in t and "study" in curves else ["trial_id"]
    by_trial = dict(tuple(curves.groupby(keys))) if len(curves) and "trial_id" in curves else {}
    rows: list[dict[str, Any]] = []
    for _, row in t.iterrows():
        curve = by_trial.get(tuple(row[k] for k in keys), pd.DataFrame())
        rows.append(curve_outcomes(curve, float(pd.to_numeric(row[BETA], errors="coerce"))))
    shares = t[[c for c in t.columns if c.startswith("val_share_")]].apply(
        pd.to_numeric, errors="coerce")
    # over the modalities a trial has (a folder of audio-visual trials beside one with text)
    imbalance = (shares.max(axis=1) - shares.min(axis=1)) / shares.sum(axis=1, min_count=2)
    t["out_imbalance"] = imbalance.where(shares.notna().sum(axis=1) >= 2)
    for col in ("out_abs_air", "out_air_convergence", "out_air_converged", "out_air_slope",
                "out_air_growth", "out_air_tau"):
        t[col] = [r[col] for r in rows]
    return t
