"""Typed configuration: dataclass defaults, YAML files holding only the changes, ``--set a.b=v`` last.

Resolution order (later wins): dataclass defaults -> each YAML file in order -> ``--set`` overrides.
A YAML file may name a ``base:`` file (relative to itself) that it changes; ``recipe:NAME`` (as a file or a
``base:``) is the recipe ``NAME.yaml`` shipped inside the package (``disdepth.recipes``). Every key is checked
against the dataclass field it targets: an unknown key or a value of the wrong type raises
:class:`ConfigError` naming the full dotted key and what is allowed.

Models never see these objects; builders (``disdepth.models.student.build_student`` …) turn a
section into explicit constructor arguments.
"""

from __future__ import annotations

import copy
import dataclasses
import re
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Union, get_args, get_origin

import yaml

from disdepth.runs import PIPELINE_STAGES as RUN_PIPELINE_STAGES


class ConfigError(ValueError):
    """A config key or value is wrong; the message names the dotted key."""


# --------------------------------------------------------------------------------------------
# Sections. Each owner edits only its own dataclass.
# --------------------------------------------------------------------------------------------


@dataclass
class LGConvConfig:
    """Where LG-Conv global branches are added to the encoder (docs/method.md §2)."""

    enabled: bool = False
    # Output strides of the 3x3 convs that get a branch (4 = stage 2 ... 32 = stage 5). 32 only (was [16, 32] until
    # issue 15): adds <= 10 % latency on ONNX Runtime and in eager PyTorch, where [16, 32] adds 15-23 % on ONNX Runtime,
    # at no measurable accuracy difference on the 7-Scenes frames (README "LG-Conv").
    strides: list[int] = field(default_factory=lambda: [32])
    min_channels: int = 64  # only convs with at least this many input channels
    include_depthwise: bool = True  # MobileNet/EfficientNet 3x3 convs are depthwise
    heads: int = 4  # global tokens per branch
    reduction: int = 8  # branch width = max(in_channels // reduction, min_width)
    min_width: int = 16


@dataclass
class ModelConfig:
    """Student (or baseline) CNN depth model: timm encoder -> U-Net decoder -> head."""

    encoder: str = "mobilenetv2_100"
    # "none": random init; "timm": timm's hub weights (needs network); "file": ``weights`` path.
    pretrained: Literal["none", "timm", "file"] = "none"
    weights: str = ""  # local weights file (timm state dict, or an efficientnet_pytorch lite0 file)
    # unet: ours (decoder_channels); lite: separable blocks, additive skips, depth at stride 4 (lite_channels);
    # nnconv5: FastDepth's decoder (with encoder mobilenetv1_100 = FastDepth); monodepth2: Monodepth2's (with
    # resnet18 = Monodepth2-R18). The peers keep their papers' widths.
    decoder: Literal["unet", "lite", "nnconv5", "monodepth2"] = "unet"
    # Per level, deep to shallow. 96/48/24/12 (was 256/128/64/32 until issue 15): as accurate on the synthetic scenes
    # and 7-Scenes frames, 0.47x the ONNX Runtime time (README "The student").
    decoder_channels: list[int] = field(default_factory=lambda: [96, 48, 24, 12])
    decoder_finest_stride: int = 2  # unet: the finest encoder stride decoded; the head predicts there (2 or 4)
    # unet: each level's x2 upsampling. nearest (bilinear until issue 15): 0.92x the ONNX Runtime time, no measurable
    # accuracy difference (README "The student"). Checkpoints saved without this key were bilinear (checkpoint.py).
    decoder_upsample: Literal["bilinear", "nearest"] = "nearest"
    # unet: the levels (by stride) whose first conv runs at the coarse resolution, before the upsampling (Monodepth2's
    # order); the others run both convs at the fine one (the U-Net's). Checkpoints saved without this key had none.
    decoder_conv_first_strides: list[int] = field(default_factory=list)
    lite_channels: list[int] = field(default_factory=lambda: [128, 64, 32])  # strides 16, 8, 4
    # pointwise: FastDepth's 1x1 conv -> BN -> ReLU output layer (the FastDepth peer; models/heads.py)
    head: Literal["sigmoid", "bins", "pointwise"] = "sigmoid"
    # sigmoid head: learned x s upsampling (pixel shuffle) of its prediction; 1 = none (the student resizes bilinearly)
    head_upsample: int = 1
    n_bins: int = 64  # bins head only
    min_depth: float = 1e-3  # metres
    max_depth: float = 10.0  # metres
    # False: a relative student (trained only against a relative teacher, no ground truth): its depth is known up to
    # scale and shift (in ``relative_space``), and it is labelled so wherever it is used. The pipeline sets it.
    metric: bool = True
    relative_space: Literal["disparity", "depth"] = "disparity"
    relative_fit: Literal["scale_shift", "scale"] = "scale_shift"
    lgconv: LGConvConfig = field(default_factory=LGConvConfig)


