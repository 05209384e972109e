"""A study's results folder(s) -> one in-memory record: trials, curves, factors and data sets.

The study driver writes ``results/<space>/<timestamp>/`` with ``trials.csv`` (one row a trial),
``curves.csv`` (trial × epoch), ``design.json`` (what the study was asked: ``analysis.design``),
``space.yaml`` (the merged spec, for people and for resuming), ``meta.json`` (provenance) and,
for Optuna studies, ``optuna.journal``. Only ``trials.csv`` is required: an interrupted study
may lack the rest, and the report says so instead of failing. A folder written by an older
driver is brought to today's files first (``analysis.migrate``); the spec is never read here.

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

from analysis import design as design_file
from analysis import migrate, outcomes
from analysis.design import Design, DesignError, Searched, level_str

__all__ = ["level_str"]  # the level vocabulary is analysis.design's; imported from here too
HEADLINE = "test_acc_at_best_val"  # test accuracy at the best validation epoch
PAPER_STYLE = "best_test_acc"  # best test epoch (model selection on test, as the paper does)
VALIDATION = "best_val_acc"
SEED = "train.seed"
DATASET_KEY = "data.name"
DEFAULT_DATASET = "synthetic"
STATUSES = ("finished", "diverged", "stopped", "timed_out", "errored", "incomplete")
OPTIONAL_STATUSES = ("timed_out",)  # shown only where a trial has it (a spec's stall limit)
# Levels that switch the method off; a factor not listed here has its first level as baseline.
VANILLA: dict[str, Any] = {"rollingq.enabled": False, "rollingq.max_rotations": 0}
VARIANT = "variant"  # the column (and factor) of a space's named variants
# Keys that do nothing, and when: RollingQ's keys when it cannot rotate (disabled, 0 rotations,
# or a fusion without attention), the balance method's keys when it is `none`.
INACTIVE = ("rollingq.* when RollingQ cannot rotate", "balance.* when balance.method is none",
            "the other balance method's keys (balance.ogm_* under pmr, balance.pmr_* and "
            "balance.prototype_fraction under ogm and ogm_ge)")


def shown_statuses(trials: pd.DataFrame) -> tuple[str, ...]:
    """The statuses a report counts for these trials: every one, but an optional one only
    where a trial has it."""
    have = set(trials.get("status", pd.Series(dtype=str)))
    return tuple(s for s in STATUSES if s not in OPTIONAL_STATUSES or s in have)


class ResultsError(ValueError):
    """A results folder cannot be read; the message is one readable line."""


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
        designs: Each folder's design (``analysis.design``).
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
        growths: Each folder's seeds per Ray experiment, from ``experiments.json``: the first
            experiment's seeds, then those each growth added (``[]``: the study never grew).
        looks: Each folder's looks of a sequential study (``analysis.looks``; ``[]``: none).
    """

    dirs: list[Path]
    designs: list[Design]
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
    growths: list[list[list[int]]] = field(default_factory=list)
    looks: list[list[dict[str, Any]]] = field(default_factory=list)

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


def _is_number(s: str) -> bool:
    if s in ("True", "False", "NA"):
        return False
    try:
        float(s)
    except ValueError:
        return False
    return True


def _factor(entry: Searched, observed: pd.Series, vanilla: np.ndarray) -> Factor:
    """A factor from its searched entry and its observed values (``vanilla``: the trials where
    RollingQ cannot rotate; a factor that is NA in all of them has its baseline there)."""
    levels = list(entry.levels)
    seen = [level_str(v) for v in observed.dropna().unique()]
    extra = [s for s in seen if s not in levels]
    if extra and all(_is_number(s) for s in extra):
        extra.sort(key=float)
    levels = levels + extra
    if observed.isna().any() and "NA" not in levels:
        levels.append("NA")  # an inactive conditional parameter
    off = level_str(VANILLA[entry.key]) if entry.key in VANILLA else None
    if off is None and vanilla.any() and observed[vanilla].isna().all() and "NA" in levels:
        off = "NA"  # nested: the factor exists in the RollingQ arm only
    baseline = off if off in levels else (levels[0] if levels else "NA")
    numeric = bool(levels) and all(_is_number(s) for s in levels if s != "NA")
    return Factor(entry.key, entry.role, entry.type, levels, baseline, numeric)


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


