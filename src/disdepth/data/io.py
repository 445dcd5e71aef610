"""File IO for RGB-D datasets: images, 16-bit depth PNGs, list records and the file-backed dataset base.

Every reader raises an error whose message names the file and the problem (DESIGN.md §3): a missing
file is :class:`FileNotFoundError`, anything else wrong with a file is :class:`DataError` (a
``ValueError``), so the CLI prints one line instead of a traceback and ``data check`` can collect them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from disdepth.data.sample import IMAGENET_MEAN, IMAGENET_STD, DepthSample, RawSample, normalize_sample

# 16-bit depth PNGs mark missing depth with 0; 7-Scenes and some Kinect tools use 65535 instead.
INVALID_RAW_VALUES: tuple[int, ...] = (0, 65535)


class DataError(ValueError):
    """A dataset file is present but wrong (unreadable, wrong size, NaN/negative depth ...).

    Attributes:
        path: the offending file.
        problem: a short machine-friendly category (``unreadable``, ``size``, ``nan``, ``negative``,
            ``no_valid``, ``format``) used by ``data check`` to count problems.
    """

    def __init__(self, path: str | Path, message: str, problem: str = "invalid") -> None:
        super().__init__(f"{path}: {message}")
        self.path = str(path)
        self.problem = problem


def _require(path: Path, what: str) -> None:
    if not path.is_file():
        raise FileNotFoundError(f"{path}: {what} file not found")


def read_image(path: str | Path) -> torch.Tensor:
    """Read an RGB image (JPEG/PNG/any PIL format; greyscale and RGBA are converted).

    Returns:
        (3, H, W) float32 in [0, 1].

    Raises:
        FileNotFoundError: the file does not exist.
        DataError: PIL cannot decode it.
    """
    path = Path(path)
    _require(path, "image")
    try:
        with Image.open(path) as im:
            arr = np.asarray(im.convert("RGB"), dtype=np.uint8)
    except Exception as exc:  # PIL raises many types (UnidentifiedImageError, OSError, SyntaxError)
        raise DataError(path, f"unreadable image ({exc.__class__.__name__}: {exc})", "unreadable") from None
    return torch.from_numpy(arr.copy()).permute(2, 0, 1).float().div_(255.0)


def image_size(path: str | Path) -> tuple[int, int]:
    """(H, W) of an image or depth file from its header only (cheap)."""
    path = Path(path)
    _require(path, "image")
    try:
        with Image.open(path) as im:
            w, h = im.size
    except Exception as exc:
        raise DataError(path, f"unreadable image ({exc.__class__.__name__}: {exc})", "unreadable") from None
    return h, w


def read_depth(path: str | Path, scale: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Read a depth map in metres.

    ``.png`` (16-bit or 8-bit greyscale): metres = value / ``scale``; 0 and 65535 mean no depth.
    ``.npy``: float metres as stored (``scale`` ignored); 0, NaN-free and non-negative required.

    Returns:
        depth: (1, H, W) float32 metres, 0 where invalid.
        valid: (1, H, W) bool, True where depth > 0.

    Raises:
        FileNotFoundError: the file does not exist.
        DataError: unreadable, not a single-channel map, NaN/inf or negative values.
    """
    path = Path(path)
    _require(path, "depth")
    if path.suffix.lower() == ".npy":
        try:
            arr = np.load(path, allow_pickle=False)
        except Exception as exc:
            raise DataError(path, f"unreadable depth array ({exc})", "unreadable") from None
        arr = np.squeeze(np.asarray(arr, dtype=np.float32))
        if arr.ndim != 2:
            raise DataError(path, f"depth must be a 2-D map, got shape {arr.shape}", "format")
        if not np.isfinite(arr).all():
            raise DataError(path, f"depth has {int((~np.isfinite(arr)).sum())} NaN/inf values", "nan")
        if (arr < 0).any():
            raise DataError(path, f"depth has {int((arr < 0).sum())} negative values (min {arr.min():g})", "negative")
        depth = arr
    else:
        if scale <= 0:
            raise DataError(path, f"depth_scale must be > 0 to read a PNG, got {scale}", "format")
        try:
            with Image.open(path) as im:
                if im.mode not in ("I;16", "I;16B", "I", "L", "I;16L"):
                    raise DataError(path, f"depth PNG must be single-channel 8/16-bit, got mode {im.mode}", "format")
                raw = np.asarray(im)
        except DataError:
            raise
        except Exception as exc:
            raise DataError(path, f"unreadable depth image ({exc.__class__.__name__}: {exc})", "unreadable") from None
        raw = raw.astype(np.int64)
        if (raw < 0).any():  # only possible for 32-bit "I" images
            raise DataError(path, "depth PNG has negative values", "negative")
        invalid = np.isin(raw, INVALID_RAW_VALUES)
        depth = np.where(invalid, 0.0, raw / float(scale)).astype(np.float32)
    t = torch.from_numpy(np.ascontiguousarray(depth))[None]
    return t, t > 0


