"""Exact inference rewrite: a conv and the ReLU / ReLU6 right after it as one oneDNN call in eager PyTorch.

In eager PyTorch every activation is its own pass over the conv's output: on MobileNetV2 students at 480x640 the
ReLU6 clamps alone took 15 % of the time of a forward with BatchNorm folded (2 threads), and a 3x3 depthwise conv
followed by its clamp took twice the time of the same conv with the clamp applied inside it. ONNX Runtime fuses them
when it loads a graph; this module does the same for eager inference with oneDNN's fused convolution
(``torch.ops.mkldnn._convolution_pointwise``, the kernel PyTorch's own compiler emits for these pairs on the CPU):

- :func:`conv_activation_pairs` finds every plain ``nn.Conv2d`` (or rewritten stride-2 SAME conv,
  ``deploy/same_padding.py``) whose output goes straight into a ReLU or ReLU6 / Hardtanh module in one forward
  (hooks: ``deploy/module_pairs.py``);
- :func:`fuse_conv_activations` replaces each conv by a :class:`ConvActivation` (the same weights; the activation
  computed inside the conv) and the activation by ``nn.Identity``.

Same numbers (the activation is applied to the same sums), so ``optimize_for_inference`` checks the result against
the unchanged model as for its other rewrites. Only where PyTorch was built with oneDNN (``torch.backends.mkldnn``);
elsewhere the model is returned as it was. Run it after BatchNorm folding and the SAME rewrite, so that the conv is
what feeds the activation.
"""

from __future__ import annotations

import copy

import torch
from torch import nn

from disdepth.deploy.module_pairs import direct_pairs, set_submodule
from disdepth.deploy.same_padding import EvenSizeSameConv


def fusion_available() -> bool:
    """Whether this PyTorch has oneDNN's fused convolution (x86 and most ARM builds do)."""
    return torch.backends.mkldnn.is_available() and hasattr(torch.ops.mkldnn, "_convolution_pointwise")


def _attribute(activation: nn.Module) -> tuple[str, list[float]] | None:
    """oneDNN's name and scalars for ``activation``; None for one it cannot apply inside the conv."""
    if isinstance(activation, nn.ReLU):
        return "relu", []
    if isinstance(activation, nn.Hardtanh):  # nn.ReLU6 is Hardtanh(0, 6)
        return "hardtanh", [float(activation.min_val), float(activation.max_val)]
    return None


def _plain_conv(conv: nn.Module) -> bool:
    """A plain 2-D conv with numeric zero padding (not timm's Conv2dSame, no string padding, not transposed)."""
    return type(conv) is nn.Conv2d and conv.padding_mode == "zeros" and not isinstance(conv.padding, str)


def _fusable_conv(conv: nn.Module) -> bool:
    """A plain conv, or a rewritten SAME conv (``deploy/same_padding.py``) whose even-size branch is one. The wrapper's
    hook runs after its inner conv's, so an activation after it pairs with the wrapper, which fuses both branches."""
    return _plain_conv(conv) or (isinstance(conv, EvenSizeSameConv) and _plain_conv(conv.conv))


class ConvActivation(nn.Module):
    """``activation(conv(x))`` in one oneDNN call: x (B, C_in, H, W) float32 on the CPU -> (B, C_out, H', W').

    ``attribute`` "none" is the conv alone, run by oneDNN (:func:`convs_to_onednn`)."""

    def __init__(self, conv: nn.Conv2d, attribute: str, scalars: list[float]) -> None:
        super().__init__()
        self.weight, self.bias = conv.weight, conv.bias
        self.padding, self.stride, self.dilation = list(conv.padding), list(conv.stride), list(conv.dilation)
        self.groups, self.attribute, self.scalars = conv.groups, attribute, scalars

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.ops.mkldnn._convolution_pointwise(
            x, self.weight, self.bias, self.padding, self.stride, self.dilation, self.groups,
            self.attribute, self.scalars, "",
        )  # fmt: skip


def conv_activation_pairs(model: nn.Module, example: torch.Tensor) -> list[tuple[str, str]]:
    """(conv name, activation name) for every activation whose input is exactly a plain conv's output in one forward
    (``deploy/module_pairs.py``: shared modules left out; other readers of the conv's output are not visible, so the
    caller checks the fused model's output)."""
    return direct_pairs(model, example, _fusable_conv, lambda m: _attribute(m) is not None)


def fuse_conv_activations(model: nn.Module, example: torch.Tensor) -> tuple[nn.Module, int]:
    """A copy of ``model`` with every conv -> ReLU/ReLU6 pair as one :class:`ConvActivation`, and how many; ``model``
    itself with 0 where oneDNN's fused convolution is not available or nothing pairs."""
    if not fusion_available():
        return model, 0
    pairs = conv_activation_pairs(model, example)
    if not pairs:
        return model, 0
    fused = copy.deepcopy(model)
    for conv_name, activation_name in pairs:
        conv, activation = fused.get_submodule(conv_name), fused.get_submodule(activation_name)
        attribute, scalars = _attribute(activation)
        if isinstance(conv, EvenSizeSameConv):
            inside = ConvActivation(conv.conv, attribute, scalars)
            set_submodule(fused, conv_name, conv.with_activation(inside, activation))
        else:
            set_submodule(fused, conv_name, ConvActivation(conv, attribute, scalars))
        set_submodule(fused, activation_name, nn.Identity())
    return fused, len(pairs)


def convs_to_onednn(model: nn.Module) -> tuple[nn.Module, int]:
    """A copy of ``model`` whose every remaining plain conv (no activation after it: the 1x1 linear projections of
    inverted residual blocks, the lite decoder's skip projections) is a :class:`ConvActivation` with no activation,
    and how many; ``model`` itself with 0 where oneDNN's fused convolution is not available or there is none.

    Why: PyTorch's own dispatch sends a 1x1 stride-1 conv of a batch below 16 at one thread to its im2col GEMM path
    (``aten::_slow_conv2d_forward``, which also copies channels-last maps to and from NCHW and parallelises over the
    batch only); on the default student at 480x640 those 19 convs took 29 % of a one-thread forward. oneDNN's
    convolution runs them in the channels-last layout, with the same sums. The SAME convs' odd-size branch (timm's
    ``Conv2dSame``) is left as it is.
    """
    if not fusion_available():
        return model, 0
    names = [name for name, module in model.named_modules() if _plain_conv(module)]
    if not names:
        return model, 0
    routed = copy.deepcopy(model)
    for name in names:
        set_submodule(routed, name, ConvActivation(routed.get_submodule(name), "none", []))
    return routed, len(names)
