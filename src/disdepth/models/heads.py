"""Depth heads: map the finest decoder feature to metric depth (docs/method.md §1).

Every head predicts at the decoder's finest stride; the student upsamples to input resolution.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class SigmoidHead(nn.Module):
    """depth = max_depth * sigmoid(conv(x)), clamped below at ``min_depth`` (BTS/NeWCRFs-style).

    Returns ``{"depth": (B, 1, h, w) metres}`` for x (B, C, h, w).
    """

    def __init__(self, in_channels: int, min_depth: float, max_depth: float) -> None:
        super().__init__()
        self.min_depth, self.max_depth = min_depth, max_depth
        self.conv = nn.Conv2d(in_channels, 1, 3, padding=1)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        depth = self.max_depth * torch.sigmoid(self.conv(x))
        return {"depth": depth.clamp(min=self.min_depth)}


class BinsHead(nn.Module):
    """AdaBins-style adaptive bins (Bhat et al., CVPR 2021), with a pooled MLP instead of a mini-ViT.

    Bin widths come from a global MLP on the pooled feature (softmax, so they tile [min, max]);
    per-pixel logits over the bins come from a 1x1 conv; depth = sum_k p_k * c_k.

    Returns ``{"depth": (B, 1, h, w) metres, "bin_centers": (B, n_bins) metres, ascending}``.
    """

    def __init__(self, in_channels: int, n_bins: int, min_depth: float, max_depth: float, hidden: int = 256) -> None:
        super().__init__()
        self.n_bins, self.min_depth, self.max_depth = n_bins, min_depth, max_depth
        self.mlp = nn.Sequential(nn.Linear(in_channels, hidden), nn.GELU(), nn.Linear(hidden, n_bins))
        self.logits = nn.Conv2d(in_channels, n_bins, 1)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        # AdaBins normalises ReLU(w) + eps; softmax is the same idea and never yields an empty range.
        widths = torch.softmax(self.mlp(x.mean(dim=(2, 3))), dim=1) * (self.max_depth - self.min_depth)  # (B, K)
        edges = self.min_depth + torch.cumsum(widths, dim=1)  # right edges, ascending, last = max_depth
        centers = edges - 0.5 * widths  # (B, K)
        probs = torch.softmax(self.logits(x), dim=1)  # (B, K, h, w)
        depth = torch.einsum("bkhw,bk->bhw", probs, centers).unsqueeze(1)
        return {"depth": depth, "bin_centers": centers}


class PointwiseHead(nn.Module):
    """FastDepth's output layer (Wofk et al., ICRA 2019): a 1x1 conv (no bias) -> BatchNorm -> ReLU that predicts
    depth in metres directly, clamped to [min_depth, max_depth] for the student contract. The FastDepth peer uses it,
    so that the peer is the authors' network op for op (a 3x3 conv to one channel at full resolution, our sigmoid
    head's, costs 30x its time on a CPU).

    Returns ``{"depth": (B, 1, h, w) metres}`` for x (B, C, h, w).
    """

    def __init__(self, in_channels: int, min_depth: float, max_depth: float) -> None:
        super().__init__()
        self.min_depth, self.max_depth = min_depth, max_depth
        self.conv = nn.Conv2d(in_channels, 1, 1, bias=False)
        self.bn = nn.BatchNorm2d(1)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        depth = F.relu(self.bn(self.conv(x)))
        return {"depth": depth.clamp(self.min_depth, self.max_depth)}


HEADS = {"sigmoid": SigmoidHead, "bins": BinsHead, "pointwise": PointwiseHead}
