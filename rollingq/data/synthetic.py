"""The built-in synthetic data set: two modalities with a controllable imbalance.

Built so the paper's core phenomenon shows within seconds on CPU; every number
below is a ``DataConfig`` default (``tokens`` x ``features`` = 8 x 16 per modality, 4 classes,
class prototypes with unit variance per channel):

- ``audio`` is the **easy** modality. On a share ``easy_informative`` (0.8) of the samples every
  token carries the class prototype on its ``features - distractor_channels`` signal channels,
  scaled by ``easy_snr`` (1.5); averaged over the tokens that is far above the unit noise, so
  audio alone is learned in the first epoch (about 0.8 + 0.2 / 4 = 0.85 accuracy). On the
  other samples audio carries no class at all. Its ``distractor_channels`` (8) class-free
  channels have std ``distractor_std`` (8), so they dominate ``std(audio)``: the additive test
  noise ``x + λ·std(x)·N(0, 1)`` puts noise of std ≈ 6λ on every signal channel, which at
  λ = 1 outweighs the signal even after averaging the tokens.
- ``visual`` is the **hard** modality: always informative, but its signal (``hard_snr`` 0.8 on
  all channels) sits on ``hard_tokens`` (1) randomly placed token(s) among ``tokens``, so the
  encoder has to find the token, and even a well-trained visual stream is well short of
  perfect (its probe reaches about 0.75-0.8).

A vanilla attention fusion learns audio first; its [cls] query then favours the audio keys
(|AIR| about 0.4-0.8, 55-60 % of the attention on audio), and with SGD the visual encoder,
whose gradient scales with the attention its tokens get, is under-trained. RollingQ's rotations
rebalance the attention, the visual probe improves and the model leans less on audio, so noise
on audio costs it less accuracy. ``tests/rollingq/test_phenomenon.py`` asserts this over three
seeds with the default config. With Adam(W) the same data show the attention and noise effects,
but the visual probe barely improves (+0 to +2 points), most likely because Adam's
per-parameter step normalisation cancels the attention-scaled starvation of the visual encoder.

The data set is fixed by ``data.data_seed`` and does not change with the trial seed.
``data.modalities`` renames the two, the easy one first: ``text,visual`` gives MOSEI's pair
(text the strong modality, as there) for the fusions that need text (MulT's rows of Table 1).
"""

from __future__ import annotations

import torch

from rollingq.config import DataConfig
from rollingq.data.base import DataBundle, ModalitySpec, Split, carve_val

# the data config's fields the generator reads: the synthetic data set's fingerprint
SETTINGS = ("train_size", "test_size", "num_classes", "tokens", "features", "easy_informative",
            "easy_snr", "hard_snr", "hard_tokens", "distractor_channels", "distractor_std",
            "data_seed", "val_fraction", "modalities")


def _prototypes(n: int, dim: int, g: torch.Generator) -> torch.Tensor:
    p = torch.randn(n, dim, generator=g)
    return p / p.norm(dim=1, keepdim=True) * dim**0.5  # unit-variance per channel


def _make_split(
    n: int, cfg: DataConfig, protos: dict[str, torch.Tensor], g: torch.Generator
) -> Split:
    L, F, C = cfg.tokens, cfg.features, cfg.num_classes
    labels = torch.randint(0, C, (n,), generator=g)
    signal = F - cfg.distractor_channels

    audio = torch.randn(n, L, F, generator=g)
    informative = torch.rand(n, generator=g) < cfg.easy_informative
    p_easy, p_hard = protos.values()
    easy = cfg.easy_snr * p_easy[labels] * informative[:, None]  # (n, signal)
    audio[:, :, :signal] += easy.unsqueeze(1)
    audio[:, :, signal:] *= cfg.distractor_std

    visual = torch.randn(n, L, F, generator=g)
    where = torch.rand(n, L, generator=g).argsort(1)[:, : cfg.hard_tokens]  # (n, hard_tokens)
    rows = torch.arange(n).unsqueeze(1)
    visual[rows, where] += cfg.hard_snr * p_hard[labels].unsqueeze(1)
    easy_name, hard_name = protos  # the easy modality first (data.modalities)
    return Split({easy_name: audio, hard_name: visual}, labels)


def load_synthetic(cfg: DataConfig) -> DataBundle:
    """Generates the synthetic data set deterministically from ``cfg.data_seed``."""
    g = torch.Generator().manual_seed(cfg.data_seed)
    signal = cfg.features - cfg.distractor_channels
    if signal < 1:
        raise ValueError(
            f"`distractor_channels < features` must hold, but got "
            f"data.distractor_channels={cfg.distractor_channels}, data.features={cfg.features}"
        )
    easy, hard = [m.strip() for m in cfg.modalities.split(",")] if cfg.modalities else (
        "audio", "visual")
    protos = {
        easy: _prototypes(cfg.num_classes, signal, g),
        hard: _prototypes(cfg.num_classes, cfg.features, g),
    }
    train = _make_split(cfg.train_size, cfg, protos, g)
    test = _make_split(cfg.test_size, cfg, protos, g)
    train, val = carve_val(train, cfg.val_fraction)
    spec = ModalitySpec("sequence", (cfg.tokens, cfg.features))
    return DataBundle(
        specs={easy: spec, hard: spec},
        num_classes=cfg.num_classes,
        train=train, val=val, test=test, favoured=easy,
    )
