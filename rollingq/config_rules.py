"""The rules a config obeys beyond its types and choices (``Config.validate`` runs them): the data
set's, the model's with RollingQ's and the balancing methods', and training's. Each rule is a
``need(ok, key, rule, fix)``: a broken one is a ConfigError naming the key, the value, the rule,
where the value came from and the fix."""

from __future__ import annotations

import typing
from pathlib import Path

from rollingq.config import (
    BALANCE_FUSIONS,
    MMML_HEADS,
    MODALITIES,
    MULT_HEADS,
    READOUT_FUSIONS,
    REAL_DATASETS,
    Config,
)

Need = typing.Callable[..., None]  # Config.validate's need(ok, key, rule, fix="")


def check_data(c: Config, need: Need) -> None:
    """The data group's rules (and its ties to the model's patch size)."""
    d, m = c.data, c.model
    need(d.name != "features" or bool(d.root), "data.root", "data.root != ''",
         "the features data set reads train.npz/test.npz from data.root")
    need(d.name not in REAL_DATASETS or bool(d.root)
         or (d.name == "mosei" and Path(d.pickle).is_absolute()), "data.root",
         "data.root != ''", f"the {d.name} data set reads its files from data.root "
         "(the expected trees are in docs/data.md)")
    mods = [x.strip() for x in d.modalities.split(",")] if d.modalities.strip() else []
    need(all(x in MODALITIES for x in mods) and len(set(mods)) == len(mods),
         "data.modalities", "modalities: distinct names from audio, visual, text",
         "e.g. data.modalities=visual,text")
    need(d.name != "synthetic" or len(mods) in (0, 2), "data.modalities",
         "two names for the synthetic data set, the easy modality first",
         "e.g. data.modalities=text,visual (default audio,visual)")
    default_mods = {"mosei": ["visual", "text"]}.get(d.name, ["audio", "visual"])
    need(not d.favoured or d.name == "features" or d.favoured in (mods or default_mods),
         "data.favoured", "favoured: one of the data set's modalities, or ''",
         f"valid: {', '.join(mods or default_mods)}")
    need(d.decode_size >= 1, "data.decode_size", "decode_size >= 1")
    need(d.name not in ("cremad", "kinetics_sounds") or d.frame_size >= m.patch_size,
         "data.frame_size", "frame_size >= model.patch_size",
         f"frames smaller than a patch make no tokens; model.patch_size={m.patch_size}")
    need(d.workers >= 0, "data.workers", "workers >= 0", "0 uses every available CPU")
    need(0 <= d.val_fraction < 1, "data.val_fraction", "0 <= val_fraction < 1")
    need(d.num_classes >= 2, "data.num_classes", "num_classes >= 2")
    need(0 <= d.easy_informative <= 1, "data.easy_informative", "0 <= easy_informative <= 1")
    need(1 <= d.hard_tokens <= d.tokens, "data.hard_tokens", "1 <= hard_tokens <= tokens")
    need(d.train_size >= 2 * d.num_classes, "data.train_size", "train_size >= 2 * num_classes")


