"""Video frames: decoding once, choosing 3 a clip, and the batched augmentation on the device.

Frames are decoded once into the cache (``cache.py``) as uint8, resized (aspect not kept) to
``decode_size`` x ``decode_size`` with torchvision's antialiased resize: with the default 224
this is the published evaluation's ``Resize((224, 224))`` (done by PIL there). What happens
per batch runs on the training device in ``AVTransform`` (a ``Split.transform``):

- train: choose 3 of the clip's stored frames (the data set's published rule), then per frame
  an independent RandomResizedCrop (scale 0.08-1, ratio 3/4-4/3, drawn in the *original*
  frame's pixels, so the squashed storage does not change the crop distribution) and a
  horizontal flip with probability 1/2, resized bilinearly to ``frame_size``, then ImageNet
  normalisation. On CUDA all crops of a batch are one ``grid_sample`` (sampling only inside
  each crop, as crop-then-resize does); on CPU each crop is resized in uint8 with torch's
  vectorised antialiased kernel, like the published PIL path (the two agree to 1 grey level
  when upsampling; ``grid_sample`` does not antialias a crop larger than ``frame_size``).
- eval: the 3 fixed frames stored per clip, normalised (resized if ``frame_size`` differs).

Per-clip frame rules (``count`` = the clip's number of JPEGs):

- CREMA-D train (published): 3 indices drawn with replacement from the sorted file list, sorted.
  CREMA-D eval (ours, deterministic; the published code draws at random): the centres of
  thirds, ``floor((i + 1/2) * count / 3)``.
- Kinetics-Sounds (published): ``seg = count // 3``; train frame ``i*seg + U{1..seg}`` capped at
  9; eval ``i*seg + max(seg // 2, 1)``; clips of 4-6 frames use frame 1 three times.

Differences from the published PIL path: a crop box is mapped onto the stored decode_size
pixels (rounded to them on CPU), and a crop of a small region is upsampled from those pixels
rather than the original resolution (a larger ``data.decode_size`` gets closer, at more memory).
"""

from __future__ import annotations

import functools
import math
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
FRAMES_PER_CLIP = 3
SCALE = (0.08, 1.0)  # torchvision RandomResizedCrop defaults, as published
RATIO = (3 / 4, 4 / 3)
KS_MAX_FRAME = 9  # the published Kinetics-Sounds train rule never picks frame 10 or later


class FrameError(ValueError):
    """A JPEG cannot be read or decoded; the message names the file."""


def decode_frame(path: Path, size: int) -> tuple[Tensor, tuple[int, int]]:
    """Decodes one JPEG to RGB uint8 and resizes it to (3, size, size) with antialiasing.

    Returns:
        The frame and the original (height, width).

    Raises:
        FrameError: The file cannot be read or is not a decodable JPEG.
    """
    from torchvision.io import ImageReadMode, decode_jpeg, read_file
    from torchvision.transforms.v2.functional import resize

    try:
        img = decode_jpeg(read_file(str(path)), mode=ImageReadMode.RGB)
    except (RuntimeError, OSError, ValueError) as e:
        raise FrameError(f"cannot decode JPEG {path}: {e}") from None
    h, w = img.shape[-2:]
    if (h, w) != (size, size):
        img = resize(img, [size, size], antialias=True)
    return img, (int(h), int(w))


# ---- which frames: published rules, as integer slot indices into a clip's stored frames ----


def cremad_eval_slots(count: int) -> list[int]:
    """CREMA-D eval: the centres of thirds of the clip's ``count`` sorted frames."""
    return [min(count - 1, int((i + 0.5) * count / FRAMES_PER_CLIP)) for i in range(3)]


