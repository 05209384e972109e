"""A sequential study: the spec's ``sequential:`` block, the claims its grid can judge, and the
loop of looks that runs it (``run``).

    sequential:
      budget: 20                # seeds per data set at most: the last look
      looks: [3, 5, 10, 20]     # the seed counts judged at, ending at the budget;
                                # or every: 2 (and first: 3): 3, 5, 7, ..., the budget
      hours: 40                 # optional: trial hours at most (no look starts past it)
      spending: obrien_fleming  # or pocock (Lan-DeMets spending functions)

The seeds are the spec's ``seeds`` in order, continued with the integers after the largest up to
the budget (``seed_order``); ``space.yaml`` lists the seeds trained so far. The study trains the
first look's seeds, judges the claims (``analysis.looks``: the group-sequential tests of
``analysis.sequential`` with Holm's α recycling), appends the look to ``looks.json``, keeps the
look's report in ``looks/<k>/``, and grows to the next look (a further Ray experiment, as
``--resume --set seeds=[...]`` grows a fixed study) only while a claim is undecided and the
time budget allows the next look at the trial hours measured so far. It stops and says why:
``all decided``, ``seed budget`` or ``time budget`` (or that no claim was testable at the first
look: every one outside the family). Killed anywhere, ``--resume`` goes on from
``looks.json`` and the Ray experiments: a look recorded there is never judged again.
"""

from __future__ import annotations

import dataclasses
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

from analysis.sequential import SPENDINGS
from study.options import RunOptions
from study.space import Spec, SpecError, apply_variant
from study.storage import Location

FIELDS = ("budget", "looks", "every", "first", "hours", "spending")
FIRST = 3  # the first look's seeds with `every:` and no `first:` (a t-test of 2 seeds is weak)
STOP_ALL, STOP_SEEDS, STOP_TIME = "all decided", "seed budget", "time budget"
STOP_NONE = "no claim testable at the first look"  # every claim outside the family


