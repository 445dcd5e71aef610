"""File IO for RGB-D datasets: images, 16-bit depth PNGs, list records and the file-backed dataset base.

Every reader raises an error whose message names the file and the problem (docs/data.md, "Bad input"): anything wrong
with a file is a :class:`DataError` (a ``ValueError``; a missing file is its subclass
:class:`MissingFileError`, also a ``FileNotFoundError``), so the CLI prints one line instead of a traceback
and ``data check`` can collect them. Both survive a trip through a DataLoader worker.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from disdepth.data.sample import IMAGENET_MEAN, IMAGENET_STD, DepthSample, RawSample, normalize_sample

# 16-bit depth PNGs mark missing depth with 0; 7-Scenes and some Kinect tools use 65535 instead.
INVALID_RAW_VALUES: tuple[int, ...] = (0, 65535)
# Accepted ``depth_scale`` (PNG units per metre): one unit between 100 m and 1 um. Real encodings are
# 1000 (mm: NYU, 7-Scenes, SUN), 256 (KITTI), 5000 (TUM); outside this a scale is a typo or a unit mix-up.
DEPTH_SCALE_RANGE: tuple[float, float] = (1e-2, 1e6)
# Largest depth believed, metres: beyond every depth sensor and the synthetic world. Larger values mean a
# wrong scale or an "infinity" marker (sky) that should have been written as 0.
MAX_DEPTH_M = 1e4
# Largest frame handed to a network, pixels (4096 x 4096 = 16.8 MP, the limit ``disdepth predict`` uses): a CNN's
# activations at full resolution grow with the pixel count (an 8000 x 8000 frame needs tens of GB even for a tiny
# student), so a larger frame must be cropped (``data.augment.crop_height/crop_width``) or resized first.
MAX_FRAME_PIXELS = 4096 * 4096
# PIL modes of single-channel 16-bit images (I;16N is the native-endian variant some decoders give).
_MODES_16BIT = ("I;16", "I;16B", "I;16L", "I;16N")
_CONVERT_HINT = "save depth in metres x depth_scale as a uint16 PNG (Image.fromarray(arr.astype(np.uint16)))"

# DataError.problem -> a short reason shared by every file with that problem (for skip counts and summaries).
PROBLEMS: dict[str, str] = {
    "missing": "file not found",
    "unreadable": "unreadable file",
    "encoding": "not UTF-8 text",
    "format": "wrong file format or malformed line",
    "8bit": "8-bit depth image (depth PNGs must be 16-bit)",
    "size": "depth and image sizes differ",
    "nan": "NaN/inf depth",
    "negative": "negative depth",
    "range": f"depth beyond {MAX_DEPTH_M:g} m (wrong depth_scale?)",
    "scale": "invalid depth_scale",
    "no_valid": "no valid depth pixel",
    "no_depth": "no depth in the list",
    "transform": "sample does not fit the transform",
    "crop": "frame smaller than the crop",
    "duplicate": "depth file listed twice",
    "too_large": "frame too large for the network (crop or resize it)",
    "invalid": "invalid data",
}

FLOAT_DEPTH_SUFFIXES = (".npy", ".npz")  # depth stored as float metres, read without a depth_scale

# The documented route for images without depth, named wherever a list without depth is refused or reported.
LABEL_FREE_ROUTE = "set data.require_depth=false to train from it label-free (the teacher's depth is the target)"


class DataError(ValueError):
    """A dataset file is present but wrong (unreadable, wrong size, NaN/negative depth ...).

    ``str(error)`` is one line, ``"<path>: <message>"``. Constructed from that single string (as torch's
    DataLoader does when it re-raises a worker's exception: ``DataError(worker_text)``) it recovers path and
    message from the worker's traceback text, so the main process gets the same one-line error.

    Attributes:
        path: the offending file (or ``file:line``, or a config key).
        message: the problem, without the path.
        problem: a key of :data:`PROBLEMS` (``unreadable``, ``size``, ``nan``, ``8bit``, ``no_valid`` ...)
            used by ``data check`` to count problems; ``invalid`` when rebuilt from a worker's text.
    """

    problem_default = "invalid"

    def __init__(self, path: str | Path, message: str | None = None, problem: str | None = None) -> None:
        if message is None:
            path, message = _split_line(_original_line(str(path), type(self).__name__))
        super().__init__(f"{path}: {message}" if str(path) else message)
        self.path = str(path)
        self.message = message
        self.problem = problem or self.problem_default

    @property
    def reason(self) -> str:
        """Short text for the problem kind, the same for every file (e.g. to count skipped images)."""
        return PROBLEMS.get(self.problem, self.problem)


class MissingFileError(DataError, FileNotFoundError):
    """A listed file does not exist (``problem`` = ``missing``); caught by ``except FileNotFoundError`` too."""

    problem_default = "missing"


def _original_line(text: str, name: str) -> str:
    """Our one-line message inside torch's ``Caught X in DataLoader worker ...\\nOriginal Traceback ...``."""
    if "\n" not in text.strip():
        return text
    # The traceback ends with "<module>.<name>: <our message>"; take the last such line (the raised one).
    lines = re.findall(rf"^(?:[\w.]+\.)?{re.escape(name)}: (.*)$", text, flags=re.MULTILINE)
    return lines[-1] if lines else text.strip().splitlines()[-1]


def _split_line(line: str) -> tuple[str, str]:
    path, sep, message = line.partition(": ")
    return (path, message) if sep else ("", line)


def first_error(errors: list[DataError]) -> DataError:
    """One error standing for several problems of a file: the first, plus how many more there are."""
    first = errors[0]
    if len(errors) == 1:
        return first
    more = f" (and {len(errors) - 1} more problem(s); `disdepth data check` lists them all)"
    return DataError(first.path, first.message + more, first.problem)


def depth_scale_problem(scale: float, name: str = "depth_scale") -> str | None:
    """Why ``scale`` (PNG units per metre) cannot decode depth PNGs, or None when it can.

    ``name`` starts the message: the CSV column or config key the value came from.
    """
    lo, hi = DEPTH_SCALE_RANGE
    if not math.isfinite(scale) or scale <= 0:
        return f"{name} must be a finite number > 0 (PNG units per metre: 1000 = mm, 256 = KITTI), got {scale}"
    if not lo <= scale <= hi:
        return f"{name} {scale:g} is outside {lo:g}..{hi:g} (one PNG unit would be {1 / scale:g} m)"
    return None


def _require(path: Path, what: str) -> None:
    if not path.is_file():
        raise MissingFileError(path, f"{what} file not found")


def read_text_file(path: str | Path, what: str) -> str:
    """The text of a list file or CSV index (UTF-8; a BOM as Excel writes it is dropped).

    Raises:
        MissingFileError: no such file. DataError (``encoding``): not UTF-8 or binary, naming the file.
    """
    path = Path(path)
    _require(path, what)
    data = path.read_bytes()
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        message = f"{what} is not UTF-8 text (byte 0x{data[exc.start]:02x} on line {line}); save it as UTF-8"
        raise DataError(path, message, "encoding") from None
    if "\x00" in text:
        raise DataError(path, f"{what} contains NUL bytes: a binary file, not a text {what}", "encoding")
    return text


def _unreadable(path: Path, what: str, exc: Exception) -> DataError:
    return DataError(path, f"unreadable {what} ({exc.__class__.__name__}: {exc})", "unreadable")


def read_image(path: str | Path) -> torch.Tensor:
    """Read an RGB image (JPEG/PNG/any PIL format; greyscale and RGBA are converted).

    Returns:
        (3, H, W) float32 in [0, 1].

    Raises:
        MissingFileError: the file does not exist.
        DataError: PIL cannot decode it (``unreadable``: truncated, corrupt), or it is a 16-bit/float
            single-channel map - a depth file in the image column (``format``).
    """
    return _read_image_and_orientation(path)[0]


def _read_image_and_orientation(path: str | Path) -> tuple[torch.Tensor, int]:
    """:func:`read_image`, upright, and the EXIF orientation it undid (a depth map on the same grid needs it too)."""
    path = Path(path)
    _require(path, "image")
    try:
        with Image.open(path) as im:
            if im.mode in (*_MODES_16BIT, "I", "F"):
                raise DataError(
                    path, f"image is a single-channel {im.mode} map (a depth file?), not a colour image", "format"
                )
            orientation = _orientation(im)
            arr = np.asarray(im.convert("RGB"), dtype=np.uint8)
    except DataError:
        raise
    except Exception as exc:  # PIL raises many types (UnidentifiedImageError, OSError, SyntaxError)
        raise _unreadable(path, "image", exc) from None
    return orient(torch.from_numpy(arr.copy()).permute(2, 0, 1).float().div_(255.0), orientation), orientation


# EXIF orientation -> how the stored pixels become upright, on (..., H, W) tensors; the same transforms as
# PIL.ImageOps.exif_transpose, which ``disdepth predict`` applies (tests/test_reliability_data.py checks all 8).
_ORIENT = {
    2: lambda t: t.flip(-1),
    3: lambda t: t.flip(-1, -2),
    4: lambda t: t.flip(-2),
    5: lambda t: t.transpose(-1, -2),
    6: lambda t: torch.rot90(t, -1, (-2, -1)),
    7: lambda t: t.transpose(-1, -2).flip(-1, -2),
    8: lambda t: torch.rot90(t, 1, (-2, -1)),
}


def _orientation(im: Image.Image) -> int:
    """The EXIF orientation tag (1 = stored upright; anything unreadable counts as 1)."""
    try:
        value = int(im.getexif().get(0x0112, 1))
    except Exception:  # a broken EXIF block does not make the picture unreadable
        return 1
    return value if value in _ORIENT else 1


def orient(t: torch.Tensor, orientation: int) -> torch.Tensor:
    """(..., H, W) stored pixels -> upright, for an EXIF ``orientation`` (1..8). A phone photo's depth map is stored
    on the same pixel grid as its image, so both get the same transform and stay aligned."""
    return _ORIENT[orientation](t).contiguous() if orientation in _ORIENT else t


def image_size(path: str | Path) -> tuple[int, int]:
    """(H, W) of an image or depth file from its header only (cheap), upright (EXIF orientation applied)."""
    return _size_and_orientation(path)[0]


def _size_and_orientation(path: str | Path) -> tuple[tuple[int, int], int]:
    """:func:`image_size` and the EXIF orientation, from one read of the header."""
    path = Path(path)
    _require(path, "image")
    try:
        with Image.open(path) as im:
            w, h = im.size
            orientation = _orientation(im)
    except Exception as exc:
        raise _unreadable(path, "image", exc) from None
    return ((w, h) if orientation >= 5 else (h, w)), orientation


def _depth_mode_error(path: Path, mode: str, fmt: str) -> DataError | None:
    """Why an image of PIL ``mode`` cannot be a depth map, or None for single-channel 16-bit (and 32-bit int)."""
    if mode in (*_MODES_16BIT, "I"):
        return None
    if mode in ("L", "LA", "1"):
        # 8 bits give 255 depth levels (1 m of range in KITTI's /256): a visualisation, not metric depth.
        bits = "a 1-bit" if mode == "1" else "an 8-bit greyscale"
        return DataError(path, f"depth image is {bits} {fmt}, not 16-bit: {_CONVERT_HINT}", "8bit")
    if mode in ("P", "PA"):
        return DataError(
            path, f"depth image is a palette (colour-mapped) {fmt}: a depth visualisation; {_CONVERT_HINT}", "8bit"
        )
    if mode == "F":
        return DataError(path, "depth image is 32-bit float: save float metres as .npy instead", "format")
    return DataError(
        path,
        f"depth image is a {mode} colour {fmt} (the RGB image?), not single-channel 16-bit; {_CONVERT_HINT}",
        "format",
    )


def _raw_depth_png(path: Path) -> np.ndarray:
    """The integer values of a single-channel 16-bit depth image, (H, W) int64; anything else is a DataError."""
    try:
        with Image.open(path) as im:
            mode = im.mode
            error = _depth_mode_error(path, mode, im.format or path.suffix.lstrip(".").upper())
            if error is not None:
                raise error
            raw = np.asarray(im).astype(np.int64)
    except DataError:
        raise
    except Exception as exc:
        raise _unreadable(path, "depth image", exc) from None
    if mode == "I" and raw.size and (raw.min() < 0 or raw.max() > 65535):  # 32-bit integer TIFF and the like
        raise DataError(path, f"depth values {raw.min()}..{raw.max()} do not fit 16 bits: {_CONVERT_HINT}", "format")
    return raw


def _metric_depth_npy(path: Path) -> np.ndarray:
    """Float metres from a ``.npy`` map (or a ``.npz`` holding one), (H, W) float64; NaN/inf and negative values
    are DataErrors."""
    try:
        arr = np.load(path, allow_pickle=False)
        if isinstance(arr, np.lib.npyio.NpzFile):  # .npz: its one array, or the one named "depth"
            with arr:
                keys = list(arr.keys())
                if len(keys) != 1 and "depth" not in keys:
                    raise DataError(path, f"depth .npz holds arrays {keys}; expected one, or 'depth'", "format")
                arr = arr["depth" if "depth" in keys else keys[0]]
    except DataError:
        raise
    except Exception as exc:
        raise _unreadable(path, "depth array", exc) from None
    if not np.issubdtype(arr.dtype, np.number) or np.iscomplexobj(arr):
        raise DataError(path, f"depth array has dtype {arr.dtype}, expected float metres", "format")
    arr = np.asarray(arr, dtype=np.float64)
    while arr.ndim > 2 and 1 in (arr.shape[0], arr.shape[-1]):  # (1, H, W) or (H, W, 1); keeps a 1xW map 2-D
        arr = arr[0] if arr.shape[0] == 1 else arr[..., 0]
    if arr.ndim != 2:
        raise DataError(path, f"depth must be a 2-D map, got shape {arr.shape}", "format")
    if not np.isfinite(arr).all():
        raise DataError(path, f"depth has {int((~np.isfinite(arr)).sum())} NaN/inf values", "nan")
    if (arr < 0).any():
        raise DataError(path, f"depth has {int((arr < 0).sum())} negative values (min {arr.min():g})", "negative")
    return arr


def read_depth(
    path: str | Path, scale: float, dtype: torch.dtype = torch.float64, require_valid: bool = False
) -> tuple[torch.Tensor, torch.Tensor]:
    """Read a depth map in metres.

    ``.npy`` / ``.npz``: float metres as stored (``scale`` ignored). Anything else (PNG, TIFF): a single-channel
    **16-bit** image, metres = value / ``scale``; 0 and 65535 mean no depth. 8-bit and colour images are
    refused: 8 bits cannot hold metric depth, and a colour image is usually the RGB file in the wrong column.

    Decoding is in float64, so millimetre values keep their exact ratios (800 mm / 1000 mm is 0.8, not
    0.8000000119 as in float32) and the delta metrics count exact-ratio pixels correctly
    (:mod:`disdepth.eval.metrics`). Training casts to float32 (``dtype``).

    Args:
        path: ``.png`` (or any PIL single-channel 16-bit format) or ``.npy``.
        scale: PNG units per metre (KITTI 256, NYU 1000), within :data:`DEPTH_SCALE_RANGE`.
        dtype: of the returned depth.
        require_valid: raise (``no_valid``) when no pixel has depth, e.g. for a prediction file.

    Returns:
        depth: (1, H, W) metres, 0 where invalid.
        valid: (1, H, W) bool, True where depth > 0.

    Raises:
        MissingFileError: the file does not exist.
        DataError naming the file, with ``problem``: ``unreadable``, ``8bit`` (8-bit image), ``format``
        (colour, float or multi-dimensional), ``scale``, ``nan``, ``negative``, ``range`` (beyond
        :data:`MAX_DEPTH_M`), ``no_valid`` (with ``require_valid``). ``error.reason`` is a short text the
        same for every file, for counting skipped predictions.
    """
    path = Path(path)
    _require(path, "depth")
    if path.suffix.lower() in FLOAT_DEPTH_SUFFIXES:
        depth = _metric_depth_npy(path)
    else:
        problem = depth_scale_problem(scale)
        if problem:
            raise DataError(path, problem, "scale")
        raw = _raw_depth_png(path)
        depth = np.where(np.isin(raw, INVALID_RAW_VALUES), 0.0, raw / float(scale))
    if depth.size and depth.max() > MAX_DEPTH_M:
        far = int((depth > MAX_DEPTH_M).sum())
        raise DataError(
            path,
            f"{far} pixel(s) decode beyond {MAX_DEPTH_M:g} m (max {depth.max():g} m): wrong depth_scale, or "
            "an 'infinity' value that should be 0 (no depth)",
            "range",
        )
    if require_valid and not (depth > 0).any():
        raise DataError(path, "no valid depth pixel (all 0 or 65535)", "no_valid")
    t = torch.from_numpy(np.ascontiguousarray(depth)).to(dtype)[None]
    return t, t > 0


def write_depth_png(path: str | Path, depth: torch.Tensor | np.ndarray, scale: float) -> Path:
    """Write metres as a 16-bit PNG (value = round(depth * scale), clipped to 0..65534; 0 = no depth).

    Args:
        depth: (H, W) or (1, H, W) metres.
        scale: PNG units per metre (KITTI 256, NYU 1000).
    """
    arr = depth.detach().cpu().numpy() if isinstance(depth, torch.Tensor) else np.asarray(depth)
    arr = arr.reshape(arr.shape[-2:]).astype(np.float64)  # (1, H, W) -> (H, W); squeeze would flatten a 1x1 map
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


def load_record(record: Record, with_image: bool = True, depth_dtype: torch.dtype = torch.float32) -> RawSample:
    """Read one record into a :class:`RawSample` (image [0, 1], depth metres, valid, intrinsics).

    With ``with_image=False`` the image is not decoded (only its size is read), for ground-truth-only
    uses such as offline evaluation; ``image`` is then an empty (3, 0, 0) tensor.

    Args:
        depth_dtype: float32 for training batches; float64 for scoring (exact decoded ratios, see
            :func:`read_depth`).

    Raises:
        MissingFileError / DataError naming the file: missing or unreadable files, a depth map whose
        size differs from the image's, bad depth values.
    """
    if with_image:
        image, orientation = _read_image_and_orientation(record.rgb)
        h, w = image.shape[-2:]
    else:
        (h, w), orientation = _size_and_orientation(record.rgb)
        image = torch.empty(3, 0, 0)
    if record.depth is not None:
        depth, valid = read_depth(record.depth, record.depth_scale, depth_dtype)
        # The depth shares the photo's stored pixel grid: turned upright the same way.
        depth, valid = orient(depth, orientation), orient(valid, orientation)
        if tuple(depth.shape[-2:]) != (h, w):
            raise DataError(
                record.depth,
                f"depth is {depth.shape[-1]}x{depth.shape[-2]} (WxH) but its image {record.rgb} is {w}x{h}",
                "size",
            )
    else:
        depth = torch.zeros(1, h, w, dtype=depth_dtype)
        valid = torch.zeros(1, h, w, dtype=torch.bool)
    intr = intrinsics_for(record, h, w)
    return RawSample(image=image, depth=depth, valid=valid, focal=intr[0].clone(), intrinsics=intr, id=record.id)


def with_depth(records: list[Record], list_file: str | Path) -> list[Record]:
    """The records that have ground truth (for training); a list with none at all is a DataError (``no_depth``)."""
    kept = [r for r in records if r.depth is not None]
    if records and not kept:
        raise DataError(
            list_file,
            f"{len(records)} images, no depth: supervised training needs depth; {LABEL_FREE_ROUTE}",
            "no_depth",
        )
    return kept


Transform = Callable[[RawSample], RawSample]


class FileDepthDataset(torch.utils.data.Dataset):
    """Dataset over :class:`Record`\\ s: read -> ``pre`` (deterministic crop) -> ``transform`` -> normalise.

    Every failure of a sample is a :class:`DataError` naming its file, also inside DataLoader workers.

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
        return self._load(index)[1]

    def _load(self, index: int) -> tuple[Record, RawSample]:
        record = self.records[index]
        if self.pick is not None:
            record = self.pick(record)
        return record, self._step(self.pre, load_record(record), record)

    def load_gt(self, index: int) -> RawSample:
        """Ground truth at the file's native resolution (no crop, no image decode), float64, for evaluation.

        Protocols (:mod:`disdepth.eval.protocols`) handle KB/Garg/Eigen crops themselves, exactly as
        BTS's offline evaluation does on the full-size ground truth.
        """
        return load_record(self.records[index], with_image=False, depth_dtype=torch.float64)

    def __getitem__(self, index: int) -> DepthSample:
        record, raw = self._load(index)
        sample = self._step(self.transform, raw, record)
        h, w = sample["image"].shape[-2:]
        if h * w > MAX_FRAME_PIXELS:
            raise DataError(
                record.rgb,
                f"frame {h}x{w} ({h * w / 1e6:.1f} MP) is too large to run the network on (limit "
                f"{MAX_FRAME_PIXELS / 1e6:.1f} MP): set data.augment.crop_height/crop_width for training, or resize "
                f"the files (listed at {record.source})",
                "too_large",
            )
        return normalize_sample(sample, self.mean, self.std)

    @staticmethod
    def _step(step: Transform | None, raw: RawSample, record: Record) -> RawSample:
        """Apply a crop/augmentation; its ValueError (sample too small ...) becomes a DataError naming the file.

        A plain ValueError would reach the main process from a DataLoader worker as a traceback.
        """
        if step is None:
            return raw
        try:
            return step(raw)
        except DataError:
            raise
        except ValueError as exc:
            message = str(exc).removeprefix(f"{raw['id']}: ")
            raise DataError(record.rgb, f"{message} (listed at {record.source})", "transform") from None


# Files a folder of images is read from (training folders and ``disdepth predict`` alike).
IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp", ".ppm", ".pgm"})


def path_id(rel: str) -> str:
    """Stable sample id from a relative path: drop the extension, ``/`` -> ``_`` (unique across drives)."""
    stem = rel.strip().lstrip("/").lstrip("./")
    stem = stem.rsplit(".", 1)[0] if "." in Path(stem).name else stem
    return stem.replace("/", "_").replace("\\", "_")


def positive_number(text: str, what: str, where: str) -> float:
    """``float(text)`` when it is a finite number > 0, else a DataError (``format``) naming ``where`` and ``what``."""
    try:
        value = float(text)
    except ValueError:
        raise DataError(where, f"{what} {text!r} is not a number", "format") from None
    if not math.isfinite(value) or value <= 0:
        raise DataError(where, f"{what} must be a finite number > 0, got {text!r}", "format")
    return value


def read_bts_list(
    list_file: str | Path,
    root: str | Path,
    gt_root: str | Path,
    depth_scale: float,
    default_focal: float,
    errors: list[DataError] | None = None,
) -> list[Record]:
    """Parse a BTS-format list file: ``rgb_path depth_path_or_None [focal]`` per line.

    Paths are relative to ``root`` (images) and ``gt_root`` (depth); a leading ``/`` (BTS's NYU train
    list writes ``/kitchen_0028b/rgb_00045.jpg``) is ignored. ``None`` as depth path means the frame
    has no ground truth (KITTI Eigen test has 45 such lines; BTS skips them in evaluation).

    Args:
        errors: collect malformed lines (and a bad ``depth_scale``) here and skip them, so ``data check``
            reports all of them; None = raise once the whole file is read (the first, plus a count).

    Raises:
        MissingFileError: the list file is missing. DataError: not UTF-8 (``encoding``), no sample lines,
        or (without ``errors``) malformed lines, each named ``file:line``.
    """
    list_file = Path(list_file)
    text = read_text_file(list_file, "list file")
    root, gt_root = Path(root), Path(gt_root or root)
    found: list[DataError] = []
    problem = depth_scale_problem(depth_scale, "data.depth_scale")
    if problem:  # one problem for the file, not one per depth file
        found.append(DataError(list_file, problem, "scale"))
    records: list[Record] = []
    for n, line in enumerate(text.splitlines(), start=1):
        parts = line.split()
        if not parts or parts[0].startswith("#"):
            continue
        where = f"{list_file}:{n}"
        try:
            if not 2 <= len(parts) <= 3:
                raise DataError(
                    where,
                    f"expected 'rgb_path depth_path [focal]' (3 fields, no spaces in paths), got "
                    f"{len(parts)} field(s): {line.strip()!r}",
                    "format",
                )
            focal = positive_number(parts[2], "focal", where) if len(parts) > 2 else default_focal
        except DataError as exc:
            found.append(exc)
            continue
        rgb_rel, depth_rel = parts[0].lstrip("/"), parts[1].lstrip("/")
        depth = None if depth_rel == "None" else gt_root / depth_rel
        records.append(Record(root / rgb_rel, depth, depth_scale, focal, None, path_id(rgb_rel), where))
    return finish_records(list_file, records, found, errors)


def finish_records(
    source: Path, records: list[Record], found: list[DataError], errors: list[DataError] | None
) -> list[Record]:
    """End of parsing a list or CSV: hand the problems ``found`` to ``errors``, or raise them (no collector).

    Records whose depth_scale is bad are dropped once the problem is collected: it was reported once for the
    file or row, and every one of their depth files would fail again with it.

    Raises:
        DataError: without ``errors``, the first problem (plus a count); a file without any sample.
    """
    if found and errors is None:
        raise first_error(found)
    if errors is not None:
        errors.extend(found)
    if not records and not found:
        raise DataError(source, "no samples listed", "format")
    return [r for r in records if not scale_problem_of(r)]


def scale_problem_of(record: Record) -> str | None:
    """Why ``record``'s depth_scale cannot decode its depth PNG, or None (no depth, ``.npy`` or a good scale)."""
    if record.depth is None or record.depth.suffix.lower() in FLOAT_DEPTH_SUFFIXES:
        return None
    return depth_scale_problem(record.depth_scale)
