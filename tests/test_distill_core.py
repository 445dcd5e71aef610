"""Distillation: ghost decoder copy, frozen parts stay fixed, gradients reach every trainable parameter,
KD losses and attention maps (golden values), teacher-target cache, acclimated artifact round trip."""

from __future__ import annotations

import math

import pytest
import torch
from tiny_runs import TINY_PAIR

from disdepth.config import load_config
from disdepth.models.student import build_student
from disdepth.tasks.acclimation import (
    AcclimationTask,
    FrozenEncoder,
    build_acclimated,
    load_acclimated,
    teacher_level_for,
)
from disdepth.tasks.distillation import DistillationTask, DistilledStudent, TeacherTargets, build_adapters
from disdepth.tasks.kd_losses import (
    EPS,
    attentive_feature_loss,
    magnitude_attention,
    saliency_attention,
    softmax_positions,
    standardize_channels,
    uniform_attention,
)
from disdepth.tasks.pseudo import TeacherTarget, loss_to_teacher
from disdepth.teachers.build import build_teacher

TINY = TINY_PAIR


def targets_for(acclimated, student, dc, cache: bool = False) -> TeacherTargets:
    """The teacher side of a distillation task from the ``distill`` section, as ``build_distillation`` makes it."""
    return TeacherTargets(
        acclimated, dc.levels, student.input_spec, dc.feature_target, dc.attention, dc.tau, dc.attention_floor, cache
    )


def task_for(model, targets, dc) -> DistillationTask:
    return DistillationTask(
        model, targets, 1.0, dc.feature_target, dc.feature_weight, dc.normalize, dc.standardize, dc.response_weight,
        distance=dc.distance, feature_schedule=dc.feature_schedule,
    )  # fmt: skip


def tiny_cfg(*extra: str):
    return load_config(overrides=[*TINY, *extra])


def batch(n: int = 2, size: int = 32) -> dict:
    g = torch.Generator().manual_seed(0)
    depth = 1.0 + 4.0 * torch.rand(n, 1, size, size, generator=g)
    return {
        "image": torch.randn(n, 3, size, size, generator=g),
        "depth": depth,
        "valid": depth > 0,
        "id": [f"s{i}" for i in range(n)],
    }


