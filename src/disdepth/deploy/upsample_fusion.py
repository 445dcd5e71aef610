"""Exact inference rewrite: the decoder's "nearest x2 upsampling, then 3x3 conv" as one stride-2 transposed conv.

A U-Net decoder block (``models/decoder.py``) upsamples its coarse input x (B, C, h, w) by nearest neighbour and runs
a 3x3 conv over the concatenation [up(x), skip]. A convolution is linear in its input channels, so that conv is a 3x3
conv of up(x) plus a 3x3 conv of the skip; and a 3x3 conv of a nearest-x2-upsampled map is a 4x4 transposed conv of
the coarse map with stride 2 and padding 1. The transposed conv computes the same numbers from the coarse map: 4/9 of
the multiply-adds, and neither the upsampled tensor nor the concatenation is ever written to memory.

The kernel, along one axis (the 2-D kernel applies it along both). The conv's output at fine position o is
``sum_k W[k] * x[(o + k - 1) // 2]`` (k = 0, 1, 2; zero outside the map). A transposed conv with stride 2 and
padding 1 gives ``sum_i K[o - 2i + 1] * x[i]``. Matching the coarse pixel i each tap reads: ``K[0] = W[2]``,
``K[1] = W[1] + W[2]``, ``K[2] = W[0] + W[1]``, ``K[3] = W[0]``, i.e. ``K = A W`` with ``A`` = :data:`TAPS`.

It holds when the skip is exactly twice the coarse map (both input sides divisible by the encoder's total stride, e.g.
32). Otherwise the original block crops the upsampled map to an odd-sized skip and its zero padding falls one fine row
earlier, so :class:`FusedDecoderBlock` then runs the 3x3 conv on the cropped upsampled map instead, as the original
block does. Bilinear blocks are left as they are.

Measured on the default student at 480x640 (README "The student"): 0.90-0.99x its unfused ONNX Runtime time at 1 thread
(eight processes on an AVX2 CPU); no measurable effect in eager PyTorch or at 2 threads.
"""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_eval

from disdepth.models.decoder import DecoderBlock, upsample_to

# One axis of the 4-tap transposed-conv kernel from the 3 taps of a conv over a nearest-x2-upsampled map: K = TAPS @ W.
TAPS = torch.tensor([[0.0, 0.0, 1.0], [0.0, 1.0, 1.0], [1.0, 1.0, 0.0], [1.0, 0.0, 0.0]])


def transposed_kernel(weight: torch.Tensor) -> torch.Tensor:
    """A 3x3 conv weight (C_out, C_in, 3, 3) -> the ``ConvTranspose2d(C_in, C_out, 4, stride=2, padding=1)`` weight
    (C_in, C_out, 4, 4) with conv_transpose(x) == conv3x3(nearest_x2(x)) for x of any size (no bias)."""
    taps = TAPS.to(weight)
    kernel = torch.einsum("uk,oikl,vl->iouv", taps, weight, taps)
    return kernel.contiguous()


def _fold(conv_bn_relu: nn.Sequential) -> nn.Conv2d:
    """The (conv, BatchNorm, ReLU) sequence of ``models.decoder.conv_bn_relu`` -> its conv with the BatchNorm folded."""
    conv, bn = conv_bn_relu[0], conv_bn_relu[1]
    return fuse_conv_bn_eval(conv.eval(), bn.eval())


class FusedDecoderBlock(nn.Module):
    """A nearest-upsampling :class:`DecoderBlock` for inference: the same output, BatchNorm folded, its upsampled conv
    as a stride-2 transposed conv of the coarse map (module docstring). x (B, C_in, h, w), skip (B, C_skip, H, W) ->
    (B, C_out, H, W)."""

    def __init__(self, block: DecoderBlock) -> None:
        super().__init__()
        if block.upsample != "nearest":
            raise ValueError(f"only nearest-upsampling blocks fuse, this one is {block.upsample!r}")
        if block.order == "upsample_first":
            self.coarse: nn.Module = nn.Identity()
            first = _fold(block.convs[0])
            second = _fold(block.convs[1])
            self.fine: nn.Module = nn.Sequential(second, nn.ReLU())
        else:  # conv_first: its coarse conv runs first, the fused conv is the fine one
            self.coarse = nn.Sequential(_fold(block.coarse), nn.ReLU())
            first = _fold(block.fine)
            self.fine = nn.Identity()
        n_up = first.in_channels - block.skip_channels  # the concat is [up(x), skip]
        up_weight, skip_weight = first.weight.detach()[:, :n_up], first.weight.detach()[:, n_up:]
        self.up_transposed = nn.ConvTranspose2d(n_up, first.out_channels, 4, stride=2, padding=1, bias=False)
        self.up_transposed.weight.data = transposed_kernel(up_weight)
        self.register_buffer("up_weight", up_weight.clone())  # for an odd-sized skip (module docstring)
        self.skip_conv = nn.Conv2d(block.skip_channels, first.out_channels, 3, padding=1)
        self.skip_conv.weight.data = skip_weight.clone()
        self.skip_conv.bias.data = first.bias.detach().clone()

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        x = self.coarse(x)
        if skip.shape[-2] == 2 * x.shape[-2] and skip.shape[-1] == 2 * x.shape[-1]:
            up = self.up_transposed(x)
        else:
            up = F.conv2d(upsample_to(x, skip, "nearest"), self.up_weight, padding=1)
        return self.fine(F.relu(up + self.skip_conv(skip)))


def fuse_decoder_upsampling(model: nn.Module) -> tuple[nn.Module, int]:
    """A copy of ``model`` (eval mode) with every nearest-upsampling ``DecoderBlock`` replaced by a
    :class:`FusedDecoderBlock`, and how many were replaced. ``model`` is not changed; a model without such blocks (a
    teacher, a peer, a bilinear student) is returned itself, in eval mode, with 0."""
    names = [n for n, m in model.named_modules() if isinstance(m, DecoderBlock) and m.upsample == "nearest"]
    if not names:
        return model.eval(), 0
    fused = copy.deepcopy(model).eval()
    for name in names:
        parent, _, leaf = name.rpartition(".")
        owner = fused.get_submodule(parent) if parent else fused
        setattr(owner, leaf, FusedDecoderBlock(fused.get_submodule(name)))
    return fused, len(names)
