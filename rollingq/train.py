"""Training: ``fit(config, on_epoch_end) -> FitResult``, and the single-run CLI.

One epoch, top to bottom:
    1. shuffle the training split (seeded generator, saved in checkpoints)
    2. per batch: forward, fusion CE + one CE per detached probe (+ PMR's prototype CEs),
       backward (then OGM / OGM-GE modulate the encoder gradients), optimizer and lr step;
       losses, accuracies and the RollingQ statistics accumulate on the device (no host sync);
       with the published schedule one more lr step after the last batch
    3. epoch end: RollingQ (rolling.py) decides and maybe rotates the [cls] query
    4. evaluate on val and test (deterministic), select on val (the selected model's state is
       kept), checkpoint (best.pt with it when the selection changed), call back

Before the first step the untrained model is evaluated once (epoch -1: validation and test
accuracy, F1, AIR, cosines, shares), so what training changes is observable from its start.
A run whose training loss turns NaN/inf stops with status ``diverged``. The end-of-run
diagnostics (``rollingq.evaluate.run_diagnostics``) run on the selected model, the one the
headline reports. Evaluation lives in ``rollingq/evaluate.py``, the device and precision in
``rollingq/device.py``.

CLI:  python -m rollingq.train [--config FILE] [--set key=value ...] [--out DIR] [--resume]
(``python -m rollingq.evaluate DIR`` re-evaluates a run's best.pt)
"""

from __future__ import annotations

import argparse
import copy
import json
import logging
import math
import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
import yaml

from rollingq.balancing import Balancer
from rollingq.checkpoints import (
    BEST,
    CHECKPOINT,
    PREVIOUS_BEST,
    load_checkpoint,
    rng_state,
    save_checkpoint,
    set_rng_state,
)
from rollingq.config import Config, ConfigError, build_config
from rollingq.data import DataBundle, load_data
from rollingq.device import (
    autocast_for,
    compiled_or_eager,
    place,
    resolve_device,
    set_deterministic,
)
from rollingq.evaluate import (  # EVAL_BATCH: importable from here, as before the split
    EVAL_BATCH,  # noqa: F401
    PREDICTIONS,
    eval_batch_size,
    evaluate_splits,
    json_safe,
    run_diagnostics,
    summarize,
    write_json,
    write_predictions,
)
from rollingq.model import ModelOutput, MultimodalTransformer
from rollingq.pretrained import load_pretrained
from rollingq.rolling import EpochStats, full_pass_stats, rotate_if_needed

log = logging.getLogger(__name__)

SELECTED = ("val_acc", "val_f1", "test_acc", "test_f1", "test_binary_f1")  # kept at the best
CUDA_CHECKPOINT_MINUTES = 10.0  # train.checkpoint_minutes=-1 (auto) on CUDA

Metrics = dict[str, Any]


@dataclass
class FitResult:
    """The outcome of ``fit``.

    Attributes:
        status: ``finished`` or ``diverged``.
        history: One flat metrics dict per epoch.
        summary: Headline numbers: test accuracy at the best validation epoch, the paper-style
            best test accuracy (model selection on test, labelled as such), rotations, timing.
        model: The trained model after its last epoch (on the training device).
        data: The data set it was trained on (on the training device).
        best_state: The model's state at the best validation epoch (CPU tensors; rotation
            buffers included), None when no epoch completed.
    """

    status: str
    history: list[Metrics]
    summary: Metrics
    model: MultimodalTransformer
    data: DataBundle
    config: Config = field(repr=False)
    best_state: dict[str, torch.Tensor] | None = field(default=None, repr=False)

    def selected(self) -> MultimodalTransformer:
        """A copy of the model with the best validation epoch's state: the headline's model."""
        if self.best_state is None:
            raise ValueError("no epoch completed, so no model was selected")
        model = copy.deepcopy(self.model)
        model.load_state_dict(self.best_state)
        return model