def load(dirs: list[Path]) -> Results:
    """Reads one or more results folders (of one study, or of the same study on several data sets).

    Raises:
        ResultsError: A folder is missing or has no ``trials.csv``, or a file is malformed.
    """
    if not dirs:
        raise ResultsError("no results folder given; pass at least one results/<space>/<time>/")
    from analysis import looks as looks_file  # it judges a Results: imported here, not above

    dirs = [check_dir(Path(d)) for d in dirs]
    metas = [_read_json(d / "meta.json") for d in dirs]
    designs, notes = _designs(dirs)
    notes += [f"`{d}` has no meta.json." for d, m in zip(dirs, metas, strict=True) if not m]
    trials = _trials(dirs, designs)
    values = config_values(trials, designs)
    trials = migrate.arms(trials, values)
    effective = [effective_config(v, on) for v, on in zip(values, trials[outcomes.ON],
                                                          strict=True)]
    search = {k: e for k, e in design_file.searched(designs).items() if k != DATASET_KEY}
    for key in search:  # a factor that does nothing in a trial reads NA there
        if key in trials and key not in VANILLA:
            idle = [key in v and key not in e for v, e in zip(values, effective, strict=True)]
            trials[key] = trials[key].astype(object).mask(idle, np.nan)
    vanilla = ~trials[outcomes.ON].to_numpy(dtype=bool)
    factors = [_factor(e, trials[k], vanilla) for k, e in search.items()
               if e.role == "scientific"]
    named = design_file.variants(designs)
    if named and VARIANT in trials:  # the spec's `variants` axis is one more factor
        factors.insert(0, _variant_factor(named, trials[VARIANT]))
    nuisance = [_factor(e, trials[k], vanilla) for k, e in search.items() if e.role == "nuisance"]
    scale = _percent(trials)
    labels = [variant_label([level_str(v) for v in row])
              for row in trials[[f.key for f in factors]].itertuples(index=False)]
    trials["variant"] = pd.Categorical(labels, categories=_variant_order(factors, labels),
                                       ordered=True)
    trials["experiment"] = [repr((ds, level_str(seed), sorted(e.items()))) for ds, seed, e in
                            zip(trials["dataset"], trials[SEED], effective, strict=True)]
    trials["duplicate_of"] = _copies(trials)
    curves = _curves(dirs, trials)
    trials = outcomes.add_outcomes(trials, curves, scale)
    first = designs[0]
    return Results(
        dirs=dirs, designs=designs, metas=metas, trials=trials, curves=curves, factors=factors,
        nuisance=nuisance, datasets=list(dict.fromkeys(trials["dataset"])), mode=first.mode,
        scheduler=first.scheduler, metric=first.objectives[0][0], objectives=first.objectives,
        journals=[d / "optuna.journal" for d in dirs if (d / "optuna.journal").is_file()],
        scale=scale, notes=notes, growths=[_growth(d) for d in dirs],
        looks=[looks_file.read(d) for d in dirs],
    )


def _growth(folder: Path) -> list[list[int]]:
    """The seeds of each of a grown study's Ray experiments (``experiments.json``)."""
    path = folder / "experiments.json"
    if not path.is_file():
        return []
    try:
        listed = json.loads(path.read_text())
        return [[int(s) for s in e["seeds"]] for e in listed]
    except (json.JSONDecodeError, TypeError, KeyError, ValueError) as e:
        raise ResultsError(f"{path}: not a list of {{ray, seeds}} experiments ({e})") from None


def _designs(dirs: list[Path]) -> tuple[list[Design], list[str]]:
    """Each folder's ``design.json``, or the one its ``space.yaml`` gives (an older folder);
    and a note per folder that has neither."""
    designs, notes = [], []
    for d in dirs:
        try:
            found = design_file.read(d)
        except DesignError as e:
            raise ResultsError(str(e)) from None
        if found is None:
            tree = _read_yaml(d / "space.yaml")
            if not tree:
                notes.append(f"`{d}` has no space.yaml.")
            found = migrate.from_spec(tree, d.parent.name)
        designs.append(found)
    return designs, notes


