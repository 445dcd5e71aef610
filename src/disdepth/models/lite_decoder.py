"""A decoder designed for CPU and mobile latency, not FLOPs alone.

What the profile of the U-Net decoder showed (issue 15): most of its time is at high resolution (the stride-2 block
alone ~21 %), in concatenations followed by full 3x3 convolutions, and in batch-1 1x1 convolutions. So:

* it stops at **stride 4** and the depth head predicts there; the student's bilinear resize to the input size is
  the (cheap) upsampling — the encoder's stride-2 features are not decoded at all;
* skips are **added** after a 1x1 projection (FastDepth's additive skips) instead of concatenated;
* each level is one **depthwise-separable** block: 3x3 depthwise -> BN -> ReLU -> 1x1 -> BN -> ReLU (both BNs fold
  into the convolutions on export);
* widths shrink with resolution (``model.lite_channels``: 96, 48, 24 at strides 16, 8, 4 by default; 128, 64, 32
  until 0.5);
* the x2 upsampling is bilinear (sized from the skip) or nearest neighbour (a fixed x2 scale, ``models/decoder.py:
  upsample_to``), which ONNX Runtime runs in its blocked layout: at 480x640 on one thread the EfficientNet-Lite0 lite
  student ran at 0.91x its bilinear time (docs/results.md, "The student").

It keeps the student decoder contract (``models/decoder.py``): per-level outputs deep to shallow with
``feature_info``, so the ghost decoder of acclimation is a copy of it.
"""

from __future__ import annotations

import torch
from torch import nn

from disdepth.models.decoder import UPSAMPLE_MODES, upsample_to
from disdepth.models.encoder import FeatureInfo


def separable(in_channels: int, out_channels: int, kernel: int = 3) -> nn.Sequential:
    """k x k depthwise conv -> BN -> ReLU -> 1x1 conv -> BN -> ReLU (FastDepth's NNConv5 is k = 5)."""
    return nn.Sequential(
        nn.Conv2d(in_channels, in_channels, kernel, padding=kernel // 2, groups=in_channels, bias=False),
        nn.BatchNorm2d(in_channels),
        nn.ReLU(inplace=True),
        nn.Conv2d(in_channels, out_channels, 1, bias=False),
        nn.BatchNorm2d(out_channels),
        nn.ReLU(inplace=True),
    )


class LiteBlock(nn.Module):
    """x (B, C_in, h, w), skip (B, C_skip, H, W) -> (B, C_out, H, W): upsample ``x`` to the skip's size (bilinear or
    nearest), add the 1x1-projected skip, one separable block."""

    def __init__(self, in_channels: int, skip_channels: int, out_channels: int, upsample: str = "bilinear") -> None:
        super().__init__()
        if upsample not in UPSAMPLE_MODES:
            raise ValueError(f"upsample must be one of {UPSAMPLE_MODES}, got {upsample!r}")
        self.upsample = upsample
        self.skip = nn.Conv2d(skip_channels, in_channels, 1, bias=False)
        self.block = separable(in_channels, out_channels)

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        return self.block(upsample_to(x, skip, self.upsample) + self.skip(skip))


class LiteDecoder(nn.Module):
    """Decoder from the deepest encoder level down to ``finest_stride`` (default 4).

    Args:
        encoder_info: the encoder's levels, shallow to deep.
        channels: output widths deep to shallow, one per decoded level (strides 16, 8, 4 by default); missing
            entries halve the last, extra entries are ignored.
        finest_stride: the shallowest encoder stride decoded; the head predicts there.
        upsample: "bilinear" or "nearest", every level's x2 upsampling.
    """

    def __init__(
        self,
        encoder_info: list[FeatureInfo],
        channels: list[int],
        finest_stride: int = 4,
        upsample: str = "bilinear",
    ) -> None:
        super().__init__()
        skips = [f for f in reversed(encoder_info[:-1]) if f.stride >= finest_stride]  # deep to shallow
        if not skips:
            raise ValueError(f"no encoder level between stride {finest_stride} and the deepest to decode")
        channels = list(channels[: len(skips)])
        while len(channels) < len(skips):
            channels.append(max(channels[-1] // 2, 8) if channels else 64)
        in_ch = encoder_info[-1].channels
        blocks = []
        for skip, out_ch in zip(skips, channels, strict=True):
            blocks.append(LiteBlock(in_ch, skip.channels, out_ch, upsample))
            in_ch = out_ch
        self.blocks = nn.ModuleList(blocks)
        self.skip_index = [encoder_info.index(s) for s in skips]
        self.feature_info = [FeatureInfo(c, s.stride) for c, s in zip(channels, skips, strict=True)]

    @property
    def out_channels(self) -> int:
        return self.feature_info[-1].channels

    def forward(self, features: list[torch.Tensor]) -> list[torch.Tensor]:
        """features: encoder maps shallow to deep -> decoder maps deep to shallow (the last at ``finest_stride``)."""
        x, outputs = features[-1], []
        for block, index in zip(self.blocks, self.skip_index, strict=True):
            x = block(x, features[index])
            outputs.append(x)
        return outputs