def lr_factor(step: int, warmup: float, total: int, floor: float,
              schedule: str = "published") -> float:
    """The learning rate at scheduler step ``step`` as a fraction of ``optim.lr``.

    ``published`` (transformers' ``get_cosine_schedule_with_warmup``, as the published code
    uses it): linear warm-up ``step / warmup`` over ``warmup`` whole steps (the first step runs
    at lr 0), then ``0.5 (1 + cos(pi progress))`` with progress = (step - warmup) / (total -
    warmup), not clamped at 1 (past ``total`` the rate rises again slightly, as published).
    ``plain``: warm-up ``(step + 1) / warmup`` (fractional ``warmup`` allowed), then cosine
    decay clamped at ``total``. Both end at ``floor`` (``optim.min_lr_ratio``; published: 0).
    """
    if schedule == "published":
        warmup = int(warmup)
        if step < warmup:
            return step / max(1, warmup)
        progress = (step - warmup) / max(1, total - warmup)
        return floor + (1 - floor) * max(0.0, 0.5 * (1 + math.cos(math.pi * progress)))
    if step < warmup:
        return (step + 1) / warmup
    progress = min(1.0, (step - warmup) / max(1.0, total - warmup))
    return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * progress))


def make_optimizer(cfg: Config, model: torch.nn.Module,
                   device: torch.device) -> torch.optim.Optimizer:
    o = cfg.optim
    params = [p for p in model.parameters() if p.requires_grad]
    fused = {"fused": True} if device.type == "cuda" else {}
    if o.name == "sgd":
        return torch.optim.SGD(params, o.lr, momentum=o.momentum, weight_decay=o.weight_decay,
                               **fused)
    cls = torch.optim.Adam if o.name == "adam" else torch.optim.AdamW
    return cls(params, o.lr, weight_decay=o.weight_decay, **fused)


