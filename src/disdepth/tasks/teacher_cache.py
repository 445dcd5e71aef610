"""Teacher targets cached once per image and warped to each augmented sample.

A big teacher is the cost of a distillation step. With augmentation on, its targets differ every time an image is
drawn, but only through the augmentation: the training transform records each sample's geometry
(``data/transforms.py``: ``geometry``, a (3, 3) affine from output pixel centres to pixel centres of the
un-augmented frame, and ``geometry_hw``). So the teacher runs once per image on the un-augmented frame
(:class:`FrameSource` finds it by sample id) and every later draw reads :class:`CachedTargets` warped by
:func:`warp_map` with the same geometry. What is exact and what is approximate (measured in
docs/distillation.md, "Teacher-target cache with augmentation"):

* flips: a flipped sample reads the targets of the *mirrored* frame, which the teacher computes the first time a
  flipped sample of the image comes (so up to two teacher runs per image). Flipping cached maps instead would be
  wrong: the features of a mirrored image are not the mirrored features (oriented filters trade channels);
* crops whose offsets are multiples of a map's stride are exact copies of the cached map; other offsets
  interpolate linearly between its cells, and rotations resample bilinearly. Strided features are not
  shift-equivariant below their stride (aliasing), so this is where most of the error comes from;
* the teacher sees other context on a crop (padding, global attention): its features on a crop are not the crop
  of its features on the frame, even where the crop is aligned;
* photometric augmentation (gamma, brightness, colour) is not applied: cached targets are the un-jittered image's.

Map convention (timm and hybrid teachers pad bottom/right to a multiple of 32 and crop their outputs, so cell ``i``
of a stride-``s`` map covers pixels ``[i*s, (i+1)*s)``): the centre of cell ``i`` is pixel ``i*s + (s-1)/2``, and a
map of an ``H x W`` image is ``ceil(H/s) x ceil(W/s)``. Depth is the ``s = 1`` case.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

from disdepth.data.io import FileDepthDataset
from disdepth.data.mixing import UNLABELLED_PREFIX, MixedDataset
from disdepth.data.sample import normalize_sample
from disdepth.data.synthetic import SyntheticDepthDataset

# distill.cache_max_gb is in GiB. One cached view of a 427x565 NYU frame (default student, 4 levels, fp16 maps +
# fp32 scores + fp16 depth) is 1.80 MiB, so the default 8 GiB holds ~4,500 views (a flipped image has two).
GIB = 1024**3


@dataclass
class CachedTargets:
    """The teacher's targets for one un-augmented frame, on the CPU.

    Attributes:
        features: per distilled level, (C, h, w) float16 map of the frame (``h = ceil(H / stride)``).
        scores: per level, (1, h, w) float32 attention score before the softmax (``mean_c t^2`` for magnitude,
            ``mean_c |dL/dt|`` for saliency attention); empty for uniform attention. Kept in float32 because the
            softmax over positions amplifies rounding.
        depth: (1, H, W) float16 teacher depth, metres (a relative teacher: its depth-like map).
        relative: (1, H, W) float32 raw output of a relative teacher (its affine fit needs the precision), or None.
        size: (H, W) of the frame, pixels.
    """

    features: list[torch.Tensor]
    scores: list[torch.Tensor]
    depth: torch.Tensor
    relative: torch.Tensor | None
    size: tuple[int, int]
    nbytes: int = field(init=False)

    def __post_init__(self) -> None:
        maps = [*self.features, *self.scores, self.depth] + ([self.relative] if self.relative is not None else [])
        self.nbytes = sum(t.numel() * t.element_size() for t in maps)


def grid_size(height: int, width: int, stride: int) -> tuple[int, int]:
    """(ceil(H/s), ceil(W/s)): the grid of a stride-``s`` map of an ``H x W`` image."""
    return math.ceil(height / stride), math.ceil(width / stride)


def _cell_coords(n_out: int, stride: int, scale: float, offset: float) -> torch.Tensor:
    """Source cell coordinates (float64) of ``n_out`` output cells along one axis, for ``src = scale*x + offset``.

    Output cell ``i`` has its centre at pixel ``i*s + (s-1)/2``; the source pixel ``p`` is cell ``(p - (s-1)/2) / s``.
    With integer offsets that are multiples of ``s`` and ``scale = +-1`` every coordinate is an exact integer.
    """
    half = (stride - 1) / 2
    centres = torch.arange(n_out, dtype=torch.float64) * stride + half
    return (scale * centres + offset - half) / stride


def _lerp_axis(x: torch.Tensor, coords: torch.Tensor, dim: int) -> torch.Tensor:
    """Linear interpolation of ``x`` along ``dim`` at fractional indices ``coords`` (clamped to the border).

    At an integer coordinate the weight of the second neighbour is exactly 0, so the result is an exact copy.
    """
    n = x.shape[dim]
    c = coords.clamp(0, n - 1)
    i0 = c.floor()
    weight = (c - i0).to(device=x.device, dtype=x.dtype)
    i0 = i0.long().to(x.device)
    i1 = (i0 + 1).clamp(max=n - 1)
    shape = [1] * x.dim()
    shape[dim] = -1
    return torch.lerp(x.index_select(dim, i0), x.index_select(dim, i1), weight.view(shape))


def warp_map(x: torch.Tensor, geometry: torch.Tensor, stride: int, out_hw: tuple[int, int]) -> torch.Tensor:
    """A frame's map warped by a sample's augmentation geometry.

    Args:
        x: (C, h, w) float map of the un-augmented frame at ``stride`` (h = ceil(H / stride)).
        geometry: (3, 3) float64: output pixel centre (x, y, 1) -> frame pixel centre (``data/transforms.py``).
        stride: pixels per cell of ``x`` and of the output (1 for depth).
        out_hw: (H_out, W_out) the augmented image's size, pixels.

    Returns:
        (C, ceil(H_out / stride), ceil(W_out / stride)), ``x``'s dtype. Crops and flips: separable linear
        interpolation, an exact copy where the crop offset is a multiple of ``stride``; rotations: bilinear
        ``grid_sample``. Points outside the frame take the nearest border value (the teacher saw black there).
    """
    g = geometry.detach().to("cpu", torch.float64)
    ho, wo = grid_size(*out_hw, stride)
    if g[0, 1] == 0 and g[1, 0] == 0:  # axis-aligned: rows and columns are independent
        rows = _cell_coords(ho, stride, float(g[1, 1]), float(g[1, 2]))
        cols = _cell_coords(wo, stride, float(g[0, 0]), float(g[0, 2]))
        return _lerp_axis(_lerp_axis(x, rows, 1), cols, 2)
    half = (stride - 1) / 2
    ys, xs = torch.meshgrid(
        torch.arange(ho, dtype=torch.float64) * stride + half,
        torch.arange(wo, dtype=torch.float64) * stride + half,
        indexing="ij",
    )
    u = (g[0, 0] * xs + g[0, 1] * ys + g[0, 2] - half) / stride  # source cell column
    v = (g[1, 0] * xs + g[1, 1] * ys + g[1, 2] - half) / stride  # source cell row
    h, w = x.shape[-2:]
    # align_corners=True: -1 and 1 are the centres of the first and last cells, i.e. cell indices 0 and n - 1.
    grid = torch.stack([2 * u / max(w - 1, 1) - 1, 2 * v / max(h - 1, 1) - 1], dim=-1)
    grid = grid.to(device=x.device, dtype=torch.float32)[None]
    return F.grid_sample(x[None].float(), grid, "bilinear", "border", align_corners=True)[0].to(x.dtype)


class FrameSource:
    """Un-augmented training frames by sample id: what the teacher sees when it fills the cache.

    Supports the file datasets (KITTI, NYU, CSV; not KITTI ``use_right``, whose id names either camera), the
    synthetic dataset, and a :class:`~disdepth.data.mixing.MixedDataset` of those (unlabelled ids carry
    ``unlabelled/``). Use :func:`frame_source`, which returns None for anything else.
    """

    def __init__(self, dataset: Dataset) -> None:
        self.dataset = dataset
        self.parts: tuple[FrameSource, FrameSource] | None = None
        self.index: dict[str, int] = {}
        if isinstance(dataset, MixedDataset):
            self.parts = FrameSource(dataset.labelled), FrameSource(dataset.unlabelled.inner)
        elif isinstance(dataset, FileDepthDataset):  # a file list's ids are known without reading a file
            self.index = {r.id: i for i, r in enumerate(dataset.records)}

    def ids(self) -> list[str]:
        """Every frame's sample id, in dataset order, without reading a frame (a mixed set: labelled, then pool)."""
        if self.parts is not None:
            labelled, unlabelled = self.parts
            return labelled.ids() + [UNLABELLED_PREFIX + k for k in unlabelled.ids()]
        if isinstance(self.dataset, SyntheticDepthDataset):
            return [self.dataset.sample_id(i) for i in range(len(self.dataset))]
        return [r.id for r in self.dataset.records]  # type: ignore[attr-defined]

    def _position(self, sample_id: str) -> int:
        if isinstance(self.dataset, SyntheticDepthDataset):  # ids end in the scene number (data/synthetic.py)
            tail = sample_id.rsplit("_", 1)[-1]
            return int(tail) - self.dataset.index_offset if tail.isdigit() else -1
        return self.index.get(sample_id, -1)

    def __call__(self, sample_id: str) -> dict:
        """The frame of ``sample_id`` before augmentation, normalised like the training samples.

        Returns:
            {image: (3, H, W) float32 normalised, depth: (1, H, W) metres, valid: (1, H, W) bool, id, ...}.

        Raises:
            KeyError: the id is not a frame of the dataset.
        """
        if self.parts is not None:
            labelled, unlabelled = self.parts
            if not sample_id.startswith(UNLABELLED_PREFIX):
                return labelled(sample_id)
            frame = unlabelled(sample_id.removeprefix(UNLABELLED_PREFIX))
            frame.update(depth=torch.zeros_like(frame["depth"]), valid=torch.zeros_like(frame["valid"]), id=sample_id)
            return frame
        ds, i = self.dataset, self._position(sample_id)
        if not 0 <= i < len(ds):  # type: ignore[arg-type]
            raise KeyError(f"teacher cache: sample id {sample_id!r} is not in the training set")
        raw = ds.load_raw(i) if isinstance(ds, FileDepthDataset) else ds.raw(i)  # type: ignore[attr-defined]
        if raw["id"] != sample_id:  # guards the synthetic id format
            raise KeyError(f"teacher cache: sample id {sample_id!r} loaded frame {raw['id']!r}")
        return dict(normalize_sample(raw, ds.mean, ds.std))  # type: ignore[attr-defined]


def frame_source(dataset: Dataset | None) -> FrameSource | None:
    """A :class:`FrameSource` for ``dataset``, or None when its frames cannot be found by id."""
    if isinstance(dataset, MixedDataset):
        parts = frame_source(dataset.labelled), frame_source(dataset.unlabelled.inner)
        return FrameSource(dataset) if None not in parts else None
    if isinstance(dataset, FileDepthDataset) and dataset.pick is None:
        return FrameSource(dataset)
    if isinstance(dataset, SyntheticDepthDataset):
        return FrameSource(dataset)
    return None
