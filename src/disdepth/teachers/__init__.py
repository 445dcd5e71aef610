"""disdepth.teachers: transformer teachers behind one interface (see docs/teachers.md).

``build_teacher(cfg.teacher)`` gives a :class:`Teacher`; ``align_relative`` / ``fit_scale_shift`` align a
relative teacher's output to ground truth. Hugging Face support is imported lazily (``transformers`` optional).
"""

from disdepth.teachers.base import (
    PYRAMID_STRIDES,
    Teacher,
    align_relative,
    fit_scale_shift,
    load_teacher_checkpoint,
    measure_complexity,
)
from disdepth.teachers.build import SUPPORTED_TIMM_TEACHERS, build_teacher
from disdepth.teachers.timm_teacher import HierarchicalBackbone, HybridBackbone, TimmTeacher, ViTBackbone

__all__ = [
    "PYRAMID_STRIDES",
    "SUPPORTED_TIMM_TEACHERS",
    "HierarchicalBackbone",
    "HybridBackbone",
    "Teacher",
    "TimmTeacher",
    "ViTBackbone",
    "align_relative",
    "build_teacher",
    "fit_scale_shift",
    "load_teacher_checkpoint",
    "measure_complexity",
]
