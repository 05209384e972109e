"""Typed run configuration: six groups (data, model, rollingq, balance, optim, train).

A config is built in layers, each overriding the one before:

1. the dataclass defaults below (the published architecture and training settings);
2. the preset of the chosen data set (the synthetic data set brings a small model, so a run
   takes seconds on CPU);
3. a YAML file nested by group (``data: {name: synthetic}``);
4. dotted overrides (``--set rollingq.beta=0.1``), the same names search spaces use.

Every value is checked in ``Config.validate``; an error names the key, the value, the rule and
the valid choices, and where the value came from. A key with a fixed set of values declares them
on its field (``Literal[...]``); one generic check covers them all (``CHOICES``).

Every key with its default and valid values: docs/configuration.md (generated from this file).
"""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from rollingq.presets import PRESETS

Fusion = Literal["attn", "concat", "sum", "mbt", "mmml", "jmt", "mult", "audio", "visual", "text"]
Readout = Literal["own", "attn"]
READOUT_FUSIONS = ("mmml", "mult")  # fusions with a choice of read-out (RollingQ needs attn)
MMML_HEADS = 8  # the heads of MMML's cross-modal layers (the published comparison's config)
MULT_HEADS = 5  # the heads of MulT's transformers (the reference's default)
FusionBlock = Literal["prenorm", "published"]
RotationKind = Literal["svd", "plane"]
AirStat = Literal["last_batch", "epoch"]
AnchorStat = Literal["full_pass", "running"]
RotateLayers = Literal["last", "all"]
BalanceMethod = Literal["none", "ogm", "ogm_ge", "pmr"]
# the fusions with every modality in them: the multimodal ones
BALANCE_FUSIONS = ("attn", "concat", "sum", "mbt", "mmml", "jmt", "mult")
OgmVariant = Literal["published", "minus_one"]
OGM_VARIANTS = typing.get_args(OgmVariant)
Optimizer = Literal["sgd", "adam", "adamw"]
Schedule = Literal["published", "plain"]
Device = Literal["auto", "cpu", "cuda"]
Precision = Literal["auto", "fp32", "bf16"]
DataOnDevice = Literal["auto", "always", "never"]
NoiseRecipe = Literal["absolute", "additive", "mixing"]
NOISE_RECIPES = typing.get_args(NoiseRecipe)
EvalSplit = Literal["test", "val"]
Dataset = Literal["synthetic", "features", "cremad", "kinetics_sounds", "mosei"]
REAL_DATASETS = ("cremad", "kinetics_sounds", "mosei")  # read from data.root, decoded once
OnMissing = Literal["error", "skip"]
Nonfinite = Literal["error", "zero"]
AudioFormat = Literal["auto", "wav", "pt"]
MODALITIES = ("audio", "visual", "text")


class ConfigError(ValueError):
    """A configuration value breaks a rule; the message says which key, value and fix."""


@dataclass
class DataConfig:
    name: Dataset = "synthetic"
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
    on_missing: OnMissing = "error"  # skip: drop samples whose files are missing and list their ids
    # NaN/inf in features or decoded inputs: error (naming file, modality, count) or zero
    # (replaced by 0, counted in the log); MOSEI's published -inf -> 0 in audio applies anyway
    nonfinite: Nonfinite = "error"
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
    # cremad: wav, pt (the BalanceBench copy) or auto (what exists)
    audio_format: AudioFormat = "auto"
    pickle: str = ""  # mosei: mosei_senti_data_noalign.pkl, else the aligned mosei_senti_data.pkl
    cache_dir: str = ""  # the decode-once cache; "" = $ROLLINGQ_CACHE or ~/.cache/rollingq
    decode_size: int = 224  # frames are decoded once and stored decode_size x decode_size, uint8
    frame_size: int = 224  # frames reach the model frame_size x frame_size (published 224)
    workers: int = 0  # decoding threads while the cache is built; 0 = every CPU available


@dataclass
class ModelConfig:
    fusion: Fusion = "attn"
    fusion_layers: int = 1
    # the layers above the first (MT*): prenorm = 12-head pre-norm Transformer blocks (ours; the
    # paper gives no code), published = more published single-head fusion layers
    fusion_block: FusionBlock = "prenorm"
    # mmml's and mult's read-out: own (MMML's MLP on its [cls]; MulT's last time step) or attn
    # (the published fusion attention over their output tokens, which RollingQ can rotate)
    readout: Readout = "own"
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
    rotation: RotationKind = "svd"  # svd = published, plane = minimal (identity outside span(x, y))
    air_stat: AirStat = "last_batch"  # published: the last training batch; epoch: running mean
    # published: extra eval pass; running: accumulated, no pass
    anchor_stat: AnchorStat = "full_pass"
    layers: RotateLayers = "last"  # which fusion layers' [cls] query is rotated


