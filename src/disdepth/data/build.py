"""Config -> dataset: ``build_dataset(cfg, split, mean, std)`` dispatching on ``cfg.data.dataset``.

Augmentation is applied only to the train split (and only when ``cfg.data.augment.enabled``); the
dataset-specific defaults (BTS) fill any augmentation value the config leaves at 0 / empty.
"""

from __future__ import annotations

from typing import Literal

import torch

from disdepth.config import Config
from disdepth.data import kitti, nyu
from disdepth.data.csv import CSVDataset, csv_columns
from disdepth.data.io import Transform
from disdepth.data.sample import IMAGENET_MEAN, IMAGENET_STD
from disdepth.data.synthetic import SyntheticDepthDataset  # written by the synthetic-data issue
from disdepth.data.transforms import train_augmentation

Split = Literal["train", "val", "test"]

# Per-dataset augmentation defaults: (crop (H, W) or None, rotation degrees, brightness range).
AUGMENT_DEFAULTS: dict[str, tuple[tuple[int, int] | None, float, tuple[float, float]]] = {
    "kitti": (kitti.TRAIN_CROP, kitti.ROTATE_DEGREES, kitti.BRIGHTNESS),
    "nyu": (nyu.TRAIN_CROP, nyu.ROTATE_DEGREES, nyu.BRIGHTNESS),
    "csv": (None, 2.5, (0.9, 1.1)),
    "synthetic": (None, 2.5, (0.9, 1.1)),
}


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
