"""MulT (Tsai et al., ACL 2019) as its reference code builds it: ``yaohungt/Multimodal-Transformer``
``src/models.py`` (``MULTModel``), ``modules/transformer.py`` (``TransformerEncoder``, its layer
and ``buffered_future_mask``), ``modules/multihead_attention.py`` (its fused in-projection and
init), ``modules/position_embedding.py`` (the sinusoidal positions). The two-modality model
matches a reduction of ``MULTModel`` with the same weights (logits equal to 4e-7, mask off); the
mask against the reference's formulas in ``tests/rollingq/test_model.py``. Its ``attn`` read-out
(MulT + RollingQ) is the published fusion attention (``rollingq.fusions.attention``).

MulT as compared, and where we differ from its reference: docs/baselines.md §3 and §7.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from rollingq.config import MULT_HEADS, ModelConfig
from rollingq.fusions.attention import FusionAttention, FusionStats
from rollingq.layers import multihead


def sinusoidal_positions(length: int, dim: int, device: torch.device | None = None) -> Tensor:
    """MulT's (fairseq's) sinusoidal positions 1..length, (length, dim): sines then cosines of
    position x 10000^(-i / (dim/2 - 1)), a zero column when dim is odd."""
    half = dim // 2
    freq = torch.exp(torch.arange(half, dtype=torch.float32, device=device)
                     * -(math.log(10000.0) / max(half - 1, 1)))
    angle = torch.arange(1, length + 1, dtype=torch.float32, device=device)[:, None] * freq[None]
    table = torch.cat([angle.sin(), angle.cos()], 1)
    return F.pad(table, (0, dim - 2 * half))


def future_mask(lq: int, lk: int, device: torch.device | None = None) -> Tensor:
    """MulT's causal mask (its ``buffered_future_mask``), as booleans: query i may attend to
    the keys j <= i + |lk - lq| (the last query sees every key)."""
    return torch.ones(lq, lk, dtype=torch.bool, device=device).tril(abs(lk - lq))


class MulTLayer(nn.Module):
    """One layer of MulT's transformers (Tsai et al., ACL 2019), pre-norm. A crossmodal layer
    attends from the target sequence to a source sequence (keys and values, each with its own
    embedding-dropout draw), the first LayerNorm normalising queries, keys and values alike (as
    the reference does); without a source it is a self-attention layer. With ``causal`` the
    reference's future mask (``future_mask``). ReLU feed-forward 4D; dropout on the attention
    weights, after the ReLU and on each residual branch. Initialised as the reference: q, k, v
    as the slices of one xavier-uniform (3D, D) matrix, the other weights xavier-uniform, zero
    biases (``init_as_reference``; the model calls it after its own init).
    """

    def __init__(self, dim: int, heads: int, attn_dropout: float, dropout: float,
                 causal: bool = False):
        super().__init__()
        self.heads, self.attn_dropout, self.dropout = heads, attn_dropout, dropout
        self.causal = causal
        self.norm1 = nn.LayerNorm(dim)
        self.q, self.k, self.v, self.o = (nn.Linear(dim, dim) for _ in range(4))
        self.norm2 = nn.LayerNorm(dim)
        self.fc1, self.fc2 = nn.Linear(dim, 4 * dim), nn.Linear(4 * dim, dim)
        self.init_as_reference()

    @torch.no_grad()
    def init_as_reference(self) -> None:
        fused = torch.empty(3 * self.q.weight.shape[0], self.q.weight.shape[1],
                            device=self.q.weight.device)
        nn.init.xavier_uniform_(fused)
        for lin, w in zip((self.q, self.k, self.v), fused.chunk(3), strict=True):
            lin.weight.copy_(w)
        for lin in (self.o, self.fc1, self.fc2):
            nn.init.xavier_uniform_(lin.weight)
        for lin in (self.q, self.k, self.v, self.o, self.fc1, self.fc2):
            nn.init.zeros_(lin.bias)

    def forward(self, x: Tensor, source: Tensor | None = None, last: bool = False,
                value: Tensor | None = None) -> Tensor:
        """(B, L, D) -> (B, L, D), or with ``last`` only the last row (B, 1, D); ``source``
        the keys' sequence, ``value`` the values' (default: ``source``)."""
        h = self.norm1(x)
        k = h if source is None else self.norm1(source)
        v = k if value is None else self.norm1(value)
        mask = future_mask(h.shape[1], k.shape[1], h.device) if self.causal else None
        if last:  # the last query sees every key: no mask
            x, h, mask = x[:, -1:], h[:, -1:], None
        a = multihead(self.q(h), self.k(k), self.v(v), self.heads, self.attn_dropout,
                      self.training, mask)
        x = x + F.dropout(self.o(a), self.dropout, self.training)
        f = F.dropout(F.relu(self.fc1(self.norm2(x))), self.dropout, self.training)
        return x + F.dropout(self.fc2(f), self.dropout, self.training)


class MulTEncoder(nn.Module):
    """A MulT transformer: inputs scaled by sqrt(D) plus sinusoidal positions, embedding
    dropout (the source's keys and values each their own draw, as the reference), ``layers``
    ``MulTLayer``s (crossmodal when given a source; ``causal``: the reference's future mask), a
    final LayerNorm."""

    def __init__(self, dim: int, heads: int, layers: int, attn_dropout: float,
                 dropout: float, embed_dropout: float, causal: bool = False):
        super().__init__()
        self.scale, self.embed_dropout = math.sqrt(dim), embed_dropout
        self.layers = nn.ModuleList(
            MulTLayer(dim, heads, attn_dropout, dropout, causal) for _ in range(layers))
        self.norm = nn.LayerNorm(dim)

    def _embed(self, x: Tensor) -> Tensor:
        pos = sinusoidal_positions(x.shape[1], x.shape[2], x.device).to(x.dtype)
        return self.scale * x + pos

    def _drop(self, x: Tensor) -> Tensor:
        return F.dropout(x, self.embed_dropout, self.training)

    def forward(self, x: Tensor, source: Tensor | None = None, last: bool = False) -> Tensor:
        """(B, L, D) -> (B, L, D); with ``last`` the last layer computes only the last row."""
        x = self._drop(self._embed(x))
        keys = values = None
        if source is not None:
            embedded = self._embed(source)
            keys, values = self._drop(embedded), self._drop(embedded)
        for i, layer in enumerate(self.layers):
            x = layer(x, keys, last=last and i == len(self.layers) - 1, value=values)
        return self.norm(x)


# MulT's dropouts, the reference's defaults: on the attention weights by source modality
# (text 0.1, audio and visual 0; the memory transformers 0.1), after the ReLU and on each
# residual branch 0.1, on the scaled, position-embedded inputs 0.25 (and on the text input).
MULT_ATTN_DROPOUT = {"text": 0.1, "audio": 0.0, "visual": 0.0}
MULT_DROPOUT, MULT_EMBED_DROPOUT = 0.1, 0.25


class MulT(nn.Module):
    """MulT (Tsai et al., ACL 2019) on the encoders' token sequences, M modalities:

    - each stream projected to ``model.mult_dim`` (Conv1d k=1, no bias; none when it equals
      D), the text stream with embedding dropout first (as the reference);
    - per target modality t, one crossmodal transformer per source s != t (``fusion_layers``
      layers, queries from t, keys and values from s), outputs concatenated on features
      ((M - 1) x mult_dim), then a self-attention memory transformer (max(fusion_layers, 3)
      layers, as the reference);
    - read-out ``own`` (the reference's): each memory's last time step, concatenated; a residual
      block Linear-ReLU-Linear; Linear -> C. The last memory layer computes only that row.
      Read-out ``attn``: the published single-head fusion attention over all the memories'
      tokens, whose [cls] query RollingQ can rotate (the paper's "MulT + RollingQ", our reading).
    """

    def __init__(self, modalities: list[str], num_classes: int, cfg: ModelConfig):
        super().__init__()
        d, M = cfg.mult_dim, len(modalities)
        self.proj = nn.ModuleDict({m: nn.Conv1d(cfg.dim, d, 1, bias=False) for m in modalities}
                                  ) if d != cfg.dim else None
        self.cross = nn.ModuleDict({t: nn.ModuleDict({
            s: MulTEncoder(d, MULT_HEADS, cfg.fusion_layers, MULT_ATTN_DROPOUT[s], MULT_DROPOUT,
                           MULT_EMBED_DROPOUT, cfg.mult_causal_mask)
            for s in modalities if s != t}) for t in modalities})
        w = (M - 1) * d
        self.memory = nn.ModuleDict({t: MulTEncoder(
            w, MULT_HEADS, max(cfg.fusion_layers, 3), MULT_ATTN_DROPOUT["text"], MULT_DROPOUT,
            MULT_EMBED_DROPOUT, cfg.mult_causal_mask) for t in modalities})
        if cfg.readout == "attn":
            self.readout = FusionAttention(w, cfg.fusion_dropout)
            self.head = nn.Linear(w, num_classes)
        else:
            self.readout = None
            self.proj1, self.proj2 = nn.Linear(M * w, M * w), nn.Linear(M * w, M * w)
            self.head = nn.Linear(M * w, num_classes)

    def forward(self, streams: dict[str, Tensor], spans: dict[str, slice]
                ) -> tuple[Tensor, list[FusionStats]]:
        x = {m: F.dropout(z, MULT_EMBED_DROPOUT, self.training) if m == "text" else z
             for m, z in streams.items()}
        if self.proj is not None:
            x = {m: F.linear(z, self.proj[m].weight.squeeze(-1)) for m, z in x.items()}
        last = self.readout is None
        h = {t: self.memory[t](torch.cat([enc(x[t], x[s]) for s, enc in self.cross[t].items()],
                                         -1), last=last)
             for t in x}
        if self.readout is not None:
            out, stats = self.readout(torch.cat(list(h.values()), 1), spans, full=False)
            return self.head(out), [stats]
        z = torch.cat([ht[:, -1] for ht in h.values()], -1)
        return self.head(z + self.proj2(F.relu(self.proj1(z)))), []