@dataclass
class BalanceConfig:
    """The balancing baselines of Table 1 (rollingq/balance.py, docs/baselines.md §1 and §2)."""

    method: BalanceMethod = "none"  # ogm, ogm_ge (gradient modulation), pmr (prototype losses)
    # Each method with its reference's CREMA-D values. A window [start, end] is a fraction of
    # train.epochs: the method acts in the epochs e (0-based) with start * E <= e <= end * E,
    # the references' `modulation_starts <= epoch <= modulation_ends` scaled to our run.
    # OGM / OGM-GE (OGM-GE_CVPR2022: alpha 0.8 for CREMA-D, epochs 0-50 of 100)
    ogm_alpha: float = 0.8
    ogm_window: list[float] = field(default_factory=lambda: [0.0, 0.5])
    # published: 1 - tanh(a relu(rho)); minus_one: relu(rho - 1)
    ogm_variant: OgmVariant = "published"
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
    name: Optimizer = "sgd"
    lr: float = 1e-3
    weight_decay: float = 1e-4
    momentum: float = 0.9  # sgd only
    warmup_epochs: float = 2.5
    min_lr_ratio: float = 0.0  # cosine floor as a fraction of lr
    # published: warm-up over int(warmup_epochs * steps) steps from lr 0, and one extra
    # scheduler step at every epoch end; plain: from lr/warmup, fractional, one step a batch
    schedule: Schedule = "published"
    # clip the gradients' total L2 norm to this before each step (0: off, as the published
    # RollingQ code; MulT's reference clips at 0.8)
    grad_clip: float = 0.0


@dataclass
class TrainConfig:
    epochs: int = 30
    batch_size: int = 64
    # evaluation batches (every epoch, and the diagnostics): 0 = max(batch_size, 256); the
    # evaluation forward at 256 can be a GPU share's peak (python -m rollingq.memory shows it)
    eval_batch_size: int = 0
    seed: int = 0
    device: Device = "auto"
    precision: Precision = "auto"  # auto: bf16 autocast on CUDA from Ampere (8.0) on, else fp32
    compile: bool = False
    # the data on the training device (sliced there) or streamed from the host a batch at a
    # time: always | never | auto (resident when it takes <= 1/4 of the device memory allowed)
    data_on_device: DataOnDevice = "auto"
    cpu_threads: int = 0  # torch threads when training on CPU; 0 = torch's default
    # the encoder blocks recompute their activations in the backward pass (less memory, about
    # a third more compute): for trials that must fit a small GPU share (python -m
    # rollingq.memory estimates both)
    activation_checkpointing: bool = False
    checkpoint_every: int = 1  # epochs; 0 = never
    # and at least this many minutes of the run apart (the last epoch always): -1 = auto, 10 on
    # CUDA (a paper-shape checkpoint is 0.5-0.7 GB against an H100 epoch of seconds) and 0 on
    # the CPU (every checkpoint_every epochs); measured by bench/checkpoint_cost.py
    checkpoint_minutes: float = -1.0
    # PyTorch's deterministic algorithms (torch.use_deterministic_algorithms, cuDNN's
    # deterministic kernels, CUBLAS_WORKSPACE_CONFIG=:4096:8): a GPU run repeats bit for bit, at
    # a cost in speed; an op with no deterministic kernel raises instead of running
    deterministic: bool = False
    # the selected model (best validation epoch, rotation included) as best.pt beside
    # checkpoint.pt, written with a checkpoint when the selection changed and at the run's end:
    # one copy of the weights (about 240 MB at the paper's shapes), which a resumed run takes
    # its selection from (without it, checkpoint.pt carries the copy); the end-of-run
    # diagnostics use the selected model either way
    keep_best: bool = True
    # Table 3: test accuracy with noise on one modality at each level (absolute: x + λ N(0, 1),
    # MultiBench's white noise, the paper's cited recipe; additive: x + λ std(x) N(0, 1);
    # mixing: (1 - λ) x + λ N(0, 1)); one seeded draw a level, shared by the levels
    noise_levels: list[float] = field(default_factory=lambda: [0.0, 0.25, 0.5, 0.75, 1.0])
    noise_recipe: NoiseRecipe = "absolute"
    noise_seed: int = 0  # the noise draws of Table 3 and Table 2
    # Table 2: each sample of the split evaluated clean and with each modality noised
    # (attention_noise_draws draws a sample and modality) by this recipe at this level
    attention_noise_recipe: NoiseRecipe = "mixing"
    attention_noise_level: float = 1.0
    attention_noise_split: EvalSplit = "test"
    attention_noise_draws: int = 1


GROUPS = {
    "data": DataConfig,
    "model": ModelConfig,
    "rollingq": RollingQConfig,
    "balance": BalanceConfig,
    "optim": OptimConfig,
    "train": TrainConfig,
}
# every key whose field is a Literal[...]: its valid values, in their declared order
CHOICES: dict[str, tuple[str, ...]] = {
    f"{g}.{name}": typing.get_args(kind) for g, cls in GROUPS.items()
    for name, kind in typing.get_type_hints(cls).items() if typing.get_origin(kind) is Literal}



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
        sources, flat = sources or {}, self.flat()

        def need(ok: bool, key: str, rule: str, fix: str = "") -> None:
            if not ok:
                msg = (f"`{rule}` must hold, but got {key}={flat[key]!r} "
                       f"({sources.get(key, 'default')})")
                raise ConfigError(msg + (f"; {fix}" if fix else ""))

        for key, valid in CHOICES.items():  # the Literal[...] of each field
            if flat[key] not in valid:
                raise ConfigError(f"{key}={flat[key]!r} is not a valid choice "
                                  f"({sources.get(key, 'default')}); valid: {', '.join(valid)}")
        from rollingq.config_rules import check_data, check_model, check_training  # they read
        # this module's constants: imported here, once it is loaded

        check_data(self, need)
        check_model(self, need)
        check_training(self, need)
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
    if kind is str or typing.get_origin(kind) is Literal:  # a choice: validate checks it
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
