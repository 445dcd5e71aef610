"""The teacher's depth as a target: for images without ground truth (label-free training) and response KD.

A metric teacher's depth is compared with SILog on every pixel; a relative teacher's output (affine in disparity or
depth) with the scale-and-shift-invariant loss in that space — never read as metres.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from disdepth.models.spec import InputSpec
from disdepth.tasks.losses import resize_like, silog_loss, ssi_loss


@dataclass
class TeacherTarget:
    """A teacher's answer for a batch, at the student's input size.

    Attributes:
        depth: (B, 1, H, W) metres for a metric teacher; the unaligned depth-like map for a relative one.
        relative: (B, 1, H, W) raw relative output (affine in ``space``), or None for a metric teacher.
        space: "disparity" or "depth" (relative teachers).
    """

    depth: torch.Tensor
    relative: torch.Tensor | None = None
    space: str = "disparity"

    @property
    def metric(self) -> bool:
        return self.relative is None

    def __getitem__(self, index: torch.Tensor) -> TeacherTarget:
        """The images selected by a (B,) bool mask or index tensor."""
        rel = self.relative[index] if self.relative is not None else None
        return TeacherTarget(self.depth[index], rel, self.space)


def target_of(out: dict, teacher: nn.Module, like: torch.Tensor) -> TeacherTarget:
    """A ``Teacher``'s forward output as a depth target at the size of ``like`` (B, C, H, W)."""
    depth = resize_like(out["depth"], like)
    relative = resize_like(out["relative"], like) if "relative" in out else None
    return TeacherTarget(depth, relative, teacher.input_spec.relative_space)


@torch.no_grad()
def teacher_depth(teacher: nn.Module, image: torch.Tensor, spec: InputSpec) -> TeacherTarget:
    """Run a frozen ``Teacher`` on a batch normalised for ``spec`` (the student's): (B, 3, H, W) -> its depth."""
    return target_of(teacher(teacher.input_spec.renormalize(image, spec)), teacher, image)


def loss_to_teacher(
    student_depth: torch.Tensor, target: TeacherTarget, variance_focus: float = 0.85, silog_scale: float = 10.0
) -> torch.Tensor:
    """The student's depth (B, 1, H, W) metres against the teacher's on every pixel.

    Metric teacher: SILog (as response KD always was). Relative teacher: SSI between the student's disparity (or
    depth) and the teacher's relative output, in the teacher's space.
    """
    if target.metric:
        teacher = resize_like(target.depth.detach().float(), student_depth).clamp(min=1e-6)
        everywhere = torch.ones_like(teacher, dtype=torch.bool)
        return silog_loss(student_depth, teacher, everywhere, variance_focus, silog_scale)
    relative = resize_like(target.relative.detach().float(), student_depth)
    student = 1.0 / student_depth.clamp(min=1e-6) if target.space == "disparity" else student_depth
    return ssi_loss(student, relative)


def unlabelled(batch: dict) -> torch.Tensor:
    """(B,) bool: images of the batch with no ground-truth pixel (label-free or unlabelled-pool images)."""
    return ~batch["valid"].flatten(1).any(1)
