"""Conv -> ReLU/ReLU6 as one oneDNN call (deploy/conv_activation.py): the same numbers, only where it is the same."""

from __future__ import annotations

import pytest
import torch
from bn_students import UNET, assert_same_depth, student  # tests/bn_students.py
from torch import nn

from disdepth.deploy.conv_activation import (
    ConvActivation,
    conv_activation_pairs,
    fuse_conv_activations,
    fusion_available,
)
from disdepth.deploy.inference import optimize_for_inference

needs_onednn = pytest.mark.skipif(not fusion_available(), reason="this PyTorch has no oneDNN fused convolution")


@needs_onednn
@pytest.mark.parametrize(
    "conv",
    [
        nn.Conv2d(8, 16, 3, padding=1),
        nn.Conv2d(8, 8, 3, stride=2, padding=1, groups=8, bias=False),  # depthwise, stride 2
        nn.Conv2d(8, 4, 1),
        nn.Conv2d(8, 8, 3, padding=2, dilation=2),
    ],
    ids=["dense", "depthwise_s2", "pointwise", "dilated"],
)
@pytest.mark.parametrize("activation", [nn.ReLU(), nn.ReLU6(), nn.Hardtanh(-0.5, 0.5)], ids=["relu", "relu6", "ht"])
def test_the_fused_conv_computes_the_activation_of_the_conv(conv, activation):
    torch.manual_seed(0)
    pair = nn.Sequential(conv, activation).eval()
    fused, count = fuse_conv_activations(pair, torch.randn(1, 8, 12, 14))
    assert count == 1 and isinstance(fused[0], ConvActivation) and isinstance(fused[1], nn.Identity)
    for layout in (torch.contiguous_format, torch.channels_last):
        x = torch.randn(2, 8, 13, 15).contiguous(memory_format=layout)
        with torch.inference_mode():
            torch.testing.assert_close(fused(x), pair(x), rtol=1e-5, atol=1e-5)


class ReadsTheRawConv(nn.Module):
    """relu(conv(x)) + conv(x): the conv's raw output has a second reader, which hooks cannot see."""

    def __init__(self) -> None:
        super().__init__()
        self.conv, self.act = nn.Conv2d(3, 4, 3, padding=1), nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv(x)
        return self.act(y) + y


@needs_onednn
def test_a_conv_whose_raw_output_is_read_elsewhere_keeps_its_activation_separate():
    torch.manual_seed(0)
    model = ReadsTheRawConv().eval()
    example = torch.randn(1, 3, 16, 16)
    assert conv_activation_pairs(model, example) == [("conv", "act")]  # the hooks pair them ...
    fused, _ = fuse_conv_activations(model, example)
    with torch.inference_mode():
        assert not torch.allclose(fused(example), model(example))  # ... which would be wrong here
    optimized, ok = optimize_for_inference(model, example)  # so the checked optimisation leaves them apart
    assert ok and isinstance(optimized.act, nn.ReLU)
    assert not any(isinstance(m, ConvActivation) and m.attribute != "none" for m in optimized.modules())
    with torch.inference_mode():
        torch.testing.assert_close(optimized(example.contiguous(memory_format=torch.channels_last)), model(example))


@needs_onednn
@pytest.mark.parametrize(
    "overrides",
    [[*UNET], ["model.encoder=mobilenetv2_100"], []],
    ids=["mobilenetv2_unet", "mobilenetv2_lite", "default"],
)
def test_the_optimised_student_runs_its_relus_inside_its_convs_with_the_same_depth(overrides):
    """Every ReLU / ReLU6 of the student runs inside its conv, the default's stride-2 SAME convs (rewritten,
    deploy/same_padding.py) included; their odd-size branch keeps the activation after the SAME conv."""
    model = student(*overrides)
    optimized, ok = optimize_for_inference(model, torch.rand(1, 3, 64, 96))
    assert ok
    # the MobileNetV2 students have 34 ReLU6, the default 32 (all in the encoder, which runs them inside its convs)
    assert sum(isinstance(m, ConvActivation) for m in optimized.modules()) >= 32
    left = [name for name, m in optimized.named_modules() if isinstance(m, nn.ReLU6)]
    assert all(name.endswith(".same.1") for name in left)  # only the odd-size branches of the SAME convs
    assert_same_depth(optimized, model, torch.rand(1, 3, 96, 128), rtol=1e-3, atol=1e-4)
    assert_same_depth(optimized, model, torch.rand(1, 3, 70, 101), rtol=1e-3, atol=1e-4)


def test_without_onednn_the_model_is_returned_as_it_was(monkeypatch):
    import disdepth.deploy.conv_activation as module

    monkeypatch.setattr(module, "fusion_available", lambda: False)
    pair = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU()).eval()
    assert module.fuse_conv_activations(pair, torch.randn(1, 3, 8, 8)) == (pair, 0)


@needs_onednn
def test_a_fused_conv_that_cannot_run_here_is_dropped_and_the_model_still_loads(monkeypatch):
    """A oneDNN build without a post-op kernel raises when the fused conv runs: the optimisation keeps the separate
    activations (and PyTorch's own conv dispatch) instead of failing."""
    import disdepth.deploy.conv_activation as module

    def unsupported(self, x):
        raise RuntimeError("could not create a primitive descriptor")

    monkeypatch.setattr(module.ConvActivation, "forward", unsupported)
    model = student("model.encoder=mobilenetv2_100", "model.lite_upsample=bilinear")
    optimized, ok = optimize_for_inference(model, torch.rand(1, 3, 64, 96))
    assert ok and not any(isinstance(m, ConvActivation) for m in optimized.modules())


@needs_onednn
def test_the_convs_without_an_activation_run_on_onednn_not_pytorchs_slow_path():
    """At one thread PyTorch runs 1x1 stride-1 convs of a small batch as im2col GEMMs (``_slow_conv2d_forward``, with
    layout copies); the optimised student runs every conv through oneDNN instead, with the same depth."""
    from torch.profiler import ProfilerActivity, profile

    model = student()  # the default: 16 linear 1x1 projections in the encoder, 3 skip projections in the decoder
    example, x = torch.rand(1, 3, 64, 96), torch.rand(1, 3, 96, 128).contiguous(memory_format=torch.channels_last)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        ops, optimized = {}, {}
        for routed in (True, False):
            optimized[routed], ok = optimize_for_inference(model, example, onednn_convs=routed)
            assert ok
            with torch.inference_mode(), profile(activities=[ProfilerActivity.CPU]) as prof:
                optimized[routed](x)
            ops[routed] = {event.key for event in prof.key_averages()}
    finally:
        torch.set_num_threads(threads)
    assert "aten::_slow_conv2d_forward" in ops[False] and "aten::_slow_conv2d_forward" not in ops[True]
    assert not any(type(m) is nn.Conv2d for m in optimized[True].modules())  # the SAME convs' odd branch: Conv2dSame
    assert_same_depth(optimized[True], model, torch.rand(1, 3, 96, 128), rtol=1e-3, atol=1e-4)
    assert_same_depth(optimized[True], model, torch.rand(1, 3, 70, 101), rtol=1e-3, atol=1e-4)
