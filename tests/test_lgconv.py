"""LG-Conv: identity at init, converter placement and names, parameter-overhead formula, ONNX-friendly ops."""

from __future__ import annotations

import pytest
import timm
import torch
from torch import nn

from disdepth.models.lgconv import GlobalBranch, LGConv, LGConvPolicy, convert_to_lgconv, lgconv_parameters


def _body(name: str = "resnet18") -> nn.Module:
    return timm.create_model(name, features_only=True, pretrained=False).eval()


def test_converted_backbone_is_identical_at_init():
    body = _body()
    x = torch.randn(2, 3, 64, 96)
    with torch.no_grad():
        before = [f.clone() for f in body(x)]
    names = convert_to_lgconv(body, LGConvPolicy(strides=(8, 16, 32), min_channels=64))
    assert names
    with torch.no_grad():
        after = body(x)
    for a, b in zip(before, after, strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_policy_selects_by_stride_channels_and_depthwise():
    body = _body("resnet18")
    names = convert_to_lgconv(body, LGConvPolicy(strides=(32,), min_channels=64))
    # resnet18 stage 5 (layer4): 2 blocks x 2 3x3 convs; the stride-2 conv1 of layer4.0 outputs at stride 32.
    assert names == ["layer4.0.conv1", "layer4.0.conv2", "layer4.1.conv1", "layer4.1.conv2"]
    assert all(isinstance(body.get_submodule(n), LGConv) for n in names)

    mbv2 = _body("mobilenetv2_100")
    with_dw = convert_to_lgconv(mbv2, LGConvPolicy(strides=(16,), min_channels=64, include_depthwise=True))
    mbv2_b = _body("mobilenetv2_100")
    without_dw = convert_to_lgconv(mbv2_b, LGConvPolicy(strides=(16,), min_channels=64, include_depthwise=False))
    assert with_dw and not without_dw  # all MobileNetV2 3x3 convs after the stem are depthwise
    high = convert_to_lgconv(
        _body("mobilenetv2_100"), LGConvPolicy(strides=(16,), min_channels=1000)
    )  # widest stride-16 conv has 576
    assert not high


def test_parameter_overhead_formula():
    body = _body("resnet18")
    policy = LGConvPolicy(strides=(16, 32), min_channels=64, heads=4, reduction=8, min_width=16)
    base = sum(p.numel() for p in body.parameters())
    names = convert_to_lgconv(body, policy)
    expected = 0
    for name in names:
        conv = body.get_submodule(name).local
        expected += GlobalBranch.expected_parameters(
            conv.in_channels, conv.out_channels, policy.width_for(conv.in_channels), policy.heads
        )
    assert lgconv_parameters(body) == expected
    assert sum(p.numel() for p in body.parameters()) == base + expected


def test_global_branch_attention_and_strided_output():
    conv = nn.Conv2d(32, 48, 3, stride=2, padding=1)
    layer = LGConv(conv, width=16, heads=4)
    nn.init.constant_(layer.global_branch.norm.weight, 1.0)
    x = torch.randn(2, 32, 15, 21)
    y = layer(x)
    assert y.shape == conv(x).shape == (2, 48, 8, 11)
    # The global branch mixes information across the whole image: changing one far corner changes every output.
    layer.eval()
    x2 = x.clone()
    x2[:, :, 0, 0] += 5.0
    diff = (layer.global_branch(x2) - layer.global_branch(x)).abs().amax(dim=1)
    assert (diff > 0).float().mean() > 0.9


@pytest.mark.parametrize("stride", [1, 2])
@pytest.mark.parametrize("training", [True, False])
def test_global_branch_fast_order_equals_the_formula(stride, training):
    """forward() reorders the linear steps for speed; outputs and gradients must equal the step-by-step formula."""
    torch.manual_seed(0)
    branch = GlobalBranch(24, 40, width=16, heads=4, stride=stride)
    for param in branch.parameters():  # every weight non-trivial, BN gamma included (it starts at 0)
        nn.init.normal_(param, std=0.5)
    branch.norm.running_mean.normal_()
    branch.norm.running_var.uniform_(0.5, 2.0)
    branch.train(training).double()  # float64: the two orders round differently in float32
    x = torch.randn(3, 24, 13, 18, dtype=torch.float64, requires_grad=True)
    fast, slow = branch(x), branch.reference_forward(x)
    assert fast.shape == slow.shape == (3, 40, -(-13 // stride), -(-18 // stride))
    torch.testing.assert_close(fast, slow, rtol=1e-9, atol=1e-9)
    grads = [torch.autograd.grad(y.square().sum(), [x, *branch.parameters()]) for y in (fast, slow)]
    for g_fast, g_slow in zip(*grads, strict=True):
        torch.testing.assert_close(g_fast, g_slow, rtol=1e-8, atol=1e-8)


def test_lgconv_exports_to_onnx(tmp_path):
    onnx = __import__("pytest").importorskip("onnx")
    layer = LGConv(nn.Conv2d(16, 16, 3, padding=1, groups=16), width=16, heads=4).eval()
    path = tmp_path / "lg.onnx"
    torch.onnx.export(layer, (torch.randn(1, 16, 12, 20),), str(path), dynamo=False)
    onnx.checker.check_model(onnx.load(str(path)))


def test_a_policy_that_converts_nothing_says_so(caplog):
    """MobileNetV3-Large's stride-32 stage has 5x5 depthwise convs only: the default policy finds nothing there."""
    from disdepth.config import ModelConfig
    from disdepth.models.student import build_student

    with caplog.at_level("WARNING", logger="disdepth.models.student"):
        cfg = ModelConfig(
            encoder="mobilenetv3_large_100", pretrained="none", decoder="unet", decoder_channels=[16, 8, 8, 8]
        )
        cfg.lgconv.enabled = True
        model = build_student(cfg)
    assert model.lgconv_names == []
    assert any("model.lgconv" in r.message and "strides=[16,32]" in r.message for r in caplog.records)
    cfg.lgconv.strides = [16, 32]
    assert build_student(cfg).lgconv_names  # the older policy has stride-16 3x3 convs to convert
