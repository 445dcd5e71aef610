"""The decoder's nearest upsampling fused into a transposed conv for inference (deploy/upsample_fusion.py): exact at
every size, both block orders; bilinear blocks and other models untouched; used by eager inference and fixed-size
ONNX graphs."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from bn_students import UNET, assert_same_depth, student  # tests/bn_students.py
from torch import nn

from disdepth.deploy.inference import optimize_for_inference
from disdepth.deploy.upsample_fusion import FusedDecoderBlock, fuse_decoder_upsampling, transposed_kernel
from disdepth.models.decoder import DecoderBlock


@pytest.mark.parametrize("size", [(5, 7), (1, 1), (6, 2)])
def test_the_transposed_kernel_is_a_conv_over_the_nearest_upsampled_map(size):
    torch.manual_seed(0)
    weight, x = torch.randn(5, 3, 3, 3), torch.randn(2, 3, *size)
    want = F.conv2d(F.interpolate(x, scale_factor=2.0, mode="nearest"), weight, padding=1)
    got = F.conv_transpose2d(x, transposed_kernel(weight), stride=2, padding=1)
    assert got.shape == want.shape == (2, 5, 2 * size[0], 2 * size[1])
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("strides", ["[]", "[16,8,4,2]", "[4]"], ids=["upsample-first", "conv-first", "mixed"])
@pytest.mark.parametrize("size", [(64, 96), (70, 101), (33, 47)], ids=["multiple-of-32", "odd-skips", "odd-small"])
def test_the_fused_student_gives_the_same_depth_and_decoder_features(strides, size):
    model = student(*UNET, f"model.decoder_conv_first_strides={strides}")
    fused, count = fuse_decoder_upsampling(model)
    assert count == 4 and all(isinstance(b, FusedDecoderBlock) for b in fused.decoder.blocks)
    assert all(isinstance(b, DecoderBlock) for b in model.decoder.blocks)  # the original is untouched
    x = torch.randn(2, 3, *size)
    with torch.inference_mode():
        want, got = model(x), fused(x)
    assert (want["depth"].std() > 1e-3).item()  # not a constant output that anything would match
    torch.testing.assert_close(got["depth"], want["depth"], rtol=1e-4, atol=1e-5)
    for g, w in zip(got["decoder_features"], want["decoder_features"], strict=True):
        torch.testing.assert_close(g, w, rtol=1e-4, atol=1e-4)


def test_the_fast_path_runs_where_the_skip_is_twice_the_coarse_map_and_the_crop_path_elsewhere():
    fused, _ = fuse_decoder_upsampling(student(*UNET))
    calls: list[int] = []
    for level, block in enumerate(fused.decoder.blocks):  # deep to shallow: strides 16, 8, 4, 2
        block.up_transposed.register_forward_hook(lambda *_, level=level: calls.append(level))
    with torch.inference_mode():
        fused(torch.randn(1, 3, 64, 96))
        assert calls == [0, 1, 2, 3]
        calls.clear()
        # 68 rows: 34, 17, 9, 5, 3 at strides 2 ... 32; only the stride-2 skip (34) is twice its coarse map (17)
        fused(torch.randn(1, 3, 68, 96))
    assert calls == [3]


def test_bilinear_blocks_and_models_without_decoder_blocks_are_left_as_they_are():
    bilinear = student(*UNET, "model.decoder_upsample=bilinear")
    same, count = fuse_decoder_upsampling(bilinear)
    assert count == 0 and same is bilinear
    peer = student("model.encoder=mobilenetv1_100", "model.decoder=nnconv5")
    assert fuse_decoder_upsampling(peer) == (peer, 0)
    with pytest.raises(ValueError, match="nearest"):
        FusedDecoderBlock(bilinear.decoder.blocks[0])


def test_the_eager_inference_path_fuses_and_still_matches():
    model = student(*UNET)
    optimized, ok = optimize_for_inference(model, torch.randn(1, 3, 64, 96))
    assert ok and sum(isinstance(m, FusedDecoderBlock) for m in optimized.modules()) == 4
    assert not any(isinstance(m, nn.BatchNorm2d) for m in optimized.modules())
    assert_same_depth(optimized, model, torch.randn(1, 3, 70, 101), rtol=1e-4, atol=1e-5)


def test_a_fixed_size_onnx_graph_is_fused_and_a_dynamic_one_is_not(tmp_path):
    onnx = pytest.importorskip("onnx")
    pytest.importorskip("onnxruntime")
    from disdepth.deploy.export import DepthOnly, export_onnx, ort_session, parity

    wrapper = DepthOnly(student(*UNET), (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)).eval()
    # (dynamic, size, transposed convs in the graph): at 68 rows only the stride-2 level is exactly x2
    for dynamic, size, want in ((False, (64, 96), 4), (False, (68, 96), 1), (True, (64, 96), 0)):
        path = tmp_path / f"m_{dynamic}_{size[0]}.onnx"
        export_onnx(wrapper, path, size, dynamic=dynamic, exporter="torchscript")
        assert [n.op_type for n in onnx.load(str(path)).graph.node].count("ConvTranspose") == want
        assert parity(ort_session(path, threads=1), wrapper, torch.rand(1, 3, *size)) < 1e-4
