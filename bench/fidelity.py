"""Fidelity measurements quoted in docs/method.md §7 (differences from the published code), on CPU.

``precision``: the same runs (same seeds) in fp32 and under bf16 autocast (which runs on CPU
too), on the synthetic data set and on a ``features`` data set written to disk: RollingQ's
statistics (train AIR at the epoch end, the cosines, the rotation angle, validation AIR) and
the outcome, fp32 vs bf16, with the mean absolute difference over the paired seeds. The
statistics are accumulated in fp32 under autocast; what differs is the bf16 forward and backward
(and so the trajectory). The ``end:`` rows isolate the statistics: each fp32-trained model's
AIR and rotation angle over the training set, computed under bf16 autocast minus in fp32.

``heads``: does AIR still track the attention shares when RollingQ acts on a multi-head query?
MT* (2 fusion layers) on the synthetic data, the second layer a 4-head pre-norm block
(``model.fusion_block: prenorm``, AIR = the cosine of the concatenated query) or a published
single-head layer, without and with RollingQ (beta 0, so the last layer's query is rotated at
the first 4 epoch ends); every
epoch's validation AIR against the validation attention share difference (audio - visual) of
the same layer, Pearson r over epochs x seeds, beside the single published layer (Vanilla MT).

    python bench/fidelity.py precision --datasets synthetic             # about 3 minutes
    python bench/fidelity.py precision --datasets features --epochs 6   # about 6 minutes
    python bench/fidelity.py heads                  # about 3 minutes
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
from contextlib import nullcontext
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from rollingq import rotation as rot  # noqa: E402
from rollingq.config import DataConfig, build_config  # noqa: E402
from rollingq.data.synthetic import load_synthetic  # noqa: E402
from rollingq.rolling import full_pass_stats  # noqa: E402
from rollingq.train import fit  # noqa: E402

# A features data set unlike the synthetic preset's: 6 classes, 12 tokens of 24 channels.
FEATURES = {"num_classes": 6, "tokens": 12, "features": 24, "distractor_channels": 8,
            "train_size": 2400, "test_size": 800, "data_seed": 7, "val_fraction": 0.0}


def write_features(root: Path, train_size: int | None = None) -> Path:
    """Writes ``train.npz`` / ``test.npz`` (audio, visual (N, 12, 24) float32, label)."""
    bundle = load_synthetic(DataConfig(**{**FEATURES, **(
        {"train_size": train_size} if train_size else {})}))
    for name, split in (("train", bundle.train), ("test", bundle.test)):
        arrays = {m: x.numpy().astype(np.float32) for m, x in split.inputs.items()}
        np.savez(root / f"{name}.npz", **arrays, label=split.labels.numpy())
    return root


def same_model_statistics(result) -> dict:
    """The trained model's statistics over the training set (the published full pass: AIR from
    every sample's cosines, the anchor from the batch means) computed in fp32 and under bf16
    autocast: the same weights, so the difference is the bf16 forward's alone."""
    model, out = result.model, {}
    for name, autocast in (("fp32", nullcontext),
                           ("bf16", lambda: torch.autocast("cpu", dtype=torch.bfloat16))):
        stats = full_pass_stats(model, result.data.train, 256, autocast).layers[-1]
        cos = stats.cosines("epoch").double()
        mu_q, mu_keys = (t.double() for t in stats.means())
        weights = rot.anchor_weights(cos, result.config.rollingq.rho)
        q_b = rot.rebalance_anchor_multi(mu_keys, mu_q, weights)
        angle = torch.rad2deg(torch.arccos(torch.cosine_similarity(mu_q, q_b, dim=0).clamp(-1, 1)))
        out[name] = {"AIR": float(cos[0] - cos[1]), "angle": float(angle)}
    return out


def run(overrides: dict) -> dict:
    result = fit(build_config(overrides={"train.device": "cpu", **overrides}))
    assert result.status == "finished", result.status
    same = same_model_statistics(result)
    rotated = [h for h in result.history if h.get("rotated")]
    first = rotated[0] if rotated else {}
    last = result.history[-1]
    return {
        "air at 1st rotation": first.get("air", float("nan")),
        "cos audio at 1st": first.get("cos_audio", float("nan")),
        "cos visual at 1st": first.get("cos_visual", float("nan")),
        "angle of 1st (deg)": first.get("rotation_angle", float("nan")),
        "rotations": last["rotations"],
        "rotation epochs": ",".join(str(h["epoch"]) for h in rotated) or "-",
        "final val AIR": last["val_air"],
        "test acc at best val": last["test_acc_at_best_val"],
        "end: AIR, same model": same["bf16"]["AIR"] - same["fp32"]["AIR"],
        "end: angle, same model": same["bf16"]["angle"] - same["fp32"]["angle"],
    }


