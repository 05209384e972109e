"""MMML (Wu et al., NAACL 2024) as the RollingQ comparison ran it: the published code's
``MMML_head`` (``models/fusion_modules.py`` in its history) over MMML's own cross-modal encoder
layer (``zehuiwu/MMML``, ``utils/cross_attn_encoder.py``, ``CMELayer``: one layer checked
against it with the same weights, equal to 1.4e-6). Its ``attn`` read-out (MMML + RollingQ) is
the published fusion attention (``rollingq.fusions.attention``).

MMML as compared, and where we differ from its reference: docs/baselines.md §5 and §7.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from rollingq.config import MMML_HEADS, ModelConfig
from rollingq.fusions.attention import FusionAttention, FusionStats
from rollingq.layers import multihead


class CrossModalLayer(nn.Module):
    """One MMML cross-modal encoder (CME) layer (Wu et al., NAACL 2024), post-norm (BERT style),
    for two modalities updated in parallel. For each modality x (the other y):

        x = LN(x + drop(W_o MHA(q = x, k = v = y)))     cross-attention
        x = LN(x + drop(W_o MHA(x, x, x)))              self-attention
        x = LN(x + drop(W_2 relu(W_1 x)))               feed-forward (hidden ``mlp_ratio`` D)

    Each modality has its own weights: 18,903,552 parameters a layer at D = 768 (Linear and
    LayerNorm), which with one layer gives Table 4's MMML count.
    """

    def __init__(self, modalities: list[str], dim: int, heads: int, mlp_ratio: float,
                 dropout: float):
        super().__init__()
        assert len(modalities) == 2, f"a CME layer pairs two modalities, got {modalities}"
        self.heads, self.dropout = heads, dropout
        hidden = int(dim * mlp_ratio)

        def attention() -> nn.ModuleDict:
            return nn.ModuleDict({"q": nn.Linear(dim, dim), "k": nn.Linear(dim, dim),
                                  "v": nn.Linear(dim, dim), "o": nn.Linear(dim, dim),
                                  "norm": nn.LayerNorm(dim, eps=1e-12)})

        self.cross = nn.ModuleDict({m: attention() for m in modalities})
        self.self_attn = nn.ModuleDict({m: attention() for m in modalities})
        self.ffn = nn.ModuleDict({m: nn.ModuleDict({
            "fc1": nn.Linear(dim, hidden), "fc2": nn.Linear(hidden, dim),
            "norm": nn.LayerNorm(dim, eps=1e-12)}) for m in modalities})

    def _attend(self, a: nn.ModuleDict, x: Tensor, y: Tensor) -> Tensor:
        out = multihead(a["q"](x), a["k"](y), a["v"](y), self.heads, self.dropout, self.training)
        return a["norm"](x + F.dropout(a["o"](out), self.dropout, self.training))

    def forward(self, streams: dict[str, Tensor]) -> dict[str, Tensor]:
        (m1, x1), (m2, x2) = streams.items()
        crossed = {m1: self._attend(self.cross[m1], x1, x2),
                   m2: self._attend(self.cross[m2], x2, x1)}
        out = {}
        for m, x in crossed.items():
            x = self._attend(self.self_attn[m], x, x)
            f = self.ffn[m]
            h = F.dropout(f["fc2"](F.relu(f["fc1"](x))), self.dropout, self.training)
            out[m] = f["norm"](x + h)
        return out


class MMML(nn.Module):
    """MMML's fusion (Wu et al., NAACL 2024, as the RollingQ comparison ran it): a learned [cls]
    in front of each modality's patch tokens (the encoder's [cls] left out), ``fusion_layers``
    cross-modal encoder layers, then either MMML's read-out, an MLP on the two new [cls]
    (Linear 2D -> D, ReLU, Linear D -> D/2, ReLU, Linear D/2 -> C), or, with ``model.readout:
    attn``, the published single-head fusion attention over all the layers' output tokens,
    whose [cls] query RollingQ can rotate (the only reading under which MMML has an AIR).
    The multi-loss of MMML is the model's probes, not detached for ``mmml``."""
    # (the read-out choice ``own`` is MMML's MLP)

    def __init__(self, modalities: list[str], num_classes: int, cfg: ModelConfig):
        super().__init__()
        d = cfg.dim
        self.cls = nn.ParameterDict({m: nn.Parameter(torch.empty(1, 1, d)) for m in modalities})
        for p in self.cls.values():
            # nn.Embedding(1, D) in both MMML and the published copy: PyTorch's N(0, 1), which
            # neither one's weight init touches
            nn.init.normal_(p, std=1.0)
        self.layers = nn.ModuleList(
            CrossModalLayer(modalities, d, MMML_HEADS, cfg.mlp_ratio, cfg.mmml_dropout)
            for _ in range(cfg.fusion_layers))
        if cfg.readout == "attn":
            self.readout = FusionAttention(d, cfg.fusion_dropout)
            self.head = nn.Linear(d, num_classes)
        else:
            self.readout = None
            self.head = nn.Sequential(nn.Linear(2 * d, d), nn.ReLU(), nn.Linear(d, d // 2),
                                      nn.ReLU(), nn.Linear(d // 2, num_classes))

    def forward(self, streams: dict[str, Tensor], spans: dict[str, slice]
                ) -> tuple[Tensor, list[FusionStats]]:
        B = next(iter(streams.values())).shape[0]
        x = {m: torch.cat([self.cls[m].expand(B, -1, -1), z[:, 1:]], 1)
             for m, z in streams.items()}
        for layer in self.layers:
            x = layer(x)
        if self.readout is None:
            return self.head(torch.cat([z[:, 0] for z in x.values()], -1)), []
        out, stats = self.readout(torch.cat(list(x.values()), 1), spans, full=False)
        return self.head(out), [stats]
