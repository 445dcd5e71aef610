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

IMAGENET_MEAN: tuple[float, float, float] = (0.485, 0.456, 0.406)
IMAGENET_STD: tuple[float, float, float] = (0.229, 0.224, 0.225)


class DepthSample(TypedDict):
    image: torch.Tensor
    depth: torch.Tensor
    valid: torch.Tensor
    focal: torch.Tensor
    intrinsics: torch.Tensor
    id: str
