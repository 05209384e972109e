"""A study's results folder(s) -> one in-memory record: trials, curves, factors and data sets.

The study driver writes ``results/<space>/<timestamp>/`` with ``trials.csv`` (one row a trial),
``curves.csv`` (trial × epoch), ``space.yaml`` (the merged spec), ``meta.json`` (provenance)
and, for Optuna studies, ``optuna.journal``. Only ``trials.csv`` is required: an interrupted
study may lack the rest, and the report says so instead of failing.

Vocabulary used by the rest of the package:
    factor    a searched parameter (``rollingq.max_rotations``); scientific factors define the
              variants, nuisance factors are tuned away
    level     one value of a factor, as a string (``"0"``, ``"svd"``, ``"False"``), ordered as
              in the space file
    variant   one combination of scientific levels, labelled ``"0 / svd"``
    baseline  the vanilla variant: ``rollingq.enabled = false`` or ``rollingq.max_rotations =
              0`` where searched, else each factor's first level; a factor that does nothing
              in the vanilla arm (``rollingq.rotation`` at 0 rotations) has level ``NA`` there
    data set  ``data.name`` (searched, fixed, or "synthetic" when absent)
    experiment one trained model: a data set, a seed and an *effective* configuration, the
              config values with the keys that do nothing removed (``INACTIVE``). Trials of the
              same experiment are structural copies (a grid crossing ``rollingq.rotation`` with
              0 rotations trains vanilla once per rotation kind); the analysis counts the first
              finished one and names the others (``duplicate_of``), everywhere.
"""

from __future__ import annotations

import itertools
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml

from analysis import outcomes

# columns of folders written before the names said what they are: old -> new
RENAMED = {"attn_noise_r": "attn_noise_pooled_r",
           "attn_noise_adaptivity": "attn_noise_pooled_adaptivity"}
HEADLINE = "test_acc_at_best_val"  # test accuracy at the best validation epoch
PAPER_STYLE = "best_test_acc"  # best test epoch (model selection on test, as the paper does)
VALIDATION = "best_val_acc"
SEED = "train.seed"
DATASET_KEY = "data.name"
DEFAULT_DATASET = "synthetic"
STATUSES = ("finished", "diverged", "stopped", "errored", "incomplete")
# Levels that switch the method off; a factor not listed here has its first level as baseline.
VANILLA: dict[str, Any] = {"rollingq.enabled": False, "rollingq.max_rotations": 0}
VARIANT = "variant"  # the column (and factor) of a space's named variants
# Keys that do nothing, and when: RollingQ's keys when it cannot rotate (disabled, 0 rotations,
# or a fusion without attention), the balance method's keys when it is `none`.
INACTIVE = ("rollingq.* when RollingQ cannot rotate", "balance.* when balance.method is none",
            "the other balance method's keys (balance.ogm_* under pmr, balance.pmr_* and "
            "balance.prototype_fraction under ogm and ogm_ge)")


class ResultsError(ValueError):
    """A results folder cannot be read; the message is one readable line."""


def level_str(value: Any) -> str:
    """One factor level as a string that is the same whether it came from YAML or a CSV.

    ``False`` and ``"False"`` -> ``"False"``; ``0``, ``0.0`` and ``"0"`` -> ``"0"``;
    ``0.25`` -> ``"0.25"``; missing -> ``"NA"``.
    """
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "NA"
    if isinstance(value, bool | np.bool_):
        return str(bool(value))
    if isinstance(value, int | np.integer):
        return str(int(value))
    if isinstance(value, float | np.floating):
        v = float(value)
        return str(int(v)) if v.is_integer() else f"{v:g}"
    return str(value)


@dataclass
class Factor:
    """A searched parameter.

    Attributes:
        key: Dotted config key, the column name in ``trials.csv``.
        role: ``scientific`` or ``nuisance``.
        type: ``choice``, ``int`` or ``float``.
        levels: Level strings in the space file's order, then any other observed level.
        baseline: The vanilla level.
        numeric: Whether the levels are numbers (heatmap and axis order).
    """

    key: str
    role: str
    type: str
    levels: list[str]
    baseline: str
    numeric: bool


