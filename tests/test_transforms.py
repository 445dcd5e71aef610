"""Joint augmentation: image and depth stay aligned, depth is never invented or blended."""

from __future__ import annotations

import pytest
import torch

from disdepth.data.sample import RawSample
from disdepth.data.transforms import (
    ColorAugment,
    KBCrop,
    NYUBorderCrop,
    RandomCrop,
    RandomHFlip,
    crop,
    rotate,
    rotate_crop,
    train_augmentation,
)


def _sample(h: int = 60, w: int = 80, sparse: bool = True) -> RawSample:
    """Depth encoded in the image: red channel = depth / 10, so alignment can be checked pixel by pixel."""
    g = torch.Generator().manual_seed(0)
    depth = torch.rand(1, h, w, generator=g) * 8 + 1  # 1..9 m
    if sparse:
        depth[torch.rand(1, h, w, generator=g) > 0.3] = 0.0
    image = torch.cat([depth / 10, torch.full((1, h, w), 0.5), torch.zeros(1, h, w)])
    intr = torch.tensor([50.0, 50.0, 40.0, 30.0])
    return RawSample(image=image, depth=depth, valid=depth > 0, focal=intr[0], intrinsics=intr, id="s")


def _values_subset(out: RawSample, src: RawSample) -> bool:
    return bool(torch.isin(out["depth"][out["valid"]], src["depth"][src["valid"]]).all())


def test_crop_and_flip_intrinsics() -> None:
    s = _sample()
    c = crop(s, 5, 7, 20, 30)
    assert c["image"].shape == (3, 20, 30) and c["intrinsics"].tolist() == [50, 50, 33, 25]
    assert torch.equal(c["depth"], s["depth"][..., 5:25, 7:37])
    f = RandomHFlip(p=1.0)(s)
    assert torch.equal(f["depth"], s["depth"].flip(-1)) and torch.equal(f["image"], s["image"].flip(-1))
    assert f["intrinsics"][2] == 79 - 40
    with pytest.raises(ValueError, match="s: cannot crop"):
        crop(s, 50, 0, 20, 30)
    with pytest.raises(ValueError, match="larger than the sample"):
        RandomCrop(100, 10)(s)


@pytest.mark.parametrize("angle", [2.5, -1.0, 15.0])
def test_rotation_never_invents_or_blends_depth(angle: float) -> None:
    s = _sample()
    for out in (rotate(s, angle), rotate_crop(s, angle, 4, 6, 40, 60)):
        assert _values_subset(out, s)  # nearest: every depth is a copy of an input depth
        assert torch.equal(out["valid"], out["depth"] > 0)
        assert int(out["valid"].sum()) <= int(s["valid"].sum())
    # the fused rotate+crop is the same geometry as torchvision's rotate followed by a crop
    assert torch.equal(rotate_crop(s, angle, 4, 6, 40, 60)["depth"], crop(rotate(s, angle), 4, 6, 40, 60)["depth"])


def test_augmentation_keeps_image_and_depth_aligned() -> None:
    # A piecewise-constant scene (8x8 blocks): away from block edges image and depth must agree exactly.
    h, w = 64, 96
    blocks = torch.rand(1, h // 8, w // 8, generator=torch.Generator().manual_seed(1)) * 8 + 1
    depth = blocks.repeat_interleave(8, 1).repeat_interleave(8, 2)
    s = RawSample(
        image=torch.cat([depth / 10, depth / 20, torch.zeros_like(depth)]),
        depth=depth,
        valid=depth > 0,
        focal=torch.tensor(50.0),
        intrinsics=torch.tensor([50.0, 50.0, 48.0, 32.0]),
        id="blocks",
    )
    torch.manual_seed(3)
    aug = train_augmentation((48, 64), 2.5, True, (1.0, 1.0), (1.0, 1.0), (1.0, 1.0), color_prob=0.0)
    for _ in range(5):
        out = aug(s)
        assert out["image"].shape == (3, 48, 64) and out["depth"].shape == (1, 48, 64)
        # interior pixels: all 3x3 neighbours have the same depth -> bilinear image == depth / 10
        d = out["depth"][0]
        same = torch.ones_like(d, dtype=torch.bool)
        for dy in (-1, 0, 1):
            for dx in (-1, 0, 1):
                same &= d == torch.roll(d, (dy, dx), (0, 1))
        same[:2] = same[-2:] = False
        same[:, :2] = same[:, -2:] = False
        same &= out["valid"][0]
        assert same.sum() > 1000
        assert torch.allclose(out["image"][0][same], d[same] / 10, atol=1e-4)
        assert _values_subset(out, s)


def test_color_augment_changes_image_only() -> None:
    s = _sample()
    out = ColorAugment((0.5, 0.5), (1.2, 1.2), (1.0, 1.0), p=1.0)(s)
    assert torch.allclose(out["image"], (s["image"] ** 0.5 * 1.2).clamp(0, 1), atol=1e-6)
    assert out["depth"] is s["depth"]
    with pytest.raises(ValueError, match="augment.gamma"):
        ColorAugment((1.2, 0.9))


def test_seeded_augmentation_is_deterministic() -> None:
    s = _sample()
    aug = train_augmentation((40, 60), 2.5, True, (0.9, 1.1), (0.9, 1.1), (0.9, 1.1), 0.5)
    torch.manual_seed(7)
    a = aug(s)
    torch.manual_seed(7)
    b = aug(s)
    assert torch.equal(a["image"], b["image"]) and torch.equal(a["depth"], b["depth"])
    g1, g2 = torch.Generator().manual_seed(5), torch.Generator().manual_seed(5)
    a = train_augmentation((40, 60), 2.5, True, (0.9, 1.1), (0.9, 1.1), (0.9, 1.1), 0.5, g1)(s)
    b = train_augmentation((40, 60), 2.5, True, (0.9, 1.1), (0.9, 1.1), (0.9, 1.1), 0.5, g2)(s)
    assert torch.equal(a["image"], b["image"])


def test_kb_and_nyu_crops() -> None:
    for h, w in ((375, 1242), (370, 1224), (376, 1241)):
        s = _sample(h, w)
        out = KBCrop()(s)
        assert out["depth"].shape == (1, 352, 1216)
        assert out["intrinsics"][3] == 30 - (h - 352) and out["intrinsics"][2] == 40 - (w - 1216) // 2
    with pytest.raises(ValueError, match="KB crop needs"):
        KBCrop()(_sample())
    assert NYUBorderCrop()(_sample(480, 640))["depth"].shape == (1, 427, 565)
    assert NYUBorderCrop()(_sample(48, 64))["depth"].shape == (1, 48, 64)
