"""A search space's tree (``study/specfile.py`` reads the files) -> a validated study spec,
before Ray starts.

A spec file has the sections ``fixed`` (config values), ``search`` (one entry per parameter:
``role`` scientific | nuisance, ``type`` choice | int | float, with ``values`` or
``low``/``high``/``log``/``step``, and optionally ``when: {key: value}`` for a conditional
parameter: it exists only where each key has that value, or one of a list of values; elsewhere
the trial keeps the config's default and the column reads NA), ``variants`` (optional:
``role`` and ``values``, named sets of config values that form one more axis, the parameter
``variant``, for comparisons a factorial grid cannot express, such as the fusions of a table
where only one of them may enable RollingQ), ``seeds`` and
``tune`` (mode, metric, num_samples, scheduler, resources, max_failures, ...). Every name is a
dotted config key (``rollingq.beta``); every value is checked against the config
(``rollingq.config``) before any trial runs.

Errors are ``SpecError`` with one line: the rule, the value received, the file and key, and the
fix or the valid options.
"""

from __future__ import annotations

import copy
import itertools
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rollingq.config import (
    ConfigError,
    build_config,
    unknown_key_hint,
    valid_keys,
)

ROOT = Path(__file__).resolve().parents[1]
SECTIONS = ("fixed", "variants", "search", "seeds", "tune", "claims", "sequential")
ROLES = ("scientific", "nuisance")
TYPES = ("choice", "int", "float")
MODES = ("grid", "optuna")
SCHEDULERS = ("fifo", "asha")
METRIC_MODES = ("max", "min")
TUNE_DEFAULTS: dict[str, Any] = {
    "mode": "grid",
    "metric": "val_acc",
    "metric_mode": "max",
    "num_samples": 1,
    "scheduler": "fifo",
    "grace_period": 2,
    "reduction_factor": 3,
    "resources": {"cpu": 1, "gpu": 0},
    "max_failures": 2,
    "max_concurrent": 0,
    "sampler_seed": 0,
    "stall_minutes": 0,  # cut a trial that reports no epoch for this long (0: never; study.stall)
}
PARAM_FIELDS = {"role", "type", "values", "low", "high", "log", "step", "when"}
VARIANT = "variant"  # the parameter (and trials.csv column) that names a trial's variant
VARIANT_FIELDS = ("role", "values")
METRICS = ("val_acc", "val_f1", "val_loss", "val_abs_air", "test_acc_at_best_val",
           "test_f1_at_best_val", "best_val_acc", "train_loss")


class SpecError(ValueError):
    """A search-space file or override breaks a rule; the message is one readable line."""


@dataclass
class Param:
    """One searched parameter.

    Attributes:
        key: Dotted config key.
        role: ``scientific`` (the question) or ``nuisance`` (tuned away).
        type: ``choice``, ``int`` or ``float``.
        values: The choices (``choice``) or, in grid mode, the enumerated range.
        when: Conditions ``{key: value}`` (or ``{key: [values]}``: one of them) under which the
            parameter exists. Optuna suggests it only then (define-by-run); a grid leaves it
            out elsewhere, so a grid point without it is one trial, not one per value.
        table: For the ``variant`` parameter only: variant name -> its config values.
    """

    key: str
    role: str
    type: str
    values: list[Any] = field(default_factory=list)
    low: float | None = None
    high: float | None = None
    log: bool = False
    step: float | None = None
    when: dict[str, Any] = field(default_factory=dict)
    table: dict[str, dict[str, Any]] = field(default_factory=dict)

    def active(self, values: dict[str, Any]) -> bool:
        """Whether the parameter exists given the other values (``when``)."""
        return all(_holds(values.get(k), v) for k, v in self.when.items())

    def grid_values(self) -> list[Any]:
        """The values a grid enumerates: the choices, or the stepped range."""
        if self.type == "choice":
            return list(self.values)
        n = int(math.floor((self.high - self.low) / self.step + 1e-9)) + 1
        vals = [self.low + i * self.step for i in range(n)]
        return [int(round(v)) for v in vals] if self.type == "int" else [round(v, 12) for v in vals]

    def as_dict(self) -> dict[str, Any]:
        d = {"role": self.role, "type": self.type}
        if self.type == "choice":
            d["values"] = list(self.values)
        else:
            d.update(low=self.low, high=self.high, log=self.log)
            if self.step is not None:
                d["step"] = self.step
        if self.when:
            d["when"] = dict(self.when)
        return d


def _holds(value: Any, condition: Any) -> bool:
    return value in condition if isinstance(condition, list) else value == condition


