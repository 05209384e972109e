"""What a study was asked to do, as the study driver records it: ``design.json``.

The driver (``study/design.py``) writes it beside ``space.yaml`` when a study starts, resumes or
grows; the analysis reads this record and never the spec, so it needs neither the spec's
grammar nor the training core's config. A folder written before the record existed gets one
from its ``space.yaml`` (``analysis.migrate``).

    space, question   the space's name and the question it asks
    mode, scheduler   grid or optuna; fifo or asha
    objectives        [metric, mode] of each objective (several in a Pareto study)
    num_samples       an Optuna study's samples per seed
    seeds             the trial seeds (``train.seed``)
    fixed             dotted config values every trial shares
    search            each searched key: role, type, the levels a grid enumerates (level
                      strings; none for a continuous range) and its Optuna distribution
                      (``optuna.distributions.distribution_to_json``)
    variants          a named-variant study's variants: name -> config values
    claims            the spec's ``claims`` block (family, margins) as declared
    sequential        a sequential study's design (budget, looks, hours, spending), or null
    classes           each data set's class count where it is known without its files
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

DESIGN = "design.json"
VERSION = 1


def level_str(value: Any) -> str:
    """One level as a string that is the same whether it came from YAML or a CSV.

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


class DesignError(ValueError):
    """A ``design.json`` that cannot be read; the message is one readable line."""


@dataclass(frozen=True)
class Searched:
    """One searched key as the study enumerates it.

    Attributes:
        key: Dotted config key (``variant`` for a space's named variants).
        role: ``scientific`` or ``nuisance``.
        type: ``choice``, ``int`` or ``float``.
        levels: The level strings a grid enumerates, in the spec's order; empty for a
            continuous Optuna range (the observed values are its levels).
        distribution: The Optuna distribution as JSON (None where it has none).
    """

    key: str
    role: str
    type: str
    levels: list[str]
    distribution: str | None = None


@dataclass(frozen=True)
class Design:
    """A study's ``design.json`` (see the module docstring for the fields)."""

    space: str
    question: str = ""
    mode: str = "grid"
    scheduler: str = "fifo"
    objectives: list[tuple[str, str]] = field(default_factory=lambda: [("val_acc", "max")])
    num_samples: int = 1
    seeds: list[int] = field(default_factory=lambda: [0])
    fixed: dict[str, Any] = field(default_factory=dict)
    search: list[Searched] = field(default_factory=list)
    variants: dict[str, dict[str, Any]] = field(default_factory=dict)
    claims: dict[str, Any] | None = None
    classes: dict[str, int] = field(default_factory=dict)
    sequential: dict[str, Any] | None = None

    def to_json(self) -> str:
        tree = {"version": VERSION, **asdict(self)}
        tree["objectives"] = [list(o) for o in self.objectives]
        return json.dumps(tree, indent=2, default=str) + "\n"

    @classmethod
    def from_tree(cls, tree: dict[str, Any]) -> Design:
        fields = {k: v for k, v in tree.items() if k != "version"}
        fields["objectives"] = [tuple(o) for o in fields.get("objectives") or [("val_acc",
                                                                                 "max")]]
        fields["search"] = [Searched(**s) for s in fields.get("search") or []]
        fields["classes"] = {str(k): int(v) for k, v in (fields.get("classes") or {}).items()}
        return cls(**fields)


def read(folder: Path) -> Design | None:
    """The folder's ``design.json``, or None where the study wrote none (an older folder).

    Raises:
        DesignError: The file is not JSON, or not a design of a version this code reads.
    """
    path = Path(folder) / DESIGN
    if not path.is_file():
        return None
    try:
        tree = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise DesignError(f"{path}: malformed JSON ({e})") from None
    if not isinstance(tree, dict) or tree.get("version") != VERSION:
        version = tree.get("version") if isinstance(tree, dict) else None
        raise DesignError(f"{path}: design version {version!r}, this code reads version "
                          f"{VERSION}; report it with the version of the project that ran it")
    try:
        return Design.from_tree(tree)
    except (TypeError, ValueError) as e:
        raise DesignError(f"{path}: not a study design ({e})") from None


def searched(designs: list[Design]) -> dict[str, Searched]:
    """The union of several folders' searched keys, in order (the first folder's entry wins)."""
    out: dict[str, Searched] = {}
    for d in designs:
        for s in d.search:
            out.setdefault(s.key, s)
    return out


def variants(designs: list[Design]) -> dict[str, dict[str, Any]]:
    """The union of several folders' named variants (name -> config values), in order."""
    out: dict[str, dict[str, Any]] = {}
    for d in designs:
        for name, values in d.variants.items():
            out.setdefault(name, dict(values))
    return out
