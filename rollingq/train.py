"""Training: ``fit(config, on_epoch_end) -> FitResult``, and the single-run CLI.

One epoch, top to bottom:
    1. shuffle the training split (seeded generator, saved in checkpoints)
    2. per batch: forward, fusion CE + one CE per detached probe (+ PMR's prototype CEs),
       backward (then OGM / OGM-GE modulate the encoder gradients), optimizer and lr step;
       losses, accuracies and the RollingQ statistics accumulate on the device (no host sync);
       with the published schedule one more lr step after the last batch
    3. epoch end: RollingQ (rolling.py) decides and maybe rotates the [cls] query
    4. evaluate on val and test (deterministic), select on val (the selected model's state is
       kept, and written to best.pt), checkpoint, call back

Before the first step the untrained model is evaluated once (epoch -1: validation and test
accuracy, F1, AIR, cosines, shares), so what training changes is observable from its start.
A run whose training loss turns NaN/inf stops with status ``diverged``. The end-of-run
diagnostics (``run_diagnostics``) run on the selected model, the one the headline reports.

CLI:  python -m rollingq.train [--config FILE] [--set key=value ...] [--out DIR] [--resume]
(``python -m rollingq.evaluate DIR`` re-evaluates a run's best.pt)
"""

from __future__ import annotations

import argparse
import copy
import io
import json
import logging
import math
import os
import sys
import time
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
import yaml

from rollingq import diagnostics
from rollingq.balancing import Balancer
from rollingq.checkpoints import (
    BEST,
    CHECKPOINT,
    load_checkpoint,
    rng_state,
    save_checkpoint,
    set_rng_state,
)
from rollingq.config import Config, ConfigError, build_config
from rollingq.data import DataBundle, Split, load_data
from rollingq.model import ModelOutput, MultimodalTransformer
from rollingq.pretrained import load_pretrained
from rollingq.rolling import EpochStats, rotate_if_needed

log = logging.getLogger(__name__)

DEVICE_DATA_SHARE = 0.25  # train.data_on_device=auto: resident when the data fit in this share
EVAL_BATCH = 256  # evaluation batches hold at least this many samples
PREDICTIONS = "predictions.npz"  # the selected model's clean test predictions, per sample

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


def resolve_device(name: str) -> torch.device:
    """``train.device`` as a device; CUDA with its index (the current device), which
    ``torch.cuda``'s per-device queries such as the memory fraction require."""
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cpu":
        return torch.device("cpu")
    if not torch.cuda.is_available():
        raise ConfigError("train.device='cuda' but no CUDA device is available; use auto or cpu")
    return torch.device("cuda", torch.cuda.current_device())


def uses_bf16(cfg: Config, device: torch.device) -> bool:
    """bf16 autocast with ``precision: bf16``, or ``auto`` on CUDA; fp32 otherwise."""
    p = cfg.train.precision
    return p == "bf16" or (p == "auto" and device.type == "cuda")


def autocast_for(cfg: Config, device: torch.device):
    """A context factory: bf16 autocast where ``uses_bf16``, else nothing (fp32)."""
    if uses_bf16(cfg, device):
        return lambda: torch.autocast(device.type, dtype=torch.bfloat16)
    return nullcontext


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


def make_optimizer(
    cfg: Config, model: torch.nn.Module, device: torch.device
) -> torch.optim.Optimizer:
    o = cfg.optim
    params = [p for p in model.parameters() if p.requires_grad]
    fused = {"fused": True} if device.type == "cuda" else {}
    if o.name == "sgd":
        return torch.optim.SGD(
            params, o.lr, momentum=o.momentum, weight_decay=o.weight_decay, **fused
        )
    cls = torch.optim.Adam if o.name == "adam" else torch.optim.AdamW
    return cls(params, o.lr, weight_decay=o.weight_decay, **fused)


