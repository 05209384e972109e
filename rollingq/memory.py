"""Peak device memory of one training step, estimated before a GPU is involved.

    python -m rollingq.memory [--config FILE] [--set key=value ...] [--device-gib G]

prints one line: the estimate and its parts; with ``--device-gib`` it exits 3 when the step does
not fit in G GiB, naming the fixes. The study driver runs the same estimate for each trial's GPU
share before any trial starts.

The parts of the estimate, all in bytes on the training device:

    weights      every parameter and buffer (fp32)
    gradients    every trainable parameter (fp32)
    optimizer    SGD with momentum 1x the trainable parameters, Adam(W) 2x (fp32)
    activations  what the forward pass saves for the backward at the batch size and precision
                 (bf16 autocast on CUDA unless train.precision says otherwise), measured by
                 running the training forward and losses under fake tensors
                 (``torch._subclasses.FakeTensorMode``: shapes and dtypes, no data, no compute)
                 with ``torch.autograd.graph.saved_tensors_hooks`` counting each saved storage
                 once; with train.activation_checkpointing the encoder blocks keep only their
                 inputs, plus the recomputation of one block at a time in the backward pass
    data         the three splits when they sit on the device (train.data_on_device: always,
                 or auto when they take at most a quarter of the device memory)
    evaluation   the peak of the tensors alive at once in an evaluation forward (no grad) at
                 the evaluation batch (``train.eval_batch_size``; by default 256 or the training
                 batch if larger), its input batch included, measured under fake tensors by
                 following every tensor an op makes until it is freed; it runs every epoch
                 while the gradients and the optimizer state are held, so it replaces the
                 activations in the sum when it is larger

The sum is the peak of one step up to the allocator's transient buffers (the gradient of the
largest activation while the backward runs) and the CUDA context, which
``torch.cuda.max_memory_allocated`` does not count either. The fake forward dispatches as the
CPU does (its fused attention saves the same output and log-sum-exp as CUDA's flash kernel);
its bf16 autocast casts the same matmuls as CUDA's.

How to read and use the estimate: docs/memory.md.
"""

from __future__ import annotations

import argparse
import math
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from rollingq.config import Config, ConfigError, DataConfig, build_config, parse_override
from rollingq.data.base import ModalitySpec
from rollingq.device import DEVICE_DATA_SHARE

GIB = 2**30
# A trial on a GPU share: the CUDA context of its process lies outside the memory cap the
# trainable sets (study/trainable.py), so the cap is the share less this; and the cap limits
# the allocator's reserved memory, which exceeds the allocated memory the estimate counts by
# its fragmentation, so a trial is sized at this factor times its estimate. Both from the GPU
# readiness review's reading of CUDA 12 and PyTorch's allocator (0.4-0.6 GiB a context, 5-20 %
# fragmentation), to be measured by bench/gpu.sh.
CUDA_CONTEXT_BYTES = int(0.75 * GIB)
RESERVED_FACTOR = 1.15


@dataclass
class Estimate:
    """One training step's device memory, in bytes."""

    weights: int
    gradients: int
    optimizer: int
    activations: int
    data: int
    batch: int
    precision: str
    checkpointing: bool
    data_note: str = ""  # why the data are not counted, when they would be
    evaluation: int = 0  # the evaluation forward's live peak
    eval_batch: int = 0

    @property
    def total(self) -> int:
        return (self.weights + self.gradients + self.optimizer + self.data
                + max(self.activations, self.evaluation))

    def line(self) -> str:
        parts = (f"weights {size(self.weights)}, gradients {size(self.gradients)}, optimizer "
                 f"{size(self.optimizer)}, activations {size(self.activations)} (batch "
                 f"{self.batch}, {self.precision}"
                 f"{', checkpointed' if self.checkpointing else ''}), evaluation forward "
                 f"{size(self.evaluation)} (batch {self.eval_batch}), data {size(self.data)}"
                 f"{' (' + self.data_note + ')' if self.data_note else ''}")
        return f"estimated peak device memory of a training step: {size(self.total)} ({parts})"


def size(n: int) -> str:
    """Bytes as GiB (two decimals), or MiB below one GiB."""
    return f"{n / GIB:.2f} GiB" if n >= GIB else f"{n / 2**20:.1f} MiB"


