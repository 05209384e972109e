"""Synthetic results folders with planted effects, in the exact format study/run.py writes.

``write_study`` writes ``trials.csv``, ``curves.csv``, ``space.yaml``, ``design.json`` (what
the driver writes of the spec: ``analysis.migrate.from_spec`` gives it, checked against the
driver's ``study.design.record`` in ``tests/study/test_spaces.py``; ``design=False``: a folder
of a driver that wrote none) and ``meta.json`` (and,
for Optuna studies, a real ``optuna.journal``) into ``<root>/<name>/<timestamp>/``. Accuracies
are fractions, as the driver writes them; ``effect(params)`` gives a configuration's expected
headline accuracy and each seed adds Gaussian noise.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml

from analysis.design import DESIGN
from analysis.migrate import from_spec

MODALITIES = ("audio", "visual")
NOISE_LEVELS = ("0.0", "0.25", "0.5", "0.75", "1.0")


def grid(search: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """Every combination of the search's ``values``."""
    keys = list(search)
    return [dict(zip(keys, combo, strict=True))
            for combo in itertools.product(*(search[k]["values"] for k in keys))]


def rotating(params: dict[str, Any]) -> bool:
    return bool(params.get("rollingq.enabled", True)) and params.get(
        "rollingq.max_rotations", 1) != 0


ON_OFF = {"rollingq.enabled": {"role": "scientific", "type": "choice", "values": [False, True]}}
# What the paper claims, planted (``write_study(planted=...)``): RollingQ lowers |AIR| (0.45 ->
# 0.10), the favoured (audio) share (0.70 -> 0.52), the noise drop (0.30 -> 0.12), raises
# adaptivity (0.1 -> 0.4); without it |AIR| grows 0.03 an epoch.
PAPER = {
    "abs_air": lambda p: 0.10 if rotating(p) else 0.45,
    "air_slope": lambda p: -0.08 if rotating(p) else 0.03,
    "share": lambda p: 0.52 if rotating(p) else 0.70,
    "drop": lambda p: 0.12 if rotating(p) else 0.30,
    "adaptivity": lambda p: 0.40 if rotating(p) else 0.10,
}


