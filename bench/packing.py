"""Packing: k trials sharing one GPU (1/k of it each) against one trial at a time, via Ray Tune.

A study of small models leaves most of a GPU idle when it runs one trial at a time. This runs the
same ``--trials`` trials (a small configuration: the synthetic data at width ``--dim``, seeds
0..trials-1) as a real study would (``study.tuner.build_tuner``, the study's trainable with its
checkpoints, ledger and end-of-trial diagnostics) with ``tune.resources.gpu = 1/k`` and at most
k trials at once, for each k of ``--ks``, and prints for each k:

- aggregate samples/s: training samples of all trials / the study's wall time (Ray started once,
  beforehand; trial start-up, evaluation and diagnostics included, as in a real study),
- the ratio to k = 1 (the goal: >= 2x at k = 4),
- the mean rate of one trial while it trains (its samples / its epochs' seconds).

On a machine without a GPU (``--device cpu``) each trial gets 1/k of the CPUs instead; that
checks the script end to end, and says nothing about GPU packing. Examples:

    python bench/packing.py                                   # on a GPU node: k = 1, 2, 4, 8
    python bench/packing.py --device cpu --ks 1 2 --trials 2 --epochs 1 --train-size 400
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

GOAL_K, GOAL_RATIO = 4, 2.0  # issue 6: k = 4 trials on one GPU give >= 2x one at a time


def spec_tree(args: argparse.Namespace, k: int, device: str, cpus: float) -> dict:
    """The study of one measurement: the same trials for every k, 1/k of the device each."""
    gpu = 1 / k if device == "cuda" else 0
    cpu = 1 if device == "cuda" else cpus / k
    return {
        "name": f"packing_k{k}",
        "fixed": {"data.name": "synthetic", "data.train_size": args.train_size,
                  "data.test_size": max(200, args.train_size // 10), "model.dim": args.dim,
                  "model.heads": 4, "train.epochs": args.epochs, "train.device": device,
                  "train.batch_size": args.batch,
                  "train.cpu_threads": 0 if device == "cuda" else max(1, int(cpu))},
        "seeds": list(range(args.trials)),
        "tune": {"mode": "grid", "metric": "val_acc", "scheduler": "fifo", "max_failures": 0,
                 "resources": {"cpu": cpu, "gpu": gpu}, "max_concurrent": k},
    }


def measure(args: argparse.Namespace, k: int, device: str, cpus: float, folder: Path) -> dict:
    from study.space import parse_spec
    from study.tuner import build_tuner

    spec = parse_spec(spec_tree(args, k, device, cpus), f"packing_k{k}", "bench/packing.py")
    folder.mkdir(parents=True)
    tuner = build_tuner(spec, str(folder), folder)
    began = time.perf_counter()
    grid = tuner.fit()
    wall = time.perf_counter() - began
    if grid.errors:
        raise RuntimeError(f"k={k}: {len(grid.errors)} trial(s) failed: {grid.errors[0]}")
    samples, rates = 0.0, []
    for r in grid:
        df = r.metrics_dataframe.drop_duplicates("epoch", keep="last")
        if len(df) != args.epochs:
            raise RuntimeError(f"k={k}: a trial reported {len(df)} of {args.epochs} epochs")
        trial_samples = float((df["samples_per_s"] * df["epoch_seconds"]).sum())
        samples += trial_samples
        rates.append(trial_samples / float(df["epoch_seconds"].sum()))
    return {"k": k, "trials": len(rates), "wall": wall, "rate": samples / wall,
            "trial_rate": sum(rates) / len(rates)}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--ks", type=int, nargs="+", default=[1, 2, 4, 8],
                    help="trials sharing the device at once (default 1 2 4 8)")
    ap.add_argument("--trials", type=int, default=8, help="trials a measurement (default 8)")
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--train-size", type=int, default=6000)
    ap.add_argument("--dim", type=int, default=256, help="model.dim (default 256)")
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--device", choices=["auto", "cuda", "cpu"], default="auto")
    args = ap.parse_args(argv)
    if min(args.ks) < 1 or args.trials < max(args.ks):
        ap.error(f"every k must be >= 1 and --trials >= the largest k; got --ks {args.ks} "
                 f"--trials {args.trials}")

    import ray
    import torch

    from study.tuner import export_project_path

    device = args.device
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda" and not torch.cuda.is_available():
        ap.error("--device cuda but torch sees no CUDA device; use --device cpu")
    export_project_path()
    os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")
    ray.init(include_dashboard=False, log_to_driver=False)
    try:
        cpus = float(ray.cluster_resources().get("CPU", 1))
        name = torch.cuda.get_device_name() if device == "cuda" else f"{cpus:.0f} CPUs"
        print(f"packing on {name}: {args.trials} trials of synthetic data, width {args.dim}, "
              f"{args.train_size} training samples x {args.epochs} epochs, batch {args.batch}",
              flush=True)
        rows = []
        with tempfile.TemporaryDirectory(prefix="rollingq-packing-") as tmp:
            for k in args.ks:
                rows.append(measure(args, k, device, cpus, Path(tmp) / f"k{k}"))
                r = rows[-1]
                share = f"1/{k} GPU" if device == "cuda" else f"{cpus / k:g} CPU"
                print(f"k={k} ({share} a trial): {r['trials']} trials in {r['wall']:.1f} s, "
                      f"aggregate {r['rate']:,.0f} samples/s, one trial while training "
                      f"{r['trial_rate']:,.0f} samples/s", flush=True)
    finally:
        ray.shutdown()
    base = next((r for r in rows if r["k"] == 1), None)
    if base is not None:
        for r in rows:
            print(f"ratio k={r['k']} / k=1: {r['rate'] / base['rate']:.2f}x")
        goal = next((r for r in rows if r["k"] == GOAL_K), None)
        if goal is not None and device == "cuda":
            ratio = goal["rate"] / base["rate"]
            verdict = "met" if ratio >= GOAL_RATIO else "NOT met"
            print(f"goal k={GOAL_K} >= {GOAL_RATIO:g}x k=1 on the GPU: {verdict} ({ratio:.2f}x)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
