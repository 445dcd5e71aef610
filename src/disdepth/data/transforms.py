"""Joint image/depth transforms: ``RawSample -> RawSample`` callables (BTS training recipe, Lee et al. 2019).

Geometry is applied to image, depth and valid together and intrinsics follow it. Depth and the valid
mask are only ever resampled with nearest-neighbour, so sparse LiDAR depth is never blended and a
rotation never invents depth where there was none (out-of-image corners get depth 0, valid False).

Randomness comes from an optional ``torch.Generator`` or else torch's global RNG, which a DataLoader
seeds per worker (``base_seed + worker_id``), so a seeded run draws the same augmentations.

The training augmentation records its geometry in the sample (:class:`RecordGeometry`, first step of
:func:`train_augmentation`), so the teacher-target cache (``tasks/teacher_cache.py``) can warp maps it computed once
on the un-augmented frame exactly as the image was warped:

    geometry:    (3, 3) float64 affine map, homogeneous: (x, y, 1) of an output pixel centre -> the same point in
                 pixels of the frame the augmentation received (pixel centres at integers, x right, y down);
    geometry_hw: (2,) int64 (H, W) of that frame.

Crops, flips and rotations compose into it; photometric steps leave it alone. A sample that did not pass
:class:`RecordGeometry` has neither key, and the geometric steps then record nothing.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torchvision.transforms import InterpolationMode
from torchvision.transforms.v2 import functional as TF

from disdepth.data.io import Transform
from disdepth.data.sample import RawSample

# KITTI benchmark crop (Uhrig et al. 2017, used by BTS --do_kb_crop): every KITTI frame is at least
# 352x1216, so cropping the bottom 352 rows and the centred 1216 columns gives one size for all drives.
KB_HEIGHT, KB_WIDTH = 352, 1216
# NYU Depth V2 RGB frames have a white border; BTS trains on [45:472, 43:608] (rows, cols) at 480x640.
NYU_BORDER = (45, 472, 43, 608)


def _uniform(lo: float, hi: float, generator: torch.Generator | None) -> float:
    return lo + (hi - lo) * float(torch.rand((), generator=generator))


def _copy(s: RawSample) -> RawSample:
    return RawSample(**s)  # shallow copy; tensors are replaced, never modified in place


def _affine(a: float, b: float, c: float, d: float, e: float, f: float) -> torch.Tensor:
    """(3, 3) float64 homogeneous matrix of ``x' = a x + b y + c, y' = d x + e y + f``."""
    return torch.tensor([[a, b, c], [d, e, f], [0.0, 0.0, 1.0]], dtype=torch.float64)


def _record(out: RawSample, s: RawSample, step: torch.Tensor) -> None:
    """Compose ``step`` (output pixel -> input pixel of this step) into ``out["geometry"]`` when ``s`` records.

    float64, so crops and flips (integer entries) compose exactly and a cached map can be sliced, not resampled.
    """
    if "geometry" in s:
        out["geometry"] = s["geometry"] @ step  # type: ignore[typeddict-unknown-key]


def _rotation(degrees: float, height: int, width: int) -> torch.Tensor:
    """Output pixel -> input pixel of a counter-clockwise (on screen, y down) rotation about the frame centre."""
    a = math.radians(degrees)
    cos, sin = math.cos(a), math.sin(a)
    cx, cy = (width - 1) / 2, (height - 1) / 2
    # source = R^T (dest - c) + c, as in rotate_crop's sampling grid.
    return _affine(cos, -sin, cx - cos * cx + sin * cy, sin, cos, cy - sin * cx - cos * cy)


class RecordGeometry:
    """Start recording the augmentation's geometry: identity ``geometry`` and the frame's ``geometry_hw``."""

    def __call__(self, s: RawSample) -> RawSample:
        out = _copy(s)
        out["geometry"] = torch.eye(3, dtype=torch.float64)  # type: ignore[typeddict-unknown-key]
        out["geometry_hw"] = torch.tensor(s["depth"].shape[-2:], dtype=torch.int64)  # type: ignore[typeddict-unknown-key]
        return out


def crop(s: RawSample, top: int, left: int, height: int, width: int) -> RawSample:
    """Crop image, depth and valid to ``[top:top+height, left:left+width]``; shifts cx, cy.

    Raises:
        ValueError: the crop does not fit inside the sample (message names the sample id).
    """
    h, w = s["depth"].shape[-2:]
    if top < 0 or left < 0 or top + height > h or left + width > w:
        raise ValueError(f"{s['id']}: cannot crop {height}x{width} at ({top}, {left}) from a {h}x{w} sample")
    out = _copy(s)
    for key in ("image", "depth", "valid"):
        if s[key].numel():  # image may be empty for ground-truth-only loads
            out[key] = s[key][..., top : top + height, left : left + width]
    intr = s["intrinsics"].clone()
    intr[2] -= left
    intr[3] -= top
    out["intrinsics"] = intr
    _record(out, s, _affine(1, 0, left, 0, 1, top))
    return out


class KBCrop:
    """KITTI benchmark crop to 352x1216: bottom rows, centred columns (BTS ``do_kb_crop``)."""

    def __call__(self, s: RawSample) -> RawSample:
        h, w = s["depth"].shape[-2:]
        if h < KB_HEIGHT or w < KB_WIDTH:
            raise ValueError(f"{s['id']}: KB crop needs at least {KB_HEIGHT}x{KB_WIDTH}, sample is {h}x{w}")
        return crop(s, h - KB_HEIGHT, (w - KB_WIDTH) // 2, KB_HEIGHT, KB_WIDTH)


class NYUBorderCrop:
    """Drop NYU's white border at 480x640 (BTS train: rows 45:472, cols 43:608); other sizes pass."""

    def __call__(self, s: RawSample) -> RawSample:
        if tuple(s["depth"].shape[-2:]) != (480, 640):
            return s
        t, b, l, r = NYU_BORDER
        return crop(s, t, l, b - t, r - l)