@dataclass
class AugmentConfig:
    """Joint image/depth augmentation for the train split (BTS recipe; see docs/data.md).

    Zero / empty values mean "the dataset's default": KITTI crop 352x704, rotation 1 deg, brightness
    0.9-1.1; NYU crop 416x544, rotation 2.5 deg, brightness 0.75-1.25 (BTS, Lee et al. 2019);
    CSV and synthetic: no crop, rotation 2.5 deg, brightness 0.9-1.1.
    """

    enabled: bool = True
    crop_height: int = 0  # pixels; 0 = dataset default
    crop_width: int = 0  # pixels; 0 = dataset default
    rotate_degrees: float = -1.0  # max |angle| in degrees; negative = dataset default, 0 = off
    hflip: bool = True  # p = 0.5; cx is mirrored too
    color_prob: float = 0.5  # probability of the gamma/brightness/colour step (BTS: 0.5)
    gamma: list[float] = field(default_factory=lambda: [0.9, 1.1])  # image ** U(lo, hi)
    brightness: list[float] = field(default_factory=list)  # image * U(lo, hi); [] = dataset default
    color: list[float] = field(default_factory=lambda: [0.9, 1.1])  # per-channel gain U(lo, hi)


@dataclass
class SyntheticConfig:
    """Procedural synthetic world (owned by the synthetic-data issue)."""

    preset: Literal["indoor", "outdoor"] = "indoor"
    n_train: int = 2000
    n_val: int = 200
    height: int = 240
    width: int = 320
    seed: int = 0
    sparse: bool = False  # outdoor: LiDAR-like scan-line ground truth
    sparse_density: float = 0.05  # kept fraction of image pixels with sparse=True (KITTI raw: ~4-5%)
    depth_noise: float = 0.0  # sensor noise: depth std = depth_noise * depth^2 (metres; Kinect v1 ~0.002)
    holes: float = 0.0  # sensor dropout: fraction of pixels removed in blobs


@dataclass
class DataConfig:
    """Which dataset and where (owned by the data issue; formats in docs/data.md)."""

    dataset: Literal["synthetic", "kitti", "nyu", "csv"] = "synthetic"
    root: str = ""  # image root (KITTI raw / NYU sync / CSV base folder; CSV default: the CSV's folder)
    gt_root: str = ""  # depth root where it differs from ``root`` (KITTI)
    eval_root: str = ""  # val/test image root if not ``root`` (BTS data_path_eval; NYU official_splits/test)
    eval_gt_root: str = ""  # val/test depth root (BTS gt_path_eval); empty = eval_root, else gt_root
    train_list: str = ""  # BTS list file (kitti, nyu) or CSV index (csv)
    val_list: str = ""  # empty = test_list
    test_list: str = ""
    depth_scale: float = 0.0  # PNG value / depth_scale = metres; 0 = dataset default (KITTI 256, NYU 1000, CSV column)
    # KB crop (KITTI benchmark crop: bottom 352 rows, centred 1216 columns) before augmentation.
    # None = on for kitti, off otherwise.
    kb_crop: bool | None = None
    use_right: bool = False  # KITTI train: swap image_02 for image_03 with p = 0.5 (BTS --use_right)
    nyu_border_crop: bool = True  # NYU train: drop the white border, crop to [45:472, 43:608] (BTS)
    # Train split: True drops frames without ground truth; False keeps them, and the teacher's depth is their target
    # (label-free distillation: an images-only CSV works; docs/distillation.md).
    require_depth: bool = True
    batch_size: int = 8
    num_workers: int = 2
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    synthetic: SyntheticConfig = field(default_factory=SyntheticConfig)


@dataclass
class EvalConfig:
    """Evaluation protocol (docs/data.md, "Metrics and protocols")."""

    protocol: Literal["none", "nyu_eigen", "kitti_eigen_garg", "kitti_garg_full", "kitti_eigen"] = "none"
    # Depth caps in metres; None = the protocol's (KITTI 1e-3..80, NYU 1e-3..10, none 1e-3..inf).
    min_depth: float | None = None
    max_depth: float | None = None
    flip_tta: bool = False  # average with the flipped image's prediction; always written into results
    split: Literal["train", "val", "test"] = "test"  # which list the ground truth comes from
    pred_scale: float = 0.0  # --pred-dir PNGs: value / pred_scale = metres; 0 = the dataset's depth scale


@dataclass
class BenchConfig:
    """``disdepth bench``: resolutions are (height, width) pairs."""

    resolutions: list[list[int]] = field(default_factory=lambda: [[480, 640], [352, 1216]])
    warmup: int = 3
    runs: int = 10
    threads: int = 0  # 0 = torch's default


