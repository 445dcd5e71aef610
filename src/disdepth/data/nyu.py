"""NYU Depth V2 in the BTS layout (``/scene/rgb_00045.jpg /scene/sync_depth_00045.png 518.8579``).

Train frames come from BTS's ``sync`` folder, test frames from ``official_splits/test`` (654 images,
Eigen split); ``data.root`` is the folder the list's paths are relative to. Depth PNGs are 16-bit,
metres = value / 1000, 480x640.
"""

from __future__ import annotations

from pathlib import Path

from disdepth.data.io import DataError, FileDepthDataset, Record, Transform, read_bts_list, with_depth
from disdepth.data.sample import IMAGENET_MEAN, IMAGENET_STD
from disdepth.data.transforms import NYUBorderCrop

NYU_DEPTH_SCALE = 1000.0  # BTS sync_depth PNGs are millimetres
NYU_FOCAL = 518.8579  # NYU Depth V2 RGB fx (toolbox camera_params.m), as in BTS's list files
NYU_MAX_DEPTH = 10.0  # Eigen et al. 2014 cap
TRAIN_CROP = (416, 544)  # BTS input_height x input_width for NYU
ROTATE_DEGREES = 2.5  # BTS --degree 2.5 for NYU
BRIGHTNESS = (0.75, 1.25)  # BTS augment_image, NYU
# NYU toolbox RGB intrinsics (fx, fy, cx, cy) at 480x640, as the toolbox prints them.
NYU_INTRINSICS = (518.8579, 519.4696, 325.5824, 253.7362)


def nyu_records(
    list_file: str | Path,
    root: str | Path,
    gt_root: str | Path = "",
    depth_scale: float = 0.0,
    errors: list[DataError] | None = None,
) -> list[Record]:
    """Records of an NYU BTS list (``depth_scale`` 0 = 1000) with the toolbox intrinsics scaled to each focal.

    ``errors``: collect malformed lines instead of raising, as in :func:`~disdepth.data.io.read_bts_list`.
    """
    records = read_bts_list(list_file, root, gt_root, depth_scale or NYU_DEPTH_SCALE, NYU_FOCAL, errors)
    out = []
    for r in records:
        # The list gives fx only; fy/cx/cy are the toolbox's, scaled if the list's focal differs.
        k = r.focal / NYU_INTRINSICS[0]
        intr = (r.focal, NYU_INTRINSICS[1] * k, NYU_INTRINSICS[2] * k, NYU_INTRINSICS[3] * k)
        out.append(Record(r.rgb, r.depth, r.depth_scale, r.focal, intr, r.id, r.source))
    return out


class NYUDataset(FileDepthDataset):
    """NYU Depth V2 from a BTS list file.

    Args:
        list_file, root, gt_root: the list and the folder(s) its paths are relative to.
        border_crop: drop the white border (train; BTS crops [45:472, 43:608] before augmenting).
        transform: augmentation (train only).
        require_depth: drop lines without ground truth; a list with none at all is a DataError (``no_depth``).
    """

    def __init__(
        self,
        list_file: str | Path,
        root: str | Path,
        gt_root: str | Path = "",
        depth_scale: float = 0.0,
        border_crop: bool = False,
        transform: Transform | None = None,
        require_depth: bool = False,
        mean: tuple[float, float, float] = IMAGENET_MEAN,
        std: tuple[float, float, float] = IMAGENET_STD,
    ) -> None:
        records = nyu_records(list_file, root, gt_root, depth_scale)
        if require_depth:
            records = with_depth(records, list_file)
        super().__init__(records, pre=NYUBorderCrop() if border_crop else None, transform=transform, mean=mean, std=std)