def check_model(c: Config, need: Need) -> None:
    """The model's, RollingQ's and the balancing methods' rules."""
    m, r, b = c.model, c.rollingq, c.balance
    need(m.fusion_layers >= 1, "model.fusion_layers", "fusion_layers >= 1")
    need(m.dim >= 1, "model.dim", "dim >= 1")
    need(m.depth >= 0, "model.depth", "depth >= 0")
    need(m.heads >= 1 and m.dim % m.heads == 0, "model.heads", "dim % heads == 0",
         f"pick heads that divide model.dim={m.dim}")
    need(m.patch_size >= 1, "model.patch_size", "patch_size >= 1")
    need(0 <= m.fusion_dropout < 1, "model.fusion_dropout", "0 <= fusion_dropout < 1")
    need(0 <= m.mmml_dropout < 1, "model.mmml_dropout", "0 <= mmml_dropout < 1")
    need(m.bottleneck_tokens >= 1, "model.bottleneck_tokens", "bottleneck_tokens >= 1")
    need(r.beta >= 0, "rollingq.beta", "beta >= 0")
    need(r.rho >= 0, "rollingq.rho", "rho >= 0")
    need(r.max_rotations >= 0, "rollingq.max_rotations", "max_rotations >= 0")
    need(not r.enabled or m.fusion == "attn"
         or (m.fusion in READOUT_FUSIONS and m.readout == "attn"),
         "model.fusion", "a joint [cls] attention over every modality when rollingq.enabled",
         "RollingQ rotates such an attention's [cls] query: model.fusion=attn, or "
         "model.fusion=mmml or mult with model.readout=attn; else set "
         "rollingq.enabled=false")
    need(m.readout == "own" or m.fusion in READOUT_FUSIONS, "model.readout",
         f"readout == 'own' unless fusion in ({', '.join(READOUT_FUSIONS)})",
         "only those fusions have a choice of read-out")
    need(m.mult_dim >= 1 and m.mult_dim % MULT_HEADS == 0, "model.mult_dim",
         f"mult_dim >= 1 and mult_dim % {MULT_HEADS} == 0",
         f"MulT's transformers have {MULT_HEADS} heads; the reference uses 30")
    need(m.fusion != "mmml" or m.dim % MMML_HEADS == 0, "model.dim",
         f"dim % {MMML_HEADS} == 0 for mmml",
         f"MMML's cross-modal layers have {MMML_HEADS} heads")
    need(b.method == "none" or m.fusion in BALANCE_FUSIONS, "model.fusion",
         f"fusion in ({', '.join(BALANCE_FUSIONS)}) when balance.method != 'none'",
         f"balance.method={b.method!r} balances two or more modalities; a unimodal model "
         "has one")
    need(b.ogm_alpha >= 0, "balance.ogm_alpha", "ogm_alpha >= 0")
    need(b.pmr_alpha >= 0, "balance.pmr_alpha", "pmr_alpha >= 0")
    for key, w in (("balance.ogm_window", b.ogm_window), ("balance.pmr_window", b.pmr_window)):
        need(len(w) == 2 and 0 <= w[0] <= w[1] <= 1, key,
             "a window [start, end] with 0 <= start <= end <= 1 (fractions of train.epochs)",
             f"e.g. {key}=[0.0,0.5]")
    need(0 <= b.pmr_momentum < 1, "balance.pmr_momentum", "0 <= pmr_momentum < 1")
    need(0 < b.prototype_fraction <= 1, "balance.prototype_fraction",
         "0 < prototype_fraction <= 1")


def check_training(c: Config, need: Need) -> None:
    """The optimizer's and the training loop's rules."""
    o, t = c.optim, c.train
    need(o.lr > 0, "optim.lr", "lr > 0")
    need(o.weight_decay >= 0, "optim.weight_decay", "weight_decay >= 0")
    need(o.grad_clip >= 0, "optim.grad_clip", "grad_clip >= 0 (0: off)")
    need(0 <= o.momentum < 1, "optim.momentum", "0 <= momentum < 1")
    need(o.warmup_epochs >= 0, "optim.warmup_epochs", "warmup_epochs >= 0")
    need(0 <= o.min_lr_ratio <= 1, "optim.min_lr_ratio", "0 <= min_lr_ratio <= 1")
    need(t.epochs >= 1, "train.epochs", "epochs >= 1")
    need(t.batch_size >= 1, "train.batch_size", "batch_size >= 1")
    need(t.eval_batch_size >= 0, "train.eval_batch_size", "eval_batch_size >= 0",
         "0 = max(batch_size, 256)")
    need(t.cpu_threads >= 0, "train.cpu_threads", "cpu_threads >= 0", "0 = torch's default")
    need(t.checkpoint_every >= 0, "train.checkpoint_every", "checkpoint_every >= 0")
    need(t.checkpoint_minutes == -1 or t.checkpoint_minutes >= 0, "train.checkpoint_minutes",
         "checkpoint_minutes >= 0 (or -1: auto)")
    need(all(0 <= x for x in t.noise_levels), "train.noise_levels", "every noise level >= 0")
    need(t.attention_noise_level >= 0, "train.attention_noise_level",
         "attention_noise_level >= 0")
    need(t.attention_noise_draws >= 1, "train.attention_noise_draws",
         "attention_noise_draws >= 1")
