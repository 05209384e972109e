"""Typed run configuration: six groups (data, model, rollingq, balance, optim, train).

A config is built in layers, each overriding the one before:

1. the dataclass defaults below (the published architecture and training settings);
2. the preset of the chosen data set (the synthetic data set brings a small model, so a run
   takes seconds on CPU);
3. a YAML file nested by group (``data: {name: synthetic}``);
4. dotted overrides (``--set rollingq.beta=0.1``), the same names search spaces use.

Every value is checked in ``Config.validate``; an error names the key, the value, the rule and
the valid choices, and where the value came from.

Every key with its default and valid values: docs/configuration.md (generated from this file).
"""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

FUSIONS = ("attn", "concat", "sum", "mbt", "mmml", "jmt", "mult", "audio", "visual", "text")
READOUTS = ("own", "attn")
READOUT_FUSIONS = ("mmml", "mult")  # fusions with a choice of read-out (RollingQ needs attn)
MMML_HEADS = 8  # the heads of MMML's cross-modal layers (the published comparison's config)
MULT_HEADS = 5  # the heads of MulT's transformers (the reference's default)
FUSION_BLOCKS = ("prenorm", "published")
ROTATIONS = ("svd", "plane")
AIR_STATS = ("last_batch", "epoch")
ANCHOR_STATS = ("full_pass", "running")
ROTATE_LAYERS = ("last", "all")
BALANCE_METHODS = ("none", "ogm", "ogm_ge", "pmr")
# the fusions with every modality in them: the multimodal ones
BALANCE_FUSIONS = ("attn", "concat", "sum", "mbt", "mmml", "jmt", "mult")
OGM_VARIANTS = ("published", "minus_one")
OPTIMIZERS = ("sgd", "adam", "adamw")
SCHEDULES = ("published", "plain")
DEVICES = ("auto", "cpu", "cuda")
PRECISIONS = ("auto", "fp32", "bf16")
DATA_ON_DEVICE = ("auto", "always", "never")
NOISE_RECIPES = ("absolute", "additive", "mixing")
EVAL_SPLITS = ("test", "val")
DATASETS = ("synthetic", "features", "cremad", "kinetics_sounds", "mosei")
REAL_DATASETS = ("cremad", "kinetics_sounds", "mosei")  # read from data.root, decoded once
ON_MISSING = ("error", "skip")
NONFINITE = ("error", "zero")
AUDIO_FORMATS = ("auto", "wav", "pt")
MODALITIES = ("audio", "visual", "text")


class ConfigError(ValueError):
    """A configuration value breaks a rule; the message says which key, value and fix."""


@dataclass
class DataConfig:
    name: str = "synthetic"
    root: str = ""
    val_fraction: float = 0.1  # carved from train, stratified and seeded, when there is no val
    # synthetic data set (ignored by the others); see rollingq/data/synthetic.py
    train_size: int = 3000
    test_size: int = 1000
    num_classes: int = 4
    tokens: int = 8
    features: int = 16
    easy_informative: float = 0.8  # share of samples on which the easy (audio) modality informs
    easy_snr: float = 1.5  # per-channel signal of the easy modality on all tokens, where it informs
    hard_snr: float = 0.8  # per-channel signal of the hard (visual) modality on its signal tokens
    hard_tokens: int = 1  # tokens of the hard modality that carry its signal (placed at random)
    distractor_channels: int = 8  # class-free high-variance channels of the easy modality
    distractor_std: float = 8.0  # dominates std(audio), so relative test noise swamps the signal
    data_seed: int = 1234  # the synthetic data set is fixed across trial seeds
    # real data sets (cremad, kinetics_sounds, mosei; rollingq/data/<name>.py).
    # Paths are relative to data.root unless absolute; "" means the published tree.
    on_missing: str = "error"  # skip: drop samples whose files are missing and list their ids
    # NaN/inf in features or decoded inputs: error (naming file, modality, count) or zero
    # (replaced by 0, counted in the log); MOSEI's published -inf -> 0 in audio applies anyway
    nonfinite: str = "error"
    modalities: str = ""  # comma-separated, fusion order; "" = audio,visual (mosei: visual,text)
    # the modality the data set favours, declared (claims 3 and 5 of the paper are about it): ""
    # = the data set's own (the synthetic one is built to favour audio; the paper's: audio on
    # CREMA-D and Kinetics-Sounds, text on MOSEI); a features data set has none until declared
    favoured: str = ""
    train_list: str = ""  # cremad train.csv; kinetics_sounds ks_train_overlap.txt
    test_list: str = ""  # cremad test.csv; kinetics_sounds ks_test_overlap.txt
    audio_dir: str = ""  # cremad AudioWAV (both splits); kinetics_sounds train_spec
    test_audio_dir: str = ""  # kinetics_sounds test_spec; cremad: audio_dir
    frames_dir: str = ""  # cremad Image-01-FPS kinetics_sounds train-frames-1fps/train
    test_frames_dir: str = ""  # kinetics_sounds val-frames-1fps/test; cremad: frames_dir
    audio_format: str = "auto"  # cremad: wav, pt (the BalanceBench copy) or auto (what exists)
    pickle: str = ""  # mosei: mosei_senti_data_noalign.pkl, else the aligned mosei_senti_data.pkl
    cache_dir: str = ""  # the decode-once cache; "" = $ROLLINGQ_CACHE or ~/.cache/rollingq
    decode_size: int = 224  # frames are decoded once and stored decode_size x decode_size, uint8
    frame_size: int = 224  # frames reach the model frame_size x frame_size (published 224)
    workers: int = 0  # decoding threads while the cache is built; 0 = every CPU available


