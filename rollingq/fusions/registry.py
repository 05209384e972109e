"""The fusion registry: for each ``model.fusion`` choice, what it builds on the model, how it
fuses the encoder streams, which [cls] queries RollingQ may rotate, and each modality's own
logits for the balancing methods.

A fusion here is a stateless strategy. Its modules live on the model under the attribute names
that checkpoints, the pretrained loader and Table 4's counts know (``fusion`` and ``head`` for
attn; ``head`` for concat, sum and one modality alone; ``bottleneck`` and ``head`` for mbt;
``mmml``, ``jmt``, ``mult``), so a checkpoint written before the registry loads unchanged
(tests/rollingq/test_model.py pins the keys). ``FUSIONS`` has one entry per choice of
``rollingq.config.Fusion``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from rollingq.config import ModelConfig
from rollingq.fusions.attention import FusionAttention, FusionBlock, FusionStats
from rollingq.fusions.jmt import JMT
from rollingq.fusions.mbt import Bottleneck
from rollingq.fusions.mmml import MMML
from rollingq.fusions.mult import MulT

Streams = dict[str, Tensor]  # modality -> (B, 1 + L_m, D) tokens, encoder [cls] first


class Fusion:
    """The common part: every modality of the data set, its encoder's normed tokens, no
    rotatable query, the detached probes as the branch logits."""

    probes_train_encoders = False  # the probes read the encoder [cls] detached

    def modalities(self, available: list[str]) -> list[str]:
        """The modalities the model encodes, in fusion order."""
        return list(available)

    def build(self, model: nn.Module, num_classes: int, cfg: ModelConfig) -> None:
        """Attach this fusion's modules to ``model`` (after its encoders and probes)."""
        raise NotImplementedError

    def streams(self, model: nn.Module, inputs: dict[str, Tensor]) -> Streams:
        return {m: model.encoders[m](inputs[m]) for m in model.modalities}

    def fuse(self, model: nn.Module, streams: Streams) -> tuple[Tensor, list[FusionStats]]:
        """(B, C) logits and the stats of each rotatable layer, first to last."""
        raise NotImplementedError

    def rotations(self, model: nn.Module) -> list[nn.Module]:
        return []

    def branch_logits(self, model: nn.Module, features: Streams,
                      probe_logits: dict[str, Tensor]) -> dict[str, Tensor]:
        """Each modality's own (B, C) logits; without an additive split, the probe heads."""
        return dict(probe_logits)


class Attention(Fusion):
    """Vanilla MT: the published single-head fusion attention whose [cls] query RollingQ
    rotates, and ``fusion_layers - 1`` layers above it (pre-norm blocks, or more published
    layers that share the first one's [cls] row)."""

    def build(self, model, num_classes, cfg):
        d = cfg.dim

        def above() -> nn.Module:
            if cfg.fusion_block == "published":
                return FusionAttention(d, cfg.fusion_dropout, own_cls=False)
            return FusionBlock(d, cfg.heads, cfg.mlp_ratio)

        model.fusion = nn.ModuleList([FusionAttention(d, cfg.fusion_dropout)]
                                     + [above() for _ in range(cfg.fusion_layers - 1)])
        model.head = nn.Linear(d, num_classes)

    def fuse(self, model, streams):
        x, stats = torch.cat(list(streams.values()), 1), []  # (B, L - 1, D)
        last = len(model.fusion) - 1
        for i, layer in enumerate(model.fusion):
            x, s = layer(x, model.spans, full=i < last)
            stats.append(s)
        return model.head(x), stats

    def rotations(self, model):
        return [layer.rotation for layer in model.fusion]


