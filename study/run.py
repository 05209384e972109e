"""Runs a study: a search space from ``searchspaces/`` as Ray Tune trials, then its results.

    python study/run.py --space rotation_ablation            # local Ray, synthetic data, CPU
    python study/run.py --list                                # the spaces and their questions
    python study/run.py --space hpo --dataset features --data-root /data/feats --gpus-per-trial 0.25
    python study/run.py --space rotation_ablation --address auto --storage s3://bucket/studies
    python study/run.py --space rotation_ablation --resume          # its latest study
    python study/run.py --resume STUDY_DIR                          # the study names its space
    python study/run.py --space rotation_ablation --resume STUDY_DIR --set seeds=[0,1,2,3,4,5]
    python study/run.py --space sequential_rollingq --plan --pilot STUDY_DIR   # trains nothing

Flow: validate the spec (exit 2 with one line on any problem, before Ray starts) -> Ray Tune
(grid: full factorial x seeds, never early-stopped; optuna: TPE with seeds as repeats, ASHA
optional, an Optuna journal file) -> trials.csv, curves.csv, space.yaml, meta.json in
``results/<space>/<timestamp>/`` beside Ray's experiment folder (``ray/``) -> completeness
check (exit 3 with the exact resume command when trials are missing) -> the analysis report
when the ``analysis`` package is present. One driver a study: a second one on the same study
folder exits 2 with one line while the first runs (``study/lock.py``; a killed driver's lock
goes with its process).

Exit codes: 0 every trial ended (finished, diverged, stopped by ASHA, or timed out: cut for
reporting no epoch within ``tune.stall_minutes``, ``study/stall.py``); 2 bad input (one line,
before Ray starts); 3 incomplete (interrupted: the resume command is printed); 4 every trial
ended but some errored (their errors are in trials.csv and printed; the results and the report
are written, and the printed resume command retries the errored trials).

A grid study grows by seeds: ``--resume DIR --set seeds=[...]`` with the old seeds and new ones
trains only the new seeds' trials, as a further Ray experiment of the same study (``ray-2/``,
... beside ``ray/``; ``experiments.json`` lists each one's seeds), and rewrites the results and
the report as one study. Any other change to the spec on resume is bad input (exit 2).

A study with a ``sequential:`` block runs look by look (``study/sequential.py``): it trains the
first look's seeds, judges the claims, and grows to the next look only while one is undecided
and the budget allows; ``looks.json`` records each look. ``--plan`` prints the plan of any study
(``study/plan.py``) and exits 0 without starting Ray.

Trials share their Ray actor (``reuse_actors``): a trial that ends hands its process, with
torch already imported, to the next one, which saves seconds per trial on a laptop.
"""

from __future__ import annotations

import dataclasses
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # `python study/run.py` puts study/ first, not the project root
    sys.path.insert(0, str(ROOT))

from study import lock, options  # noqa: E402
from study.growth import experiments, grow, repair_state, resumed_spec  # noqa: E402
from study.options import RunOptions  # noqa: E402
from study.preflight import check_data, check_memory, check_same_data  # noqa: E402
from study.space import Spec, SpecError  # noqa: E402
from study.specfile import available_spaces  # noqa: E402
from study.storage import Location, join_uri, local_root, locate, publish  # noqa: E402

EXIT_BAD_INPUT, EXIT_INCOMPLETE, EXIT_TRIAL_ERRORS = 2, 3, 4


