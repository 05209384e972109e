"""A sequential study's looks: the group-sequential tests of the claims at each look (``judge``)
and their record, ``looks.json`` beside ``experiments.json`` (``read``, ``append``).

At look k (n_k seeds of a budget of N; information fraction t_k = n_k / N) each claim's per-seed
differences are those of ``analysis.claims`` (the same pairing, the same cleaning) and its tests
those of the fixed design (a one-sample t-test and the TOST against its margin,
``analysis.sequential.look_tests``), compared with boundaries that spend α over the looks
(``analysis.sequential``). The family is the study's Holm family (``claims.family``), its
members fixed at the first look: the claims judged there (two or more seeds that do not all give
the same difference); a claim outside it is listed with its reason and never judged later, so
the family's α is never split anew. Earlier looks are replayed from their record, never
recomputed from the data: a decision stays as it was taken.

``looks.json`` is a JSON list, one look an element, one element a line; a look is appended and
the earlier lines are never rewritten. Each look records its seeds and fraction, and per claim:
the effect and its tests (``p``, ``tost_p``, the look's statistic as a z, ``z``), the level each
test is tested at after Holm's recycling (``level``; ``equivalence_level``) with the threshold
there (``nominal_p``, matched on the t process at the looks' seed counts, the look's
``thresholds``; looks recorded before that used the z boundaries' nominal p and a study begun
so goes on so), as a z (``boundary``; likewise for the equivalence test),
the two-sided α that level has spent by this look (``spent``), the verdict and the look it was
decided at, the repeated confidence interval (``interval``) and the median-unbiased estimate
under the stage-wise ordering (``median_unbiased``) had the study stopped there; the study
driver adds the trial hours, the next look's estimate and the stop reason.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

import numpy as np
from scipy import stats

from analysis import claims
from analysis.declarations import declarations
from analysis.results import Results, ResultsError
from analysis.sequential import (
    SPENDING_NAMES,
    Sequential,
    look_tests,
    median_unbiased,
    nominal_p,
    repeated_interval,
    spent,
    thresholds,
)
from analysis.stats import ALPHA

LOOKS = "looks.json"
T_PROCESS = "t process"  # a look's thresholds matched on the t process (analysis.sequential)
ALL = "all"  # the family's name when the study's family is every claim on every data set


def read(folder: Path) -> list[dict[str, Any]]:
    """The looks recorded in a folder (``[]`` where it has no ``looks.json``).

    Raises:
        ResultsError: The file is not a list of looks.
    """
    path = Path(folder) / LOOKS
    if not path.is_file():
        return []
    try:
        looks = json.loads(path.read_text())
        if not isinstance(looks, list) or any(
                not isinstance(e, dict) or e.get("look") != i + 1 for i, e in enumerate(looks)):
            raise ValueError("its elements must be the looks 1, 2, ... in order")
    except ValueError as e:
        raise ResultsError(f"{path}: not a sequential study's looks ({e}); it is appended by "
                           f"study/run.py and never edited") from None
    return [_nan(e) for e in looks]


def append(folder: Path, entry: dict[str, Any]) -> None:
    """Appends a look to ``looks.json``: the file is replaced at once by its old text with one
    line more, so a crash leaves the old file or the new one."""
    path = Path(folder) / LOOKS
    old = path.read_text() if path.is_file() else ""
    if old and not old.endswith("\n]\n"):
        raise ResultsError(f"{path}: does not end as study/run.py writes it; restore it")
    line = json.dumps(_none(entry), allow_nan=False)
    new = f"{old[:-3]},\n{line}\n]\n" if old else f"[\n{line}\n]\n"
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(new)
    os.replace(tmp, path)


def _none(x: Any) -> Any:
    """NaN and infinities as JSON null (the record is strict JSON)."""
    if isinstance(x, dict):
        return {k: _none(v) for k, v in x.items()}
    if isinstance(x, list | tuple):
        return [_none(v) for v in x]
    if isinstance(x, float) and not math.isfinite(x):
        return None
    return x


def _nan(entry: dict[str, Any]) -> dict[str, Any]:
    """A recorded look with the tests' nulls read back as NaN."""
    for family in entry.get("families", []):
        for c in family["claims"]:
            for key in ("effect", "p", "tost_p", "z"):
                c[key] = np.nan if c.get(key) is None else float(c[key])
            for key in ("boundary", "equivalence_boundary"):
                c[key] = np.inf if c.get(key) is None else float(c[key])
    return entry


def describe(design: dict[str, Any]) -> str:
    """A sequential design (``design.json``'s ``sequential``) in one line."""
    hours = (f", at most {design['hours']:g} trial hours" if design.get("hours") is not None
             else ", no time budget")
    return (f"looks at {', '.join(map(str, design['looks']))} seeds of a budget of "
            f"{design['budget']} per data set, {SPENDING_NAMES[design['spending']]}-type "
            f"spending{hours}")


def name(claim: int, dataset: str) -> str:
    return f"{claim}@{dataset}"


