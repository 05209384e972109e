"""Building blocks: token embeddings, pre-norm Transformer blocks, and the fusion attention.

The encoder blocks follow the ViT-B layout of the published model (METHOD.md §3): pre-norm,
qkv bias, LayerNorm eps 1e-6, GELU MLP, no dropout, fused attention
(``scaled_dot_product_attention``).

``FusionAttention`` is the layer RollingQ acts on. It owns a rotation ``R`` (a buffer: saved,
never trained) applied to the [cls] query before attention, and it computes the [cls] row of
the attention explicitly, so the diagnostics (AIR, attention shares) cost one row, never the
L x L map.
"""

from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

LN_EPS = 1e-6


class PatchEmbed2d(nn.Module):
    """A (B, H, W) spectrogram -> (B, W/p * H/p, D) tokens: transpose, Conv2d(1 -> D, p x p).

    As published, the spectrogram is transposed to (W, H) before the patches are cut, so the
    tokens run along W first: CREMA-D's (257 frequency, 188 time) spectrogram gives an 11 x 16
    grid in time-major order (token = t * 16 + f); Kinetics-Sounds' (1024 time, 128 mel) fbank
    gives 8 x 64 in mel-major order. The parameters are the Conv2d's (as published, and as
    pretrained weights name them); the forward is the same map written as one matrix product
    over the non-overlapping patches (rows and columns past the last whole patch dropped, as the
    strided convolution does).
    """

    def __init__(self, dim: int, patch: int):
        super().__init__()
        self.patch = patch
        self.proj = nn.Conv2d(1, dim, patch, stride=patch)

    @staticmethod
    def grid(shape: tuple[int, int], patch: int) -> tuple[int, int]:
        """The (rows, columns) patch grid of an (H, W) spectrogram: (W/p, H/p)."""
        h, w = shape
        return w // patch, h // patch

    def forward(self, x: Tensor) -> Tensor:
        x = x.transpose(1, 2)  # (B, W, H): the published orientation
        B, H, W = x.shape
        p, h, w = self.patch, H // self.patch, W // self.patch
        patches = x[:, : h * p, : w * p].reshape(B, h, p, w, p).transpose(2, 3)
        weight = self.proj.weight.view(self.proj.out_channels, -1)
        return F.linear(patches.reshape(B, h * w, p * p), weight, self.proj.bias)  # (B, L, D)


class TubeletEmbed(nn.Module):
    """(B, T, 3, H, W) frames -> (B, T * H/p * W/p, D) tokens: Conv3d(3 -> D, (1, p, p)).

    As ``PatchEmbed2d``: the Conv3d's parameters, computed as one matrix product over the
    patches. On CPU (CREMA-D frames, batch 8, one thread) the forward took 41 ms instead of
    the Conv3d's 55 ms, forward + weight gradients 83 instead of 90 ms.
    """

    def __init__(self, dim: int, patch: int, channels: int = 3):
        super().__init__()
        self.patch = patch
        self.proj = nn.Conv3d(channels, dim, (1, patch, patch), stride=(1, patch, patch))

    def forward(self, x: Tensor) -> Tensor:
        B, T, C, H, W = x.shape
        p, h, w = self.patch, H // self.patch, W // self.patch
        patches = x[..., : h * p, : w * p].reshape(B, T, C, h, p, w, p)
        patches = patches.permute(0, 1, 3, 5, 2, 4, 6).reshape(B, T * h * w, C * p * p)
        weight = self.proj.weight.view(self.proj.out_channels, -1)
        return F.linear(patches, weight, self.proj.bias)  # (B, L, D)


class LinearEmbed(nn.Module):
    """(B, L, F) feature sequences (or (B, F) vectors) -> (B, L, D) tokens."""

    def __init__(self, dim: int, features: int):
        super().__init__()
        self.proj = nn.Linear(features, dim)

    def forward(self, x: Tensor) -> Tensor:
        return self.proj(x if x.dim() == 3 else x.unsqueeze(1))


class SelfAttention(nn.Module):
    """Multi-head self-attention with a fused qkv projection and SDPA."""

    def __init__(self, dim: int, heads: int):
        super().__init__()
        assert dim % heads == 0, f"dim={dim} must be divisible by heads={heads}"
        self.heads = heads
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: Tensor) -> Tensor:
        B, L, D = x.shape
        q, k, v = self.qkv(x).view(B, L, 3, self.heads, D // self.heads).permute(2, 0, 3, 1, 4)
        out = F.scaled_dot_product_attention(q, k, v)  # (B, H, L, Dh)
        return self.proj(out.transpose(1, 2).reshape(B, L, D))


class Mlp(nn.Module):
    def __init__(self, dim: int, ratio: float):
        super().__init__()
        hidden = int(dim * ratio)
        self.fc1, self.act, self.fc2 = nn.Linear(dim, hidden), nn.GELU(), nn.Linear(hidden, dim)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc2(self.act(self.fc1(x)))


def multihead(q: Tensor, k: Tensor, v: Tensor, heads: int, dropout: float = 0.0,
              training: bool = False, mask: Tensor | None = None) -> Tensor:
    """SDPA over projected (B, Lq, D) queries and (B, Lk, D) keys and values -> (B, Lq, D);
    ``mask``: (Lq, Lk) booleans, True where a query may attend to a key."""
    B, L, D = q.shape
    split = lambda t: t.reshape(B, t.shape[1], heads, D // heads).transpose(1, 2)
    out = F.scaled_dot_product_attention(split(q), split(k), split(v), attn_mask=mask,
                                         dropout_p=dropout if training else 0.0)
    return out.transpose(1, 2).reshape(B, L, D)


class Block(nn.Module):
    """Pre-norm Transformer block: x + attn(ln(x)), then x + mlp(ln(x))."""

    def __init__(self, dim: int, heads: int, mlp_ratio: float = 4.0):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=LN_EPS)
        self.attn = SelfAttention(dim, heads)
        self.norm2 = nn.LayerNorm(dim, eps=LN_EPS)
        self.mlp = Mlp(dim, mlp_ratio)

    def forward(self, x: Tensor) -> Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


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
