"""Student model: feature contracts across backbones, heads, gradient flow, build errors."""

from __future__ import annotations

import pytest
import torch

from disdepth.config import ConfigError, ModelConfig, load_config
from disdepth.models.decoder import UNetDecoder
from disdepth.models.heads import BinsHead
from disdepth.models.student import build_student

# timm's tiny test_* models keep the suite fast; one real small backbone checks a real layout.
TINY_ENCODERS = ["test_efficientnet", "test_resnet", "test_convnext", "test_byobnet", "resnet18"]
# The MobileNetV2 + U-Net student (the default until 0.5), random weights: the U-Net decoder's tests run on it.
UNET_STUDENT = {"encoder": "mobilenetv2_100", "pretrained": "none", "decoder": "unet"}


def _tiny_cfg(encoder: str, **kw) -> ModelConfig:
    settings = {"pretrained": "none", "decoder": "unet", "decoder_channels": [32, 16, 16, 8, 8], **kw}
    return ModelConfig(encoder=encoder, **settings)


@pytest.mark.parametrize("encoder", TINY_ENCODERS)
@pytest.mark.parametrize("head", ["sigmoid", "bins"])
def test_shapes_and_feature_info(encoder, head):
    model = build_student(_tiny_cfg(encoder, head=head, n_bins=16, max_depth=10.0)).eval()
    x = torch.randn(2, 3, 64, 96)
    with torch.no_grad():
        out = model(x)
    assert out["depth"].shape == (2, 1, 64, 96)
    assert torch.all(out["depth"] > 0) and torch.all(out["depth"] <= 10.0 + 1e-4)
    for feat, info in zip(out["encoder_features"], model.feature_info, strict=True):
        assert feat.shape == (2, info.channels, 64 // info.stride, 96 // info.stride)
    for feat, info in zip(out["decoder_features"], model.decoder.feature_info, strict=True):
        assert feat.shape == (2, info.channels, 64 // info.stride, 96 // info.stride)
    strides = [info.stride for info in model.feature_info]
    assert strides == sorted(strides) and strides[-1] == 32


def test_bins_centres_sorted_within_range():
    head = BinsHead(in_channels=8, n_bins=32, min_depth=0.5, max_depth=10.0)
    out = head(torch.randn(3, 8, 5, 7))
    centers = out["bin_centers"]
    assert centers.shape == (3, 32)
    assert torch.all(centers[:, 1:] > centers[:, :-1])
    assert torch.all(centers > 0.5) and torch.all(centers < 10.0)
    assert torch.all(out["depth"] >= centers[:, :1, None, None].amin()) and torch.all(out["depth"] <= 10.0)


@pytest.mark.parametrize("head", ["sigmoid", "bins"])
@pytest.mark.parametrize("lgconv", [False, True])
def test_every_trainable_parameter_gets_gradient(head, lgconv):
    cfg = _tiny_cfg("test_efficientnet", head=head, n_bins=8)
    cfg.lgconv.enabled = lgconv
    cfg.lgconv.min_channels = 8
    cfg.lgconv.strides = [8, 16, 32]
    model = build_student(cfg).train()
    if lgconv:
        assert model.lgconv_names
        # The branch BN starts at gamma=0 (identity); give it a value so gradients reach the whole branch.
        for module in model.modules():
            if module.__class__.__name__ == "GlobalBranch":
                torch.nn.init.constant_(module.norm.weight, 0.5)
    out = model(torch.randn(2, 3, 64, 64))
    (out["depth"].log().mean() + (out["bin_centers"].mean() if head == "bins" else 0)).backward()
    # LG-Conv's aggregation bias shifts a softmax over positions by a constant: its gradient is 0 in exact
    # arithmetic (only rounding noise, or exactly 0), so it is the one parameter not required to move.
    shift_invariant = ".global_branch.aggregate.bias"
    missing = [
        n
        for n, p in model.named_parameters()
        if p.requires_grad and (p.grad is None or not p.grad.abs().sum()) and not n.endswith(shift_invariant)
    ]
    assert not missing, f"no gradient for: {missing}"


def test_build_errors_name_the_key(tmp_path):
    with pytest.raises(ValueError, match="model.pretrained='file' needs model.weights"):
        build_student(ModelConfig(encoder="test_resnet", pretrained="file", weights=""))
    with pytest.raises(FileNotFoundError, match="model.weights: file not found"):
        build_student(ModelConfig(encoder="test_resnet", pretrained="file", weights=str(tmp_path / "w.pth")))
    with pytest.raises(ValueError, match="is set but model.pretrained='none'"):
        build_student(ModelConfig(encoder="test_resnet", pretrained="none", weights=str(tmp_path / "w.pth")))
    with pytest.raises(ValueError, match="model.encoder='not_a_net'"):
        build_student(ModelConfig(encoder="not_a_net", pretrained="none"))
    with pytest.raises(ValueError, match="min_depth/max_depth"):
        build_student(ModelConfig(encoder="test_resnet", pretrained="none", min_depth=5.0, max_depth=1.0))


def test_the_packaged_weights_fit_the_default_encoder_only():
    """The default student loads the packaged ImageNet Lite0 weights; another encoder with them is refused when the
    config loads (one line naming the keys), and model.pretrained=none alone gives random weights."""
    cfg = load_config().model
    assert (cfg.encoder, cfg.pretrained, cfg.weights, cfg.decoder) == (
        "tf_efficientnet_lite0", "file", "package:efficientnet-lite0", "lite"
    )  # fmt: skip
    with pytest.raises(ConfigError, match=r"model.weights: package:efficientnet-lite0 fits model.encoder=tf_eff.*"
                       r"got model.encoder='resnet18': set model.pretrained=none"):  # fmt: skip
        load_config(overrides=["model.encoder=resnet18"])
    assert load_config(overrides=["model.encoder=resnet18", "model.pretrained=none"]).model.encoder == "resnet18"
    torch.manual_seed(0)
    scratch = build_student(load_config(overrides=["model.pretrained=none"]).model)
    torch.manual_seed(0)
    imagenet = build_student(cfg)
    stem = "encoder.body.conv_stem.weight"
    assert not torch.equal(scratch.state_dict()[stem], imagenet.state_dict()[stem])


@pytest.mark.parametrize("encoder", ["test_efficientnet", "mobilenetv2_100", "tf_efficientnet_lite0"])
def test_student_input_spec_from_the_config_equals_the_built_students(encoder):
    """Datasets are built before the model: the config-only spec (lite0: mean = std = 0.5) must be the model's."""
    from disdepth.models.student import student_input_spec

    weights = [] if encoder == "tf_efficientnet_lite0" else ["model.pretrained=none"]
    cfg = load_config(overrides=[f"model.encoder={encoder}", "model.max_depth=80", *weights]).model
    assert student_input_spec(cfg) == build_student(cfg).input_spec


def test_unet_decodes_every_level_down_to_stride_2():
    """The head predicts at the finest encoder stride, the depth is at input size, and every parameter gets a
    gradient."""
    cfg = ModelConfig(encoder="test_efficientnet", pretrained="none", decoder="unet", decoder_channels=[32, 16, 8, 8])
    model = build_student(cfg).train()
    assert [(info.stride, info.channels) for info in model.decoder.feature_info] == [(16, 32), (8, 16), (4, 8), (2, 8)]
    out = model(torch.randn(2, 3, 64, 96))
    assert out["depth"].shape == (2, 1, 64, 96) and out["decoder_features"][-1].shape[-2:] == (32, 48)
    out["depth"].log().mean().backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in model.parameters())


def test_retired_keys_load_at_their_unused_value_and_are_refused_otherwise():
    """Runs saved before ``model.head_upsample`` / ``model.decoder_finest_stride`` were retired store them (a full
    config dump): at 1 / 2 they still load; a run that used another value is refused, naming the key."""
    from disdepth.config import ConfigError, config_from_dict, load_config, to_dict

    saved = to_dict(load_config())
    saved["model"].update(head_upsample=1, decoder_finest_stride=2)
    assert config_from_dict(saved).model == load_config().model
    saved["model"]["decoder_finest_stride"] = 4
    with pytest.raises(ConfigError, match=r"^model.decoder_finest_stride=4: this setting was retired .* disdepth 0.2$"):
        config_from_dict(saved)
    with pytest.raises(ConfigError, match="model.head_upsample=4: this setting was retired"):
        load_config(overrides=["model.head_upsample=4"])


def test_nearest_upsampling_copies_each_pixel_to_its_children_and_crops_odd_skips():
    """Fine pixel (i, j) takes coarse pixel (i // 2, j // 2): where a stride-2 conv took it from."""
    from disdepth.models.decoder import upsample_to

    coarse = torch.arange(12.0).view(1, 1, 3, 4)
    for fine_h, fine_w in ((6, 8), (5, 7)):  # an even and an odd-sized skip
        up = upsample_to(coarse, torch.zeros(1, 2, fine_h, fine_w), "nearest")
        assert up.shape == (1, 1, fine_h, fine_w)
        for i in range(fine_h):
            for j in range(fine_w):
                assert up[0, 0, i, j] == coarse[0, 0, i // 2, j // 2]
    with pytest.raises(ValueError, match="upsample"):
        build_student(ModelConfig(**UNET_STUDENT, decoder_upsample="bicubic"))


@pytest.mark.parametrize("size", [(64, 96), (70, 100)])
def test_nearest_and_bilinear_students_differ_only_in_the_upsampling(size):
    torch.manual_seed(0)
    nearest = build_student(ModelConfig(**UNET_STUDENT)).eval()  # the U-Net's default
    bilinear = build_student(ModelConfig(**UNET_STUDENT, decoder_upsample="bilinear")).eval()
    bilinear.load_state_dict(nearest.state_dict())  # same weights: only the resampling differs
    x = torch.randn(1, 3, *size)
    with torch.no_grad():
        a, b = nearest(x), bilinear(x)
    assert a["depth"].shape == b["depth"].shape == (1, 1, *size)
    assert [f.shape for f in a["decoder_features"]] == [f.shape for f in b["decoder_features"]]
    assert not torch.allclose(a["depth"], b["depth"])


@pytest.mark.parametrize("size", [(64, 96), (70, 100)])
def test_the_lite_decoder_upsamples_by_nearest_when_asked_with_the_same_weights(size):
    """model.lite_upsample: the same parameters as the bilinear lite decoder (its checkpoints load into either), and
    each level adds the 1x1-projected skip to the coarse map copied to its 2x2 children, cropped to an odd skip."""
    from disdepth.models.decoder import upsample_to

    torch.manual_seed(0)
    bilinear = build_student(ModelConfig(pretrained="none", lite_upsample="bilinear")).eval()  # lite before 0.5
    nearest = build_student(ModelConfig(pretrained="none")).eval()  # the default: the lite decoder, nearest
    assert {b.upsample for b in bilinear.decoder.blocks} == {"bilinear"}
    nearest.load_state_dict(bilinear.state_dict())  # strict: the same keys and shapes
    x = torch.randn(1, 3, *size)
    with torch.no_grad():
        a, b = nearest(x), bilinear(x)
        block, coarse = nearest.decoder.blocks[-1], a["decoder_features"][-2]
        skip = a["encoder_features"][nearest.decoder.skip_index[-1]]
        want = block.block(upsample_to(coarse, skip, "nearest") + block.skip(skip))
    assert a["depth"].shape == b["depth"].shape == (1, 1, *size)
    assert torch.equal(a["decoder_features"][-1], want)
    assert not torch.allclose(a["depth"], b["depth"])
    with pytest.raises(ValueError, match="upsample"):
        build_student(ModelConfig(pretrained="none", lite_upsample="bicubic"))


@pytest.mark.parametrize("size", [(64, 96), (70, 100)])
def test_conv_first_blocks_run_their_first_conv_at_the_coarse_resolution(size):
    """Monodepth2's order: same per-level outputs as the U-Net's, the first conv of each level before the upsampling."""
    torch.manual_seed(0)
    unet = build_student(ModelConfig(**UNET_STUDENT, decoder_conv_first_strides=[])).eval()
    conv_first = build_student(ModelConfig(**UNET_STUDENT, decoder_conv_first_strides=[16, 8, 4, 2])).eval()
    assert {block.order for block in unet.decoder.blocks} == {"upsample_first"}
    seen: list[tuple[int, int]] = []
    for block in conv_first.decoder.blocks:
        block.coarse.register_forward_hook(lambda mod, inp, out: seen.append(tuple(out.shape[-2:])))
    x = torch.randn(1, 3, *size)
    with torch.no_grad():
        a, b = unet(x), conv_first(x)
    assert b["depth"].shape == (1, 1, *size)
    assert [f.shape for f in a["decoder_features"]] == [f.shape for f in b["decoder_features"]]
    # each level's first conv sees the previous level's (or the encoder's deepest) map, not the skip's size
    coarse_inputs = [b["encoder_features"][-1], *b["decoder_features"][:-1]]
    assert seen == [tuple(f.shape[-2:]) for f in coarse_inputs]
    assert all(s[0] < f.shape[-2] for s, f in zip(seen, b["decoder_features"], strict=True))
    # the same weights, ordered differently: (in + skip) * out + out * out == in * out + (out + skip) * out
    assert sum(p.numel() for p in unet.parameters()) == sum(p.numel() for p in conv_first.parameters())
    with pytest.raises(ValueError, match="order"):
        from disdepth.models.decoder import DecoderBlock

        DecoderBlock(8, 4, 8, order="sideways")


def test_conv_first_strides_pick_the_levels():
    model = build_student(ModelConfig(**UNET_STUDENT, decoder_conv_first_strides=[4, 2]))
    assert [(f.stride, b.order) for f, b in zip(model.decoder.feature_info, model.decoder.blocks, strict=True)] == [
        (16, "upsample_first"),
        (8, "upsample_first"),
        (4, "conv_first"),
        (2, "conv_first"),
    ]
    with pytest.raises(ValueError, match=r"conv_first_strides \[2\]: no decoder level"):
        levels = build_student(ModelConfig(**UNET_STUDENT)).encoder.feature_info[1:]
        UNetDecoder(levels, [16, 8, 8], conv_first_strides=[2])