def losses(out: ModelOutput, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    fusion = F.cross_entropy(out.logits.float(), labels)
    probes = sum(F.cross_entropy(p.float(), labels) for p in out.probe_logits.values())
    return fusion, probes


def train_step(
    forward: Callable, optimizer: torch.optim.Optimizer, inputs: dict[str, torch.Tensor],
    labels: torch.Tensor, autocast: Callable, balancer: Balancer | None = None,
    grad_clip: float = 0.0,
) -> tuple[ModelOutput, torch.Tensor, torch.Tensor]:
    """One optimisation step: forward, fusion CE + the probes' CEs (+ PMR's prototype CEs),
    backward, (OGM's gradient modulation,) (the gradients' total norm clipped to
    ``grad_clip``,) optimizer step.

    Returns:
        The forward's output record and the two losses (on the device; no host sync).
    """
    with autocast():
        out = forward(inputs)
    loss, probe_loss = losses(out, labels)
    total = loss + probe_loss
    extra = balancer.extra_loss(out, labels) if balancer is not None else None
    if extra is not None:
        total = total + extra
    optimizer.zero_grad(set_to_none=True)
    total.backward()
    if balancer is not None:
        balancer.modulate(out, labels)
    if grad_clip > 0:
        torch.nn.utils.clip_grad_norm_(
            [p for group in optimizer.param_groups for p in group["params"]], grad_clip)
    optimizer.step()
    return out, loss, probe_loss


def _seed_everything(seed: int) -> None:
    torch.manual_seed(seed)
    if torch.cuda.is_available():
        torch.cuda.manual_seed_all(seed)


@dataclass
class _Run:
    """What ``fit`` trains with and keeps between epochs (``_setup``; ``_restore`` on resume)."""

    config: Config
    device: torch.device
    autocast: Any
    bundle: DataBundle
    model: MultimodalTransformer
    forward: Callable
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LambdaLR
    balancer: Balancer | None
    stats: EpochStats | None
    shuffle: torch.Generator
    steps_per_epoch: int
    ckpt_path: Path | None
    history: list[Metrics] = field(default_factory=list)
    best: Metrics = field(default_factory=lambda: {
        "val_acc": -1.0, "epoch": -1, "test_acc": float("nan"), "best_test_acc": -1.0})
    best_state: dict[str, torch.Tensor] | None = None
    start_epoch: int = 0
    saved_at: float = field(default_factory=time.monotonic)  # the last checkpoint (or start)
    saved_best: int = -1  # the epoch of the model best.pt holds

    def evaluate(self) -> Metrics:
        """``val_*`` and ``test_*`` of the model as it is now."""
        return evaluate_splits(self.model, self.bundle, eval_batch_size(self.config),
                                self.autocast, self.config.data.name == "mosei")


def fit(
    config: Config,
    on_epoch_end: Callable[[Metrics], Any] | None = None,
    checkpoint_dir: str | Path | None = None,
    resume: bool = False,
    data: DataBundle | None = None,
) -> FitResult:
    """Trains one model as configured (the module docstring's epoch, step by step).

    Args:
        config: A validated Config.
        on_epoch_end: Called with each epoch's flat metrics dict (after the checkpoint is written).
        checkpoint_dir: Where ``checkpoint.pt`` goes every ``train.checkpoint_every`` epochs.
        resume: Continue from ``checkpoint_dir/checkpoint.pt`` when it exists.
        data: An already loaded data set (otherwise ``load_data(config.data)``).

    Returns:
        A FitResult; ``status`` is ``diverged`` when the loss turned NaN/inf.
    """
    run = _setup(config, data, checkpoint_dir)
    if resume and run.ckpt_path is not None and run.ckpt_path.exists():
        _restore(run)
    report = on_epoch_end or (lambda metrics: None)
    if not run.history:  # epoch -1: the untrained model, before the first step
        run.history.append({"epoch": -1, **run.evaluate(), "status": "running"})
        report(dict(run.history[-1]))
    status = "finished"
    if run.history[-1].get("status") == "diverged":  # resumed after it diverged
        status, run.start_epoch = "diverged", config.train.epochs
    for epoch in range(run.start_epoch, config.train.epochs):
        began = time.perf_counter()
        metrics = _train_epoch(run, epoch)  # 1. shuffle, 2. the steps
        if not math.isfinite(metrics["train_loss"] + metrics["train_probe_loss"]):
            status = "diverged"
            run.history.append({**metrics, "status": status})
            report(dict(run.history[-1]))
            log.warning("epoch %d: training loss is %s; stopping (diverged)", epoch,
                        metrics["train_loss"])
            break
        metrics |= _rotate(run)  # 3. RollingQ at the epoch's end
        metrics |= _evaluate_and_select(run, epoch)  # 4. evaluate, select on validation
        seconds = time.perf_counter() - began
        metrics |= {"epoch_seconds": seconds,
                    "samples_per_s": len(run.bundle.train) / seconds, "status": "running"}
        run.history.append(metrics)
        _checkpoint(run, epoch)
        report(dict(metrics))
    _save_best(run)  # a run without checkpoints, or one that diverged, ends with its selection
    return FitResult(status, run.history, summarize(status, run.history, run.model), run.model,
                     run.bundle, config, run.best_state)


def _setup(config: Config, data: DataBundle | None, checkpoint_dir: str | Path | None) -> _Run:
    """The device, the data on it, the model, balancer, optimizer and schedule of a run."""
    t = config.train
    device = resolve_device(t.device)
    if device.type == "cpu" and t.cpu_threads:
        torch.set_num_threads(t.cpu_threads)  # process-wide, as torch's setting is
    autocast = autocast_for(config, device)
    set_deterministic(t.deterministic)
    _seed_everything(t.seed)
    bundle = place(data or load_data(config.data), device, t.data_on_device)
    model = MultimodalTransformer(bundle.specs, bundle.num_classes, config.model)
    model.set_activation_checkpointing(t.activation_checkpointing)
    if config.model.pretrained:
        log.info("pretrained: %s", load_pretrained(model, config.model.pretrained).summary())
    model.to(device)
    balancer = (Balancer(config.balance, model, bundle.num_classes)
                if config.balance.method != "none" else None)
    optimizer = make_optimizer(config, model, device)
    steps_per_epoch = math.ceil(len(bundle.train) / t.batch_size)
    total = steps_per_epoch * t.epochs
    warmup = config.optim.warmup_epochs * steps_per_epoch
    floor, schedule = config.optim.min_lr_ratio, config.optim.schedule
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: lr_factor(s, warmup, total, floor, schedule))
    return _Run(config, device, autocast, bundle, model,
                compiled_or_eager(model) if t.compile else model, optimizer, scheduler, balancer,
                EpochStats(model.modalities, len(model.rotations)) if model.rotations else None,
                torch.Generator().manual_seed(t.seed), steps_per_epoch,
                Path(checkpoint_dir) / CHECKPOINT if checkpoint_dir else None)


