"""Config -> dataset: ``build_dataset(cfg, split, mean, std)`` dispatching on ``cfg.data.dataset``.

Augmentation is applied only to the train split (and only when ``cfg.data.augment.enabled``); the
dataset-specific defaults (BTS) fill any augmentation value the config leaves at 0 / empty.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Literal

import torch

from disdepth.config import Config, ConfigError
from disdepth.data import kitti, nyu
from disdepth.data.csv import CSVDataset, csv_columns
from disdepth.data.io import Transform
from disdepth.data.sample import IMAGENET_MEAN, IMAGENET_STD
from disdepth.data.synthetic import SyntheticDepthDataset  # written by the synthetic-data issue
from disdepth.data.transforms import train_augmentation

log = logging.getLogger(__name__)

Split = Literal["train", "val", "test"]

# Per-dataset augmentation defaults: (crop (H, W) or None, rotation degrees, brightness range).
AUGMENT_DEFAULTS: dict[str, tuple[tuple[int, int] | None, float, tuple[float, float]]] = {
    "kitti": (kitti.TRAIN_CROP, kitti.ROTATE_DEGREES, kitti.BRIGHTNESS),
    "nyu": (nyu.TRAIN_CROP, nyu.ROTATE_DEGREES, nyu.BRIGHTNESS),
    "csv": (None, 2.5, (0.9, 1.1)),
    "synthetic": (None, 2.5, (0.9, 1.1)),
}


def _finite(x: float) -> bool:
    return x == x and x not in (float("inf"), float("-inf"))


def _range(key: str, lo_hi: list[float], lo: float, hi: float, positive: bool = False) -> list[str]:
    """A [low, high] factor range of the augmentation: two finite numbers, low <= high, inside [lo, hi]."""
    ok = (len(lo_hi) == 2 and all(_finite(v) and lo <= v <= hi for v in lo_hi) and lo_hi[0] <= lo_hi[1]
          and not (positive and min(lo_hi) <= 0))  # fmt: skip
    return [] if ok else [f"{key}: must be [low, high] with {lo:g} {'<' if positive else '<='} low <= high <= {hi:g}, "
                          f"got {lo_hi!r}"]  # fmt: skip


def data_config_problems(cfg: Config) -> list[str]:
    """Values of ``data.augment`` and ``data.synthetic`` that no dataset can use, as ``"<key>: must be ..."``.

    ``check_ranges`` (config/validation.py) covers the rest of ``data``; these sections are read only here.
    """
    a, s = cfg.data.augment, cfg.data.synthetic
    problems = [
        f"{key}: must be {rule}, got {value!r}"
        for key, value, ok, rule in [
            ("data.augment.crop_height", a.crop_height, a.crop_height >= 0, ">= 0 pixels (0 = dataset default)"),
            ("data.augment.crop_width", a.crop_width, a.crop_width >= 0, ">= 0 pixels (0 = dataset default)"),
            ("data.augment.rotate_degrees", a.rotate_degrees, _finite(a.rotate_degrees) and a.rotate_degrees <= 180,
             "finite and <= 180 degrees (negative = dataset default)"),
            ("data.augment.color_prob", a.color_prob, 0 <= a.color_prob <= 1, "in [0, 1]"),
            ("data.synthetic.n_train", s.n_train, s.n_train >= 1, ">= 1"),
            ("data.synthetic.n_val", s.n_val, s.n_val >= 1, ">= 1"),
            ("data.synthetic.height", s.height, s.height >= 1, ">= 1 pixel"),
            ("data.synthetic.width", s.width, s.width >= 1, ">= 1 pixel"),
            ("data.synthetic.seed", s.seed, s.seed >= 0, ">= 0"),
            ("data.synthetic.sparse_density", s.sparse_density, 0 < s.sparse_density <= 1, "in (0, 1]"),
            ("data.synthetic.depth_noise", s.depth_noise, _finite(s.depth_noise) and s.depth_noise >= 0,
             "finite and >= 0"),
            ("data.synthetic.holes", s.holes, 0 <= s.holes < 1, "in [0, 1)"),
        ]
        if not ok
    ]  # fmt: skip
    problems += _range("data.augment.gamma", a.gamma, 0, 10, positive=True)
    problems += _range("data.augment.color", a.color, 0, 10, positive=True)
    if a.brightness:  # [] = the dataset's default
        problems += _range("data.augment.brightness", a.brightness, 0, 10, positive=True)
    return problems


def check_data_config(cfg: Config) -> None:
    """Raise one :class:`ConfigError` naming every bad ``data.augment`` / ``data.synthetic`` key."""
    problems = data_config_problems(cfg)
    if problems:
        raise ConfigError("; ".join(problems))


def build_transform(cfg: Config, split: Split, generator: torch.Generator | None = None) -> Transform | None:
    """The augmentation for ``split`` (None for val/test or when disabled)."""
    aug = cfg.data.augment
    if split != "train" or not aug.enabled:
        return None
    crop_default, rot_default, bright_default = AUGMENT_DEFAULTS[cfg.data.dataset]
    if aug.crop_height > 0 and aug.crop_width > 0:
        crop: tuple[int, int] | None = (aug.crop_height, aug.crop_width)
    elif aug.crop_height > 0 or aug.crop_width > 0:
        raise ValueError(f"data.augment: set both crop_height and crop_width (got {aug.crop_height}x{aug.crop_width})")
    else:
        crop = crop_default
    return train_augmentation(
        crop_hw=crop,
        rotate_degrees=aug.rotate_degrees if aug.rotate_degrees >= 0 else rot_default,
        hflip=aug.hflip,
        gamma=aug.gamma,
        brightness=aug.brightness or bright_default,
        color=aug.color,
        color_prob=aug.color_prob,
        generator=generator,
    )


def list_for_split(cfg: Config, split: Split) -> str:
    """The list/CSV file for a split (val falls back to test); raises ValueError naming the key."""
    d = cfg.data
    path = {"train": d.train_list, "val": d.val_list or d.test_list, "test": d.test_list}[split]
    if not path:
        key = "data.val_list (or data.test_list)" if split == "val" else f"data.{split}_list"
        raise ValueError(f"{key} is empty: dataset {d.dataset!r} needs a list file for the {split} split")
    return path


def roots_for_split(cfg: Config, split: Split) -> tuple[str, str]:
    """(image root, depth root) for a split: val/test use ``eval_root``/``eval_gt_root`` where set (BTS)."""
    d = cfg.data
    if split != "train" and d.eval_root:
        return d.eval_root, d.eval_gt_root or d.eval_root
    if split != "train" and d.eval_gt_root:
        return d.root, d.eval_gt_root
    return d.root, d.gt_root


def kb_crop_enabled(cfg: Config) -> bool:
    """``data.kb_crop``, with None meaning on for KITTI and off for everything else."""
    return cfg.data.kb_crop if cfg.data.kb_crop is not None else cfg.data.dataset == "kitti"


def build_dataset(
    cfg: Config,
    split: Split,
    mean: tuple[float, float, float] = IMAGENET_MEAN,
    std: tuple[float, float, float] = IMAGENET_STD,
) -> torch.utils.data.Dataset:
    """Dataset of :class:`~disdepth.data.sample.DepthSample` for ``split``.

    Args:
        cfg: the resolved config (``cfg.data`` is read).
        split: ``train`` (augmented, frames without GT dropped), ``val`` or ``test``.
        mean, std: the encoder's normalisation.

    Raises:
        ValueError / FileNotFoundError naming the config key or file.
    """
    if split not in ("train", "val", "test"):
        raise ValueError(f"split must be train, val or test, got {split!r}")
    check_data_config(cfg)
    d = cfg.data
    transform = build_transform(cfg, split)
    train = split == "train"
    if d.dataset == "synthetic":
        s = d.synthetic
        # Optional renderer knobs, forwarded once the synthetic issue adds them to SyntheticConfig.
        extra = {k: getattr(s, k) for k in ("sparse_density", "depth_noise", "holes") if hasattr(s, k)}
        return SyntheticDepthDataset(
            preset=s.preset,
            length=s.n_train if train else s.n_val,
            height=s.height,
            width=s.width,
            seed=s.seed,
            index_offset=0 if train else s.n_train,  # val/test frames never overlap the train frames
            sparse=s.sparse,
            mean=mean,
            std=std,
            transform=transform,
            **extra,
        )
    list_file = list_for_split(cfg, split)
    if not train and d.train_list and Path(list_file).resolve() == Path(d.train_list).resolve():
        log.warning(
            "data.%s_list is the same file as data.train_list (%s): its scores, and the best.pt picked on them, "
            "measure frames the model trained on", "val" if d.val_list else "test", list_file,
        )  # fmt: skip
    root, gt_root = roots_for_split(cfg, split)
    # Training drops frames without ground truth unless the teacher teaches them (label-free, data.require_depth).
    require_depth = train and d.require_depth
    if d.dataset == "kitti":
        return kitti.KittiDataset(
            list_file,
            root,
            gt_root,
            depth_scale=d.depth_scale,
            kb_crop=kb_crop_enabled(cfg),
            transform=transform,
            use_right=d.use_right and train,
            require_depth=require_depth,
            mean=mean,
            std=std,
        )
    if d.dataset == "nyu":
        return nyu.NYUDataset(
            list_file,
            root,
            gt_root,
            depth_scale=d.depth_scale,
            border_crop=d.nyu_border_crop and train,
            transform=transform,
            require_depth=require_depth,
            mean=mean,
            std=std,
        )
    if d.dataset == "csv":
        return CSVDataset(
            list_file,
            root,
            depth_scale=d.depth_scale,
            kb_crop=kb_crop_enabled(cfg),
            transform=transform,
            require_depth=require_depth,
            # An images-only CSV (no depth column) is a label-free training set when depth is not required.
            images_only=not require_depth and "depth" not in csv_columns(list_file),
            mean=mean,
            std=std,
        )
    raise ValueError(f"data.dataset: unknown dataset {d.dataset!r}")