@dataclass
class TeacherConfig:
    """Transformer teacher (owned by the teachers issue; see docs/teachers.md).

    kind=timm: a timm transformer backbone (Swin, ViT, PVTv2) + DPT-style decoder + depth head, trainable.
    kind=hybrid: a timm CNN stem (``name``, e.g. tf_efficientnet_lite0) under transformer blocks at stride 16.
    kind=hf: a Hugging Face depth model (Depth Anything V2, DPT, GLPN); ``name`` is a hub id or a local folder.
    """

    kind: Literal["timm", "hybrid", "hf"] = "timm"
    name: str = "swin_tiny_patch4_window7_224"  # timm model; hybrid: the CNN stem; hf: hub id / local folder
    # Backbone (hybrid: stem) ImageNet weights: "timm" = timm hub (network); "file" = ``weights`` path
    # (timm state dict; for the hybrid stem also "package:efficientnet-lite0").
    pretrained: Literal["none", "timm", "file"] = "none"
    weights: str = ""
    checkpoint: str = ""  # whole-teacher state dict (e.g. a teacher trained by ``disdepth train``), loaded last
    min_depth: float = 1e-3  # metres
    max_depth: float = 10.0  # metres
    freeze: bool = False  # build frozen (eval, no grads); distillation stages freeze it themselves anyway
    # timm / hybrid teachers: decoder and head.
    decoder: Literal["dpt"] = "dpt"
    decoder_channels: int = 128  # DPT fusion width (DPT itself uses 256: ~4x the decoder FLOPs)
    head: Literal["sigmoid", "bins"] = "sigmoid"
    n_bins: int = 64  # bins head only
    drop_path: float = 0.1  # stochastic depth of the transformer blocks
    vit_layers: list[int] = field(default_factory=list)  # ViT blocks feeding the pyramid; [] = 4 evenly spaced
    vit_channels: list[int] = field(default_factory=list)  # ViT reassemble widths; [] = [d/8, d/4, d/2, d]
    hybrid_dim: int = 384  # hybrid: transformer width at stride 16
    hybrid_depth: int = 6  # hybrid: number of transformer blocks
    hybrid_heads: int = 6  # hybrid: attention heads
    # hf teachers: output semantics and input size rules ("auto" reads the model's config).
    metric: Literal["auto", "metric", "relative"] = "auto"
    relative_space: Literal["auto", "disparity", "depth"] = "auto"  # what a relative model predicts
    # What a relative output is known up to: "scale_shift" (affine; MiDaS/DPT, Depth Anything) or "scale".
    relative_fit: Literal["scale_shift", "scale"] = "scale_shift"
    input_size: list[int] = field(default_factory=list)  # [H, W] the model runs at; [] = family rule
    size_multiple: int = 0  # 0 = family rule (DINOv2/Depth Anything 14, GLPN 32, DPT-ViT square image_size)


@dataclass
class TrainConfig:
    """Optimisation and run control (owned by the engine issue). Steps are optimizer steps."""

    steps: int = 1000
    lr: float = 2e-4  # AdamW peak learning rate (decoder/head; encoder gets lr * encoder_lr_scale)
    encoder_lr_scale: float = 0.1  # applied only when the encoder is pretrained (model.pretrained != none)
    weight_decay: float = 1e-2
    betas: list[float] = field(default_factory=lambda: [0.9, 0.999])
    schedule: Literal["poly", "onecycle", "constant"] = "poly"
    poly_power: float = 0.9  # BTS / NeWCRFs poly decay
    warmup_steps: int = 0  # linear warm-up (poly and constant schedules)
    end_lr_ratio: float = 0.01  # poly ends at lr * end_lr_ratio
    grad_clip: float = 0.0  # max global grad norm; 0 = off
    amp: Literal["none", "bf16", "fp16"] = "none"
    ema_decay: float = 0.0  # 0 = off; e.g. 0.999 keeps EMA weights, used for evaluation and best checkpoint
    sync_bn: bool = False  # SyncBatchNorm under DDP (small per-GPU batches)
    silog_variance_focus: float = 0.85  # SILog lambda (Eigen et al. 2014; BTS uses 0.85)
    silog_scale: float = 10.0
    bins_chamfer_weight: float = 0.1  # AdaBins chamfer loss weight (bins head only)
    log_every: int = 20
    eval_every: int = 500  # 0 = only at the end
    checkpoint_every: int = 500
    best_metric: str = "abs_rel"  # metric deciding best.pt; lower is better except d1/d2/d3
    max_bad_steps: int = 5  # abort after this many non-finite losses in a row
    image_panels: int = 4  # images in the TensorBoard panel at each evaluation
    device: Literal["auto", "cpu", "cuda"] = "auto"


@dataclass
class AcclimateConfig:
    """Teacher acclimation with a ghost decoder (docs/method.md §4; docs/distillation.md)."""

    # Ghost decoder = copy of the student's decoder + head: "baseline" = weights of ``baseline_checkpoint``
    # (a trained baseline student), "fresh" = the student's initialisation (then set train_ghost: true).
    ghost_init: Literal["baseline", "fresh"] = "baseline"
    baseline_checkpoint: str = ""
    train_ghost: bool = False  # default frozen: the FAMs must learn to speak the student decoder's language
    fam: Literal["conv", "linear"] = "conv"  # conv: 1x1 -> BN -> ReLU -> 3x3 (linear out); linear: one 1x1 conv
    fam_hidden: int = 0  # hidden width of a conv FAM; 0 = max(student channels, 32)
    # Pull FAM outputs toward the baseline student's own encoder features (normalised MSE per level), so the
    # acclimated features stay where a student encoder can reach them; 0 = ghost-decoder loss only.
    anchor_weight: float = 1.0
    train_teacher: bool = False  # fine-tune the teacher too (its own depth loss is kept)
    teacher_lr_scale: float = 0.1  # teacher lr = train.lr * teacher_lr_scale
    teacher_loss_weight: float = 1.0  # weight of the teacher's own SILog while it is fine-tuned


