"""A study's spec -> the files that record it in its results folder.

    space.yaml    the merged spec (header: the question, the resume command), for people and
                  for ``--resume``
    design.json   what the analysis needs to know about the design (``analysis.design``): the
                  searched keys with the levels a grid enumerates and their Optuna
                  distributions, the named variants, the fixed values, the seeds, the tuning
                  objectives, the claims block and each data set's class count

Written when a study starts, resumes or grows, so an interrupted study can be reported.
"""

from __future__ import annotations

from pathlib import Path

import yaml

from analysis.design import DESIGN, Design, Searched, level_str
from rollingq.config import build_config
from rollingq.data import class_count
from study.optuna_db import distribution
from study.space import VARIANT, Param, Spec


def record(spec: Spec) -> Design:
    """The study's design as the analysis reads it."""
    return Design(space=spec.name, question=spec.question, mode=spec.tune["mode"],
                  scheduler=spec.tune["scheduler"], objectives=spec.objectives,
                  num_samples=int(spec.tune["num_samples"]), seeds=list(spec.seeds),
                  fixed=dict(spec.fixed),
                  search=[_searched(p) for p in spec.search if p.key != VARIANT],
                  variants=spec.variants, claims=spec.claims or None, classes=_classes(spec),
                  sequential=spec.sequential)


def _searched(p: Param) -> Searched:
    from optuna.distributions import distribution_to_json

    enumerable = p.type == "choice" or p.step is not None
    levels = [level_str(v) for v in p.grid_values()] if enumerable else []
    return Searched(p.key, p.role, p.type, levels,
                    distribution_to_json(distribution(p, grid=False)))


def _classes(spec: Spec) -> dict[str, int]:
    """Each data set the study trains on -> its class count, where known without its files."""
    names = [build_config(overrides=dict(spec.fixed)).data.name]
    names += [v for p in spec.search if p.key == "data.name" for v in p.values]
    names += [v["data.name"] for v in spec.variants.values() if "data.name" in v]
    out = {}
    for name in dict.fromkeys(map(str, names)):
        n = class_count(build_config(overrides={**spec.fixed, "data.name": name}).data)
        if n is not None:
            out[name] = n
    return out


def write(folder: Path, spec: Spec, spec_too: bool = True) -> None:
    """Writes ``design.json`` and (``spec_too``) ``space.yaml`` into the study's folder;
    ``space.yaml`` keeps the header comments it has."""
    folder = Path(folder)
    (folder / DESIGN).write_text(record(spec).to_json())
    if not spec_too:
        return
    path = folder / "space.yaml"
    header = (f"# {spec.question}\n# Merged spec of this study; resume with --resume {folder}\n"
              if not path.is_file() else
              "".join(line + "\n" for line in path.read_text().splitlines()
                      if line.startswith("#")))
    path.write_text(header + yaml.safe_dump(spec.to_dict(), sort_keys=False))
