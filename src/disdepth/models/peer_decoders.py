"""The decoders of two published efficient depth networks, written from their papers, as student decoders.

With the matching encoder they are the peers a user compares our students with, trained by the same recipe:

* **FastDepth** (Wofk, Ma, Yang, Karaman, Sze, ICRA 2019): MobileNet (``mobilenetv1_100``) + :class:`NNConv5Decoder`
  + the ``pointwise`` head (unpruned: 3.96 M parameters, 0.74 GMACs at 224x224), op for op the authors' network.
* **Monodepth2** (Godard, Mac Aodha, Firman, Brostow, ICCV 2019): ResNet-18 + :class:`Monodepth2Decoder`
  (14.3 M parameters, 8.0 GMACs at 192x640).

Both follow the student decoder contract of ``models/decoder.py``: ``forward(encoder features, shallow to deep)``
returns the per-level outputs deep to shallow, ``feature_info`` states them, and the last one feeds the head (so a
ghost decoder can copy them). FastDepth keeps its own output layer (``model.head=pointwise``: 1x1 conv, BN, ReLU);
Monodepth2 uses the student's sigmoid head in place of its sigmoid disparity conv per scale (for its multi-scale
self-supervised loss); the difference is < 0.1 % of the parameters.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from disdepth.models.decoder import upsample_to
from disdepth.models.encoder import FeatureInfo
from disdepth.models.lite_decoder import separable


def _upsample_to(x: torch.Tensor, skip: torch.Tensor | None) -> torch.Tensor:
    """Nearest-neighbour x2 (both papers), cropped to the skip's size when the input side was not a multiple of 32.

    A fixed scale factor, as the authors' code has it: ONNX Runtime then runs it in its blocked (NCHWc) layout, where
    a resize to a computed size forces layout reorders around it (our FastDepth measured 2.4x the authors' graph on
    ONNX Runtime that way). With a skip this is the U-Net's own nearest ``upsample_to`` (x2, then cropped to the
    skip: the same pixels as a nearest resize to its size).
    """
    if skip is None:
        return F.interpolate(x, scale_factor=2.0, mode="nearest")
    return upsample_to(x, skip, "nearest")


class NNConv5Decoder(nn.Module):
    """FastDepth's decoder: five NNConv5 layers, each followed by nearest x2 upsampling, channels halving from the
    encoder's deepest width (1024 -> 512 -> 256 -> 128 -> 64 -> 32 for MobileNet), with *additive* skips: an
    upsampled output whose stride and width match an encoder level gets that level added — except the first
    (deepest) one, as in the authors' MobileNet-NNConv5dw-SkipAdd (MobileNet: strides 8, 4, 2, FastDepth's skips from
    its layers 5, 3 and 1; not the 512-channel stride-16 level, which also matches in width).

    Args:
        encoder_info: the encoder's levels, shallow to deep (strides 2 ... 32).
        channels: output widths deep to shallow; default the halving above (one per encoder level).
    """

    def __init__(self, encoder_info: list[FeatureInfo], channels: list[int] | None = None) -> None:
        super().__init__()
        deep = encoder_info[-1].channels
        channels = list(channels or [deep // 2**i for i in range(1, len(encoder_info) + 1)])
        strides = [encoder_info[-1].stride // 2**i for i in range(1, len(channels) + 1)]
        in_channels = [deep, *channels[:-1]]
        # NNConv5: 5x5 depthwise -> BN -> ReLU -> 1x1 pointwise -> BN -> ReLU
        self.blocks = nn.ModuleList(separable(i, o, kernel=5) for i, o in zip(in_channels, channels, strict=True))
        self.feature_info = [FeatureInfo(c, s) for c, s in zip(channels, strides, strict=True)]
        by_level = {(f.channels, f.stride): i for i, f in enumerate(encoder_info)}
        self.skips = [by_level.get((c, s)) for c, s in zip(channels, strides, strict=True)]
        self.skips[0] = None  # the authors add no skip after the first decoder layer
        self._encoder_strides = [f.stride for f in encoder_info]

    @property
    def out_channels(self) -> int:
        return self.feature_info[-1].channels

    def forward(self, features: list[torch.Tensor]) -> list[torch.Tensor]:
        """features: encoder maps shallow to deep -> decoder maps deep to shallow (strides 16 ... 1)."""
        x, outputs = features[-1], []
        for block, skip_index, info in zip(self.blocks, self.skips, self.feature_info, strict=True):
            skip = features[skip_index] if skip_index is not None else None
            size_ref = skip if skip is not None else self._same_stride(features, info.stride)
            x = _upsample_to(block(x), size_ref)
            if skip is not None:
                x = x + skip
            outputs.append(x)
        return outputs

    def _same_stride(self, features: list[torch.Tensor], stride: int) -> torch.Tensor | None:
        """An encoder map at ``stride`` (any width) to take the size from, if there is one."""
        return features[self._encoder_strides.index(stride)] if stride in self._encoder_strides else None


class _ConvELU(nn.Module):
    """Monodepth2's ConvBlock: 3x3 conv with reflection padding -> ELU."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, 3, padding=1, padding_mode="reflect")
        self.act = nn.ELU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.conv(x))


class Monodepth2Decoder(nn.Module):
    """Monodepth2's depth decoder: per level from the deepest, conv-ELU, nearest x2 upsampling, concatenate the
    encoder skip of that stride (none at full resolution), conv-ELU; widths 256, 128, 64, 32, 16.

    Args:
        encoder_info: the encoder's levels, shallow to deep (ResNet-18: 64, 64, 128, 256, 512 at strides 2 ... 32).
        channels: output widths deep to shallow; default Monodepth2's (one more level than skips: full resolution).
    """

    def __init__(self, encoder_info: list[FeatureInfo], channels: list[int] | None = None) -> None:
        super().__init__()
        channels = list(channels or [256, 128, 64, 32, 16][: len(encoder_info)])
        skips = [f.channels for f in reversed(encoder_info[:-1])] + [0] * (len(channels) - len(encoder_info) + 1)
        self.first, self.second = nn.ModuleList(), nn.ModuleList()
        in_ch = encoder_info[-1].channels
        for out_ch, skip_ch in zip(channels, skips, strict=True):
            self.first.append(_ConvELU(in_ch, out_ch))
            self.second.append(_ConvELU(out_ch + skip_ch, out_ch))
            in_ch = out_ch
        strides = [encoder_info[-1].stride // 2**i for i in range(1, len(channels) + 1)]
        self.feature_info = [FeatureInfo(c, s) for c, s in zip(channels, strides, strict=True)]

    @property
    def out_channels(self) -> int:
        return self.feature_info[-1].channels

    def forward(self, features: list[torch.Tensor]) -> list[torch.Tensor]:
        """features: encoder maps shallow to deep -> decoder maps deep to shallow (strides 16 ... 1)."""
        skips = list(reversed(features[:-1]))
        x, outputs = features[-1], []
        for level, (first, second) in enumerate(zip(self.first, self.second, strict=True)):
            skip = skips[level] if level < len(skips) else None
            x = _upsample_to(first(x), skip)
            x = second(torch.cat([x, skip], dim=1) if skip is not None else x)
            outputs.append(x)
        return outputs
