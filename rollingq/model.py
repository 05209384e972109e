"""The multimodal Transformer: one encoder per modality, a fusion, detached probes.

    inputs {modality: tensor} -> Encoder per modality -> tokens (B, 1 + L_m, D) each
        -> fusion (rollingq.fusions.registry: what each builds, fuses, rotates): attn (the
           published single-head layer + optional further layers, pre-norm blocks or published
           layers; RollingQ acts on a [cls] query) | concat | sum | mbt (bottleneck)
           | mmml (cross-modal layers) | jmt (joint representation and cross-attentions)
           | mult (crossmodal transformers) | one modality alone
        -> ModelOutput(logits, probe logits, [cls] query, mean keys, attention row, shares)

An encoder is a ViT-B-style stream with its own [cls] and learned positional embeddings, as
published; the encoder [cls] is part of its modality's tokens in the fusion.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import Tensor, nn
from torch.utils.checkpoint import checkpoint

from rollingq.config import ModelConfig
from rollingq.data.base import ModalitySpec
from rollingq.fusions.attention import FusionStats
from rollingq.fusions.mult import MulTLayer
from rollingq.fusions.registry import FUSIONS
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
        self.fusion_kind = FUSIONS[cfg.fusion]  # the fusion's strategy (not a module; no state)
        self.modalities = self.fusion_kind.modalities(list(specs))
        self.encoders = nn.ModuleDict({m: Encoder(specs[m], cfg) for m in self.modalities})
        self.probes = nn.ModuleDict({m: nn.Linear(cfg.dim, num_classes) for m in self.modalities})
        # Positions of each modality in the fused sequence [cls; tokens_1; tokens_2; ...].
        self.spans, start = {}, 1
        for m in self.modalities:
            n = self.encoders[m].num_tokens
            self.spans[m], start = slice(start, start + n), start + n
        self.fusion_kind.build(self, num_classes, cfg)
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
        """The Rotation modules of the fusion's rotatable [cls] queries, first to last (empty
        without an attention read-out)."""
        return self.fusion_kind.rotations(self)

    def forward(self, inputs: dict[str, Tensor]) -> ModelOutput:
        streams = self.fusion_kind.streams(self, inputs)  # (B, 1 + L_m, D) each
        # detached probes only monitor; MMML's unimodal losses train the encoders
        detach = not self.fusion_kind.probes_train_encoders
        probes = {m: self.probes[m](z[:, 0].detach() if detach else z[:, 0])
                  for m, z in streams.items()}
        logits, stats = self.fusion_kind.fuse(self, streams)
        features = {m: z[:, 0] for m, z in streams.items()}
        return ModelOutput(logits=logits, probe_logits=probes, features=features, fusion=stats)

    def branch_logits(self, out: ModelOutput) -> dict[str, Tensor]:
        """Each modality's own (B, C) logits, for the balancing methods' scores.

        concat and mbt: the head's block of each modality, ``z_m W_m^T + b / M``; sum: each
        modality's own head; the others (no additive split): the detached probe heads.
        """
        return self.fusion_kind.branch_logits(self, out.features, out.probe_logits)


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
