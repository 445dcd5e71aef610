"""Hugging Face teachers (tiny random configs saved with ``save_pretrained`` and loaded by path) and the
scale-and-shift alignment of relative depth."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
from torch import nn

from disdepth.config import TeacherConfig
from disdepth.teachers import align_relative, build_teacher, fit_scale_shift, measure_complexity

transformers = pytest.importorskip("transformers")

from hf_tiny import _depth_anything, _dpt, _dpt_hybrid, _glpn  # noqa: E402  (tests/hf_tiny.py)

pytestmark = pytest.mark.usefixtures("one_thread")  # conftest.py


@pytest.fixture(scope="module")
def hf_models(tmp_path_factory) -> dict[str, Path]:
    """Tiny random checkpoints on disk, one per family (as a user's local folder or the HF cache holds them)."""
    root = tmp_path_factory.mktemp("hf")
    torch.manual_seed(0)
    makers = {
        "da_relative": lambda: _depth_anything(False),
        "da_metric": lambda: _depth_anything(True),
        "dpt": _dpt,
        "dpt_hybrid": _dpt_hybrid,
        "glpn": _glpn,
    }
    paths = {}
    for name, make in makers.items():
        make().save_pretrained(root / name)
        paths[name] = root / name
    # A processor config as Depth Anything V2 ships it (the adapter must read mean/std from it).
    proc = {"image_mean": [0.4, 0.5, 0.6], "image_std": [0.2, 0.25, 0.3], "ensure_multiple_of": 14}
    (paths["da_relative"] / "preprocessor_config.json").write_text(json.dumps(proc))
    (paths["glpn"] / "preprocessor_config.json").write_text(json.dumps({"do_normalize": False, "size_divisor": 32}))
    return paths


def _teacher(path: Path, **kw):
    return build_teacher(TeacherConfig(kind="hf", name=str(path), min_depth=0.1, max_depth=10.0, **kw))


@pytest.mark.parametrize(
    ("name", "metric", "channels"),
    [("da_relative", False, [32] * 4), ("da_metric", True, [32] * 4), ("dpt", False, [32] * 4),
     ("dpt_hybrid", False, [32] * 4), ("glpn", True, [8, 16, 32, 64])],
)  # fmt: skip
@pytest.mark.parametrize("size", [(64, 96), (70, 100)])
def test_pyramid_depth_and_metric_flags(hf_models, name, metric, channels, size) -> None:
    teacher = _teacher(hf_models[name])
    h, w = size
    with torch.no_grad():
        out = teacher(torch.randn(2, 3, h, w))
    assert teacher.is_metric is metric
    assert [f.stride for f in teacher.feature_info] == [4, 8, 16, 32]
    assert [f.channels for f in teacher.feature_info] == channels
    assert out["depth"].shape == (2, 1, h, w)
    assert out["encoder_features"] is out["features"]
    for feat, info in zip(out["features"], teacher.feature_info, strict=True):
        assert feat.shape == (2, info.channels, math.ceil(h / info.stride), math.ceil(w / info.stride))
    assert bool(((out["depth"] >= 0.1) & (out["depth"] <= 10.0)).all())
    if metric:
        assert "relative" not in out
    else:
        assert out["relative"].shape == (2, 1, h, w) and out["aligned"] is False


def test_size_rules(hf_models) -> None:
    da, dpt, glpn = (_teacher(hf_models[n]) for n in ("da_relative", "dpt", "glpn"))
    assert da.model_input_size(480, 640) == (476, 644)  # nearest multiples of 14 (DINOv2 patches)
    assert glpn.model_input_size(480, 650) == (480, 640)
    assert dpt.model_input_size(480, 640) == (64, 64)  # ViT-DPT: its square image_size
    fixed = _teacher(hf_models["da_relative"], input_size=[56, 84])
    assert fixed.model_input_size(480, 640) == (56, 84)
    assert fixed(torch.randn(1, 3, 48, 64))["depth"].shape == (1, 1, 48, 64)


def test_normalisation_from_preprocessor_config(hf_models) -> None:
    da = _teacher(hf_models["da_relative"])
    assert da.mean == (0.4, 0.5, 0.6) and da.std == (0.2, 0.25, 0.3)
    assert _teacher(hf_models["da_metric"]).mean == (0.485, 0.456, 0.406)  # no processor file: family default
    assert _teacher(hf_models["dpt"]).std == (0.5, 0.5, 0.5)
    glpn = _teacher(hf_models["glpn"])
    assert glpn.mean == (0.0, 0.0, 0.0) and glpn.std == (1.0, 1.0, 1.0)  # do_normalize: false
    x01 = torch.rand(1, 3, 4, 4)
    student = (x01 - 0.5) / 0.25
    torch.testing.assert_close(glpn.normalize_input(student, (0.5,) * 3, (0.25,) * 3), x01)


def test_metric_override_and_relative_alignment_in_forward(hf_models) -> None:
    relative = _teacher(hf_models["glpn"], metric="relative", relative_space="depth")
    assert not relative.is_metric and relative.relative_space == "depth"
    teacher = _teacher(hf_models["da_relative"])
    image = torch.randn(2, 3, 56, 70)
    target = torch.rand(2, 1, 56, 70) * 5 + 1
    valid = torch.rand(2, 1, 56, 70) > 0.3
    with torch.no_grad():
        out = teacher(image, target=target, valid=valid)
        expected = align_relative(out["relative"], target, valid, "disparity", 0.1, 10.0)
    assert out["aligned"] is True
    torch.testing.assert_close(out["depth"], expected)
    torch.testing.assert_close(teacher.align(out, target, valid), expected)


def test_frozen_teacher_in_a_distillation_step(hf_models) -> None:
    teacher = _teacher(hf_models["da_metric"], freeze=True)
    assert teacher.frozen
    fam = nn.Conv2d(teacher.feature_info[1].channels, 8, 1)
    model = nn.ModuleDict({"teacher": teacher, "fam": fam})
    model.train()
    assert not any(m.training for m in teacher.modules())
    before = {k: v.clone() for k, v in teacher.state_dict().items()}
    opt = torch.optim.AdamW(model.parameters(), lr=0.1, weight_decay=0.1)
    loss = fam(teacher(torch.randn(2, 3, 56, 56))["features"][1]).pow(2).mean()
    loss.backward()
    opt.step()
    assert all(p.grad is None and not p.requires_grad for p in teacher.parameters())
    assert all(torch.equal(v, teacher.state_dict()[k]) for k, v in before.items())
    assert fam.weight.grad is not None


def test_flop_counter_runs_at_480x640(hf_models) -> None:
    for name in ("da_relative", "dpt", "glpn"):
        stats = measure_complexity(_teacher(hf_models[name]), 480, 640)
        assert stats["gflops"] > 0 and stats["params_m"] > 0, name


def test_load_errors_name_the_problem(tmp_path, hf_models) -> None:
    with pytest.raises(ValueError, match="teacher.name"):
        _teacher(tmp_path / "missing")
    # A recipe's ImageNet settings for timm/hybrid teachers do not stop a hub teacher (they do not apply to it).
    hub = build_teacher(TeacherConfig(kind="hf", name=str(hf_models["dpt"]), pretrained="file", weights="package:x"))
    assert not hub.is_metric


# ---------------------------------------------------------------------------------------------
# Scale-and-shift alignment golden tests.
# ---------------------------------------------------------------------------------------------


def test_fit_scale_shift_recovers_affine_map_per_image() -> None:
    gt = torch.rand(3, 1, 16, 20) * 8 + 0.5
    a = torch.tensor([2.0, 0.5, -1.5]).view(3, 1, 1, 1)
    b = torch.tensor([0.3, -2.0, 10.0]).view(3, 1, 1, 1)
    pred = a * gt + b  # pred = a * gt + b  =>  gt = (1/a) * pred - b/a
    valid = torch.rand(3, 1, 16, 20) > 0.5
    pred = torch.where(valid, pred, torch.full_like(pred, float("nan")))  # invalid pixels never leak in
    scale, shift = fit_scale_shift(pred, gt, valid)
    torch.testing.assert_close(scale, 1 / a.flatten())
    torch.testing.assert_close(shift, -b.flatten() / a.flatten())


def test_align_relative_in_both_spaces_recovers_ground_truth() -> None:
    gt = torch.rand(2, 1, 12, 12) * 9 + 0.5  # metres in (0.5, 9.5)
    valid = torch.ones_like(gt, dtype=torch.bool)
    disparity_like = 3.0 / gt + 0.2  # Depth Anything / MiDaS style: affine in inverse depth
    torch.testing.assert_close(align_relative(disparity_like, gt, valid, "disparity", 0.1, 10.0), gt)
    depth_like = 0.25 * gt - 1.0
    torch.testing.assert_close(align_relative(depth_like, gt, valid, "depth", 0.1, 10.0), gt)


def test_fit_scale_shift_degenerate_cases() -> None:
    pred = torch.ones(2, 1, 4, 4)
    gt = torch.full((2, 1, 4, 4), 3.0)
    valid = torch.zeros(2, 1, 4, 4, dtype=torch.bool)
    valid[1] = True
    scale, shift = fit_scale_shift(pred, gt, valid)
    assert scale.tolist() == [1.0, 0.0]  # no valid pixels: identity; constant prediction: the mean target
    assert shift.tolist() == [0.0, 3.0]
