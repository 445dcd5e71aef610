"""Inputs for prediction: files, folders and videos, checked up front; images read upright as 8-bit RGB.

Image conversion rules (the same for ``disdepth predict`` and :func:`disdepth.api.to_tensor` on a PIL image):

* EXIF orientation is applied (``PIL.ImageOps.exif_transpose``), so a phone photo is predicted upright and
  the outputs have the upright size.
* 8-bit greyscale (``L``, ``1``) and palette images are converted to RGB (grey copied to R, G and B).
* An alpha channel (``RGBA``, ``LA``, ``PA``, palette or RGB transparency) is composited on **white**; an
  all-opaque alpha channel is simply dropped.
* 16-bit / 32-bit single-channel images (PIL modes ``I;16*``, ``I``, ``F``) are **refused**: in practice
  they are depth maps (KITTI/NYU 16-bit PNGs), not photos, and reading them as 8-bit would saturate them
  to white.

Each conversion that changes the picture is returned as a note (``exif``, ``greyscale``, ``alpha``), which
``disdepth predict`` records in ``predictions.json``.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

from disdepth.data.io import IMAGE_SUFFIXES, DataError

IMAGE_EXTS = IMAGE_SUFFIXES
VIDEO_EXTS = {".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg", ".gif"}

# PIL modes holding more than 8 bits in one channel: depth maps, not photos (see the module docstring).
HIGH_BIT_MODES = {
    "I;16": "16-bit", "I;16L": "16-bit", "I;16B": "16-bit", "I;16N": "16-bit", "I": "32-bit", "F": "32-bit float",
}  # fmt: skip
ALPHA_MODES = {"RGBA", "LA", "PA", "RGBa", "La"}
EXIF_ORIENTATION = 0x0112


@dataclass(frozen=True)
class Source:
    """One input: ``path`` read as ``kind`` ("image" | "video"); outputs go to ``out/name*``.

    ``size`` is the stored (H, W) of an image from its header (EXIF rotation does not change its pixel count).
    """

    path: Path
    kind: str
    name: str
    size: tuple[int, int] | None = None


@dataclass
class Frame:
    """One image to predict: ``rgb`` (H, W, 3) uint8 upright, written as ``name``; ``notes`` say what was converted."""

    source: Source
    name: str
    rgb: np.ndarray
    notes: dict[str, str] = field(default_factory=dict)


# ---------------------------------------------------------------------------------------------- conversion


def _refuse_high_bit(im: Image.Image, source: str | Path) -> None:
    """Raise DataError for a 16/32-bit single-channel image (a depth map, not a photo), naming its value range."""
    bits = HIGH_BIT_MODES.get(im.mode)
    if bits is None:
        return
    try:
        lo, hi = im.getextrema()  # decodes the image; only on this error path
        values = f", values {lo:g}..{hi:g}"
    except Exception:  # noqa: BLE001 - the range is a courtesy; the refusal is the message
        values = ""
    raise DataError(
        source,
        f"{bits} single-channel image (PIL mode {im.mode}{values}) looks like a depth map, not a photo; "
        "predict needs an RGB or 8-bit greyscale image (convert a 16-bit greyscale photo to 8-bit first)",
        "format",
    )


def to_rgb(im: Image.Image, source: str | Path = "image") -> tuple[np.ndarray, dict[str, str]]:
    """A PIL image -> (H, W, 3) uint8 RGB, upright, plus notes on what was converted (module docstring rules).

    Args:
        im: any PIL image; an image opened from a file carries its EXIF orientation.
        source: the file (or a label) named in errors.

    Raises:
        DataError: a 16/32-bit single-channel image (looks like a depth map).
    """
    notes: dict[str, str] = {}
    _refuse_high_bit(im, source)
    orientation = im.getexif().get(EXIF_ORIENTATION, 1)
    if orientation in range(2, 9):
        im = ImageOps.exif_transpose(im)
        notes["exif"] = f"EXIF orientation {orientation} applied (rotated/flipped upright)"
    if im.mode in ("L", "1", "LA", "La"):
        notes["greyscale"] = "single-channel greyscale, copied to R, G and B"
    if im.mode in ALPHA_MODES or (im.mode in ("P", "L", "RGB") and "transparency" in im.info):
        rgba = im.convert("RGBA")
        alpha = np.asarray(rgba)[..., 3]
        if alpha.size and alpha.min() < 255:  # an all-opaque alpha channel is simply dropped
            im = Image.alpha_composite(Image.new("RGBA", rgba.size, (255, 255, 255, 255)), rgba)
            notes["alpha"] = f"alpha channel: {int((alpha < 255).sum())} (semi-)transparent pixels composited on white"
        else:
            im = rgba
    rgb = np.array(im.convert("RGB"), dtype=np.uint8)  # a writable, contiguous copy
    return rgb, notes


def read_rgb(path: str | Path) -> tuple[np.ndarray, dict[str, str]]:
    """Read an image file as upright (H, W, 3) uint8 RGB (see :func:`to_rgb`).

    Raises:
        FileNotFoundError: the file does not exist.
        DataError: unreadable, too large to decode in memory, or a depth-map-like 16/32-bit image.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: image file not found")
    try:
        with Image.open(path) as im:
            return to_rgb(im, path)
    except DataError:
        raise
    except MemoryError:
        raise DataError(path, "not enough memory to decode this image; make it smaller first", "size") from None
    except Exception as exc:  # PIL raises many types (UnidentifiedImageError, OSError, SyntaxError, bomb errors)
        raise DataError(path, f"unreadable image ({exc.__class__.__name__}: {exc})", "unreadable") from None