def precision(seeds: list[int], epochs: int | None, datasets: list[str],
              train_size: int | None = None) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        root = write_features(Path(tmp), train_size)
        sets = {"synthetic": {"data.train_size": train_size} if train_size else {},
                "features": {"data.name": "features", "data.root": str(root)}}
        for name, data in sets.items():
            if name not in datasets:
                continue
            extra = {"train.epochs": epochs} if epochs else {}
            rows = {p: [run({**data, **extra, "train.precision": p, "train.seed": s})
                        for s in seeds] for p in ("fp32", "bf16")}
            cfg = build_config(overrides={**data, **extra})
            print(f"\n{name}: seeds {seeds}, {cfg.train.epochs} epochs, model dim "
                  f"{cfg.model.dim}, {cfg.optim.name}; RollingQ beta {cfg.rollingq.beta}, rho "
                  f"{cfg.rollingq.rho}, max_rotations {cfg.rollingq.max_rotations}")
            print(f"{'':22} | {'fp32 (per seed)':28} | {'bf16 (per seed)':28} | mean |bf16-fp32|")
            for key in rows["fp32"][0]:
                a, b = ([r[key] for r in rows[p]] for p in ("fp32", "bf16"))
                if isinstance(a[0], str):
                    diff = "same" if a == b else "differ"
                    print(f"{key:22} | {' / '.join(a):28} | {' / '.join(b):28} | {diff}")
                    continue
                if key.startswith("end:"):  # already bf16 - fp32 on one model
                    diff = statistics.fmean(abs(x) for x in a)
                    cells = [" / ".join(f"{v:+.1e}" for v in a), "(bf16 - fp32, same weights)"]
                    print(f"{key:22} | {cells[0]:28} | {cells[1]:28} | {diff:.1e}")
                    continue
                diff = statistics.fmean(abs(x - y) for x, y in zip(a, b, strict=True))
                fmt = "{:.0f}" if isinstance(a[0], int) else "{:.4f}"
                cells = [" / ".join(fmt.format(v) for v in vs) for vs in (a, b)]
                print(f"{key:22} | {cells[0]:28} | {cells[1]:28} | {diff:.4f}")


def pearson(x: list[float], y: list[float]) -> float:
    return float(np.corrcoef(np.asarray(x), np.asarray(y))[0, 1])


def heads(seeds: list[int], epochs: int | None, datasets: list[str],
          train_size: int | None = None) -> None:
    arms = {
        "MT (1 published layer)": {"model.fusion_layers": 1},
        "MT*, 4-head pre-norm 2nd": {"model.fusion_layers": 2, "model.fusion_block": "prenorm"},
        "MT*, published 2nd": {"model.fusion_layers": 2, "model.fusion_block": "published"},
    }
    print(f"\nsynthetic, seeds {seeds}: per epoch, validation AIR of the last fusion layer (the "
          "one RollingQ rotates) vs its attention share difference (audio - visual)")
    print(f"{'':26} | heads | RollingQ    | Pearson r (epochs x seeds) | mean val AIR | "
          "mean share diff")
    for name, kw in arms.items():
        for enabled in (False, True):
            air, diff, rotations = [], [], []
            for s in seeds:
                extra = {"train.epochs": epochs} if epochs else {}
                if train_size:
                    extra["data.train_size"] = train_size
                # beta 0: the query is rotated at the first max_rotations (4) epoch ends
                result = fit(build_config(overrides={
                    "rollingq.enabled": enabled, "rollingq.beta": 0.0, "train.seed": s,
                    "train.device": "cpu", **extra, **kw}))
                rotations.append(result.summary["rotations"][-1] if enabled else 0)
                for h in result.history:
                    air.append(h["val_air"])
                    diff.append(h["val_share_audio"] - h["val_share_visual"])
            n_heads = build_config(overrides=kw).model.heads
            shown = n_heads if kw.get("model.fusion_block") == "prenorm" else 1
            state = f"on, {statistics.fmean(rotations):.0f} rot." if enabled else "off"
            print(f"{name:26} | {shown:5} | {state:11} | "
                  f"{pearson(air, diff):26.3f} | {statistics.fmean(air):12.3f} | "
                  f"{statistics.fmean(diff):15.3f}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("part", choices=("precision", "heads"))
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--epochs", type=int, help="override the data set's epochs (default: its own)")
    ap.add_argument("--datasets", nargs="+", choices=("synthetic", "features"),
                    default=["synthetic", "features"], help="precision: the data sets to run")
    ap.add_argument("--train-size", type=int, metavar="N",
                    help="training samples of each data set (default: its own; a quick check)")
    args = ap.parse_args(argv)
    torch.set_num_threads(1)  # the models are tiny; as the studies run them
    (precision if args.part == "precision" else heads)(args.seeds, args.epochs, args.datasets,
                                                       args.train_size)
    return 0


if __name__ == "__main__":
    sys.exit(main())
