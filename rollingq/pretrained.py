"""Pretrained encoder weights (config ``model.pretrained``), in three layouts.

- **published**: a state dict in the published code's key names (``patch_embed_audio``,
  ``audio_blocks.N``, ``cls_token_audio``, ``pos_embed_audio``, ``norm_audio`` and the
  ``video`` counterparts), which the published code reads from ``pretrain/vit_pretrain.pth``
  (not distributed) into its two streams with ``strict=False`` after dropping the keys that
  start with ``bot`` (its bottleneck). An ``encoder.`` prefix (a checkpoint of the whole
  published model) and ``module.`` (DataParallel) are accepted. Copied as they are: our token
  orders are the published ones, so weights trained by the published code load as trained.
- **timm**: a timm-style ViT state dict (``blocks.N``, ``cls_token``, ``pos_embed``,
  ``patch_embed.proj``), mapped onto every stream as described below.
- ``timm:<model name>`` (e.g. ``timm:vit_base_patch16_224.augreg_in21k_ft_in1k``): the weights
  timm itself downloads for that model (needs ``pip install -e .[pretrained]`` and network or
  timm's cache), then mapped as a timm file.

Which layout a file has is detected from its keys. The published code does not say what its
file holds (which pretraining, which data); a file's origin is the user's to state. With
``strict=False`` a wrong file silently trains from scratch; here every key is
accounted for in a ``LoadReport``, and a file from which nothing could be mapped is an error.

Mapping from a timm file onto ``model.encoders[m]`` (``rollingq.model.Encoder``):

    blocks.{i}.*        -> blocks.{i}.*         first ``depth`` blocks; the rest are unexpected
    norm.*              -> norm.*
    cls_token           -> cls
    patch_embed.proj.*  -> embed.proj.*         spectrogram Conv2d(1 -> D): the RGB kernel
                                                averaged over its 3 input channels (AST adapts
                                                the kernel to one channel by summing them; the
                                                mean keeps the scale of one channel's response)
                                                frames Conv3d(3 -> D, (1, p, p)): the kernel
                                                with a time axis of 1 (unsqueeze(2))
                                                sequence Linear: not mapped (reported missing)
    pos_embed           -> pos                  [cls] position copied; the square patch grid
                                                (14 x 14) bilinearly resized to the stream's grid,
                                                tiled over T for frames; sequences: not mapped
    head.*, ...         unexpected

The grid of a stream comes from the model's modality specs (``model.specs``); a spectrogram's
is (W/p, H/p), as ``PatchEmbed2d`` transposes it.

Mapping from a published file: ``<x>_audio`` -> ``encoders.audio``, ``<x>_video`` ->
``encoders.visual`` (``patch_embed_<s>.proj.*`` -> ``embed.proj.*``, ``cls_token_<s>`` ->
``cls``, ``pos_embed_<s>`` -> ``pos``, ``<s>_blocks.{i}.*`` -> ``blocks.{i}.*``, ``norm_<s>.*``
-> ``norm.*``); everything else (``bot_*``, the fusion, the heads) is unexpected.

The layouts and what the published code does with its file: docs/method.md §8.
"""

from __future__ import annotations

import math
import pickle
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from rollingq.data.base import ModalitySpec
from rollingq.layers import PatchEmbed2d

TIMM_PREFIX = "timm:"
PUBLISHED_STREAMS = {"audio": "audio", "video": "visual"}  # published name -> our modality


@dataclass
class LoadReport:
    """What ``load_pretrained`` did, key by key.

    Attributes:
        path: The file read, or ``timm:<model>``.
        layout: ``published`` or ``timm`` (the key names the weights came in).
        loaded: Model keys filled from the file (``encoders.audio.blocks.0.norm1.weight``).
        missing: Encoder keys left as initialised.
        unexpected: File keys no stream used (``head.weight``, blocks beyond the depth, ...).
        mismatched: ``model key <- file key: reason`` for mappings that failed on shape; their
            model keys are also in ``missing``.
    """

    path: str
    layout: str = "timm"
    loaded: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)
    mismatched: list[str] = field(default_factory=list)

    def summary(self) -> str:
        """One line: counts, and the first few keys of each non-empty list."""

        def few(keys: list[str]) -> str:
            return ", ".join(keys[:3]) + (", ..." if len(keys) > 3 else "")

        parts = [f"pretrained {self.path} ({self.layout} layout): loaded {len(self.loaded)} "
                 "tensors"]
        for name in ("missing", "unexpected", "mismatched"):
            keys = getattr(self, name)
            if keys:
                parts.append(f"{name} {len(keys)} ({few(keys)})")
        return "; ".join(parts)


