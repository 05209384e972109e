"""Before Ray starts: the checks a study passes or stops at with one line (exit 2), so no GPU hour
is spent on a study that cannot run: its data (every data setting it uses), the memory of each
distinct trial configuration against its GPU share, and on resume the data its trials so far
read."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from study.growth import changes
from study.space import VARIANT, Spec, SpecError, apply_variant


def data_overrides(spec: Spec) -> list[dict[str, Any]]:
    """The overrides of each distinct data setting the study's trials will use: the fixed
    values, per variant, with each searched ``data.*`` value; one per distinct set of
    ``data.*`` values (the other values come along: a data rule may name a model key)."""
    found = [{**spec.fixed, **sets} for sets in spec.variants.values()] or [dict(spec.fixed)]
    for p in spec.search:
        if p.key.startswith("data."):
            values = p.values if p.type == "choice" else [p.low, p.high]
            found = [{**f, p.key: v} for f in found for v in values]
    unique: dict[str, dict[str, Any]] = {}
    for f in found:
        data = sorted((k, v) for k, v in f.items() if k.startswith("data."))
        unique.setdefault(repr(data), f)
    return list(unique.values())


def check_data(spec: Spec) -> list[dict[str, Any]]:
    """The data preflight (``rollingq.data.preflight``) of every data setting the study uses,
    before Ray starts: a problem is a SpecError of one line, and no trial starts. Returns the
    settings' fingerprints (for ``meta.json``)."""
    from rollingq.config import build_config
    from rollingq.data import preflight

    fingerprints = []
    for overrides in data_overrides(spec):
        try:
            checked = preflight(build_config(overrides=overrides).data)
        except ValueError as e:  # ConfigError, DataError and the loaders' other input errors
            raise SpecError(re.sub(r"\s*\n\s*", "; ", str(e).strip())) from None
        print(f"data: {checked.summary}", flush=True)
        fingerprints.append(checked.fingerprint)
    return fingerprints


def trial_overrides(spec: Spec) -> list[dict[str, Any]]:
    """Each distinct configuration the study's trials will train (grid: every grid point, seeds
    aside; Optuna: the fixed values with each searched value in turn, per variant)."""
    if spec.grid:
        points = [{k: v for k, v in c.items() if k != "train.seed"} for c in spec.grid_configs()]
    else:  # each searched value alone, and every numeric range at its high end at once
        points = [{}]
        for p in spec.search:
            if p.key != VARIANT and not p.when:
                values = p.values if p.type == "choice" else [p.low, p.high]
                points += [{p.key: v} for v in values]
        points.append({p.key: p.high for p in spec.search if p.type != "choice" and not p.when})
        points = [{**pt, VARIANT: v} for pt in points for v in spec.variants] or points
    unique: dict[str, dict[str, Any]] = {}
    for pt in points:
        values = {**spec.fixed, **apply_variant(pt, spec.variants)}
        unique.setdefault(repr(sorted(values.items())), values)
    return list(unique.values())


def check_memory(spec: Spec, gpu_gib: float | None) -> None:
    """Before Ray starts: every distinct trial configuration fits its GPU share
    (``rollingq.memory``); a study that cannot fit is a SpecError of one line."""
    share = float(spec.tune["resources"].get("gpu", 0) or 0)
    if share <= 0:
        return  # CPU trials
    if gpu_gib is None:
        import torch

        if not torch.cuda.is_available():
            print("memory: not checked (no GPU on this machine; pass --gpu-gib with the "
                  "cluster's GPU memory to check that each trial fits its share)", flush=True)
            return
        gpu_gib = torch.cuda.get_device_properties(0).total_memory / 2**30
    from rollingq.config import ConfigError, build_config
    from rollingq.memory import GIB, RESERVED_FACTOR, check_fits, share_cap, size

    available = share_cap(share, int(gpu_gib * GIB))  # the trainable's cap
    worst, seen = None, set()
    for values in trial_overrides(spec):
        try:
            cfg = build_config(overrides=values)
        except ConfigError as e:
            raise SpecError(str(e)) from None
        t, o = cfg.train, cfg.optim  # what the memory depends on (not β, ρ, seeds, ...)
        key = repr((cfg.model, cfg.data, t.batch_size, t.precision, t.device,
                    t.activation_checkpointing, t.data_on_device, o.name, o.momentum > 0))
        if key in seen:
            continue
        seen.add(key)
        try:
            est = check_fits(cfg, available, reserved=RESERVED_FACTOR)
        except ValueError as e:
            where = ", ".join(f"{k}={v}" for k, v in values.items() if k not in spec.fixed)
            raise SpecError(f"a trial{' (' + where + ')' if where else ''} {e} (GPU share "
                            f"{share:g} of {gpu_gib:g} GiB, less a CUDA context)") from None
        worst = est if worst is None or est.total > worst.total else worst
    print(f"memory: the largest trial needs {size(worst.total)} of the {size(available)} its "
          f"GPU share gives ({worst.line()})", flush=True)


def check_same_data(folder: Path, data: list[dict[str, Any]]) -> None:
    """A resumed study reads the data its trials so far read: the fingerprints in its
    ``meta.json`` (when an earlier session wrote one) must equal today's."""
    path = folder / "meta.json"
    if not path.is_file():
        return
    before = json.loads(path.read_text()).get("data")
    if before is None or before == data:  # written before fingerprints were recorded
        return
    for old, new in zip(before, data, strict=False):
        if old != new:
            key, was, now = changes(old, new)[0]
            raise SpecError(f"--resume {folder}: the {new.get('dataset', 'data')} data set changed "
                            f"since the study's trials so far ran ({key} is {was!r} in meta.json, "
                            f"{now!r} now); restore those files, or start a new study on the new "
                            f"data")
    raise SpecError(f"--resume {folder}: the study reads {len(data)} data setting(s) now but "
                    f"{len(before)} in meta.json; start a new study for other data")
