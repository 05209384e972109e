"""Table 4 of the paper (CREMA-D): parameters and FLOPs of each fusion, beside the paper's.

Parameters: each model built at CREMA-D shapes (on the meta device: shapes only) and counted as
thop, the paper's counter, counts (``rollingq.diagnostics.count_parameters``, key ``paper``).

FLOPs: thop counts the multiply-accumulates (MACs) of the modules a forward runs, by its rules:
a Linear costs in_features x output elements, a Conv output elements x C_in x kernel (bias
free), a LayerNorm 4 x elements; attention matmuls, softmax, activations and
``nn.MultiheadAttention`` cost nothing. Our forward is not the published one (the fusion
attention computes only the [cls] row's query, the patch embeddings run as one matrix product,
JMT averages before its Linear), so the published computation is counted here analytically,
with those rules, from each built model's widths and token counts. The paper's GFLOPs are thop's
MACs of a batch, and they come out exactly at one video frame (197 tokens) and a batch of 128;
our data sets use 3 frames (589 tokens), where the ratios to Vanilla MT differ, so both are
printed. The last column is our own forward, counted by ``torch.utils.flop_counter`` (attention
matmuls included, MACs = FLOPs / 2).

    python bench/table4.py            # a second or two, CPU or none: nothing is run for real
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from rollingq.config import ModelConfig  # noqa: E402
from rollingq.diagnostics import count_parameters, cremad_shapes, flops_per_sample  # noqa: E402
from rollingq.model import MultimodalTransformer  # noqa: E402

CLASSES = 6
BATCH = 128  # the batch Table 4's GFLOPs were counted at (they are thop MACs of one batch)
# Table 4: (row, config, parameters in M, GFLOPs); MBT's GFLOPs fit 2 bottleneck tokens, its
# parameters 4 bottleneck layers (the count cannot see the tokens, a raw Parameter).
ROWS = (
    ("Vanilla MT", {"fusion": "attn"}, 59.87, 1489.13),
    ("MBT", {"fusion": "mbt", "fusion_layers": 4, "bottleneck_tokens": 2}, 114.21, 2746.90),
    ("MMML", {"fusion": "mmml", "fusion_layers": 1}, 77.88, 1828.29),
    ("JMT", {"fusion": "jmt", "fusion_layers": 1}, 62.23, 1494.87),
    ("Vanilla MT + RollingQ", {"fusion": "attn"}, 60.46, 1489.20),
)


def build(cfg: dict, frames: int) -> MultimodalTransformer:
    with torch.device("meta"):
        return MultimodalTransformer(cremad_shapes(frames), CLASSES, ModelConfig(**cfg))


def published_macs(model: MultimodalTransformer, rollingq: bool = False) -> int:
    """thop's MACs of one sample through the published computation of ``model``'s fusion."""
    cfg = model.cfg
    D, H, C = cfg.dim, int(cfg.dim * cfg.mlp_ratio), CLASSES
    N = {m: e.num_tokens for m, e in model.encoders.items()}  # tokens with the encoder [cls]
    ln = lambda tokens: 4 * tokens * D  # noqa: E731
    block = lambda tokens: tokens * (4 * D * D + 2 * D * H) + 2 * ln(tokens)  # noqa: E731

    def embed(m: str) -> int:
        w = model.encoders[m].embed.proj.weight  # Conv: C_in x kernel MACs an output element
        return (N[m] - 1) * D * w[0].numel()

    macs = sum(embed(m) + cfg.depth * block(N[m]) + ln(N[m]) for m in N)  # streams, final norm
    macs += len(N) * D * C  # the probes
    total = sum(N.values())
    if cfg.fusion == "attn":  # the published layer: q, k, v, o on every row of [cls; tokens]
        macs += 4 * D * D * (total + 1) + D * C + (D * D if rollingq else 0)
    elif cfg.fusion == "mbt":  # bottleneck layers on tokens + bottleneck tokens, concat head
        macs += cfg.fusion_layers * sum(block(n + cfg.bottleneck_tokens) for n in N.values())
        macs += len(N) * D * C
    elif cfg.fusion == "mmml":  # per layer and modality: cross, self attention, FFN, 3 norms
        macs += cfg.fusion_layers * sum(n * (8 * D * D + 2 * D * H) + 3 * ln(n)
                                        for n in N.values())
        macs += 2 * D * D + D * (D // 2) + (D // 2) * C  # MMML's MLP read-out on the two [cls]
    elif cfg.fusion == "jmt":  # padded to L; joint map and read-out Linear on every token
        L = max(N.values())
        hidden = D // 16
        layers = 3 * (cfg.fusion_layers - 1) * (L * 2 * D * hidden + 2 * ln(L))  # attn: 0
        macs += L * (2 * D * D + 6 * D * D) + layers + D * C
    else:
        raise ValueError(f"no published computation counted for fusion {cfg.fusion!r}")
    return macs


def ours_macs(model: MultimodalTransformer, frames: int) -> float:
    """MACs a sample of our forward, measured by ``torch.utils.flop_counter`` on meta tensors."""
    inputs = {m: torch.empty(2, *s.shape, device="meta") for m, s in cremad_shapes(frames).items()}
    return flops_per_sample(model.eval(), inputs) / 2


def table(frames: int) -> list[dict]:
    rows = []
    for name, cfg, paper_params, paper_gflops in ROWS:
        model = build(cfg, frames)
        rq = name.endswith("RollingQ")
        counts = count_parameters(model)
        rows.append({
            "row": name, "params": counts["paper_with_rotation" if rq else "paper"],
            "trainable": counts["trainable"], "paper_params": paper_params,
            "macs": published_macs(model, rollingq=rq), "paper_gflops": paper_gflops,
            "ours": ours_macs(model, frames),
        })
    return rows


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.parse_args(argv)
    one, three = table(1), table(3)
    base1, base3 = one[0]["macs"], three[0]["macs"]
    print("Table 4 (CREMA-D), parameters counted as thop counts; Table 4 reads M truncated or "
          "rounded to 2 decimals")
    print("| row | params | M (2 decimals) | Table 4 (M) | trainable at 1 frame (every "
          "parameter) |")
    print("|---|---|---|---|---|")
    for r in one:
        print(f"| {r['row']} | {r['params']:,} | {r['params'] / 1e6:.4f} | "
              f"{r['paper_params']:.2f} | {r['trainable']:,} |")
    print()
    print(f"FLOPs (thop MACs of the published computation; GFLOPs = a batch of {BATCH} at 1 "
          "frame, as Table 4)")
    print("| row | GFLOPs, 1 frame | Table 4 | ratio to Vanilla MT, 1 frame | Table 4's ratio | "
          "ratio, 3 frames (our data) | MACs a sample, 3 frames | our forward, 3 frames |")
    print("|---|---|---|---|---|---|---|---|")
    for r1, r3 in zip(one, three, strict=True):
        print(f"| {r1['row']} | {r1['macs'] * BATCH / 1e9:.2f} | {r1['paper_gflops']:.2f} | "
              f"{r1['macs'] / base1:.4f} | {r1['paper_gflops'] / ROWS[0][3]:.4f} | "
              f"{r3['macs'] / base3:.4f} | {r3['macs'] / 1e9:.2f} G | {r3['ours'] / 1e9:.2f} G |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