@dataclass
class Spec:
    """A validated study spec.

    Attributes:
        name: The space's name (file stem).
        question: The first comment line of the file: the question the study asks.
        source: Where it was read from.
        fixed: Dotted config values shared by every trial.
        search: The searched parameters, in file order; the ``variant`` parameter first when
            the file has ``variants``.
        seeds: Trial seeds (``train.seed``), one replicate per seed.
        tune: The tune section with defaults filled in.
        claims: How the report judges the paper's claims (``analysis.declarations.declared``): the
            Holm family and the margins that replace the defaults, e.g. ``{"family":
            "dataset", "margins": {6: 0.5}}``.
        sequential: A sequential study's design (``study.sequential.parse``: budget, looks,
            hours, spending), or None for a fixed design.
    """

    name: str
    question: str
    source: str
    fixed: dict[str, Any]
    search: list[Param]
    seeds: list[int]
    tune: dict[str, Any]
    claims: dict[str, Any] = field(default_factory=dict)
    sequential: dict[str, Any] | None = None

    @property
    def grid(self) -> bool:
        return self.tune["mode"] == "grid"

    @property
    def variants(self) -> dict[str, dict[str, Any]]:
        """Variant name -> its config values, for the variants in use ({} without variants)."""
        p = next((p for p in self.search if p.key == VARIANT), None)
        return {name: dict(p.table[name]) for name in p.values} if p else {}

    @property
    def conditional(self) -> bool:
        """Whether a searched parameter has ``when`` conditions (a grid that is not a full
        factorial)."""
        return any(p.when for p in self.search)

    def expected_trials(self) -> int:
        """How many trials a complete study has."""
        if self.grid:
            return len(self.grid_points()) * len(self.seeds)
        return self.tune["num_samples"] * len(self.seeds)

    def grid_points(self) -> list[dict[str, Any]]:
        """The distinct searched values of a grid, seeds aside: the full factorial, with each
        conditional parameter left out where its ``when`` does not hold (then the points that
        differ only in it are one point).

        A variant appears by name (``variant``); ``apply_variant`` gives its config values.
        """
        axes = [[(p.key, v) for v in p.grid_values()] for p in self.search]
        combos = [dict(c) for c in itertools.product(*axes)] if axes else [{}]
        points: dict[str, dict[str, Any]] = {}
        for c in combos:
            values = {**self.fixed, **apply_variant(c, self.variants)}
            point = {k: v for k, v in c.items()
                     if next(p for p in self.search if p.key == k).active(values)}
            points.setdefault(repr(sorted(point.items())), point)
        return list(points.values())

    def grid_configs(self) -> list[dict[str, Any]]:
        """Every trial's searched values and seed in grid mode (``grid_points`` x seeds)."""
        return [{**c, "train.seed": s} for c in self.grid_points() for s in self.seeds]

    @property
    def objectives(self) -> list[tuple[str, str]]:
        """(metric, mode) of each objective: one, or two and more in a Pareto study."""
        metric, mode = self.tune["metric"], self.tune["metric_mode"]
        if isinstance(metric, list):
            return list(zip(metric, mode, strict=True))
        return [(metric, mode)]

    @property
    def metric(self) -> str:
        """The study metric: the one objective, or a Pareto study's first (progress lines,
        optuna.db's metric name)."""
        return self.objectives[0][0]

    @property
    def metric_mode(self) -> str:
        return self.objectives[0][1]

    def to_dict(self) -> dict[str, Any]:
        """The merged spec, as written to the results folder (``space.yaml``)."""
        tree: dict[str, Any] = {
            "name": self.name,
            "question": self.question,
            "fixed": dict(self.fixed),
        }
        variant = next((p for p in self.search if p.key == VARIANT), None)
        if variant is not None:
            tree["variants"] = {"role": variant.role, "values": self.variants}
        tree = {
            **tree,
            "search": {p.key: p.as_dict() for p in self.search if p.key != VARIANT},
            "seeds": list(self.seeds),
            "tune": copy.deepcopy(self.tune),
            "claims": copy.deepcopy(self.claims),
        }
        if self.sequential is not None:
            tree["sequential"] = copy.deepcopy(self.sequential)
        return tree


