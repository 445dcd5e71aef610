"""Exact inference rewrite: TensorFlow "SAME"-padded stride-2 convs without copying the input into a padded tensor.

timm builds the TF-ported encoders (``tf_efficientnet_lite0`` and the other ``tf_`` models) with ``Conv2dSame``: every
stride-2 conv pads its input at run time (``F.pad``, a copy of the whole map) because TensorFlow's "SAME" padding is
asymmetric. For a stride-2 conv with an odd kernel k on an even-sized side n, SAME pads k - 2 in all, (k - 2) // 2 at
the start and the rest at the end, so output o reads input rows 2o - (k - 2) // 2 ... 2o - (k - 2) // 2 + k - 1.

A plain conv with kernel k + 1, symmetric padding p = (k - 2) // 2 + 1 and the original taps behind one leading zero
tap reads rows 2o - p ... 2o - p + k; the zero tap drops the first, leaving exactly SAME's rows, and its output size
(n + 2p - k - 1) // 2 + 1 is n / 2, SAME's. (k = 3: kernel 4, padding 1; k = 5: kernel 6, padding 2.) No padded copy
is made; the cost is the extra zero taps, which for the depthwise convs that use it are cheaper than the copy.

An odd-sized side is padded symmetrically by SAME, so the rewritten module hands such inputs to the original conv.
Measured on the EfficientNet-Lite0 lite student at 480x640, BatchNorm folded, channels-last, one thread: 0.81x the time
with timm's ``Conv2dSame`` (docs/results.md, "The student"); ONNX Runtime folds the padding into its convs by itself,
so exported graphs are unchanged.
"""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import nn

from disdepth.deploy.module_pairs import set_submodule


def _is_stride2_same(module: nn.Module) -> bool:
    """timm's ``Conv2dSame`` (by name: timm is not needed to run this) with stride 2, odd square kernel, dilation 1."""
    if type(module).__name__ != "Conv2dSame" or not isinstance(module, nn.Conv2d):
        return False
    k = module.kernel_size
    return module.stride == (2, 2) and module.dilation == (1, 1) and k[0] == k[1] and k[0] % 2 == 1


class EvenSizeSameConv(nn.Module):
    """A stride-2 SAME conv (odd kernel k) as a plain conv with kernel k + 1 for inputs whose sides are both even.

    ``forward(x)``: x (B, C_in, H, W) -> (B, C_out, ceil(H / 2), ceil(W / 2)), the same numbers as ``same(x)``; inputs
    with an odd side run ``same`` itself.
    """

    def __init__(self, same: nn.Conv2d) -> None:
        super().__init__()
        k = same.kernel_size[0]
        self.same: nn.Module = same
        self.conv: nn.Module = nn.Conv2d(
            same.in_channels,
            same.out_channels,
            k + 1,
            stride=2,
            padding=(k - 2) // 2 + 1,
            groups=same.groups,
            bias=same.bias is not None,
        )
        with torch.no_grad():
            self.conv.weight.copy_(F.pad(same.weight, (1, 0, 1, 0)))  # one leading zero tap along each axis
            if same.bias is not None:
                self.conv.bias.copy_(same.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[-2] % 2 or x.shape[-1] % 2:
            return self.same(x)
        return self.conv(x)

    def with_activation(self, fused_conv: nn.Module, activation: nn.Module) -> EvenSizeSameConv:
        """A copy that ends in ``activation`` on both branches: ``fused_conv`` (this module's ``conv`` with the
        activation computed inside it, ``deploy/conv_activation.py``) for even sizes, the SAME conv followed by
        ``activation`` for odd ones."""
        fused = copy.deepcopy(self)
        fused.conv, fused.same = fused_conv, nn.Sequential(fused.same, activation)
        return fused


def rewrite_same_padding(model: nn.Module) -> tuple[nn.Module, int]:
    """A copy of ``model`` with every stride-2 ``Conv2dSame`` wrapped in :class:`EvenSizeSameConv`, and how many.

    Run it after BatchNorm folding (the folded conv is what both branches then compute). A model without such convs
    is returned itself, with 0.
    """
    names = [name for name, module in model.named_modules() if _is_stride2_same(module)]
    if not names:
        return model, 0
    rewritten = copy.deepcopy(model)
    for name in names:
        set_submodule(rewritten, name, EvenSizeSameConv(rewritten.get_submodule(name)))
    return rewritten, len(names)
