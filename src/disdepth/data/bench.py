"""``disdepth data bench``: data-loading throughput (images/s) with augmentation, 1 and 2 workers.

It writes small fixture datasets in the BTS layouts to a temporary folder (NYU: 480x640 JPEG +
16-bit depth PNG; KITTI: 375x1242 PNG + sparse 16-bit depth PNG), so it needs no data, and times the
real training path: ``build_dataset(cfg, "train")`` (read -> KB/border crop -> rotate -> random
crop -> flip -> colour -> normalise) under a ``DataLoader``.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from disdepth.config import Config
from disdepth.data.build import build_dataset
from disdepth.data.io import write_depth_png

KITTI_DRIVE = "2011_09_26_drive_0001_sync"


def _scene(rng: np.random.Generator, h: int, w: int) -> tuple[np.ndarray, np.ndarray]:
    """A smooth RGB image (uint8 HxWx3) and a depth ramp (HxW metres, near at the bottom)."""
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    rgb = np.stack([xx / w, yy / h, 0.5 + 0.5 * np.sin(xx / 23.0 + yy / 17.0)], -1) * 200
    rgb += rng.normal(0, 12, rgb.shape)  # texture so JPEG/PNG sizes are realistic
    depth = 1.0 + 9.0 * (1.0 - yy / h) + 0.5 * np.sin(xx / 50.0)
    return np.clip(rgb, 0, 255).astype(np.uint8), depth.astype(np.float32)


def write_nyu_fixture(root: str | Path, n: int = 8, size: tuple[int, int] = (480, 640), seed: int = 0) -> Path:
    """NYU BTS layout under ``root``: ``scene/rgb_XXXXX.jpg``, ``scene/sync_depth_XXXXX.png`` (/1000).

    Returns:
        the list file (``/scene/rgb_00000.jpg /scene/sync_depth_00000.png 518.8579`` lines).
    """
    root, rng = Path(root), np.random.default_rng(seed)
    (root / "bench_scene").mkdir(parents=True, exist_ok=True)
    lines = []
    for i in range(n):
        rgb, depth = _scene(rng, *size)
        Image.fromarray(rgb).save(root / "bench_scene" / f"rgb_{i:05d}.jpg", quality=95)
        write_depth_png(root / "bench_scene" / f"sync_depth_{i:05d}.png", depth, 1000.0)
        lines.append(f"/bench_scene/rgb_{i:05d}.jpg /bench_scene/sync_depth_{i:05d}.png 518.8579")
    list_file = root / "nyu_list.txt"
    list_file.write_text("\n".join(lines) + "\n")
    return list_file


def write_kitti_fixture(
    root: str | Path, n: int = 8, size: tuple[int, int] = (375, 1242), seed: int = 0, density: float = 0.05
) -> Path:
    """KITTI BTS layout: ``raw/<date>/<drive>/image_02/data/N.png`` and ``gt/<drive>/proj_depth/groundtruth/
    image_02/N.png`` (/256, sparse: about ``density`` of pixels valid, LiDAR-like).

    Returns:
        the list file (``<date>/<drive>/image_02/data/N.png <drive>/proj_depth/.../N.png 721.5377``).
    """
    root, rng = Path(root), np.random.default_rng(seed)
    img_dir = root / "raw" / "2011_09_26" / KITTI_DRIVE / "image_02" / "data"
    gt_dir = root / "gt" / KITTI_DRIVE / "proj_depth" / "groundtruth" / "image_02"
    img_dir.mkdir(parents=True, exist_ok=True)
    gt_dir.mkdir(parents=True, exist_ok=True)
    lines = []
    for i in range(n):
        rgb, depth = _scene(rng, *size)
        depth = depth * 8.0  # outdoor range
        depth[rng.random(depth.shape) > density] = 0.0
        depth[: size[0] // 3] = 0.0  # no LiDAR returns in the sky
        Image.fromarray(rgb).save(img_dir / f"{i:010d}.png", compress_level=1)
        write_depth_png(gt_dir / f"{i:010d}.png", depth, 256.0)
        rel_img = f"2011_09_26/{KITTI_DRIVE}/image_02/data/{i:010d}.png"
        rel_gt = f"{KITTI_DRIVE}/proj_depth/groundtruth/image_02/{i:010d}.png"
        lines.append(f"{rel_img} {rel_gt} 721.5377")
    list_file = root / "kitti_list.txt"
    list_file.write_text("\n".join(lines) + "\n")
    return list_file


def bench_config(kind: str, root: Path, list_file: Path) -> Config:
    cfg = Config()
    cfg.data.dataset = kind  # type: ignore[assignment]
    cfg.data.train_list = str(list_file)
    cfg.data.root = str(root / "raw") if kind == "kitti" else str(root)
    cfg.data.gt_root = str(root / "gt") if kind == "kitti" else ""
    cfg.data.augment.enabled = True
    cfg.data.augment.color_prob = 1.0  # always pay for the colour step: a worst case
    return cfg


def time_loader(dataset: torch.utils.data.Dataset, workers: int, batch_size: int, n_images: int) -> float:
    """Images/s after the first batch (worker start-up excluded) over about ``n_images`` images."""
    from torch.utils.data import DataLoader, RandomSampler

    sampler = RandomSampler(dataset, replacement=True, num_samples=n_images + batch_size)
    loader = DataLoader(dataset, batch_size=batch_size, sampler=sampler, num_workers=workers, drop_last=True)
    it = iter(loader)
    next(it)  # warm-up: worker start-up and first reads
    count, start = 0, time.perf_counter()
    for batch in it:
        count += batch["image"].shape[0]
    return count / (time.perf_counter() - start)


def run_bench(
    workers: list[int], n_images: int = 48, batch_size: int = 4, files: int = 8, sizes: list[str] | None = None
) -> list[dict[str, object]]:
    """Benchmark rows: ``{"dataset", "input", "output", "workers", "images_per_s"}``."""

    rows: list[dict[str, object]] = []
    torch.manual_seed(0)
    with tempfile.TemporaryDirectory(prefix="disdepth-bench-") as tmp:
        for kind in sizes or ["nyu", "kitti"]:
            root = Path(tmp) / kind
            if kind == "nyu":
                list_file, inp, out = write_nyu_fixture(root, files), "480x640 jpg", "416x544"
            else:
                list_file, inp, out = write_kitti_fixture(root, files), "375x1242 png -> KB 352x1216", "352x704"
            dataset = build_dataset(bench_config(kind, root, list_file), "train")
            for w in workers:
                ips = time_loader(dataset, w, batch_size, n_images)
                rows.append({"dataset": kind, "input": inp, "output": out, "workers": w, "images_per_s": round(ips, 1)})
                print(f"{kind:6s} {inp:28s} -> {out:8s} workers {w}: {ips:7.1f} images/s", flush=True)
    return rows