@dataclass
class DistillConfig:
    """Student distillation (docs/method.md §5; docs/distillation.md)."""

    acclimated_checkpoint: str = ""  # output of ``disdepth acclimate`` (teacher + FAMs + ghost decoder)
    # A trained student checkpoint the distilled student starts from (e.g. the baseline whose decoder the ghost
    # copies); "" = the model's own initialisation (``model.pretrained``).
    init_checkpoint: str = ""
    # Feature KD target: "acclimated" = FAM outputs (DisDepth); "raw" = raw teacher features through a
    # student-side 1x1 adapter (classic feature KD, no acclimation); "none" = no feature KD.
    feature_target: Literal["acclimated", "raw", "none"] = "acclimated"
    # Spatial weights over positions: "magnitude" = softmax of the standardised teacher feature energy / tau;
    # "saliency" = same softmax of the ghost decoder's depth-loss gradient magnitude; "none" = uniform (plain MSE).
    attention: Literal["magnitude", "saliency", "none"] = "magnitude"
    tau: float = 1.0  # softmax temperature (lower = sharper)
    attention_floor: float = 0.0  # mix with uniform: w = (1 - floor) * softmax + floor / (H*W)
    levels: list[int] = field(default_factory=lambda: [4, 8, 16, 32])  # student encoder strides distilled
    feature_weight: float = 1.0
    normalize: bool = True  # divide each level's loss by the teacher feature energy (scale-free weights)
    # Standardise student and target per image and channel over positions first (PKD): compare patterns, not
    # magnitudes. Attention maps still come from the raw target. On by default: better on the synthetic
    # validation scenes in both comparisons we ran (docs/distillation.md, "Choosing the settings").
    standardize: bool = True
    response_weight: float = 0.0  # response KD: SILog(student depth, teacher depth) on all pixels
    # Ghost loss: the student's own encoder pyramid read by the acclimation's frozen ghost decoder, SILog to the
    # ground truth (the teacher's depth on images without it; "teacher": on every image), so the student's
    # features must *decode* like the acclimated ones, not only look like them. 0 = off. Needs an acclimated teacher.
    ghost_weight: float = 0.0
    ghost_target: Literal["gt", "teacher"] = "gt"
    # Unlabelled images (docs/distillation.md, "Unlabelled images"): a CSV index with an ``rgb`` column (any depth
    # column is ignored), paths relative to ``unlabelled_root`` or the CSV's folder. They carry the KD losses
    # (feature and response) only; ``unlabelled_fraction`` of every epoch is drawn from them (0.5 = one per
    # labelled image).
    unlabelled_list: str = ""
    unlabelled_root: str = ""
    unlabelled_fraction: float = 0.5
    # Cache teacher targets per sample id: the teacher runs once per image (on the un-augmented frame when
    # augmentation is on; its maps are then warped by each sample's crop/flip/rotation). "auto" = on unless there is
    # an unlabelled pool (the cache would grow with every pool image drawn) or KITTI use_right (one id, two cameras).
    cache_teacher: Literal["auto", "on", "off"] = "auto"
    # Bound of the cache per process, GiB (fp16 maps on the CPU; each DDP rank holds its own); images beyond it are
    # computed every step. 0 = no bound. Sizes: docs/distillation.md, "Teacher-target cache with augmentation".
    cache_max_gb: float = 8.0


@dataclass
class StageBudget:
    """One pipeline stage's budget; 0 keeps the value of ``train`` / ``data``."""

    steps: int = 0  # optimizer steps (train.steps)
    lr: float = 0.0  # peak learning rate (train.lr)
    batch_size: int = 0  # images per step and process (data.batch_size)


@dataclass
class PipelineConfig:
    """``disdepth pipeline``: a budget per stage on top of ``train``, plus report settings."""

    teacher: StageBudget = field(default_factory=StageBudget)  # e.g. {steps: 20000, lr: 1e-4}
    baseline: StageBudget = field(default_factory=StageBudget)
    acclimate: StageBudget = field(default_factory=StageBudget)
    distill: StageBudget = field(default_factory=StageBudget)
    bench_resolution: list[int] = field(default_factory=lambda: [480, 640])  # [H, W] for params/GFLOPs/latency
    panels: int = 4  # image panels in the report


PIPELINE_STAGES = RUN_PIPELINE_STAGES  # the stage folders, in order (named in disdepth.runs, with the run layout)


def stage_config(cfg: Config, stage: str) -> Config:
    """A copy of ``cfg`` with ``pipeline.<stage>``'s budget applied to ``train`` and ``data``."""
    budget: StageBudget = getattr(cfg.pipeline, stage)
    out = copy.deepcopy(cfg)
    if budget.steps:
        out.train.steps = budget.steps
    if budget.lr:
        out.train.lr = budget.lr
    if budget.batch_size:
        out.data.batch_size = budget.batch_size
    return out


