"""Transformer-suited depth decoder: DPT-style fusion (Ranftl et al., "Vision Transformers for Dense
Prediction", ICCV 2021), plus the ViT reassemble stage that turns tokens into a stride 4/8/16/32 pyramid.

Differences from the paper, and why: fusion blocks upsample the coarser map to the skip's exact size
(instead of a fixed x2 after fusing) so odd feature sizes line up; residual conv units carry BatchNorm by
default because our teachers are trained from scratch on modest data, where BN makes training stable.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from disdepth.models.encoder import FeatureInfo


class ResidualConvUnit(nn.Module):
    """x + conv(act(conv(act(x)))), pre-activation, optional BN (DPT's RCU)."""

    def __init__(self, channels: int, bn: bool = True) -> None:
        super().__init__()
        self.block = nn.Sequential(
            nn.ReLU(),
            nn.Conv2d(channels, channels, 3, padding=1, bias=not bn),
            nn.BatchNorm2d(channels) if bn else nn.Identity(),
            nn.ReLU(),
            nn.Conv2d(channels, channels, 3, padding=1, bias=not bn),
            nn.BatchNorm2d(channels) if bn else nn.Identity(),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.block(x)


class FusionBlock(nn.Module):
    """DPT feature fusion: upsample the coarser path to the skip's size, add RCU(skip), RCU, 1x1 projection.

    The deepest block (``with_skip=False``) only refines its input, so it has no skip unit (no unused weights).
    """

    def __init__(self, channels: int, bn: bool = True, with_skip: bool = True) -> None:
        super().__init__()
        self.skip_unit = ResidualConvUnit(channels, bn) if with_skip else None
        self.unit = ResidualConvUnit(channels, bn)
        self.out = nn.Conv2d(channels, channels, 1)

    def forward(self, x: torch.Tensor, skip: torch.Tensor | None = None) -> torch.Tensor:
        if skip is not None and self.skip_unit is not None:
            x = F.interpolate(x, size=skip.shape[-2:], mode="bilinear", align_corners=False)
            x = x + self.skip_unit(skip)
        return self.out(self.unit(x))


class DPTDecoder(nn.Module):
    """DPT-style decoder over a 4-level pyramid (strides 4, 8, 16, 32).

    Each level is projected to ``channels`` with a 3x3 conv, fused top-down, then a small refinement at
    stride 2 produces ``head_channels`` maps for the depth head (as DPT's head: conv, x2 upsample, conv).

    Args:
        encoder_info: the pyramid's levels, shallow to deep.
        channels: fusion width (DPT uses 256).
        head_channels: width of the map handed to the depth head (DPT uses 32).
        bn: BatchNorm in the residual conv units.

    ``forward`` takes the pyramid and returns ``(fused, head_in)``: the fused maps deep to shallow
    (strides 32, 16, 8, 4; ``feature_info`` describes them) and the (B, head_channels, H/2, W/2) head input.
    """

    def __init__(self, encoder_info: list[FeatureInfo], channels: int = 256, head_channels: int = 32, bn: bool = True):
        super().__init__()
        self.projections = nn.ModuleList(
            nn.Conv2d(info.channels, channels, 3, padding=1, bias=False) for info in encoder_info
        )
        n = len(encoder_info)
        self.fusions = nn.ModuleList(FusionBlock(channels, bn, with_skip=i < n - 1) for i in range(n))
        mid = max(channels // 2, head_channels)
        self.reduce = nn.Conv2d(channels, mid, 3, padding=1)
        self.refine = nn.Sequential(nn.Conv2d(mid, head_channels, 3, padding=1), nn.ReLU())
        self.feature_info = [FeatureInfo(channels, info.stride) for info in reversed(encoder_info)]
        self.out_channels = head_channels

    def forward(self, features: list[torch.Tensor]) -> tuple[list[torch.Tensor], torch.Tensor]:
        projected = [proj(f) for proj, f in zip(self.projections, features, strict=True)]
        x: torch.Tensor | None = None
        fused = []
        for fusion, skip in zip(reversed(self.fusions), reversed(projected), strict=True):
            x = fusion(skip) if x is None else fusion(x, skip)
            fused.append(x)
        y = self.reduce(fused[-1])
        y = F.interpolate(y, scale_factor=2.0, mode="bilinear", align_corners=False)
        return fused, self.refine(y)


class ViTReassemble(nn.Module):
    """Tokens of 4 ViT blocks (as NCHW maps on the stride-16 grid) -> pyramid at strides 4, 8, 16, 32.

    Per level: 1x1 projection to ``channels[i]``, then (DPT) a 4x4/stride-4 transposed conv, a 2x2/stride-2
    transposed conv, identity, and a 3x3/stride-2 conv.

    Args:
        embed_dim: token width.
        channels: output channels per level, shallow to deep (DPT-Base: 96, 192, 384, 768).
    """

    def __init__(self, embed_dim: int, channels: list[int]) -> None:
        super().__init__()
        if len(channels) != 4:
            raise ValueError(f"ViT reassemble needs 4 channel widths, got {channels}")
        c0, c1, c2, c3 = channels
        self.projections = nn.ModuleList(nn.Conv2d(embed_dim, c, 1) for c in channels)
        self.resamplers = nn.ModuleList(
            [
                nn.ConvTranspose2d(c0, c0, 4, stride=4),
                nn.ConvTranspose2d(c1, c1, 2, stride=2),
                nn.Identity(),
                nn.Conv2d(c3, c3, 3, stride=2, padding=1),
            ]
        )
        self.feature_info = [FeatureInfo(c, s) for c, s in zip(channels, (4, 8, 16, 32), strict=True)]

    def forward(self, maps: list[torch.Tensor]) -> list[torch.Tensor]:
        """maps: 4 x (B, D, h16, w16) -> [(B, c0, 4*h16, 4*w16), ..., (B, c3, ceil(h16/2), ceil(w16/2))]."""
        return [res(proj(m)) for proj, res, m in zip(self.projections, self.resamplers, maps, strict=True)]