@dataclass
class Results:
    """One or more results folders read into tables.

    Attributes:
        dirs: The folders, in the order given.
        specs: Each folder's ``space.yaml`` (``{}`` where missing).
        metas: Each folder's ``meta.json`` (``{}`` where missing).
        trials: Every trial row, with ``study`` (folder index), ``dataset``, ``variant`` and the
            accuracies in percent (``acc`` = headline, ``acc_paper``, ``acc_val``).
        curves: Every trial × epoch row, with ``study``, ``dataset``, ``variant`` and the trial's
            ``trial_status``.
        factors: Scientific factors, in file order (``data.name`` is the data set, not a factor).
        nuisance: Nuisance factors.
        datasets: Data set names in order of appearance.
        mode: ``grid`` or ``optuna`` (the first folder's).
        scheduler: ``fifo`` or ``asha``.
        metric: The tune metric (``val_acc`` ...; a Pareto study's first objective).
        objectives: (metric, mode) of each objective: one, or several in a Pareto study.
        journals: ``optuna.journal`` files found.
        scale: 100 when the files hold fractions (accuracies are reported in percent).
        notes: Sentences about what was missing while reading.
    """

    dirs: list[Path]
    specs: list[dict[str, Any]]
    metas: list[dict[str, Any]]
    trials: pd.DataFrame
    curves: pd.DataFrame
    factors: list[Factor]
    nuisance: list[Factor]
    datasets: list[str]
    mode: str = "grid"
    scheduler: str = "fifo"
    metric: str = "val_acc"
    objectives: list[tuple[str, str]] = field(default_factory=list)
    journals: list[Path] = field(default_factory=list)
    scale: float = 100.0
    notes: list[str] = field(default_factory=list)

    @property
    def finished(self) -> pd.DataFrame:
        """Trials the statistics use: status ``finished`` with a headline accuracy, one per
        experiment (structural copies left out)."""
        t = self.trials
        return t[(t["status"] == "finished") & t["acc"].notna()
                 & (t["duplicate_of"] == "")].copy()

    @property
    def duplicates(self) -> pd.DataFrame:
        """The structural copies left out: ``trial_id``, ``duplicate_of``, ``variant``, seed."""
        t = self.trials
        return t.loc[t["duplicate_of"] != "", ["study", "trial_id", "duplicate_of", "dataset",
                                                "variant", SEED]]

    @property
    def variants(self) -> list[str]:
        """Variant labels in factor-level order, those present in the trials only."""
        present = set(self.trials["variant"])
        return [v for v in self.trials["variant"].cat.categories if v in present]

    @property
    def baseline(self) -> str:
        """The vanilla variant's label."""
        return variant_label([f.baseline for f in self.factors])

    @property
    def variant_title(self) -> str:
        """What a variant label lists, e.g. ``rollingq.max_rotations / rollingq.rotation``."""
        return " / ".join(f.key for f in self.factors) or "variant"

    def factor(self, key: str) -> Factor | None:
        return next((f for f in self.factors + self.nuisance if f.key == key), None)

    def frame(self) -> pd.DataFrame:
        """The finished trials with every factor as an ordered categorical of level strings."""
        df = self.finished
        for f in self.factors + self.nuisance:
            df[f.key] = pd.Categorical(df[f.key].map(level_str), categories=f.levels,
                                       ordered=True)
        return df


def variant_label(levels: list[str]) -> str:
    return " / ".join(levels) if levels else "all"


def _read_csv(path: Path) -> pd.DataFrame:
    if not path.is_file():
        return pd.DataFrame()
    try:
        return pd.read_csv(path)
    except pd.errors.EmptyDataError:  # an interrupted study writes an empty table
        return pd.DataFrame()


