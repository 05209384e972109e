"""Training throughput: samples/s, model-FLOPs utilisation and peak memory of one training step.

A step is the one ``fit`` runs (``rollingq.train.train_step``: forward, fusion CE + the probes'
CEs, backward, optimizer step) plus the RollingQ statistics it accumulates, on random inputs at
the shapes of a data set, attention fusion with RollingQ. The figure is the median of 3 runs
of ``--steps`` steps (no host sync between steps, as in ``fit``) after ``--warmup`` steps,
compared with the reference figures we were given (one H100):

    shapes            reference (samples/s)
    cremad            published fp32 243; published bf16 + compile 1,102; lean sketch 1,985
    kinetics_sounds   published fp32 166
    small             none (a CPU-sized model so this script runs anywhere, CI included)

MFU = samples/s x training FLOPs a sample (``torch.utils.flop_counter``) / peak FLOP/s, with the
reference's measured peak (790 TFLOP/s dense bf16 on the H100) on CUDA; on CPU no peak is
known and MFU is not printed. ``--rollingq-cost`` also times the step without RollingQ's
running statistics and the published extra full pass (an eval forward a batch);
``--balance-cost`` times the step with OGM-GE and with PMR against one without, and PMR's
prototype pass; ``--end-to-end CLIPS``
trains from a CREMA-D-shaped data set on disk through the cache and the train transform, as
``fit`` does, and gives its rate as a share of the model-only rate. ``--fusions`` times other
fusions than attention (Table 4's MBT, MMML and JMT, MulT), one line each. Examples:

    python bench/train_throughput.py --shapes small --rollingq-cost    # CPU, seconds
    python bench/train_throughput.py --shapes small --balance-cost     # CPU, seconds
    python bench/train_throughput.py --shapes small --fusions attn concat mbt mmml jmt mult
    python bench/train_throughput.py --shapes cremad kinetics_sounds --device cuda --compile \
        --rollingq-cost
    python bench/train_throughput.py --shapes cremad --device cuda --compile --end-to-end 2000
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
for path in (ROOT, ROOT / "bench"):
    if str(path) not in sys.path:
        sys.path.insert(0, str(path))

from rollingq.balancing import Balancer  # noqa: E402
from rollingq.config import (  # noqa: E402
    BALANCE_FUSIONS,
    BalanceConfig,
    Config,
    ModelConfig,
    TrainConfig,
)
from rollingq.data.base import ModalitySpec, Split  # noqa: E402
from rollingq.device import (  # noqa: E402
    CUBLAS_WORKSPACE,
    autocast_for,
    compiled_or_eager,
    resolve_device,
    set_deterministic,
    uses_bf16,
)
from rollingq.diagnostics import cremad_shapes, flops_per_sample  # noqa: E402
from rollingq.model import MultimodalTransformer  # noqa: E402
from rollingq.rolling import EpochStats  # noqa: E402
from rollingq.train import make_optimizer, train_step  # noqa: E402

PEAK_FLOPS = {"cuda": 790e12}  # the reference's measured dense bf16 peak of the H100
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


def end_to_end_batches(args: argparse.Namespace, device: torch.device, batch: int):
    """Training batches from a CREMA-D-shaped data set on disk, decoded once into the cache and
    placed as ``fit`` places it (``train.data_on_device=auto``), through the train transform."""
    from data_throughput import write_dataset

    from rollingq.config import build_config
    from rollingq.data import cremad, load_data
    from rollingq.device import place

    root = Path(args.work) / "CREMA-D"
    if not (root / "train.csv").exists():
        write_dataset(root, args.end_to_end)
    cfg = build_config(overrides={"data.name": "cremad", "data.root": str(root),
                                  "data.cache_dir": str(Path(args.work) / "cache")})
    cremad.prepare(cfg.data, progress=False)
    split = place(load_data(cfg.data), device, "auto").train
    g = torch.Generator().manual_seed(0)
    while True:
        order = torch.randperm(len(split), generator=g).to(split.labels.device)
        for b in split.batches(batch, order):
            if len(b) == batch:
                yield b.batch(), b.labels


def timed(fn, steps: int, warmup: int, device: torch.device, rounds: int = 3) -> float:
    """Seconds a call of ``fn()``: the median over ``rounds`` runs of ``steps`` calls, after
    ``warmup`` calls. As in ``fit``, nothing waits for the device between calls (a CUDA step's
    launches overlap the previous step's kernels); each run ends by waiting for it."""

    def wait() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    for _ in range(warmup):
        fn()
    wait()
    times = []
    for _ in range(rounds):
        began = time.perf_counter()
        for _ in range(steps):
            fn()
        wait()
        times.append((time.perf_counter() - began) / steps)
    return statistics.median(times)


def balance_cost(model, forward, optimizer, inputs, labels, autocast, args) -> str:
    """The per-step overhead of OGM-GE and PMR (a training step with the method against one
    without, interleaved), and PMR's prototype pass (eval forwards over 10 % of an epoch)."""
    device, classes = labels.device, model.probes[model.modalities[0]].out_features
    batch = Split(inputs, labels)
    times = {"plain": []}

    def run(balancer: Balancer | None) -> float:
        return timed(lambda: train_step(forward, optimizer, inputs, labels, autocast, balancer),
                     args.steps, args.warmup, device)

    balancers = {}
    for method in ("ogm_ge", "pmr"):
        b = Balancer(BalanceConfig(method=method), model, classes)
        b.start_epoch(0, lambda: iter([batch]), 1, autocast, 1)
        balancers[method] = b
    for _ in range(2):  # interleaved, so drift shows up in both
        times["plain"].append(run(None))
        for method, b in balancers.items():
            times.setdefault(method, []).append(run(b))
    mean = {k: statistics.fmean(v) for k, v in times.items()}
    # OGM-GE's own work, timed alone (the step difference above is within this CPU's noise):
    # after a backward, the scores, the coefficients, k g and the noise on every encoder tensor
    ogm = balancers["ogm_ge"]
    with autocast():
        out = model(inputs)
    out.logits.float().sum().backward()
    alone = timed(lambda: ogm.modulate(out, labels), args.steps, args.warmup, device)
    pmr = balancers["pmr"]
    proto = timed(lambda: pmr.start_epoch(0, lambda: iter([batch]), 1, autocast, 1), args.steps,
                  args.warmup, device)
    share = pmr.cfg.prototype_fraction * proto / mean["pmr"]
    over = {k: 100 * (mean[k] / mean["plain"] - 1) for k in ("ogm_ge", "pmr")}
    return (f"balancing cost: OGM-GE {over['ogm_ge']:+.2f} % of a step, PMR {over['pmr']:+.2f} % "
            f"({1e3 * mean['ogm_ge']:.2f} and {1e3 * mean['pmr']:.2f} vs {1e3 * mean['plain']:.2f}"
            f" ms without); OGM-GE's modulation alone {1e3 * alone:.2f} ms, "
            f"{100 * alone / mean['plain']:.1f} % of a step; PMR's prototype pass adds "
            f"{100 * share:.1f} % of an epoch at every epoch start ({1e3 * proto:.2f} ms a batch, "
            f"on 10 % of the batches)")


# The fusions --fusions times, as Table 4 builds them (attn is Vanilla MT with RollingQ).
FUSIONS: dict[str, dict] = {
    "attn": {}, "concat": {}, "mbt": {"fusion_layers": 4}, "mmml": {"fusion_layers": 1},
    "jmt": {"fusion_layers": 2}, "mult": {}, "mult_attn": {"fusion": "mult", "readout": "attn"},
}


def measure(name: str, args: argparse.Namespace, fusion: str = "attn") -> list[str]:
    specs, classes, model_cfg = SHAPES[name]
    model_cfg = dataclasses.replace(model_cfg, **{"fusion": fusion, **FUSIONS[fusion]})
    cfg = Config(model=model_cfg, train=TrainConfig(device=args.device, precision=args.precision,
                                                    compile=args.compile))
    device = resolve_device(args.device)
    torch.manual_seed(0)
    model = MultimodalTransformer(specs, classes, model_cfg).to(device).train()
    optimizer = make_optimizer(cfg, model, device)
    autocast = autocast_for(cfg, device)
    forward = compiled_or_eager(model) if args.compile else model
    B = args.batch
    inputs = {m: torch.randn(B, *s.shape, device=device) for m, s in specs.items()}
    labels = torch.randint(0, classes, (B,), device=device)
    stats = EpochStats(model.modalities, len(model.rotations))
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)

    def step() -> None:  # what fit runs a batch with RollingQ's running statistics
        out, _, _ = train_step(forward, optimizer, inputs, labels, autocast)
        stats.add(out.fusion)

    seconds = timed(step, args.steps, args.warmup, device)
    rate = B / seconds
    flops = flops_per_sample(model, {m: x[:2] for m, x in inputs.items()}, train_step=True)
    peak = PEAK_FLOPS.get(device.type)
    mfu = (f"MFU {rate * flops / peak:.1%} (of the reference's measured {peak / 1e12:.0f} "
           "TFLOP/s bf16 matmul rate, not the datasheet's)" if peak else "MFU n/a on CPU")
    precision = "bf16" if uses_bf16(cfg, device) else "fp32"
    refs = ", ".join(f"x{rate / v:.2f} of {k} ({v:,})" for k, v in REFERENCES.get(name, {}).items())
    mode = "" if not args.compile else (" compiled" if forward.fell_back is None
                                        else " eager (compile fell back)")
    label = (f"{name}{'' if fusion == 'attn' else ' ' + fusion} {device.type} {precision}"
             f"{mode} batch {B}")
    lines = [f"{label}: {rate:,.1f} samples/s, {flops / 1e9:.2f} GFLOP a sample, {mfu}, "
             f"peak memory {peak_memory_gib(device):.2f} GiB; {refs or 'no reference figure'}"]
    if args.rollingq_cost and model.rotations:
        plain = timed(lambda: train_step(forward, optimizer, inputs, labels, autocast),
                      args.steps, args.warmup, device)
        again = timed(step, args.steps, args.warmup, device)  # interleaved: drift shows up

        @torch.no_grad()
        def full_pass_batch() -> None:  # the published extra pass: an eval forward a batch
            model.eval()
            with autocast():
                stats.add(model(inputs).fusion)
            model.train()

        extra = timed(full_pass_batch, args.steps, args.warmup, device)
        with_stats = (seconds + again) / 2
        lines.append(
            f"{label} RollingQ cost: running statistics {100 * (with_stats / plain - 1):+.2f} % "
            f"of a step ({1e3 * with_stats:.2f} vs {1e3 * plain:.2f} ms without); the published "
            f"full pass adds {100 * extra / with_stats:.1f} % of an epoch at each epoch end it "
            f"runs ({1e3 * extra:.2f} ms a batch)")
    if args.deterministic_cost:
        set_deterministic(True)
        det = timed(step, args.steps, args.warmup, device)
        set_deterministic(False)
        again = timed(step, args.steps, args.warmup, device)  # interleaved: drift shows up
        plain = (seconds + again) / 2
        lines.append(f"{label} train.deterministic cost: {100 * (det / plain - 1):+.2f} % of a "
                     f"step ({1e3 * det:.2f} vs {1e3 * plain:.2f} ms without)")
    if args.balance_cost and model_cfg.fusion in BALANCE_FUSIONS:
        cost = balance_cost(model, forward, optimizer, inputs, labels, autocast, args)
        lines.append(f"{label} {cost}")
    if args.end_to_end:
        if name != "cremad":
            raise SystemExit(f"--end-to-end reads a CREMA-D-shaped data set; got --shapes {name}")
        batches = end_to_end_batches(args, device, B)

        def real_step() -> None:
            x, y = next(batches)
            out, _, _ = train_step(forward, optimizer, x, y, autocast)
            stats.add(out.fusion)

        e2e = B / timed(real_step, args.steps, args.warmup, device)
        lines.append(f"{label} end to end (cache + transform + step, {args.end_to_end} clips): "
                     f"{e2e:,.1f} samples/s, {100 * e2e / rate:.1f} % of the model-only rate")
    return lines


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--shapes", nargs="+", default=["small"], choices=list(SHAPES))
    ap.add_argument("--fusions", nargs="+", default=["attn"], choices=list(FUSIONS),
                    help="the fusions to time (mbt, mmml, jmt as Table 4 builds them; mult_attn: "
                         "MulT read out by the fusion attention)")
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    ap.add_argument("--precision", default="auto", choices=["auto", "fp32", "bf16"])
    ap.add_argument("--compile", action="store_true",
                    help="torch.compile with the eager fallback fit uses")
    ap.add_argument("--rollingq-cost", action="store_true",
                    help="also time the step without RollingQ's statistics and the full pass")
    ap.add_argument("--balance-cost", action="store_true",
                    help="also time the step with OGM-GE and PMR, and PMR's prototype pass")
    ap.add_argument("--deterministic-cost", action="store_true",
                    help="also time the step with PyTorch's deterministic algorithms "
                         "(train.deterministic) and print its cost")
    ap.add_argument("--end-to-end", type=int, default=0, metavar="CLIPS",
                    help="also train from a CREMA-D-shaped data set of CLIPS clips on disk "
                         "(cremad shapes)")
    ap.add_argument("--work", help="where --end-to-end writes its data set and cache "
                                   "(default: a temporary folder)")
    args = ap.parse_args(argv)
    if args.deterministic_cost:  # before cuBLAS starts: its deterministic workspace setting
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", CUBLAS_WORKSPACE)
    with tempfile.TemporaryDirectory(prefix="rollingq-bench-") as tmp:
        args.work = args.work or tmp
        for name in args.shapes:
            for fusion in args.fusions:
                for line in measure(name, args, fusion):
                    print(line, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