def compiled_or_eager(model: torch.nn.Module, backend: str | Callable = "inductor") -> Callable:
    """``torch.compile(model)``, falling back to eager (with a warning) if compiling fails.

    Compilation happens lazily at the first call (and again for a new input shape), so the
    fallback wraps the call, not ``torch.compile`` itself. The backward graph is compiled within
    that call too (by default AOTAutograd compiles it at the first ``backward()``, where a
    failure would escape the fallback).
    """
    state = {"fn": torch.compile(model, backend=backend)}

    def forward(*args: Any) -> Any:
        if state["fn"] is model:
            return model(*args)
        try:
            with torch._functorch.config.patch(force_non_lazy_backward_lowering=True):
                return state["fn"](*args)
        except Exception as e:
            if not compiler_error(e):
                raise  # out of memory, bad data, a bug in the model: not the compiler's
            log.warning("torch.compile failed (%s: %s); training eagerly", type(e).__name__, e)
            state["fn"] = model
            return model(*args)

    return forward


def compiler_error(e: BaseException) -> bool:
    """Whether ``torch.compile`` itself failed (Dynamo could not trace, a backend could not
    compile), as opposed to an error the eager model would raise too: a runtime error found
    while tracing (``TorchRuntimeError``: wrong shapes, bad data) or an out-of-memory error,
    also when a compiler error wraps it."""
    from torch._dynamo.exc import TorchDynamoException, TorchRuntimeError

    chain, cause = [], e
    while cause is not None and len(chain) < 20:
        chain.append(cause)
        cause = cause.__cause__ or getattr(cause, "inner_exception", None)
    if any(isinstance(c, torch.OutOfMemoryError | TorchRuntimeError) for c in chain):
        return False
    return isinstance(e, TorchDynamoException)