def _read_yaml(path: Path) -> dict[str, Any]:
    if not path.is_file():
        return {}
    try:
        tree = yaml.safe_load(path.read_text())
    except yaml.YAMLError as e:
        raise ResultsError(f"{path}: malformed YAML ({str(e).splitlines()[0]})") from None
    return tree if isinstance(tree, dict) else {}


def _read_json(path: Path) -> dict[str, Any]:
    if not path.is_file():
        return {}
    try:
        tree = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise ResultsError(f"{path}: malformed JSON ({e})") from None
    return tree if isinstance(tree, dict) else {}


def _spec_levels(raw: dict[str, Any]) -> list[str]:
    """The levels a search entry enumerates: its values, or its stepped range."""
    if raw.get("type", "choice") == "choice":
        return [level_str(v) for v in raw.get("values") or []]
    low, high, step = raw.get("low"), raw.get("high"), raw.get("step")
    if low is None or high is None or not step:
        return []  # a continuous Optuna range: the observed values are the levels
    n = int(math.floor((high - low) / step + 1e-9)) + 1
    return [level_str(round(low + i * step, 12)) for i in range(n)]


def _is_number(s: str) -> bool:
    if s in ("True", "False", "NA"):
        return False
    try:
        float(s)
    except ValueError:
        return False
    return True


def _factor(key: str, raw: dict[str, Any], observed: pd.Series, vanilla: np.ndarray) -> Factor:
    """A factor from its search entry and its observed values (``vanilla``: the trials where
    RollingQ cannot rotate; a factor that is NA in all of them has its baseline there)."""
    levels = _spec_levels(raw)
    seen = [level_str(v) for v in observed.dropna().unique()]
    extra = [s for s in seen if s not in levels]
    if extra and all(_is_number(s) for s in extra):
        extra.sort(key=float)
    levels = levels + extra
    if observed.isna().any() and "NA" not in levels:
        levels.append("NA")  # an inactive conditional parameter
    off = level_str(VANILLA[key]) if key in VANILLA else None
    if off is None and vanilla.any() and observed[vanilla].isna().all() and "NA" in levels:
        off = "NA"  # nested: the factor exists in the RollingQ arm only
    baseline = off if off in levels else (levels[0] if levels else "NA")
    numeric = bool(levels) and all(_is_number(s) for s in levels if s != "NA")
    return Factor(key, raw.get("role", "scientific"), raw.get("type", "choice"), levels,
                  baseline, numeric)


def check_dir(path: Path) -> Path:
    """A results folder that exists and holds ``trials.csv``.

    Raises:
        ResultsError: Naming the folder and what is missing.
    """
    path = Path(path)
    if not path.is_dir():
        raise ResultsError(f"results folder {str(path)!r} does not exist; pass a folder like "
                           f"results/<space>/<timestamp>/")
    if not (path / "trials.csv").is_file():
        raise ResultsError(f"no trials.csv in {str(path)!r}; is it a study's results folder "
                           f"(results/<space>/<timestamp>/, written by study/run.py)?")
    return path


def _renamed(trials: pd.DataFrame) -> pd.DataFrame:
    """An older folder's trials with today's column names (``RENAMED``)."""
    return trials.rename(columns={old: new for old, new in RENAMED.items()
                                  if old in trials and new not in trials})