def read_state_dict(path: str | Path) -> dict[str, Tensor]:
    """Reads a state dict with ``torch.load(weights_only=True)``.

    Accepts a bare state dict or a dict holding it under ``model`` or ``state_dict``; a
    ``module.`` prefix (DataParallel) is dropped.

    Raises:
        FileNotFoundError: When the file does not exist.
        ValueError: When the file is not a readable state dict.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(
            f"pretrained weights {path} do not exist (model.pretrained={str(path)!r}); set "
            "model.pretrained to a state dict (published or timm layout), to timm:<model name>, "
            "or to '' to train from scratch"
        )
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, ValueError) as e:
        raise ValueError(
            f"pretrained weights {path} (model.pretrained) are not a torch state dict readable "
            f"with weights_only=True: {e}"
        ) from None
    for key in ("model", "state_dict"):
        if isinstance(obj, dict) and isinstance(obj.get(key), dict):
            obj = obj[key]
            break
    if not isinstance(obj, dict):
        raise ValueError(
            f"pretrained weights {path} (model.pretrained) hold a {type(obj).__name__}, "
            "not a state dict (a dict of tensors, possibly under 'model' or 'state_dict')"
        )
    return {k.removeprefix("module."): v for k, v in obj.items() if isinstance(v, Tensor)}


def _resize_grid(pos: Tensor, grid: tuple[int, int]) -> Tensor:
    """(1, 1 + n*n, D) timm positional embedding -> (1 + gh*gw, D) for a gh x gw grid."""
    n = math.isqrt(pos.shape[1] - 1)
    cls, patches = pos[0, :1], pos[0, 1:]  # (1, D), (n*n, D)
    img = patches.float().reshape(n, n, -1).permute(2, 0, 1).unsqueeze(0)  # (1, D, n, n)
    if (n, n) != grid:
        img = F.interpolate(img, size=grid, mode="bilinear", align_corners=False)
    return torch.cat([cls.float(), img[0].flatten(1).T], 0)  # (1 + gh*gw, D), row-major grid


def _timm_offers(
    encoder: nn.Module, spec: ModalitySpec, patch: int, state: dict[str, Tensor]
) -> tuple[dict[str, tuple[str, Tensor]], list[str]]:
    """The tensors a timm file offers one stream, by encoder key, with the file key of each.

    Returns:
        encoder key -> (file key, value), and the reasons for entries that cannot be mapped.
    """
    offers: dict[str, tuple[str, Tensor]] = {}
    problems: list[str] = []
    for key in encoder.state_dict():
        if key.startswith("blocks.") or key.startswith("norm."):
            if key in state:
                offers[key] = (key, state[key])
    if "cls_token" in state:
        offers["cls"] = ("cls_token", state["cls_token"])

    kind = spec.kind
    proj = getattr(encoder.embed, "proj", None)
    for suffix in ("weight", "bias"):
        src = f"patch_embed.proj.{suffix}"
        if src not in state or isinstance(proj, nn.Linear):
            continue  # a sequence stream's Linear has no image counterpart
        value = state[src]
        if suffix == "weight" and isinstance(proj, nn.Conv2d):
            if value.dim() == 4 and value.shape[1] == 3:
                value = value.mean(1, keepdim=True)  # (D, 1, p, p): RGB averaged
        elif suffix == "weight" and isinstance(proj, nn.Conv3d):
            if value.dim() == 4:
                value = value.unsqueeze(2)  # (D, 3, 1, p, p)
        offers[f"embed.proj.{suffix}"] = (src, value)

    pos = state.get("pos_embed")
    if pos is not None and kind in ("spectrogram", "frames"):
        n = math.isqrt(max(pos.shape[1] - 1, 0)) if pos.dim() == 3 else 0
        if pos.dim() != 3 or pos.shape[0] != 1 or n * n != pos.shape[1] - 1 or n == 0:
            problems.append(
                f"pos <- pos_embed: expected (1, 1 + n*n, D), got {tuple(pos.shape)}"
            )
        elif kind == "spectrogram":
            grid = PatchEmbed2d.grid(spec.shape, patch)
            offers["pos"] = ("pos_embed", _resize_grid(pos, grid).unsqueeze(0))
        else:
            t, _, h, w = spec.shape
            grid = _resize_grid(pos, (h // patch, w // patch))
            tiled = torch.cat([grid[:1], grid[1:].repeat(t, 1)], 0)  # frame-major, as TubeletEmbed
            offers["pos"] = ("pos_embed", tiled.unsqueeze(0))
    return offers, problems


def _published_offers(
    encoder: nn.Module, modality: str, state: dict[str, Tensor]
) -> tuple[dict[str, tuple[str, Tensor]], list[str]]:
    """The tensors a published-layout file offers one stream (copied as they are)."""
    stream = {ours: theirs for theirs, ours in PUBLISHED_STREAMS.items()}.get(modality)
    offers: dict[str, tuple[str, Tensor]] = {}
    if stream is None:
        return offers, []  # the published model has no text stream
    names = {
        "cls": f"cls_token_{stream}",
        "pos": f"pos_embed_{stream}",
        "embed.proj.weight": f"patch_embed_{stream}.proj.weight",
        "embed.proj.bias": f"patch_embed_{stream}.proj.bias",
    }
    for key in encoder.state_dict():
        if key.startswith("blocks."):
            src = f"{stream}_blocks." + key.removeprefix("blocks.")
        elif key.startswith("norm."):
            src = f"norm_{stream}." + key.removeprefix("norm.")
        else:
            src = names.get(key, "")
        if src in state:
            offers[key] = (src, state[src])
    return offers, []


def detect_layout(state: dict[str, Tensor]) -> str:
    """``published`` when a key has the published code's stream names, else ``timm``."""
    marks = tuple(f"{x}_{s}" for s in PUBLISHED_STREAMS for x in ("patch_embed", "cls_token",
                                                                   "pos_embed", "norm"))
    marks += tuple(f"{s}_blocks." for s in PUBLISHED_STREAMS)
    return "published" if any(k.startswith(marks) for k in state) else "timm"