def saved_bytes(model: torch.nn.Module, inputs: dict[str, torch.Tensor], labels: torch.Tensor,
                bf16: bool) -> int:
    """Bytes of the distinct storages the training forward and losses save for backward,
    parameters excluded (they are counted as weights)."""
    from rollingq.train import losses

    saved: dict[int, int] = {}

    def pack(t: torch.Tensor) -> torch.Tensor:
        storage = t.untyped_storage()
        saved.setdefault(storage._cdata, storage.nbytes())
        return t

    with torch.autocast("cpu", torch.bfloat16, enabled=bf16), \
            torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        fusion, probes = losses(model(inputs), labels)
        _ = fusion + probes
    params = {p.untyped_storage()._cdata for p in model.parameters()}
    return sum(n for key, n in saved.items() if key not in params)


def activation_bytes(specs: dict[str, ModalitySpec], num_classes: int, cfg: Config,
                     batch: int, bf16: bool) -> int:
    """What one training step keeps for its backward pass, under fake tensors (no compute)."""
    from torch._subclasses.fake_tensor import FakeTensorMode

    from rollingq.model import MultimodalTransformer

    def run(checkpointing: bool) -> int:
        with FakeTensorMode():
            model = MultimodalTransformer(specs, num_classes, cfg.model).train()
            model.set_activation_checkpointing(checkpointing)
            inputs = {m: torch.empty(batch, *s.shape) for m, s in specs.items()}
            labels = torch.zeros(batch, dtype=torch.long)
            return saved_bytes(model, inputs, labels, bf16)

    full = run(False)
    if not cfg.train.activation_checkpointing or cfg.model.depth == 0:
        return full
    kept = run(True)
    # plus one block's recomputation in the backward pass: (full - kept) / depth is one block
    # of every stream, while the streams' blocks recompute one after another (an over-estimate
    # by the smaller streams' blocks: the safe side)
    return kept + (full - kept) // cfg.model.depth


def evaluation_bytes(specs: dict[str, ModalitySpec], num_classes: int, cfg: Config,
                     batch: int, bf16: bool) -> int:
    """The most bytes alive at once in an evaluation forward (eval mode, no grad) at ``batch``,
    its inputs included and the weights not, under fake tensors: every tensor an op makes is
    followed (by a weak reference) until it is freed."""
    import weakref

    from torch._subclasses.fake_tensor import FakeTensorMode
    from torch.utils._python_dispatch import TorchDispatchMode
    from torch.utils._pytree import tree_leaves

    from rollingq.model import MultimodalTransformer

    class Live(TorchDispatchMode):
        def __init__(self, skip: set[int]):
            super().__init__()
            self.skip, self.alive, self.peak = skip, {}, 0

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            out = func(*args, **(kwargs or {}))
            for key in list(self.alive):  # first: a freed storage's address can come again
                refs = self.alive[key][1]
                refs[:] = [r for r in refs if r() is not None]
                if not refs:
                    del self.alive[key]
            for t in tree_leaves(out):
                if isinstance(t, torch.Tensor):
                    key = t.untyped_storage()._cdata
                    if key not in self.skip:
                        refs = self.alive.setdefault(key, [t.untyped_storage().nbytes(), []])[1]
                        refs.append(weakref.ref(t))
            self.peak = max(self.peak, sum(v[0] for v in self.alive.values()))
            return out

    with FakeTensorMode():
        model = MultimodalTransformer(specs, num_classes, cfg.model).eval()
        inputs = {m: torch.empty(batch, *s.shape) for m, s in specs.items()}
        skip = {p.untyped_storage()._cdata for p in [*model.parameters(), *model.buffers()]}
        live = Live(skip)
        with torch.no_grad(), torch.autocast("cpu", torch.bfloat16, enabled=bf16), live:
            model(inputs)
    return live.peak + sum(x.numel() * x.element_size() for x in inputs.values())


_BUNDLES: dict[str, Any] = {}  # data config -> its loaded bundle: a study's trials share data


def _bundle(data: DataConfig) -> Any:
    """The data set, loaded once per data config (synthetic, features, MOSEI)."""
    from rollingq.data import load_data

    key = repr(data)
    if key not in _BUNDLES:
        _BUNDLES[key] = load_data(data)
    return _BUNDLES[key]


