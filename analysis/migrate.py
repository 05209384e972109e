"""Folders written by older versions of the study driver -> what today's driver writes.

One step on load (``analysis.results.load``), so the rest of the analysis reads one format:

- ``trials.csv``: the columns renamed since (``RENAMED``); the bookkeeping columns an
  interrupted study may lack (``trial_id``, ``status``, ``error``); each modality's noise drop
  (``noise_drop_<m>``: clean accuracy minus the largest noise level's) where the trials did not
  record it.
- ``design.json``: a folder without one gets it from its ``space.yaml`` (``from_spec``, the
  reader of the spec's grammar kept for these folders only; ``tests/study`` checks that it
  gives what the driver writes for every shipped space) and the class counts of the paper's
  data sets (``CLASSES``).
- ``rollingq_on`` / ``rollingq_beta``: a trial that did not record them (a folder from before
  they were recorded, or an errored trial of one) gets them from its config values, with the
  defaults of the versions that did not record them where the spec left a key out
  (``LEGACY_DEFAULTS``, ``LEGACY_PRESETS``): the config of that time, not today's.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import optuna
import pandas as pd

from analysis.design import Design, Searched, level_str
from analysis.outcomes import BETA, ON, noise_columns

# columns of folders written before the names said what they are: old -> new
RENAMED = {"attn_noise_r": "attn_noise_pooled_r",
           "attn_noise_adaptivity": "attn_noise_pooled_adaptivity"}
BOOKKEEPING = (("trial_id", ""), ("status", "incomplete"), ("error", ""))
# The paper's data sets' class counts, for folders that did not record them; the synthetic
# data set's is its data.num_classes (the config's default, 4, where the spec left it).
CLASSES = {"cremad": 6, "kinetics_sounds": 31, "mosei": 2}
SYNTHETIC_CLASSES = 4
# RollingQ's config in the versions that did not record the arm (before 2026-11-29): on, with
# one rotation at beta 0.1; the synthetic data set's preset rotated up to 4 times at beta 0.2.
LEGACY_DEFAULTS = {"rollingq.enabled": True, "rollingq.max_rotations": 1, "rollingq.beta": 0.1}
LEGACY_PRESETS = {"synthetic": {"rollingq.max_rotations": 4, "rollingq.beta": 0.2}}


def trials(t: pd.DataFrame) -> pd.DataFrame:
    """An older folder's ``trials.csv`` with today's column names and bookkeeping columns."""
    t = t.rename(columns={old: new for old, new in RENAMED.items() if old in t and new not in t})
    for col, default in BOOKKEEPING:
        if col not in t:
            t[col] = default
    for m, cols in noise_columns(t).items():
        if f"noise_drop_{m}" not in t and 0.0 in cols and max(cols) > 0:
            t[f"noise_drop_{m}"] = (pd.to_numeric(t[cols[0.0]], errors="coerce")
                                    - pd.to_numeric(t[cols[max(cols)]], errors="coerce"))
    return t


def from_spec(tree: dict[str, Any], name: str) -> Design:
    """The design of a folder that has only its ``space.yaml`` (``tree``; ``{}`` when missing,
    then ``name``, the folder's space, is all that is known)."""
    tune = tree.get("tune") or {}
    metric, mode = tune.get("metric", "val_acc"), tune.get("metric_mode", "max")
    objectives = (list(zip(metric, mode, strict=True)) if isinstance(metric, list)
                  else [(metric, mode)])
    fixed = dict(tree.get("fixed") or {})
    search = [_searched(k, raw if isinstance(raw, dict) else {})
              for k, raw in (tree.get("search") or {}).items()]
    variants = {str(n): dict(v or {}) for n, v in
                (((tree.get("variants") or {}).get("values")) or {}).items()}
    classes = dict(CLASSES)
    classes["synthetic"] = int(fixed.get("data.num_classes", SYNTHETIC_CLASSES))
    return Design(space=str(tree.get("name") or name), question=str(tree.get("question") or ""),
                  mode=tune.get("mode", "grid"), scheduler=tune.get("scheduler", "fifo"),
                  objectives=objectives, num_samples=int(tune.get("num_samples", 1)),
                  seeds=[int(s) for s in tree.get("seeds") or [0]], fixed=fixed, search=search,
                  variants=variants, claims=tree.get("claims") or None, classes=classes,
                  sequential=tree.get("sequential"))


def _searched(key: str, raw: dict[str, Any]) -> Searched:
    kind = raw.get("type", "choice")
    low, high, step = raw.get("low"), raw.get("high"), raw.get("step")
    if kind == "choice":
        levels = [level_str(v) for v in raw.get("values") or []]
        dist: optuna.distributions.BaseDistribution | None = (
            optuna.distributions.CategoricalDistribution(list(raw.get("values") or [])))
    else:
        levels = []
        if low is not None and high is not None and step:
            n = int(math.floor((high - low) / step + 1e-9)) + 1
            levels = [level_str(round(low + i * step, 12)) for i in range(n)]
        dist = None if low is None or high is None else (
            optuna.distributions.IntDistribution(int(low), int(high), log=bool(raw.get("log")),
                                                 step=int(step or 1)) if kind == "int" else
            optuna.distributions.FloatDistribution(float(low), float(high),
                                                   log=bool(raw.get("log")),
                                                   step=None if step is None else float(step)))
    return Searched(key, raw.get("role", "scientific"), kind, levels,
                    None if dist is None else optuna.distributions.distribution_to_json(dist))


def arms(t: pd.DataFrame, values: list[dict[str, Any]]) -> pd.DataFrame:
    """The trials with ``rollingq_on`` and ``rollingq_beta`` where they did not record them,
    from their config values (``values``, one dict a trial)."""
    legacy = [_legacy(v) for v in values]
    recorded = t.get(ON, pd.Series(np.nan, index=t.index))
    t[ON] = [level_str(r) == "True" if level_str(r) != "NA" else on
             for r, (on, _) in zip(recorded, legacy, strict=True)]
    beta = pd.to_numeric(t.get(BETA, pd.Series(np.nan, index=t.index)), errors="coerce")
    t[BETA] = beta.fillna(pd.Series([b for _, b in legacy], index=t.index, dtype=float))
    return t


def _legacy(values: dict[str, Any]) -> tuple[bool, float]:
    """(RollingQ can rotate, beta) of config values under the old defaults."""
    preset = LEGACY_PRESETS.get(str(values.get("data.name", "synthetic")), {})

    def value(key: str) -> Any:
        return values.get(key, preset.get(key, LEGACY_DEFAULTS[key]))

    on = (level_str(value("rollingq.enabled")) != "False"
          and level_str(value("rollingq.max_rotations")) != "0")
    return on, float(pd.to_numeric(value("rollingq.beta"), errors="coerce"))