class Concat(Fusion):
    """One head on the concatenated [cls] features; its block of each modality is that
    modality's logits, ``z_m W_m^T + b / M``."""

    def build(self, model, num_classes, cfg):
        model.head = nn.Linear(cfg.dim * len(model.modalities), num_classes)

    def fuse(self, model, streams):
        return model.head(torch.cat([z[:, 0] for z in streams.values()], -1)), []

    def branch_logits(self, model, features, probe_logits):
        d, share = model.cfg.dim, model.head.bias / len(model.modalities)
        return {m: F.linear(features[m], model.head.weight[:, i * d : (i + 1) * d], share)
                for i, m in enumerate(model.modalities)}


class Sum(Fusion):
    """One head per modality, the logits summed; each head is its modality's logits."""

    def build(self, model, num_classes, cfg):
        model.head = nn.ModuleDict({m: nn.Linear(cfg.dim, num_classes) for m in model.modalities})

    def fuse(self, model, streams):
        return sum(model.head[m](z[:, 0]) for m, z in streams.items()), []

    def branch_logits(self, model, features, probe_logits):
        return {m: model.head[m](features[m]) for m in model.modalities}


class Bottlenecks(Concat):
    """MBT: bottleneck layers on the unnormalised encoder streams, then each encoder's final
    norm (as published), then Concat's head and split."""

    def build(self, model, num_classes, cfg):
        model.bottleneck = Bottleneck(model.modalities, cfg)
        super().build(model, num_classes, cfg)

    def streams(self, model, inputs):
        raw = {m: model.encoders[m](inputs[m], norm=False) for m in model.modalities}
        return {m: model.encoders[m].norm(z) for m, z in model.bottleneck(raw).items()}


class Pair(Fusion):
    """A fusion of exactly two modalities in its own module (``model.<name>``)."""

    def __init__(self, name: str, module: type[nn.Module]):
        self.name, self.module = name, module

    def modalities(self, available):
        if len(available) != 2:
            raise ValueError(f"model.fusion={self.name!r} pairs two modalities; the data set has "
                             f"{len(available)}: {', '.join(available)}")
        return list(available)

    def build(self, model, num_classes, cfg):
        setattr(model, self.name, self.module(model.modalities, num_classes, cfg))

    def fuse(self, model, streams):
        return getattr(model, self.name)(streams), []


class WithReadout(Fusion):
    """A fusion module with a choice of read-out (``model.readout``); with ``attn`` its read-out
    is the published fusion attention, whose [cls] query RollingQ rotates."""

    def __init__(self, name: str, module: type[nn.Module], probes_train_encoders: bool = False):
        self.name, self.module = name, module
        self.probes_train_encoders = probes_train_encoders

    def build(self, model, num_classes, cfg):
        setattr(model, self.name, self.module(model.modalities, num_classes, cfg))

    def fuse(self, model, streams):
        return getattr(model, self.name)(streams, model.spans)

    def rotations(self, model):
        readout = getattr(model, self.name).readout
        return [] if readout is None else [readout.rotation]


class MMMLFusion(WithReadout, Pair):
    """MMML: two modalities; its unimodal losses train the encoders through the probes."""

    def __init__(self):
        WithReadout.__init__(self, "mmml", MMML, probes_train_encoders=True)


class Alone(Fusion):
    """One modality alone: its encoder, a head on its [cls]."""

    def __init__(self, modality: str):
        self.modality = modality

    def modalities(self, available):
        if self.modality not in available:
            raise ValueError(f"model.fusion={self.modality!r} needs a {self.modality} modality; "
                             f"the data set has: {', '.join(available)}")
        return [self.modality]

    def build(self, model, num_classes, cfg):
        model.head = nn.Linear(cfg.dim, num_classes)

    def fuse(self, model, streams):
        return model.head(streams[self.modality][:, 0]), []


FUSIONS: dict[str, Fusion] = {
    "attn": Attention(),
    "concat": Concat(),
    "sum": Sum(),
    "mbt": Bottlenecks(),
    "mmml": MMMLFusion(),
    "jmt": Pair("jmt", JMT),
    "mult": WithReadout("mult", MulT),
    **{m: Alone(m) for m in ("audio", "visual", "text")},
}