class RandomCrop:
    """Random ``height x width`` crop (BTS: KITTI 352x704, NYU 416x544); a smaller sample is an error."""

    def __init__(self, height: int, width: int, generator: torch.Generator | None = None) -> None:
        self.height, self.width, self.generator = height, width, generator

    def __call__(self, s: RawSample) -> RawSample:
        h, w = s["depth"].shape[-2:]
        if h < self.height or w < self.width:
            raise ValueError(f"{s['id']}: random crop {self.height}x{self.width} is larger than the sample {h}x{w}")
        top = int(torch.randint(0, h - self.height + 1, (), generator=self.generator))
        left = int(torch.randint(0, w - self.width + 1, (), generator=self.generator))
        return crop(s, top, left, self.height, self.width)


class RandomHFlip:
    """Horizontal flip with probability ``p``; cx -> (W - 1) - cx (pixel centres at integers)."""

    def __init__(self, p: float = 0.5, generator: torch.Generator | None = None) -> None:
        self.p, self.generator = p, generator

    def __call__(self, s: RawSample) -> RawSample:
        if float(torch.rand((), generator=self.generator)) >= self.p:
            return s
        out = _copy(s)
        out["image"] = TF.horizontal_flip(s["image"])
        out["depth"] = TF.horizontal_flip(s["depth"])
        out["valid"] = TF.horizontal_flip(s["valid"])
        intr = s["intrinsics"].clone()
        intr[2] = (s["depth"].shape[-1] - 1) - intr[2]
        out["intrinsics"] = intr
        _record(out, s, _affine(-1, 0, s["depth"].shape[-1] - 1, 0, 1, 0))
        return out


