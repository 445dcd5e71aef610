"""Students with non-trivial BatchNorm statistics, for the tests of inference rewrites (BatchNorm folding,
deploy/inference.py; the decoder's upsampling fusion, deploy/upsample_fusion.py): a wrong fold shows in the output."""

from __future__ import annotations

import torch
from torch import nn

from disdepth.config import load_config
from disdepth.models.student import build_student


def randomise_batchnorm(model: nn.Module) -> None:
    """Non-trivial running statistics and affine weights in every BatchNorm2d (seeded, so every call alike)."""
    gen = torch.Generator().manual_seed(0)
    for module in model.modules():
        if isinstance(module, nn.BatchNorm2d):
            n = module.num_features
            module.running_mean.copy_(torch.rand(n, generator=gen) - 0.5)
            module.running_var.copy_(torch.rand(n, generator=gen) + 0.5)
            module.weight.data.copy_(torch.rand(n, generator=gen) + 0.5)
            module.bias.data.copy_(torch.rand(n, generator=gen) - 0.5)


# The MobileNetV2 + U-Net student (the default until 0.5): the U-Net decoder's rewrites are tested on it.
UNET = ("model.encoder=mobilenetv2_100", "model.decoder=unet")


def student(*overrides: str) -> nn.Module:
    """A student built from the default config plus ``overrides`` (seed 0, random weights: the rewrites must not
    depend on them), in eval mode, BatchNorms randomised."""
    torch.manual_seed(0)
    model = build_student(load_config(overrides=["model.pretrained=none", *overrides]).model).eval()
    randomise_batchnorm(model)
    return model


def assert_same_depth(optimized: nn.Module, model: nn.Module, x: torch.Tensor, rtol: float, atol: float) -> None:
    """The optimised student (fed channels-last, as ``predict`` feeds it) gives ``model``'s depth on ``x``."""
    with torch.inference_mode():
        got = optimized(x.contiguous(memory_format=torch.channels_last))["depth"]
        torch.testing.assert_close(got, model(x)["depth"], rtol=rtol, atol=atol)