@dataclass
class ModelConfig:
    fusion: str = "attn"
    fusion_layers: int = 1
    # the layers above the first (MT*): prenorm = 12-head pre-norm Transformer blocks (ours; the
    # paper gives no code), published = more published single-head fusion layers
    fusion_block: str = "prenorm"
    # mmml's and mult's read-out: own (MMML's MLP on its [cls]; MulT's last time step) or attn
    # (the published fusion attention over their output tokens, which RollingQ can rotate)
    readout: str = "own"
    mult_dim: int = 30  # width of MulT's transformers (the reference's; = dim: no projection)
    dim: int = 768
    depth: int = 4
    heads: int = 12
    mlp_ratio: float = 4.0
    patch_size: int = 16
    fusion_dropout: float = 0.2  # attention and output dropout of the published fusion layer
    # mult: the reference's causal mask in its crossmodal and memory attentions (query i sees the
    # keys j <= i + |Lk - Lq|), on by default there
    mult_causal_mask: bool = True
    # mmml's cross-modal layers: attention and hidden dropout (MMML's own BertConfig's 0.3)
    mmml_dropout: float = 0.3
    bottleneck_tokens: int = 4  # mbt only
    # encoder weights: a state dict file (published or timm layout, detected) or timm:<model>
    pretrained: str = ""


@dataclass
class RollingQConfig:
    enabled: bool = True
    beta: float = 0.1  # rotate when |AIR| > beta
    rho: float = 1.0  # anchor sharpness: alpha = (1 + tanh(-rho * AIR)) / 2
    max_rotations: int = 1
    rotation: str = "svd"  # svd = published, plane = minimal (identity outside span(x, y))
    air_stat: str = "last_batch"  # published: the last training batch; epoch: running mean
    anchor_stat: str = "full_pass"  # published: extra eval pass; running: accumulated, no pass
    layers: str = "last"  # which fusion layers' [cls] query is rotated