def snapshot(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


def same(a: dict, b: dict) -> bool:
    return all(torch.equal(a[k], b[k]) for k in a)


def make_acclimated(cfg, train: bool = True):
    torch.manual_seed(0)
    student = build_student(cfg.model)
    return build_acclimated(cfg, build_teacher(cfg.teacher), student, train=train), student


def step(task, opt_params) -> dict:
    opt = torch.optim.SGD(opt_params, lr=0.1)
    task.train()
    losses = task(batch())
    opt.zero_grad()
    losses["loss"].backward()
    return losses, opt


def test_ghost_decoder_copies_student_decoder_architecture_and_weights():
    model, student = make_acclimated(tiny_cfg())
    ghost = model.ghost
    assert str(ghost.decoder) == str(student.decoder) and str(ghost.head) == str(student.head)
    for name, value in student.decoder.state_dict().items():
        assert torch.equal(ghost.decoder.state_dict()[name], value)
    for name, value in student.head.state_dict().items():
        assert torch.equal(ghost.head.state_dict()[name], value)
    assert ghost.decoder is not student.decoder  # a copy, not shared
    # One FAM per student level; stride 2 is fed from the teacher's stride-4 level.
    assert len(model.fams) == len(student.feature_info)
    assert teacher_level_for(2, [4, 8, 16, 32]) == 0 and teacher_level_for(16, [4, 8, 16, 32]) == 2


def test_acclimation_step_trains_fams_only_and_every_fam_parameter_gets_a_gradient():
    cfg = tiny_cfg()
    model, _ = make_acclimated(cfg)
    task = AcclimationTask(model)
    teacher0, ghost0, fams0 = snapshot(model.teacher), snapshot(model.ghost), snapshot(model.fams)
    trainable = [p for p in task.model.parameters() if p.requires_grad]
    assert {id(p) for p in trainable} == {id(p) for p in model.fams.parameters()}  # DDP would wrap only FAMs
    losses, opt = step(task, trainable)
    assert set(losses) == {"ghost_silog", "loss"}
    for name, p in model.fams.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name
    opt.step()
    assert same(teacher0, snapshot(model.teacher)) and same(ghost0, snapshot(model.ghost))  # incl. BN buffers
    assert not same(fams0, snapshot(model.fams))


def test_acclimation_anchor_pulls_fams_toward_the_frozen_baseline_encoder():
    cfg = tiny_cfg()
    model, student = make_acclimated(cfg)
    anchor = FrozenEncoder(student.encoder)
    task = AcclimationTask(model, anchor=anchor, anchor_weight=2.0)
    anchor0 = snapshot(anchor)
    trainable = [p for p in task.model.parameters() if p.requires_grad]
    assert {id(p) for p in trainable} == {id(p) for p in model.fams.parameters()}  # the anchor is not trained
    losses, opt = step(task, trainable)
    assert set(losses) == {"ghost_silog", "anchor", "loss"}
    assert not anchor.training  # task.train() leaves the anchor's BN statistics alone
    # Golden: 2.0 * mean over levels of mean((a - f)^2) / (mean(f^2) + EPS), f = the student encoder's features.
    with torch.no_grad():
        acclimated = model(batch()["image"])["acclimated"]
        own = student.encoder.eval()(batch()["image"])
    levels = [((a - f).pow(2).mean() / (f.pow(2).mean() + EPS)).item() for a, f in zip(acclimated, own, strict=True)]
    assert losses["anchor"].item() == pytest.approx(2.0 * sum(levels) / len(levels), rel=1e-4)
    opt.step()
    assert same(anchor0, snapshot(anchor))
    # Without a weight there is no anchor term (the plain ghost-decoder objective).
    assert "anchor" not in AcclimationTask(model, anchor=anchor, anchor_weight=0.0)(batch())


def test_acclimation_with_teacher_finetuning_keeps_teacher_loss_and_grads_reach_teacher():
    cfg = tiny_cfg("acclimate.train_teacher=true")
    model, _ = make_acclimated(cfg)
    task = AcclimationTask(model, teacher_loss_weight=1.0)
    names = {n for n, p in task.model.named_parameters() if p.requires_grad}
    assert any(n.startswith("teacher.") for n in names)
    groups = {g.name: g for g in task.parameter_groups()}  # the teacher learns at its own, smaller rate
    assert groups["teacher"].lr_scale == task.teacher_lr_scale < 1 and groups["acclimation"].lr_scale == 1
    teacher_ids = {id(p) for p in model.teacher.parameters()}
    assert all(id(p) in teacher_ids for p in groups["teacher"].params)
    assert not any(id(p) in teacher_ids for p in groups["acclimation"].params)
    losses, _ = step(task, [p for p in task.model.parameters() if p.requires_grad])
    assert "teacher_silog" in losses
    for name, p in task.model.named_parameters():
        if p.requires_grad:
            assert p.grad is not None, name


@pytest.mark.parametrize(
    "extra",
    [
        ["distill.attention=magnitude"],
        ["distill.attention=saliency"],
        ["distill.attention=none", "distill.response_weight=0.5"],
        ["distill.attention=magnitude", "distill.standardize=false"],
        ["distill.attention=saliency", "distill.distance=cosine"],
        ["distill.feature_target=raw", "distill.attention=none"],
    ],
)
def test_distillation_step_frozen_teacher_side_and_student_gradients(extra):
    cfg = tiny_cfg(*extra)
    acclimated, student = make_acclimated(cfg, train=False)
    dc = cfg.distill
    adapters = None
    if dc.feature_target == "raw":
        adapters = build_adapters(student.feature_info, acclimated.teacher.feature_info, dc.levels)
    model = DistilledStudent(student, dc.levels, adapters)
    targets = targets_for(acclimated, student, dc)
    task = task_for(model, targets, dc)
    frozen0 = snapshot(acclimated)
    student0 = snapshot(model)
    losses, opt = step(task, [p for p in task.model.parameters() if p.requires_grad])
    assert acclimated.training is False  # task.train() leaves the teacher side in eval mode
    assert {f"kd_s{s}" for s in dc.levels} <= set(losses)
    assert ("response_kd" in losses) == (dc.response_weight > 0)
    for name, p in task.model.named_parameters():
        assert p.grad is not None, name  # every trainable parameter (adapters included) gets a gradient
    assert all(not p.requires_grad for p in acclimated.parameters())
    opt.step()
    assert same(frozen0, snapshot(acclimated))
    assert not same(student0, snapshot(model))


def test_distillation_with_the_l1_depth_loss_uses_it_in_place_of_silog():
    cfg = tiny_cfg("train.depth_loss=l1")
    acclimated, student = make_acclimated(cfg, train=False)
    dc = cfg.distill
    model = DistilledStudent(student, dc.levels)
    task = DistillationTask(model, targets_for(acclimated, student, dc), depth_loss=cfg.train.depth_loss)
    losses = task(batch())
    assert "l1" in losses and "silog" not in losses
    with pytest.raises(ValueError, match="train.depth_loss"):
        DistillationTask(model, None, depth_loss="huber")


def test_teacher_target_cache_matches_fresh_targets_and_skips_the_teacher():
    cfg = tiny_cfg()
    acclimated, student = make_acclimated(cfg, train=False)
    dc = cfg.distill
    fresh = targets_for(acclimated, student, dc, cache=False)
    cached = targets_for(acclimated, student, dc, cache=True)
    b = batch()
    want, first = fresh(b), cached(b)
    calls = []
    hook = acclimated.register_forward_hook(lambda *a: calls.append(1))
    second = cached(b)
    hook.remove()
    assert not calls and set(cached.cache) == {"s0", "s1"}
    for out in (first, second):
        for w, g in zip(want["features"], out["features"], strict=True):
            torch.testing.assert_close(g, w, atol=2e-3, rtol=2e-3)  # fp16 storage
        for w, g in zip(want["attention"], out["attention"], strict=True):
            torch.testing.assert_close(g, w)


def test_acclimated_artifact_round_trip(tmp_path):
    from disdepth.checkpoint import save_checkpoint
    from disdepth.tasks.acclimation import acclimated_state

    cfg = tiny_cfg()
    model, _ = make_acclimated(cfg)
    with torch.no_grad():
        for p in model.fams.parameters():
            p.add_(0.01)
    save_checkpoint(acclimated_state(model, cfg), tmp_path / "acclimated.pt")
    loaded, _ = load_acclimated(tmp_path / "acclimated.pt")
    model.eval()
    image = batch()["image"]
    with torch.no_grad():
        torch.testing.assert_close(loaded(image)["depth"], model(image)["depth"])
    assert all(not p.requires_grad for p in loaded.parameters())


# ---------------------------------------------------------------------------- losses and attention


def test_kd_losses_are_zero_for_equal_inputs():
    t = torch.randn(2, 5, 4, 6)
    for attention in (None, uniform_attention(t), magnitude_attention(t, 0.5)):
        assert attentive_feature_loss(t.clone(), t, attention).item() == 0.0
    depth = 1.0 + torch.rand(2, 1, 8, 8)
    assert loss_to_teacher(depth.clone(), TeacherTarget(depth)).item() == pytest.approx(0.0, abs=1e-4)


def test_attention_is_normalised_per_image_and_uniform_gives_plain_mse():
    t = torch.randn(3, 4, 5, 7)
    for a in (
        uniform_attention(t),
        magnitude_attention(t, 0.3),
        saliency_attention(t, 2.0),
        softmax_positions(t[:, :1], 1.0, 0.25),
    ):
        assert a.shape == (3, 1, 5, 7) and (a >= 0).all()
        torch.testing.assert_close(a.flatten(1).sum(1), torch.ones(3))
    s = torch.randn_like(t)
    plain = attentive_feature_loss(s, t, uniform_attention(t), normalize=False)
    assert plain.item() == pytest.approx(torch.mean((s - t) ** 2).item(), rel=1e-5)
    assert attentive_feature_loss(s, t, None, normalize=False).item() == pytest.approx(plain.item(), rel=1e-5)


def test_magnitude_attention_golden_value():
    # Energies (mean_c t^2) [1, 9] -> z-scores [-1, 1] -> softmax([-1, 1] / tau).
    t = torch.tensor([1.0, 3.0]).view(1, 1, 1, 2)
    a = magnitude_attention(t, tau=0.5).flatten()
    e = math.exp(2.0)
    assert a.tolist() == pytest.approx([1 / (1 + e * e), e * e / (1 + e * e)], rel=1e-5)
    floor = magnitude_attention(t, tau=0.5, floor=0.5).flatten()
    assert floor.tolist() == pytest.approx([0.5 * a[0].item() + 0.25, 0.5 * a[1].item() + 0.25], rel=1e-5)


def test_standardized_feature_loss_ignores_per_channel_scale_and_offset():
    g = torch.Generator().manual_seed(1)
    t = torch.randn(2, 3, 4, 5, generator=g)
    scale = torch.tensor([0.1, 3.0, 20.0]).view(1, 3, 1, 1)
    s = scale * t + 7.0  # same pattern per channel, very different magnitude: standardised distance 0
    assert attentive_feature_loss(standardize_channels(s), standardize_channels(t), normalize=False).item() < 1e-8
    # Golden: an anti-correlated channel set gives 2 * (1 - r) = 4 per channel.
    assert attentive_feature_loss(standardize_channels(-t), standardize_channels(t), normalize=False).item() == (
        pytest.approx(4.0, rel=1e-5)
    )
    z = standardize_channels(s).flatten(2)
    assert torch.allclose(z.mean(2), torch.zeros(2, 3), atol=1e-5)
    assert torch.allclose(z.pow(2).mean(2), torch.ones(2, 3), atol=1e-4)


def test_attentive_feature_loss_golden_value():
    teacher = torch.tensor([[1.0, 3.0]]).view(1, 1, 1, 2)
    student = torch.tensor([[0.0, 1.0]]).view(1, 1, 1, 2)  # squared errors [1, 4]
    w = torch.tensor([0.25, 0.75]).view(1, 1, 1, 2)
    assert attentive_feature_loss(student, teacher, w, normalize=False).item() == pytest.approx(0.25 + 3.0)
    # normalised by mean(t^2) = 5
    assert attentive_feature_loss(student, teacher, w, normalize=True).item() == pytest.approx(3.25 / 5, rel=1e-5)


def test_cosine_distance_compares_directions_not_lengths():
    g = torch.Generator().manual_seed(2)
    t = torch.randn(2, 4, 3, 5, generator=g)
    length = torch.rand(2, 1, 3, 5, generator=g) * 10 + 0.1  # a positive length per position
    assert attentive_feature_loss(length * t, t, distance="cosine").item() == pytest.approx(0.0, abs=1e-6)
    # Golden values: the opposite direction is 2 everywhere; an orthogonal one 1; normalize has no effect.
    assert attentive_feature_loss(-t, t, distance="cosine").item() == pytest.approx(2.0, rel=1e-5)
    a, b = torch.tensor([1.0, 0.0]).view(1, 2, 1, 1), torch.tensor([0.0, 3.0]).view(1, 2, 1, 1)
    assert attentive_feature_loss(a, b, distance="cosine", normalize=True).item() == pytest.approx(1.0)
    w = torch.tensor([0.25, 0.75]).view(1, 1, 1, 2)  # position 0 opposite (2), position 1 equal (0)
    s, t2 = torch.tensor([[-1.0, 2.0]]).view(1, 1, 1, 2), torch.tensor([[1.0, 5.0]]).view(1, 1, 1, 2)
    assert attentive_feature_loss(s, t2, w, distance="cosine").item() == pytest.approx(0.25 * 2.0)
    with pytest.raises(ValueError, match="distill.distance"):
        attentive_feature_loss(s, t2, distance="l1")


def test_decay_schedule_scales_the_feature_kd_term_with_the_share_of_steps_done():
    cfg = tiny_cfg("distill.attention=none", "distill.standardize=false", "distill.feature_schedule=decay")
    acclimated, student = make_acclimated(cfg, train=False)
    torch.manual_seed(1)  # a student other than the one the FAMs start from, so the KD terms are not 0
    other = build_student(cfg.model)
    dc = cfg.distill
    task = task_for(DistilledStudent(other, dc.levels), targets_for(acclimated, student, dc), dc).eval()
    data = batch()
    with torch.no_grad():
        start = task(data)
        task.set_progress(0.75)
        late = task(data)
    for s in dc.levels:
        assert start[f"kd_s{s}"].item() > 0
        assert late[f"kd_s{s}"].item() == pytest.approx(0.25 * start[f"kd_s{s}"].item(), rel=1e-5)
    assert late["silog"].item() == pytest.approx(start["silog"].item())  # the depth loss keeps its weight
    with pytest.raises(ValueError, match="distill.feature_schedule"):
        DistillationTask(task.model, task.targets, feature_schedule="cosine")


def test_response_kd_golden_value():
    teacher = torch.tensor([1.0, 2.0, 4.0]).view(1, 1, 1, 3)
    student = teacher * math.e  # log ratio 1 everywhere: 10 * sqrt(1 - 0.85)
    assert loss_to_teacher(student, TeacherTarget(teacher)).item() == pytest.approx(10 * math.sqrt(0.15), rel=1e-5)


def test_option_errors_name_the_key():
    t = torch.randn(1, 2, 3, 3)
    with pytest.raises(ValueError, match="distill.tau"):
        magnitude_attention(t, tau=0.0)
    cfg = tiny_cfg()
    teacher = build_teacher(cfg.teacher).freeze()
    with pytest.raises(ValueError, match="acclimated"):
        TeacherTargets(teacher, [4], teacher.input_spec, "acclimated")
    with pytest.raises(ValueError, match="distill.levels"):
        DistilledStudent(build_student(cfg.model), [64])


def test_unlabelled_images_carry_kd_only_and_get_uniform_saliency():
    """A sample without ground truth (distill.unlabelled_list) adds no depth loss; KD still trains the student,
    and the task-driven saliency (which needs ground truth) is uniform on it."""
    cfg = tiny_cfg("distill.attention=saliency")
    acclimated, student = make_acclimated(cfg, train=False)
    dc = cfg.distill
    targets = targets_for(acclimated, student, dc)
    task = task_for(DistilledStudent(student, dc.levels), targets, dc)
    b = batch(size=64)  # 2x2 positions at stride 32: room for a non-flat map
    b["valid"][1] = False  # image 1 is unlabelled
    b["depth"][1] = 0.0
    attention = targets(b)["attention"]
    for a in attention:
        flat = a.flatten(1)
        assert torch.allclose(flat[1], torch.full_like(flat[1], 1.0 / flat.shape[1]))
        assert flat[0].std() > 0  # the labelled image's saliency is not flat
    b["valid"][:] = False
    b["depth"][:] = 0.0
    task.train()
    losses = task(b)
    assert losses["silog"].item() == 0.0 and all(losses[f"kd_s{s}"] > 0 for s in dc.levels)
    losses["loss"].backward()
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in task.model.encoder.parameters())
