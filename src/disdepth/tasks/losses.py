"""Depth losses (docs/method.md §6). Distillation losses join this file with the distillation issue."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def silog_loss(
    pred: torch.Tensor, gt: torch.Tensor, valid: torch.Tensor, variance_focus: float = 0.85, scale: float = 10.0
) -> torch.Tensor:
    """Scale-invariant log loss (Eigen et al. 2014, as used by BTS/AdaBins/NeWCRFs).

    ``scale * sqrt(mean(g^2) - variance_focus * mean(g)^2)`` with ``g = ln pred - ln gt`` over valid pixels
    of the whole batch.

    Args:
        pred: (B, 1, H, W) metres, > 0.
        gt: (B, 1, H, W) metres.
        valid: (B, 1, H, W) bool.

    Returns:
        The loss; a batch with no valid pixel (e.g. a random crop of sparse LiDAR ground truth that missed every
        point) gives a zero that still depends on ``pred``, so every DDP rank runs the same backward pass.
    """
    if not valid.any():
        return pred.sum() * 0.0
    g = torch.log(pred[valid].float()) - torch.log(gt[valid].float())  # fp32 even under autocast
    # Clamp at 0 before sqrt: with variance_focus < 1 the value is >= 0 mathematically, but float error can dip below.
    return scale * torch.sqrt((g.pow(2).mean() - variance_focus * g.mean().pow(2)).clamp(min=1e-12))


def l1_depth_loss(pred: torch.Tensor, gt: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """Mean absolute depth error in metres over valid pixels of the whole batch: FastDepth's loss (Wofk et al. 2019).

    Unlike SILog it keeps a gradient where ``pred`` is near zero, so an output layer that ends in a ReLU (FastDepth's)
    can leave zero again instead of collapsing there.

    Args:
        pred, gt: (B, 1, H, W) metres.
        valid: (B, 1, H, W) bool.

    Returns:
        The loss; a zero that still depends on ``pred`` when no pixel is valid (as ``silog_loss``).
    """
    if not valid.any():
        return pred.sum() * 0.0
    return (pred[valid].float() - gt[valid].float()).abs().mean()


def bins_chamfer_loss(bin_centers: torch.Tensor, gt: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """AdaBins bi-directional chamfer loss between bin centres and each image's valid ground-truth depths.

    Args:
        bin_centers: (B, K) metres.
        gt: (B, 1, H, W) metres.
        valid: (B, 1, H, W) bool.

    Returns:
        Mean over images of (mean_k min_p (c_k - d_p)^2 + mean_p min_k (c_k - d_p)^2); images with no
        valid pixel are left out.
    """
    losses = []
    for centers, depth, mask in zip(bin_centers, gt, valid, strict=True):
        points = depth[mask]
        if points.numel() == 0:
            continue
        dist = (centers[:, None] - points[None, :]).pow(2)  # (K, P)
        losses.append(dist.min(dim=1).values.mean() + dist.min(dim=0).values.mean())
    if not losses:
        return bin_centers.sum() * 0.0
    return torch.stack(losses).mean()


def resize_like(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Bilinearly resize a (B, 1, h, w) prediction to ``target``'s spatial size (no-op when equal)."""
    if pred.shape[-2:] == target.shape[-2:]:
        return pred
    return F.interpolate(pred, size=target.shape[-2:], mode="bilinear", align_corners=False)


def ssi_loss(pred: torch.Tensor, target: torch.Tensor, valid: torch.Tensor | None = None) -> torch.Tensor:
    """Scale-and-shift-invariant loss (MiDaS, Ranftl et al. 2020, eqs. 5-7, without trimming).

    Per image, ``pred`` and ``target`` are each shifted by their median and divided by their mean absolute deviation
    from it over the valid pixels; the loss is the mean absolute difference of the two normalised maps, averaged over
    images with at least 2 valid pixels. It is zero when ``target`` is any positive affine map of ``pred`` and the
    same for ``target`` and ``a * target + b`` (a > 0): what a relative teacher's output supports.

    Args:
        pred, target: (B, 1, H, W) in the same space (disparity or depth-like); ``target`` is not differentiated.
        valid: (B, 1, H, W) bool; default every pixel.

    Returns:
        The loss (a zero that depends on ``pred`` when no image has 2 valid pixels).
    """
    valid = torch.ones_like(pred, dtype=torch.bool) if valid is None else valid
    m = valid.flatten(1)
    n = m.sum(1)
    keep = n >= 2
    if not keep.any():
        return pred.sum() * 0.0

    def normalised(x: torch.Tensor) -> torch.Tensor:
        flat = x.flatten(1).float()
        # nan_to_num: an image with no valid pixel has no median; it is left out below, but its values must stay
        # finite or the backward pass of the kept images turns to NaN (0 * nan).
        median = torch.where(m, flat, torch.nan).nanmedian(dim=1).values.nan_to_num().unsqueeze(1)
        scale = ((flat - median).abs() * m).sum(1, keepdim=True) / n.clamp(min=1).unsqueeze(1)
        return (flat - median) / scale.clamp(min=1e-8)

    diff = (normalised(pred) - normalised(target.detach())).abs() * m
    per_image = diff.sum(1) / n.clamp(min=1)
    return per_image[keep].mean()
