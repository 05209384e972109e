"""Evaluation: a model on a split (``evaluate``, ``evaluate_splits``: what ``fit`` runs at every
epoch), the end-of-run diagnostics (``run_diagnostics``), the predictions and JSON writers, and
the re-evaluation of a run's selected model, ``best.pt`` -> ``evaluation.json``:

    python -m rollingq.evaluate RUN_DIR [--set key=value ...]

Reloads the run's ``config.yaml`` (with any ``--set`` on top: another noise recipe or level,
``train.device``, ...), its data set and ``best.pt`` (the model of the best validation epoch,
rotation included), and writes ``RUN_DIR/evaluation.json``: validation and test metrics and
the end-of-run diagnostics (``run_diagnostics``). On CPU, with the run's own
config, its test accuracy is the run's ``test_acc_at_best_val`` exactly.
"""

from __future__ import annotations

import argparse
import io
import json
import math
import sys
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from rollingq import diagnostics
from rollingq.checkpoints import BEST, load_checkpoint
from rollingq.config import Config, ConfigError, build_config, parse_override
from rollingq.data import DataBundle, Split, load_data
from rollingq.device import autocast_for, place, resolve_device
from rollingq.model import MultimodalTransformer
from rollingq.rolling import EpochStats

EVALUATION = "evaluation.json"
EVAL_BATCH = 256  # evaluation batches hold at least this many samples
PREDICTIONS = "predictions.npz"  # the selected model's clean test predictions, per sample

Metrics = dict[str, Any]


def eval_batch_size(cfg: Config) -> int:
    """The batch size of every evaluation pass (the same in training and in the diagnostics,
    so a diagnostic's clean pass is the epoch's evaluation bit for bit): ``train.eval_batch_size``
    or, at 0, the training batch but at least ``EVAL_BATCH``."""
    return cfg.train.eval_batch_size or max(cfg.train.batch_size, EVAL_BATCH)


@torch.no_grad()
def evaluate(model: MultimodalTransformer, split: Split, batch_size: int, autocast,
             binary_f1: bool = False) -> Metrics:
    """Loss, accuracy, macro-F1 (and with ``binary_f1`` the support-weighted F1 MulT reports
    as MOSEI's binary F1), probe accuracies, attention shares and cosines on one split (eval
    mode)."""
    was_training = model.training
    model.eval()
    mods = model.modalities
    n = len(split)
    loss = torch.zeros((), device=split.labels.device)
    correct = torch.zeros((), device=split.labels.device)
    confusion = None
    probe_correct = {m: torch.zeros((), device=split.labels.device) for m in mods}
    share = {m: torch.zeros((), device=split.labels.device) for m in mods}
    stats = EpochStats(mods, len(model.rotations)) if model.rotations else None
    for b in split.batches(batch_size):
        with autocast():
            out = model(b.batch())
        loss += F.cross_entropy(out.logits.float(), b.labels, reduction="sum")
        pred = out.logits.argmax(1)
        correct += (pred == b.labels).sum()
        counts = diagnostics.confusion_matrix(pred, b.labels, out.logits.shape[1])
        confusion = counts if confusion is None else confusion + counts
        for m in mods:
            probe_correct[m] += (out.probe_logits[m].argmax(1) == b.labels).sum()
        if stats is not None:
            stats.add(out.fusion)
            for m in mods:
                share[m] += out.share[m].sum()
    model.train(was_training)
    f1 = diagnostics.f1_scores(confusion)
    result = {"loss": loss / n, "acc": correct / n, "f1": f1["macro"]}
    if binary_f1:
        result["binary_f1"] = f1["weighted"]
    result.update({f"probe_acc_{m}": c / n for m, c in probe_correct.items()})
    if stats is not None:
        cos = stats.layers[-1].cosines("epoch")
        result.update({f"share_{m}": share[m] / n for m in mods})
        result.update({f"cos_{m}": cos[i] for i, m in enumerate(mods)})
        if len(mods) == 2:
            result["air"] = cos[0] - cos[1]
            result["abs_air"] = (cos[0] - cos[1]).abs()  # a Pareto study's balance objective
    return {k: float(v) for k, v in result.items()}  # one host sync per split


def evaluate_splits(model: MultimodalTransformer, bundle: DataBundle, batch_size: int,
                     autocast, binary_f1: bool) -> Metrics:
    """``val_*`` and ``test_*`` metrics of the model as it is now."""
    out: Metrics = {}
    for name, split in (("val", bundle.val), ("test", bundle.test)):
        out.update({f"{name}_{k}": v for k, v in
                    evaluate(model, split, batch_size, autocast, binary_f1).items()})
    return out


