"""The peers as students: FastDepth (MobileNet + NNConv5) and Monodepth2 (ResNet-18 decoder), written from their
papers, match the published size and cost, and follow the student contract (pyramids, ghost decoder, any size)."""

from __future__ import annotations

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from disdepth.config import load_config
from disdepth.models.student import build_student
from disdepth.tasks.acclimation import GhostDecoder

# Each peer as the authors built it: FastDepth keeps its own 1x1 conv -> BN -> ReLU output layer.
PEER_HEADS = {"nnconv5": "pointwise", "monodepth2": "sigmoid"}


def _student(encoder: str, decoder: str):
    head = PEER_HEADS.get(decoder, "sigmoid")
    return build_student(
        load_config(overrides=[f"model.encoder={encoder}", "model.pretrained=none", f"model.decoder={decoder}",
                               f"model.head={head}"]).model  # fmt: skip
    )


def _gmacs(model, height: int, width: int) -> float:
    counter = FlopCounterMode(display=False)
    with torch.no_grad(), counter:
        model.eval()(torch.zeros(1, 3, height, width))
    return counter.get_total_flops() / 2e9  # one multiply-add = 2 FLOPs


@pytest.mark.parametrize(
    ("encoder", "decoder", "size", "params_m", "gmacs"),
    [
        ("mobilenetv1_100", "nnconv5", (224, 224), 3.96, 0.74),  # FastDepth unpruned (Wofk et al. 2019, Table II)
        ("resnet18", "monodepth2", (192, 640), 14.3, 8.0),  # Monodepth2-R18 (Godard et al. 2019)
    ],
)
def test_peer_size_and_cost_match_the_papers(encoder, decoder, size, params_m, gmacs):
    model = _student(encoder, decoder)
    assert sum(p.numel() for p in model.parameters()) / 1e6 == pytest.approx(params_m, rel=0.01)
    assert _gmacs(model, *size) == pytest.approx(gmacs, rel=0.02)


@pytest.mark.parametrize(("encoder", "decoder"), [("mobilenetv1_100", "nnconv5"), ("resnet18", "monodepth2")])
def test_peer_follows_the_student_contract(encoder, decoder):
    model = _student(encoder, decoder).train()
    image = torch.randn(2, 3, 70, 100)  # not a multiple of 32: every level still lines up
    out = model(image)
    assert out["depth"].shape == (2, 1, 70, 100) and (out["depth"] > 0).all()
    strides = [f.stride for f in model.decoder.feature_info]
    assert strides == [16, 8, 4, 2, 1] and len(out["decoder_features"]) == 5
    for feat, info in zip(out["decoder_features"], model.decoder.feature_info, strict=True):
        assert feat.shape[1] == info.channels
    out["depth"].mean().backward()
    assert all(p.grad is not None for p in model.parameters() if p.requires_grad)
    ghost = GhostDecoder.from_student(model).freeze()  # acclimation reads depth through a copy of this decoder
    assert ghost(out["encoder_features"], (70, 100))["depth"].shape == (2, 1, 70, 100)
    assert model.input_spec.size_multiple == 32


def test_lite_decoder_predicts_at_stride_4_and_follows_the_contract():
    model = _student("mobilenetv2_100", "lite").train()
    out = model(torch.randn(2, 3, 70, 100))
    assert out["depth"].shape == (2, 1, 70, 100)
    assert [f.stride for f in model.decoder.feature_info] == [16, 8, 4]
    assert [f.shape[-2:] for f in out["decoder_features"]] == [(5, 7), (9, 13), (18, 25)]
    out["depth"].mean().backward()
    assert all(p.grad is not None for n, p in model.named_parameters() if not n.startswith("encoder."))
    ghost = GhostDecoder.from_student(model).freeze()
    assert ghost(out["encoder_features"], (70, 100))["depth"].shape == (2, 1, 70, 100)
    # Cheaper than the default U-Net decoder (96/48/24/12) by construction: under a fifth of its decoder parameters,
    # and under 60 % of the whole student's FLOPs (0.32 against 0.56 GMACs at 224x224).
    unet = _student("mobilenetv2_100", "unet")
    assert sum(p.numel() for p in model.decoder.parameters()) < 0.2 * sum(p.numel() for p in unet.decoder.parameters())
    assert _gmacs(model, 224, 224) < 0.6 * _gmacs(unet, 224, 224)


def test_fastdepth_is_the_authors_network_op_for_op():
    """Checked against the authors' MobileNet-NNConv5dw-SkipAdd (github.com/dwofk/fast-depth, models.py, run
    unchanged outside this repository; benchmarks/results/peer_check_fastdepth.json): the same parameter count to the
    parameter and the same FLOPs. Here: the count, the skips (strides 8, 4, 2; none at stride 16) and the head."""
    model = _student("mobilenetv1_100", "nnconv5")
    assert sum(p.numel() for p in model.parameters()) == 3_960_930
    assert model.decoder.skips == [None, 2, 1, 0, None]
    head = model.head
    assert head.conv.kernel_size == (1, 1) and head.conv.bias is None and isinstance(head.bn, torch.nn.BatchNorm2d)
    gflops = _gmacs(model, 480, 640) * 2
    assert gflops == pytest.approx(9.020, abs=0.001)


def test_peer_graphs_upsample_by_a_fixed_scale_and_end_without_a_resize(tmp_path):
    """The exported FastDepth graph is the authors' op for op after our input normalisation: 38 convs, 3 skip adds
    and 5 nearest x2 upsamplings by a fixed scale (a resize to a computed size made ONNX Runtime reorder layouts
    around each: 2.4x the authors' graph), and no final resize (its head already predicts at full resolution)."""
    import onnx

    from disdepth.deploy.export import DepthOnly, export_onnx

    model = _student("mobilenetv1_100", "nnconv5").eval()
    path = tmp_path / "fastdepth.onnx"
    export_onnx(DepthOnly.of(model), path, (128, 160))
    graph = onnx.load(str(path)).graph
    ops = [n.op_type for n in graph.node]
    assert (ops.count("Conv"), ops.count("Add"), ops.count("Resize") + ops.count("Upsample")) == (38, 3, 5)
    constants = {i.name for i in graph.initializer}
    constants |= {o for n in graph.node if n.op_type == "Constant" for o in n.output}
    for node in (n for n in graph.node if n.op_type == "Resize"):
        modes = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
        scales, sizes = (node.input[2:3] or [""])[0], (node.input[3:4] or [""])[0]
        assert modes["mode"] == b"nearest" and scales in constants and not sizes, node


@pytest.mark.parametrize("decoder", ["nnconv5", "monodepth2"])
def test_peer_upsampling_at_odd_sizes_is_a_nearest_resize_to_the_skip(decoder):
    """x2 then crop picks the same pixels as a nearest resize to the skip's size, so odd inputs still work."""
    import torch.nn.functional as F

    from disdepth.models.peer_decoders import _upsample_to

    for h, w in ((4, 5), (7, 3)):
        x = torch.randn(1, 2, h, w)
        for skip_hw in ((2 * h, 2 * w), (2 * h - 1, 2 * w - 1)):
            skip = torch.zeros(1, 1, *skip_hw)
            assert torch.equal(_upsample_to(x, skip), F.interpolate(x, size=skip_hw, mode="nearest"))
    out = _student("mobilenetv1_100" if decoder == "nnconv5" else "resnet18", decoder)(torch.rand(1, 3, 70, 90))
    assert out["depth"].shape == (1, 1, 70, 90)
