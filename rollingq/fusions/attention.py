"""The published fusion attention ("Vanilla MT", the RollingQ code's ``models/dynamic.py`` and
``mm_transformer.py``) and the pre-norm blocks we stack above it (MT*).

``FusionAttention`` is the layer RollingQ acts on. It owns a rotation ``R`` (a buffer: saved,
never trained) applied to the [cls] query before attention, and it computes the [cls] row of
the attention explicitly, so the diagnostics (AIR, attention shares) cost one row, never the
L x L map. ``FusionStats`` is what a layer tells RollingQ; MMML's and MulT's ``attn`` read-out
is a ``FusionAttention`` too.

The fusion layer and its [cls] query in the paper's symbols: docs/method.md §1.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from rollingq.layers import LN_EPS, Mlp, multihead


@dataclass
class FusionStats:
    """What one fusion layer tells about its [cls] query (the inputs of RollingQ).

    Attributes:
        q_cls: The (rotated) [cls] query, (B, D), fp32 whatever the autocast.
        mean_keys: Per-modality mean key, each (B, D) fp32, in modality order.
        attention: The [cls] attention row over the fused sequence, (B, L), heads averaged.
        share: Per-modality sum of the [cls] attention row, each (B,).
    """

    q_cls: Tensor
    mean_keys: dict[str, Tensor]
    attention: Tensor
    share: dict[str, Tensor]


def cls_row_attention(
    q: Tensor, k: Tensor, v: Tensor, heads: int, dropout: float, training: bool
) -> tuple[Tensor, Tensor]:
    """Attention of one query row per sample over all keys.

    Args:
        q: (B, D) queries; k, v: (B, L, D).
        heads: Heads to split D into; the returned weights are averaged over heads.

    Returns:
        The attended values (B, D) and the attention weights (B, L) before dropout.
    """
    B, L, D = k.shape
    dh = D // heads
    qh = q.view(B, heads, 1, dh)
    kh = k.view(B, L, heads, dh).transpose(1, 2)  # (B, H, L, dh)
    vh = v.view(B, L, heads, dh).transpose(1, 2)
    scores = (qh @ kh.transpose(-1, -2)).float() * dh**-0.5  # (B, H, 1, L)
    weights = scores.softmax(-1)
    dropped = F.dropout(weights, dropout, training) if dropout > 0 else weights
    out = (dropped.to(vh.dtype) @ vh).reshape(B, D)  # (B, D)
    return out, weights.mean(1).squeeze(1)


def no_autocast(device: torch.device) -> contextlib.AbstractContextManager:
    """A region without autocast on ``device`` (nothing to disable on the meta device, where
    models are built to count their parameters and FLOPs)."""
    if device.type == "meta":
        return contextlib.nullcontext()
    return torch.autocast(device.type, enabled=False)


class Rotation(nn.Module):
    """The RollingQ rotation of a [cls] query: q_r = R q. ``R`` and the count are buffers."""

    def __init__(self, dim: int):
        super().__init__()
        self.register_buffer("matrix", torch.eye(dim))
        self.register_buffer("count", torch.zeros((), dtype=torch.long))

    def forward(self, q: Tensor) -> Tensor:
        # In fp32 even under autocast, so the identity rotation is exact.
        with no_autocast(q.device):
            return (q.float() @ self.matrix.T).to(q.dtype)

    @torch.no_grad()
    def compose(self, new: Tensor) -> None:
        """R <- R_new R (rotations compose) and counts the rotation."""
        self.matrix.copy_(new.to(self.matrix) @ self.matrix)
        self.count += 1


def _linear_fp32(x: Tensor, weight: Tensor, bias: Tensor) -> Tensor:
    """x W^T + b in fp32, whatever the autocast around it."""
    with no_autocast(x.device):
        return F.linear(x.float(), weight.float(), bias.float())


@torch.no_grad()
def _stats(
    q_in: Tensor, x: Tensor, wq: tuple[Tensor, Tensor], wk: tuple[Tensor, Tensor],
    rotation: Rotation, weights: Tensor, spans: dict[str, slice],
) -> FusionStats:
    """The RollingQ statistics of a layer, in fp32 whatever the autocast.

    Under bf16 autocast the layer attends with bf16 queries and keys; the statistics are
    recomputed in fp32 from the layer's fp32 inputs instead: q = R (W_q q_in + b_q), and each
    modality's mean key from its mean input token, W_k mean_t(x_t) + b_k (= mean_t k_t, as the
    key map is affine), which costs one (B, D) x (D, D) product a modality.

    Args:
        q_in: The [cls] row the query is projected from, (B, D) or (1, D).
        x: The layer's input sequence (B, L, D) that keys are projected from.
        wq, wk: (weight, bias) of the query and key maps.
    """
    q = rotation(_linear_fp32(q_in, *wq))  # fp32 in, fp32 out
    return FusionStats(
        q_cls=q.expand(x.shape[0], -1),  # (B, D)
        mean_keys={m: _linear_fp32(x[:, s].float().mean(1), *wk) for m, s in spans.items()},
        attention=weights.detach(),
        share={m: weights[:, s].sum(1) for m, s in spans.items()},
    )


class FusionAttention(nn.Module):
    """The published fusion layer ("Vanilla MT"): one single-head attention.

    Separate W_q/W_k/W_v/W_o with bias, scale sqrt(d), attention and output dropout, no
    residual, no FFN, no LayerNorm. The first fusion layer has its own learned [cls]
    (``own_cls``), prepended to the tokens, so its query q = W_q(cls) does not depend on the
    input. A published layer stacked above another (``model.fusion_block: published``) takes the
    previous layer's whole output sequence and queries from its [cls] row, which does.
    """

    def __init__(self, dim: int, dropout: float, own_cls: bool = True):
        super().__init__()
        if own_cls:
            self.cls = nn.Parameter(torch.empty(1, 1, dim))
            nn.init.trunc_normal_(self.cls, std=0.02)
        self.own_cls = own_cls
        self.q, self.k, self.v, self.o = (nn.Linear(dim, dim) for _ in range(4))
        self.dropout = dropout
        self.rotation = Rotation(dim)

    def forward(
        self, tokens: Tensor, spans: dict[str, slice], full: bool
    ) -> tuple[Tensor, FusionStats]:
        """Attends from [cls] (and, when ``full``, from every token) over [cls; tokens].

        Args:
            tokens: (B, L-1, D) modality tokens with ``own_cls``, else the whole fused sequence
                (B, L, D) whose row 0 is [cls]; spans index the modalities in the sequence.
            full: Also compute every token's output (needed when more fusion layers follow).

        Returns:
            The fused sequence (B, L, D) if ``full`` else the [cls] output (B, D), and the stats.
        """
        B = tokens.shape[0]
        if self.own_cls:
            x = torch.cat([self.cls.expand(B, -1, -1), tokens], 1)  # (B, L, D)
            q_in = self.cls[:, 0]  # (1, D): the same query for every input
        else:
            x, q_in = tokens, tokens[:, 0]
        k, v = self.k(x), self.v(x)
        q_cls = self.rotation(self.q(q_in)).expand(B, -1)  # (B, D)
        out_cls, weights = cls_row_attention(q_cls, k, v, 1, self.dropout, self.training)
        stats = _stats(q_in, x, (self.q.weight, self.q.bias), (self.k.weight, self.k.bias),
                       self.rotation, weights, spans)
        if not full:
            return F.dropout(self.o(out_cls), self.dropout, self.training), stats
        q = self.q(x[:, 1:])  # (B, L-1, D): the other rows, plain SDPA
        rest = F.scaled_dot_product_attention(
            q.unsqueeze(1),
            k.unsqueeze(1),
            v.unsqueeze(1),
            dropout_p=self.dropout if self.training else 0.0,
        ).squeeze(1)
        out = torch.cat([out_cls.unsqueeze(1).to(rest.dtype), rest], 1)
        return F.dropout(self.o(out), self.dropout, self.training), stats


class FusionBlock(nn.Module):
    """A pre-norm Transformer block over the fused sequence, stacked above ``FusionAttention``.

    Its [cls] row is computed explicitly (rotatable, with stats); the other rows use SDPA. With
    several heads the rotation acts on the whole (concatenated) query, so it mixes the heads'
    query subspaces, and AIR is the cosine of the concatenated query with the concatenated mean
    key.
    """

    def __init__(self, dim: int, heads: int, mlp_ratio: float):
        super().__init__()
        self.heads = heads
        self.norm1 = nn.LayerNorm(dim, eps=LN_EPS)
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)
        self.norm2 = nn.LayerNorm(dim, eps=LN_EPS)
        self.mlp = Mlp(dim, mlp_ratio)
        self.rotation = Rotation(dim)

    def forward(self, x: Tensor, spans: dict[str, slice], full: bool) -> tuple[Tensor, FusionStats]:
        B, L, D = x.shape
        h = self.norm1(x)
        q, k, v = self.qkv(h).chunk(3, dim=-1)  # (B, L, D) each
        q_cls = self.rotation(q[:, 0])
        out_cls, weights = cls_row_attention(q_cls, k, v, self.heads, 0.0, self.training)
        w, b = self.qkv.weight, self.qkv.bias
        stats = _stats(h[:, 0], h, (w[:D], b[:D]), (w[D : 2 * D], b[D : 2 * D]),
                       self.rotation, weights, spans)
        if full:
            rest = multihead(q[:, 1:], k, v, self.heads)
            attended = torch.cat([out_cls.unsqueeze(1).to(rest.dtype), rest], 1)
            x = x + self.proj(attended)
            return x + self.mlp(self.norm2(x)), stats
        c = x[:, 0] + self.proj(out_cls.to(x.dtype))  # (B, D): only [cls] is needed for logits
        return c + self.mlp(self.norm2(c)), stats
