"""Custom datasets from a CSV index: the format of ``../shared/data/*/index.csv`` (docs/data.md).

Required columns: ``rgb``, ``depth`` (paths relative to the base folder: ``data.root``, else the CSV's
own folder; an empty ``depth`` cell means no ground truth). Optional: ``id``, ``depth_scale`` (PNG
units per metre; else ``data.depth_scale``), ``fx, fy, cx, cy`` (pixels at the file's resolution) or
``focal``. Other columns are ignored. ``.npy`` depth files hold float metres and need no scale.
A CSV without a ``depth`` column (or with every depth cell empty) holds images only: usable as
``distill.unlabelled_list`` for label-free distillation, not for supervised training.

A folder in place of the CSV is a folder of images only: every image file under it (recursively, sorted by path),
its id the path relative to the folder (as ``path_id`` makes it). No index to write for 100 k unlabelled photos.
"""

from __future__ import annotations

import csv
import io
import math
from pathlib import Path

from disdepth.data.io import (
    FLOAT_DEPTH_SUFFIXES,
    IMAGE_SUFFIXES,
    LABEL_FREE_ROUTE,
    DataError,
    FileDepthDataset,
    Record,
    Transform,
    depth_scale_problem,
    finish_records,
    path_id,
    positive_number,
    read_text_file,
    scale_problem_of,
    with_depth,
)
from disdepth.data.sample import IMAGENET_MEAN, IMAGENET_STD
from disdepth.data.transforms import KBCrop

DEFAULT_FOCAL = 500.0  # used only when a row has neither fx nor focal; metric depth does not need it


def read_csv_table(csv_file: str | Path) -> tuple[list[str], list[tuple[int, list[str]]]]:
    """The header (column names stripped and lower-cased) and the non-blank rows with their line numbers.

    Raises:
        MissingFileError: no such file. DataError naming the file: not UTF-8, no header, or text the
        CSV parser rejects (``file:line``).
    """
    csv_file = Path(csv_file)
    reader = csv.reader(io.StringIO(read_text_file(csv_file, "CSV index"), newline=""))
    rows: list[tuple[int, list[str]]] = []
    try:
        for row in reader:
            if any(cell.strip() for cell in row):
                rows.append((reader.line_num, row))
    except csv.Error as exc:
        raise DataError(f"{csv_file}:{reader.line_num}", f"malformed CSV ({exc})", "format") from None
    if not rows:
        raise DataError(csv_file, "CSV index is empty (no header row)", "format")
    (_, header), *body = rows
    # Column names as users write them: "RGB", " Depth " and "rgb" are one column; a name given twice is an error
    # (which of the two would be read is a guess).
    columns = [c.strip().lower() for c in header]
    repeated = sorted({c for c in columns if c and columns.count(c) > 1})
    if repeated:
        raise DataError(csv_file, f"column(s) {repeated} appear more than once in the header; keep one", "format")
    return columns, body


def csv_columns(csv_file: str | Path) -> list[str]:
    """The column names of a CSV index (``data check`` uses them to tell an images-only CSV); a folder of images
    has one, ``rgb``."""
    if Path(csv_file).is_dir():
        return ["rgb"]
    return read_csv_table(csv_file)[0]


def folder_records(folder: Path) -> list[Record]:
    """Every image under ``folder`` (recursive, sorted by path) as an images-only record.

    Raises:
        DataError naming the folder: no images in it, or two files with one id (``a.jpg`` and ``a.png``).
    """
    files = sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise DataError(folder, f"folder has no images ({', '.join(sorted(IMAGE_SUFFIXES))})", "format")
    records, seen = [], {}
    for path in files:
        rel = path.relative_to(folder).as_posix()
        sample_id = path_id(rel)
        if sample_id in seen:
            raise DataError(folder, f"{rel} and {seen[sample_id]} have one id {sample_id!r}; rename one", "format")
        seen[sample_id] = rel
        records.append(Record(path, None, 1.0, DEFAULT_FOCAL, None, sample_id, str(path)))
    return records


def _cell(row: dict[str, str], key: str, where: str) -> float | None:
    """A numeric cell: None when empty, else a finite float (DataError naming the column otherwise)."""
    text = row.get(key, "").strip()
    if not text:
        return None
    try:
        value = float(text)
    except ValueError:
        raise DataError(where, f"column {key!r} is not a number: {text!r}", "format") from None
    if not math.isfinite(value):
        raise DataError(where, f"column {key!r} must be finite, got {text!r}", "format")
    return value


def _row_scale(row: dict[str, str], where: str, fallback: float) -> float | None:
    """The row's ``depth_scale`` cell (checked), else ``fallback`` (0 = none given -> None; checked by the caller)."""
    text = row.get("depth_scale", "").strip()
    if not text:
        return fallback or None
    try:
        scale = float(text)
    except ValueError:
        raise DataError(where, f"column 'depth_scale' is not a number: {text!r}", "scale") from None
    problem = depth_scale_problem(scale, "column 'depth_scale'")
    if problem:
        raise DataError(where, problem, "scale")
    return scale