def _restore(run: _Run) -> None:
    """The run as its checkpoint left it: model, optimizer, schedule, shuffle and RNG states,
    the balancer's state, the history, the selection and the selected model."""
    state = load_checkpoint(run.ckpt_path)
    run.model.load_state_dict(state["model"])
    run.optimizer.load_state_dict(state["optimizer"])
    run.scheduler.load_state_dict(state["scheduler"])
    run.shuffle.set_state(state["shuffle"])
    set_rng_state(state["rng"])
    if run.balancer is not None and state.get("balance"):
        run.balancer.load_state_dict(state["balance"])
    run.history, run.best, run.start_epoch = state["history"], state["best"], state["epoch"] + 1
    run.best_state = resumed_best(state, run.ckpt_path)
    run.saved_best = state["best"]["epoch"]  # best.pt is written with each checkpoint


def _train_epoch(run: _Run, epoch: int) -> Metrics:
    """One pass over the shuffled training split; the epoch's training metrics, read from the
    device once."""
    t, mods, n_train = run.config.train, run.model.modalities, len(run.bundle.train)
    run.model.train()
    order = torch.randperm(n_train, generator=run.shuffle).to(run.device)
    sums = torch.zeros(3 + len(mods), device=run.device)  # loss, probe loss, correct, probes'
    if run.stats is not None:
        run.stats.reset()
    if run.balancer is not None:
        run.balancer.start_epoch(epoch, partial(run.bundle.train.batches, t.batch_size, order),
                                 run.steps_per_epoch, run.autocast, t.epochs)
    for b in run.bundle.train.batches(t.batch_size, order):
        # a compiled forward meets the partial last batch eagerly: its shape would compile a
        # second graph (a minute or two on a GPU node) for one step an epoch
        forward = run.forward if len(b) == t.batch_size else run.model
        out, loss, probe_loss = train_step(forward, run.optimizer, b.batch(), b.labels,
                                           run.autocast, run.balancer,
                                           run.config.optim.grad_clip)
        run.scheduler.step()
        with torch.no_grad():
            B = len(b)
            sums[0] += loss.detach() * B
            sums[1] += probe_loss.detach() * B
            sums[2] += (out.logits.argmax(1) == b.labels).sum()
            for i, m in enumerate(mods):
                sums[3 + i] += (out.probe_logits[m].argmax(1) == b.labels).sum()
            if run.stats is not None:
                run.stats.add(out.fusion)
    lr = run.optimizer.param_groups[0]["lr"]
    if run.config.optim.schedule == "published":
        run.scheduler.step()  # the published loop steps once more at every epoch end
    s = (sums / n_train).tolist()  # the epoch's one host sync for training metrics
    metrics: Metrics = {"epoch": epoch, "lr": lr, "train_loss": s[0], "train_probe_loss": s[1],
                        "train_acc": s[2]}
    metrics |= {f"train_probe_acc_{m}": s[3 + i] for i, m in enumerate(mods)}
    if run.balancer is not None:
        metrics |= run.balancer.epoch_metrics()
    return metrics


def _rotate(run: _Run) -> Metrics:
    """RollingQ's epoch end (``rolling.rotate_if_needed``): AIR, whether the [cls] query rotated,
    its anchor weight, cosines (and per layer, where several rotate)."""
    if run.stats is None:
        return {}
    t = run.config.train
    events = rotate_if_needed(
        run.config.rollingq, run.model.rotations, run.stats,
        lambda: full_pass_stats(run.model, run.bundle.train, t.batch_size, run.autocast))
    main = events[-1]
    metrics: Metrics = {"air": main.air, "alpha": main.alpha, "rotated": int(main.rotated),
                        "rotations": main.rotations, "rotation_residual": main.residual,
                        "rotation_angle": main.angle}
    metrics |= {f"cos_{m}": c for m, c in zip(run.model.modalities, main.cosines, strict=True)}
    for ev in events[:-1]:
        metrics |= {f"air_layer{ev.layer}": ev.air, f"rotations_layer{ev.layer}": ev.rotations}
    return metrics