@dataclass
class BalanceConfig:
    """The balancing baselines of Table 1 (rollingq/balance.py, docs/baselines.md §1 and §2)."""

    method: str = "none"  # ogm, ogm_ge (gradient modulation), pmr (prototype losses)
    # Each method with its reference's CREMA-D values. A window [start, end] is a fraction of
    # train.epochs: the method acts in the epochs e (0-based) with start * E <= e <= end * E,
    # the references' `modulation_starts <= epoch <= modulation_ends` scaled to our run.
    # OGM / OGM-GE (OGM-GE_CVPR2022: alpha 0.8 for CREMA-D, epochs 0-50 of 100)
    ogm_alpha: float = 0.8
    ogm_window: list[float] = field(default_factory=lambda: [0.0, 0.5])
    ogm_variant: str = "published"  # published: 1 - tanh(a relu(rho)); minus_one: relu(rho - 1)
    # PMR (Modal-Imbalance-PMR's CREMA-D concat script: alpha 2.0, momentum 0, epochs 0-70 of 130)
    pmr_alpha: float = 2.0
    pmr_momentum: float = 0.0  # prototypes c <- (1 - m) c_new + m c_old
    pmr_window: list[float] = field(default_factory=lambda: [0.0, 0.54])
    prototype_fraction: float = 0.1  # share of an epoch's batches the prototypes come from

    def window(self) -> list[float]:
        """The window of ``method`` (fractions of the run)."""
        return self.pmr_window if self.method == "pmr" else self.ogm_window

    def acts(self, epoch: int, epochs: int) -> bool:
        """Whether ``method`` acts in ``epoch`` (0-based) of a run of ``epochs``."""
        start, end = self.window()
        return self.method != "none" and start * epochs - 1e-9 <= epoch <= end * epochs + 1e-9


@dataclass
class OptimConfig:
    name: str = "sgd"
    lr: float = 1e-3
    weight_decay: float = 1e-4
    momentum: float = 0.9  # sgd only
    warmup_epochs: float = 2.5
    min_lr_ratio: float = 0.0  # cosine floor as a fraction of lr
    # published: warm-up over int(warmup_epochs * steps) steps from lr 0, and one extra
    # scheduler step at every epoch end; plain: from lr/warmup, fractional, one step a batch
    schedule: str = "published"
    # clip the gradients' total L2 norm to this before each step (0: off, as the published
    # RollingQ code; MulT's reference clips at 0.8)
    grad_clip: float = 0.0


@dataclass
class TrainConfig:
    epochs: int = 30
    batch_size: int = 64
    seed: int = 0
    device: str = "auto"
    precision: str = "auto"  # auto: bf16 autocast on CUDA, fp32 on CPU
    compile: bool = False
    # the data on the training device (sliced there) or streamed from the host a batch at a
    # time: always | never | auto (resident when it takes <= 1/4 of the device memory allowed)
    data_on_device: str = "auto"
    cpu_threads: int = 0  # torch threads when training on CPU; 0 = torch's default
    # the encoder blocks recompute their activations in the backward pass (less memory, about
    # a third more compute): for trials that must fit a small GPU share (python -m
    # rollingq.memory estimates both)
    activation_checkpointing: bool = False
    checkpoint_every: int = 1  # epochs; 0 = never
    # PyTorch's deterministic algorithms (torch.use_deterministic_algorithms, cuDNN's
    # deterministic kernels, CUBLAS_WORKSPACE_CONFIG=:4096:8): a GPU run repeats bit for bit, at
    # a cost in speed; an op with no deterministic kernel raises instead of running
    deterministic: bool = False
    # the selected model (best validation epoch, rotation included) as best.pt beside
    # checkpoint.pt, written when validation improves: one copy of the weights (about 240 MB at
    # the paper's shapes); the end-of-run diagnostics use the selected model either way
    keep_best: bool = True
    # Table 3: test accuracy with noise on one modality at each level (absolute: x + λ N(0, 1),
    # MultiBench's white noise, the paper's cited recipe; additive: x + λ std(x) N(0, 1);
    # mixing: (1 - λ) x + λ N(0, 1)); one seeded draw a level, shared by the levels
    noise_levels: list[float] = field(default_factory=lambda: [0.0, 0.25, 0.5, 0.75, 1.0])
    noise_recipe: str = "absolute"
    noise_seed: int = 0  # the noise draws of Table 3 and Table 2
    # Table 2: each sample of the split evaluated clean and with each modality noised
    # (attention_noise_draws draws a sample and modality) by this recipe at this level
    attention_noise_recipe: str = "mixing"
    attention_noise_level: float = 1.0
    attention_noise_split: str = "test"
    attention_noise_draws: int = 1


GROUPS = {
    "data": DataConfig,
    "model": ModelConfig,
    "rollingq": RollingQConfig,
    "balance": BalanceConfig,
    "optim": OptimConfig,
    "train": TrainConfig,
}

