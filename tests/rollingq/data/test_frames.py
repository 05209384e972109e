"""Frame rules (published and ours) and the batched crop/flip/normalise, against references."""

import random

import pytest
import torch
import torch.nn.functional as F

from rollingq.data.frames import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    AVTransform,
    cremad_eval_slots,
    cremad_train_slots,
    crop_resize,
    crop_resize_uint8,
    kinetics_frame_numbers,
    kinetics_train_slots,
    normalise,
    random_resized_crop_boxes,
)


def published_ks_train(file_num: int) -> list[int]:
    """The published Kinetics-Sounds train rule, line by line (random.randint, cap at 9)."""
    seg = int(file_num / 3)
    t = [0] * 3
    for i in range(3):
        t[i] = random.randint(i * seg + 1, i * seg + seg) if file_num > 6 else 1
        if t[i] >= 10:
            t[i] = 9
    return t


def published_ks_test(file_num: int) -> list[int]:
    seg = int(file_num / 3)
    return [i * seg + max(int(seg / 2), 1) if file_num > 6 else 1 for i in range(3)]


@pytest.mark.parametrize("count", [4, 6, 7, 10, 13, 20, 30])
def test_kinetics_rules_match_the_published_code(count):
    random.seed(0)
    torch.manual_seed(0)
    want = [set() for _ in range(3)]
    for _ in range(400):
        for i, t in enumerate(published_ks_train(count)):
            want[i].add(t)
    got = kinetics_train_slots(torch.full((400,), count)) + 1  # slot t-1 holds frame t
    assert [set(got[:, i].tolist()) for i in range(3)] == want
    assert set(kinetics_frame_numbers(count, train=True)) >= set().union(*want)
    assert kinetics_frame_numbers(count, train=False) == published_ks_test(count)


def test_cremad_rules():
    torch.manual_seed(0)
    slots = cremad_train_slots(torch.tensor([1, 2, 3, 5] * 200))
    assert (slots.diff(dim=1) >= 0).all(), "sorted, as published"
    for count in (1, 2, 3, 5):
        rows = slots[torch.tensor([1, 2, 3, 5] * 200) == count]
        assert set(rows.flatten().tolist()) == set(range(count)), "with replacement, every frame"
    assert [cremad_eval_slots(n) for n in (1, 2, 3, 4, 6)] == [
        [0, 0, 0], [0, 1, 1], [0, 1, 2], [0, 2, 3], [1, 3, 5]]


def test_crop_boxes_follow_torchvision_rules():
    torch.manual_seed(0)
    h, w = torch.full((4000,), 360), torch.full((4000,), 480)
    top, left, bh, bw = random_resized_crop_boxes(h, w).unbind(1)
    assert (top >= 0).all() and (left >= 0).all()
    assert (top + bh <= 360).all() and (left + bw <= 480).all()
    area = bh * bw / (360 * 480)
    assert area.min() >= 0.08 - 0.01 and area.max() <= 1
    ratio = bw / bh
    assert ratio.min() >= 3 / 4 - 0.02 and ratio.max() <= 4 / 3 + 0.02
    # the same distribution as torchvision's own get_params (rejections included)
    from torchvision.transforms import RandomResizedCrop

    img = torch.zeros(3, 360, 480)
    ref = torch.tensor([RandomResizedCrop.get_params(img, [0.08, 1.0], [3 / 4, 4 / 3])
                        for _ in range(4000)], dtype=torch.float)
    ref_area = ref[:, 2] * ref[:, 3] / (360 * 480)
    ref_ratio = ref[:, 3] / ref[:, 2]
    assert abs(area.mean() - ref_area.mean()) < 0.02
    assert abs(ratio.log().mean() - ref_ratio.log().mean()) < 0.02
    assert abs((left / (480 - bw + 1)).mean() - 0.5) < 0.03
    # an extreme strip never succeeds: torchvision's central-crop fallback
    top, left, bh, bw = random_resized_crop_boxes(torch.tensor([10]), torch.tensor([1000]))[0]
    assert (bh.item(), bw.item()) == (10, 13) and left.item() == (1000 - 13) // 2 and top == 0


