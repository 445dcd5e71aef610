"""Size limits for inference and one clear error when memory runs out (instead of a MemoryError traceback).

A student needs roughly 0.45 KB of memory per network pixel at inference (mobilenetv2_100 with the default
decoder, batch 1, measured peak: 437 B/px at 1024x1024), so a 64 MP photo run at its own size needs ~28 GB.
The default limit, 4096x4096 = 16.8 MP (~7.5 GB), admits a 12 MP phone photo and refuses what would not fit
on a typical machine; ``--max-megapixels`` moves it.
"""

from __future__ import annotations

import math
import re
from pathlib import Path

import torch

from disdepth.data.io import DataError

MAX_RUN_MEGAPIXELS = 4096 * 4096 / 1e6  # 16.8 MP (see the module docstring)
SUGGESTED_LONG_SIDE = 1024  # the --size suggested for a too-large image: long side 1024, aspect kept, /32

_OOM = re.compile(r"out of memory|can't allocate|cannot allocate|not enough memory|alloc", re.IGNORECASE)


def suggest_size(
    height: int,
    width: int,
    max_megapixels: float = MAX_RUN_MEGAPIXELS,
    long_side: int = SUGGESTED_LONG_SIDE,
    multiple: int = 32,
) -> tuple[int, int]:
    """A network (H, W) for an image: its aspect ratio, long side at most ``long_side``, within the limit.

    Both sides are multiples of ``multiple`` (at least one multiple); the image is never scaled up.
    """
    scale = min(1.0, long_side / max(height, width, 1))
    if max_megapixels > 0:
        scale = min(scale, math.sqrt(max_megapixels * 1e6 / max(height * width, 1)))
    return tuple(max(multiple, int(v * scale / multiple) * multiple) for v in (height, width))  # type: ignore[return-value]


def _mp(pixels: float) -> str:
    mp = pixels / 1e6
    return f"{mp:.1f} MP" if mp >= 1 else f"{mp:.2g} MP"


def check_run_size(
    source: str | Path, height: int, width: int, run_size: tuple[int, int], max_megapixels: float
) -> None:
    """Refuse, before the model runs, an image the network would run on at more than ``max_megapixels``.

    Args:
        source: the input named in the error.
        height, width: the image's size in pixels.
        run_size: (h, w) the network would run at.
        max_megapixels: the limit; 0 or less = no limit.

    Raises:
        DataError: naming the file, both sizes, the limit and a ``--size HxW`` that would fit.
    """
    run_h, run_w = run_size
    if max_megapixels <= 0 or run_h * run_w <= max_megapixels * 1e6:
        return
    sh, sw = suggest_size(height, width, max_megapixels)
    where = "at its own size" if (run_h, run_w) == (height, width) else f"at {run_h}x{run_w}"
    raise DataError(
        source,
        f"image is {height}x{width} (HxW, {_mp(height * width)}); the network would run {where} "
        f"({_mp(run_h * run_w)}), above the {_mp(max_megapixels * 1e6)} limit (--max-megapixels); "
        f"pass --size HxW to run it smaller, e.g. --size {sh}x{sw}",
        "size",
    )


def is_out_of_memory(exc: BaseException) -> bool:
    """True for MemoryError, torch's (CUDA) OutOfMemoryError and allocator RuntimeErrors (``... alloc ...``)."""
    if isinstance(exc, MemoryError):
        return True
    oom_type = getattr(torch, "OutOfMemoryError", None) or getattr(torch.cuda, "OutOfMemoryError", None)
    if oom_type is not None and isinstance(exc, oom_type):
        return True
    return isinstance(exc, RuntimeError) and bool(_OOM.search(str(exc)))


def out_of_memory_error(
    source: str | Path, height: int, width: int, run_size: tuple[int, int], batch: int = 1
) -> DataError:
    """The one-line error for running out of memory on ``source`` (raise it ``from None``)."""
    run_h, run_w = run_size
    # Suggest at most half the long side that ran out (and never above the usual 1024).
    sh, sw = suggest_size(height, width, long_side=min(SUGGESTED_LONG_SIDE, max(run_h, run_w) // 2))
    batch_text = f", batch of {batch}; try --batch-size 1" if batch > 1 else ""
    return DataError(
        source,
        f"out of memory predicting a {height}x{width} (HxW) image with the network at {run_h}x{run_w} "
        f"({_mp(run_h * run_w)}{batch_text}); pass --size HxW to run it smaller, e.g. --size {sh}x{sw}",
        "size",
    )
