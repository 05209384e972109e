"""MBT (Nagrani et al., NeurIPS 2021) as the RollingQ comparison ran it: the published code's
``models/mbt_backbone.py`` (``MBTBackbone``): shared bottleneck tokens between the streams'
last layers. Checked against it with the same weights (equal to 6e-7).

MBT (Table 4) as compared: docs/baselines.md §6 and §8.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from rollingq.config import ModelConfig
from rollingq.layers import Block


class Bottleneck(nn.Module):
    """MBT fusion layers (the published ``MBTBackbone``): ``fusion_layers`` blocks per stream
    over [tokens; bottleneck], 1 head, the bottleneck tokens (N(0, 0.02)) replaced by the mean of
    the streams' bottleneck outputs after each layer. They run on the streams before their final
    LayerNorm; the model applies each stream's own norm after them. Table 4's MBT (114.21 M at
    CREMA-D shapes) is ``fusion_layers: 4``; the published default of 2 gives 85.86 M."""

    def __init__(self, modalities: list[str], cfg: ModelConfig):
        super().__init__()
        self.tokens = nn.Parameter(torch.zeros(1, cfg.bottleneck_tokens, cfg.dim))
        nn.init.normal_(self.tokens, std=0.02)
        self.layers = nn.ModuleList(
            nn.ModuleDict({m: Block(cfg.dim, 1, cfg.mlp_ratio) for m in modalities})
            for _ in range(cfg.fusion_layers)
        )

    def forward(self, streams: dict[str, Tensor]) -> dict[str, Tensor]:
        b = self.tokens.expand(next(iter(streams.values())).shape[0], -1, -1)
        n = b.shape[1]
        for layer in self.layers:
            outs = {m: layer[m](torch.cat([z, b], 1)) for m, z in streams.items()}
            streams = {m: o[:, :-n] for m, o in outs.items()}
            b = torch.stack([o[:, -n:] for o in outs.values()]).mean(0)
        return streams