def _losses(out: ModelOutput, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
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
    loss, probe_loss = _losses(out, labels)
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


def eval_batch_size(cfg: Config) -> int:
    """The batch size of every evaluation pass (the same in training and in the diagnostics,
    so a diagnostic's clean pass is the epoch's evaluation bit for bit)."""
    return max(cfg.train.batch_size, EVAL_BATCH)


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


@torch.no_grad()
def full_pass_stats(
    model: MultimodalTransformer, split: Split, batch_size: int, autocast
) -> EpochStats:
    """The published extra eval-mode pass over the training set (with its training transform)
    for the anchor means: the mean of the batch means, as published."""
    was_training = model.training
    model.eval()
    stats = EpochStats(model.modalities, len(model.rotations), per_batch=True)
    for b in split.batches(batch_size):
        with autocast():
            stats.add(model(b.batch()).fusion)
    model.train(was_training)
    return stats


def device_memory_budget(device: torch.device) -> int:
    """Bytes of ``device`` memory this process may use: the card's total times the process's
    memory fraction (a fractional-GPU trial's cap, see study/trainable.py)."""
    index = torch.cuda.current_device() if device.index is None else device.index
    total = torch.cuda.get_device_properties(index).total_memory
    fraction = torch.cuda.get_per_process_memory_fraction(index)  # needs an index
    return int(total * fraction)


def place(bundle: DataBundle, device: torch.device, on_device: str) -> DataBundle:
    """The bundle with its splits resident on ``device`` or streamed to it from the host.

    ``on_device``: ``always``, ``never``, or ``auto``: resident when the three splits take at most
    ``DEVICE_DATA_SHARE`` of the device memory the process may use (CREMA-D's ~4 GB on a whole or
    a quarter H100), otherwise streamed (Kinetics-Sounds' ~22 GB; several trials sharing a GPU).
    On CPU ``auto`` keeps the host arrays as they are (memory-mapped), which is resident.
    """
    if on_device == "auto":
        if device.type == "cpu":
            on_device = "always"
        else:
            budget = device_memory_budget(device)
            on_device = "always" if bundle.nbytes <= DEVICE_DATA_SHARE * budget else "never"
            log.info("data: %.2f GB, device budget %.2f GB -> %s", bundle.nbytes / 1e9,
                     budget / 1e9, "resident on the device" if on_device == "always"
                     else "streamed from the host, a batch at a time")
    move = (lambda s: s.to(device)) if on_device == "always" else (lambda s: s.stream_to(device))
    return DataBundle(bundle.specs, bundle.num_classes, move(bundle.train), move(bundle.val),
                      move(bundle.test), bundle.favoured)


CUBLAS_WORKSPACE = ":4096:8"  # the cuBLAS setting deterministic matrix products need


def set_deterministic(on: bool) -> None:
    """PyTorch's deterministic algorithms on or off for this process (``train.deterministic``;
    set at every run: a Ray worker trains trial after trial in one process). On, an op without
    a deterministic kernel raises a RuntimeError naming it; cuBLAS needs its workspace setting
    before its first use in the process, which ``CUBLAS_WORKSPACE_CONFIG`` gives (set here when
    unset, and by the study driver for its workers)."""
    if on:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", CUBLAS_WORKSPACE)
    torch.use_deterministic_algorithms(on)
    torch.backends.cudnn.deterministic = on


def _seed_everything(seed: int) -> None:
    torch.manual_seed(seed)
    if torch.cuda.is_available():
        torch.cuda.manual_seed_all(seed)


def fit(
    config: Config,
    on_epoch_end: Callable[[Metrics], Any] | None = None,
    checkpoint_dir: str | Path | None = None,
    resume: bool = False,
    data: DataBundle | None = None,
) -> FitResult:
    """Trains one model as configured.

    Args:
        config: A validated Config.
        on_epoch_end: Called with each epoch's flat metrics dict (after the checkpoint is written).
        checkpoint_dir: Where ``checkpoint.pt`` goes every ``train.checkpoint_every`` epochs.
        resume: Continue from ``checkpoint_dir/checkpoint.pt`` when it exists.
        data: An already loaded data set (otherwise ``load_data(config.data)``).

    Returns:
        A FitResult; ``status`` is ``diverged`` when the loss turned NaN/inf.
    """
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
    forward = compiled_or_eager(model) if t.compile else model
    optimizer = make_optimizer(config, model, device)
    n_train = len(bundle.train)
    steps_per_epoch = math.ceil(n_train / t.batch_size)
    total = steps_per_epoch * t.epochs
    warmup = config.optim.warmup_epochs * steps_per_epoch
    floor, schedule = config.optim.min_lr_ratio, config.optim.schedule
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: lr_factor(s, warmup, total, floor, schedule)
    )
    shuffle = torch.Generator().manual_seed(t.seed)
    history: list[Metrics] = []
    best = {"val_acc": -1.0, "epoch": -1, "test_acc": float("nan"), "best_test_acc": -1.0}
    best_state: dict[str, torch.Tensor] | None = None
    start_epoch = 0
    ckpt_path = Path(checkpoint_dir) / CHECKPOINT if checkpoint_dir else None
    if resume and ckpt_path is not None and ckpt_path.exists():
        state = load_checkpoint(ckpt_path)
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        shuffle.set_state(state["shuffle"])
        set_rng_state(state["rng"])
        if balancer is not None and state.get("balance"):
            balancer.load_state_dict(state["balance"])
        history, best, start_epoch = state["history"], state["best"], state["epoch"] + 1
        best_state = _resumed_best(state, ckpt_path)

    mods = model.modalities
    evaluate_splits = partial(_evaluate_splits, model, bundle, eval_batch_size(config),
                              autocast, config.data.name == "mosei")
    if not history:  # epoch -1: the untrained model, before the first step
        metrics = {"epoch": -1, **evaluate_splits(), "status": "running"}
        history.append(metrics)
        if on_epoch_end is not None:
            on_epoch_end(dict(metrics))
    stats = EpochStats(mods, len(model.rotations)) if model.rotations else None
    status = "finished"
    if history and history[-1].get("status") == "diverged":
        status, start_epoch = "diverged", t.epochs
    for epoch in range(start_epoch, t.epochs):
        began = time.perf_counter()
        model.train()
        order = torch.randperm(n_train, generator=shuffle).to(device)
        sums = torch.zeros(3 + len(mods), device=device)  # loss, probe loss, correct, probe correct
        if stats is not None:
            stats.reset()
        if balancer is not None:
            balancer.start_epoch(epoch, partial(bundle.train.batches, t.batch_size, order),
                                 steps_per_epoch, autocast, t.epochs)
        for b in bundle.train.batches(t.batch_size, order):
            out, loss, probe_loss = train_step(forward, optimizer, b.batch(), b.labels, autocast,
                                               balancer, config.optim.grad_clip)
            scheduler.step()
            with torch.no_grad():
                B = len(b)
                sums[0] += loss.detach() * B
                sums[1] += probe_loss.detach() * B
                sums[2] += (out.logits.argmax(1) == b.labels).sum()
                for i, m in enumerate(mods):
                    sums[3 + i] += (out.probe_logits[m].argmax(1) == b.labels).sum()
                if stats is not None:
                    stats.add(out.fusion)
        lr = optimizer.param_groups[0]["lr"]
        if schedule == "published":
            scheduler.step()  # the published loop steps once more at every epoch end
        s = (sums / n_train).tolist()  # the epoch's one host sync for training metrics
        metrics: Metrics = {
            "epoch": epoch,
            "lr": lr,
            "train_loss": s[0],
            "train_probe_loss": s[1],
            "train_acc": s[2],
        }
        metrics.update({f"train_probe_acc_{m}": s[3 + i] for i, m in enumerate(mods)})
        if balancer is not None:
            metrics.update(balancer.epoch_metrics())
        if not math.isfinite(s[0] + s[1]):
            status = "diverged"
            metrics["status"] = status
            history.append(metrics)
            if on_epoch_end is not None:
                on_epoch_end(dict(metrics))
            log.warning("epoch %d: training loss is %s; stopping (diverged)", epoch, s[0])
            break

        if stats is not None:
            events = rotate_if_needed(
                config.rollingq,
                model.rotations,
                stats,
                lambda: full_pass_stats(model, bundle.train, t.batch_size, autocast),
            )
            main = events[-1]
            metrics.update(
                {
                    "air": main.air,
                    "alpha": main.alpha,
                    "rotated": int(main.rotated),
                    "rotations": main.rotations,
                    "rotation_residual": main.residual,
                    "rotation_angle": main.angle,
                }
            )
            metrics.update({f"cos_{m}": c for m, c in zip(mods, main.cosines, strict=True)})
            for ev in events[:-1]:
                metrics.update(
                    {f"air_layer{ev.layer}": ev.air, f"rotations_layer{ev.layer}": ev.rotations}
                )

        metrics.update(evaluate_splits())
        if metrics["val_acc"] > best["val_acc"]:
            best.update(epoch=epoch, **{f"{k}": metrics[k] for k in SELECTED if k in metrics})
            best_state = {k: v.detach().to("cpu", copy=True)
                          for k, v in model.state_dict().items()}
            if checkpoint_dir is not None and t.keep_best:
                save_checkpoint(Path(checkpoint_dir) / BEST, {
                    "model": best_state, "epoch": epoch, "config": config.to_dict()})
        best["best_test_acc"] = max(best["best_test_acc"], metrics["test_acc"])
        seconds = time.perf_counter() - began
        metrics.update(
            {
                "best_val_acc": best["val_acc"],
                "best_val_epoch": best["epoch"],
                "test_acc_at_best_val": best["test_acc"],
                **{f"{k}_at_best_val": best[k] for k in SELECTED
                   if k not in ("val_acc", "test_acc") and k in best},
                "best_test_acc": best["best_test_acc"],
                "epoch_seconds": seconds,
                "samples_per_s": n_train / seconds,
                "status": "running",
            }
        )
        history.append(metrics)
        if (
            ckpt_path is not None
            and t.checkpoint_every
            and ((epoch + 1) % t.checkpoint_every == 0 or epoch + 1 == t.epochs)
        ):
            save_checkpoint(
                ckpt_path,
                {
                    "model": model.state_dict(),
                    "optimizer": optimizer.state_dict(),
                    "scheduler": scheduler.state_dict(),
                    "shuffle": shuffle.get_state(),
                    "rng": rng_state(),
                    "epoch": epoch,
                    "history": history,
                    "best": best,
                    # the selected model, when it is not the model above (resume needs it)
                    "best_model": best_state if best["epoch"] != epoch else None,
                    "balance": balancer.state_dict() if balancer is not None else None,
                    "config": config.to_dict(),
                },
            )
        if on_epoch_end is not None:
            on_epoch_end(dict(metrics))

    summary = summarize(status, history, model)
    return FitResult(status, history, summary, model, bundle, config, best_state)


