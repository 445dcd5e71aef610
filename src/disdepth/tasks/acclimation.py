"""Teacher acclimation with a ghost decoder (docs/method.md §4; DisDepth, Zheng et al. 2024, arXiv:2404.16386).

The ghost decoder is a copy of the student's decoder and head (by default with a trained baseline student's
weights) and is frozen. One feature acclimation module (FAM) per student encoder level maps the teacher's
pyramid (strides 4/8/16/32) to the student's channels and grid; the FAMs are trained so that the ghost decoder
reads depth from them. The acclimated features then live in the feature space the student's decoder already
understands ("student-friendly"), which is what the attentive KD loss distils into the student's encoder.

Left alone, the FAMs find *some* input the frozen decoder reads, and nothing makes it resemble what a student
encoder produces: we measured acclimated features with ~0 cosine similarity to, and 20-40x less energy than, the
baseline student's own features, so distilling them dragged the student's encoder far from features it can make.
The anchor term (``acclimate.anchor_weight``) therefore also pulls each FAM output toward the baseline student's
encoder feature on the same image (normalised MSE): the acclimated features stay in the student's feature space
and differ from it where the teacher's knowledge lowers the ghost decoder's depth error.

Student levels the teacher lacks (the stride-2 level of timm CNNs) are fed by a FAM on the teacher's
stride-4 feature, upsampled x2 to the student's stride-2 grid, so the ghost decoder sees only teacher-derived
features.
"""

from __future__ import annotations

import copy
import dataclasses
import math
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from disdepth.checkpoint import CheckpointKind, read_checkpoint
from disdepth.config import Config, config_from_dict, to_dict
from disdepth.models.encoder import FeatureInfo
from disdepth.models.spec import InputSpec
from disdepth.models.student import DepthStudent, build_student
from disdepth.tasks.kd_losses import attentive_feature_loss, match_size
from disdepth.tasks.losses import resize_like, silog_loss
from disdepth.tasks.pseudo import TeacherTarget, loss_to_teacher, unlabelled
from disdepth.tasks.supervised import ParamGroup, Task, unwrap
from disdepth.teachers.base import Teacher
from disdepth.teachers.build import build_teacher