def model_specs(data: DataConfig) -> tuple[dict[str, ModalitySpec], int]:
    """The model's input specs and classes of a data set, without decoding it where the shapes
    are fixed (CREMA-D, Kinetics-Sounds); otherwise from the data set itself."""
    from rollingq.data import clips, cremad, kinetics_sounds

    if data.name in ("cremad", "kinetics_sounds"):
        audio = cremad.SPEC_SHAPE if data.name == "cremad" else kinetics_sounds.FBANK_SHAPE
        if data.name == "cremad" and data.audio_format != "wav" and Path(data.root).is_dir():
            listed, _, fmt = cremad.list_clips(data)  # the BalanceBench .pt copy has its own
            if fmt == "pt":
                audio = cremad.pt_spectrogram(listed["train"][0].audio).shape
        shapes = {"audio": ModalitySpec("spectrogram", tuple(audio)),
                  "visual": ModalitySpec("frames", (3, 3, data.frame_size, data.frame_size))}
        mods = clips.select_modalities(data.name, data, ("audio", "visual"), ("audio", "visual"))
        classes = len(cremad.CLASSES) if data.name == "cremad" else kinetics_sounds.NUM_CLASSES
        return {m: shapes[m] for m in mods}, classes
    bundle = _bundle(data)
    return bundle.specs, bundle.num_classes


def data_bytes(data: DataConfig) -> int:
    """Bytes the three splits take when placed on the device (as ``DataBundle.nbytes``; the
    clip data sets counted from their lists and the cache layout, without decoding)."""
    from rollingq.data import cremad, kinetics_sounds

    if data.name not in ("cremad", "kinetics_sounds"):
        return _bundle(data).nbytes
    module = cremad if data.name == "cremad" else kinetics_sounds
    splits = module.list_clips(data)[0]
    specs, _ = model_specs(data)
    audio = 2 * math.prod(specs["audio"].shape) if "audio" in specs else 0  # float16
    frame = 3 * data.decode_size**2  # uint8
    total = 0
    for name, clip_list in splits.items():
        stored = max((len(c.frames) for c in clip_list), default=0)
        total += len(clip_list) * (audio + stored * frame + 3 * 4 + 8)
        if name == "train":  # validation is gathered from train at 3 frames
            total += int(data.val_fraction * len(clip_list)) * (audio + 3 * frame)
    return total


def estimate(cfg: Config, device_bytes: int | None = None,
             specs: tuple[dict[str, ModalitySpec], int] | None = None) -> Estimate:
    """The estimate for ``cfg`` on a CUDA device of ``device_bytes`` (None: unknown, then
    ``data_on_device: auto`` counts the data only when ``always``)."""
    from rollingq.model import MultimodalTransformer

    t = cfg.train
    bf16 = t.precision == "bf16" or (t.precision == "auto" and t.device != "cpu")
    specs_, classes = specs or model_specs(cfg.data)
    with torch.device("meta"):
        model = MultimodalTransformer(specs_, classes, cfg.model)
    weights = sum(p.numel() * p.element_size() for p in model.parameters()) + sum(
        b.numel() * b.element_size() for b in model.buffers())
    trainable = sum(p.numel() * 4 for p in model.parameters() if p.requires_grad)
    o = cfg.optim
    states = {"adam": 2, "adamw": 2}.get(o.name, 1 if o.momentum > 0 else 0)
    activations = activation_bytes(specs_, classes, cfg, t.batch_size, bf16)
    from rollingq.evaluate import eval_batch_size

    eval_batch = eval_batch_size(cfg)
    evaluation = evaluation_bytes(specs_, classes, cfg, eval_batch, bf16)
    data, note = 0, ""
    if t.data_on_device == "always" or (t.data_on_device == "auto" and device_bytes):
        if cfg.data.name in ("cremad", "kinetics_sounds") and not Path(cfg.data.root).is_dir():
            note = f"not counted: data.root={cfg.data.root!r} is not here"
        else:
            data = data_bytes(cfg.data)
            if t.data_on_device == "auto" and data > DEVICE_DATA_SHARE * device_bytes:
                data, note = 0, "streamed from the host: more than a quarter of the device"
    elif t.data_on_device == "auto":
        note = "not counted: the device size decides (pass --device-gib)"
    return Estimate(weights, trainable, states * trainable, activations, data, t.batch_size,
                    "bf16" if bf16 else "fp32", t.activation_checkpointing, note, evaluation,
                    eval_batch)


def fixes(cfg: Config, est: Estimate, device_bytes: int) -> str:
    """What would make the step fit, for the error message."""
    out = [f"a smaller train.batch_size (now {cfg.train.batch_size})"]
    if est.evaluation > est.activations:
        out.insert(0, f"a smaller train.eval_batch_size (now {est.eval_batch}; the evaluation "
                      f"forward is the peak)")
    if not cfg.train.activation_checkpointing:
        out.append("train.activation_checkpointing=true")
    if est.precision == "fp32":
        out.append("train.precision=bf16")
    if est.data:
        out.append("train.data_on_device=never")
    out.append("a larger GPU share (--gpus-per-trial) or a larger GPU")
    return "; ".join(out)


