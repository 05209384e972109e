"""The multimodal Transformer: one encoder per modality, a fusion, detached probes.

    inputs {modality: tensor} -> Encoder per modality -> tokens (B, 1 + L_m, D) each
        -> fusion (rollingq.fusions, one module each): attn (the published single-head
           layer + optional further layers, pre-norm blocks or published layers; RollingQ acts
           on a [cls] query) | concat | sum | mbt (bottleneck) | mmml (cross-modal layers)
           | jmt (joint representation and cross-attentions) | mult (crossmodal transformers)
           | one modality alone
        -> ModelOutput(logits, probe logits, [cls] query, mean keys, attention row, shares)

An encoder is a ViT-B-style stream with its own [cls] and learned positional embeddings, as
published; the encoder [cls] is part of its modality's tokens in the fusion.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.checkpoint import checkpoint

from rollingq.config import ModelConfig
from rollingq.data.base import ModalitySpec
from rollingq.fusions.attention import FusionAttention, FusionBlock, FusionStats
from rollingq.fusions.jmt import JMT
from rollingq.fusions.mbt import Bottleneck
from rollingq.fusions.mmml import MMML
from rollingq.fusions.mult import MulT, MulTLayer
from rollingq.layers import LN_EPS, Block, LinearEmbed, PatchEmbed2d, TubeletEmbed


@dataclass
class ModelOutput:
    """One forward pass. Fusion fields are None for fusions without an attention [cls].

    Attributes:
        logits: (B, C) fused prediction.
        probe_logits: Per-modality (B, C) from a linear probe on the detached encoder [cls].
        features: Per-modality (B, D) [cls] feature that feeds the fusion (not detached): the
            encoder's [cls], or for ``mbt`` the stream's [cls] after the bottleneck layers (the
            probes read those too, as published).
        fusion: Stats of each rotatable fusion layer, first to last; the last one drives RollingQ.
    """

    logits: Tensor
    probe_logits: dict[str, Tensor]
    features: dict[str, Tensor] = field(default_factory=dict)
    fusion: list[FusionStats] = field(default_factory=list)

    @property
    def q_cls(self) -> Tensor | None:
        return self.fusion[-1].q_cls if self.fusion else None

    @property
    def mean_keys(self) -> dict[str, Tensor] | None:
        return self.fusion[-1].mean_keys if self.fusion else None

    @property
    def attention(self) -> Tensor | None:
        return self.fusion[-1].attention if self.fusion else None

    @property
    def share(self) -> dict[str, Tensor] | None:
        return self.fusion[-1].share if self.fusion else None


def _embed(spec: ModalitySpec, dim: int, patch: int) -> tuple[nn.Module, int]:
    """The token embedding of a modality and the number of tokens it makes."""
    if spec.kind == "spectrogram":
        rows, cols = PatchEmbed2d.grid(spec.shape, patch)
        assert rows and cols, f"spectrogram {spec.shape} smaller than patch {patch}"
        return PatchEmbed2d(dim, patch), rows * cols
    if spec.kind == "frames":
        t, c, h, w = spec.shape
        return TubeletEmbed(dim, patch, c), t * (h // patch) * (w // patch)
    if spec.kind == "sequence":
        length, features = spec.shape if len(spec.shape) == 2 else (1, spec.shape[0])
        return LinearEmbed(dim, features), length
    raise ValueError(f"unknown modality kind {spec.kind!r}; valid: spectrogram, frames, sequence")


class Encoder(nn.Module):
    """One modality's stream: embedding, own [cls], positional embedding, blocks, final norm."""

    def __init__(self, spec: ModalitySpec, cfg: ModelConfig):
        super().__init__()
        self.embed, n = _embed(spec, cfg.dim, cfg.patch_size)
        self.cls = nn.Parameter(torch.randn(1, 1, cfg.dim) * 1e-6)
        self.pos = nn.Parameter(torch.zeros(1, n + 1, cfg.dim))
        nn.init.trunc_normal_(self.pos, std=0.02)
        self.blocks = nn.ModuleList(
            Block(cfg.dim, cfg.heads, cfg.mlp_ratio) for _ in range(cfg.depth)
        )
        self.norm = nn.LayerNorm(cfg.dim, eps=LN_EPS)
        self.num_tokens = n + 1
        self.checkpointing = False  # train.activation_checkpointing (set by the model)

    def tokens(self, x: Tensor) -> Tensor:
        z = self.embed(x)  # (B, L, D)
        return torch.cat([self.cls.expand(z.shape[0], -1, -1), z], 1) + self.pos

    def forward(self, x: Tensor, norm: bool = True) -> Tensor:
        """(B, 1 + L, D) tokens after the blocks and, unless ``norm`` is False (MBT applies the
        final norm after its bottleneck layers, as published), the final LayerNorm."""
        z = self.tokens(x)
        recompute = self.checkpointing and self.training and torch.is_grad_enabled()
        for block in self.blocks:
            # activation checkpointing: keep only the block's input, recompute the rest in the
            # backward pass (the blocks have no dropout, so the recomputation is exact)
            z = checkpoint(block, z, use_reentrant=False) if recompute else block(z)
        return self.norm(z) if norm else z