def write_depth_png(path: str | Path, depth: torch.Tensor | np.ndarray, scale: float) -> Path:
    """Write metres as a 16-bit PNG (value = round(depth * scale), clipped to 0..65534; 0 = no depth).

    Args:
        depth: (H, W) or (1, H, W) metres.
        scale: PNG units per metre (KITTI 256, NYU 1000).
    """
    arr = depth.detach().cpu().numpy() if isinstance(depth, torch.Tensor) else np.asarray(depth)
    arr = np.squeeze(arr).astype(np.float64)
    arr = np.nan_to_num(arr, nan=0.0, posinf=0.0, neginf=0.0)
    raw = np.clip(np.round(arr * scale), 0, 65534).astype(np.uint16)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(raw).save(path)
    return path


@dataclass(frozen=True)
class Record:
    """One RGB(-D) pair from a list file or CSV.

    Attributes:
        rgb: image path.
        depth: depth path, or None where the list has no ground truth (KITTI ``None``).
        depth_scale: PNG units per metre.
        focal: fx in pixels at the file's resolution.
        intrinsics: (fx, fy, cx, cy) pixels, or None to derive from ``focal`` and the image centre.
        id: stable unique name (relative path without extension, ``/`` -> ``_``).
        source: ``file:line`` it came from, for error messages.
    """

    rgb: Path
    depth: Path | None
    depth_scale: float
    focal: float
    intrinsics: tuple[float, float, float, float] | None
    id: str
    source: str


def intrinsics_for(record: Record, height: int, width: int) -> torch.Tensor:
    """(4,) float32 (fx, fy, cx, cy); missing principal point = image centre ((W-1)/2, (H-1)/2)."""
    if record.intrinsics is not None:
        return torch.tensor(record.intrinsics, dtype=torch.float32)
    return torch.tensor([record.focal, record.focal, (width - 1) / 2, (height - 1) / 2], dtype=torch.float32)


def load_record(record: Record, with_image: bool = True) -> RawSample:
    """Read one record into a :class:`RawSample` (image [0, 1], depth metres, valid, intrinsics).

    With ``with_image=False`` the image is not decoded (only its size is read), for ground-truth-only
    uses such as offline evaluation; ``image`` is then an empty (3, 0, 0) tensor.

    Raises:
        FileNotFoundError / DataError naming the file: missing or unreadable files, a depth map whose
        size differs from the image's.
    """
    if with_image:
        image = read_image(record.rgb)
        h, w = image.shape[-2:]
    else:
        h, w = image_size(record.rgb)
        image = torch.empty(3, 0, 0)
    if record.depth is not None:
        depth, valid = read_depth(record.depth, record.depth_scale)
        if tuple(depth.shape[-2:]) != (h, w):
            raise DataError(
                record.depth,
                f"depth is {depth.shape[-1]}x{depth.shape[-2]} (WxH) but its image {record.rgb} is {w}x{h}",
                "size",
            )
    else:
        depth = torch.zeros(1, h, w)
        valid = torch.zeros(1, h, w, dtype=torch.bool)
    intr = intrinsics_for(record, h, w)
    return RawSample(image=image, depth=depth, valid=valid, focal=intr[0].clone(), intrinsics=intr, id=record.id)


