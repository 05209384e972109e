"""Re-evaluate a run's selected model: ``best.pt`` -> ``evaluation.json``.

    python -m rollingq.evaluate RUN_DIR [--set key=value ...]

Reloads the run's ``config.yaml`` (with any ``--set`` on top: another noise recipe or level,
``train.device``, ...), its data set and ``best.pt`` (the model of the best validation epoch,
rotation included), and writes ``RUN_DIR/evaluation.json``: validation and test metrics and
the end-of-run diagnostics of ``rollingq.train.run_diagnostics``. On CPU, with the run's own
config, its test accuracy is the run's ``test_acc_at_best_val`` exactly.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from rollingq.checkpoints import BEST, load_checkpoint
from rollingq.config import ConfigError, build_config, parse_override
from rollingq.data import load_data
from rollingq.model import MultimodalTransformer
from rollingq.train import (
    _evaluate_splits,
    autocast_for,
    eval_batch_size,
    place,
    resolve_device,
    run_diagnostics,
    write_json,
)

EVALUATION = "evaluation.json"


def evaluate_run(run_dir: str | Path, overrides: list[str] | None = None) -> dict[str, Any]:
    """The evaluation of ``run_dir``'s best.pt under its config (plus ``overrides``)."""
    run = Path(run_dir)
    for name in ("config.yaml", BEST):
        if not (run / name).is_file():
            raise ConfigError(f"{run / name} does not exist; pass the --out folder of a run "
                              f"trained with train.keep_best=true")
    # best.pt holds every weight: the pretrained file the run started from is not read again
    cfg = build_config(run / "config.yaml", {**dict(parse_override(o) for o in overrides or []),
                                             "model.pretrained": ""})
    best = load_checkpoint(run / BEST)
    device = resolve_device(cfg.train.device)
    bundle = place(load_data(cfg.data), device, cfg.train.data_on_device)
    model = MultimodalTransformer(bundle.specs, bundle.num_classes, cfg.model)
    try:
        model.load_state_dict(best["model"])
    except RuntimeError as e:
        first = str(e).strip().splitlines()[0]
        raise ConfigError(f"{run / BEST} does not fit the model its config builds ({first}); "
                          "an override changed the architecture") from None
    model.to(device)
    autocast = autocast_for(cfg, device)
    splits = _evaluate_splits(model, bundle, eval_batch_size(cfg), autocast,
                              cfg.data.name == "mosei")
    diag, _ = run_diagnostics(cfg, model, bundle, best["epoch"])
    return {
        "run": str(run),
        "epoch": best["epoch"],
        "overrides": list(overrides or []),
        "val": {k.removeprefix("val_"): v for k, v in splits.items() if k.startswith("val_")},
        "test": {k.removeprefix("test_"): v for k, v in splits.items() if k.startswith("test_")},
        "diagnostics": diag,
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m rollingq.evaluate",
                                 description=__doc__.split("\n")[0])
    ap.add_argument("run_dir", help="a run's --out folder (config.yaml, best.pt)")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                    help="dotted override on top of the run's config (repeatable)")
    args = ap.parse_args(argv)
    try:
        result = evaluate_run(args.run_dir, args.set)
    except (ConfigError, ValueError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    out = Path(args.run_dir) / EVALUATION
    write_json(out, result)
    print(f"epoch {result['epoch']}: test acc {result['test']['acc']:.4f}, "
          f"macro-F1 {result['test']['f1']:.4f}; wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
