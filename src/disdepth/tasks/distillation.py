"""Student distillation (DESIGN.md §1.5): depth loss + attentive KD to acclimated teacher features.

The trainable part is a :class:`DistilledStudent` (the student plus, for classic feature KD only, student-side
1x1 adapters). The teacher side (a frozen :class:`~disdepth.tasks.acclimation.AcclimatedTeacher`, or a raw
frozen teacher for classic KD / response KD) lives on the task outside ``task.model``, so DDP never wraps it,
and runs under ``torch.no_grad()``. Teacher targets can be cached per sample id when they are deterministic
(augmentation off): the teacher then runs once per training image instead of once per step.
"""

from __future__ import annotations

import logging

import torch
from torch import nn

from disdepth.checkpoint import CheckpointKind
from disdepth.models.spec import InputSpec
from disdepth.models.student import DepthStudent
from disdepth.tasks.acclimation import AcclimatedTeacher, teacher_level_for
from disdepth.tasks.kd_losses import (
    attentive_feature_loss,
    magnitude_attention,
    match_size,
    saliency_attention,
    standardize_channels,
    uniform_attention,
)
from disdepth.tasks.losses import resize_like, silog_loss
from disdepth.tasks.pseudo import TeacherTarget, loss_to_teacher, target_of, unlabelled
from disdepth.tasks.supervised import ParamGroup, Task, depth_losses, pretrained_groups

log = logging.getLogger(__name__)


class DistilledStudent(DepthStudent):
    """A student that also returns the features it distils (``kd_features``, one per distilled stride).

    Shares the student's encoder/decoder/head (same parameter names, so the engine's encoder learning-rate
    scale applies). ``adapters`` (classic feature KD only) map student channels to the teacher's; they are
    training-only and dropped by :meth:`to_student`.
    """

    def __init__(self, student: DepthStudent, kd_strides: list[int], adapters: nn.ModuleDict | None = None) -> None:
        super().__init__(student.encoder, student.decoder, student.head)
        self.copy_attributes(student)
        strides = [f.stride for f in student.feature_info]
        missing = [s for s in kd_strides if s not in strides]
        if missing:
            raise ValueError(f"distill.levels {missing} are not student encoder strides {strides}")
        self.kd_strides = list(kd_strides)
        self.kd_index = [strides.index(s) for s in kd_strides]
        self.adapters = adapters if adapters is not None else nn.ModuleDict()

    def forward(self, image: torch.Tensor) -> dict:
        out = super().forward(image)
        feats = [out["encoder_features"][i] for i in self.kd_index]
        if len(self.adapters):
            feats = [self.adapters[str(s)](f) for s, f in zip(self.kd_strides, feats, strict=True)]
        out["kd_features"] = feats
        return out

    def to_student(self) -> DepthStudent:
        """The deployable student (shares modules; no adapters)."""
        return DepthStudent(self.encoder, self.decoder, self.head).copy_attributes(self)