def check_image(path: str | Path) -> tuple[int, int]:
    """Stored (H, W) of an image from its header, refusing depth-map-like 16/32-bit images (cheap).

    Raises:
        FileNotFoundError / DataError naming the file.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: image file not found")
    try:
        with Image.open(path) as im:
            w, h = im.size
            _refuse_high_bit(im, path)
    except DataError:
        raise
    except Exception as exc:
        raise DataError(path, f"unreadable image ({exc.__class__.__name__}: {exc})", "unreadable") from None
    return h, w


# ---------------------------------------------------------------------------------------------- discovery


def collect_sources(inputs: list[str], skip_under: Path | None = None) -> list[Source]:
    """Expand files and folders into sources, checking each one before any model work starts.

    Folders contribute their image files (recursively, sorted); a file given explicitly must be an
    image or a video. Images are checked from their header (readable, not a 16-bit depth map). Files under
    ``skip_under`` (the output folder, when it lies inside an input folder) are left out: a re-run must not read
    its own earlier outputs as inputs.

    Raises:
        FileNotFoundError: a missing file or folder.
        DataError: an unreadable image, a depth-map-like image, an unsupported extension, a folder with no
            images, or two inputs that would write the same output name.
    """
    sources: list[Source] = []
    for text in inputs:
        path = Path(text)
        if path.is_dir():
            files = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_EXTS)
            if skip_under is not None and skip_under.resolve() != path.resolve():  # the same folder: refused later
                skip = skip_under.resolve()
                files = [p for p in files if not p.resolve().is_relative_to(skip)]
            if not files:
                raise DataError(path, f"folder has no images ({', '.join(sorted(IMAGE_EXTS))})", "format")
            sources += [Source(p, "image", p.relative_to(path).with_suffix("").as_posix()) for p in files]
        elif path.is_file():
            ext = path.suffix.lower()
            if ext in IMAGE_EXTS:
                sources.append(Source(path, "image", path.stem))
            elif ext in VIDEO_EXTS:
                sources.append(Source(path, "video", path.stem))
            else:
                raise DataError(
                    path,
                    f"unsupported input type {ext or '(no extension)'}: expected an image "
                    f"({', '.join(sorted(IMAGE_EXTS))}), a video ({', '.join(sorted(VIDEO_EXTS))}) or a folder",
                    "format",
                )
        else:
            raise FileNotFoundError(f"{path}: input not found")
    seen: dict[str, Path] = {}
    checked = []
    for s in sources:
        if s.name in seen:
            raise DataError(s.path, f"writes the same output name {s.name!r} as {seen[s.name]}; rename one", "format")
        seen[s.name] = s.path
        if s.kind == "image":  # unreadable -> DataError naming the file, before the model is loaded
            s = Source(s.path, s.kind, s.name, check_image(s.path))
        else:
            check_video(s.path)
        checked.append(s)
    return checked


def check_video(path: Path) -> None:
    """Fail early (naming the file) when a video cannot be decoded: no PyAV, or a file it cannot open."""
    if path.suffix.lower() == ".gif":
        check_image(path)  # animated GIFs are decoded frame by frame with Pillow
        return
    try:
        import av
    except ImportError:
        raise DataError(
            path,
            "reading video needs PyAV, which is not installed: pip install av "
            "(torchvision >= 0.22 no longer decodes video); or extract frames to a folder of images",
            "format",
        ) from None
    try:
        with av.open(str(path)) as container:
            if not container.streams.video:
                raise DataError(path, "no video stream in this file", "format")
    except DataError:
        raise
    except Exception as exc:
        raise DataError(path, f"unreadable video ({exc.__class__.__name__}: {exc})", "unreadable") from None


def video_frames(path: Path) -> Iterator[np.ndarray]:
    """(H, W, 3) uint8 RGB frames of a video (PyAV) or an animated GIF (Pillow)."""
    try:
        if path.suffix.lower() == ".gif":
            from PIL import ImageSequence

            with Image.open(path) as im:
                for frame in ImageSequence.Iterator(im):
                    yield np.array(frame.convert("RGB"))  # a writable copy
            return
        import av

        with av.open(str(path)) as container:
            for frame in container.decode(video=0):
                yield frame.to_ndarray(format="rgb24")
    except DataError:
        raise
    except MemoryError:
        raise DataError(path, "not enough memory to decode a frame of this video", "size") from None
    except Exception as exc:  # decoders raise many types; name the file
        raise DataError(path, f"unreadable video ({exc.__class__.__name__}: {exc})", "unreadable") from None


def iter_frames(sources: list[Source], every: int = 1) -> Iterator[Frame]:
    """Every image, upright RGB, and every ``every``-th video frame (``NAME/frame_000123``), in input order."""
    for s in sources:
        if s.kind == "image":
            rgb, notes = read_rgb(s.path)
            yield Frame(s, s.name, rgb, notes)
            continue
        for i, rgb in enumerate(video_frames(s.path)):
            if i % every == 0:
                yield Frame(s, f"{s.name}/frame_{i:06d}", rgb)