def _count(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def parse(raw: Any, source: str, mode: str, seeds: list[int]) -> dict[str, Any] | None:
    """The ``sequential:`` block, checked: ``{budget, looks, hours, spending}`` with the looks
    spelled out, or None without a block.

    Raises:
        SpecError: One line naming the key, the value, the rule and the fix.
    """
    if raw is None:
        return None
    at = f"({source}: sequential)"
    if not isinstance(raw, dict):
        raise SpecError(f"`sequential` must be a mapping like {{budget: 20, looks: [3, 5, 10, "
                        f"20]}}, but got {raw!r} ({source})")
    unknown = sorted(set(raw) - set(FIELDS))
    if unknown:
        raise SpecError(f"unknown field sequential.{unknown[0]} ({source}); valid: "
                        f"{', '.join(FIELDS)}")
    budget = raw.get("budget")
    if not _count(budget) or budget < 2:
        raise SpecError(f"`sequential.budget >= 2` must hold (the seeds per data set at the last "
                        f"look), but got budget={budget!r} {at}")
    if ("looks" in raw) == ("every" in raw):
        raise SpecError(f"give the looks as sequential.looks (seed counts, e.g. [3, 5, 10, "
                        f"{budget}]) or sequential.every (a look every k seeds), one of the two "
                        f"{at}")
    if "looks" in raw:
        if "first" in raw:
            raise SpecError(f"sequential.first goes with sequential.every, not with a list of "
                            f"looks {at}; drop it or write the looks as every: k")
        looks = raw["looks"]
        if (not isinstance(looks, list) or not looks or not all(_count(n) for n in looks)
                or any(b <= a for a, b in zip(looks, looks[1:], strict=False))):
            raise SpecError(f"sequential.looks must be increasing seed counts, e.g. [3, 5, 10, "
                            f"{budget}], but got {looks!r} {at}")
    else:
        every, first = raw["every"], raw.get("first", max(FIRST, raw["every"]) if _count(
            raw["every"]) else FIRST)
        if not _count(every) or every < 1 or not _count(first) or first < 2:
            raise SpecError(f"`sequential.every >= 1` and `sequential.first >= 2` must hold, but "
                            f"got every={every!r}, first={first!r} {at}")
        looks = list(range(first, budget, every)) + [budget]
    if looks[0] < 2:
        raise SpecError(f"sequential.looks={looks}: the first look needs at least 2 seeds (a "
                        f"t-test of one seed has no variance) {at}")
    if looks[-1] != budget:
        raise SpecError(f"sequential.looks={looks} must end at the budget, {budget} seeds (the "
                        f"last look spends what is left of α) {at}; e.g. "
                        f"{[n for n in looks if n < budget] + [budget]}")
    hours = raw.get("hours")
    if hours is not None and (isinstance(hours, bool) or not isinstance(hours, int | float)
                              or not hours > 0):
        raise SpecError(f"`sequential.hours > 0` must hold (trial hours at most), but got "
                        f"hours={hours!r} {at}; leave it out for no time budget")
    spending = raw.get("spending", SPENDINGS[0])
    if spending not in SPENDINGS:
        raise SpecError(f"sequential.spending={spending!r} is not valid {at}; valid: "
                        f"{', '.join(SPENDINGS)}")
    if mode != "grid":
        raise SpecError(f"a sequential study grows by seeds, which an Optuna study cannot (its "
                        f"sampler chose each configuration with its seeds as repeats) {at}; set "
                        f"tune.mode: grid")
    if len(seeds) > budget or len(set(seeds)) != len(seeds):
        raise SpecError(f"seeds={seeds} must be distinct and at most the budget's {budget} "
                        f"{at}; the seeds are these, continued up to the budget")
    return {"budget": budget, "looks": looks, "hours": None if hours is None else float(hours),
            "spending": spending}


def seed_order(spec: Spec) -> list[int]:
    """The budget's seeds in the order they are trained: the spec's, then the integers after the
    largest of them."""
    seeds = list(spec.seeds)
    budget = spec.sequential["budget"]
    return seeds + list(range(max(seeds) + 1, max(seeds) + 1 + budget - len(seeds)))


def claimable(spec: Spec) -> dict[str, list[int]]:
    """The claims (``analysis.claims.CLAIMS``' numbers) the grid can judge on each data set: a
    paired claim needs a RollingQ trial and a vanilla one of the same configuration but for
    RollingQ, claim 1 a Vanilla MT trial (the rules of ``analysis.claims``)."""
    from analysis.claims import CLAIMS, context
    from analysis.paper import paper_name
    from rollingq.config import build_config

    arms: dict[str, dict[str, set[bool]]] = {}
    vanilla: set[str] = set()
    for point in spec.grid_points():
        values = {**spec.fixed, **apply_variant(point, spec.variants)}
        cfg = build_config(overrides=values)
        on = bool(cfg.rollingq.enabled and cfg.rollingq.max_rotations > 0)
        arms.setdefault(cfg.data.name, {}).setdefault(context(values), set()).add(on)
        if paper_name(values) == "Vanilla MT":
            vanilla.add(cfg.data.name)
    return {ds: [c.number for c in CLAIMS if (ds in vanilla if not c.paired
                                              else any(len(s) == 2 for s in by.values()))]
            for ds, by in arms.items()}


def judged_claims(spec: Spec, why: str) -> dict[str, list[int]]:
    """``claimable``, or a SpecError starting with ``why`` where the grid can judge no claim."""
    judged = claimable(spec)
    if not any(judged.values()):
        raise SpecError(f"{why}: no trial of {spec.source} pairs RollingQ on with off in the same "
                        f"configuration, and none is Vanilla MT, so no claim can be judged; "
                        f"search rollingq.enabled: [false, true] or add a vanilla variant")
    return judged


def check(spec: Spec) -> None:
    """A sequential spec judges at least one claim (else nothing could ever stop it early)."""
    if spec.sequential:
        judged_claims(spec, "a sequential study judges the paper's claims")


def recorded(spec: Spec, folder: Path) -> list[dict[str, Any]]:
    """A resumed sequential study's looks so far (``looks.json``), checked against its design
    before Ray starts: a file that cannot be read, or looks the design does not have, is a
    SpecError of one line."""
    from analysis.looks import read
    from analysis.results import ResultsError

    try:
        history = read(folder)
    except ResultsError as e:
        raise SpecError(f"--resume {folder}: {e}") from None
    order = seed_order(spec)
    for entry, n in zip(history, spec.sequential["looks"], strict=False):
        if entry.get("seeds") != sorted(order[:n]):
            raise SpecError(f"--resume {folder}: look {entry['look']} of looks.json judged seeds "
                            f"{entry.get('seeds')}, but the design's look {entry['look']} has "
                            f"{sorted(order[:n])}; the file belongs to another study")
    if len(history) > len(spec.sequential["looks"]):
        raise SpecError(f"--resume {folder}: looks.json records {len(history)} looks, the design "
                        f"has {len(spec.sequential['looks'])}; the file belongs to another study")
    return history


def run(spec: Spec, where: Location, opts: RunOptions, run_study: Callable[..., int],
        report: Callable[[Path], Path | None], **study: Any) -> int:
    """Runs (or resumes) a sequential study look by look (module docstring); ``run_study`` runs
    the study at its current seeds (``study.run.run_study``; ``study``: its other arguments) and
    ``report`` writes the report; returns the exit code."""
    from analysis.looks import append, judge
    from analysis.results import load
    from study.growth import grow

    design, folder = spec.sequential, where.folder
    order = seed_order(spec)
    history = recorded(spec, folder)
    if history and not (folder / "looks" / str(len(history)) / "report.md").is_file():
        _keep_report(folder, len(history), report)  # killed between its record and its report
    if history and history[-1]["stop"]:
        print(f"study {spec.name}: the sequential design ended at look {len(history)} "
              f"({history[-1]['stop']}); nothing to run", flush=True)
        return 0
    if not opts.resume:
        spec.seeds = order[: design["looks"][0]]
    while True:
        k = len(history)
        wanted = order[: design["looks"][k]]
        if len(spec.seeds) < len(wanted):
            added = wanted[len(spec.seeds):]
            spec.seeds = wanted
            grow(spec, folder, added)
        code = run_study(spec, where, dataclasses.replace(opts, no_report=True), **study)
        if code != 0:  # incomplete or errored: the look waits for --resume
            return code
        opts = dataclasses.replace(opts, resume=str(folder))
        entry = judge(load([folder]), design, history, spec.seeds)
        entry.update(_budget(spec, folder, entry, history))
        append(folder, entry)
        history.append(entry)
        _keep_report(folder, k + 1, report)
        print(_look_line(entry, design), flush=True)
        if entry["stop"]:
            return 0


def _budget(spec: Spec, folder: Path, entry: dict[str, Any],
            history: list[dict[str, Any]]) -> dict[str, Any]:
    """The look's trial hours so far, the next look's estimate from them, and the stop reason
    (None: grow to the next look)."""
    import pandas as pd

    design = spec.sequential
    trials = pd.read_csv(folder / "trials.csv")
    used = float(pd.to_numeric(trials["time_total_s"], errors="coerce").sum()) / 3600
    k = len(history)
    more = (design["looks"][k + 1] - design["looks"][k]) if k + 1 < len(design["looks"]) else 0
    per_trial = used / max(1, len(trials))
    nxt = per_trial * len(spec.grid_points()) * more
    judged = any(f["claims"] for f in entry["families"])
    stop = (STOP_NONE if not judged else STOP_ALL if entry["undecided"] == 0 else
            STOP_SEEDS if more == 0 else
            STOP_TIME if design["hours"] is not None and used + nxt > design["hours"] else None)
    return {"trial_hours": used, "next_look_hours": nxt if more else None, "stop": stop}


def _keep_report(folder: Path, look: int, report: Callable[[Path], Path | None]) -> None:
    """Writes the study's report (it shows the new look) and keeps a copy in ``looks/<k>/``."""
    written = report(folder)
    if written is None:
        return
    kept = folder / "looks" / str(look)
    if kept.exists():
        shutil.rmtree(kept)
    kept.mkdir(parents=True)
    for name in ("report.md", "report.html"):
        if (written.parent / name).is_file():
            shutil.copy2(written.parent / name, kept / name)
    if (written.parent / "figures").is_dir():
        shutil.copytree(written.parent / "figures", kept / "figures")


def _look_line(entry: dict[str, Any], design: dict[str, Any]) -> str:
    decided = sum(len(f["claims"]) for f in entry["families"]) - entry["undecided"]
    line = (f"look {entry['look']} of {len(design['looks'])}: {len(entry['seeds'])} seeds, "
            f"{decided} claim(s) decided, {entry['undecided']} undecided, "
            f"{entry['trial_hours']:.2f} trial hours so far")
    if entry["stop"]:
        return f"{line}; the study stops: {entry['stop']}"
    return f"{line}; next look: {entry['next_look_hours']:.2f} trial hours (estimated)"