class TeacherTargets(nn.Module):
    """Computes (and optionally caches) per-level KD targets, attention maps and teacher depth for a batch.

    Args:
        teacher: an :class:`AcclimatedTeacher` (feature_target=acclimated) or a raw ``Teacher`` (raw / none).
        kd_strides: student strides distilled.
        student_spec: the student's input spec (a raw teacher re-normalises the student's input).
        feature_target: "acclimated" (FAM outputs), "raw" (teacher features) or "none" (``distill.feature_target``).
        attention: "magnitude", "saliency" or "none"; ``tau`` and ``attention_floor`` shape it (``distill.*``).
        cache: keep targets per sample id (valid only when targets are deterministic per id).
        variance_focus, silog_scale: the SILog of the saliency gradient.
    """

    def __init__(
        self,
        teacher: nn.Module,
        kd_strides: list[int],
        student_spec: InputSpec,
        feature_target: str = "acclimated",
        attention: str = "magnitude",
        tau: float = 1.0,
        attention_floor: float = 0.0,
        cache: bool = False,
        variance_focus: float = 0.85,
        silog_scale: float = 10.0,
    ) -> None:
        super().__init__()
        self.teacher, self.kd_strides, self.student_spec = teacher, list(kd_strides), student_spec
        self.feature_target, self.attention = feature_target, attention
        self.tau, self.attention_floor = tau, attention_floor
        self.use_cache, self.cache = cache, {}
        self.variance_focus, self.silog_scale = variance_focus, silog_scale
        self.acclimated = isinstance(teacher, AcclimatedTeacher)
        if feature_target == "acclimated" and not self.acclimated:
            raise ValueError(
                "distill.feature_target=acclimated needs an acclimated teacher (distill.acclimated_checkpoint)"
            )
        if attention == "saliency" and not self.acclimated:
            raise ValueError("distill.attention=saliency needs the ghost decoder of an acclimated teacher")

    def train(self, mode: bool = True) -> TeacherTargets:
        # The teacher side never trains here: keep FAM/teacher BN statistics fixed when the task calls .train().
        return super().train(False)

    def _attention(self, feats: list[torch.Tensor], grads: list[torch.Tensor] | None) -> list[torch.Tensor]:
        if self.attention == "magnitude":
            return [magnitude_attention(f, self.tau, self.attention_floor) for f in feats]
        if self.attention == "saliency":
            return [saliency_attention(g, self.tau, self.attention_floor) for g in grads or []]
        return [uniform_attention(f) for f in feats]

    def _saliency_grads(self, acclimated: list[torch.Tensor], index: list[int], batch: dict) -> list[torch.Tensor]:
        """d SILog(ghost(acclimated), gt) / d acclimated, at the distilled levels (task-driven saliency)."""
        feats = [a.detach().requires_grad_(True) for a in acclimated]
        with torch.enable_grad():
            depth = self.teacher.ghost(feats, tuple(batch["image"].shape[-2:]))["depth"]
            gt, valid = batch["depth"], batch["valid"]
            loss = silog_loss(resize_like(depth, gt), gt, valid, self.variance_focus, self.silog_scale)
            grads = torch.autograd.grad(loss, [feats[i] for i in index], allow_unused=True)
        return [g if g is not None else torch.zeros_like(feats[i]) for g, i in zip(grads, index, strict=True)]

    @torch.no_grad()
    def compute(self, batch: dict) -> dict[str, list[torch.Tensor] | torch.Tensor]:
        """{features: per-stride targets, attention: (B, 1, h, w) per stride, depth: (B, 1, H, W) metres}."""
        image = batch["image"]
        if self.acclimated:
            out = self.teacher(image, with_ghost=False)  # targets need the acclimated features, not the ghost depth
            strides = [f.stride for f in self.teacher.student_info]
            index = [strides.index(s) for s in self.kd_strides]
            if self.feature_target == "acclimated":
                feats = [out["acclimated"][i] for i in index]
            else:
                t_strides = [f.stride for f in self.teacher.teacher.feature_info]
                feats = [out["teacher_features"][teacher_level_for(s, t_strides)] for s in self.kd_strides]
            grads = self._saliency_grads(out["acclimated"], index, batch) if self.attention == "saliency" else None
            depth, relative = out["teacher_depth"], out.get("teacher_relative")
        else:
            tout = self.teacher(self.teacher.input_spec.renormalize(image, self.student_spec))
            t_strides = [f.stride for f in self.teacher.feature_info]
            feats = [tout["features"][teacher_level_for(s, t_strides)] for s in self.kd_strides]
            target = target_of(tout, self.teacher, image)
            grads, depth, relative = None, target.depth, target.relative
        out = {"features": feats, "attention": self._attention(feats, grads), "depth": depth}
        if relative is not None:  # a relative teacher: depth targets use its raw output (tasks/pseudo.py)
            out["relative"] = relative
        return out

    @property
    def space(self) -> str:
        """The relative space of the teacher's output (relative teachers)."""
        teacher = self.teacher.teacher if self.acclimated else self.teacher
        return teacher.input_spec.relative_space

    def forward(self, batch: dict) -> dict:
        if not self.use_cache:
            return self.compute(batch)
        ids = list(batch["id"])
        missing = [i for i, k in enumerate(ids) if k not in self.cache]
        if missing:
            sub = {k: (v[missing] if torch.is_tensor(v) else v) for k, v in batch.items()}
            fresh = self.compute(sub)
            for j, i in enumerate(missing):
                # fp16 halves the cache; targets are compared in fp32 by the losses.
                self.cache[ids[i]] = {
                    "features": [f[j].half() for f in fresh["features"]],
                    "attention": [a[j] for a in fresh["attention"]],
                    "depth": fresh["depth"][j].half(),
                }
                if "relative" in fresh:  # fp32: a relative output's affine fit needs its precision
                    self.cache[ids[i]]["relative"] = fresh["relative"][j]
        items = [self.cache[k] for k in ids]
        n_levels = len(self.kd_strides)
        return {
            "features": [torch.stack([it["features"][lv] for it in items]).float() for lv in range(n_levels)],
            "attention": [torch.stack([it["attention"][lv] for it in items]) for lv in range(n_levels)],
            "depth": torch.stack([it["depth"] for it in items]).float(),
            **({"relative": torch.stack([it["relative"] for it in items])} if "relative" in items[0] else {}),
        }


