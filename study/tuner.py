"""The Ray side of a study: the trainable with its resources, the Tuner (grid or Optuna, the
seeds a grid grows by), the callbacks a restored Tuner gets back, and the environment the
workers need."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from study.growth import RAY_DIR
from study.preflight import trial_overrides
from study.space import Spec

ROOT = Path(__file__).resolve().parents[1]


def make_trainable(spec: Spec):
    """The trial function with the spec's resources per trial (new and restored studies)."""
    from ray import tune

    from study.trainable import train_trial

    res = spec.tune["resources"]
    return tune.with_resources(train_trial, {"cpu": res["cpu"], "gpu": res["gpu"]})


def build_tuner(spec: Spec, storage: str, folder: Path, callbacks: Sequence[Any] = (),
                ray_dir: str = RAY_DIR):
    """The Tuner for a new study (grid or Optuna mode), or for the seeds a grid study grows by.

    Args:
        ray_dir: The Ray experiment's folder in the study's storage.
        callbacks: Extra ``tune.Callback``s after the progress lines. They are pickled into the
            experiment state (a resumed study gets them back), so they must hold plain values.
    """
    import optuna
    from ray import tune
    from ray.tune.schedulers import ASHAScheduler
    from ray.tune.search import Repeater
    from ray.tune.search.optuna import OptunaSearch

    from study.progress import TrialLines
    from study.space import OptunaSpace
    from study.stall import StallLimit

    t = spec.tune
    trainable = make_trainable(spec)
    pareto = len(spec.objectives) > 1
    param_space: dict[str, Any] = {**spec.fixed, "_metric": spec.metric,
                                   "_metric_mode": spec.metric_mode}
    if pareto:  # a diverged trial reports the worst value of each
        param_space["_objectives"] = [list(o) for o in spec.objectives]
    if spec.variants:  # a trial's `variant` names one of these sets of config values
        param_space["_variants"] = spec.variants
    # A Pareto study has no one metric for Ray: its searcher gets the lists
    tune_kw: dict[str, Any] = {"metric": None if pareto else spec.metric,
                               "mode": None if pareto else spec.metric_mode,
                               "max_concurrent_trials": t["max_concurrent"] or None,
                               "reuse_actors": True}
    if spec.grid:
        if spec.conditional:  # not a full factorial: the grid's points, each one a dict
            param_space["_point"] = tune.grid_search(spec.grid_points())
        else:
            param_space.update({p.key: tune.grid_search(p.grid_values()) for p in spec.search})
        param_space["train.seed"] = tune.grid_search(spec.seeds)
        tune_kw["num_samples"] = 1
    else:
        storage_file = optuna.storages.journal.JournalFileBackend(str(folder / "optuna.journal"))
        metrics, modes = (list(x) for x in zip(*spec.objectives, strict=True))
        searcher = OptunaSearch(  # TPE is multi-objective TPE (MOTPE) with several metrics
            OptunaSpace(spec.search, spec.fixed), metric=metrics if pareto else spec.metric,
            mode=modes if pareto else spec.metric_mode,
            sampler=optuna.samplers.TPESampler(seed=t["sampler_seed"], multivariate=True),
            storage=optuna.storages.JournalStorage(storage_file), study_name=spec.name,
        )
        if len(spec.seeds) > 1:
            searcher = Repeater(searcher, repeat=len(spec.seeds), set_index=True)
            param_space["_seeds"] = list(spec.seeds)
        else:
            param_space["train.seed"] = spec.seeds[0]
        tune_kw.update(search_alg=searcher, num_samples=spec.expected_trials())
        if t["scheduler"] == "asha":
            epochs = build_config_epochs(spec)
            tune_kw["scheduler"] = ASHAScheduler(
                time_attr="training_iteration", max_t=epochs,
                grace_period=min(t["grace_period"], epochs), reduction_factor=t["reduction_factor"],
            )
    run_config = tune.RunConfig(
        name=ray_dir, storage_path=storage,
        failure_config=tune.FailureConfig(max_failures=t["max_failures"]),
        checkpoint_config=tune.CheckpointConfig(num_to_keep=2),
        callbacks=[TrialLines(spec.expected_trials(), [m for m, _ in spec.objectives]),
                   *([StallLimit(t["stall_minutes"])] if t["stall_minutes"] else []),
                   *callbacks], verbose=0,
    )
    return tune.Tuner(trainable, param_space=param_space,
                      tune_config=tune.TuneConfig(**tune_kw), run_config=run_config)


def build_config_epochs(spec: Spec) -> int:
    from rollingq.config import build_config

    return build_config(overrides={**spec.fixed, "train.seed": spec.seeds[0]}).train.epochs


def with_callbacks(tuner: Any, callbacks: Sequence[Any]) -> Any:
    """A restored Tuner with this session's tracker callback in place of the one its
    ``tuner.pkl`` holds (``Tuner.restore`` takes no callbacks; Ray 2.60's Tuner keeps its run
    config in ``_local_tuner``)."""
    from study.tracking import Tracking

    mine = [c for c in callbacks if isinstance(c, Tracking)]
    run_config = tuner._local_tuner.get_run_config()
    run_config.callbacks = [c for c in run_config.callbacks or []
                            if not isinstance(c, Tracking)] + mine
    return tuner


def export_project_path() -> None:
    """Puts the project root first on PYTHONPATH, so workers of a local Ray import the project."""
    paths = [str(ROOT), *filter(None, os.environ.get("PYTHONPATH", "").split(os.pathsep))]
    os.environ["PYTHONPATH"] = os.pathsep.join(dict.fromkeys(paths))


def worker_env(spec: Spec) -> dict[str, str]:
    """Environment variables the study's Ray workers need before they import torch: cuBLAS's
    workspace setting when a trial runs deterministically (``train.deterministic``)."""
    from rollingq.config import build_config
    from rollingq.device import CUBLAS_WORKSPACE

    if any(build_config(overrides=v).train.deterministic for v in trial_overrides(spec)):
        return {"CUBLAS_WORKSPACE_CONFIG": os.environ.get("CUBLAS_WORKSPACE_CONFIG",
                                                          CUBLAS_WORKSPACE)}
    return {}


def cluster_resources() -> tuple[dict[str, float], int]:
    """The cluster's resources (CPU, GPU, custom; not memory nor per-node or placement-group
    entries) and its number of live nodes, as the study starts."""
    import ray

    skip = ("node:", "object_store_memory", "memory", "accelerator_type:")
    resources = {k: float(v) for k, v in ray.cluster_resources().items()
                 if not k.startswith(skip) and "_group_" not in k}
    return resources, len([n for n in ray.nodes() if n.get("Alive")])