def test_crop_resize_equals_crop_then_interpolate():
    torch.manual_seed(0)
    img = torch.rand(2, 3, 40, 40)
    sizes = torch.tensor([[40, 40], [40, 40]])
    # the whole image at the same size is the identity; flip mirrors
    full = torch.tensor([[0.0, 0, 40, 40]] * 2)
    out = crop_resize(img, full, sizes, torch.tensor([False, True]), 40)
    torch.testing.assert_close(out[0], img[0], atol=1e-5, rtol=0)
    torch.testing.assert_close(out[1], img[1].flip(-1), atol=1e-5, rtol=0)
    # a crop equals cropping, then bilinear resizing (align_corners=False, no antialias)
    box = torch.tensor([[8.0, 4, 20, 24]])
    out = crop_resize(img[:1], box, sizes[:1], torch.tensor([False]), 56)
    ref = F.interpolate(img[:1, :, 8:28, 4:28], size=(56, 56), mode="bilinear",
                        align_corners=False)
    torch.testing.assert_close(out, ref, atol=1e-4, rtol=0)  # edges too: only crop pixels
    # boxes are given in original pixels: a squashed 40x40 copy of a 40x80 frame
    box = torch.tensor([[0.0, 40, 40, 40]])  # the right half of the original
    out = crop_resize(img[:1], box, torch.tensor([[40, 80]]), torch.tensor([False]), 40)
    ref = F.interpolate(img[:1, :, :, 20:], size=(40, 40), mode="bilinear", align_corners=False)
    torch.testing.assert_close(out, ref, atol=1e-4, rtol=0)


def test_normalise_is_imagenet():
    x = torch.tensor([0, 128, 255], dtype=torch.uint8).view(1, 3, 1, 1).expand(1, 3, 2, 2)
    got = normalise(x)[0, :, 0, 0]
    want = [(v / 255 - m) / s for v, m, s in zip((0, 128, 255), IMAGENET_MEAN, IMAGENET_STD,
                                                 strict=True)]
    torch.testing.assert_close(got, torch.tensor(want), atol=1e-6, rtol=0)


def test_transform_train_and_eval_shapes_and_dtypes():
    torch.manual_seed(0)
    frames = torch.randint(0, 255, (4, 5, 3, 32, 32), dtype=torch.uint8)
    meta = torch.tensor([[5, 360, 480], [2, 360, 480], [1, 20, 20], [3, 32, 32]],
                        dtype=torch.int32)
    audio = torch.randn(4, 8, 8).half()
    out = AVTransform(True, 16)({"audio": audio, "visual": frames, "visual_meta": meta})
    assert set(out) == {"audio", "visual"}
    assert out["audio"].dtype == torch.float32 and out["visual"].shape == (4, 3, 3, 16, 16)
    # without the meta (a caller that slices only the modalities) it still works
    out = AVTransform(True, 16)({"visual": frames})
    assert out["visual"].shape == (4, 3, 3, 16, 16)
    ev = AVTransform(False, 16)({"visual": frames[:, :3]})
    assert ev["visual"].shape == (4, 3, 3, 16, 16)
    same = AVTransform(False, 32)({"visual": frames[:, :3]})["visual"]
    torch.testing.assert_close(same, normalise(frames[:, :3]))


def test_cpu_uint8_path_matches_the_grid_sample_path():
    """The CPU path (uint8, per image) and the device path (one grid_sample) mean the same."""
    torch.manual_seed(0)
    smooth = F.interpolate(torch.rand(6, 3, 8, 8) * 255, size=(64, 64), mode="bilinear")
    images = smooth.round().to(torch.uint8)
    sizes = torch.tensor([[64, 64]] * 6)
    boxes = torch.tensor([[0, 0, 64, 64], [8, 4, 40, 50], [20, 30, 20, 30],
                          [0, 10, 64, 30], [5, 5, 10, 10], [30, 0, 34, 64]], dtype=torch.float)
    flip = torch.tensor([False, True, False, True, False, True])
    u8 = crop_resize_uint8(images, boxes, sizes, flip, 96).float()
    grid = crop_resize(images.float(), boxes, sizes, flip, 96)
    assert (u8 - grid).abs().max() <= 1.01, "the uint8 path rounds; otherwise they agree"
    # and through the transform, with a frame count and original sizes
    frames = images.view(2, 3, 3, 64, 64)
    meta = torch.tensor([[3, 360, 480], [2, 64, 64]], dtype=torch.int32)
    out = AVTransform(True, 32)({"visual": frames, "visual_meta": meta})["visual"]
    assert out.shape == (2, 3, 3, 32, 32) and out.dtype == torch.float32


def test_normalise_makes_its_constants_once_per_device(monkeypatch):
    """Issue 38, finding 3: ``torch.tensor(..., device=cuda)`` in every call copied from pageable
    host memory, two host synchronisations a training step; the constants are now made once per
    device (counted here on the CPU: no tensor made from host values after the first call)."""
    x = torch.randint(0, 256, (2, 3, 4, 4), dtype=torch.uint8)
    normalise(x.clone())
    made = []
    real = torch.tensor
    monkeypatch.setattr(torch, "tensor", lambda *a, **k: made.append(a) or real(*a, **k))
    first = normalise(x.clone())
    second = normalise(x.clone())
    assert made == []
    torch.testing.assert_close(first, second, atol=0, rtol=0)
