"""JMT (Waligora et al., CVPRW 2024) as the RollingQ comparison ran it: the published code's
``JMT`` (``models/fusion_modules.py`` in its history; checked against a transcription with the
same weights, logits equal to 9e-8).

JMT as compared, and where we differ from its reference: docs/baselines.md §4 and §7.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from rollingq.config import ModelConfig


class JMTLayer(nn.Module):
    """A layer of JMT's encoder blocks (Waligora et al., CVPRW 2024, as the RollingQ comparison
    ran it): post-norm, ``nn.MultiheadAttention`` (as published, so the thop-style count sees
    its weights as the paper's tool did: not at all), a ReLU feed-forward D -> D/16 -> D,
    PyTorch's default LayerNorms (eps 1e-5), no dropout.
    """

    def __init__(self, dim: int, heads: int):
        super().__init__()
        self.attn = nn.MultiheadAttention(dim, heads, batch_first=True)
        self.ff = nn.Sequential(nn.Linear(dim, dim // 16), nn.ReLU(), nn.Linear(dim // 16, dim))
        self.norm1, self.norm2 = nn.LayerNorm(dim), nn.LayerNorm(dim)

    def forward(self, x: Tensor) -> Tensor:
        x = self.norm1(x + self.attn(x, x, x, need_weights=False)[0])
        return self.norm2(x + self.ff(x))


class JMT(nn.Module):
    """JMT as the RollingQ comparison ran it (the published code's history: Waligora et al.'s
    joint multimodal transformer, CVPRW 2024, at width D), for two modalities a and b:

    1. the shorter token sequence is padded with the longer one's extra tokens (as published),
       so both have L = max(L_a, L_b) tokens;
    2. a joint sequence j = Linear(2D -> D)([a; b]) (features concatenated token by token);
    3. a, b and j each pass ``fusion_layers - 1`` ``JMTLayer``s of their own (the published
       default of one layer is ``fusion_layers: 2``, Table 1's count of JMT's fusion layers;
       Table 4's parameter count fits none, ``fusion_layers: 1``);
    4. three ``nn.MultiheadAttention`` (one a query: a, b, j), used six times: b<-a, a<-b, j<-b,
       b<-j, j<-a, a<-j;
    5. the six outputs concatenated on features, Linear(6D -> D), mean over tokens, Linear(D -> C).

    Step 5 averages before the Linear (the same numbers, as the map is affine: L times fewer
    multiply-adds). The probes (published ``a_head``/``v_head``) read the detached encoder [cls].
    """

    def __init__(self, modalities: list[str], num_classes: int, cfg: ModelConfig):
        super().__init__()
        d, roles = cfg.dim, [*modalities, "joint"]
        self.joint = nn.Linear(2 * d, d)
        self.encoders = nn.ModuleDict({r: nn.Sequential(
            *(JMTLayer(d, cfg.heads) for _ in range(cfg.fusion_layers - 1))) for r in roles})
        self.cross = nn.ModuleDict(
            {r: nn.MultiheadAttention(d, cfg.heads, batch_first=True) for r in roles})
        self.out = nn.Linear(6 * d, d)
        self.head = nn.Linear(d, num_classes)

    def forward(self, streams: dict[str, Tensor]) -> Tensor:
        (m1, a), (m2, b) = streams.items()
        if a.shape[1] < b.shape[1]:
            a = torch.cat([a, b[:, a.shape[1]:]], 1)
        elif b.shape[1] < a.shape[1]:
            b = torch.cat([b, a[:, b.shape[1]:]], 1)
        x = {m1: a, m2: b, "joint": self.joint(torch.cat([a, b], -1))}
        x = {r: self.encoders[r](z) for r, z in x.items()}
        pairs = ((m2, m1), (m1, m2), ("joint", m2), (m2, "joint"), ("joint", m1), (m1, "joint"))
        outs = [self.cross[q](x[q], x[k], x[k], need_weights=False)[0] for q, k in pairs]
        return self.head(self.out(torch.cat(outs, -1).mean(1)))