def _record(row: dict[str, str], base: Path, where: str, depth_scale: float, images_only: bool) -> Record:
    """One CSV row as a :class:`Record`; any bad cell is a DataError naming ``file:line`` and the column."""
    rgb = row["rgb"].strip()
    if not rgb:
        raise DataError(where, "empty 'rgb' cell", "format")
    depth_rel = "" if images_only else row.get("depth", "").strip()
    depth = None if depth_rel in ("", "None") else base / depth_rel
    scale = None if images_only else _row_scale(row, where, depth_scale)
    if depth is not None and depth.suffix.lower() not in FLOAT_DEPTH_SUFFIXES and not scale:
        raise DataError(where, "PNG depth needs a depth_scale (column, or data.depth_scale)", "scale")
    fx, fy, cx, cy = (_cell(row, k, where) for k in ("fx", "fy", "cx", "cy"))
    for key, value in (("fx", fx), ("fy", fy)):
        if value is not None and value <= 0:
            raise DataError(where, f"column {key!r} must be > 0 (pixels), got {value:g}", "format")
    focal_text = row.get("focal", "").strip()
    focal = fx or (positive_number(focal_text, "column 'focal'", where) if focal_text else DEFAULT_FOCAL)
    intr = (fx, fy or fx, cx, cy) if fx and cx is not None and cy is not None else None
    sample_id = row.get("id", "").strip() or path_id(rgb)
    return Record(base / rgb, depth, scale or 1.0, focal, intr, sample_id, where)  # type: ignore[arg-type]


def csv_records(
    csv_file: str | Path,
    root: str | Path = "",
    depth_scale: float = 0.0,
    images_only: bool = False,
    errors: list[DataError] | None = None,
) -> list[Record]:
    """Parse a CSV index into records.

    Args:
        csv_file: the index.
        root: base folder for relative paths ("" = the CSV's folder).
        depth_scale: PNG units per metre for rows without a ``depth_scale`` cell (0 = none given).
        images_only: only ``rgb`` is required and any ``depth`` cell is ignored (unlabelled images for
            ``distill.unlabelled_list``).
        errors: collect bad rows here and skip them (``data check`` reports every one); None = raise
            after reading the whole file (the first bad row, plus how many more).

    Raises:
        MissingFileError: no such CSV. DataError (naming ``file`` or ``file:line``): not UTF-8, missing
        columns, no rows; without ``errors`` also bad rows: a cell count that differs from the header's,
        non-numeric or non-positive numbers, a bad or missing depth_scale, duplicate ids.
    """
    csv_file = Path(csv_file)
    if csv_file.is_dir():  # a folder of images: images only, whatever ``images_only`` says
        return folder_records(csv_file)
    base = Path(root) if root else csv_file.parent
    columns, body = read_csv_table(csv_file)
    missing = [c for c in (("rgb",) if images_only else ("rgb", "depth")) if c not in columns]
    if missing:
        hint = f" (a CSV of images only: {LABEL_FREE_ROUTE})" if missing == ["depth"] else ""
        raise DataError(csv_file, f"missing column(s) {missing}; found {columns}{hint}", "format")
    found: list[DataError] = []
    records: list[Record] = []
    seen: dict[str, str] = {}
    for line, cells in body:
        where = f"{csv_file}:{line}"
        try:
            if len(cells) != len(columns):
                raise DataError(
                    where, f"row has {len(cells)} cells but the header has {len(columns)} columns", "format"
                )
            record = _record(dict(zip(columns, cells, strict=True)), base, where, depth_scale, images_only)
            if record.id in seen:
                raise DataError(where, f"duplicate id {record.id!r} (first at {seen[record.id]})", "format")
        except DataError as exc:
            found.append(exc)
            continue
        seen[record.id] = where
        records.append(record)
    if any(scale_problem_of(r) for r in records):  # rows' own cells are checked: this is data.depth_scale
        # One problem for the config value, not one per row that relies on it.
        found.insert(0, DataError(csv_file, str(depth_scale_problem(depth_scale, "data.depth_scale")), "scale"))
    return finish_records(csv_file, records, found, errors)


class CSVDataset(FileDepthDataset):
    """A custom dataset from a CSV index (see module docstring).

    Args:
        csv_file, root, depth_scale: see :func:`csv_records`.
        kb_crop: KB crop to 352x1216 (for KITTI-like CSVs such as ``kitti_samples``).
        pre: another fixed crop before augmentation (e.g. ``NYUBorderCrop``), instead of ``kb_crop``.
        transform: augmentation (train only).
        require_depth: drop rows without depth; a CSV with no depth at all is a DataError (``no_depth``).
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
        if require_depth and Path(csv_file).is_dir():
            raise DataError(csv_file, f"a folder holds images only, no depth; {LABEL_FREE_ROUTE}", "no_depth")
        if require_depth and not images_only and "depth" not in csv_columns(csv_file):
            raise DataError(
                csv_file,
                f"no 'depth' column: supervised training needs depth; for a CSV of images only, {LABEL_FREE_ROUTE}",
                "no_depth",
            )
        records = csv_records(csv_file, root, depth_scale, images_only)
        if require_depth:
            records = with_depth(records, csv_file)
        super().__init__(records, pre=KBCrop() if kb_crop else pre, transform=transform, mean=mean, std=std)