def main(argv: list[str] | None = None, callbacks: Sequence[Any] = ()) -> int:
    """The command line; ``callbacks`` are extra ``tune.Callback``s for a new study."""
    argv = sys.argv[1:] if argv is None else argv
    try:
        opts = options.parse(argv, __doc__.split("\n")[0])
        if opts.list_spaces:
            for name, question in available_spaces().items():
                print(f"{name:24s} {question}")
            return 0
        if not opts.space and opts.resume not in (None, "latest"):
            locate("", opts.storage, opts.resume, opts.name)  # says why it is not a study
        if not opts.space:
            raise SpecError("--space NAME is required (or --resume STUDY_DIR); available: "
                            + ", ".join(available_spaces()))
        where = locate(opts.space_name, opts.storage, opts.resume, opts.name)
        if opts.resume and not opts.plan:
            lock.hold(where.folder)  # before anything reads or repairs the study's state
        spec, added = (resumed_spec(opts, where.folder) if opts.resume
                       else (options.requested_spec(opts), []))
        if opts.plan:
            from study.plan import lines

            print("\n".join(lines(spec, Path(opts.pilot) if opts.pilot else None)))
            return 0
        tracker = study_tracker(opts, where)
        callbacks = [*callbacks, *tracking_callbacks(tracker, where.folder, spec)]
        data = check_data(spec)
        if opts.resume:
            check_same_data(where.folder, data)
        check_memory(spec, opts.gpu_gib)
        if opts.resume and spec.sequential:
            from study.sequential import recorded

            recorded(spec, where.folder)
        if opts.resume:
            for ray_dir, seeds in experiments(where.folder, spec, added):
                if not set(seeds) & set(added):
                    repair_state(dataclasses.replace(spec, seeds=seeds), where.storage,
                                 where.folder, callbacks, ray_dir)
        lock.hold(where.folder)  # a new study's folder is made here, once its input is good
    except SpecError as e:
        print(f"error: {e}", file=sys.stderr)
        return EXIT_BAD_INPUT
    if added:
        grow(spec, where.folder, added)
    if spec.sequential:
        from study import sequential

        return sequential.run(spec, where, opts, run_study, lambda folder: None if opts.no_report
                              else run_report(folder), callbacks=callbacks, data=data,
                              tracker=tracker)
    return run_study(spec, where, opts, callbacks, data, tracker)


def run_study(spec: Spec, where: Location, opts: RunOptions, callbacks: Sequence[Any] = (),
              data: list[dict[str, Any]] | None = None,
              tracker: dict[str, Any] | None = None) -> int:
    """Runs (or resumes) a validated study and writes its results; returns the exit code."""
    import ray

    from study import design, optuna_db, results
    from study.tuner import cluster_resources, export_project_path, worker_env

    folder = where.folder
    folder.mkdir(parents=True, exist_ok=True)
    if tracker is not None:  # a resume finds its tracker here, even if no trial started yet
        from study.trackers import state

        state(folder, tracker)
    design.write(folder, spec, spec_too=not opts.resume)  # a resumed study keeps its space.yaml
    if where.remote:  # the spec beside Ray's folder now: a lost head node can be resumed from
        publish(folder, where.storage)
    os.environ.setdefault("TUNE_GLOBAL_CHECKPOINT_S", "2")  # keep the resume state fresh
    os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")
    started = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    t0 = time.perf_counter()
    if opts.address is None:  # local workers inherit the environment: let them import the project
        export_project_path()
    env = worker_env(spec)
    ray.init(address=opts.address, include_dashboard=False, ignore_reinit_error=True,
             log_to_driver=False, **({"runtime_env": {"env_vars": env}} if env else {}))
    try:
        resources, nodes = cluster_resources()
        print(f"study {spec.name}: {spec.expected_trials()} trials -> {folder}", flush=True)
        exps = fit_experiments(spec, where, bool(opts.resume), callbacks)
    finally:
        ray.shutdown()
    trials, curves, predictions = results.collect(exps, spec)
    info = results.meta(spec, trials, argv=["study/run.py", *opts.argv], resources=resources,
                        nodes=nodes, wall_seconds=time.perf_counter() - t0, started=started,
                        finished=time.strftime("%Y-%m-%dT%H:%M:%S%z"), resumed=bool(opts.resume),
                        folder=folder, data=data)
    results.write(folder, trials, curves, info, predictions)
    optuna_db.write(folder, spec, trials, curves)
    return finish(spec, where, opts, trials, info["trials"], exps, tracker)


