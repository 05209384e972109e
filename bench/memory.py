"""The memory estimate (``python -m rollingq.memory``) against what a training step really uses.

On CPU: the activation part against the bytes a real training step saves for backward
(``saved_tensors_hooks``), at CREMA-D and Kinetics-Sounds shapes, batch 2. On CUDA: the whole
estimate against ``torch.cuda.max_memory_allocated`` of a real training step (SGD with
momentum, its state already allocated, data not resident) and the evaluation forward after it
(``rollingq.memory.measure``) at batch 64, bf16 and fp32, with and without activation
checkpointing. Prints each figure and the ratio estimate / measured:

    python bench/memory.py                  # CPU, about a minute
    python bench/memory.py --device cuda    # on a GPU node (bench/gpu.sh memory)
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from rollingq.config import build_config  # noqa: E402
from rollingq.data.base import ModalitySpec  # noqa: E402
from rollingq.diagnostics import cremad_shapes  # noqa: E402
from rollingq.memory import activation_bytes, estimate, measure, saved_bytes, size  # noqa: E402
from rollingq.model import MultimodalTransformer  # noqa: E402

SHAPES = {
    "cremad": (cremad_shapes(), 6),
    "kinetics_sounds": ({"audio": ModalitySpec("spectrogram", (1024, 128)),
                         "visual": ModalitySpec("frames", (3, 3, 224, 224))}, 31),
}


def config(name: str, batch: int, precision: str, checkpointing: bool, device: str):
    return build_config(overrides={
        "data.name": name, "data.root": "/nowhere", "train.batch_size": batch,
        "train.precision": precision, "train.device": device,
        "train.activation_checkpointing": checkpointing, "train.data_on_device": "never"})


def cpu_rows() -> None:
    for name, (specs, classes) in SHAPES.items():
        for precision in ("fp32", "bf16"):
            cfg = config(name, 2, precision, False, "cpu")
            est = activation_bytes(specs, classes, cfg, 2, precision == "bf16")
            torch.manual_seed(0)
            model = MultimodalTransformer(specs, classes, cfg.model).train()
            inputs = {m: torch.randn(2, *s.shape) for m, s in specs.items()}
            real = saved_bytes(model, inputs, torch.zeros(2, dtype=torch.long),
                               precision == "bf16")
            print(f"{name} batch 2 {precision}: saved for backward {size(real)}, estimate "
                  f"{size(est)}, ratio {est / real:.3f}", flush=True)


def cuda_rows(batch: int) -> None:
    for name, (specs, classes) in SHAPES.items():
        for precision in ("bf16", "fp32"):
            for checkpointing in (False, True):
                cfg = config(name, batch, precision, checkpointing, "cuda")
                est = estimate(cfg, specs=(specs, classes))
                real = measure(cfg, specs, classes)
                ck = " checkpointed" if checkpointing else ""
                print(f"{name} batch {batch} {precision}{ck}: max_memory_allocated "
                      f"{size(real.peak)} (training step {size(real.step)}, evaluation at batch "
                      f"{est.eval_batch} {size(real.evaluation)}), estimate {size(est.total)}, "
                      f"ratio {est.total / real.peak:.3f}", flush=True)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    ap.add_argument("--batch", type=int, default=64, help="CUDA batch size (default 64)")
    args = ap.parse_args()
    if args.device == "cuda":
        cuda_rows(args.batch)
    else:
        cpu_rows()
    return 0


if __name__ == "__main__":
    sys.exit(main())
