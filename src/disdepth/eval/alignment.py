"""Scoring a relative model against metric ground truth: per-image least-squares alignment, always labelled.

A relative model (Depth Anything V2 relative, MiDaS/DPT, a student trained only against one) knows depth up to an
affine map in its ``relative_space`` (disparity or depth). Its error is meaningful only after fitting one scale and
one shift per image to the ground truth (MiDaS, Ranftl et al. 2020), and every number computed this way is labelled
with :func:`alignment_note` so it is never read as metric.
"""

from __future__ import annotations

import torch

from disdepth.models.spec import InputSpec
from disdepth.teachers.base import align_relative


def alignment_note(spec: InputSpec) -> str:
    """The label printed beside every aligned metric."""
    fit = "scale+shift" if spec.relative_fit == "scale_shift" else "scale only"
    return f"aligned per image (least squares, {fit} in {spec.relative_space})"


def align_to_ground_truth(
    depth: torch.Tensor, gt: torch.Tensor, valid: torch.Tensor, spec: InputSpec
) -> torch.Tensor:
    """A relative model's depth aligned to ``gt`` per image in ``spec.relative_space``.

    Args:
        depth: (H, W) or (B, 1, H, W), the model's depth-like output (> 0).
        gt, valid: the same shape; metres and bool.

    Returns:
        Metric depth of ``depth``'s shape, clamped to the spec's range.
    """
    shape = depth.shape
    d, g, v = (x.reshape(-1, 1, *shape[-2:]) for x in (depth, gt, valid))
    raw = 1.0 / d.clamp(min=1e-6) if spec.relative_space == "disparity" else d
    aligned = align_relative(
        raw.double(), g.double(), v.bool(), spec.relative_space, spec.min_depth, spec.max_depth, spec.relative_fit
    )
    return aligned.to(depth.dtype).reshape(shape)