def _trials(dirs: list[Path], designs: list[Design]) -> pd.DataFrame:
    """Every folder's ``trials.csv`` in one table, with the folder (``study``), the data set
    and a value of every key another folder searched (its fixed value, or ``default``)."""
    search = design_file.searched(designs)
    tables = []
    for i, (d, design) in enumerate(zip(dirs, designs, strict=True)):
        t = migrate.trials(_read_csv(d / "trials.csv")).copy()  # one block a dtype: cheap inserts
        if DATASET_KEY not in t:
            t[DATASET_KEY] = design.fixed.get(DATASET_KEY, DEFAULT_DATASET)
        for key in search:  # a parameter searched elsewhere but fixed here
            if key not in t:
                t[key] = design.fixed.get(key, "default")
        t.insert(0, "study", i)
        tables.append(t)
    trials = pd.concat(tables, ignore_index=True).copy()
    trials["status"] = trials["status"].astype(object).fillna("incomplete").astype(str)
    trials["error"] = trials["error"].astype(object).fillna("").astype(str)
    trials["dataset"] = trials[DATASET_KEY].fillna(DEFAULT_DATASET).astype(str)
    if SEED not in trials:
        trials[SEED] = 0
    return trials


def _percent(trials: pd.DataFrame) -> float:
    """Adds the accuracies in percent (``acc``, ``acc_paper``, ``acc_val``); returns the scale
    (100 when the file holds fractions)."""
    for col in (HEADLINE, PAPER_STYLE, VALIDATION):
        if col not in trials:
            trials[col] = np.nan
        trials[col] = pd.to_numeric(trials[col], errors="coerce")
    top = trials[[HEADLINE, PAPER_STYLE, VALIDATION]].abs().max().max()
    scale = 100.0 if not (top > 1.0 + 1e-9) else 1.0  # fractions -> percent
    trials["acc"] = trials[HEADLINE] * scale
    trials["acc_paper"] = trials[PAPER_STYLE] * scale
    trials["acc_val"] = trials[VALIDATION] * scale
    return scale


def _curves(dirs: list[Path], trials: pd.DataFrame) -> pd.DataFrame:
    """Every folder's ``curves.csv`` with each trial's data set, variant, status and seed."""
    tables = []
    for i, d in enumerate(dirs):
        c = _read_csv(d / "curves.csv")
        if len(c):
            c.insert(0, "study", i)
            tables.append(c)
    curves = pd.concat(tables, ignore_index=True) if tables else pd.DataFrame()
    if len(curves) and "trial_id" in curves:
        keep = trials[["study", "trial_id", "dataset", "variant", "status", SEED]].rename(
            columns={"status": "trial_status", SEED: "seed"})
        keep.loc[trials["duplicate_of"] != "", "trial_status"] = "duplicate"
        drop = [c for c in ("dataset", "variant", "trial_status", "seed") if c in curves]
        curves = curves.drop(columns=drop).merge(keep, on=["study", "trial_id"], how="inner")
    return curves


def config_values(trials: pd.DataFrame, designs: list[Design]) -> list[dict[str, Any]]:
    """Each trial's config values that its folder's design sets: the fixed values, the searched
    keys' levels, and a named variant's values (config defaults are not included)."""
    named = design_file.variants(designs)
    search = design_file.searched(designs)
    out = []
    for row in trials.to_dict("records"):
        values = dict(designs[int(row["study"])].fixed)
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


def _variant_order(factors: list[Factor], labels: list[str]) -> list[str]:
    """Variant labels ordered by the factors' level order (then any unexpected label)."""
    grid: list[str] = []
    if math.prod(len(f.levels) for f in factors) <= 10_000:  # else a continuous Optuna space
        grid = [variant_label(list(c)) for c in itertools.product(*(f.levels for f in factors))]
    seen = set(grid)
    return grid + [x for x in dict.fromkeys(labels) if x not in seen]
