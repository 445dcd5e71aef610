"""KITTI Eigen split in the BTS list format (``rgb_path depth_path_or_None focal``).

Images live under ``data.root`` (KITTI raw: ``2011_09_26/2011_09_26_drive_0002_sync/image_02/data/
0000000069.png``) and depth under ``data.gt_root`` (``2011_09_26_drive_0002_sync/proj_depth/
groundtruth/image_02/0000000069.png``), as in BTS's ``kitti_eigen_{train,test}_files_with_gt.txt``.
Depth PNGs are 16-bit, metres = value / 256, 0 = no LiDAR return (sparse).
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import torch

from disdepth.data.io import DataError, FileDepthDataset, Record, Transform, read_bts_list, with_depth
from disdepth.data.sample import IMAGENET_MEAN, IMAGENET_STD
from disdepth.data.transforms import KBCrop

KITTI_DEPTH_SCALE = 256.0  # KITTI depth benchmark devkit: depth = png / 256
KITTI_FOCAL = 721.5377  # fx of camera 02 (2011_09_26 calibration); BTS lists repeat it per line
KITTI_MAX_DEPTH = 80.0  # Eigen et al. 2014 cap, used by every KITTI result we compare with
TRAIN_CROP = (352, 704)  # BTS input_height x input_width for KITTI
ROTATE_DEGREES = 1.0  # BTS --degree 1.0 for KITTI
BRIGHTNESS = (0.9, 1.1)  # BTS augment_image, KITTI


class _UseRight:
    """BTS ``--use_right``: with p = 0.5 read camera 03 (right) instead of 02, same GT folder layout."""

    def __init__(self, p: float = 0.5) -> None:
        self.p = p

    def __call__(self, record: Record) -> Record:
        if float(torch.rand(())) >= self.p or "image_02" not in str(record.rgb):
            return record
        depth = Path(str(record.depth).replace("image_02", "image_03")) if record.depth else None
        return replace(record, rgb=Path(str(record.rgb).replace("image_02", "image_03")), depth=depth)


def kitti_records(
    list_file: str | Path,
    root: str | Path,
    gt_root: str | Path,
    depth_scale: float = 0.0,
    errors: list[DataError] | None = None,
) -> list[Record]:
    """Records of a KITTI BTS list (``depth_scale`` 0 = 256); ``errors`` as in :func:`read_bts_list`."""
    return read_bts_list(list_file, root, gt_root, depth_scale or KITTI_DEPTH_SCALE, KITTI_FOCAL, errors)


class KittiDataset(FileDepthDataset):
    """KITTI from a BTS list file.

    Args:
        list_file, root, gt_root: the BTS list and the folders its paths are relative to.
        kb_crop: KB crop every sample to 352x1216 first (BTS ``--do_kb_crop``; needed to batch
            drives of different sizes, 370x1224 .. 376x1241).
        transform: augmentation (train only).
        use_right: train-time camera swap (see :class:`_UseRight`).
        require_depth: drop lines without ground truth (``None``) - always for training; a list with no
            ground truth at all is a DataError (``no_depth``).

    Returns samples per :mod:`disdepth.data.sample`; ``load_gt`` gives the uncropped GT for the
    protocols in :mod:`disdepth.eval.protocols`.
    """

    def __init__(
        self,
        list_file: str | Path,
        root: str | Path,
        gt_root: str | Path = "",
        depth_scale: float = 0.0,
        kb_crop: bool = True,
        transform: Transform | None = None,
        use_right: bool = False,
        require_depth: bool = False,
        mean: tuple[float, float, float] = IMAGENET_MEAN,
        std: tuple[float, float, float] = IMAGENET_STD,
    ) -> None:
        records = kitti_records(list_file, root, gt_root, depth_scale)
        if require_depth:
            records = with_depth(records, list_file)
        super().__init__(
            records,
            pre=KBCrop() if kb_crop else None,
            transform=transform,
            mean=mean,
            std=std,
            pick=_UseRight() if use_right else None,
        )


__all__ = ["KittiDataset", "kitti_records", "KITTI_DEPTH_SCALE", "KITTI_MAX_DEPTH"]