class MultimodalTransformer(nn.Module):
    """Encoders + fusion + probes for the modalities a data set provides.

    Args:
        specs: Modality name -> input spec, in fusion order.
        num_classes: Output classes.
        cfg: The model group of the config.
    """

    def __init__(self, specs: dict[str, ModalitySpec], num_classes: int, cfg: ModelConfig):
        super().__init__()
        self.cfg = cfg
        self.specs = dict(specs)
        unimodal = cfg.fusion in ("audio", "visual", "text")
        if unimodal and cfg.fusion not in specs:
            raise ValueError(
                f"model.fusion={cfg.fusion!r} needs a {cfg.fusion} modality; "
                f"the data set has: {', '.join(specs)}"
            )
        self.modalities = [cfg.fusion] if unimodal else list(specs)
        self.encoders = nn.ModuleDict({m: Encoder(specs[m], cfg) for m in self.modalities})
        self.probes = nn.ModuleDict({m: nn.Linear(cfg.dim, num_classes) for m in self.modalities})
        # Positions of each modality in the fused sequence [cls; tokens_1; tokens_2; ...].
        self.spans, start = {}, 1
        for m in self.modalities:
            n = self.encoders[m].num_tokens
            self.spans[m], start = slice(start, start + n), start + n
        d = cfg.dim
        if cfg.fusion == "attn":
            def above() -> nn.Module:  # a fusion layer above the first (MT*)
                if cfg.fusion_block == "published":
                    return FusionAttention(d, cfg.fusion_dropout, own_cls=False)
                return FusionBlock(d, cfg.heads, cfg.mlp_ratio)

            self.fusion = nn.ModuleList(
                [FusionAttention(d, cfg.fusion_dropout)]
                + [above() for _ in range(cfg.fusion_layers - 1)]
            )
            self.head = nn.Linear(d, num_classes)
        elif cfg.fusion == "concat":
            self.head = nn.Linear(d * len(self.modalities), num_classes)
        elif cfg.fusion == "sum":
            self.head = nn.ModuleDict({m: nn.Linear(d, num_classes) for m in self.modalities})
        elif cfg.fusion == "mbt":
            self.bottleneck = Bottleneck(self.modalities, cfg)
            self.head = nn.Linear(d * len(self.modalities), num_classes)
        elif cfg.fusion == "mmml":
            if len(self.modalities) != 2:
                raise ValueError(f"model.fusion='mmml' pairs two modalities; the data set has "
                                 f"{len(self.modalities)}: {', '.join(self.modalities)}")
            self.mmml = MMML(self.modalities, num_classes, cfg)
        elif cfg.fusion == "jmt":
            if len(self.modalities) != 2:
                raise ValueError(f"model.fusion='jmt' pairs two modalities; the data set has "
                                 f"{len(self.modalities)}: {', '.join(self.modalities)}")
            self.jmt = JMT(self.modalities, num_classes, cfg)
        elif cfg.fusion == "mult":
            self.mult = MulT(self.modalities, num_classes, cfg)
        else:
            self.head = nn.Linear(d, num_classes)
        self.apply(_init_weights)
        for module in self.modules():  # MulT's layers keep their reference's init
            if isinstance(module, MulTLayer):
                module.init_as_reference()

    def set_activation_checkpointing(self, on: bool) -> None:
        """``train.activation_checkpointing``: the encoder blocks keep only their inputs for the
        backward pass and recompute their activations there (training mode only)."""
        for encoder in self.encoders.values():
            encoder.checkpointing = on

    @property
    def rotations(self) -> list[nn.Module]:
        """The Rotation modules of the fusion layers, first to last (empty without attn)."""
        if self.cfg.fusion == "attn":
            return [layer.rotation for layer in self.fusion]
        fusion = getattr(self, self.cfg.fusion, None)
        if self.cfg.fusion in ("mmml", "mult") and fusion.readout is not None:
            return [fusion.readout.rotation]
        return []

    def forward(self, inputs: dict[str, Tensor]) -> ModelOutput:
        fusion = self.cfg.fusion
        if fusion == "mbt":  # bottleneck layers on the unnormalised streams, then their norms
            raw = {m: self.encoders[m](inputs[m], norm=False) for m in self.modalities}
            streams = {m: self.encoders[m].norm(z) for m, z in self.bottleneck(raw).items()}
        else:
            streams = {m: self.encoders[m](inputs[m]) for m in self.modalities}  # (B, 1+L_m, D)
        # detached probes only monitor; MMML's unimodal losses train the encoders
        probes = {m: self.probes[m](z[:, 0] if fusion == "mmml" else z[:, 0].detach())
                  for m, z in streams.items()}
        stats: list[FusionStats] = []
        if fusion == "attn":
            x = torch.cat(list(streams.values()), 1)  # (B, L-1, D)
            last = len(self.fusion) - 1
            for i, layer in enumerate(self.fusion):
                x, s = layer(x, self.spans, full=i < last)
                stats.append(s)
            logits = self.head(x)
        elif fusion == "concat":
            logits = self.head(torch.cat([z[:, 0] for z in streams.values()], -1))
        elif fusion == "sum":
            logits = sum(self.head[m](z[:, 0]) for m, z in streams.items())
        elif fusion == "mbt":
            logits = self.head(torch.cat([z[:, 0] for z in streams.values()], -1))
        elif fusion == "mmml":
            logits, stats = self.mmml(streams, self.spans)
        elif fusion == "mult":
            logits, stats = self.mult(streams, self.spans)
        elif fusion == "jmt":
            logits = self.jmt(streams)
        else:
            logits = self.head(streams[fusion][:, 0])
        features = {m: z[:, 0] for m, z in streams.items()}
        return ModelOutput(logits=logits, probe_logits=probes, features=features, fusion=stats)

    def branch_logits(self, out: ModelOutput) -> dict[str, Tensor]:
        """Each modality's own (B, C) logits, for the balancing methods' scores.

        concat and mbt: the head's block of each modality, ``z_m W_m^T + b / M``; sum: each
        modality's own head; the others (no additive split): the detached probe heads.
        """
        if self.cfg.fusion in ("concat", "mbt"):
            d, share = self.cfg.dim, self.head.bias / len(self.modalities)
            return {m: F.linear(out.features[m], self.head.weight[:, i * d : (i + 1) * d], share)
                    for i, m in enumerate(self.modalities)}
        if self.cfg.fusion == "sum":
            return {m: self.head[m](out.features[m]) for m in self.modalities}
        return dict(out.probe_logits)


def _init_weights(module: nn.Module) -> None:
    """The published ``weight_init``, applied to every module: xavier-normal Linear weights and
    zero biases; Conv2d (the spectrogram patch embedding) kaiming-normal weights (fan-out, ReLU
    gain: std sqrt(2 / (D p^2)) = 0.0032 at D = 768, p = 16) with PyTorch's default bias. The
    frames' Conv3d and the LayerNorms keep PyTorch's defaults, as published."""
    if isinstance(module, nn.Linear):
        nn.init.xavier_normal_(module.weight)
        nn.init.zeros_(module.bias)
    elif isinstance(module, nn.Conv2d):
        nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
