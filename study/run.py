"""Runs a study: a search space from ``searchspaces/`` as Ray Tune trials, then its results.

    python study/run.py --space rotation_ablation            # local Ray, synthetic data, CPU
    python study/run.py --list                                # the spaces and their questions
    python study/run.py --space hpo --dataset features --data-root /data/feats --gpus-per-trial 0.25
    python study/run.py --space rotation_ablation --address auto --storage s3://bucket/studies
    python study/run.py --space rotation_ablation --resume [STUDY_DIR]
    python study/run.py --space rotation_ablation --resume STUDY_DIR --set seeds=[0,1,2,3,4,5]

Flow: validate the spec (exit 2 with one line on any problem, before Ray starts) -> Ray Tune
(grid: full factorial x seeds, never early-stopped; optuna: TPE with seeds as repeats, ASHA
optional, an Optuna journal file) -> trials.csv, curves.csv, space.yaml, meta.json in
``results/<space>/<timestamp>/`` beside Ray's experiment folder (``ray/``) -> completeness
check (exit 3 with the exact resume command when trials are missing) -> the analysis report
when the ``analysis`` package is present.

Exit codes: 0 every trial ended (finished, diverged or stopped by ASHA); 2 bad input (one line,
before Ray starts); 3 incomplete (interrupted: the resume command is printed); 4 every trial
ended but some errored (their errors are in trials.csv and printed; the results and the report
are written, and the printed resume command retries the errored trials).

A grid study grows by seeds: ``--resume DIR --set seeds=[...]`` with the old seeds and new ones
trains only the new seeds' trials, as a further Ray experiment of the same study (``ray-2/``,
... beside ``ray/``; ``experiments.json`` lists each one's seeds), and rewrites the results and
the report as one study. Any other change to the spec on resume is bad input (exit 2).

Trials share their Ray actor (``reuse_actors``): a trial that ends hands its process, with
torch already imported, to the next one, which saves seconds per trial on a laptop.
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import json
import os
import re
import sys
import time
import urllib.parse
from collections.abc import Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # `python study/run.py` puts study/ first, not the project root
    sys.path.insert(0, str(ROOT))

import yaml  # noqa: E402

from study.space import (  # noqa: E402
    VARIANT,
    Spec,
    SpecError,
    apply_overrides,
    apply_variant,
    available_spaces,
    data_overrides,
    load_spec,
    parse_spec,
)

EXIT_BAD_INPUT, EXIT_INCOMPLETE, EXIT_TRIAL_ERRORS = 2, 3, 4
RAY_DIR = "ray"
EXPERIMENTS = "experiments.json"  # a grown study's Ray experiments and the seeds of each


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(prog="python study/run.py", description=__doc__.split("\n")[0])
    ap.add_argument("--space",
                    help="a file in searchspaces/ (without .yaml) or a path to a YAML file")
    ap.add_argument("--list", action="store_true", help="list the spaces and their questions")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                    help="override a config value (rollingq.beta=0.1) or a spec field "
                         "(tune.num_samples=8, seeds=[0,1]); repeatable")
    ap.add_argument("--dataset", help="shortcut for --set data.name=NAME")
    ap.add_argument("--data-root", help="shortcut for --set data.root=PATH")
    ap.add_argument("--address",
                    help="Ray address: none = a local instance; auto on a cluster head")
    ap.add_argument("--storage", default=str(ROOT / "results"),
                    help="results root: a local folder, NFS or s3:// (default: results/)")
    ap.add_argument("--resume", nargs="?", const="latest", metavar="STUDY_DIR",
                    help="resume an interrupted study (default: the latest of this space; "
                         "s3://.../<space>/<name>: the study in the bucket, on any machine); "
                         "with --set seeds=[...] (the old seeds and new ones) a grid study "
                         "grows by the new seeds' trials")
    ap.add_argument("--smoke-test", action="store_true", help="tiny budget: 2 epochs, 2 trials")
    ap.add_argument("--gpus-per-trial", type=float, help="GPU share of each trial, in [0, 1]")
    ap.add_argument("--gpu-gib", type=float, metavar="G",
                    help="memory of one of the cluster's GPUs (GiB), to check before any trial "
                         "starts that a trial fits in its share (default: this machine's GPU)")
    ap.add_argument("--max-concurrent", type=int, help="at most this many trials at once")
    ap.add_argument("--name", help="study folder name (default: a timestamp)")
    ap.add_argument("--tracker", metavar="mlflow[:URI]|wandb[:PROJECT]",
                    help="log every trial to MLflow (default: the sqlite store "
                         "<results>/mlflow.db) or W&B (offline unless WANDB_MODE is set), one run "
                         "per trial under one per study; a resumed study goes on logging where "
                         "it did (study/tracking.py)")
    ap.add_argument("--no-report", action="store_true",
                    help="write the results but not the report (later: python -m "
                         "analysis.report STUDY_DIR)")
    return ap.parse_args(argv)


def cli_overrides(args: argparse.Namespace) -> list[str]:
    """The --set list with the shortcut flags folded in."""
    sets = list(args.set)
    if args.dataset:
        sets.append(f"data.name={args.dataset}")
    if args.data_root:
        sets.append(f"data.root={Path(args.data_root).resolve()}")
    if args.gpus_per_trial is not None:
        if not 0 <= args.gpus_per_trial <= 1:
            raise SpecError(f"`0 <= --gpus-per-trial <= 1` must hold, but got "
                            f"{args.gpus_per_trial}; a trial shares at most one GPU (use 0.25 "
                            f"for four trials per GPU)")
        sets.append(f"tune.resources.gpu={args.gpus_per_trial}")
    if args.max_concurrent is not None:
        if args.max_concurrent < 1:
            raise SpecError(f"`--max-concurrent >= 1` must hold, but got {args.max_concurrent}")
        sets.append(f"tune.max_concurrent={args.max_concurrent}")
    return sets


def smoke(spec: Spec) -> Spec:
    """The tiny budget of --smoke-test: at most 2 epochs, 2 trials, 1 seed."""
    spec.fixed["train.epochs"] = min(2, int(spec.fixed.get("train.epochs", 2)))
    spec.seeds = spec.seeds[:1]
    if spec.grid:
        budget = 2
        for p in spec.search:
            keep = max(1, min(budget, len(p.grid_values())))
            p.type, p.values, p.step = "choice", p.grid_values()[:keep], None
            budget = max(1, budget // keep)
        kept = {p.key: p.values for p in spec.search}
        for p in list(spec.search):  # a condition on a value no longer searched
            for k, cond in list(p.when.items()):
                if k in kept and isinstance(cond, list):
                    p.when[k] = [v for v in cond if v in kept[k]]
                if k in kept and not any(v in kept[k] for v in (
                        p.when[k] if isinstance(p.when[k], list) else [p.when[k]])):
                    spec.search.remove(p)  # it never applies within the budget
                    break
    else:
        spec.tune["num_samples"] = 2
        spec.tune["grace_period"] = 1
    return spec


def absolute_paths(spec: Spec) -> None:
    """Trials run in their own working directory: make file paths absolute."""
    for key in ("data.root", "model.pretrained"):
        if spec.fixed.get(key) and not str(spec.fixed[key]).startswith("timm:"):
            spec.fixed[key] = str(Path(spec.fixed[key]).expanduser().resolve())


def study_folder(args: argparse.Namespace, space: str) -> tuple[Path, str]:
    """(local study folder, Ray storage path) for a new study or the one to resume."""
    if args.resume and "://" in args.resume:
        from_bucket(args, space)
    local_root = Path(args.storage) if "://" not in args.storage else ROOT / "results"
    if args.resume:
        if args.resume == "latest":
            candidates = sorted(p for p in (local_root / space).glob("*")
                                if (p / "space.yaml").exists())
            if not candidates:
                raise SpecError(f"--resume: no study of space {space!r} under "
                                f"{local_root / space}; pass the study folder: "
                                f"--resume results/{space}/<timestamp>")
            folder = candidates[-1]
        else:
            folder = Path(args.resume)
            if not (folder / "space.yaml").exists():
                raise SpecError(f"--resume {folder}: not a study folder (no space.yaml)")
    else:
        folder = local_root / space / (args.name or time.strftime("%Y%m%d-%H%M%S"))
        if folder.exists() and any(folder.iterdir()):
            raise SpecError(f"study folder {folder} exists; pick another --name or --resume it")
    folder = folder.resolve()
    storage = str(folder) if "://" not in args.storage else join_uri(args.storage, space,
                                                                     folder.name)
    return folder, storage


def from_bucket(args: argparse.Namespace, space: str) -> None:
    """``--resume s3://BUCKET/studies/<space>/<name>``: the study's storage becomes the URI's
    base, and its files (but Ray's folders, read from the bucket by the restore) are copied to
    the driver's local copy ``results/<space>/<name>`` when that is missing (a new head node).
    """
    from analysis.remote import download

    scheme, netloc, path, query, fragment = urllib.parse.urlsplit(args.resume)
    parts = path.rstrip("/").split("/")
    if len(parts) < 3 or not parts[-1]:
        raise SpecError(f"--resume {args.resume}: not a study folder URI; expected "
                        f"{scheme}://BUCKET/.../{space}/<name>")
    if parts[-2] != space:
        raise SpecError(f"--resume {args.resume}: a study of space {parts[-2]!r}, not "
                        f"{space!r}; pass --space {parts[-2]}")
    base = urllib.parse.urlunsplit((scheme, netloc, "/".join(parts[:-2]), query, fragment))
    if "://" in args.storage and args.storage.rstrip("/") != base.rstrip("/"):
        raise SpecError(f"--resume {args.resume} is not under --storage {args.storage}; drop "
                        f"--storage (the URI names the study's storage)")
    args.storage = base
    local = ROOT / "results" / space / parts[-1]
    if not (local / "space.yaml").is_file():
        try:
            download(args.resume, into=local.parent)
        except OSError as e:  # nothing there, no bucket, no endpoint, no access
            raise SpecError(f"--resume {args.resume}: {e}") from None
        print(f"resume: copied the study's files from {args.resume} to {local}", flush=True)
    args.resume = str(local)


def join_uri(base: str, *parts: str) -> str:
    """A path or URI with path parts added to its path, its query (``?endpoint_override=...&
    scheme=http``, as MinIO or Ceph need) kept at the end, never joined into."""
    scheme, netloc, path, query, fragment = urllib.parse.urlsplit(base)
    if not scheme:
        return "/".join([base.rstrip("/"), *parts])
    path = "/".join([path.rstrip("/"), *parts])
    return urllib.parse.urlunsplit((scheme, netloc, path, query, fragment))


def export_project_path() -> None:
    """Puts the project root first on PYTHONPATH, so workers of a local Ray import the project."""
    paths = [str(ROOT), *filter(None, os.environ.get("PYTHONPATH", "").split(os.pathsep))]
    os.environ["PYTHONPATH"] = os.pathsep.join(dict.fromkeys(paths))


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
                   *callbacks], verbose=0,
    )
    return tune.Tuner(trainable, param_space=param_space,
                      tune_config=tune.TuneConfig(**tune_kw), run_config=run_config)


def build_config_epochs(spec: Spec) -> int:
    from rollingq.config import build_config

    return build_config(overrides={**spec.fixed, "train.seed": spec.seeds[0]}).train.epochs


def resume_command(spec: Spec, folder: Path, args: argparse.Namespace) -> str:
    parts = ["python", "study/run.py", "--space", spec.source if spec.name != Path(spec.source).stem
             else spec.name, "--resume", str(folder)]
    if args.address:
        parts += ["--address", args.address]
    if "://" in args.storage:
        parts += ["--storage", args.storage]
    return " ".join(parts)


def run_report(folder: Path) -> Path | None:
    """Generates the analysis report when the analysis package is present."""
    try:
        from analysis.report import generate
    except ImportError:
        return None
    try:
        return generate([folder])
    except Exception as e:  # noqa: BLE001 - a report failure must not fail a finished study
        print(f"warning: the report failed ({type(e).__name__}: {e}); rerun it with "
              f"python -m analysis.report {folder}", file=sys.stderr)
        return None


def main(argv: list[str] | None = None, callbacks: Sequence[Any] = ()) -> int:
    """The command line; ``callbacks`` are extra ``tune.Callback``s for a new study."""
    args = parse_args(argv)
    try:
        if args.list:
            for name, question in available_spaces().items():
                print(f"{name:24s} {question}")
            return 0
        if not args.space:
            raise SpecError("--space NAME is required; available: " + ", ".join(available_spaces()))
        folder, storage = study_folder(args, Path(args.space).stem)
        added: list[int] = []
        if args.resume:
            spec, added = resumed_spec(args, folder)
        else:
            spec = load_spec(args.space, cli_overrides(args))
            if args.smoke_test:
                spec = smoke(spec)
            absolute_paths(spec)
        tracker = study_tracker(args, folder)
        callbacks = [*callbacks, *tracking_callbacks(tracker, folder, spec)]
        data = check_data(spec)
        if args.resume:
            check_same_data(folder, data)
        check_memory(spec, args.gpu_gib)
        if args.resume:
            for ray_dir, seeds in experiments(folder, spec, added):
                if not set(seeds) & set(added):
                    repair_state(dataclasses.replace(spec, seeds=seeds), storage, folder,
                                 callbacks, ray_dir)
    except SpecError as e:
        print(f"error: {e}", file=sys.stderr)
        return EXIT_BAD_INPUT
    if added:
        grow(spec, folder, added)
    return run_study(spec, folder, storage, args, argv if argv is not None else sys.argv[1:],
                     callbacks, data, tracker)


def study_tracker(args: argparse.Namespace, folder: Path) -> dict[str, Any] | None:
    """The study's tracker (``study/trackers.py``): the one a resumed study logs to, or --tracker's,
    checked to answer before Ray starts; a problem is a SpecError of one line."""
    from study import trackers as tracking

    local_root = Path(args.storage) if "://" not in args.storage else ROOT / "results"
    try:
        requested = tracking.parse(args.tracker, local_root) if args.tracker else None
        tracker = tracking.settings(folder, requested) if args.resume else requested
        if tracker is not None:
            tracking.check(tracker)
    except tracking.TrackerError as e:
        raise SpecError(str(e)) from None
    return tracker


def tracking_callbacks(tracker: dict[str, Any] | None, folder: Path, spec: Spec) -> list[Any]:
    if tracker is None:
        return []
    from study.tracking import Tracking

    return [Tracking(folder, tracker, spec.name)]


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


def resumed_spec(args: argparse.Namespace, folder: Path) -> tuple[Spec, list[int]]:
    """The spec of a resumed study and the seeds it grows by (none for a plain resume).

    The study's ``space.yaml`` with the command line's overrides: the seed list may grow (the old
    seeds kept, in a grid study); any other change is a SpecError naming the first key changed.
    """
    path = folder / "space.yaml"
    tree = yaml.safe_load(path.read_text())
    name = tree.get("name") or Path(args.space).stem

    def parse(t: dict[str, Any]) -> Spec:
        return parse_spec(t, name, str(path), tree.get("question", ""))

    stored, sets = parse(tree), cli_overrides(args)
    if not sets and not args.smoke_test:
        return stored, []
    requested = parse(apply_overrides(copy.deepcopy(tree), sets))
    if args.smoke_test:
        requested = smoke(requested)
    absolute_paths(requested)
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
    from rollingq.memory import GIB, TRIAL_MEMORY_FRACTION, check_fits, size

    available = int(share * TRIAL_MEMORY_FRACTION * gpu_gib * GIB)  # the trainable's cap
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
            est = check_fits(cfg, available)
        except ValueError as e:
            where = ", ".join(f"{k}={v}" for k, v in values.items() if k not in spec.fixed)
            raise SpecError(f"a trial{' (' + where + ')' if where else ''} {e} (GPU share "
                            f"{share:g} of {gpu_gib:g} GiB, {TRIAL_MEMORY_FRACTION:g} of it "
                            f"for the trial's allocations)") from None
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


def worker_env(spec: Spec) -> dict[str, str]:
    """Environment variables the study's Ray workers need before they import torch: cuBLAS's
    workspace setting when a trial runs deterministically (``train.deterministic``)."""
    from rollingq.config import build_config
    from rollingq.train import CUBLAS_WORKSPACE

    if any(build_config(overrides=v).train.deterministic for v in trial_overrides(spec)):
        return {"CUBLAS_WORKSPACE_CONFIG": os.environ.get("CUBLAS_WORKSPACE_CONFIG",
                                                          CUBLAS_WORKSPACE)}
    return {}


def run_study(spec: Spec, folder: Path, storage: str, args: argparse.Namespace, argv: list[str],
              callbacks: Sequence[Any] = (), data: list[dict[str, Any]] | None = None,
              tracker: dict[str, Any] | None = None) -> int:
    """Runs (or resumes) a validated study and writes its results; returns the exit code."""
    import ray
    from ray import tune

    from study import design, optuna_db, results

    folder.mkdir(parents=True, exist_ok=True)
    if tracker is not None:  # a resume finds its tracker here, even if no trial started yet
        from study.trackers import state

        state(folder, tracker)
    design.write(folder, spec, spec_too=not args.resume)  # a resumed study keeps its space.yaml
    if "://" in storage:  # the spec beside Ray's folder now: a lost head node can be resumed from
        results.publish(folder, storage)
    os.environ.setdefault("TUNE_GLOBAL_CHECKPOINT_S", "2")  # keep the resume state fresh
    os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")
    started = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    t0 = time.perf_counter()
    if args.address is None:  # local workers inherit the environment: let them import the project
        export_project_path()
    env = worker_env(spec)
    ray.init(address=args.address, include_dashboard=False, ignore_reinit_error=True,
             log_to_driver=False, **({"runtime_env": {"env_vars": env}} if env else {}))
    try:
        resources, nodes = cluster_resources()
        print(f"study {spec.name}: {spec.expected_trials()} trials -> {folder}", flush=True)
        exps = []
        for ray_dir, seeds in experiments(folder, spec):
            part = dataclasses.replace(spec, seeds=seeds)
            exp = join_uri(storage, ray_dir)
            exps.append(exp)
            if args.resume and tune.Tuner.can_restore(exp):
                tuner = with_callbacks(tune.Tuner.restore(
                    exp, trainable=make_trainable(part), resume_unfinished=True,
                    resume_errored=True), callbacks)
            else:
                tuner = build_tuner(part, storage, folder, callbacks, ray_dir)
            tuner.fit()
    finally:
        ray.shutdown()
    trials, curves, predictions = results.collect(exps, spec)
    info = results.meta(spec, trials, argv=["study/run.py", *argv], resources=resources,
                        nodes=nodes, wall_seconds=time.perf_counter() - t0, started=started,
                        finished=time.strftime("%Y-%m-%dT%H:%M:%S%z"), resumed=bool(args.resume),
                        folder=folder, data=data)
    results.write(folder, trials, curves, info, predictions)
    optuna_db.write(folder, spec, trials, curves)
    c = info["trials"]
    done = c["finished"] + c["diverged"] + c["errored"] + c["stopped"]
    summary = ", ".join(f"{v} {k}" for k, v in c.items() if v)
    print(f"trials: {summary or 'none'} (expected {spec.expected_trials()})", flush=True)
    if done < spec.expected_trials():
        sync_tracker(folder, tracker, spec)
        if "://" in storage:
            results.publish(folder, storage)
        print(f"study incomplete: {done} of {spec.expected_trials()} trials ended. Resume with:\n"
              f"  {resume_command(spec, folder, args)}", file=sys.stderr)
        return EXIT_INCOMPLETE
    report = None if args.no_report else run_report(folder)
    sync_tracker(folder, tracker, spec)
    if "://" in storage:
        results.publish(folder, storage)
        print(f"copied the results folder to {storage}")
    print(f"results: {folder}/trials.csv, curves.csv, meta.json, space.yaml; Ray: "
          f"{', '.join(exps)}")
    if report is not None:
        print(f"report: {report}")
    if c["errored"]:
        for _, row in trials[trials["status"] == "errored"].iterrows():
            print(f"errored: trial {row['trial_id']}: {row['error']}", file=sys.stderr)
        print(f"study ended with {c['errored']} errored trial(s). Retry them with:\n"
              f"  {resume_command(spec, folder, args)}", file=sys.stderr)
        return EXIT_TRIAL_ERRORS
    return 0


def sync_tracker(folder: Path, tracker: dict[str, Any] | None, spec: Spec) -> None:
    """Tops the tracker up from the results files (``study.export.sync``): what the live
    logging missed, the outcomes, the study's files and report."""
    if tracker is None:
        return
    from study import trackers as tracking
    from study.export import sync

    try:
        added = sync(folder, tracker, spec.name)
    except Exception as e:  # noqa: BLE001 - the results are written: a tracker failure is a note
        print(f"warning: {tracking.describe(tracker)}: the study's results were not all logged "
              f"({type(e).__name__}: {str(e)[:300]}); log them later with python -m "
              f"study.export {tracker['kind']} {folder}", file=sys.stderr)
        return
    print(f"tracker: {tracking.describe(tracker)} holds the study ({added['runs']} run(s), "
          f"{added['steps']} epoch(s), {added['values']} value(s) added from the results)")


def repair_state(spec: Spec, storage: str, folder: Path, callbacks: Sequence[Any],
                 ray_dir: str = RAY_DIR) -> None:
    """Makes Ray's resume state of one of the study's experiments readable (``study.resume``)
    before Ray starts, saying what it repaired; a state past repair is a SpecError."""
    from study.resume import RepairError, repair

    exp = join_uri(storage, ray_dir)
    try:
        lines = repair(exp, lambda: build_tuner(spec, storage, folder, callbacks, ray_dir))
    except RepairError as e:
        raise SpecError(str(e)) from None
    for line in lines:
        print(f"resume: {line}", flush=True)


def cluster_resources() -> tuple[dict[str, float], int]:
    """The cluster's resources (CPU, GPU, custom; not memory nor per-node or placement-group
    entries) and its number of live nodes, as the study starts."""
    import ray

    skip = ("node:", "object_store_memory", "memory", "accelerator_type:")
    resources = {k: float(v) for k, v in ray.cluster_resources().items()
                 if not k.startswith(skip) and "_group_" not in k}
    return resources, len([n for n in ray.nodes() if n.get("Alive")])


if __name__ == "__main__":
    sys.exit(main())
