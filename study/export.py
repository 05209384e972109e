"""A finished (or interrupted) study's results folder -> its tracker, after the fact.

    python -m study.export mlflow[:URI] results/hpo/<timestamp>
    python -m study.export wandb[:PROJECT] results/hpo/<timestamp>

``sync`` brings the tracker up to the study's files: it logs a study that ran without a tracker,
or tops up one whose live logging missed something (a killed driver, a server that was down);
the study driver calls it at the study's end too. The runs and their tags are
``study/trackers.py``'s.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from study.trackers import (
    TrackerError,
    check,
    describe,
    metrics_and_text,
    open_backend,
    parse,
)


def sync(folder: Path, tracker: dict[str, Any], space: str | None = None) -> dict[str, int]:
    """Brings the tracker up to the study's result files (``trials.csv``, ``curves.csv``, the
    report): every trial's run, every epoch, the trial's final values and outcomes, the study's
    files; adds only what the tracker lacks. Returns counts of what it added."""
    import pandas as pd
    import yaml

    folder = Path(folder)
    tree = yaml.safe_load((folder / "space.yaml").read_text())
    space = space or tree.get("name") or folder.parent.name
    search = list(tree.get("search") or {})
    fixed = tree.get("fixed") or {}
    trials = pd.read_csv(folder / "trials.csv")
    curves = pd.read_csv(folder / "curves.csv") if (folder / "curves.csv").is_file() else None
    by_trial = ({str(t): g.sort_values("epoch") for t, g in curves.groupby("trial_id")}
                if curves is not None and len(curves) else {})
    param_keys = {*search, "train.seed", "variant"}
    backend = open_backend(folder, tracker, space)
    added = {"runs": 0, "steps": 0, "values": 0}
    try:
        for row in trials.to_dict("records"):
            tid = str(row["trial_id"])
            params = {**fixed, **{k: row[k] for k in param_keys
                                  if k in row and not pd.isna(row[k])}}
            added["runs"] += backend.trial(tid, params)
            for rec in (by_trial[tid].to_dict("records") if tid in by_trial else []):
                epoch = int(rec["epoch"])
                if epoch < 0:  # the untrained model: curves.csv only
                    continue
                if epoch not in backend.logged(tid):
                    metrics, text = metrics_and_text(
                        {k: v for k, v in rec.items() if k != "trial_id"})
                    backend.log(tid, epoch, metrics, text)
                    added["steps"] += 1
            metrics, _ = metrics_and_text({k: v for k, v in row.items() if k not in param_keys})
            lacking = backend.missing(tid, sorted(metrics))
            if lacking:  # the outcomes, and final values a killed driver never logged
                values = {k: metrics[k] for k in lacking}
                backend.summary(tid, values)
                added["values"] += len(lacking)
            backend.end_trial(tid, str(row.get("status", "finished")))
        c = trials["status"].value_counts().to_dict()
        complete = not c.get("incomplete")
        backend.end_study(folder, ", ".join(f"{v} {k}" for k, v in c.items()), complete)
    finally:
        backend.close()
    return added


def main(argv: list[str] | None = None) -> int:
    import argparse

    ap = argparse.ArgumentParser(
        prog="python -m study.export",
        description="Logs a study's results folder to MLflow or W&B (one parent run, one run "
                    "per trial, every epoch, the outcomes, the report as an artifact); a study "
                    "the tracker already holds is topped up, never logged twice.")
    ap.add_argument("tracker", metavar="mlflow[:URI]|wandb[:PROJECT]",
                    help="MLflow (default: the sqlite store mlflow.db in the results root, "
                         "beside <space>/) or W&B (offline unless WANDB_MODE is set)")
    ap.add_argument("dir", type=Path, metavar="RESULTS_DIR",
                    help="results/<space>/<timestamp>/ written by study/run.py")
    args = ap.parse_args(argv)
    folder = args.dir.resolve()
    for name in ("space.yaml", "trials.csv"):
        if not (folder / name).is_file():
            print(f"error: {folder}: not a study's results folder (no {name}); pass the "
                  f"results/<space>/<timestamp>/ folder study/run.py wrote", file=sys.stderr)
            return 2
    try:
        tracker = parse(args.tracker, folder.parent.parent)
        check(tracker)
    except TrackerError as e:
        print(f"error: {e.args[0].replace('--tracker', 'tracker', 1)}", file=sys.stderr)
        return 2
    added = sync(folder, tracker)
    print(f"{describe(tracker)}: {folder.name}: {added['runs']} run(s), {added['steps']} "
          f"epoch(s), {added['values']} value(s) added")
    return 0


if __name__ == "__main__":
    sys.exit(main())