class FAM(nn.Module):
    """Feature acclimation module: teacher feature (B, C_t, h_t, w_t) -> student-shaped (B, C_s, h_s, w_s).

    ``conv``: 1x1 conv -> BN -> ReLU -> 3x3 conv (linear output: timm CNN stage outputs can be negative);
    ``linear``: a single 1x1 conv. The result is bilinearly resampled to the student level's grid.
    """

    def __init__(self, in_channels: int, out_channels: int, kind: str = "conv", hidden: int = 0) -> None:
        super().__init__()
        if kind == "linear":
            self.body: nn.Module = nn.Conv2d(in_channels, out_channels, 1)
        elif kind == "conv":
            hidden = hidden or max(out_channels, 32)
            self.body = nn.Sequential(
                nn.Conv2d(in_channels, hidden, 1, bias=False),
                nn.BatchNorm2d(hidden),
                nn.ReLU(inplace=True),
                nn.Conv2d(hidden, out_channels, 3, padding=1),
            )
        else:
            raise ValueError(f"acclimate.fam: expected 'conv' or 'linear', got {kind!r}")

    def forward(self, x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
        # Convolve at the teacher's grid (cheaper), then resample: only the stride-2 level is upsampled.
        y = self.body(x)
        if tuple(y.shape[-2:]) != tuple(size):
            y = F.interpolate(y, size=size, mode="bilinear", align_corners=False)
        return y


class GhostDecoder(nn.Module):
    """A copy of the student's decoder + head that reads a feature pyramid; frozen unless told otherwise."""

    def __init__(self, decoder: nn.Module, head: nn.Module) -> None:
        super().__init__()
        self.decoder, self.head = decoder, head
        self._frozen = False

    @classmethod
    def from_student(cls, student: nn.Module) -> GhostDecoder:
        """Deep copy of ``student.decoder`` and ``student.head`` (same architecture and weights)."""
        return cls(copy.deepcopy(student.decoder), copy.deepcopy(student.head))

    def freeze(self) -> GhostDecoder:
        self._frozen = True
        for p in self.parameters():
            p.requires_grad_(False)
        super().train(False)
        return self

    def train(self, mode: bool = True) -> GhostDecoder:
        return super().train(mode and not self._frozen)  # frozen BN statistics stay frozen

    def forward(self, features: list[torch.Tensor], size: tuple[int, int]) -> dict:
        """features: student-shaped pyramid, shallow to deep -> {depth: (B, 1, *size) metres, decoder_features}."""
        dec = self.decoder(features)
        out = dict(self.head(dec[-1]))
        out["depth"] = F.interpolate(out["depth"], size=size, mode="bilinear", align_corners=False)
        out["decoder_features"] = dec
        return out


def teacher_level_for(stride: int, teacher_strides: list[int]) -> int:
    """Index of the teacher level feeding a student level: same stride, else the nearest (stride 2 -> 4)."""
    return min(range(len(teacher_strides)), key=lambda i: (abs(math.log2(teacher_strides[i] / stride)), i))


def build_fams(
    teacher_info: list[FeatureInfo], student_info: list[FeatureInfo], kind: str = "conv", hidden: int = 0
) -> nn.ModuleList:
    """One FAM per student level (all levels: the ghost decoder needs the whole pyramid); ``acclimate.fam*``."""
    strides = [f.stride for f in teacher_info]
    return nn.ModuleList(
        FAM(teacher_info[teacher_level_for(s.stride, strides)].channels, s.channels, kind, hidden) for s in student_info
    )


class AcclimatedTeacher(nn.Module):
    """Teacher -> FAMs -> ghost decoder.

    ``forward(image)`` with image (B, 3, H, W) normalised for the *student* returns:
        depth: (B, 1, H, W) metres, the ghost decoder's prediction from the acclimated features (not with
            ``with_ghost=False``);
        acclimated: list of (B, C_s, ceil(H/s), ceil(W/s)) per student level, shallow to deep;
        teacher_depth: (B, 1, H, W) metres, the teacher's own prediction;
        teacher_features: the teacher's raw pyramid (strides 4..32).

    Parts that are not trained are kept as unregistered references (``register_*=False``), so that when this
    module is the trainable part of a task (acclimation), DDP wraps only what trains.
    """

    def __init__(
        self,
        teacher: Teacher,
        fams: nn.ModuleList,
        ghost: GhostDecoder,
        student_info: list[FeatureInfo],
        student_spec: InputSpec,
        register_teacher: bool = True,
        register_ghost: bool = True,
    ) -> None:
        super().__init__()
        self.fams = fams
        self.student_info = list(student_info)
        self.input_spec = student_spec  # it reads student-normalised images and answers in the student's range
        self.train_teacher = register_teacher and any(p.requires_grad for p in teacher.parameters())
        if register_teacher:
            self.teacher = teacher
        else:
            self.__dict__["teacher"] = teacher
        if register_ghost:
            self.ghost = ghost
        else:
            self.__dict__["ghost"] = ghost

    def acclimate(self, teacher_features: list[torch.Tensor], size: tuple[int, int]) -> list[torch.Tensor]:
        """Teacher pyramid -> student-shaped pyramid for an input of ``size`` (H, W)."""
        strides = [f.stride for f in self.teacher.feature_info]
        out = []
        for fam, info in zip(self.fams, self.student_info, strict=True):
            grid = (math.ceil(size[0] / info.stride), math.ceil(size[1] / info.stride))
            out.append(fam(teacher_features[teacher_level_for(info.stride, strides)], grid))
        return out

    def forward(self, image: torch.Tensor, with_ghost: bool = True) -> dict:
        """``with_ghost=False`` skips the ghost decoder (no ``depth`` key): distillation targets do not need it."""
        size = tuple(image.shape[-2:])
        timage = self.teacher.input_spec.renormalize(image, self.input_spec)
        with torch.set_grad_enabled(torch.is_grad_enabled() and self.train_teacher):
            tout = self.teacher(timage)
        acclimated = self.acclimate(tout["features"], size)
        out = {
            "acclimated": acclimated,
            "teacher_depth": resize_like(tout["depth"], image),
            "teacher_features": tout["features"],
        }
        if "relative" in tout:  # a relative teacher: its raw output, affine in its relative space
            out["teacher_relative"] = resize_like(tout["relative"], image)
        if with_ghost:
            out["depth"] = self.ghost(acclimated, size)["depth"]
        return out


class FrozenEncoder(nn.Module):
    """A frozen copy of the student encoder whose decoder the ghost copies: the acclimation anchor.

    ``forward(image)`` (B, 3, H, W) student-normalised -> list of (B, C_s, ceil(H/s), ceil(W/s)), shallow to deep.
    Stays in eval mode through an owner's ``.train()`` (BN statistics fixed).
    """

    def __init__(self, encoder: nn.Module) -> None:
        super().__init__()
        self.encoder = copy.deepcopy(encoder).requires_grad_(False).eval()

    def train(self, mode: bool = True) -> FrozenEncoder:
        return super().train(False)

    def forward(self, image: torch.Tensor) -> list[torch.Tensor]:
        return self.encoder(image)


class AcclimationTask(Task):
    """Trains the FAMs (and optionally the teacher and/or the ghost decoder).

    Loss = SILog(ghost depth, gt)
        [+ ``anchor_weight`` * mean over levels of ||FAM(t) - anchor(x)||^2 / mean(anchor(x)^2), the anchor being
           the baseline student's frozen encoder: keeps acclimated features student-friendly]
        [+ ``teacher_loss_weight`` * SILog(teacher depth, gt) when the teacher trains, so that its own accuracy is
           preserved]. ``predict`` returns the ghost decoder's depth.
    """

    def __init__(
        self,
        model: AcclimatedTeacher,
        variance_focus: float = 0.85,
        silog_scale: float = 10.0,
        teacher_loss_weight: float = 1.0,
        anchor: FrozenEncoder | None = None,
        anchor_weight: float = 0.0,
        teacher_lr_scale: float = 0.1,
    ) -> None:
        super().__init__()
        self.model, self.teacher_lr_scale = model, teacher_lr_scale
        self.anchor = anchor if anchor_weight > 0 else None
        self.anchor_weight = anchor_weight
        # Registered on the task (not on ``model``) so ``task.to(device)`` moves them; DDP never sees them.
        frozen = [model.teacher, model.ghost] + ([self.anchor] if self.anchor is not None else [])
        self.frozen_parts = nn.ModuleList(frozen)
        self.variance_focus, self.silog_scale, self.teacher_loss_weight = (
            variance_focus,
            silog_scale,
            teacher_loss_weight,
        )

    def parameter_groups(self) -> list[ParamGroup]:
        """FAMs (and a trained ghost decoder) at ``train.lr``; a fine-tuned teacher at ``lr * teacher_lr_scale``."""
        teacher = {id(p) for p in self.model.teacher.parameters()}
        trainable = [p for p in self.model.parameters() if p.requires_grad]
        groups = [
            ParamGroup("acclimation", [p for p in trainable if id(p) not in teacher]),
            ParamGroup("teacher", [p for p in trainable if id(p) in teacher], self.teacher_lr_scale),
        ]
        return [g for g in groups if g.params]

    def deployable(self, trained: nn.Module) -> tuple[CheckpointKind, nn.Module | None]:
        return CheckpointKind.ACCLIMATION, None  # the artifact is acclimated.pt, written by the stage

    def forward(self, batch: dict) -> dict[str, torch.Tensor]:
        out = self.model(batch["image"])
        gt, valid = batch["depth"], batch["valid"]
        losses = {
            "ghost_silog": silog_loss(resize_like(out["depth"], gt), gt, valid, self.variance_focus, self.silog_scale)
        }
        todo = unlabelled(batch)
        if todo.any():  # no ground truth: the ghost decoder reads the teacher's own depth from the FAM features
            target = teacher_output(out, unwrap(self.model).teacher)[todo]
            losses["ghost_pseudo"] = loss_to_teacher(out["depth"][todo], target, self.variance_focus, self.silog_scale)
        if self.anchor is not None:
            with torch.no_grad():
                anchors = self.anchor(batch["image"])
            levels = [
                attentive_feature_loss(a, match_size(t, a)) for a, t in zip(out["acclimated"], anchors, strict=True)
            ]
            losses["anchor"] = self.anchor_weight * sum(levels) / len(levels)
        raw = unwrap(self.model)
        if raw.train_teacher and self.teacher_loss_weight > 0:
            t_loss = silog_loss(resize_like(out["teacher_depth"], gt), gt, valid, self.variance_focus, self.silog_scale)
            losses["teacher_silog"] = self.teacher_loss_weight * t_loss
        losses["loss"] = sum(losses.values())
        return losses


def teacher_output(out: dict, teacher: Teacher) -> TeacherTarget:
    """The teacher's depth inside an :class:`AcclimatedTeacher` output, as a target (``tasks/pseudo.py``)."""
    return TeacherTarget(out["teacher_depth"], out.get("teacher_relative"), teacher.input_spec.relative_space)


def gap_share(base: float | None, model: float | None, teacher: float | None) -> float | None:
    """Share of the teacher's lead over a student that ``model`` takes: ``(base - model) / (base - teacher)``.

    All three are errors of the same kind on the same frames (abs_rel, lower is better). With ``model`` the ghost
    decoder on acclimated features this is *retained* (how much of the lead acclimation keeps for the student's
    decoder); with ``model`` the distilled student, *closed* (how much of it distillation moved the student). 1 = as
    good as the teacher, 0 = no better than ``base``, negative = worse. None when an input is missing or not finite,
    or when the teacher has no lead (``base - teacher <= 0``: the share has no meaning).
    """
    values = (base, model, teacher)
    if any(v is None or not math.isfinite(v) for v in values):
        return None
    lead = base - teacher  # type: ignore[operator]
    return (base - model) / lead if lead > 0 else None  # type: ignore[operator]


# Below this *retained* share the acclimated features hold little that the student's own decoder can read, so
# feature KD has little to transfer: measured on the real 7-Scenes frames (retained about 0: no feature-KD setting
# helped) against the synthetic lab (0.79: feature KD took a third of the teacher's lead). Two settings, so a
# warning, not a rule.
LOW_RETAINED = 0.2


def low_retained_warning(gap: dict | None) -> str | None:
    """One line for the log and the report when an acclimation's ``retained`` is below :data:`LOW_RETAINED`
    (``gap``: a :func:`gap_report`); None when it is not, or is unknown (no baseline score, teacher not ahead)."""
    retained = (gap or {}).get("retained")
    if retained is None or retained >= LOW_RETAINED:
        return None
    return (
        f"retained {retained:.2f}: the student's decoder reads little of the teacher's lead from the acclimated "
        "features, so feature KD has little to transfer and may cost accuracy; a teacher that knows more about these "
        "frames, response KD (distill.response_weight) on unlabelled images, or distill.feature_weight=1 are the "
        "safer choices (docs/distillation.md)"
    )


def gap_report(metrics: dict, student: dict | None = None, metric: str = "abs_rel") -> dict:
    """The teacher-student gap diagnostics of an acclimation's ``metrics`` (``acclimated.pt`` / its result.json).

    Args:
        metrics: {baseline, teacher_before, teacher_after, ghost}: summaries on the validation frames (any missing).
        student: a distilled student's summary on the same frames, or None.

    Returns:
        {metric, baseline, teacher, teacher_after, ghost, retained[, student, closed]}: the values of ``metric`` (None
        when missing); T is the teacher before acclimation, the one the user has (``teacher_after`` differs only
        when ``acclimate.train_teacher``).
    """

    def value(part: dict | None) -> float | None:
        return None if not part or metric not in part else float(part[metric])

    b, t, g = value(metrics.get("baseline")), value(metrics.get("teacher_before")), value(metrics.get("ghost"))
    out = {"metric": metric, "baseline": b, "teacher": t, "teacher_after": value(metrics.get("teacher_after"))}
    out.update(ghost=g, retained=gap_share(b, g, t))
    if student is not None:
        s = value(student)
        out.update(student=s, closed=gap_share(b, s, t))
    return out


class TeacherDepth(nn.Module):
    """View of a teacher that predicts from images normalised for ``spec`` (the student's), for evaluation.

    Its ``input_spec`` is ``spec`` with the teacher's depth range and metric flag.
    """

    def __init__(self, teacher: Teacher, spec: InputSpec) -> None:
        super().__init__()
        self.teacher = teacher
        t = teacher.input_spec
        self.input_spec = dataclasses.replace(t, mean=spec.mean, std=spec.std)

    def forward(self, image: torch.Tensor) -> dict:
        out = self.teacher(self.teacher.input_spec.renormalize(image, self.input_spec))
        return {"depth": resize_like(out["depth"], image)}


# --------------------------------------------------------------------------------------------
# Building and the saved artifact.
# --------------------------------------------------------------------------------------------


def build_acclimated(cfg: Config, teacher: Teacher, student: DepthStudent, train: bool = True) -> AcclimatedTeacher:
    """Ghost decoder from ``student`` (already holding baseline weights if any) + fresh FAMs around ``teacher``.

    With ``train=True`` the teacher is frozen unless ``acclimate.train_teacher`` and the ghost decoder unless
    ``acclimate.train_ghost``; untrained parts are not registered (see :class:`AcclimatedTeacher`).
    """
    ac = cfg.acclimate
    ghost = GhostDecoder.from_student(student)
    fams = build_fams(teacher.feature_info, student.feature_info, ac.fam, ac.fam_hidden)
    spec = student.input_spec
    if not train:
        teacher.freeze()
        ghost.freeze()
        fams.requires_grad_(False)
        return AcclimatedTeacher(teacher, fams, ghost, student.feature_info, spec).eval()
    if ac.train_teacher:
        teacher.unfreeze()
    else:
        teacher.freeze()
    if not ac.train_ghost:
        ghost.freeze()
    return AcclimatedTeacher(
        teacher,
        fams,
        ghost,
        student.feature_info,
        spec,
        register_teacher=ac.train_teacher,
        register_ghost=ac.train_ghost,
    )


def acclimated_state(model: AcclimatedTeacher, cfg: Config, metrics: dict | None = None) -> dict:
    """The ``acclimated.pt`` artifact: teacher, FAM and ghost weights, the config and the accuracy report."""
    return {
        "kind": CheckpointKind.ACCLIMATED_TEACHER.value,
        "model": {},
        "extra": {
            "teacher": model.teacher.state_dict(),
            "fams": model.fams.state_dict(),
            "ghost": model.ghost.state_dict(),
            "metrics": metrics or {},
        },
        "input_spec": model.input_spec.to_dict(),
        "config": to_dict(cfg),
    }


def load_acclimated(path: str | Path, map_location: str | torch.device = "cpu") -> tuple[AcclimatedTeacher, Config]:
    """Rebuild a frozen :class:`AcclimatedTeacher` (eval mode) from ``acclimated.pt``."""
    state = read_checkpoint(path, map_location)
    if state["kind"] != CheckpointKind.ACCLIMATED_TEACHER:
        raise ValueError(f"{path}: not an acclimated teacher (kind {state['kind'].value}); run `disdepth acclimate`")
    cfg = config_from_dict(state["config"])
    teacher = build_teacher(cfg.teacher, load_weights=False)
    model = build_acclimated(cfg, teacher, build_student(cfg.model, load_weights=False), train=False)
    parts = state["extra"]
    model.teacher.load_state_dict(parts["teacher"])
    model.fams.load_state_dict(parts["fams"])
    model.ghost.load_state_dict(parts["ghost"])
    return model.eval(), cfg
