"""``build_teacher``: the only place a :class:`~disdepth.config.TeacherConfig` is read."""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path

from disdepth.config import TeacherConfig
from disdepth.models.encoder import clear_from_scratch, encoder_normalization
from disdepth.models.spec import InputSpec
from disdepth.teachers.base import Teacher, load_teacher_checkpoint
from disdepth.teachers.timm_teacher import HybridBackbone, TimmTeacher, make_timm_backbone

log = logging.getLogger(__name__)

# Teachers we test and document (any timm Swin / PVTv2 / ViT name works the same way; HF: see hf_teacher).
SUPPORTED_TIMM_TEACHERS: dict[str, str] = {
    "swin_tiny_patch4_window7_224": "Swin-T (hierarchical, shifted windows)",
    "swin_base_patch4_window7_224": "Swin-B",
    "swin_large_patch4_window7_224": "Swin-L",
    "vit_small_patch16_224": "ViT-S/16 (tokens -> DPT reassemble)",
    "vit_base_patch16_384": "ViT-B/16 (DPT-Base's backbone)",
    "vit_small_patch14_dinov2": "ViT-S/14 DINOv2 architecture (token grid resampled to stride 16)",
    "pvt_v2_b0": "PVTv2-B0 (hierarchical, spatial-reduction attention) ... pvt_v2_b5",
    "pvt_v2_b2": "PVTv2-B2",
}


def _check_weights(cfg: TeacherConfig) -> None:
    if cfg.pretrained == "file" and not cfg.weights:
        raise ValueError("teacher.pretrained='file' needs teacher.weights=<path to a weights file>")
    if cfg.weights and cfg.pretrained != "file":
        raise ValueError(
            f"teacher.weights={cfg.weights!r} is set but teacher.pretrained={cfg.pretrained!r}; use 'file'"
        )
    # "package:..." names a weights package resolved by disdepth.models.pretrained, not a file.
    if cfg.weights and not cfg.weights.startswith("package:") and not Path(cfg.weights).is_file():
        raise FileNotFoundError(f"teacher.weights: file not found: {cfg.weights}")
    if cfg.checkpoint and Path(cfg.checkpoint).is_dir():
        raise ValueError(
            f"teacher.checkpoint={cfg.checkpoint}: a folder; a Hugging Face model folder (or hub id) is used with "
            f"teacher.kind=hf teacher.name={cfg.checkpoint}, and teacher.checkpoint names a file from `disdepth train`"
        )
    if cfg.checkpoint and not Path(cfg.checkpoint).is_file():
        raise FileNotFoundError(f"teacher.checkpoint: file not found: {cfg.checkpoint}")


def teacher_input_spec(cfg: TeacherConfig) -> InputSpec:
    """The :class:`InputSpec` of the teacher ``cfg`` describes (equals ``build_teacher(cfg).input_spec``).

    A timm or hybrid teacher's is known from timm's pretrained config, without building (a Swin-L) for it; a Hugging
    Face teacher's comes from its folder, so it is built (without loading a ``teacher.checkpoint``).
    """
    if cfg.kind == "hf":
        return build_teacher(cfg, load_weights=False).input_spec
    mean, std = encoder_normalization(cfg.name)
    return InputSpec(mean, std, cfg.min_depth, cfg.max_depth, TimmTeacher.size_multiple, relative_fit=cfg.relative_fit)


def build_teacher(cfg: TeacherConfig, load_weights: bool = True) -> Teacher:
    """Build a teacher from its config section.

    ``load_weights=False`` skips ``teacher.pretrained``/``weights``/``checkpoint`` (the weights come from a
    checkpoint next); a Hugging Face teacher still reads its folder, which holds its architecture.

    kind=timm: ``make_timm_backbone(cfg.name)`` (Swin/PVTv2 via ``features_only``, ViTs via reassemble) + DPT
    decoder + head; kind=hybrid: ``cfg.name`` is the CNN stem under ``hybrid_depth`` transformer blocks;
    kind=hf: ``load_hf_teacher(cfg.name)``. ``cfg.checkpoint`` (a whole-teacher state dict) is loaded last and
    ``cfg.freeze`` freezes the result. Not frozen otherwise: a timm/hybrid teacher is trained like a student.

    Raises:
        ValueError / FileNotFoundError naming the ``teacher.*`` key at fault.
    """
    if not load_weights:
        cfg = dataclasses.replace(cfg, pretrained="none", weights="", checkpoint="")
    if not 0 < cfg.min_depth < cfg.max_depth:
        raise ValueError(f"teacher.min_depth/max_depth: need 0 < min < max, got {cfg.min_depth}, {cfg.max_depth}")
    if cfg.input_size and (len(cfg.input_size) != 2 or min(cfg.input_size) <= 0):
        raise ValueError(f"teacher.input_size={cfg.input_size}: expected [height, width] or []")
    if cfg.kind == "hf":
        from disdepth.teachers.hf_teacher import load_hf_teacher  # needs transformers, the optional `hf` extra

        if cfg.pretrained != "none" or cfg.weights:
            # A recipe's timm/hybrid ImageNet settings stay behind when a user switches to a hub teacher: the HF
            # checkpoint is the whole model's weights, so they simply do not apply (no --set needed to undo them).
            log.info("teacher.kind=hf: teacher.pretrained/weights (ImageNet backbone weights) do not apply; ignored")
        teacher: Teacher = load_hf_teacher(
            cfg.name,
            cfg.min_depth,
            cfg.max_depth,
            cfg.metric,
            cfg.relative_space,
            input_size=cfg.input_size or None,
            size_multiple=cfg.size_multiple,
        )
    else:
        _check_weights(cfg)
        if cfg.metric == "relative":
            raise ValueError(f"teacher.metric='relative' is only for kind=hf; kind={cfg.kind} teachers are metric")
        pretrained, weights = cfg.pretrained == "timm", cfg.weights or None
        if cfg.kind == "hybrid":
            backbone = HybridBackbone(
                cfg.name, pretrained, weights, cfg.hybrid_dim, cfg.hybrid_depth, cfg.hybrid_heads, cfg.drop_path
            )
        else:
            backbone = make_timm_backbone(
                cfg.name, pretrained, weights, cfg.drop_path, cfg.vit_layers or None, cfg.vit_channels or None
            )
        teacher = TimmTeacher(backbone, cfg.decoder_channels, cfg.head, cfg.n_bins, cfg.min_depth, cfg.max_depth)
    teacher.relative_fit = cfg.relative_fit
    if cfg.checkpoint:
        load_teacher_checkpoint(teacher, cfg.checkpoint)
        clear_from_scratch(teacher)  # all trained now: fine-tuning (acclimation) uses one backbone lr scale
    if cfg.freeze:
        teacher.freeze()
    return teacher