def load(dirs: list[Path]) -> Results:
    """Reads one or more results folders (of one study, or of the same study on several data sets).

    Raises:
        ResultsError: A folder is missing or has no ``trials.csv``, or a file is malformed.
    """
    if not dirs:
        raise ResultsError("no results folder given; pass at least one results/<space>/<time>/")
    dirs = [check_dir(Path(d)) for d in dirs]
    specs = [_read_yaml(d / "space.yaml") for d in dirs]
    metas = [_read_json(d / "meta.json") for d in dirs]
    notes = [f"`{d}` has no {name}." for d, s, m in zip(dirs, specs, metas, strict=True)
             for name, tree in (("space.yaml", s), ("meta.json", m)) if not tree]

    tables, curve_tables = [], []
    for i, (d, spec) in enumerate(zip(dirs, specs, strict=True)):
        t = _renamed(_read_csv(d / "trials.csv")).copy()  # one block a dtype: cheap inserts
        for col, default in (("trial_id", ""), ("status", "incomplete"), ("error", "")):
            if col not in t:
                t[col] = default
        fixed = spec.get("fixed") or {}
        if DATASET_KEY not in t:
            t[DATASET_KEY] = fixed.get(DATASET_KEY, DEFAULT_DATASET)
        for key in _search(specs):  # a parameter searched elsewhere but fixed here
            if key not in t:
                t[key] = fixed.get(key, "default")
        t.insert(0, "study", i)
        tables.append(t)
        c = _read_csv(d / "curves.csv")
        if len(c):
            c.insert(0, "study", i)
            curve_tables.append(c)
    trials = pd.concat(tables, ignore_index=True).copy() if tables else pd.DataFrame()
    trials["status"] = trials["status"].astype(object).fillna("incomplete").astype(str)
    trials["error"] = trials["error"].astype(object).fillna("").astype(str)
    trials["dataset"] = trials[DATASET_KEY].fillna(DEFAULT_DATASET).astype(str)
    if SEED not in trials:
        trials[SEED] = 0

    search = _search(specs)
    values = config_values(trials, specs)
    spec_side = [effective_rollingq(v) for v in values]
    effective = [effective_config(v, on) for v, (on, _) in zip(values, spec_side, strict=True)]
    for key in search:  # a factor that does nothing in a trial reads NA there
        if key in trials and key not in VANILLA:
            idle = [key in v and key not in e for v, e in zip(values, effective, strict=True)]
            trials[key] = trials[key].astype(object).mask(idle, np.nan)
    vanilla = ~np.array([on for on, _ in spec_side], dtype=bool)
    factors = [_factor(k, raw, trials[k], vanilla) for k, raw in search.items()
               if raw.get("role", "scientific") == "scientific" and k != DATASET_KEY]
    named = variants_section(specs)
    if named and VARIANT in trials:  # the spec's `variants` axis is one more factor
        factors.insert(0, _variant_factor(named, trials[VARIANT]))
    nuisance = [_factor(k, raw, trials[k], vanilla) for k, raw in search.items()
                if raw.get("role") == "nuisance" and k != DATASET_KEY]

    for col in (HEADLINE, PAPER_STYLE, VALIDATION):
        if col not in trials:
            trials[col] = np.nan
        trials[col] = pd.to_numeric(trials[col], errors="coerce")
    top = trials[[HEADLINE, PAPER_STYLE, VALIDATION]].abs().max().max()
    scale = 100.0 if not (top > 1.0 + 1e-9) else 1.0  # fractions -> percent
    trials["acc"] = trials[HEADLINE] * scale
    trials["acc_paper"] = trials[PAPER_STYLE] * scale
    trials["acc_val"] = trials[VALIDATION] * scale

    labels = [variant_label([level_str(v) for v in row])
              for row in trials[[f.key for f in factors]].itertuples(index=False)]
    order = _variant_order(factors, labels)
    trials["variant"] = pd.Categorical(labels, categories=order, ordered=True)
    datasets = list(dict.fromkeys(trials["dataset"]))
    trials["experiment"] = [repr((ds, level_str(seed), sorted(e.items()))) for ds, seed, e in
                            zip(trials["dataset"], trials[SEED], effective, strict=True)]
    trials["duplicate_of"] = _copies(trials)

    curves = pd.concat(curve_tables, ignore_index=True) if curve_tables else pd.DataFrame()
    if len(curves) and "trial_id" in curves:
        keep = trials[["study", "trial_id", "dataset", "variant", "status", SEED]].rename(
            columns={"status": "trial_status", SEED: "seed"})
        keep.loc[trials["duplicate_of"] != "", "trial_status"] = "duplicate"
        drop = [c for c in ("dataset", "variant", "trial_status", "seed") if c in curves]
        curves = curves.drop(columns=drop).merge(keep, on=["study", "trial_id"], how="inner")

    # what the study driver did not record (older folders, errored trials), from the spec
    recorded = trials.get(outcomes.ON, pd.Series(np.nan, index=trials.index))
    trials[outcomes.ON] = [level_str(r) == "True" if level_str(r) != "NA" else on
                           for r, (on, _) in zip(recorded, spec_side, strict=True)]
    recorded = pd.to_numeric(trials.get(outcomes.BETA, pd.Series(np.nan, index=trials.index)),
                             errors="coerce")
    trials[outcomes.BETA] = recorded.fillna(pd.Series([b for _, b in spec_side],
                                                      index=trials.index))
    trials = outcomes.add_outcomes(trials, curves, scale)

    tune = (specs[0].get("tune") if specs else None) or {}
    metric, mode = tune.get("metric", "val_acc"), tune.get("metric_mode", "max")
    objectives = (list(zip(metric, mode, strict=True)) if isinstance(metric, list)
                  else [(metric, mode)])
    return Results(
        dirs=dirs, specs=specs, metas=metas, trials=trials, curves=curves, factors=factors,
        nuisance=nuisance, datasets=datasets, mode=tune.get("mode", "grid"),
        scheduler=tune.get("scheduler", "fifo"), metric=objectives[0][0], objectives=objectives,
        journals=[d / "optuna.journal" for d in dirs if (d / "optuna.journal").is_file()],
        scale=scale, notes=notes,
    )