def _strip_published_prefix(state: dict[str, Tensor]) -> dict[str, Tensor]:
    """A whole published model's checkpoint keeps its encoder under ``encoder.``."""
    if any(k.startswith("encoder.") for k in state):
        return {k.removeprefix("encoder."): v for k, v in state.items()}
    return state


def timm_state_dict(name: str) -> dict[str, Tensor]:
    """The weights timm downloads (or finds in its cache) for model ``name``.

    Raises:
        ValueError: One line: timm is not installed, the name is unknown, or the weights
            cannot be fetched (offline and not cached).
    """
    try:
        import timm
    except ImportError:
        raise ValueError(
            f"model.pretrained='{TIMM_PREFIX}{name}' needs timm, which is not installed; "
            "install it with: pip install -e '.[pretrained]'"
        ) from None
    if not name:
        raise ValueError(f"model.pretrained='{TIMM_PREFIX}' names no model; e.g. "
                         f"{TIMM_PREFIX}vit_base_patch16_224.augreg_in21k_ft_in1k")
    base = name.split(".", 1)[0]
    if base not in timm.list_models():
        raise ValueError(
            f"model.pretrained='{TIMM_PREFIX}{name}': timm {timm.__version__} has no model "
            f"{base!r}; list them with python -c \"import timm; print(timm.list_models('vit*'))\""
        )
    try:
        net = timm.create_model(name, pretrained=True)
    except Exception as e:  # noqa: BLE001 - network, hub and cache errors all end here
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise ValueError(
            f"model.pretrained='{TIMM_PREFIX}{name}': timm could not fetch the weights "
            f"({type(e).__name__}: {first}); without network, download them elsewhere and "
            "set model.pretrained to the saved state dict file"
        ) from None
    return {k: v.detach() for k, v in net.state_dict().items()}


@torch.no_grad()
def load_pretrained(model: nn.Module, source: str | Path) -> LoadReport:
    """Loads pretrained encoder weights onto every stream of a model.

    Args:
        model: A ``rollingq.model.MultimodalTransformer``.
        source: A state dict file (published or timm layout, detected) or ``timm:<model>``
            (config ``model.pretrained``).

    Returns:
        The report: layout, loaded, missing, unexpected and mismatched keys.

    Raises:
        FileNotFoundError: When the file does not exist.
        ValueError: When the file is not a state dict, timm cannot provide the weights, or not
            one tensor could be mapped (a state dict of another network).
    """
    source = str(source)
    if source.startswith(TIMM_PREFIX):
        state, layout = timm_state_dict(source.removeprefix(TIMM_PREFIX)), "timm"
    else:
        state = _strip_published_prefix(read_state_dict(source))
        layout = detect_layout(state)
    patch = model.cfg.patch_size
    report = LoadReport(source, layout)
    used: set[str] = set()
    for m, encoder in model.encoders.items():
        if layout == "published":
            offers, problems = _published_offers(encoder, m, state)
        else:
            offers, problems = _timm_offers(encoder, model.specs[m], patch, state)
        report.mismatched += [f"encoders.{m}.{p}" for p in problems]
        for key, target in encoder.state_dict(keep_vars=True).items():
            full = f"encoders.{m}.{key}"
            if key not in offers:
                report.missing.append(full)
                continue
            src, value = offers[key]
            if value.shape != target.shape:
                report.mismatched.append(
                    f"{full} <- {src}: shape {tuple(value.shape)} does not fit "
                    f"{tuple(target.shape)}"
                )
                report.missing.append(full)
                continue
            target.copy_(value.to(target.dtype))
            report.loaded.append(full)
            used.add(src)
    report.unexpected = [k for k in state if k not in used]
    if not report.loaded:
        hint = f"; first mismatches: {report.mismatched[:3]}" if report.mismatched else ""
        expected = ("patch_embed_audio.proj.weight, audio_blocks.0.attn.qkv.weight, ..."
                    if layout == "published"
                    else "blocks.0.attn.qkv.weight, cls_token, pos_embed, ...")
        raise ValueError(
            f"pretrained weights {source} (model.pretrained, {layout} layout) share no tensor "
            f"with the model's encoders; expected {expected}, got keys {list(state)[:5]}{hint}"
        )
    return report
