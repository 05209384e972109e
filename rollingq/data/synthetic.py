"""The built-in synthetic data set: two modalities with a controllable imbalance.

Built so the paper's core phenomenon appears within seconds on CPU (METHOD.md §2, issue 2):

- ``audio`` is the **easy** modality. On a share ``easy_informative`` of the samples every token
  carries the class prototype at signal-to-noise ``easy_snr``; on the rest it carries none.
  It also has ``distractor_channels`` class-free channels of large variance, so test-time
  Gaussian noise scaled by the input's standard deviation swamps its signal.
- ``visual`` is the **hard** modality: always informative, but its signal (``hard_snr``) sits
  on ``hard_tokens`` randomly placed tokens among ``tokens``.

A vanilla attention fusion learns to look at the easy modality and the [cls] query locks onto
its keys (large |AIR|); the samples on which audio is silent are the ones the visual stream
must carry. The data set is fixed by ``data.data_seed`` and does not change with the trial seed.
"""

from __future__ import annotations

import torch

from rollingq.config import DataConfig
from rollingq.data.base import DataBundle, ModalitySpec, Split, carve_val


def _prototypes(n: int, dim: int, g: torch.Generator) -> torch.Tensor:
    p = torch.randn(n, dim, generator=g)
    return p / p.norm(dim=1, keepdim=True) * dim**0.5  # unit-variance per channel


def _make_split(n: int, cfg: DataConfig, protos: dict[str, torch.Tensor], g: torch.Generator) -> Split:
    L, F, C = cfg.tokens, cfg.features, cfg.num_classes
    labels = torch.randint(0, C, (n,), generator=g)
    signal = F - cfg.distractor_channels

    audio = torch.randn(n, L, F, generator=g)
    informative = torch.rand(n, generator=g) < cfg.easy_informative
    audio[:, :, :signal] += (cfg.easy_snr * protos["audio"][labels] * informative[:, None]).unsqueeze(1)
    audio[:, :, signal:] *= cfg.distractor_std

    visual = torch.randn(n, L, F, generator=g)
    where = torch.rand(n, L, generator=g).argsort(1)[:, : cfg.hard_tokens]  # (n, hard_tokens)
    rows = torch.arange(n).unsqueeze(1)
    visual[rows, where] += cfg.hard_snr * protos["visual"][labels].unsqueeze(1)
    return Split({"audio": audio, "visual": visual}, labels)


def load_synthetic(cfg: DataConfig) -> DataBundle:
    """Generates the synthetic data set deterministically from ``cfg.data_seed``."""
    g = torch.Generator().manual_seed(cfg.data_seed)
    signal = cfg.features - cfg.distractor_channels
    if signal < 1:
        raise ValueError(
            f"`distractor_channels < features` must hold, but got "
            f"data.distractor_channels={cfg.distractor_channels}, data.features={cfg.features}"
        )
    protos = {
        "audio": _prototypes(cfg.num_classes, signal, g),
        "visual": _prototypes(cfg.num_classes, cfg.features, g),
    }
    train = _make_split(cfg.train_size, cfg, protos, g)
    test = _make_split(cfg.test_size, cfg, protos, g)
    train, val = carve_val(train, cfg.val_fraction)
    spec = ModalitySpec("sequence", (cfg.tokens, cfg.features))
    return DataBundle(
        specs={"audio": spec, "visual": spec},
        num_classes=cfg.num_classes,
        train=train, val=val, test=test, favoured="audio",
    )
