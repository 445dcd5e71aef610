"""Top-down U-Net / FPN depth decoder (docs/method.md §1).

At each level, from the deepest up, two 3x3 conv-BN-ReLU around an x2 upsampling to the skip's size and a
concatenation of the encoder skip. Where the first conv runs is set per level (``conv_first_strides``):

- ``upsample_first`` (the classic U-Net): upsample, concat, then both convs at the skip's (fine) resolution;
- ``conv_first`` (Monodepth2's decoder, Godard et al., ICCV 2019): the first conv at the coarse resolution, then
  upsample, concat, and the second conv at the fine one. The first conv sees 4x fewer pixels and the concat is
  narrower, so at the same widths (and parameter count) the decoder costs about 60 % of the FLOPs (docs/results.md,
  "The student" has the measured latency and accuracy).

The x2 upsampling is bilinear or nearest-neighbour (``upsample``): nearest is what
FastDepth and Monodepth2 use, and ONNX Runtime runs it in its blocked (NCHWc) layout, where bilinear resizes force
layout reorders around every level (docs/results.md, "The student", has the measured difference). Channels follow
``channels`` (halving by default). The decoder returns every level's output so that distillation can read them.
Every skip level is decoded, down to the encoder's finest (stride 2 for a timm CNN), where the head predicts;
stopping at stride 4 was 6.7 % less accurate on the 7-Scenes frames (docs/results.md, "The student").
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from disdepth.models.encoder import FeatureInfo


def conv_bn_relu(in_channels: int, out_channels: int) -> nn.Sequential:
    """3x3 conv (no bias: BN follows) -> BN -> ReLU."""
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=False),
        nn.BatchNorm2d(out_channels),
        nn.ReLU(inplace=True),
    )


UPSAMPLE_MODES = ("bilinear", "nearest")
BLOCK_ORDERS = ("upsample_first", "conv_first")


def upsample_to(x: torch.Tensor, skip: torch.Tensor, mode: str) -> torch.Tensor:
    """x (B, C, h, w) -> (B, C, H, W) at the skip's size (H, W) = skip.shape[-2:], with H <= 2h and W <= 2w.

    nearest: each pixel copied to its 2x2 children, then cropped to the skip (an odd-sized skip has one row or column
    fewer than 2h). Fine pixel i maps to coarse pixel i // 2, which is where a stride-2 conv took it from; a fixed
    scale factor also keeps the ONNX Resize in ONNX Runtime's blocked layout (a sizes-based one is not), and the crop
    is removed by ONNX Runtime's graph optimiser when it is a no-op.
    """
    if mode == "nearest":
        return F.interpolate(x, scale_factor=2.0, mode="nearest")[..., : skip.shape[-2], : skip.shape[-1]]
    return F.interpolate(x, size=skip.shape[-2:], mode="bilinear", align_corners=False)


class DecoderBlock(nn.Module):
    """One decoder level: x (B, C_in, h, w) and skip (B, C_skip, H, W) -> (B, C_out, H, W), H <= 2h, W <= 2w.

    ``upsample``: bilinear or nearest. ``order``: ``upsample_first`` (upsample, concat the skip, two conv-BN-ReLU)
    or ``conv_first`` (conv-BN-ReLU at (h, w), upsample, concat the skip, conv-BN-ReLU).
    """

    def __init__(
        self,
        in_channels: int,
        skip_channels: int,
        out_channels: int,
        upsample: str = "bilinear",
        order: str = "upsample_first",
    ) -> None:
        super().__init__()
        if upsample not in UPSAMPLE_MODES:
            raise ValueError(f"upsample must be one of {UPSAMPLE_MODES}, got {upsample!r}")
        if order not in BLOCK_ORDERS:
            raise ValueError(f"order must be one of {BLOCK_ORDERS}, got {order!r}")
        self.upsample, self.order = upsample, order
        self.skip_channels = skip_channels
        if order == "upsample_first":  # (the attribute name keeps older checkpoints' state-dict keys)
            self.convs = nn.Sequential(
                conv_bn_relu(in_channels + skip_channels, out_channels), conv_bn_relu(out_channels, out_channels)
            )
        else:
            self.coarse = conv_bn_relu(in_channels, out_channels)
            self.fine = conv_bn_relu(out_channels + skip_channels, out_channels)

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        if self.order == "conv_first":
            return self.fine(torch.cat([upsample_to(self.coarse(x), skip, self.upsample), skip], dim=1))
        return self.convs(torch.cat([upsample_to(x, skip, self.upsample), skip], dim=1))


class UNetDecoder(nn.Module):
    """Decoder over an encoder pyramid.

    Args:
        encoder_info: the encoder's levels, shallow to deep (e.g. strides 2, 4, 8, 16, 32).
        channels: output channels per decoder level, deep to shallow; one entry per skip level — extra entries
            are ignored, missing ones are halved from the last.
        upsample: "bilinear" or "nearest", the x2 upsampling of every level.
        conv_first_strides: the decoder levels (by output stride) whose blocks are ``conv_first``; the others are
            ``upsample_first`` (module docstring).

    ``forward`` takes the encoder features and returns the decoder's per-level outputs, deep to
    shallow; the last one (the finest) feeds the head.
    """

    def __init__(
        self,
        encoder_info: list[FeatureInfo],
        channels: list[int],
        upsample: str = "bilinear",
        conv_first_strides: Sequence[int] = (),
    ) -> None:
        super().__init__()
        if len(encoder_info) < 2:
            raise ValueError("decoder needs at least two encoder levels")
        n_blocks = len(encoder_info) - 1
        channels = list(channels[:n_blocks])
        while len(channels) < n_blocks:
            channels.append(max(channels[-1] // 2, 8) if channels else 64)
        skips = list(reversed(encoder_info[:-1]))  # deep to shallow
        strides = [info.stride for info in skips]
        if unknown := sorted(set(conv_first_strides) - set(strides)):
            raise ValueError(f"conv_first_strides {unknown}: no decoder level there (levels at strides {strides})")
        in_ch = encoder_info[-1].channels
        blocks = []
        for skip, out_ch in zip(skips, channels, strict=True):
            order = "conv_first" if skip.stride in conv_first_strides else "upsample_first"
            blocks.append(DecoderBlock(in_ch, skip.channels, out_ch, upsample, order))
            in_ch = out_ch
        self.blocks = nn.ModuleList(blocks)
        self.feature_info = [FeatureInfo(c, s) for c, s in zip(channels, strides, strict=True)]

    @property
    def out_channels(self) -> int:
        return self.feature_info[-1].channels

    def forward(self, features: list[torch.Tensor]) -> list[torch.Tensor]:
        """features: encoder maps shallow to deep -> decoder maps deep to shallow (the last at the finest stride)."""
        x = features[-1]
        outputs = []
        for block, skip in zip(self.blocks, reversed(features[:-1]), strict=True):
            x = block(x, skip)
            outputs.append(x)
        return outputs
