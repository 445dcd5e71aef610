"""The built-in synthetic RGB-D world: procedural indoor (NYU-like) and outdoor (KITTI-like) scenes with exact depth.

Every sample is rendered on the fly by vectorised NumPy ray casting (:mod:`disdepth.data.synth`), so
every command and test runs on a fresh machine with no download. Sample ``i`` of a dataset is scene
number ``index_offset + i``, rendered deterministically from ``(seed, preset, scene number)``.

Example:
    >>> ds = SyntheticDepthDataset("indoor", length=100, height=240, width=320)
    >>> ds[0]["depth"].shape
    torch.Size([1, 240, 320])
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
from torch.utils.data import Dataset

from disdepth.data.sample import IMAGENET_MEAN, IMAGENET_STD, DepthSample, RawSample, normalize_sample
from disdepth.data.synth.camera import preset_intrinsics, rotation
from disdepth.data.synth.indoor import indoor_scene
from disdepth.data.synth.outdoor import outdoor_scene
from disdepth.data.synth.primitives import Box, Plane, Primitive, Sphere
from disdepth.data.synth.render import Light, Rendered, Scene, lidar_mask, render, sensor_effects
from disdepth.data.synth.textures import Material

PRESETS: dict[str, Callable[[np.random.Generator], Scene]] = {"indoor": indoor_scene, "outdoor": outdoor_scene}
MAX_DEPTH = {"indoor": 10.0, "outdoor": 80.0}  # metres: NYU and KITTI evaluation caps
SPARSE_DENSITY = 0.05  # default fraction of image pixels kept by ``sparse=True`` (KITTI raw: ~4-5%)
_PRESET_CODE = {"indoor": 1, "outdoor": 2}


def _check(preset: str, height: int, width: int) -> None:
    if preset not in PRESETS:
        raise ValueError(f"synthetic preset {preset!r}: expected one of {', '.join(PRESETS)}")
    if height < 8 or width < 8:
        raise ValueError(f"synthetic size {height}x{width}: height and width must be at least 8 pixels")


def sample_rng(preset: str, index: int, seed: int) -> np.random.Generator:
    """The generator for one scene: a function of (seed, preset, index) only, never of global state."""
    return np.random.default_rng([int(seed), _PRESET_CODE[preset], int(index)])


def render_arrays(
    preset: str,
    index: int,
    height: int,
    width: int,
    seed: int = 0,
    sparse: bool = False,
    sparse_density: float = SPARSE_DENSITY,
    depth_noise: float = 0.0,
    holes: float = 0.0,
) -> tuple[Rendered, tuple[float, float, float, float]]:
    """Render scene ``index`` of a preset as NumPy arrays (see :class:`Rendered`) and its intrinsics.

    ``depth``/``valid`` already include sparsity and sensor effects; ``z`` and ``pid`` are the clean
    ray-cast z-depth (inf on sky) and primitive ids (-1 on sky).
    """
    _check(preset, height, width)
    rng = sample_rng(preset, index, seed)
    scene = PRESETS[preset](rng)
    k = preset_intrinsics(preset, height, width)
    out = render(scene, height, width, k)
    # Effects use their own streams so switching them on changes neither the scene nor the image.
    fx_rng = np.random.default_rng([int(seed), _PRESET_CODE[preset], int(index), 1])
    if depth_noise > 0 or holes > 0:
        out.depth, out.valid = sensor_effects(out.depth, out.valid, fx_rng, depth_noise, holes)
    if sparse:
        out.valid = lidar_mask(out.dirs, out.valid, sparse_density, fx_rng)
        out.depth = np.where(out.valid, out.depth, 0.0).astype(np.float32)
    # Mild sensor noise on the image so flat regions are not perfectly clean (fixed level, not a depth cue).
    img_rng = np.random.default_rng([int(seed), _PRESET_CODE[preset], int(index), 2])
    grain = img_rng.random(out.image.shape, np.float32) - 0.5  # uniform: much cheaper than normal, std 0.008
    out.image = np.clip(out.image + grain * np.float32(0.028), 0, 1)
    return out, k


def synthetic_id(preset: str, seed: int, index: int) -> str:
    """The sample id of scene ``index`` (ids end in the scene number: ``tasks/teacher_cache.py`` finds frames by it)."""
    return f"synth_{preset}_s{seed}_{index:07d}"


def to_raw_sample(r: Rendered, k: tuple[float, float, float, float], sample_id: str) -> RawSample:
    """Wrap rendered arrays in the :class:`RawSample` contract (image (3,H,W) [0,1], depth/valid (1,H,W))."""
    intr = torch.tensor(k, dtype=torch.float32)
    return RawSample(
        image=torch.from_numpy(np.ascontiguousarray(r.image, np.float32)),
        depth=torch.from_numpy(np.ascontiguousarray(r.depth, np.float32))[None],
        valid=torch.from_numpy(np.ascontiguousarray(r.valid, bool))[None],
        focal=intr[0].clone(),
        intrinsics=intr,
        id=sample_id,
    )


def render_sample(
    preset: str,
    index: int,
    height: int,
    width: int,
    seed: int = 0,
    sparse: bool = False,
    sparse_density: float = SPARSE_DENSITY,
    depth_noise: float = 0.0,
    holes: float = 0.0,
) -> RawSample:
    """Render scene ``index`` of ``preset`` ("indoor" | "outdoor") as a :class:`RawSample`.

    Args:
        height, width: output size in pixels; intrinsics follow :func:`preset_intrinsics`.
        seed: world seed; (seed, preset, index) fixes the sample exactly.
        sparse: keep only LiDAR-like scan-line pixels (``sparse_density`` of all pixels) as ground truth.
        depth_noise: std of added depth noise per metre squared (0 = exact depth).
        holes: fraction of pixels dropped in blobs (0 = none).
    """
    r, k = render_arrays(preset, index, height, width, seed, sparse, sparse_density, depth_noise, holes)
    return to_raw_sample(r, k, synthetic_id(preset, seed, index))


def analytic_scene(name: str, distance: float = 3.0, camera_height: float = 1.5) -> Scene:
    """Fixed scenes with analytic depth, for tests (camera at the origin/height, looking along +z, level).

    Names:
        ``plane``: a fronto-parallel wall at z = ``distance``: z-depth is ``distance`` at every pixel.
        ``box``: a 1 m box whose front face is at z = ``distance``, in front of a wall at 2 * ``distance``.
        ``floor``: only a floor, camera ``camera_height`` above it: z = h * fy / (v - cy) below the horizon.
        ``sphere``: the camera at the centre of a sphere of radius ``distance``: ray length is constant.
    """
    grey = Material("checker", np.full(3, 0.8, np.float32), np.full(3, 0.4, np.float32), 0.5)
    eye = np.array([0.0, camera_height if name == "floor" else 0.0, 0.0], np.float32)
    prims: list[Primitive]

    def slab(z_front: float, half: tuple[float, float, float]) -> Box:  # a box whose front face is at z_front
        return Box(grey, center=np.array([0, 0, z_front + half[2]], np.float32), half=np.array(half, np.float32))

    if name == "plane":
        prims = [slab(distance, (1e3, 1e3, 0.5))]
    elif name == "box":
        prims = [slab(2 * distance, (1e3, 1e3, 0.5)), slab(distance, (0.5, 0.5, 0.5))]
    elif name == "floor":
        prims = [Plane(grey, height=0.0)]
    elif name == "sphere":
        prims = [Sphere(grey, center=eye.copy(), radius=distance, inside=True)]
    else:
        raise ValueError(f"test scene {name!r}: expected plane, box, floor or sphere")
    light = Light("point", np.array([0.5, 1.0, 0.5], np.float32), np.ones(3, np.float32), 5.0)
    sky = {"zenith": np.array([0.3, 0.4, 0.8], np.float32), "horizon": np.array([0.7, 0.8, 0.9], np.float32)}
    return Scene(prims, [light], np.full(3, 0.3, np.float32), eye, rotation(0.0, 0.0), 1e-3, 1e4, sky=sky)


def render_test_scene(
    name: str,
    height: int,
    width: int,
    distance: float = 3.0,
    camera_height: float = 1.5,
    k: tuple[float, float, float, float] | None = None,
) -> tuple[Rendered, tuple[float, ...]]:
    """Render :func:`analytic_scene` ``name``; ``k`` defaults to the indoor intrinsics at that size."""
    k = k or preset_intrinsics("indoor", height, width)
    return render(analytic_scene(name, distance, camera_height), height, width, k), k


class SyntheticDepthDataset(Dataset):
    """On-the-fly synthetic RGB-D dataset (no disk): item ``i`` is scene ``index_offset + i`` of ``preset``.

    Items follow the :class:`~disdepth.data.sample.DepthSample` contract: image (3, H, W) normalised
    with ``mean``/``std``, depth (1, H, W) metres (0 = invalid), valid (1, H, W) bool, focal (),
    intrinsics (4,), id. ``transform`` maps the RawSample before normalisation (augmentation).
    """

    def __init__(
        self,
        preset: str,
        length: int,
        height: int,
        width: int,
        seed: int = 0,
        index_offset: int = 0,
        sparse: bool = False,
        mean: tuple[float, float, float] = IMAGENET_MEAN,
        std: tuple[float, float, float] = IMAGENET_STD,
        transform: Callable[[RawSample], RawSample] | None = None,
        sparse_density: float = SPARSE_DENSITY,
        depth_noise: float = 0.0,
        holes: float = 0.0,
    ) -> None:
        _check(preset, height, width)
        if length < 0:
            raise ValueError(f"synthetic dataset length must be >= 0, got {length}")
        self.preset, self.length, self.height, self.width = preset, int(length), int(height), int(width)
        self.seed, self.index_offset, self.sparse = int(seed), int(index_offset), bool(sparse)
        self.mean, self.std, self.transform = tuple(mean), tuple(std), transform
        self.sparse_density, self.depth_noise, self.holes = sparse_density, depth_noise, holes
        self.max_depth = MAX_DEPTH[preset]

    def __len__(self) -> int:
        return self.length

    def raw(self, i: int) -> RawSample:
        """Item ``i`` before ``transform`` and normalisation."""
        if not -self.length <= i < self.length:
            raise IndexError(f"synthetic dataset index {i} out of range for length {self.length}")
        i %= self.length
        return render_sample(
            self.preset,
            self.index_offset + i,
            self.height,
            self.width,
            self.seed,
            self.sparse,
            self.sparse_density,
            self.depth_noise,
            self.holes,
        )

    def sample_id(self, i: int) -> str:
        """The id of item ``i`` without rendering it."""
        return synthetic_id(self.preset, self.seed, self.index_offset + i)

    def __getitem__(self, i: int) -> DepthSample:
        raw = self.raw(i)
        if self.transform is not None:
            raw = self.transform(raw)
        return normalize_sample(raw, self.mean, self.std)
