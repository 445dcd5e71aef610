"""Custom datasets from a CSV index: the format of ``../shared/data/*/index.csv`` (docs/data.md).

Required columns: ``rgb``, ``depth`` (paths relative to the base folder: ``data.root``, else the CSV's
own folder; an empty ``depth`` cell means no ground truth). Optional: ``id``, ``depth_scale`` (PNG
units per metre; else ``data.depth_scale``), ``fx, fy, cx, cy`` (pixels at the file's resolution) or
``focal``. Other columns are ignored. ``.npy`` depth files hold float metres and need no scale.
"""

from __future__ import annotations

import csv
from pathlib import Path

from disdepth.data.io import DataError, FileDepthDataset, Record, Transform, path_id
from disdepth.data.sample import IMAGENET_MEAN, IMAGENET_STD
from disdepth.data.transforms import KBCrop

DEFAULT_FOCAL = 500.0  # used only when a row has neither fx nor focal; metric depth does not need it


def _float(row: dict[str, str], key: str, where: str) -> float | None:
    text = (row.get(key) or "").strip()
    if not text:
        return None
    try:
        return float(text)
    except ValueError:
        raise DataError(where, f"column {key!r} is not a number: {text!r}", "format") from None


def csv_records(
    csv_file: str | Path, root: str | Path = "", depth_scale: float = 0.0, images_only: bool = False
) -> list[Record]:
    """Parse a CSV index into records.

    Args:
        csv_file: the index.
        root: base folder for relative paths ("" = the CSV's folder).
        depth_scale: PNG units per metre for rows without a ``depth_scale`` cell (0 = none given).
        images_only: only ``rgb`` is required and any ``depth`` cell is ignored (unlabelled images for
            ``distill.unlabelled_list``).

    Raises:
        FileNotFoundError: no such CSV. DataError (naming ``file:row``): missing columns, bad numbers,
        a PNG depth with no scale anywhere, duplicate ids.
    """
    csv_file = Path(csv_file)
    if not csv_file.is_file():
        raise FileNotFoundError(f"{csv_file}: CSV index not found")
    base = Path(root) if root else csv_file.parent
    with csv_file.open(newline="") as fh:
        reader = csv.DictReader(fh)
        columns = [c.strip() for c in reader.fieldnames or []]
        missing = [c for c in (("rgb",) if images_only else ("rgb", "depth")) if c not in columns]
        if missing:
            raise DataError(csv_file, f"missing column(s) {missing}; found {columns}", "format")
        rows = [{(k or "").strip(): (v or "") for k, v in row.items()} for row in reader]
    records: list[Record] = []
    seen: dict[str, str] = {}
    for n, row in enumerate(rows, start=2):  # row 1 is the header
        where = f"{csv_file}:{n}"
        rgb = row["rgb"].strip()
        if not rgb:
            raise DataError(where, "empty 'rgb' cell", "format")
        depth_rel = "" if images_only else row["depth"].strip()
        depth = None if depth_rel in ("", "None") else base / depth_rel
        scale = None if images_only else _float(row, "depth_scale", where) or depth_scale
        if depth is not None and depth.suffix.lower() != ".npy" and not scale:
            raise DataError(where, "PNG depth needs a depth_scale (column, or data.depth_scale)", "format")
        fx, fy, cx, cy = (_float(row, k, where) for k in ("fx", "fy", "cx", "cy"))
        focal = fx or _float(row, "focal", where) or DEFAULT_FOCAL
        intr = (fx, fy or fx, cx, cy) if fx and cx is not None and cy is not None else None
        sample_id = row.get("id", "").strip() or path_id(rgb)
        if sample_id in seen:
            raise DataError(where, f"duplicate id {sample_id!r} (first at {seen[sample_id]})", "format")
        seen[sample_id] = where
        records.append(Record(base / rgb, depth, scale or 1.0, focal, intr, sample_id, where))  # type: ignore[arg-type]
    if not records:
        raise DataError(csv_file, "CSV index has no rows", "format")
    return records


class CSVDataset(FileDepthDataset):
    """A custom dataset from a CSV index (see module docstring).

    Args:
        csv_file, root, depth_scale: see :func:`csv_records`.
        kb_crop: KB crop to 352x1216 (for KITTI-like CSVs such as ``kitti_samples``).
        pre: another fixed crop before augmentation (e.g. ``NYUBorderCrop``), instead of ``kb_crop``.
        transform: augmentation (train only).
        require_depth: drop rows without depth.
        images_only: see :func:`csv_records`.
    """

    def __init__(
        self,
        csv_file: str | Path,
        root: str | Path = "",
        depth_scale: float = 0.0,
        kb_crop: bool = False,
        transform: Transform | None = None,
        require_depth: bool = False,
        mean: tuple[float, float, float] = IMAGENET_MEAN,
        std: tuple[float, float, float] = IMAGENET_STD,
        images_only: bool = False,
        pre: Transform | None = None,
    ) -> None:
        if kb_crop and pre is not None:
            raise ValueError("CSVDataset: give kb_crop or pre, not both")
        records = csv_records(csv_file, root, depth_scale, images_only)
        if require_depth:
            records = [r for r in records if r.depth is not None]
        super().__init__(records, pre=KBCrop() if kb_crop else pre, transform=transform, mean=mean, std=std)