Transform = Callable[[RawSample], RawSample]


class FileDepthDataset(torch.utils.data.Dataset):
    """Dataset over :class:`Record`\\ s: read -> ``pre`` (deterministic crop) -> ``transform`` -> normalise.

    Args:
        records: the pairs to serve.
        pre: deterministic per-dataset step applied in every split (e.g. KITTI KB crop).
        transform: random augmentation (train split only), RawSample -> RawSample.
        mean, std: the encoder's normalisation.
        pick: optional hook (record, index) -> record applied before reading (KITTI ``use_right``).
    """

    def __init__(
        self,
        records: list[Record],
        pre: Transform | None = None,
        transform: Transform | None = None,
        mean: tuple[float, float, float] = IMAGENET_MEAN,
        std: tuple[float, float, float] = IMAGENET_STD,
        pick: Callable[[Record], Record] | None = None,
    ) -> None:
        self.records = list(records)
        self.pre = pre
        self.transform = transform
        self.mean = tuple(mean)
        self.std = tuple(std)
        self.pick = pick

    def __len__(self) -> int:
        return len(self.records)

    def load_raw(self, index: int) -> RawSample:
        """The sample after ``pre`` but before augmentation and normalisation."""
        record = self.records[index]
        if self.pick is not None:
            record = self.pick(record)
        raw = load_record(record)
        return self.pre(raw) if self.pre is not None else raw

    def load_gt(self, index: int) -> RawSample:
        """Ground truth at the file's native resolution (no crop, no image decode) for evaluation.

        Protocols (:mod:`disdepth.eval.protocols`) handle KB/Garg/Eigen crops themselves, exactly as
        BTS's offline evaluation does on the full-size ground truth.
        """
        return load_record(self.records[index], with_image=False)

    def __getitem__(self, index: int) -> DepthSample:
        raw = self.load_raw(index)
        if self.transform is not None:
            raw = self.transform(raw)
        return normalize_sample(raw, self.mean, self.std)


def path_id(rel: str) -> str:
    """Stable sample id from a relative path: drop the extension, ``/`` -> ``_`` (unique across drives)."""
    stem = rel.strip().lstrip("/").lstrip("./")
    stem = stem.rsplit(".", 1)[0] if "." in Path(stem).name else stem
    return stem.replace("/", "_").replace("\\", "_")


def read_bts_list(
    list_file: str | Path,
    root: str | Path,
    gt_root: str | Path,
    depth_scale: float,
    default_focal: float,
) -> list[Record]:
    """Parse a BTS-format list file: ``rgb_path depth_path_or_None [focal]`` per line.

    Paths are relative to ``root`` (images) and ``gt_root`` (depth); a leading ``/`` (BTS's NYU train
    list writes ``/kitchen_0028b/rgb_00045.jpg``) is ignored. ``None`` as depth path means the frame
    has no ground truth (KITTI Eigen test has 45 such lines; BTS skips them in evaluation).

    Raises:
        FileNotFoundError: the list file is missing.
        DataError: a malformed line (message gives ``file:line``).
    """
    list_file = Path(list_file)
    if not list_file.is_file():
        raise FileNotFoundError(f"{list_file}: list file not found")
    root, gt_root = Path(root), Path(gt_root or root)
    records: list[Record] = []
    for n, line in enumerate(list_file.read_text().splitlines(), start=1):
        parts = line.split()
        if not parts or parts[0].startswith("#"):
            continue
        where = f"{list_file}:{n}"
        if len(parts) < 2:
            raise DataError(where, f"expected 'rgb_path depth_path focal', got {line!r}", "format")
        try:
            focal = float(parts[2]) if len(parts) > 2 else default_focal
        except ValueError:
            raise DataError(where, f"focal {parts[2]!r} is not a number", "format") from None
        rgb_rel, depth_rel = parts[0].lstrip("/"), parts[1].lstrip("/")
        depth = None if depth_rel == "None" else gt_root / depth_rel
        records.append(Record(root / rgb_rel, depth, depth_scale, focal, None, path_id(rgb_rel), where))
    if not records:
        raise DataError(list_file, "list file has no samples", "format")
    return records
