"""The study driver's command line, parsed once into a frozen record (``RunOptions``), and the
spec it asks for (``requested_spec``: the space with ``--set`` and its shortcuts, the
``--smoke-test`` budget, paths made absolute)."""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path

from study.space import Spec, SpecError
from study.specfile import load_spec
from study.storage import LOCAL_RESULTS, study_space


@dataclass(frozen=True)
class RunOptions:
    """What ``python study/run.py`` was asked (see ``parse`` for each flag).

    Attributes:
        overrides: ``--set`` with the shortcut flags folded in (``--dataset``, ``--data-root``,
            ``--gpus-per-trial``, ``--max-concurrent``).
        argv: The arguments as given (for ``meta.json``'s command line).
    """

    space: str | None
    list_spaces: bool
    overrides: tuple[str, ...]
    address: str | None
    storage: str
    resume: str | None
    smoke_test: bool
    gpu_gib: float | None
    name: str | None
    tracker: str | None
    no_report: bool
    argv: tuple[str, ...]
    plan: bool = False
    pilot: str | None = None

    @property
    def space_name(self) -> str:
        """The space's name (a path's file stem)."""
        return Path(self.space or "").stem


def _parser(description: str) -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="python study/run.py", description=description)
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
    ap.add_argument("--storage", default=str(LOCAL_RESULTS),
                    help="results root: a local folder, NFS or s3:// (default: results/)")
    ap.add_argument("--resume", nargs="?", const="latest", metavar="STUDY_DIR",
                    help="resume an interrupted study (default: the latest of --space; a "
                         "study folder or s3://.../<space>/<name> needs no --space, the study "
                         "names it; a bucket's study resumes on any machine); "
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
    ap.add_argument("--plan", action="store_true",
                    help="print the study's plan (trials and trial hours per look, each claim's "
                         "seeds needed, the budget) and train nothing")
    ap.add_argument("--pilot", metavar="DIR",
                    help="with --plan: a finished study of the same question whose seed sds and "
                         "trial times the plan uses")
    return ap


def parse(argv: list[str], description: str) -> RunOptions:
    """The command line -> ``RunOptions`` (argparse exits 2 on a malformed one).

    Raises:
        SpecError: A shortcut flag out of its range (``--gpus-per-trial``, ``--max-concurrent``).
    """
    args = _parser(description).parse_args(argv)
    if args.pilot and not args.plan:
        raise SpecError(f"--pilot {args.pilot} goes with --plan (the plan reads the pilot "
                        f"study's seed sds and trial times); add --plan")
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
    space = args.space
    if not space and args.resume and args.resume != "latest":  # the study names its space
        space = study_space(args.resume)
    return RunOptions(space=space, list_spaces=args.list, overrides=tuple(sets),
                      address=args.address, storage=args.storage, resume=args.resume,
                      smoke_test=args.smoke_test, gpu_gib=args.gpu_gib, name=args.name,
                      tracker=args.tracker, no_report=args.no_report, argv=tuple(argv),
                      plan=args.plan, pilot=args.pilot)


def requested_spec(opts: RunOptions) -> Spec:
    """The spec a new study runs: the space with the overrides, the smoke budget, absolute
    paths."""
    spec = load_spec(opts.space or "", list(opts.overrides))
    return with_paths_absolute(smoke(spec) if opts.smoke_test else spec)


def smoke(spec: Spec) -> Spec:
    """The tiny budget of --smoke-test: at most 2 epochs, 2 trials, 1 seed (a sequential design
    is dropped: one seed is no look)."""
    spec.fixed["train.epochs"] = min(2, int(spec.fixed.get("train.epochs", 2)))
    spec.seeds = spec.seeds[:1]
    spec.sequential = None
    if not spec.grid:
        spec.tune["num_samples"] = 2
        spec.tune["grace_period"] = 1
        return spec
    budget = 2
    for p in spec.search:
        keep = max(1, min(budget, len(p.grid_values())))
        p.type, p.values, p.step = "choice", p.grid_values()[:keep], None
        budget = max(1, budget // keep)
    kept = {p.key: p.values for p in spec.search}
    for p in list(spec.search):  # a condition on a value no longer searched
        for k in [k for k in p.when if k in kept]:
            cond = p.when[k]
            if isinstance(cond, list):
                p.when[k] = cond = [v for v in cond if v in kept[k]]
            if not any(v in kept[k] for v in (cond if isinstance(cond, list) else [cond])):
                spec.search.remove(p)  # it never applies within the budget
                break
    return spec


def with_paths_absolute(spec: Spec) -> Spec:
    """Trials run in their own working directory: the spec's file paths made absolute."""
    for key in ("data.root", "model.pretrained"):
        if spec.fixed.get(key) and not str(spec.fixed[key]).startswith("timm:"):
            spec.fixed[key] = str(Path(spec.fixed[key]).expanduser().resolve())
    return spec