def _evaluate_and_select(run: _Run, epoch: int) -> Metrics:
    """Validation and test metrics; a better validation accuracy selects this epoch's model
    (kept on the CPU; ``_checkpoint`` writes it to best.pt); the selection's metrics
    (``*_at_best_val``) and the paper-style best test accuracy."""
    metrics = run.evaluate()
    best = run.best
    if metrics["val_acc"] > best["val_acc"]:
        best.update(epoch=epoch, **{k: metrics[k] for k in SELECTED if k in metrics})
        run.best_state = {k: v.detach().to("cpu", copy=True)
                          for k, v in run.model.state_dict().items()}
    best["best_test_acc"] = max(best["best_test_acc"], metrics["test_acc"])
    return metrics | {
        "best_val_acc": best["val_acc"], "best_val_epoch": best["epoch"],
        "test_acc_at_best_val": best["test_acc"],
        **{f"{k}_at_best_val": best[k] for k in SELECTED
           if k not in ("val_acc", "test_acc") and k in best},
        "best_test_acc": best["best_test_acc"]}


def checkpoint_minutes(config: Config, device: torch.device) -> float:
    """``train.checkpoint_minutes`` resolved: auto (-1) is 10 on CUDA, 0 elsewhere."""
    minutes = config.train.checkpoint_minutes
    return minutes if minutes >= 0 else (CUDA_CHECKPOINT_MINUTES if device.type == "cuda" else 0.0)


def _checkpoint(run: _Run, epoch: int) -> None:
    """``checkpoint.pt`` at the last epoch and at every ``train.checkpoint_every``-th epoch at
    least ``checkpoint_minutes`` after the previous one: everything ``_restore`` needs. The
    selected model goes to ``best.pt`` with it when the selection changed (``train.keep_best``:
    the weights once, not again inside the checkpoint), or else is carried in the checkpoint."""
    t = run.config.train
    every, last = t.checkpoint_every, epoch + 1 == t.epochs
    if run.ckpt_path is None or not every or not ((epoch + 1) % every == 0 or last):
        return
    if not last and time.monotonic() - run.saved_at < 60 * checkpoint_minutes(run.config,
                                                                               run.device):
        return
    _save_best(run)  # first: the checkpoint may select it
    save_checkpoint(run.ckpt_path, {
        "model": run.model.state_dict(), "optimizer": run.optimizer.state_dict(),
        "scheduler": run.scheduler.state_dict(), "shuffle": run.shuffle.get_state(),
        "rng": rng_state(), "epoch": epoch, "history": run.history, "best": run.best,
        "best_model": run.best_state if run.best["epoch"] != epoch and not t.keep_best
        else None,
        "balance": run.balancer.state_dict() if run.balancer is not None else None,
        "config": run.config.to_dict()})
    run.saved_at = time.monotonic()
    (run.ckpt_path.parent / PREVIOUS_BEST).unlink(missing_ok=True)  # no checkpoint selects it


def _save_best(run: _Run) -> None:
    """``best.pt``, the selected model, when ``train.keep_best`` and the selection changed since
    it was last written (with a checkpoint, or at the run's end). The one it replaces is renamed
    ``PREVIOUS_BEST`` first (no copy), which the last checkpoint may select until the next one
    is written: a run killed between the two writes still resumes."""
    epoch = run.best["epoch"]
    if run.ckpt_path is None or not run.config.train.keep_best or epoch < 0 \
            or epoch == run.saved_best:
        return
    path = run.ckpt_path.parent / BEST
    if path.exists():
        os.replace(path, path.parent / PREVIOUS_BEST)
    save_checkpoint(path, {"model": run.best_state, "epoch": epoch,
                           "config": run.config.to_dict()})
    run.saved_best = epoch