# the metrics of the best validation epoch kept beside the selected model
SELECTED = ("val_acc", "val_f1", "test_acc", "test_f1", "test_binary_f1")


def _evaluate_splits(model: MultimodalTransformer, bundle: DataBundle, batch_size: int,
                     autocast, binary_f1: bool) -> Metrics:
    """``val_*`` and ``test_*`` metrics of the model as it is now."""
    out: Metrics = {}
    for name, split in (("val", bundle.val), ("test", bundle.test)):
        out.update({f"{name}_{k}": v for k, v in
                    evaluate(model, split, batch_size, autocast, binary_f1).items()})
    return out


def _resumed_best(state: dict[str, Any], ckpt_path: Path) -> dict[str, torch.Tensor] | None:
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
    path = ckpt_path.parent / BEST
    if path.exists() and (best := load_checkpoint(path))["epoch"] == epoch:
        return best["model"]
    raise ValueError(f"cannot resume {ckpt_path}: it selects epoch {epoch}, whose model is "
                     f"neither in it nor in {path}; start the run again without --resume")


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


def _json_safe(x: Any) -> Any:
    if isinstance(x, float) and not math.isfinite(x):
        return None
    if isinstance(x, dict):
        return {k: _json_safe(v) for k, v in x.items()}
    if isinstance(x, list | tuple):
        return [_json_safe(v) for v in x]
    return x