def apply_variant(values: dict[str, Any], variants: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """A trial's dotted config values with its variant's values in place of its name.

    Args:
        values: The trial's values; ``variant`` (if present) names a key of ``variants``.
        variants: Variant name -> config values (``Spec.variants``).
    """
    out = {k: v for k, v in values.items() if k != VARIANT}
    if VARIANT in values:
        out.update(variants[values[VARIANT]])
    return out


def _check_key(key: str, source: str) -> None:
    if key not in set(valid_keys()):
        raise SpecError(f"unknown config key {key!r} ({source}); {unknown_key_hint(key)}")


def _parse_variants(raw: Any, fixed: dict[str, Any], searched: set[str], where: str) -> Param:
    """The ``variants`` section -> the ``variant`` parameter (a choice over the names)."""
    at = f"({where}: variants)"
    shape = "{role: scientific, values: {NAME: {config.key: value, ...}, ...}}"
    role = _role(raw, VARIANT_FIELDS, at, f"variants must be a mapping like {shape}")
    values = raw.get("values")
    if not isinstance(values, dict) or not values:
        raise SpecError(f"`values` must be a non-empty mapping of variant names to config values, "
                        f"but got values={values!r} {at}")
    table: dict[str, dict[str, Any]] = {}
    for name, sets in values.items():
        if not isinstance(name, str) or not name:
            raise SpecError(f"variant names must be non-empty strings, but got {name!r} {at}")
        if not isinstance(sets, dict) or not sets:
            raise SpecError(f"variant {name!r} must map config keys to values, got {sets!r} {at}")
        for key in sets:
            _check_key(key, f"{where}: variants.{name}")
            if key in fixed or key in searched:
                section = "fixed" if key in fixed else "search"
                raise SpecError(f"{key} is set both in {section} and by variant {name!r} {at}; "
                                f"a key belongs to one section (a --set of it conflicts too)")
        table[name] = dict(sets)
    return Param(VARIANT, role, "choice", values=list(table), table=table)


def _role(raw: Any, fields: Any, at: str, shape: str) -> str:
    """Checks a parameter or variants mapping's fields and returns its role."""
    if not isinstance(raw, dict):
        raise SpecError(f"{shape}, got {raw!r} {at}")
    unknown = set(raw) - set(fields)
    if unknown:
        raise SpecError(f"unknown field {sorted(unknown)[0]!r} {at}; "
                        f"valid: {', '.join(sorted(fields))}")
    role = raw.get("role")
    if role not in ROLES:
        raise SpecError(f"role={role!r} is not valid {at}; valid: {', '.join(ROLES)}")
    return role


def _number(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool)


def _parse_param(key: str, raw: Any, where: str, mode: str) -> Param:
    at = f"({where}: search.{key})"
    role = _role(raw, PARAM_FIELDS, at, f"search.{key} must be a mapping like "
                 "{role: scientific, type: choice, values: [...]}")
    kind = raw.get("type")
    if kind not in TYPES:
        raise SpecError(f"type={kind!r} is not valid {at}; valid: {', '.join(TYPES)}")
    when = raw.get("when") or {}
    if (not isinstance(when, dict) or any(k not in valid_keys() for k in when)
            or any(isinstance(v, list) and not v for v in when.values())):
        raise SpecError(f"when={when!r} must map config keys to a value or a non-empty list of "
                        f"values {at}")
    if kind == "choice":
        values = raw.get("values")
        if not isinstance(values, list) or not values:
            raise SpecError(f"`values` must be a non-empty list, but got values={values!r} {at}")
        return Param(key, role, kind, values=values, when=when)
    low, high, step = raw.get("low"), raw.get("high"), raw.get("step")
    log = bool(raw.get("log", False))
    if not _number(low) or not _number(high):
        raise SpecError(f"`low` and `high` must be numbers, but got low={low!r}, "
                        f"high={high!r} {at}")
    if low > high:
        raise SpecError(f"`low <= high` must hold, but got low={low}, high={high} {at}")
    if log and low <= 0:
        raise SpecError(f"`low > 0` must hold with log: true, but got low={low} {at}")
    if step is not None and (not _number(step) or step <= 0):
        raise SpecError(f"`step > 0` must hold, but got step={step!r} {at}")
    if log and step is not None:
        raise SpecError(f"`step` and `log: true` cannot be combined {at}; drop one")
    if kind == "int":
        if not (float(low).is_integer() and float(high).is_integer()):
            raise SpecError(f"type int needs integer bounds, but got low={low}, high={high} {at}")
        low, high = int(low), int(high)
        step = int(step) if step is not None else (None if log else 1)
    if mode == "grid" and step is None:
        raise SpecError(f"grid mode cannot enumerate a continuous range {at}; give `step`, use "
                        f"type: choice, or tune.mode: optuna")
    return Param(key, role, kind, low=low, high=high, log=log, step=step, when=when)


def _validate_values(spec: Spec, where: str) -> None:
    """Builds a config with every searched value (one at a time) on top of ``fixed``."""
    def check(overrides: dict[str, Any], key: str) -> None:
        try:
            build_config(overrides=overrides)
        except ConfigError as e:
            raise SpecError(f"{e} [{where}: {key}]") from None

    searched = {p.key: p.values for p in spec.search if p.type == "choice"}
    for p in spec.search:
        for k, cond in p.when.items():
            wanted = cond if isinstance(cond, list) else [cond]
            if k in searched:
                stray = [v for v in wanted if v not in searched[k]]
                if stray:
                    raise SpecError(f"search.{p.key}.when: {k}={stray[0]!r} is not one of the "
                                    f"values {k} is searched over {list(searched[k])!r}, so "
                                    f"the condition can never hold there ({spec.source}); use "
                                    f"those values")

    base = {**spec.fixed, "train.seed": spec.seeds[0]}
    for key in spec.fixed:
        check(base, f"fixed.{key}")
    variants = spec.variants
    for name, sets in variants.items():
        check({**base, **sets}, f"variants.{name}")
    for p in spec.search:
        if p.key == VARIANT:
            continue
        values = p.values if p.type == "choice" else [p.low, p.high]
        for sets in variants.values() or [{}]:  # the grid crosses each value with each variant
            if any(k in sets and not _holds(sets[k], v) for k, v in p.when.items()):
                continue  # the parameter does not exist with this variant
            where_true = {k: v[0] if isinstance(v, list) else v for k, v in p.when.items()}
            for v in values:
                check({**base, **sets, **where_true, p.key: v}, f"search.{p.key}")


def parse_spec(tree: dict[str, Any], name: str, source: str, question: str = "") -> Spec:
    """Validates a spec tree (as read from YAML, after overrides).

    Raises:
        SpecError: Naming the file, the key, the value and the rule.
    """
    unknown = set(tree) - set(SECTIONS) - {"name", "question"}
    if unknown:
        raise SpecError(f"unknown section {sorted(unknown)[0]!r} in {source}; "
                        f"valid: {', '.join(SECTIONS)}")
    fixed = dict(tree.get("fixed") or {})
    for key in list(fixed) + list(tree.get("search") or {}):
        _check_key(key, source)
    tune = {**TUNE_DEFAULTS, **(tree.get("tune") or {})}
    unknown = set(tune) - set(TUNE_DEFAULTS)
    if unknown:
        raise SpecError(f"unknown tune field {sorted(unknown)[0]!r} ({source}); valid: "
                        f"{', '.join(TUNE_DEFAULTS)}")
    tune["resources"] = {**TUNE_DEFAULTS["resources"], **(tune["resources"] or {})}
    checks = [
        (tune["mode"] in MODES, "tune.mode", f"valid: {', '.join(MODES)}"),
        (tune["scheduler"] in SCHEDULERS, "tune.scheduler", f"valid: {', '.join(SCHEDULERS)}"),
    ]
    for ok, key, valid in checks:
        if not ok:
            value = tune[key.split(".")[1]]
            raise SpecError(f"{key}={value!r} is not valid ({source}); {valid}")
    _check_objectives(tune, source)
    res = tune["resources"]
    if set(res) - {"cpu", "gpu"}:
        raise SpecError(f"tune.resources takes cpu and gpu, got {sorted(res)} ({source})")
    if not _number(res["cpu"]) or res["cpu"] <= 0:
        raise SpecError(f"`resources.cpu > 0` must hold, but got cpu={res['cpu']!r} ({source})")
    gpu = res["gpu"]
    if not _number(gpu) or gpu < 0 or (gpu > 1 and not float(gpu).is_integer()):
        raise SpecError(f"`resources.gpu` must be a fraction in [0, 1] or a whole number, "
                        f"but got gpu={gpu!r} ({source})")
    counts = ("num_samples", "max_failures", "max_concurrent", "grace_period", "reduction_factor")
    for key in counts:
        if not isinstance(tune[key], int) or isinstance(tune[key], bool) or tune[key] < 0:
            raise SpecError(f"`tune.{key}` must be an integer >= 0, but got {tune[key]!r} "
                            f"({source})")
    stall = tune["stall_minutes"]
    if not _number(stall) or not 0 <= stall < float("inf"):
        raise SpecError(f"`tune.stall_minutes >= 0` must hold (a finite number; 0: no limit), "
                        f"but got {stall!r} ({source})")
    if tune["num_samples"] < 1:
        raise SpecError(f"`tune.num_samples >= 1` must hold, but got {tune['num_samples']} "
                        f"({source})")
    if tune["mode"] == "grid" and tune["scheduler"] == "asha":
        raise SpecError(f"tune.scheduler='asha' with tune.mode='grid' ({source}): ablation cells "
                        f"must be compared at equal budget; use scheduler: fifo or mode: optuna")
    seeds = tree.get("seeds", [0])
    if not isinstance(seeds, list) or not seeds or not all(isinstance(s, int) for s in seeds):
        raise SpecError(f"`seeds` must be a non-empty list of integers, but got {seeds!r} "
                        f"({source})")
    if tune["mode"] == "optuna" and tune["scheduler"] == "asha" and len(seeds) > 1:
        raise SpecError(f"optuna + asha with {len(seeds)} seeds ({source}): Ray's Repeater must "
                        f"not be combined with early stopping; use one seed or scheduler: fifo")
    search = [_parse_param(k, v, source, tune["mode"])
              for k, v in (tree.get("search") or {}).items()]
    if tree.get("variants") is not None:
        search.insert(0, _parse_variants(tree["variants"], fixed, {p.key for p in search}, source))
    from analysis.declarations import declared  # the claims' vocabulary has one owner

    try:
        claims = declared(tree.get("claims"), source)
    except ValueError as e:
        raise SpecError(str(e)) from None
    from study import sequential

    spec = Spec(name, question, source, fixed, search, seeds, tune,
                {"family": claims.family, "margins": dict(claims.margins)},
                sequential.parse(tree.get("sequential"), source, tune["mode"], seeds))
    _validate_values(spec, source)
    sequential.check(spec)
    return spec


def _check_objectives(tune: dict[str, Any], source: str) -> None:
    """``tune.metric`` and ``tune.metric_mode``: one metric and its mode, or lists of two or
    more distinct metrics and as many modes (a Pareto study: Optuna mode, no scheduler)."""
    metric, mode = tune["metric"], tune["metric_mode"]
    metrics = metric if isinstance(metric, list) else [metric]
    modes = mode if isinstance(mode, list) else [mode]
    for m in metrics:
        if m not in METRICS:
            raise SpecError(f"tune.metric={m!r} is not valid ({source}); valid: "
                            f"{', '.join(METRICS)}")
    for m in modes:
        if m not in METRIC_MODES:
            raise SpecError(f"tune.metric_mode={m!r} is not valid ({source}); valid: max, min")
    if not isinstance(metric, list):
        if isinstance(mode, list):
            raise SpecError(f"tune.metric_mode={mode!r} is a list but tune.metric={metric!r} is "
                            f"one metric ({source}); give one mode, or a list of metrics")
        return
    if len(metrics) < 2 or len(set(metrics)) != len(metrics):
        raise SpecError(f"tune.metric={metric!r} ({source}): a list names two or more distinct "
                        f"metrics (a Pareto study); give one metric as a string otherwise")
    if len(modes) != len(metrics):
        raise SpecError(f"tune.metric_mode={mode!r} ({source}): one mode per metric of "
                        f"tune.metric={metric!r}, e.g. {['max'] * len(metrics)}")
    if tune["mode"] != "optuna":
        raise SpecError(f"tune.metric={metric!r} with tune.mode={tune['mode']!r} ({source}): a "
                        f"Pareto study is searched by Optuna's multi-objective TPE; set "
                        f"tune.mode: optuna (a grid's report has no front to steer to)")
    if tune["scheduler"] != "fifo":
        raise SpecError(f"tune.scheduler={tune['scheduler']!r} with tune.metric={metric!r} "
                        f"({source}): a scheduler stops trials on one metric, so a Pareto study "
                        f"runs every trial its budget; set tune.scheduler: fifo")


class OptunaSpace:
    """Define-by-run Optuna space (picklable: Ray saves it with the searcher).

    Conditional parameters are suggested only when their ``when`` conditions hold on the
    values already drawn or fixed (a drawn variant counts with its config values), so Optuna's
    TPE sees them as conditional.
    """

    def __init__(self, params: list[Param], fixed: dict[str, Any]):
        self.params = params
        self.fixed = dict(fixed)

    def __call__(self, trial: Any) -> None:
        drawn: dict[str, Any] = dict(self.fixed)
        for p in self.params:
            if not p.active(drawn):
                continue
            if p.type == "choice":
                drawn[p.key] = trial.suggest_categorical(p.key, p.values)
                if p.table:  # a variant: its config values decide later `when` conditions
                    drawn.update(p.table[drawn[p.key]])
            elif p.type == "int":
                drawn[p.key] = trial.suggest_int(p.key, p.low, p.high, step=p.step or 1, log=p.log)
            else:
                drawn[p.key] = trial.suggest_float(p.key, p.low, p.high, step=p.step, log=p.log)