def resumed_best(state: dict[str, Any], ckpt_path: Path) -> dict[str, torch.Tensor] | None:
    """The selected model's state a checkpoint resumes with: its own model when the best
    epoch is the checkpoint's, else the copy it carries (or, from an earlier version,
    best.pt of that epoch beside it)."""
    epoch = state["best"]["epoch"]
    if epoch < 0:
        return None
    if epoch == state["epoch"]:
        return state["model"]
    if state.get("best_model") is not None:
        return state["best_model"]
    for path in (ckpt_path.parent / BEST, ckpt_path.parent / PREVIOUS_BEST):
        if path.exists() and (best := load_checkpoint(path))["epoch"] == epoch:
            return best["model"]
    raise ValueError(f"cannot resume {ckpt_path}: it selects epoch {epoch}, whose model is "
                     f"neither in it nor in {ckpt_path.parent / BEST}; start the run again "
                     f"without --resume")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m rollingq.train",
                                 description=__doc__.split("\n")[0])
    ap.add_argument("--config",
                    help="YAML file nested by group (data, model, rollingq, optim, train)")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                    help="dotted override, e.g. rollingq.beta=0.1 (repeatable)")
    ap.add_argument("--out", help="output folder (default runs/<time>)")
    ap.add_argument("--resume", action="store_true", help="continue from OUT/checkpoint.pt")
    ap.add_argument("--quiet", action="store_true", help="no progress bar")
    args = ap.parse_args(argv)
    try:
        cfg = build_config(args.config, args.set)
        out = Path(args.out or f"runs/{time.strftime('%Y%m%d-%H%M%S')}")
        if args.resume and not (out / CHECKPOINT).exists():
            raise ConfigError(f"--resume: no {CHECKPOINT} in {out}; pass the --out of the run "
                              f"to resume")
        out.mkdir(parents=True, exist_ok=True)
        from tqdm import tqdm

        bar = tqdm(total=cfg.train.epochs, disable=args.quiet, unit="epoch", file=sys.stderr)
        metrics_file = out / "metrics.jsonl"

        def on_epoch_end(m: Metrics) -> None:
            with metrics_file.open("a") as f:
                f.write(json.dumps(json_safe(m)) + "\n")
            bar.update(int(m["epoch"] >= 0))  # epoch -1 is the untrained model
            shown = {k: m.get(k) for k in ("train_loss", "val_acc", "air", "rotations")
                     if m.get(k) is not None}
            bar.set_postfix({k: f"{v:.3f}" if isinstance(v, float) else v
                             for k, v in shown.items()})

        if not args.resume:
            metrics_file.write_text("")
        else:
            done = load_checkpoint(out / CHECKPOINT)["history"]
            metrics_file.write_text("".join(json.dumps(json_safe(h)) + "\n" for h in done))
            bar.update(sum(h["epoch"] >= 0 for h in done))
        (out / "config.yaml").write_text(yaml.safe_dump(cfg.to_dict(), sort_keys=False))
        result = fit(cfg, on_epoch_end, checkpoint_dir=out, resume=args.resume)
        bar.close()
        summary = dict(result.summary)
        if result.status == "finished":
            epoch = summary["best_val_epoch"]
            summary["diagnostics"], predictions = run_diagnostics(
                cfg, result.selected(), result.data, epoch)
            write_predictions(out / PREDICTIONS, predictions, epoch)
        summary["config"] = cfg.to_dict()
        write_json(out / "summary.json", summary)
    except (ValueError, FileNotFoundError) as e:  # ConfigError is a ValueError
        print(f"error: {e}", file=sys.stderr)
        return 2
    head = summary["test_acc_at_best_val"]
    line = (f"test acc at best val epoch {summary['best_val_epoch']} = {head:.4f} "
            f"(paper-style best test {summary['best_test_acc_paper_style']:.4f}); "
            if head is not None else "no completed epoch; ")
    print(f"{result.status}: {line}rotations {summary['rotations']}; "
          f"{summary['wall_seconds']:.1f} s; wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