def share_cap(share: float, total: int) -> int:
    """The memory cap of a trial on ``share`` of a GPU of ``total`` bytes: its share less a CUDA
    context, which lies outside the cap (never below a tenth of the share)."""
    return max(int(share * total) - CUDA_CONTEXT_BYTES, int(0.1 * share * total))


def check_fits(cfg: Config, device_bytes: int, specs: Any = None,
               reserved: float = 1.0) -> Estimate:
    """The estimate, or a ValueError of one line when it (times ``reserved``, the allocator's
    reserved memory over the allocated memory the estimate counts) exceeds ``device_bytes``."""
    est = estimate(cfg, device_bytes, specs)
    if reserved * est.total > device_bytes:
        room = (f" with {reserved - 1:.0%} for the allocator's fragmentation"
                if reserved > 1 else "")
        raise ValueError(f"does not fit: {est.line()}{room} > {size(device_bytes)} available; "
                         f"fixes: {fixes(cfg, est, device_bytes)}")
    return est


@dataclass
class Measured:
    """What the estimate predicts, measured on a CUDA device (``measure``), in bytes."""

    step: int  # max_memory_allocated over a training step, the optimizer's state made
    evaluation: int  # max_memory_allocated over the evaluation forward that follows it
    reserved: int  # max_memory_reserved over both: what a share's cap limits

    @property
    def peak(self) -> int:  # what ``Estimate.total`` stands for
        return max(self.step, self.evaluation)


def measure(cfg: Config, specs: dict[str, ModalitySpec], num_classes: int) -> Measured:
    """A real training step and evaluation forward on the CUDA device at ``cfg``'s batches and
    precision, the model built as ``fit`` builds it (activation checkpointing included) and the
    data not resident: the figures the estimate stands for. Raises ``torch.OutOfMemoryError``
    when they do not fit (under a cap, ``torch.cuda.set_per_process_memory_fraction``)."""
    from rollingq.device import autocast_for
    from rollingq.evaluate import eval_batch_size
    from rollingq.model import MultimodalTransformer
    from rollingq.train import make_optimizer, train_step

    device = torch.device("cuda")
    torch.manual_seed(0)
    model = MultimodalTransformer(specs, num_classes, cfg.model)
    model.set_activation_checkpointing(cfg.train.activation_checkpointing)
    model.to(device).train()
    optimizer = make_optimizer(cfg, model, device)
    autocast = autocast_for(cfg, device)

    def batch(n: int) -> dict[str, torch.Tensor]:
        return {m: torch.randn(n, *s.shape, device=device) for m, s in specs.items()}

    inputs = batch(cfg.train.batch_size)
    labels = torch.randint(0, num_classes, (cfg.train.batch_size,), device=device)
    train_step(model, optimizer, inputs, labels, autocast)  # the optimizer's state exists now
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    train_step(model, optimizer, inputs, labels, autocast)
    torch.cuda.synchronize()
    step, reserved = torch.cuda.max_memory_allocated(), torch.cuda.max_memory_reserved()
    evaluation_inputs = batch(eval_batch_size(cfg))
    torch.cuda.reset_peak_memory_stats()
    model.eval()
    with torch.no_grad(), autocast():
        model(evaluation_inputs)
    torch.cuda.synchronize()
    out = Measured(step, torch.cuda.max_memory_allocated(),
                   max(reserved, torch.cuda.max_memory_reserved()))
    del model, optimizer, inputs, evaluation_inputs
    torch.cuda.empty_cache()
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m rollingq.memory",
                                 description=__doc__.split("\n")[0])
    ap.add_argument("--config", help="YAML file nested by group")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                    help="dotted override, e.g. train.batch_size=32 (repeatable)")
    ap.add_argument("--device-gib", type=float, metavar="G",
                    help="device memory available to the trial (GiB): exit 3 when it does not fit")
    args = ap.parse_args(argv)
    try:
        overrides = dict(parse_override(s) for s in args.set)
        cfg = build_config(Path(args.config) if args.config else None, overrides)
        device = int(args.device_gib * GIB) if args.device_gib else None
        if device is not None and device <= 0:
            raise ConfigError(f"`--device-gib > 0` must hold, but got {args.device_gib}")
        est = check_fits(cfg, device) if device else estimate(cfg)
    except (ConfigError, ValueError, FileNotFoundError) as e:
        message = str(e)
        print(f"error: {message}", file=sys.stderr)
        return 3 if message.startswith("does not fit") else 2
    print(est.line() + (f"; fits in {args.device_gib:g} GiB" if args.device_gib else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
