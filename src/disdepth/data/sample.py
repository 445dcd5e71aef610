"""The sample contract every dataset returns (KITTI, NYU, CSV, synthetic), so loaders are interchangeable.

A sample is a dict:
    image:      (3, H, W) float32, normalised with the encoder's mean/std (``(x/255 - mean) / std``)
    depth:      (1, H, W) float32 metres; 0 where there is no ground truth
    valid:      (1, H, W) bool, True where ground truth exists and is finite and > 0
    focal:      () float32, focal length in pixels at the returned resolution (fx)
    intrinsics: (4,) float32 (fx, fy, cx, cy) in pixels at the returned resolution
    id:         str, a stable name for the sample (file stem for files on disk)
Default collation (torch.utils.data.default_collate) batches them: ``id`` becomes a list of str.
"""

from __future__ import annotations

from typing import TypedDict

import torch

from disdepth.models.spec import IMAGENET_MEAN, IMAGENET_STD


class DepthSample(TypedDict):
    image: torch.Tensor
    depth: torch.Tensor
    valid: torch.Tensor
    focal: torch.Tensor
    intrinsics: torch.Tensor
    id: str


class RawSample(TypedDict):
    """What a dataset has *before* normalisation; augmentations map RawSample -> RawSample.

    Same keys as :class:`DepthSample`, except ``image`` is (3, H, W) float32 RGB in [0, 1].
    """

    image: torch.Tensor
    depth: torch.Tensor
    valid: torch.Tensor
    focal: torch.Tensor
    intrinsics: torch.Tensor
    id: str


def normalize_sample(
    raw: RawSample,
    mean: tuple[float, float, float] = IMAGENET_MEAN,
    std: tuple[float, float, float] = IMAGENET_STD,
) -> DepthSample:
    """Normalise the [0, 1] image with the encoder's mean/std; depth/valid/intrinsics pass through."""
    m = torch.tensor(mean, dtype=torch.float32).view(3, 1, 1)
    s = torch.tensor(std, dtype=torch.float32).view(3, 1, 1)
    out = dict(raw)
    out["image"] = (raw["image"].float() - m) / s
    out["focal"] = raw["intrinsics"][0].float() if "intrinsics" in raw else raw["focal"]
    return out  # type: ignore[return-value]