def judge(res: Results, design: dict[str, Any], history: list[dict[str, Any]],
          seeds: list[int]) -> dict[str, Any]:
    """The next look of a sequential study (``design``: its ``sequential`` block as the driver
    records it, ``history``: the looks before, ``seeds``: the seeds this look trained): its
    record for ``looks.json``."""
    k = len(history)
    looks, budget = design["looks"], design["budget"]
    fractions = [n / budget for n in looks[: k + 1]]
    family, _ = declarations(res)
    judgements = {name(j.claim.number, j.dataset): j for j in claims.judge(res, plan=False)}
    if history:
        members = {f["name"]: [name(c["claim"], c["dataset"]) for c in f["claims"]]
                   for f in history[0]["families"]}
        excluded = history[0]["excluded"]
    else:
        members, excluded = {}, []
        for key, j in judgements.items():
            if j.judged:
                members.setdefault(j.dataset if family == "dataset" else ALL, []).append(key)
            else:
                excluded.append({"claim": j.claim.number, "dataset": j.dataset,
                                 "verdict": j.verdict, "reason": j.reason})
    # a study begun before the t process's thresholds goes on with the z boundaries' nominal p
    t_process = all(past.get("thresholds") == T_PROCESS for past in history)
    counts = [len(past["seeds"]) for past in history] + [len(seeds)]
    families = [_family(f, names, judgements, history, fractions, design["spending"],
                        counts if t_process else None)
                for f, names in members.items()]
    return {"look": k + 1, "seeds": sorted(int(s) for s in seeds), "fraction": fractions[-1],
            "alpha": ALPHA, "spending": design["spending"],
            "thresholds": T_PROCESS if t_process else "z boundaries", "families": families,
            "excluded": excluded,
            "undecided": sum(c["verdict"] == claims.INCONCLUSIVE
                             for f in families for c in f["claims"])}


def _family(family: str, names: list[str], judgements: dict[str, claims.Judgement],
            history: list[dict[str, Any]], fractions: list[float], spending: str,
            counts: list[int] | None) -> dict[str, Any]:
    """One family at the new look: the earlier looks replayed from their record, this one
    tested on the data (``counts``: each look's seeds, for thresholds on the t process)."""
    signs = {n: judgements[n].claim.sign for n in names}
    seq = Sequential(signs, ALPHA, spending, t_process=counts is not None)
    for i, past in enumerate(history):
        recorded = {name(c["claim"], c["dataset"]): c
                    for f in past["families"] if f["name"] == family for c in f["claims"]}
        seq.add(*({n: recorded[n][key] for n in names} for key in ("effect", "p", "tost_p")),
                fractions[: i + 1], counts[i] if counts else None)
    tests = {n: _tests(judgements[n]) for n in names}
    verdicts = seq.add(*({n: t[i] for n, t in tests.items()} for i in range(3)), fractions,
                       counts[-1] if counts else None)
    return {"name": family, "claims": [_claim(judgements[n], seq, n, tests[n], verdicts[n],
                                              fractions) for n in names]}


def _tests(j: claims.Judgement) -> tuple[float, float, float]:
    """A member's mean, t-test p and TOST p at this look (NaN where it cannot be tested now)."""
    x = j.diffs.to_numpy(dtype=float)
    if len(x) < 2 or not np.std(x) > 0:
        return (float(np.mean(x)) if len(x) else np.nan), np.nan, np.nan
    return look_tests(x, j.margin)


def _claim(j: claims.Judgement, seq: Sequential, key: str, tests: tuple[float, float, float],
           verdict: str, fractions: list[float]) -> dict[str, Any]:
    effect, p, tost = tests
    level, level_eq = seq.differ.level(key), seq.equal.level(key)
    counts = seq.seeds if seq.t_process else None
    c = tuple(stats.norm.isf(np.array(thresholds(level, fractions, seq.spending, 2, counts)) / 2)
              ) if level > 0 else (np.inf,) * len(fractions)
    c_eq = float(stats.norm.isf(thresholds(level_eq, fractions, seq.spending, 1, counts)[-1])
                 ) if level_eq > 0 else np.inf
    z = float(np.sign(effect) * stats.norm.isf(p / 2)) if np.isfinite(p) else np.nan
    x = j.diffs.to_numpy(dtype=float)
    decided = seq.differ.rejected.get(key, seq.equal.rejected.get(key))
    if key in seq.differ.rejected and key in seq.equal.rejected:
        decided = min(seq.differ.rejected[key], seq.equal.rejected[key])
    interval = repeated_interval(x, c[-1]) if np.isfinite(p) else (np.nan, np.nan)
    unbiased = np.nan
    if np.isfinite(z) and z != 0:
        theta = median_unbiased(z, len(fractions) - 1, c, fractions)
        unbiased = theta * math.sqrt(fractions[-1]) * effect / z
    return {"claim": j.claim.number, "dataset": j.dataset, "n": len(x), "margin": j.margin,
            "effect": effect, "p": p, "tost_p": tost, "z": z, "level": level,
            "boundary": c[-1], "nominal_p": nominal_p(c[-1], 2),
            "spent": 2 * spent(level / 2, fractions[-1], seq.spending) if level > 0 else 0.0,
            "equivalence_level": level_eq, "equivalence_boundary": c_eq,
            "equivalence_nominal_p": nominal_p(c_eq, 1), "verdict": verdict,
            "decided_at": None if decided is None else decided + 1,
            "interval": list(interval), "median_unbiased": unbiased}