# A data set's preset replaces defaults, never a value the user set.
PRESETS: dict[str, dict[str, Any]] = {
    "synthetic": {
        "model.dim": 64,
        "model.depth": 1,
        "model.heads": 4,
        "model.fusion_dropout": 0.0,
        # The published optimizer (SGD, momentum 0.9, weight decay 1e-4) at a learning rate for a
        # small model trained from scratch. With SGD an encoder's step scales with the attention
        # its tokens get, which is the starvation RollingQ undoes; with AdamW the visual probe
        # barely improved (Adam's per-parameter scaling presumably cancels that starvation; see
        # rollingq/data/synthetic.py). In the tuning sweeps lr 0.2 diverged
        # in most runs and 0.1 in a few (on nearby data settings); 0.05 keeps a factor 2 of margin.
        "optim.name": "sgd",
        "optim.lr": 0.05,
        "optim.weight_decay": 1e-4,
        "optim.warmup_epochs": 1.0,
        "train.epochs": 12,
        "train.cpu_threads": 1,  # a tiny model: more threads only wait on each other
        # noise relative to each input's spread: the easy modality's high-variance distractor
        # channels then swamp its signal, the failure this data set is built to show
        "train.noise_recipe": "additive",
        # Rotate whenever |AIR| > 0.2, up to 4 times, with a sharp anchor (alpha ~ 0.05 at
        # AIR = 0.5): the query drifts back toward audio after each rotation.
        "rollingq.beta": 0.2,
        "rollingq.rho": 3.0,
        "rollingq.max_rotations": 4,
    },
    "features": {
        "model.dim": 256,
        "model.depth": 2,
        "model.heads": 4,
        "optim.name": "adamw",
        "optim.lr": 1e-3,
        "optim.weight_decay": 1e-2,
    },
}


