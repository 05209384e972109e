"""Training throughput: samples/s, model-FLOPs utilisation and peak memory of one training step.

A step is the one ``fit`` runs (``rollingq.train.train_step``: forward, fusion CE + the probes'
CEs, backward, optimizer step) plus the RollingQ statistics it accumulates, on random inputs at
the shapes of a data set, attention fusion with RollingQ. The figure is the median over
``--steps`` steps after ``--warmup`` steps, compared with ../shared/PERF.md (one H100):

    shapes            reference (samples/s)
    cremad            published fp32 243; published bf16 + compile 1,102; lean sketch 1,985
    kinetics_sounds   published fp32 166
    small             none (a CPU-sized model so this script runs anywhere, CI included)

MFU = samples/s x training FLOPs a sample (``torch.utils.flop_counter``) / peak FLOP/s, with the
peak of PERF.md (790 TFLOP/s dense bf16 on the H100) on CUDA; on CPU no peak is known and MFU
is not printed. Examples:

    python bench/train_throughput.py --shapes small                  # CPU, seconds
    python bench/train_throughput.py --shapes cremad kinetics_sounds --device cuda
"""

from __future__ import annotations

import argparse
import resource
import statistics
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from rollingq.config import Config, ModelConfig, TrainConfig  # noqa: E402
from rollingq.data.base import ModalitySpec  # noqa: E402
from rollingq.diagnostics import cremad_shapes, flops_per_sample  # noqa: E402
from rollingq.model import MultimodalTransformer  # noqa: E402
from rollingq.rolling import EpochStats  # noqa: E402
from rollingq.train import (  # noqa: E402
    autocast_for,
    make_optimizer,
    resolve_device,
    train_step,
    uses_bf16,
)

PEAK_FLOPS = {"cuda": 790e12}  # PERF.md: dense bf16 on the H100
SHAPES: dict[str, tuple[dict[str, ModalitySpec], int, ModelConfig]] = {
    "cremad": (cremad_shapes(), 6, ModelConfig()),
    "kinetics_sounds": (
        {"audio": ModalitySpec("spectrogram", (1024, 128)),
         "visual": ModalitySpec("frames", (3, 3, 224, 224))}, 31, ModelConfig()),
    "small": (
        {"audio": ModalitySpec("spectrogram", (64, 48)),
         "visual": ModalitySpec("frames", (2, 3, 32, 32))}, 6,
        ModelConfig(dim=64, depth=1, heads=4)),
}
REFERENCES = {
    "cremad": {"published fp32": 243, "published bf16+compile": 1102, "lean sketch": 1985},
    "kinetics_sounds": {"published fp32": 166},
}


def peak_memory_gib(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**30
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # KiB -> GiB, whole process


def measure(name: str, args: argparse.Namespace) -> str:
    specs, classes, model_cfg = SHAPES[name]
    cfg = Config(model=model_cfg, train=TrainConfig(device=args.device, precision=args.precision,
                                                    compile=args.compile))
    device = resolve_device(args.device)
    torch.manual_seed(0)
    model = MultimodalTransformer(specs, classes, model_cfg).to(device).train()
    optimizer = make_optimizer(cfg, model, device)
    autocast = autocast_for(cfg, device)
    forward = torch.compile(model) if args.compile else model
    B = args.batch
    inputs = {m: torch.randn(B, *s.shape, device=device) for m, s in specs.items()}
    labels = torch.randint(0, classes, (B,), device=device)
    stats = EpochStats(model.modalities, len(model.rotations))
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    times = []
    for i in range(args.warmup + args.steps):
        began = time.perf_counter()
        out, _, _ = train_step(forward, optimizer, inputs, labels, autocast)
        stats.add(out.fusion)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        if i >= args.warmup:
            times.append(time.perf_counter() - began)
    rate = B / statistics.median(times)
    flops = flops_per_sample(model, {m: x[:2] for m, x in inputs.items()}, train_step=True)
    peak = PEAK_FLOPS.get(device.type)
    mfu = f"MFU {rate * flops / peak:.1%}" if peak else "MFU n/a on CPU"
    precision = "bf16" if uses_bf16(cfg, device) else "fp32"
    refs = ", ".join(f"x{rate / v:.2f} of {k} ({v:,})" for k, v in REFERENCES.get(name, {}).items())
    return (f"{name} {device.type} {precision}{' compiled' if args.compile else ''} batch {B}: "
            f"{rate:,.1f} samples/s, {flops / 1e9:.2f} GFLOP a sample, {mfu}, "
            f"peak memory {peak_memory_gib(device):.2f} GiB; {refs or 'no reference figure'}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--shapes", nargs="+", default=["small"], choices=list(SHAPES))
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    ap.add_argument("--precision", default="auto", choices=["auto", "fp32", "bf16"])
    ap.add_argument("--compile", action="store_true")
    args = ap.parse_args(argv)
    for name in args.shapes:
        print(measure(name, args), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