def run_diagnostics(
    cfg: Config, model: MultimodalTransformer, data: DataBundle, epoch: int | None = None,
) -> tuple[Metrics, dict[str, np.ndarray]]:
    """The end-of-run diagnostics of a model (the selected one: ``FitResult.selected()``).

    On the test split: the clean evaluation, the noise curve per modality (Table 3:
    ``train.noise_*``, with its area and drop), each modality zeroed, and Table 2's
    attention-noise protocol (``train.attention_noise_*``, on its split); the parameter
    counts. Every pass uses the training run's precision and evaluation batch size, so the
    clean accuracy and the curves at λ = 0 equal the epoch's test accuracy.

    Args:
        epoch: The epoch the model is from, recorded as ``epoch``.

    Returns:
        The diagnostics (JSON-ready), and the clean test predictions per sample: ``label``,
        ``pred`` and ``p_true`` (the probability of the true class), in split order.
    """
    t, test = cfg.train, data.test
    autocast = autocast_for(cfg, next(model.parameters()).device)  # as the run trained
    batch = eval_batch_size(cfg)
    clean, shares = diagnostics.predict(model, test, batch, autocast=autocast)
    labels = test.labels.cpu()
    out: Metrics = {"epoch": epoch, "split": "test", "samples": len(test),
                    "test": diagnostics.scores(clean, labels)}
    noise: Metrics = {"recipe": t.noise_recipe, "levels": list(t.noise_levels),
                      "seed": t.noise_seed, "curves": {}, "summary": {}}
    for m in model.modalities:
        curve = diagnostics.noise_robustness(model, test, m, t.noise_levels, t.noise_recipe,
                                             batch, t.noise_seed, autocast, clean=clean)
        noise["curves"][m] = {str(level): v for level, v in curve.items()}
        noise["summary"][m] = diagnostics.curve_summary(
            list(curve), [v["acc"] for v in curve.values()])
    out["noise"] = noise
    out["missing"] = {m: diagnostics.missing_modality(model, test, m, batch, autocast)
                      for m in model.modalities}
    split = test if t.attention_noise_split == "test" else data.val
    attn = diagnostics.attention_noise(
        model, split, t.attention_noise_level, t.attention_noise_recipe,
        t.attention_noise_draws, batch, t.noise_seed, autocast,
        clean_shares=shares if split is test else None)
    out["attention_noise"] = None if attn is None else {"split": t.attention_noise_split, **attn}
    out["parameters"] = diagnostics.count_parameters(model)
    out["favoured_modality"] = data.favoured
    probs = clean.double().softmax(1)
    predictions = {
        "label": labels.numpy().astype(np.int16),  # a few KB at the paper's test sizes
        "pred": clean.argmax(1).numpy().astype(np.int16),
        "p_true": probs[torch.arange(len(labels)), labels].float().numpy(),
    }
    return out, predictions


def predictions_npz(predictions: dict[str, np.ndarray], epoch: int | None) -> bytes:
    """``predictions.npz``'s bytes: one row a test sample, in split order, plus the epoch."""
    buffer = io.BytesIO()
    np.savez(buffer, **predictions, epoch=np.int64(-1 if epoch is None else epoch))
    return buffer.getvalue()


def write_predictions(path: Path, predictions: dict[str, np.ndarray], epoch: int | None) -> None:
    """Writes ``predictions.npz`` through a temporary file and a rename."""
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_bytes(predictions_npz(predictions, epoch))
    tmp.replace(path)


def json_safe(x: Any) -> Any:
    if isinstance(x, float) and not math.isfinite(x):
        return None
    if isinstance(x, dict):
        return {k: json_safe(v) for k, v in x.items()}
    if isinstance(x, list | tuple):
        return [json_safe(v) for v in x]
    return x


def write_json(path: Path, obj: Any) -> None:
    path.write_text(json.dumps(json_safe(obj), indent=2) + "\n")


def summarize(status: str, history: list[Metrics], model: MultimodalTransformer) -> Metrics:
    """The headline numbers of a run."""
    last = history[-1] if history else {}
    summary = {
        "status": status,
        "epochs": sum(h.get("epoch", 0) >= 0 for h in history),
        "test_acc_at_best_val": last.get("test_acc_at_best_val"),
        "test_f1_at_best_val": last.get("test_f1_at_best_val"),
        "best_val_acc": last.get("best_val_acc"),
        "val_f1_at_best_val": last.get("val_f1_at_best_val"),
        "best_val_epoch": last.get("best_val_epoch"),
        "best_test_acc_paper_style": last.get("best_test_acc"),
        "final_test_acc": last.get("test_acc"),
        **({"test_binary_f1_at_best_val": last["test_binary_f1_at_best_val"]}
           if "test_binary_f1_at_best_val" in last else {}),
        "rotations": [int(r.count) for r in model.rotations],
        "rotation_epochs": [h["epoch"] for h in history if h.get("rotated")],
        "wall_seconds": sum(h.get("epoch_seconds", 0.0) for h in history),
    }
    return summary


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
    splits = evaluate_splits(model, bundle, eval_batch_size(cfg), autocast,
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