@dataclass
class Config:
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    rollingq: RollingQConfig = field(default_factory=RollingQConfig)
    balance: BalanceConfig = field(default_factory=BalanceConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    train: TrainConfig = field(default_factory=TrainConfig)

    def to_dict(self) -> dict[str, dict[str, Any]]:
        """The config nested by group, as written to YAML."""
        return dataclasses.asdict(self)

    def flat(self) -> dict[str, Any]:
        """The config as one flat dict of dotted names."""
        return {f"{g}.{k}": v for g, sub in self.to_dict().items() for k, v in sub.items()}

    def validate(self, sources: dict[str, str] | None = None) -> Config:
        """Checks every rule; raises ConfigError naming the first broken one.

        Args:
            sources: Where each dotted key's value came from (a file, ``override``), for messages.
        """
        d, m, r, o, t = self.data, self.model, self.rollingq, self.optim, self.train
        b = self.balance
        sources = sources or {}

        def need(ok: bool, key: str, rule: str, fix: str = "") -> None:
            if not ok:
                value = self.flat()[key]
                msg = f"`{rule}` must hold, but got {key}={value!r} ({sources.get(key, 'default')})"
                raise ConfigError(msg + (f"; {fix}" if fix else ""))

        def choice(key: str, choices: tuple[str, ...]) -> None:
            value = self.flat()[key]
            if value not in choices:
                raise ConfigError(
                    f"{key}={value!r} is not a valid choice ({sources.get(key, 'default')}); "
                    f"valid: {', '.join(choices)}"
                )

        choice("data.name", DATASETS)
        choice("model.fusion", FUSIONS)
        choice("model.fusion_block", FUSION_BLOCKS)
        choice("model.readout", READOUTS)
        choice("rollingq.rotation", ROTATIONS)
        choice("rollingq.air_stat", AIR_STATS)
        choice("rollingq.anchor_stat", ANCHOR_STATS)
        choice("rollingq.layers", ROTATE_LAYERS)
        choice("balance.method", BALANCE_METHODS)
        choice("balance.ogm_variant", OGM_VARIANTS)
        choice("optim.name", OPTIMIZERS)
        choice("optim.schedule", SCHEDULES)
        choice("train.device", DEVICES)
        choice("train.precision", PRECISIONS)
        choice("train.data_on_device", DATA_ON_DEVICE)
        choice("train.noise_recipe", NOISE_RECIPES)
        choice("train.attention_noise_recipe", NOISE_RECIPES)
        choice("train.attention_noise_split", EVAL_SPLITS)
        need(d.name != "features" or bool(d.root), "data.root", "data.root != ''",
             "the features data set reads train.npz/test.npz from data.root")
        choice("data.on_missing", ON_MISSING)
        choice("data.nonfinite", NONFINITE)
        choice("data.audio_format", AUDIO_FORMATS)
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
        for key in ("balance.ogm_window", "balance.pmr_window"):
            w = self.flat()[key]
            need(len(w) == 2 and 0 <= w[0] <= w[1] <= 1, key,
                 "a window [start, end] with 0 <= start <= end <= 1 (fractions of train.epochs)",
                 f"e.g. {key}=[0.0,0.5]")
        need(0 <= b.pmr_momentum < 1, "balance.pmr_momentum", "0 <= pmr_momentum < 1")
        need(0 < b.prototype_fraction <= 1, "balance.prototype_fraction",
             "0 < prototype_fraction <= 1")
        need(o.lr > 0, "optim.lr", "lr > 0")
        need(o.weight_decay >= 0, "optim.weight_decay", "weight_decay >= 0")
        need(o.grad_clip >= 0, "optim.grad_clip", "grad_clip >= 0 (0: off)")
        need(0 <= o.momentum < 1, "optim.momentum", "0 <= momentum < 1")
        need(o.warmup_epochs >= 0, "optim.warmup_epochs", "warmup_epochs >= 0")
        need(0 <= o.min_lr_ratio <= 1, "optim.min_lr_ratio", "0 <= min_lr_ratio <= 1")
        need(t.epochs >= 1, "train.epochs", "epochs >= 1")
        need(t.batch_size >= 1, "train.batch_size", "batch_size >= 1")
        need(t.cpu_threads >= 0, "train.cpu_threads", "cpu_threads >= 0", "0 = torch's default")
        need(t.checkpoint_every >= 0, "train.checkpoint_every", "checkpoint_every >= 0")
        need(all(0 <= x for x in t.noise_levels), "train.noise_levels", "every noise level >= 0")
        need(t.attention_noise_level >= 0, "train.attention_noise_level",
             "attention_noise_level >= 0")
        need(t.attention_noise_draws >= 1, "train.attention_noise_draws",
             "attention_noise_draws >= 1")
        return self


def _field_types(group: str) -> dict[str, Any]:
    return typing.get_type_hints(GROUPS[group])


def valid_keys() -> list[str]:
    """Every dotted key a config accepts."""
    return [f"{g}.{f.name}" for g, cls in GROUPS.items() for f in dataclasses.fields(cls)]


def _coerce(key: str, value: Any, source: str) -> Any:
    """Converts a YAML/CLI value to the field's declared type, or raises ConfigError."""
    group, name = key.split(".", 1)
    kind = _field_types(group)[name]
    name_of = getattr(kind, "__name__", kind)
    bad = ConfigError(f"{key}={value!r} must be of type {name_of} ({source})")
    if kind is bool:
        if isinstance(value, bool):
            return value
        raise bad
    if kind is int:
        if isinstance(value, bool) or not isinstance(value, int):
            if isinstance(value, float) and value.is_integer():
                return int(value)
            raise bad
        return value
    if kind is float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise bad
        return float(value)
    if kind is str:
        if value is None:
            return ""
        if not isinstance(value, str | int | float) or isinstance(value, bool):
            raise bad
        return str(value)
    if typing.get_origin(kind) in (list, types.GenericAlias) or kind == list[float]:
        values = value if isinstance(value, list | tuple) else [value]
        try:
            return [float(v) for v in values]
        except (TypeError, ValueError):
            raise bad from None
    return value


def parse_override(text: str) -> tuple[str, Any]:
    """Splits ``key=value``; the value is parsed as YAML (``0.1``, ``true``, ``[0, 0.5]``)."""
    if "=" not in text:
        raise ConfigError(f"override {text!r} must look like key=value, e.g. rollingq.beta=0.1")
    key, raw = text.split("=", 1)
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError:
        value = raw
    return key.strip(), value


def _flatten_file(path: Path) -> dict[str, Any]:
    try:
        tree = yaml.safe_load(path.read_text()) or {}
    except FileNotFoundError:
        raise ConfigError(f"config file {path} does not exist") from None
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark else ""
        raise ConfigError(f"config file {path}{where} is not valid YAML: {e}") from None
    if not isinstance(tree, dict):
        raise ConfigError(f"config file {path} must hold a mapping of groups: {', '.join(GROUPS)}")
    flat = {}
    for group, sub in tree.items():
        if group not in GROUPS:
            raise ConfigError(
                f"unknown group {group!r} in {path}; valid groups: {', '.join(GROUPS)}"
            )
        if not isinstance(sub, dict):
            raise ConfigError(f"group {group!r} in {path} must be a mapping of keys to values")
        flat.update({f"{group}.{k}": v for k, v in sub.items()})
    return flat


# Keys that were replaced: where their meaning went.
REPLACED = {
    "balance.alpha": "balance.ogm_alpha (OGM, OGM-GE) or balance.pmr_alpha (PMR): each method "
                     "has its own weight now",
    "balance.start_epoch": "balance.ogm_window or balance.pmr_window, [start, end] as fractions "
                           "of train.epochs (e.g. [0.0, 0.5])",
    "balance.end_epoch": "balance.ogm_window or balance.pmr_window, [start, end] as fractions "
                         "of train.epochs (e.g. [0.0, 0.5])",
    "balance.momentum": "balance.pmr_momentum",
}


def unknown_key_hint(key: str, keys: set[str] | None = None) -> str:
    """What to say of an unknown config key (a config file, ``--set``, a spec): what replaced
    it, the keys with its last part, or every valid key."""
    keys = set(valid_keys()) if keys is None else keys
    if key in REPLACED:
        return f"it was replaced by {REPLACED[key]}"
    close = [k for k in sorted(keys) if k.split(".")[-1] == key.split(".")[-1]]
    return (f"did you mean {', '.join(close)}?" if close
            else f"valid keys: {', '.join(sorted(keys))}")


def build_config(
    file: str | Path | None = None,
    overrides: dict[str, Any] | list[str] | None = None,
) -> Config:
    """Builds a validated Config: defaults, then the data set's preset, then file, then overrides.

    Args:
        file: Optional YAML file nested by group.
        overrides: Dotted ``key: value`` pairs, or ``key=value`` strings.

    Raises:
        ConfigError: For an unknown key, a wrong type or a broken rule.
    """
    user: dict[str, tuple[Any, str]] = {}
    if file is not None:
        user.update({k: (v, str(file)) for k, v in _flatten_file(Path(file)).items()})
    if isinstance(overrides, list):
        overrides = dict(parse_override(o) for o in overrides)
    user.update({k: (v, "override") for k, v in (overrides or {}).items()})

    keys = set(valid_keys())
    for key, (_, source) in user.items():
        if key not in keys:
            raise ConfigError(f"unknown config key {key!r} ({source}); "
                              f"{unknown_key_hint(key, keys)}")

    name = user.get("data.name", (DataConfig.name, ""))[0]
    values = dict(PRESETS.get(name, {}))
    values.update({k: v for k, (v, _) in user.items()})
    sources = {k: s for k, (_, s) in user.items()}

    groups: dict[str, dict[str, Any]] = {g: {} for g in GROUPS}
    for key, value in values.items():
        group, attr = key.split(".", 1)
        groups[group][attr] = _coerce(key, value, sources.get(key, f"preset {name}"))
    cfg = Config(**{g: GROUPS[g](**kw) for g, kw in groups.items()})
    return cfg.validate(sources)


def config_from_dict(tree: dict[str, dict[str, Any]]) -> Config:
    """Rebuilds a Config from ``Config.to_dict()`` output (a checkpoint or summary.json)."""
    keys = set(valid_keys())
    for group, sub in tree.items():
        for name in sub:
            if f"{group}.{name}" not in keys:
                raise ConfigError(f"unknown config key {group}.{name!r} in a saved config (written "
                                  f"by an older version?); "
                                  f"{unknown_key_hint(f'{group}.{name}', keys)}")
    return Config(**{g: GROUPS[g](**tree.get(g, {})) for g in GROUPS}).validate()