def write_json(path: Path, obj: Any) -> None:
    path.write_text(json.dumps(_json_safe(obj), indent=2) + "\n")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="python -m rollingq.train", description=__doc__.split("\n")[0]
    )
    ap.add_argument(
        "--config", help="YAML file nested by group (data, model, rollingq, optim, train)"
    )
    ap.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="dotted override, e.g. rollingq.beta=0.1 (repeatable)",
    )
    ap.add_argument("--out", help="output folder (default runs/<time>)")
    ap.add_argument("--resume", action="store_true", help="continue from OUT/checkpoint.pt")
    ap.add_argument("--quiet", action="store_true", help="no progress bar")
    args = ap.parse_args(argv)
    try:
        cfg = build_config(args.config, args.set)
        out = Path(args.out or f"runs/{time.strftime('%Y%m%d-%H%M%S')}")
        if args.resume and not (out / CHECKPOINT).exists():
            raise ConfigError(
                f"--resume: no {CHECKPOINT} in {out}; pass the --out of the run to resume"
            )
        out.mkdir(parents=True, exist_ok=True)
        from tqdm import tqdm

        bar = tqdm(total=cfg.train.epochs, disable=args.quiet, unit="epoch", file=sys.stderr)
        metrics_file = out / "metrics.jsonl"

        def on_epoch_end(m: Metrics) -> None:
            with metrics_file.open("a") as f:
                f.write(json.dumps(_json_safe(m)) + "\n")
            bar.update(int(m["epoch"] >= 0))  # epoch -1 is the untrained model
            shown = {
                k: m.get(k)
                for k in ("train_loss", "val_acc", "air", "rotations")
                if m.get(k) is not None
            }
            bar.set_postfix(
                {k: f"{v:.3f}" if isinstance(v, float) else v for k, v in shown.items()}
            )

        if not args.resume:
            metrics_file.write_text("")
        else:
            done = load_checkpoint(out / CHECKPOINT)["history"]
            metrics_file.write_text("".join(json.dumps(_json_safe(h)) + "\n" for h in done))
            bar.update(sum(h["epoch"] >= 0 for h in done))
        (out / "config.yaml").write_text(
            yaml.safe_dump(cfg.to_dict(), sort_keys=False)
        )
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
    except (ConfigError, ValueError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    head = summary["test_acc_at_best_val"]
    line = (
        f"test acc at best val epoch {summary['best_val_epoch']} = {head:.4f} "
        f"(paper-style best test {summary['best_test_acc_paper_style']:.4f}); "
        if head is not None
        else "no completed epoch; "
    )
    print(
        f"{result.status}: {line}rotations {summary['rotations']}; "
        f"{summary['wall_seconds']:.1f} s; wrote {out}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