class DistillationTask(Task):
    """Depth loss + feature KD (attentive / plain / classic) + optional response KD.

    Losses: ``silog`` (+ ``chamfer`` for a bins head), ``kd_s{stride}`` per distilled level (each already
    multiplied by ``feature_weight / n_levels``), ``response_kd``; ``loss`` = their sum.

    Args:
        model: the student (+ classic-KD adapters) being trained.
        targets: the teacher side; None when no KD term is on.
        pretrained_lr_scale: learning-rate scale of the student encoder's ImageNet weights; 1 = none.
        feature_target, feature_weight, normalize, standardize, response_weight: ``distill.*`` (config.py).
    """

    def __init__(
        self,
        model: DistilledStudent,
        targets: TeacherTargets | None,
        pretrained_lr_scale: float = 1.0,
        feature_target: str = "acclimated",
        feature_weight: float = 1.0,
        normalize: bool = True,
        standardize: bool = True,
        response_weight: float = 0.0,
        variance_focus: float = 0.85,
        silog_scale: float = 10.0,
        chamfer_weight: float = 0.1,
    ) -> None:
        super().__init__()
        self.model, self.targets, self.pretrained_lr_scale = model, targets, pretrained_lr_scale
        self.feature_target, self.feature_weight = feature_target, feature_weight
        self.normalize, self.standardize, self.response_weight = normalize, standardize, response_weight
        self.variance_focus, self.silog_scale, self.chamfer_weight = variance_focus, silog_scale, chamfer_weight

    def parameter_groups(self) -> list[ParamGroup]:
        pretrained = self.model.encoder if self.pretrained_lr_scale != 1.0 else None
        return pretrained_groups(self.model, pretrained, self.pretrained_lr_scale)

    def deployable(self, trained: nn.Module) -> tuple[CheckpointKind, nn.Module | None]:
        return CheckpointKind.STUDENT, trained.to_student()  # the KD adapters are training-only

    def forward(self, batch: dict) -> dict[str, torch.Tensor]:
        out = self.model(batch["image"])
        losses = depth_losses(out, batch, self.variance_focus, self.silog_scale, self.chamfer_weight)
        need_features = self.feature_target != "none" and self.feature_weight > 0
        todo = unlabelled(batch)
        # An image without ground truth learns depth from the teacher: by response KD when it is on (every image),
        # else by this term, so no image is left with the KD terms alone.
        pseudo = self.targets is not None and self.response_weight == 0 and bool(todo.any())
        if need_features or self.response_weight > 0 or pseudo:
            target = self.targets(batch)
            depth_target = TeacherTarget(target["depth"], target.get("relative"), self.targets.space)
            if pseudo:
                losses["pseudo_depth"] = loss_to_teacher(
                    out["depth"][todo], depth_target[todo], self.variance_focus, self.silog_scale
                )
            if need_features:
                weight = self.feature_weight / len(self.targets.kd_strides)
                for stride, s, t, a in zip(
                    self.targets.kd_strides, out["kd_features"], target["features"], target["attention"], strict=True
                ):
                    t = t.to(s.dtype)
                    s = match_size(s, t)
                    if self.standardize:
                        s, t = standardize_channels(s), standardize_channels(t)
                    losses[f"kd_s{stride}"] = weight * attentive_feature_loss(s, t, a, self.normalize)
            if self.response_weight > 0:  # SILog to a metric teacher, SSI to a relative one (never as metres)
                losses["response_kd"] = self.response_weight * loss_to_teacher(
                    out["depth"], depth_target, self.variance_focus, self.silog_scale
                )
        losses["loss"] = sum(losses.values())
        return losses


def build_adapters(student_info: list, teacher_info: list, kd_strides: list[int]) -> nn.ModuleDict:
    """Classic feature KD: a 1x1 conv per distilled stride, student channels -> teacher channels (FitNets-style)."""
    s_ch = {f.stride: f.channels for f in student_info}
    t_strides = [f.stride for f in teacher_info]
    return nn.ModuleDict(
        {str(s): nn.Conv2d(s_ch[s], teacher_info[teacher_level_for(s, t_strides)].channels, 1) for s in kd_strides}
    )