def rotate(s: RawSample, degrees: float) -> RawSample:
    """Rotate about the image centre by ``degrees`` (counter-clockwise), keeping the size.

    The image is resampled bilinearly; depth and valid with nearest, so every output depth is a
    copy of one input depth and pixels that come from outside the frame get depth 0 / valid False.
    Intrinsics are kept: for the small BTS angles (1-2.5 deg) the change is below a pixel at the
    centre and BTS ignores it too.
    """
    if degrees == 0:
        return s
    out = _copy(s)
    out["image"] = TF.rotate(s["image"], degrees, interpolation=InterpolationMode.BILINEAR, fill=0.0)
    depth = TF.rotate(s["depth"], degrees, interpolation=InterpolationMode.NEAREST, fill=0.0)
    valid = TF.rotate(s["valid"].to(torch.uint8), degrees, interpolation=InterpolationMode.NEAREST, fill=0)
    valid = valid.bool() & (depth > 0)
    out["depth"] = torch.where(valid, depth, torch.zeros_like(depth))
    out["valid"] = valid
    _record(out, s, _rotation(degrees, *s["depth"].shape[-2:]))
    return out


class RandomRotate:
    """Rotation by U(-degrees, degrees) (BTS: KITTI 1 deg, NYU 2.5 deg)."""

    def __init__(self, degrees: float, generator: torch.Generator | None = None) -> None:
        self.degrees, self.generator = float(degrees), generator

    def __call__(self, s: RawSample) -> RawSample:
        return rotate(s, _uniform(-self.degrees, self.degrees, self.generator))


def rotate_crop(s: RawSample, degrees: float, top: int, left: int, height: int, width: int) -> RawSample:
    """``crop(rotate(s, degrees), top, left, height, width)`` computed only for the crop window.

    Same geometry as :func:`rotate` (about the full frame's centre, counter-clockwise, zeros outside)
    but one sampling grid of the output size, shared by image (bilinear) and depth/valid (nearest,
    stacked): about 2x faster than rotating the whole KITTI frame and cropping afterwards.
    """
    h, w = s["depth"].shape[-2:]
    if top < 0 or left < 0 or top + height > h or left + width > w:
        raise ValueError(f"{s['id']}: cannot crop {height}x{width} at ({top}, {left}) from a {h}x{w} sample")
    a = math.radians(degrees)
    cos, sin = math.cos(a), math.sin(a)
    cx, cy = (w - 1) / 2, (h - 1) / 2
    ys, xs = torch.meshgrid(
        torch.arange(top, top + height, dtype=torch.float32) - cy,
        torch.arange(left, left + width, dtype=torch.float32) - cx,
        indexing="ij",
    )
    # Inverse of a counter-clockwise (on screen, y down) rotation: source = R^T (dest - c) + c.
    src_x = cos * xs - sin * ys + cx
    src_y = sin * xs + cos * ys + cy
    grid = torch.stack([(2 * src_x + 1) / w - 1, (2 * src_y + 1) / h - 1], dim=-1)[None]  # align_corners=False
    out = _copy(s)
    if s["image"].numel():
        img = torch.nn.functional.grid_sample(s["image"][None], grid, "bilinear", "zeros", align_corners=False)
        out["image"] = img[0].clamp_(0.0, 1.0)
    dv = torch.cat([s["depth"], s["valid"].to(s["depth"].dtype)], 0)[None]
    dv = torch.nn.functional.grid_sample(dv, grid, "nearest", "zeros", align_corners=False)[0]
    valid = (dv[1:2] > 0.5) & (dv[0:1] > 0)
    out["depth"] = torch.where(valid, dv[0:1], torch.zeros_like(dv[0:1]))
    out["valid"] = valid
    intr = s["intrinsics"].clone()
    intr[2] -= left
    intr[3] -= top
    out["intrinsics"] = intr
    _record(out, s, _rotation(degrees, h, w) @ _affine(1, 0, left, 0, 1, top))
    return out


