"""What a run's checkpoints cost at the paper's shapes, per choice of ``train.checkpoint_*``.

    python bench/checkpoint_cost.py [--repeats 3] [--epoch-seconds 3.5] [--dir DIR] [--shapes small]

Builds the published CREMA-D model (``diagnostics.cremad_shapes``, 6 classes) with SGD's momentum
state, as ``rollingq.train`` holds it after a step, and times on this machine's disk (``--dir``,
the temporary folder by default) the median of ``--repeats`` writes of:

- ``checkpoint.pt`` as the previous default wrote it while the best epoch lay behind: model,
  momentum and a copy of the selected model;
- ``checkpoint.pt`` as it is written now (``train.keep_best``: the selected model is in best.pt);
- ``best.pt``, written when validation improves;
- the copy of the trial's folder that Ray makes into the study storage with each reported
  checkpoint (``shutil.copytree`` to a folder on the same disk: a local storage; NFS or S3 cost
  more).

Then the share of an epoch each scheme costs, at an epoch of ``--epoch-seconds`` (default 3.5 s:
the reference H100 epoch on CREMA-D, 6,028 training samples at the 1,500-2,000 samples/s of the
reference figures; not measured here): every epoch with the copy (the previous default on a GPU,
with ``best.pt`` rewritten too), every epoch without it, and every 10 minutes (the default on
CUDA now).
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from rollingq.checkpoints import save_checkpoint  # noqa: E402
from rollingq.config import ModelConfig  # noqa: E402
from rollingq.diagnostics import cremad_shapes  # noqa: E402
from rollingq.model import MultimodalTransformer  # noqa: E402
from rollingq.train import CUDA_CHECKPOINT_MINUTES  # noqa: E402

MIB = 2**20


def timed(write, repeats: int) -> float:
    """The median seconds of ``repeats`` calls of ``write``."""
    seconds = []
    for _ in range(repeats):
        began = time.perf_counter()
        write()
        seconds.append(time.perf_counter() - began)
    return statistics.median(seconds)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--epoch-seconds", type=float, default=3.5,
                    help="the epoch the costs are a share of (default: the reference H100 epoch)")
    ap.add_argument("--dir", help="where to write (default: the temporary folder)")
    ap.add_argument("--shapes", choices=("cremad", "small"), default="cremad",
                    help="small: a width-64 model, to check the script quickly")
    args = ap.parse_args(argv)

    torch.manual_seed(0)
    model = (MultimodalTransformer(cremad_shapes(), 6, ModelConfig()) if args.shapes == "cremad"
             else MultimodalTransformer(cremad_shapes(), 6, ModelConfig(dim=64, depth=1,
                                                                        heads=4)))
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9)
    for p in model.parameters():
        p.grad = torch.zeros_like(p)
    optimizer.step()  # the momentum buffers a step leaves
    state = model.state_dict()
    best = {k: v.clone() for k, v in state.items()}
    base = {"model": state, "optimizer": optimizer.state_dict(), "epoch": 5, "history": [],
            "best": {"epoch": 3}, "config": {}}

    with tempfile.TemporaryDirectory(dir=args.dir, prefix="rollingq-ckpt-bench-") as tmp:
        work, storage = Path(tmp) / "work", Path(tmp) / "storage"
        work.mkdir()
        files = {
            "checkpoint.pt with the selected model's copy (previous default)":
                (work / "old.pt", {**base, "best_model": best}),
            "checkpoint.pt, the selected model kept once in best.pt (now)":
                (work / "checkpoint.pt", {**base, "best_model": None}),
            "best.pt (on improvement)": (work / "best.pt", {"model": best, "epoch": 3}),
        }
        cost, size = {}, {}
        for name, (path, content) in files.items():
            cost[name] = timed(lambda p=path, c=content: save_checkpoint(p, c), args.repeats)
            size[name] = path.stat().st_size
        copies = {}
        for scheme, drop in (("old", "checkpoint.pt"), ("now", "old.pt")):
            folder = Path(tmp) / scheme
            shutil.copytree(work, folder, ignore=shutil.ignore_patterns(drop))
            copies[scheme] = (timed(lambda f=folder: (shutil.rmtree(storage, ignore_errors=True),
                                                      shutil.copytree(f, storage)), args.repeats),
                              sum(x.stat().st_size for x in folder.iterdir()))

    print(f"checkpoint costs at {'CREMA-D' if args.shapes == 'cremad' else 'small'} shapes on "
          f"this machine's disk (median of {args.repeats}):")
    for name in files:
        print(f"  {name}: {size[name] / MIB:,.0f} MiB in {cost[name]:.2f} s "
              f"({size[name] / MIB / max(cost[name], 1e-9):,.0f} MiB/s)")
    for scheme, (seconds, nbytes) in copies.items():
        print(f"  Ray's copy of the trial folder into a local storage, {scheme} "
              f"({nbytes / MIB:,.0f} MiB): {seconds:.2f} s")
    old, now, best_pt = files
    e = args.epoch_seconds
    saved = cost[now] + cost[best_pt] + copies["now"][0]  # best.pt when the selection moved
    schemes = {
        "previous default, an epoch that improves (checkpoint, best.pt, copy)": saved,
        "previous default, an epoch that does not (checkpoint with the selected model's copy, "
        "copy)": cost[old] + copies["old"][0],
        "now, every epoch (the CPU's default; checkpoint_minutes=0 on CUDA), an epoch whose "
        "selection moved": saved,
        "now, every epoch, an epoch whose selection stayed": cost[now] + copies["now"][0],
        f"now, auto on CUDA: every {CUDA_CHECKPOINT_MINUTES:g} minutes, per epoch on average":
            saved * e / (60 * CUDA_CHECKPOINT_MINUTES),
    }
    print(f"per epoch, as a share of an epoch of {e:g} s (the reference H100 CREMA-D epoch; "
          "not measured here):")
    for name, seconds in schemes.items():
        # three significant digits: at small shapes a cost is a few milliseconds, which two
        # decimals would print as 0.00 whatever the scheme
        print(f"  {name}: {seconds:.3g} s an epoch = {seconds / e:.2g} of the epoch "
              f"({seconds / e:.1%})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