def write_study(
    root: Path,
    *,
    name: str = "planted",
    search: dict[str, dict[str, Any]],
    effect: Callable[[dict[str, Any]], float],
    seeds: tuple[int, ...] = (0, 1, 2),
    fixed: dict[str, Any] | None = None,
    mode: str = "grid",
    scheduler: str = "fifo",
    configs: list[dict[str, Any]] | None = None,
    statuses: dict[int, str] | None = None,
    noise_sd: float = 0.004,
    epochs: int = 4,
    timestamp: str = "20260101-000000",
    rng_seed: int = 0,
    journal: bool = False,
    variants: dict[str, dict[str, Any]] | None = None,
    planted: dict[str, Callable[[dict[str, Any]], float]] | None = None,
    claims: dict[str, Any] | None = None,
    design: bool = True,
) -> Path:
    """Writes one results folder and returns it.

    Args:
        search: The space's search section (``{key: {role, type, values | low/high}}``).
        effect: Expected headline accuracy (a fraction) of a configuration.
        configs: The searched configurations (default: the grid of ``search``).
        statuses: Row index -> status other than ``finished`` (errored, diverged, stopped,
            incomplete), to build partial studies.
        journal: Also write an ``optuna.journal`` with the finished configurations.
        variants: The space's named variants (name -> config values); the configurations are
            then ``{"variant": name}``, as the driver writes them.
        planted: Expected outcomes of a configuration, each with a little seed noise (the
            claims' quantities, analysis/outcomes.py): ``abs_air`` (last epoch's validation
            |AIR|), ``air_slope`` (its change per epoch: the curve runs linearly into it),
            ``share`` (audio's validation attention share; visual gets 0.95 - share),
            ``drop`` (accuracy lost at noise level 1 on audio, a fraction), ``adaptivity``.
        claims: The spec's ``claims:`` block (family, margins), if any.
        design: Write ``design.json`` (False: a folder of a driver that wrote none).
    """
    rng = np.random.default_rng(rng_seed)
    planted = planted or {}
    fixed = dict(fixed or {"model.fusion": "attn"})
    statuses = statuses or {}
    folder = root / name / timestamp
    folder.mkdir(parents=True)
    if variants:
        configs = [{"variant": name} for name in variants]
    configs = configs if configs is not None else grid(search)
    rows, curves = [], []
    for i, (params, seed) in enumerate((c, s) for c in configs for s in seeds):
        tid = f"abcde_{i:05d}"
        status = statuses.get(i, "finished")
        acc = float(np.clip(effect(params) + rng.normal(0, noise_sd), 0, 1))
        n_epochs = epochs if status in ("finished", "diverged") else max(1, epochs // 2)
        if status == "incomplete":
            n_epochs = 0 if i % 2 else 1
        row: dict[str, Any] = {"trial_id": tid, "status": status,
                               "error": "RuntimeError: CUDA error: out of memory"
                               if status == "errored" else "",
                               **params, "train.seed": seed}
        metrics_known = status in ("finished", "stopped")
        rot = rotating(params)
        plant = {k: f(params) + rng.normal(0, 0.01 if k != "air_slope" else 0.002)
                 for k, f in planted.items()}
        row.update({
            "test_acc_at_best_val": acc if metrics_known else np.nan,
            "best_val_acc": acc + 0.01 if metrics_known else np.nan,
            "best_val_epoch": n_epochs - 1 if metrics_known else np.nan,
            "best_test_acc": acc + 0.005 if metrics_known else np.nan,
            "epochs": n_epochs,
            "final_val_acc": acc + 0.01 if metrics_known else np.nan,
            "final_test_acc": acc if metrics_known else np.nan,
            "final_train_loss": 0.3 if status != "diverged" else np.inf,
            "final_air": 0.05 if rot else 0.4,
            "final_rotations": min(int(params.get("rollingq.max_rotations", 1)), 2) if rot else 0,
            # the synthetic data set declares the modality it is built to favour
            "favoured_modality": "audio" if fixed.get("data.name", "synthetic") == "synthetic"
            else "",
            "val_share_audio": plant.get("share", 0.5 if rot else 0.7),
            "val_share_visual": 0.95 - plant.get("share", 0.5 if rot else 0.7),
        })
        if status == "finished":
            row["noise_recipe"] = "additive"
            for m in MODALITIES:
                slope = (0.3 if m == "audio" else 0.1) * (0.7 if rot else 1.0)
                if m == "audio" and "drop" in plant:
                    slope = plant["drop"]
                for lv in NOISE_LEVELS:
                    row[f"noise_{m}_{lv}"] = acc - slope * float(lv)
            for m in MODALITIES:  # Table 2 per modality: -r is the planted adaptivity
                row[f"attn_noise_r_{m}"] = -plant.get("adaptivity", 0.2)
                row[f"attn_noise_shift_{m}"] = -0.1
            # the pooled variant under the names of folders written before it was one of two
            row.update(attn_noise_r=0.7 if rot else 0.5,
                       attn_noise_adaptivity=plant.get("adaptivity", 0.2),
                       params_paper=119820.0, params_all=125261.0)
        row.update(retries=1 if i == 1 else 0, time_total_s=30.0, gpu=0,
                   trial_dir=str(folder / "ray" / f"train_trial_{tid}"))
        rows.append(row)
        for e in range(n_epochs):
            air = (0.4 * np.exp(-e / 2) if rot else 0.4) + rng.normal(0, 0.02)
            val_air = air
            if "abs_air" in plant:  # linear into the planted end value, with the planted slope
                val_air = plant["abs_air"] - plant.get("air_slope", 0.0) * (epochs - 1 - e)
            rotated = int(rot and e == 1)
            curves.append({
                "trial_id": tid, **params, "train.seed": seed, "epoch": e, "lr": 1e-3,
                "train_loss": 1.0 / (e + 1), "train_acc": 0.5 + 0.1 * e, "air": air,
                "alpha": 0.5 - 0.2 * air, "rotated": rotated, "rotations": int(rot and e >= 1),
                "cos_audio": 0.2 + air / 2, "cos_visual": 0.2 - air / 2, "val_acc": acc,
                "val_air": val_air,
                "val_share_audio": 0.5 + air / 2, "val_share_visual": 0.45 - air / 2,
                "test_acc": acc, "test_share_audio": 0.5 + air / 2,
                "test_share_visual": 0.45 - air / 2, "rotation_residual": 0.0 if rotated
                else np.nan, "status": "finished" if e == n_epochs - 1 else "running",
            })
    trials = pd.DataFrame(rows)
    trials.to_csv(folder / "trials.csv", index=False)
    pd.DataFrame(curves).to_csv(folder / "curves.csv", index=False)
    counts = {s: int((trials["status"] == s).sum())
              for s in ("finished", "diverged", "stopped", "errored", "incomplete")}
    counts["retried"] = int((trials["retries"] > 0).sum())
    spec = {"name": name, "question": f"Planted effects for {name}?", "fixed": fixed,
            "search": search, "seeds": list(seeds),
            **({"variants": {"role": "scientific", "values": variants}} if variants else {}),
            **({"claims": claims} if claims else {}),
            "tune": {"mode": mode, "metric": "val_acc", "metric_mode": "max", "num_samples": 1,
                     "scheduler": scheduler, "resources": {"cpu": 1, "gpu": 0}}}
    header = f"# {spec['question']}\n# Merged spec of this study; resume with --resume {folder}\n"
    (folder / "space.yaml").write_text(header + yaml.safe_dump(spec, sort_keys=False))
    if design:
        (folder / DESIGN).write_text(from_spec(spec, name).to_json())
    meta = {"space": name, "question": spec["question"], "source": f"searchspaces/{name}.yaml",
            "command": f"python study/run.py --space {name}",
            "git": {"commit": "0123456789abcdef0123456789abcdef01234567", "dirty": False},
            "versions": {"python": "3.11.7", "ray": "2.60.0", "optuna": "5.0.0"},
            "platform": "Linux-test", "cluster": {"nodes": 1, "resources": {"CPU": 2.0}},
            "started": "2026-01-01T00:00:00+0000", "finished": "2026-01-01T01:00:00+0000",
            "wall_hours": 1.0, "trial_hours": len(rows) * 30 / 3600, "gpu_hours": 0.0,
            "expected_trials": len(rows), "trials": counts}
    (folder / "meta.json").write_text(json.dumps(meta, indent=2) + "\n")
    if journal:
        _write_journal(folder, name, search, trials)
    return folder


def _write_journal(folder: Path, name: str, search: dict[str, dict[str, Any]],
                   trials: pd.DataFrame) -> None:
    """A real Optuna journal, as OptunaSearch writes it (stopped trials recorded as COMPLETE)."""
    import optuna

    dists = {}
    for k, raw in search.items():
        if raw["type"] == "choice":
            dists[k] = optuna.distributions.CategoricalDistribution(raw["values"])
        else:
            dists[k] = optuna.distributions.FloatDistribution(raw["low"], raw["high"],
                                                              log=raw.get("log", False))
    storage = optuna.storages.JournalStorage(
        optuna.storages.journal.JournalFileBackend(str(folder / "optuna.journal")))
    study = optuna.create_study(study_name=name, storage=storage, direction="maximize")
    for r in trials.to_dict("records"):
        if r["status"] not in ("finished", "stopped"):
            continue
        params = {k: (r[k].item() if hasattr(r[k], "item") else r[k]) for k in dists}
        study.add_trial(optuna.trial.create_trial(value=float(r["best_val_acc"]), params=params,
                                                  distributions=dists))


def table1_variants(space: str = "paper_table1") -> dict[str, dict[str, Any]]:
    """The named variants of a shipped Table 1 space."""
    root = Path(__file__).resolve().parents[2]
    spec = yaml.safe_load((root / "searchspaces" / f"{space}.yaml").read_text())
    return spec["variants"]["values"]


def write_table1(root: Path, datasets: tuple[str, ...] = ("cremad", "kinetics_sounds"), *,
                 seeds: int = 5, sd: float = 1.5, rng_seed: int = 0,
                 space: str = "paper_table1",
                 means: dict[str, dict[str, float]] | None = None) -> list[Path]:
    """The shipped Table 1 space planted on the paper's data sets, one results folder a data
    set (as the driver writes one study per ``--dataset``): each variant's true headline
    accuracy is the paper's Table 1 number for its row (``means`` overrides them; a variant
    without a paper row takes Concat's), each trial adds Gaussian noise of ``sd`` points."""
    from analysis.paper import PAPER_TABLE1, paper_name

    variants = table1_variants(space)
    out = []
    for i, ds in enumerate(datasets):
        paper = dict(PAPER_TABLE1[ds]) | dict((means or {}).get(ds, {}))

        def effect(p: dict[str, Any], paper: dict[str, float] = paper) -> float:
            name = paper_name(variants[p["variant"]])
            return paper.get(name, paper["Concat"]) / 100

        out.append(write_study(root, name=space, timestamp=f"2026010{i + 1}-000000",
                               search={}, variants=variants, effect=effect,
                               seeds=tuple(range(seeds)), noise_sd=sd / 100,
                               fixed={"data.name": ds}, rng_seed=rng_seed + 101 * i))
    return out