class RandomRotateCrop:
    """Random rotation U(-degrees, degrees) then a random ``height x width`` crop, fused (see :func:`rotate_crop`)."""

    def __init__(self, degrees: float, height: int, width: int, generator: torch.Generator | None = None) -> None:
        self.degrees, self.height, self.width, self.generator = float(degrees), height, width, generator

    def __call__(self, s: RawSample) -> RawSample:
        h, w = s["depth"].shape[-2:]
        if h < self.height or w < self.width:
            raise ValueError(f"{s['id']}: random crop {self.height}x{self.width} is larger than the sample {h}x{w}")
        angle = _uniform(-self.degrees, self.degrees, self.generator)
        top = int(torch.randint(0, h - self.height + 1, (), generator=self.generator))
        left = int(torch.randint(0, w - self.width + 1, (), generator=self.generator))
        return rotate_crop(s, angle, top, left, self.height, self.width)


class ColorAugment:
    """BTS photometric augmentation with probability ``p``: gamma, brightness, per-channel colour gain.

    image <- clip((image ** g) * b * c_rgb, 0, 1), g ~ U(gamma), b ~ U(brightness), c ~ U(color)^3.
    Depth is untouched.
    """

    def __init__(
        self,
        gamma: Sequence[float] = (0.9, 1.1),
        brightness: Sequence[float] = (0.9, 1.1),
        color: Sequence[float] = (0.9, 1.1),
        p: float = 0.5,
        generator: torch.Generator | None = None,
    ) -> None:
        for name, rng in (("gamma", gamma), ("brightness", brightness), ("color", color)):
            if len(rng) != 2 or rng[0] > rng[1] or rng[0] <= 0:
                raise ValueError(f"augment.{name}: expected [low, high] with 0 < low <= high, got {list(rng)}")
        self.gamma, self.brightness, self.color = tuple(gamma), tuple(brightness), tuple(color)
        self.p, self.generator = p, generator

    def __call__(self, s: RawSample) -> RawSample:
        if float(torch.rand((), generator=self.generator)) >= self.p:
            return s
        g = _uniform(*self.gamma, self.generator)
        b = _uniform(*self.brightness, self.generator)
        lo, hi = self.color
        c = lo + (hi - lo) * torch.rand(3, 1, 1, generator=self.generator)
        out = _copy(s)
        image = TF.adjust_gamma(s["image"], g, gain=b)  # gain * image ** gamma
        out["image"] = (image * c).clamp_(0.0, 1.0)
        return out


class Compose:
    """Apply transforms in order."""

    def __init__(self, transforms: Sequence[Transform]) -> None:
        self.transforms = list(transforms)

    def __call__(self, s: RawSample) -> RawSample:
        for t in self.transforms:
            s = t(s)
        return s

    def __repr__(self) -> str:
        return f"Compose({[t.__class__.__name__ for t in self.transforms]})"


def train_augmentation(
    crop_hw: tuple[int, int] | None,
    rotate_degrees: float,
    hflip: bool,
    gamma: Sequence[float],
    brightness: Sequence[float],
    color: Sequence[float],
    color_prob: float = 0.5,
    generator: torch.Generator | None = None,
) -> Compose:
    """The BTS training pipeline: rotate -> random crop -> flip -> colour (order as in BTS's loader).

    Rotating before cropping lets the crop discard most of the black corners the rotation creates. Each sample
    records its geometry (``geometry``, ``geometry_hw``: see the module docstring).
    """
    steps: list[Transform] = [RecordGeometry()]
    rotating = rotate_degrees > 0 and not math.isclose(rotate_degrees, 0.0)
    if rotating and crop_hw is not None:
        steps.append(RandomRotateCrop(rotate_degrees, crop_hw[0], crop_hw[1], generator))
    elif rotating:
        steps.append(RandomRotate(rotate_degrees, generator))
    elif crop_hw is not None:
        steps.append(RandomCrop(crop_hw[0], crop_hw[1], generator))
    if hflip:
        steps.append(RandomHFlip(0.5, generator))
    if color_prob > 0:
        steps.append(ColorAugment(gamma, brightness, color, color_prob, generator))
    return Compose(steps)