def config_values(trials: pd.DataFrame, specs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Each trial's config values that its folder's spec sets: the fixed values, the searched
    parameters' levels, and a named variant's values (config defaults are not included)."""
    named = variants_section(specs)
    search = _search(specs)
    out = []
    for row in trials.to_dict("records"):
        values = dict(specs[int(row["study"])].get("fixed") or {})
        values.update({k: row[k] for k in search if k in row and level_str(row[k]) != "NA"})
        if VARIANT in row and named:
            values.update(named.get(str(row[VARIANT]), {}))
        out.append(values)
    return out


def effective_config(values: dict[str, Any], on: bool) -> dict[str, str]:
    """A trial's config values (``config_values``) as level strings, with the keys that do
    nothing removed (``INACTIVE``); ``on``: RollingQ can rotate (``effective_rollingq``)."""
    out = {k: level_str(v) for k, v in values.items()}
    if not on:
        out = {k: v for k, v in out.items() if not k.startswith("rollingq.")}
        out["rollingq"] = "off"
    method = out.get("balance.method", "none")
    if method == "none":  # the method's keys do nothing; the method itself is a level
        out = {k: v for k, v in out.items()
               if not k.startswith("balance.") or k == "balance.method"}
    else:  # the other method's keys
        other = "balance.ogm_" if method == "pmr" else ("balance.pmr_", "balance.prototype_")
        out = {k: v for k, v in out.items() if not k.startswith(other)}
    return out


def _copies(trials: pd.DataFrame) -> list[str]:
    """Per trial, the trial id of the experiment's first usable trial when it is a later copy
    (else ""): a finished trial with a headline stands for its experiment."""
    usable = (trials["status"] == "finished") & trials["acc"].notna()
    first: dict[str, str] = {}
    out = []
    for exp, tid, ok in zip(trials["experiment"], trials["trial_id"], usable, strict=True):
        if not ok:
            out.append("")
        elif exp in first:
            out.append(first[exp])
        else:
            first[exp] = str(tid)
            out.append("")
    return out


def identical_results(res: Results) -> list[list[str]]:
    """Groups of counted trials (different experiments, same data set and seed) whose results
    are bit-identical: the headline, validation accuracy, final |AIR|, attention shares and
    noise accuracies. Not copies (their configurations differ), so they stay; e.g. caps of 3
    and 5 rotations where only 2 fire. The report flags them."""
    d = res.finished
    cols = [c for c in d.columns if c in (HEADLINE, VALIDATION, "final_air", "final_val_acc")
            or c.startswith(("val_share_", "noise_"))]
    cols = [c for c in cols if pd.api.types.is_numeric_dtype(d[c])]
    if not len(d) or not cols:
        return []
    key = d[["dataset", SEED, *cols]].astype(str).apply(tuple, axis=1)
    groups = d.groupby(key, sort=False)["trial_id"].apply(list)
    return [list(map(str, g)) for g in groups if len(g) > 1]


_EFFECTIVE: dict[str, tuple[bool, float]] = {}  # config values -> effective_rollingq's answer


def effective_rollingq(values: dict[str, Any]) -> tuple[bool, float]:
    """(RollingQ enabled with a rotation allowed, beta) of a trial's config values, with the
    config's defaults and data-set presets filled in (``rollingq.config``, no torch); built
    once per distinct set of values."""
    key = repr(sorted(values.items()))
    if key not in _EFFECTIVE:
        _EFFECTIVE[key] = _effective_rollingq(values)
    return _EFFECTIVE[key]


def _effective_rollingq(values: dict[str, Any]) -> tuple[bool, float]:
    from rollingq.config import ConfigError, build_config

    try:
        r = build_config(overrides=dict(values)).rollingq
        return r.enabled and r.max_rotations > 0, float(r.beta)
    except (ConfigError, TypeError, ValueError):  # an older spec: read what it says
        on = all(level_str(values.get(key, default)) != level_str(off)
                 for key, off, default in (("rollingq.enabled", False, True),
                                           ("rollingq.max_rotations", 0, 1)))
        return on, float(pd.to_numeric(values.get("rollingq.beta", np.nan), errors="coerce"))


def variants_section(specs: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """The union of the folders' ``variants`` values (name -> config values), in order."""
    out: dict[str, dict[str, Any]] = {}
    for spec in specs:
        section = spec.get("variants") or {}
        for name, values in (section.get("values") or {}).items():
            out.setdefault(str(name), dict(values or {}))
    return out


def _is_vanilla(values: dict[str, Any]) -> bool:
    """Attention fusion with RollingQ off and no balancing method: the paper's Vanilla MT."""
    off = any(key in values and level_str(values[key]) == level_str(v)
              for key, v in VANILLA.items())
    return (off and str(values.get("model.fusion", "attn")) == "attn"
            and str(values.get("balance.method", "none")) == "none")


def _variant_factor(named: dict[str, dict[str, Any]], observed: pd.Series) -> Factor:
    """The ``variant`` factor: the spec's variant names as levels (then any other observed);
    the baseline is the first vanilla variant (``_is_vanilla``), else the first."""
    levels = list(named) + [v for v in map(str, observed.dropna().unique()) if v not in named]
    baseline = next((n for n, values in named.items() if _is_vanilla(values)), levels[0])
    return Factor(VARIANT, "scientific", "choice", levels, baseline, False)


def _search(specs: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """The union of the folders' search sections, in order (the first folder's entry wins)."""
    out: dict[str, dict[str, Any]] = {}
    for spec in specs:
        for key, raw in (spec.get("search") or {}).items():
            out.setdefault(key, raw if isinstance(raw, dict) else {})
    return out


def _variant_order(factors: list[Factor], labels: list[str]) -> list[str]:
    """Variant labels ordered by the factors' level order (then any unexpected label)."""
    grid: list[str] = []
    if math.prod(len(f.levels) for f in factors) <= 10_000:  # else a continuous Optuna space
        grid = [variant_label(list(c)) for c in itertools.product(*(f.levels for f in factors))]
    seen = set(grid)
    return grid + [x for x in dict.fromkeys(labels) if x not in seen]
