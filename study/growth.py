"""A study resumed: the spec it resumes with and the seeds it grows by, its Ray experiments
(``ray/``, then ``ray-2/``... one per growth, listed in ``experiments.json``), and Ray's resume
state of each made readable before Ray starts (``study.resume``).

A grid study grows by seeds: ``--resume DIR --set seeds=[...]`` with the old seeds and new ones
trains only the new seeds' trials, as a further Ray experiment of the same study. Any other
change to the spec on resume is bad input.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml

from study.options import RunOptions, smoke, with_paths_absolute
from study.space import Spec, SpecError, parse_spec
from study.specfile import apply_overrides
from study.storage import join_uri

RAY_DIR = "ray"  # the study's first Ray experiment folder in its storage
EXPERIMENTS = "experiments.json"  # a grown study's Ray experiments and the seeds of each


def resumed_spec(opts: RunOptions, folder: Path) -> tuple[Spec, list[int]]:
    """The spec of a resumed study and the seeds it grows by (none for a plain resume).

    The study's ``space.yaml`` with the command line's overrides: the seed list may grow (the old
    seeds kept, in a grid study); any other change is a SpecError naming the first key changed.
    """
    path = folder / "space.yaml"
    tree = yaml.safe_load(path.read_text())
    name = tree.get("name") or opts.space_name

    def parse(t: dict[str, Any]) -> Spec:
        return parse_spec(t, name, str(path), tree.get("question", ""))

    stored = parse(tree)
    if not opts.overrides and not opts.smoke_test:
        return stored, []
    requested = parse(apply_overrides(copy.deepcopy(tree), list(opts.overrides)))
    requested = with_paths_absolute(smoke(requested) if opts.smoke_test else requested)
    old, new = stored.to_dict(), requested.to_dict()
    fix = ("only the seed list may grow on resume (--set seeds=[...] with the old seeds and new "
           "ones); start a new study for another spec")
    for key, before, after in changes(old, new):
        if key != "seeds":
            was = ("not set" if not key.startswith("fixed.") else "not a fixed value"
                   ) if before is None else repr(before)
            raise SpecError(f"--resume {folder}: {key.removeprefix('fixed.')} is {was} in the "
                            f"study's space.yaml but {after!r} on the command line; {fix}")
    if requested.seeds == stored.seeds:
        return stored, []
    dropped = [s for s in stored.seeds if s not in requested.seeds]
    repeated = sorted({s for s in requested.seeds if requested.seeds.count(s) > 1})
    added = [s for s in requested.seeds if s not in stored.seeds]
    if dropped or repeated or not added:
        problem = (f"drops the trained seed(s) {dropped}" if dropped else
                   f"repeats the seed(s) {repeated}" if repeated else "reorders the seeds")
        raise SpecError(f"--resume {folder}: seeds={requested.seeds} {problem}; a study grows "
                        f"by new seeds after its own {stored.seeds}, e.g. seeds="
                        f"{stored.seeds + [max(stored.seeds) + 1]}")
    if stored.sequential:
        raise SpecError(f"--resume {folder}: a sequential study grows by its own looks "
                        f"({stored.sequential['looks']} seeds); resume it with --resume {folder} "
                        f"alone, or change sequential.budget in a new study")
    if not stored.grid:
        raise SpecError(f"--resume {folder}: an Optuna study cannot grow by seeds (its sampler "
                        f"chose each configuration with the seeds {stored.seeds} as repeats); "
                        f"run a new study with seeds={requested.seeds}")
    stored.seeds = stored.seeds + added
    return stored, added


def changes(old: Any, new: Any, key: str = "") -> list[tuple[str, Any, Any]]:
    """(dotted key, old value, new value) for each value that differs between two spec trees."""
    if isinstance(old, dict) and isinstance(new, dict):
        out = []
        for k in list(old) + [k for k in new if k not in old]:
            out += changes(old.get(k), new.get(k), f"{key}.{k}" if key else str(k))
        return out
    return [] if old == new else [(key, old, new)]


def experiments(folder: Path, spec: Spec, added: Sequence[int] = ()) -> list[tuple[str, list[int]]]:
    """The study's Ray experiments, each (its folder in the study's storage, its seeds): one
    (``ray``, every seed) until the study grows by seeds; ``added`` names the seeds it grows by
    now (a further experiment)."""
    path = folder / EXPERIMENTS
    listed = ([(e["ray"], list(e["seeds"])) for e in json.loads(path.read_text())]
              if path.is_file() else [(RAY_DIR, [s for s in spec.seeds if s not in added])])
    if added:
        listed.append((f"{RAY_DIR}-{len(listed) + 1}", list(added)))
    return listed


def grow(spec: Spec, folder: Path, added: list[int]) -> None:
    """Records that the study grows by the seeds ``added``: its ``space.yaml`` with the longer
    seed list and ``experiments.json`` with the new Ray experiment (so a plain ``--resume``
    continues an interrupted growth)."""
    from study import design

    listed = experiments(folder, spec, added)
    design.write(folder, spec)
    (folder / EXPERIMENTS).write_text(
        json.dumps([{"ray": d, "seeds": s} for d, s in listed], indent=2) + "\n")
    kept = [seed for seed in spec.seeds if seed not in added]
    print(f"study {spec.name}: grows by seed(s) {added}: {len(spec.grid_points()) * len(added)} "
          f"new trials in {listed[-1][0]}/ (the trials of seeds {kept} are kept)", flush=True)


def repair_state(spec: Spec, storage: str, folder: Path, callbacks: Sequence[Any],
                 ray_dir: str = RAY_DIR) -> None:
    """Makes Ray's resume state of one of the study's experiments readable (``study.resume``)
    before Ray starts, saying what it repaired; a state past repair is a SpecError."""
    from study.resume import RepairError, repair
    from study.tuner import build_tuner

    exp = join_uri(storage, ray_dir)
    try:
        lines = repair(exp, lambda: build_tuner(spec, storage, folder, callbacks, ray_dir))
    except RepairError as e:
        raise SpecError(str(e)) from None
    for line in lines:
        print(f"resume: {line}", flush=True)