def kinetics_frame_numbers(count: int, train: bool) -> list[int]:
    """Kinetics-Sounds: the 1-based frame numbers the published rule can pick.

    Train: every number the random rule can draw (frames 1..min(9, 3 * seg)); eval: the 3 fixed
    ones, ``i * seg + max(seg // 2, 1)``; clips of at most 6 frames use frame 1.
    """
    if count <= 6:
        return [1] if train else [1, 1, 1]
    seg = count // 3
    if train:
        return list(range(1, min(KS_MAX_FRAME, 3 * seg) + 1))
    return [i * seg + max(seg // 2, 1) for i in range(3)]


def cremad_train_slots(count: Tensor) -> Tensor:
    """(B,) frame counts -> (B, 3) indices drawn with replacement, sorted (published)."""
    u = torch.rand(len(count), FRAMES_PER_CLIP, device=count.device)
    return (u * count[:, None]).long().clamp_max(count[:, None] - 1).sort(dim=1).values


def kinetics_train_slots(count: Tensor) -> Tensor:
    """(B,) frame counts -> (B, 3) slots of frames ``i*seg + U{1..seg}`` capped at 9 (published).

    Slot ``t - 1`` holds frame number ``t``; clips of at most 6 frames use frame 1.
    """
    seg = (count // 3).clamp_min(1)[:, None]
    i = torch.arange(FRAMES_PER_CLIP, device=count.device)[None, :]
    offset = (torch.rand(len(count), FRAMES_PER_CLIP, device=count.device) * seg).long()
    number = (i * seg + 1 + offset.clamp_max(seg - 1)).clamp_max(KS_MAX_FRAME)
    number = torch.where(count[:, None] > 6, number, torch.ones_like(number))
    return number - 1


SAMPLERS = {"cremad": cremad_train_slots, "kinetics_sounds": kinetics_train_slots}


# ---- how: batched RandomResizedCrop + flip + normalisation ----


def random_resized_crop_boxes(height: Tensor, width: Tensor, tries: int = 10) -> Tensor:
    """torchvision's ``RandomResizedCrop.get_params`` for many images at once.

    Args:
        height, width: (M,) the original image sizes in pixels.
        tries: Random draws before falling back to the central crop (torchvision: 10).

    Returns:
        (M, 4) crop boxes ``(top, left, h, w)`` in original pixels (integers as floats).
    """
    m, dev = len(height), height.device
    H, W = height.float()[:, None], width.float()[:, None]
    area = H * W * torch.empty(m, tries, device=dev).uniform_(*SCALE)
    log_r = torch.empty(m, tries, device=dev).uniform_(math.log(RATIO[0]), math.log(RATIO[1]))
    aspect = torch.exp(log_r)
    w = torch.round(torch.sqrt(area * aspect))
    h = torch.round(torch.sqrt(area / aspect))
    ok = (w > 0) & (w <= W) & (h > 0) & (h <= H)
    first = ok.float().argmax(dim=1, keepdim=True)  # the first successful try
    w, h = w.gather(1, first)[:, 0], h.gather(1, first)[:, 0]
    H, W = H[:, 0], W[:, 0]
    # fallback: the central crop at the nearest allowed aspect ratio
    in_ratio = W / H
    fw = torch.where(in_ratio < RATIO[0], W, torch.where(in_ratio > RATIO[1],
                                                         torch.round(H * RATIO[1]), W))
    fh = torch.where(in_ratio < RATIO[0], torch.round(W / RATIO[0]), H)
    found = ok.any(dim=1)
    w, h = torch.where(found, w, fw), torch.where(found, h, fh)
    top = torch.floor(torch.rand(m, device=dev) * (H - h + 1))
    left = torch.floor(torch.rand(m, device=dev) * (W - w + 1))
    top = torch.where(found, top, torch.floor((H - h) / 2))
    left = torch.where(found, left, torch.floor((W - w) / 2))
    return torch.stack([top, left, h, w], dim=1)


def crop_resize(images: Tensor, boxes: Tensor, sizes: Tensor, flip: Tensor, out: int) -> Tensor:
    """Bilinear crop-and-resize of many images in one ``grid_sample``.

    Args:
        images: (M, C, S, S) float, the stored (squashed) frames.
        boxes: (M, 4) ``(top, left, h, w)`` in the original frame's pixels.
        sizes: (M, 2) the original (height, width); boxes are mapped through it.
        flip: (M,) bool, mirror the crop horizontally.
        out: The output side.

    Returns:
        (M, C, out, out).
    """
    top, left, h, w = boxes.unbind(1)
    H, W = sizes.float().unbind(1)
    theta = torch.zeros(len(images), 2, 3, device=images.device, dtype=images.dtype)
    # affine_grid maps output [-1, 1] (pixel edges, align_corners=False) into the input
    theta[:, 0, 0] = (w / W) * torch.where(flip, -1.0, 1.0)
    theta[:, 0, 2] = 2 * (left + w / 2) / W - 1
    theta[:, 1, 1] = h / H
    theta[:, 1, 2] = 2 * (top + h / 2) / H - 1
    grid = F.affine_grid(theta, [len(images), images.shape[1], out, out], align_corners=False)
    # sample only inside the crop, as cropping first and then resizing does (PIL, published):
    # clamp to the centres of the crop's outermost stored pixels
    s_h, s_w = images.shape[-2:]
    lo_x, hi_x = 2 * left / W - 1 + 1 / s_w, 2 * (left + w) / W - 1 - 1 / s_w
    lo_y, hi_y = 2 * top / H - 1 + 1 / s_h, 2 * (top + h) / H - 1 - 1 / s_h
    grid[..., 0] = grid[..., 0].clamp(lo_x.view(-1, 1, 1), hi_x.view(-1, 1, 1))
    grid[..., 1] = grid[..., 1].clamp(lo_y.view(-1, 1, 1), hi_y.view(-1, 1, 1))
    return F.grid_sample(images, grid, mode="bilinear", padding_mode="border",
                         align_corners=False)


def crop_resize_uint8(images: Tensor, boxes: Tensor, sizes: Tensor, flip: Tensor,
                      out: int) -> Tensor:
    """The CPU path of ``crop_resize``: integer crops resized in uint8, image by image.

    Like the published PIL path (integer crop box, antialiased bilinear resize to uint8), and
    about 4x faster on CPU than a float ``grid_sample``: torch has a vectorised uint8 kernel for
    3-channel channels-last images. Boxes are rounded to the stored frame's pixels.

    Args and Returns: as ``crop_resize``, with uint8 images in and out.
    """
    m, _, s_h, s_w = images.shape
    scale = torch.stack([s_h / sizes[:, 0].double(), s_w / sizes[:, 1].double()], 1)
    top, left, h, w = boxes.double().unbind(1)
    h_s = torch.round(h * scale[:, 0]).clamp(1, s_h).long()
    w_s = torch.round(w * scale[:, 1]).clamp(1, s_w).long()
    top_s = torch.minimum(torch.round(top * scale[:, 0]).long(), s_h - h_s)
    left_s = torch.minimum(torch.round(left * scale[:, 1]).long(), s_w - w_s)
    src = images.contiguous(memory_format=torch.channels_last)
    result = torch.empty(m, images.shape[1], out, out, dtype=torch.uint8)
    threads = torch.get_num_threads()
    # one thread: splitting a 224^2 resize costs more than it saves, and on a busy machine
    # contended OpenMP threads made this loop 10x slower (measured: 1,079 ms vs 96 ms a batch)
    torch.set_num_threads(1)
    try:
        for i, (y, x, hh, ww) in enumerate(zip(top_s.tolist(), left_s.tolist(), h_s.tolist(),
                                               w_s.tolist(), strict=True)):
            result[i] = F.interpolate(src[i : i + 1, :, y : y + hh, x : x + ww],
                                      size=(out, out), mode="bilinear", antialias=True,
                                      align_corners=False)[0]
    finally:
        torch.set_num_threads(threads)
    result[flip] = result[flip].flip(-1)
    return result


@functools.lru_cache(maxsize=16)
def _constant(values: tuple[float, ...], device: torch.device) -> Tensor:
    """A small constant tensor made once per device: ``torch.tensor(..., device=cuda)`` copies
    from pageable host memory and waits for the stream, two host synchronisations a step when it
    ran in every call."""
    return torch.tensor(values, device=device)


def normalise(frames: Tensor) -> Tensor:
    """uint8 (..., 3, H, W) -> float32 ``(x / 255 - mean) / std`` (ImageNet), in place."""
    scale = tuple(1 / (255 * s) for s in IMAGENET_STD)
    shift = tuple(-m / s for m, s in zip(IMAGENET_MEAN, IMAGENET_STD, strict=True))
    return frames.float().mul_(_constant(scale, frames.device).view(3, 1, 1)).add_(
        _constant(shift, frames.device).view(3, 1, 1))


class AVTransform:
    """A ``Split.transform``: stored batch -> model inputs, on whatever device the batch is.

    Audio stored as fp16 becomes float32; ``visual`` frames are chosen, augmented (train) and
    normalised as the module docstring says. Keys ending in ``_meta`` are consumed, not passed
    on: ``visual_meta`` (B, 3) int32 holds each clip's frame count and original height, width.
    Without it (a caller that slices only the model's modalities) every stored frame counts and
    frames are treated as square.

    Args:
        train: Random frames and crops (train) or the stored fixed frames (eval).
        size: The output side, ``data.frame_size``.
        rule: The train frame rule, a key of ``SAMPLERS``.
    """

    def __init__(self, train: bool, size: int, rule: str = "cremad") -> None:
        assert rule in SAMPLERS, f"unknown frame rule {rule!r}; valid: {', '.join(SAMPLERS)}"
        self.train, self.size, self.rule = train, size, rule

    def __repr__(self) -> str:
        return f"AVTransform(train={self.train}, size={self.size}, rule={self.rule!r})"

    def __call__(self, inputs: dict[str, Tensor]) -> dict[str, Tensor]:
        device = next(iter(inputs.values())).device.type
        with torch.autocast(device, enabled=False):  # fp32 whatever the caller's autocast
            return self._apply(inputs)

    def _apply(self, inputs: dict[str, Tensor]) -> dict[str, Tensor]:
        out = {}
        for key, x in inputs.items():
            if key.endswith("_meta"):
                continue
            if key == "visual":
                out[key] = self._frames(x, inputs.get("visual_meta"))
            elif x.dtype in (torch.float16, torch.bfloat16):
                out[key] = x.float()
            else:
                out[key] = x
        return out

    def _frames(self, x: Tensor, meta: Tensor | None) -> Tensor:
        B, K, C, S, _ = x.shape  # (B, K, 3, S, S) uint8: K stored frames a clip
        if not self.train:
            frames = normalise(x)  # eval stores exactly the 3 fixed frames
            if S != self.size:
                frames = F.interpolate(frames.flatten(0, 1), size=(self.size, self.size),
                                       mode="bilinear", antialias=True, align_corners=False)
                frames = frames.view(B, K, C, self.size, self.size)
            return frames
        if meta is None:
            meta = _constant((K, S, S), x.device).expand(B, 3)
        count = meta[:, 0].long().clamp_min(1)  # the clip's frame count, may exceed K (KS)
        slots = SAMPLERS[self.rule](count).clamp_max(K - 1)  # (B, 3)
        rows = torch.arange(B, device=x.device)[:, None]
        picked = x[rows, slots].flatten(0, 1)  # (B*3, 3, S, S)
        sizes = meta[:, 1:].repeat_interleave(FRAMES_PER_CLIP, dim=0)  # (B*3, 2)
        boxes = random_resized_crop_boxes(sizes[:, 0], sizes[:, 1])
        flip = torch.rand(len(picked), device=x.device) < 0.5
        if x.device.type == "cpu":
            frames = normalise(crop_resize_uint8(picked, boxes, sizes, flip, self.size))
        else:  # one kernel; normalising first is exact (bilinear weights sum to one)
            frames = crop_resize(normalise(picked), boxes, sizes, flip, self.size)
        return frames.view(B, FRAMES_PER_CLIP, C, self.size, self.size)
