"""Loading a timm-style ViT-B/16 checkpoint onto every encoder stream (config ``model.pretrained``).

The published model starts each modality's stream from the same ImageNet ViT-B/16 weights,
loaded with ``strict=False``, so a wrong file silently trains from scratch (METHOD.md §3). Here
every key is accounted for in a ``LoadReport``, and a file from which nothing could be mapped
is an error.

Mapping from the file (timm names) onto ``model.encoders[m]`` (``rollingq.model.Encoder``):

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

The grid of a stream (H/p x W/p) comes from the model's modality specs (``model.specs``).
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


@dataclass
class LoadReport:
    """What ``load_pretrained`` did, key by key.

    Attributes:
        path: The file read.
        loaded: Model keys filled from the file (``encoders.audio.blocks.0.norm1.weight``).
        missing: Encoder keys left as initialised.
        unexpected: File keys no stream used (``head.weight``, blocks beyond the depth, ...).
        mismatched: ``model key <- file key: reason`` for mappings that failed on shape; their
            model keys are also in ``missing``.
    """

    path: str
    loaded: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)
    mismatched: list[str] = field(default_factory=list)

    def summary(self) -> str:
        """One line: counts, and the first few keys of each non-empty list."""

        def few(keys: list[str]) -> str:
            return ", ".join(keys[:3]) + (", ..." if len(keys) > 3 else "")

        parts = [f"pretrained {self.path}: loaded {len(self.loaded)} tensors"]
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
            "model.pretrained to a timm-style ViT-B/16 state dict, or to '' to train from scratch"
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


def _stream_tensors(
    encoder: nn.Module, spec: ModalitySpec, patch: int, state: dict[str, Tensor]
) -> tuple[dict[str, tuple[str, Tensor]], list[str]]:
    """The tensors the file offers one stream, by encoder key, with the file key each came from.

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
            h, w = spec.shape
            offers["pos"] = ("pos_embed", _resize_grid(pos, (h // patch, w // patch)).unsqueeze(0))
        else:
            t, _, h, w = spec.shape
            grid = _resize_grid(pos, (h // patch, w // patch))
            tiled = torch.cat([grid[:1], grid[1:].repeat(t, 1)], 0)  # frame-major, as TubeletEmbed
            offers["pos"] = ("pos_embed", tiled.unsqueeze(0))
    return offers, problems


@torch.no_grad()
def load_pretrained(model: nn.Module, path: str | Path) -> LoadReport:
    """Loads a timm-style ViT state dict onto every encoder stream of a model.

    Args:
        model: A ``rollingq.model.MultimodalTransformer``.
        path: The state dict file (config ``model.pretrained``).

    Returns:
        The report: loaded, missing, unexpected and mismatched keys.

    Raises:
        FileNotFoundError: When ``path`` does not exist.
        ValueError: When the file is not a state dict, or when not one tensor could be mapped
            (a state dict of another network).
    """
    state = read_state_dict(path)
    patch = model.cfg.patch_size
    report = LoadReport(str(path))
    used: set[str] = set()
    for m, encoder in model.encoders.items():
        offers, problems = _stream_tensors(encoder, model.specs[m], patch, state)
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
        raise ValueError(
            f"pretrained weights {path} (model.pretrained) share no tensor with the model's "
            f"encoders; expected a timm-style ViT state dict (blocks.0.attn.qkv.weight, "
            f"cls_token, pos_embed, ...), got keys {list(state)[:5]}{hint}"
        )
    return report