def fit_experiments(spec: Spec, where: Location, resume: bool, callbacks: Sequence[Any]
                    ) -> list[str]:
    """Runs each of the study's Ray experiments (restored where they can be); returns their
    paths in the study's storage."""
    from ray import tune

    from study.tuner import build_tuner, make_trainable, with_callbacks

    exps = []
    for ray_dir, seeds in experiments(where.folder, spec):
        part = dataclasses.replace(spec, seeds=seeds)
        exp = join_uri(where.storage, ray_dir)
        exps.append(exp)
        if resume and tune.Tuner.can_restore(exp):
            tuner = with_callbacks(tune.Tuner.restore(
                exp, trainable=make_trainable(part), resume_unfinished=True,
                resume_errored=True), callbacks)
        else:
            tuner = build_tuner(part, where.storage, where.folder, callbacks, ray_dir)
        tuner.fit()
    return exps


def finish(spec: Spec, where: Location, opts: RunOptions, trials: Any, counts: dict[str, int],
           exps: list[str], tracker: dict[str, Any] | None) -> int:
    """The report, the tracker and the bucket brought up to the results; the exit code."""
    done = sum(counts[s] for s in ("finished", "diverged", "stopped", "timed_out", "errored"))
    summary = ", ".join(f"{v} {k}" for k, v in counts.items() if v)
    print(f"trials: {summary or 'none'} (expected {spec.expected_trials()})", flush=True)
    if done < spec.expected_trials():
        sync_tracker(where.folder, tracker, spec)
        if where.remote:
            publish(where.folder, where.storage)
        print(f"study incomplete: {done} of {spec.expected_trials()} trials ended. Resume with:\n"
              f"  {resume_command(spec, where, opts)}", file=sys.stderr)
        return EXIT_INCOMPLETE
    report = None if opts.no_report else run_report(where.folder)
    sync_tracker(where.folder, tracker, spec)
    if where.remote:
        publish(where.folder, where.storage)
        print(f"copied the results folder to {where.storage}")
    print(f"results: {where.folder}/trials.csv, curves.csv, meta.json, space.yaml; Ray: "
          f"{', '.join(exps)}")
    if report is not None:
        print(f"report: {report}")
    for _, row in trials[trials["status"] == "timed_out"].iterrows():  # lost, not retried
        print(f"trial {row['trial_id']} {row['error']} (tune.stall_minutes: "
              f"{spec.tune['stall_minutes']:g}); it is not run again", file=sys.stderr)
    if counts["errored"]:
        for _, row in trials[trials["status"] == "errored"].iterrows():
            print(f"errored: trial {row['trial_id']}: {row['error']}", file=sys.stderr)
        print(f"study ended with {counts['errored']} errored trial(s). Retry them with:\n"
              f"  {resume_command(spec, where, opts)}", file=sys.stderr)
        return EXIT_TRIAL_ERRORS
    return 0


def resume_command(spec: Spec, where: Location, opts: RunOptions) -> str:
    parts = ["python", "study/run.py", "--space", spec.source if spec.name != Path(spec.source).stem
             else spec.name, "--resume", str(where.folder)]
    if opts.address:
        parts += ["--address", opts.address]
    if where.remote:
        parts += ["--storage", where.root]
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


def study_tracker(opts: RunOptions, where: Location) -> dict[str, Any] | None:
    """The study's tracker (``study/trackers.py``): the one a resumed study logs to, or
    --tracker's, checked to answer before Ray starts; a problem is a SpecError of one line."""
    from study import trackers as tracking

    try:
        requested = (tracking.parse(opts.tracker, local_root(where.root)) if opts.tracker
                     else None)
        tracker = tracking.settings(where.folder, requested) if opts.resume else requested
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


if __name__ == "__main__":
    sys.exit(main())