@dataclass
class Config:
    """Root config; one section per concern."""

    name: str = "disdepth"
    seed: int = 0
    model: ModelConfig = field(default_factory=ModelConfig)
    teacher: TeacherConfig = field(default_factory=TeacherConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    data: DataConfig = field(default_factory=DataConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    bench: BenchConfig = field(default_factory=BenchConfig)
    acclimate: AcclimateConfig = field(default_factory=AcclimateConfig)
    distill: DistillConfig = field(default_factory=DistillConfig)
    pipeline: PipelineConfig = field(default_factory=PipelineConfig)


# --------------------------------------------------------------------------------------------
# Loading, merging, checking.
# --------------------------------------------------------------------------------------------


def _type_name(tp: Any) -> str:
    if get_origin(tp) is Literal:
        return "one of " + ", ".join(repr(a) for a in get_args(tp))
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


def _coerce(value: Any, tp: Any, key: str) -> Any:
    """Return ``value`` checked (and minimally converted) against type ``tp``, or raise ConfigError."""
    origin = get_origin(tp)
    if origin in (Union, types.UnionType):
        args = get_args(tp)
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(value, arg, key)
            except ConfigError as exc:
                errors.append(str(exc))
        raise ConfigError(f"{key}: expected {_type_name(tp)}, got {value!r}")
    if origin is Literal:
        if isinstance(value, bool):  # YAML 1.1 reads on/off/yes/no as booleans: take the option spelled that way
            spellings = ("on", "yes", "true") if value else ("off", "no", "false")
            spelled = [o for o in get_args(tp) if isinstance(o, str) and o.lower() in spellings]
            value = spelled[0] if len(spelled) == 1 else value
        if value not in get_args(tp):
            raise ConfigError(f"{key}: expected {_type_name(tp)}, got {value!r}")
        return value
    if origin in (list, tuple):
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{key}: expected a list ({_type_name(tp)}), got {value!r}")
        (item_tp, *_) = get_args(tp) or (Any,)
        return [_coerce(v, item_tp, f"{key}[{i}]") for i, v in enumerate(value)]
    if tp is Any:
        return value
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{key}: expected bool (true/false), got {value!r}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{key}: expected int, got {value!r}")
        return value
    if tp is float:
        if isinstance(value, str):
            # YAML 1.1 reads "1e-3" (no dot) as a string; accept any text float() accepts.
            try:
                return float(value)
            except ValueError:
                pass
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{key}: expected float, got {value!r}")
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"{key}: expected str, got {value!r}")
        return value
    raise ConfigError(f"{key}: unsupported config type {tp!r}")


def _merge(obj: Any, delta: dict[str, Any], prefix: str = "") -> None:
    """Apply a nested dict of changes to dataclass ``obj`` in place, checking every key and type."""
    if not isinstance(delta, dict):
        raise ConfigError(f"{prefix.rstrip('.') or '<root>'}: expected a mapping, got {delta!r}")
    hints = typing.get_type_hints(type(obj))
    names = [f.name for f in dataclasses.fields(obj)]
    for key, value in delta.items():
        full = f"{prefix}{key}"
        if key not in names:
            raise ConfigError(f"{full}: unknown key; allowed keys here: {', '.join(names)}")
        current = getattr(obj, key)
        if dataclasses.is_dataclass(current):
            _merge(current, value, f"{full}.")
        else:
            setattr(obj, key, _coerce(value, hints[key], full))


RECIPE_PREFIX = "recipe:"


def resolve_config_path(ref: str | Path, relative_to: Path | None = None) -> Path:
    """The file a config reference names.

    ``recipe:NAME`` is ``NAME.yaml`` shipped inside the package (``disdepth.recipes``; ``configs/`` is not
    installed); any other text is a path, taken relative to ``relative_to`` (the folder of the file that names it
    as ``base:``) unless absolute, else relative to the working directory.
    """
    text = str(ref)
    if not text.startswith(RECIPE_PREFIX):
        path = Path(text).expanduser()
        return path if relative_to is None or path.is_absolute() else relative_to / path
    from importlib import resources

    name = text[len(RECIPE_PREFIX) :]
    folder = resources.files("disdepth.recipes")
    if re.fullmatch(r"[A-Za-z0-9_-]+", name) and (folder / f"{name}.yaml").is_file():
        return Path(str(folder / f"{name}.yaml"))
    known = sorted(RECIPE_PREFIX + p.name[: -len(".yaml")] for p in folder.iterdir() if p.name.endswith(".yaml"))
    raise ConfigError(f"{text}: no such packaged recipe; known: {', '.join(known)}")


def _read_yaml(path: Path, seen: tuple[Path, ...] = ()) -> list[dict[str, Any]]:
    """Read a YAML delta and its ``base:`` chain; returns deltas in application order."""
    path = path.resolve()
    if path in seen:
        raise ConfigError(f"{path}: 'base' chain loops back to this file")
    if not path.is_file():
        raise ConfigError(f"{path}: config file not found")
    raw = path.read_bytes()
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        byte = f"0x{raw[exc.start]:02x}"
        raise ConfigError(f"{path}: not UTF-8 text (byte {byte} on line {line}); save it as UTF-8") from None
    try:
        data = yaml.safe_load(text) or {}
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f":{mark.line + 1}:{mark.column + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise ConfigError(f"{path}{where}: not valid YAML: {problem}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: top level must be a mapping of config keys")
    base = data.pop("base", None)
    if base is not None and not isinstance(base, str):
        raise ConfigError(f"{path}: base: expected a file name or recipe:NAME, got {base!r}")
    chain = _read_yaml(resolve_config_path(base, path.parent), (*seen, path)) if base else []
    return [*chain, data]


def _names_itself_after_a_recipe(path: str | Path, deltas: list[dict[str, Any]]) -> bool:
    """True when ``path`` is the user's own file (not ``recipe:``), sets no ``name`` itself, and its ``base:`` chain
    reaches a packaged recipe that does: the run then takes the file's name instead of the recipe's."""
    if str(path).startswith(RECIPE_PREFIX) or "name" in deltas[-1]:
        return False
    return any("name" in d for d in deltas[:-1]) and _reaches_recipe(Path(str(path)))


def _reaches_recipe(path: Path) -> bool:
    """Whether ``path``'s ``base:`` chain names a ``recipe:`` (read again: a chain is a few small files)."""
    for _ in range(32):  # the chain is loop-checked by _read_yaml; this only bounds the walk
        try:
            data = yaml.safe_load(path.read_text()) or {}
        except (OSError, yaml.YAMLError):
            return False
        base = data.get("base") if isinstance(data, dict) else None
        if not isinstance(base, str):
            return False
        if base.startswith(RECIPE_PREFIX):
            return True
        path = resolve_config_path(base, path.parent)
    return False


def parse_override(text: str) -> dict[str, Any]:
    """Turn ``a.b.c=value`` into ``{"a": {"b": {"c": value}}}``; value is parsed as YAML (1, 1e-3, [1,2], true)."""
    if "=" not in text:
        raise ConfigError(f"--set {text!r}: expected KEY=VALUE, e.g. model.encoder=resnet18")
    key, raw = text.split("=", 1)
    if not key:
        raise ConfigError(f"--set {text!r}: empty key")
    try:
        value = yaml.safe_load(raw) if raw != "" else ""
    except yaml.YAMLError:
        value = raw
    out: dict[str, Any] = {}
    node = out
    parts = key.strip().split(".")
    if any(not part for part in parts):
        raise ConfigError(f"--set {text!r}: empty part in key {key!r} (write it like model.encoder)")
    for part in parts[:-1]:
        node = node.setdefault(part, {})
    node[parts[-1]] = value
    return out


def load_config(
    paths: str | Path | list[str | Path] | None = None,
    overrides: list[str] | None = None,
    base: Config | None = None,
) -> Config:
    """Resolve a config: defaults (or ``base``) -> YAML files in order -> ``--set`` overrides.

    A path may be ``recipe:NAME``, a recipe shipped inside the package (e.g. ``recipe:demo``).

    Raises:
        ConfigError: naming the dotted key (and the file) for unknown keys or wrong types.
    """
    cfg = base if base is not None else Config()
    if paths is None:
        paths = []
    elif isinstance(paths, (str, Path)):
        paths = [paths]
    for path in paths:
        deltas = _read_yaml(resolve_config_path(path))
        for delta in deltas:
            try:
                _merge(cfg, delta)
            except ConfigError as exc:
                raise ConfigError(f"{path}: {exc}") from None
        if _names_itself_after_a_recipe(path, deltas):
            cfg.name = Path(str(path)).stem  # a user's file built on recipe:demo is the user's run, not the demo
    for text in overrides or []:
        _merge(cfg, parse_override(text))
    return check_ranges(cfg)


def config_from_dict(data: dict[str, Any]) -> Config:
    """Rebuild a Config from ``to_dict`` output (e.g. the copy stored in a checkpoint)."""
    cfg = Config()
    _merge(cfg, data)
    return cfg


def to_dict(cfg: Any) -> dict[str, Any]:
    """Plain nested dict of a config (YAML/JSON serialisable)."""
    return dataclasses.asdict(cfg)


def flat_dict(data: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"a": {"b": 1}}`` -> ``{"a.b": 1}``: dotted keys, as ``--set`` names them (for diffs between configs)."""
    out: dict[str, Any] = {}
    for key, value in data.items():
        if isinstance(value, dict):
            out.update(flat_dict(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def changed_keys(before: Config, after: Config) -> list[str]:
    """The dotted keys whose value differs between two configs, sorted (for refusing a resume or a stale stage)."""
    old, new = flat_dict(to_dict(before)), flat_dict(to_dict(after))
    return sorted(k for k in new if new[k] != old.get(k))


def dump_yaml(cfg: Any) -> str:
    """The fully resolved config as YAML text."""
    return yaml.safe_dump(to_dict(cfg), sort_keys=False)


def save_config(cfg: Any, path: str | Path) -> Path:
    """Write the resolved config as YAML (atomically: temp file + rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(dump_yaml(cfg))
    tmp.replace(path)
    return path


# --------------------------------------------------------------------------------------------
# Ranges: values of the right type that no run can use, caught when the config is loaded.
# --------------------------------------------------------------------------------------------


def _finite(x: float) -> bool:
    """Not NaN and not +-inf (imported here: this section is appended to a module others edit above)."""
    from math import isfinite

    return isfinite(x)


def _depth_range_problems(key: str, lo: float | None, hi: float | None, optional: bool = False) -> list[str]:
    """``0 < min_depth < max_depth`` in metres (min finite; max finite, or inf for the eval caps).

    With ``optional`` (eval caps) either may be None, meaning the protocol's value.
    """
    if optional and (lo is None or hi is None):
        given = [(name, v) for name, v in (("min_depth", lo), ("max_depth", hi)) if v is not None]
        return [f"{key}.{name}: must be > 0 (metres) or null, got {v!r}" for name, v in given if not v > 0]
    max_ok = _finite(hi) or (optional and hi == float("inf"))  # type: ignore[arg-type]
    if _finite(lo) and lo > 0 and max_ok and hi > lo:  # type: ignore[arg-type, operator]
        return []
    return [f"{key}.min_depth/max_depth: must be 0 < min_depth < max_depth (metres), got {lo!r}..{hi!r}"]


MAX_WIDTH = 8192  # channels, bins, heads...: far above any real model, far below what exhausts memory
MAX_STEPS = 10**9


def _range_problems(cfg: Config) -> list[str]:
    """Every out-of-range value as ``"<dotted key>: must be <allowed>, got <value>"``."""
    d, t, dc, ac = cfg.data, cfg.train, cfg.distill, cfg.acclimate
    rules: list[tuple[str, Any, bool, str]] = [
        ("seed", cfg.seed, 0 <= cfg.seed < 2**32, "in [0, 2**32) (the generators' seed range)"),
        ("data.synthetic.seed", d.synthetic.seed, 0 <= d.synthetic.seed < 2**32, "in [0, 2**32)"),
        ("data.batch_size", d.batch_size, d.batch_size >= 1, ">= 1"),
        ("data.num_workers", d.num_workers, d.num_workers >= 0, ">= 0"),
        (
            "data.depth_scale",
            d.depth_scale,
            _finite(d.depth_scale) and d.depth_scale >= 0,
            "finite and >= 0 (0 = dataset default)",
        ),
        (
            "eval.pred_scale",
            cfg.eval.pred_scale,
            _finite(cfg.eval.pred_scale) and cfg.eval.pred_scale >= 0,
            "finite and >= 0 (0 = the dataset's)",
        ),
        ("train.steps", t.steps, t.steps >= 1, ">= 1"),
        ("train.log_every", t.log_every, t.log_every >= 1, ">= 1"),
        ("train.eval_every", t.eval_every, t.eval_every >= 0, ">= 0 (0 = only at the end)"),
        ("train.checkpoint_every", t.checkpoint_every, t.checkpoint_every >= 0, ">= 0"),
        ("train.lr", t.lr, _finite(t.lr) and t.lr > 0, "finite and > 0"),
        (
            "train.encoder_lr_scale",
            t.encoder_lr_scale,
            _finite(t.encoder_lr_scale) and t.encoder_lr_scale >= 0,
            "finite and >= 0",
        ),
        ("train.weight_decay", t.weight_decay, _finite(t.weight_decay) and t.weight_decay >= 0, "finite and >= 0"),
        ("train.grad_clip", t.grad_clip, _finite(t.grad_clip) and t.grad_clip >= 0, "finite and >= 0 (0 = off)"),
        ("train.ema_decay", t.ema_decay, 0 <= t.ema_decay < 1, "in [0, 1) (0 = off)"),
        ("train.max_bad_steps", t.max_bad_steps, t.max_bad_steps >= 1, ">= 1"),
        ("train.warmup_steps", t.warmup_steps, t.warmup_steps >= 0, ">= 0"),
        ("distill.tau", dc.tau, _finite(dc.tau) and dc.tau > 0, "finite and > 0"),
        (
            "distill.feature_weight",
            dc.feature_weight,
            _finite(dc.feature_weight) and dc.feature_weight >= 0,
            "finite and >= 0",
        ),
        (
            "distill.response_weight",
            dc.response_weight,
            _finite(dc.response_weight) and dc.response_weight >= 0,
            "finite and >= 0",
        ),
        ("distill.ghost_weight", dc.ghost_weight, _finite(dc.ghost_weight) and dc.ghost_weight >= 0, "finite and >= 0"),
        ("distill.attention_floor", dc.attention_floor, 0 <= dc.attention_floor <= 1, "in [0, 1]"),
        ("distill.unlabelled_fraction", dc.unlabelled_fraction, 0 <= dc.unlabelled_fraction < 1, "in [0, 1)"),
        (
            "distill.cache_max_gb",
            dc.cache_max_gb,
            _finite(dc.cache_max_gb) and dc.cache_max_gb >= 0,
            "finite and >= 0 GiB (0 = no bound)",
        ),
        (
            "acclimate.anchor_weight",
            ac.anchor_weight,
            _finite(ac.anchor_weight) and ac.anchor_weight >= 0,
            "finite and >= 0",
        ),
        (
            "acclimate.teacher_loss_weight",
            ac.teacher_loss_weight,
            _finite(ac.teacher_loss_weight) and ac.teacher_loss_weight >= 0,
            "finite and >= 0",
        ),
        (
            "acclimate.teacher_lr_scale",
            ac.teacher_lr_scale,
            _finite(ac.teacher_lr_scale) and ac.teacher_lr_scale >= 0,
            "finite and >= 0",
        ),
    ]
    m, te, lg = cfg.model, cfg.teacher, cfg.model.lgconv
    # Architecture sizes: a positive count, capped so a hostile saved config fails here, not out of memory.
    for key, value, low in (
        ("model.n_bins", m.n_bins, 1), ("model.lgconv.heads", lg.heads, 1), ("model.lgconv.reduction", lg.reduction, 1),
        ("model.lgconv.min_width", lg.min_width, 1), ("model.lgconv.min_channels", lg.min_channels, 0),
        ("teacher.n_bins", te.n_bins, 1), ("teacher.decoder_channels", te.decoder_channels, 1),
        ("teacher.hybrid_dim", te.hybrid_dim, 1), ("teacher.hybrid_depth", te.hybrid_depth, 1),
        ("teacher.hybrid_heads", te.hybrid_heads, 1), ("acclimate.fam_hidden", ac.fam_hidden, 0),
        ("bench.runs", cfg.bench.runs, 1), ("bench.warmup", cfg.bench.warmup, 0),
        ("bench.threads", cfg.bench.threads, 0),
    ):  # fmt: skip
        rules.append((key, value, low <= value <= MAX_WIDTH, f"in [{low}, {MAX_WIDTH}]"))
    for name, widths in (("model.decoder_channels", m.decoder_channels), ("model.lite_channels", m.lite_channels)):
        ok = bool(widths) and all(1 <= c <= MAX_WIDTH for c in widths)
        rules.append((name, widths, ok, f"a non-empty list of widths in [1, {MAX_WIDTH}]"))
    rules.append(("model.head_upsample", m.head_upsample, m.head_upsample in (1, 2, 4, 8), "one of 1, 2, 4, 8"))
    finest_ok = m.decoder_finest_stride in (2, 4, 8, 16)
    rules.append(("model.decoder_finest_stride", m.decoder_finest_stride, finest_ok, "one of 2, 4, 8, 16"))
    conv_first_ok = all(v in (2, 4, 8, 16) for v in m.decoder_conv_first_strides)
    rules.append(("model.decoder_conv_first_strides", m.decoder_conv_first_strides, conv_first_ok, "among 2, 4, 8, 16"))
    strides_ok = bool(lg.strides) and all(v in (2, 4, 8, 16, 32) for v in lg.strides)
    rules.append(("model.lgconv.strides", lg.strides, strides_ok, "encoder strides among 2, 4, 8, 16, 32"))
    rules += [
        ("train.steps", t.steps, t.steps <= MAX_STEPS, f"<= {MAX_STEPS:g}"),
        ("train.warmup_steps", t.warmup_steps, t.warmup_steps <= MAX_STEPS, f"<= {MAX_STEPS:g}"),
        ("train.betas", t.betas, len(t.betas) == 2 and all(0 <= b < 1 for b in t.betas), "two numbers in [0, 1)"),
        ("train.poly_power", t.poly_power, _finite(t.poly_power) and t.poly_power > 0, "finite and > 0"),
        ("train.silog_scale", t.silog_scale, _finite(t.silog_scale) and t.silog_scale > 0, "finite and > 0"),
        ("train.silog_variance_focus", t.silog_variance_focus, 0 <= t.silog_variance_focus <= 1, "in [0, 1]"),
        ("train.end_lr_ratio", t.end_lr_ratio, 0 <= t.end_lr_ratio <= 1, "in [0, 1]"),
        ("teacher.drop_path", te.drop_path, 0 <= te.drop_path < 1, "in [0, 1)"),
    ]
    levels_ok = bool(dc.levels) and all(v > 0 and v & (v - 1) == 0 for v in dc.levels)
    rules.append(
        ("distill.levels", dc.levels, levels_ok, "a non-empty list of encoder strides (powers of two: 4, 8, 16, 32)")
    )
    for i, hw in enumerate(cfg.bench.resolutions):
        rules.append(
            (f"bench.resolutions[{i}]", hw, len(hw) == 2 and min(hw) >= 1, "[height, width] in pixels, both >= 1")
        )
    p = cfg.pipeline.bench_resolution
    rules.append(("pipeline.bench_resolution", p, len(p) == 2 and min(p) >= 1, "[height, width] in pixels, both >= 1"))
    for stage in PIPELINE_STAGES:
        b: StageBudget = getattr(cfg.pipeline, stage)
        key = f"pipeline.{stage}"
        rules.append((f"{key}.steps", b.steps, b.steps >= 0, ">= 0 (0 = train.steps)"))
        rules.append((f"{key}.lr", b.lr, _finite(b.lr) and b.lr >= 0, "finite and >= 0 (0 = train.lr)"))
        rules.append((f"{key}.batch_size", b.batch_size, b.batch_size >= 0, ">= 0 (0 = data.batch_size)"))
    problems = [f"{key}: must be {allowed}, got {value!r}" for key, value, ok, allowed in rules if not ok]
    problems += _depth_range_problems("model", cfg.model.min_depth, cfg.model.max_depth)
    problems += _depth_range_problems("teacher", cfg.teacher.min_depth, cfg.teacher.max_depth)
    problems += _depth_range_problems("eval", cfg.eval.min_depth, cfg.eval.max_depth, optional=True)
    return problems


def check_ranges(cfg: Config) -> Config:
    """Check that every numeric setting is in the range the code can use (after types are checked).

    Returns ``cfg`` unchanged. Zero keeps its documented meaning where a key has one (``eval_every: 0`` = only
    at the end, ``pipeline.<stage>.steps: 0`` = inherit ``train.steps``).

    Raises:
        ConfigError: one line naming every out-of-range dotted key, its allowed range and the value given.
    """
    problems = _range_problems(cfg)
    if problems:
        raise ConfigError("; ".join(problems))
    return cfg
