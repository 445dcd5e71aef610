"""The SAME-padding rewrite (deploy/same_padding.py): stride-2 ``Conv2dSame`` as a plain conv, exact at every size."""

from __future__ import annotations

import pytest
import torch
from bn_students import assert_same_depth, student  # tests/bn_students.py
from timm.layers import Conv2dSame
from torch import nn

from disdepth.deploy.inference import optimize_for_inference
from disdepth.deploy.same_padding import EvenSizeSameConv, rewrite_same_padding


@pytest.mark.parametrize("kernel", [3, 5])
@pytest.mark.parametrize("depthwise", [False, True])
def test_the_rewritten_conv_computes_what_conv2dsame_does_at_even_and_odd_sizes(kernel, depthwise):
    torch.manual_seed(0)
    same = Conv2dSame(8, 8, kernel, stride=2, groups=8 if depthwise else 1, bias=not depthwise).eval()
    rewritten = EvenSizeSameConv(same).eval()
    assert rewritten.conv.kernel_size == (kernel + 1, kernel + 1)
    for size in [(8, 10), (16, 12), (9, 10), (8, 11), (9, 11)]:
        x = torch.randn(2, 8, *size)
        with torch.no_grad():
            want, got = same(x), rewritten(x)
            assert got.shape == want.shape == (2, 8, (size[0] + 1) // 2, (size[1] + 1) // 2)
            torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)
            if size[0] % 2 == 0 and size[1] % 2 == 0:  # the even path is the plain conv, not the padded one
                torch.testing.assert_close(rewritten.conv(x), want, rtol=1e-5, atol=1e-5)


def test_only_stride2_same_convs_are_rewritten_and_a_model_without_them_is_returned_itself():
    model = nn.Sequential(Conv2dSame(3, 4, 3, stride=2), Conv2dSame(4, 4, 3, stride=1), nn.Conv2d(4, 4, 3, 2, 1))
    rewritten, count = rewrite_same_padding(model)
    assert count == 1 and isinstance(rewritten[0], EvenSizeSameConv)
    assert type(rewritten[1]) is Conv2dSame and type(rewritten[2]) is nn.Conv2d
    assert type(model[0]) is Conv2dSame  # the input model is not changed
    plain = nn.Sequential(nn.Conv2d(3, 4, 3, 2, 1))
    assert rewrite_same_padding(plain) == (plain, 0)


def test_the_optimised_lite0_student_has_no_padded_stride2_conv_left_and_the_same_depth():
    """tf_efficientnet_lite0 has five stride-2 SAME convs; after folding they run as plain convs, at the example's
    size and at one whose pyramid has odd sides (which the original convs handle)."""
    model = student("model.encoder=tf_efficientnet_lite0", "model.decoder=lite", "model.lite_upsample=nearest")
    optimized, ok = optimize_for_inference(model, torch.rand(1, 3, 64, 96))
    assert ok
    assert sum(isinstance(m, EvenSizeSameConv) for m in optimized.modules()) == 5
    for size in [(64, 96), (70, 98)]:
        assert_same_depth(optimized, model, torch.rand(1, 3, *size), rtol=1e-3, atol=1e-4)
