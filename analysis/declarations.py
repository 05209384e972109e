"""What a study declares about judging the paper's claims, before any result: the Holm family
and the smallest effect of interest of each claim (the spec's ``claims:`` block; ``study/space.py``
checks it with ``declared`` before Ray starts, the report reads it back from ``design.json``
with ``declarations``)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from analysis.results import Results, ResultsError

# The Holm family of the claims (a study's `claims.family`): the claims judged on one data set
# (the default: a data set's verdicts do not change with the folders reported beside it), or
# every claim on every data set of the report.
FAMILIES = {"dataset": "the claims judged on one data set",
            "report": "every claim judged on every data set of the report"}
DEFAULT_FAMILY = "dataset"

# The smallest effect of interest per claim (the equivalence margin, in the claim's own units;
# docs/report.md lists them), declared independently of the paper: an effect the paper claims
# is not a smallest effect of interest. An |AIR| or imbalance change of 0.05; an adaptivity
# change of 0.1 in the per-modality -r the claim measures (not the paper's pooled r); 1 point of
# mean noise drop; half an accuracy point. A study overrides them in its spec (`claims.margins`).
MARGINS: dict[int, float] = {1: 0.05, 2: 0.05, 3: 0.05, 4: 0.1, 5: 1.0, 6: 0.5}


@dataclass(frozen=True)
class Declared:
    """What a study's spec declares about its claims (``claims:``): the Holm family
    (``FAMILIES``) and margins that replace ``MARGINS``, by claim number."""

    family: str = DEFAULT_FAMILY
    margins: dict[int, float] = field(default_factory=dict)


def declared(block: Any, source: str) -> Declared:
    """A spec's ``claims:`` block, checked.

    Raises:
        ValueError: One line naming the key, the value, the rule and the valid choices.
    """
    if block is None:
        return Declared()
    if not isinstance(block, dict):
        raise ValueError(f"`claims` must be a mapping with `family` and `margins`, but got "
                         f"{block!r} ({source})")
    unknown = sorted(set(block) - {"family", "margins"})
    if unknown:
        raise ValueError(f"unknown field claims.{unknown[0]} ({source}); valid: family, margins")
    family = block.get("family", DEFAULT_FAMILY)
    if family not in FAMILIES:
        raise ValueError(f"claims.family={family!r} is not valid ({source}); valid: "
                         + ", ".join(f"{k} ({v})" for k, v in FAMILIES.items()))
    margins = block.get("margins") or {}
    if not isinstance(margins, dict):
        raise ValueError(f"`claims.margins` must map claim numbers to margins, e.g. {{6: 0.5}}, "
                         f"but got {margins!r} ({source})")
    out = {}
    for key, value in margins.items():
        number = int(key) if str(key).isdigit() else None
        if number not in MARGINS:
            raise ValueError(f"claims.margins: {key!r} is not a claim ({source}); valid: "
                             + ", ".join(map(str, MARGINS)))
        if isinstance(value, bool) or not isinstance(value, int | float) or not (
                np.isfinite(value) and value > 0):
            raise ValueError(f"`claims.margins.{number} > 0` must hold, but got {value!r} "
                             f"({source}); it is claim ({number})'s smallest effect of interest "
                             f"in its own units (default {MARGINS[number]:g})")
        out[number] = float(value)
    return Declared(str(family), out)


def declarations(res: Results) -> tuple[str, dict[tuple[int, str], tuple[float, str]]]:
    """The family and the declared margins of a report's folders: ``(family, {(claim, data
    set): (margin, where)})``. Folders that declare different families are judged in the
    larger one (``report``).

    Raises:
        ResultsError: A folder's block is bad, or two folders holding one data set declare
            different margins for a claim.
    """
    families, margins = set(), {}
    for i, design in enumerate(res.designs):
        where = f"{res.dirs[i]}/space.yaml"
        try:
            d = declared(design.claims, where)
        except ValueError as e:
            raise ResultsError(str(e)) from None
        families.add(d.family)
        held = res.trials.loc[res.trials["study"] == i, "dataset"].unique()
        for number, value in d.margins.items():
            for ds in held:
                seen = margins.get((number, str(ds)))
                if seen is not None and seen[0] != value:
                    raise ResultsError(f"claims.margins.{number}: {value:g} ({where}) and "
                                     f"{seen[0]:g} ({seen[1]}) for the same data set {ds}; "
                                     f"declare one margin per claim and data set")
                margins[(number, str(ds))] = (value, where)
    family = "report" if "report" in families else DEFAULT_FAMILY
    return family, margins
