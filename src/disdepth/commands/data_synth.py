"""``disdepth data synth``: render the synthetic world to disk in the NYU or KITTI BTS layout, plus a CSV.

Indoor (NYU BTS layout, depth PNG uint16 millimetres)::

    OUT/synth_indoor_0000/rgb_00000.jpg
    OUT/synth_indoor_0000/sync_depth_00000.png
    OUT/filenames.txt  lines: /synth_indoor_0000/rgb_00000.jpg /synth_indoor_0000/sync_depth_00000.png 259.4290

Outdoor (KITTI BTS layout, depth PNG uint16 metres x 256, 0 = no ground truth)::

    OUT/2000_01_01/2000_01_01_drive_0000_sync/image_02/data/0000000000.png
    OUT/2000_01_01_drive_0000_sync/proj_depth/groundtruth/image_02/0000000000.png
    OUT/filenames.txt  lines: <rgb path> <depth path> <focal>   (both relative to OUT)

Both also get ``train_files.txt`` / ``val_files.txt`` (the last ``--val`` samples), ``index.csv`` (the
columns of ``../shared/data/*/index.csv``) and, with ``--preview``, ``preview.png`` (RGB | depth).
The focal in every list line is the actual focal length at the written size.
"""

from __future__ import annotations

import argparse
import csv
from functools import partial
from multiprocessing import Pool
from pathlib import Path

import numpy as np
from PIL import Image
from tqdm import tqdm

from disdepth.commands.common import at_least, fraction, parse_hw
from disdepth.data.synth.preview import contact_sheet
from disdepth.data.synthetic import SPARSE_DENSITY, render_arrays

FRAMES_PER_FOLDER = 100  # NYU scenes / KITTI drives hold many frames; group samples the same way
KITTI_DATE = "2000_01_01"  # an obviously synthetic date, so the files are never mistaken for real drives
CSV_COLUMNS = [
    "id",
    "rgb",
    "depth",
    "depth_scale",
    "depth_kind",
    "fx",
    "fy",
    "cx",
    "cy",
    "width",
    "height",
    "split_hint",
    "notes",
]
DEPTH_SCALE = {"indoor": 1000.0, "outdoor": 256.0}  # PNG value per metre: NYU millimetres, KITTI x256


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--preset", choices=["indoor", "outdoor"], default="indoor")
    parser.add_argument("--n", type=int, default=100, help="number of samples")
    parser.add_argument("--size", default="240x320", help="HEIGHTxWIDTH in pixels (default 240x320)")
    parser.add_argument("--out", required=True, help="output folder")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--start", type=int, default=0, help="first scene number (index offset)")
    parser.add_argument("--val", type=int, default=None, help="samples for val_files.txt (default n // 10)")
    parser.add_argument("--sparse", action="store_true", help="LiDAR-like scan-line ground truth")
    parser.add_argument("--sparse-density", type=fraction, default=SPARSE_DENSITY, help="kept fraction of pixels")
    parser.add_argument("--depth-noise", type=float, default=0.0, help="depth noise std per metre^2")
    parser.add_argument("--holes", type=float, default=0.0, help="fraction of pixels dropped in blobs")
    parser.add_argument("--preview", action="store_true", help="also write preview.png (RGB | depth)")
    parser.add_argument(
        "--overwrite", action="store_true", help="write into a folder that already holds a dataset (index.csv)"
    )
    parser.add_argument("--workers", type=at_least(1), default=1, help="rendering processes")


MAX_SYNTH_PIXELS = 4096 * 4096  # a sample is rendered in memory at float32 several times over


def _paths(preset: str, i: int) -> tuple[str, str]:
    """(rgb, depth) paths of sample ``i`` relative to the output folder."""
    folder, frame = divmod(i, FRAMES_PER_FOLDER)
    if preset == "indoor":
        scene = f"synth_indoor_{folder:04d}"
        return f"{scene}/rgb_{frame:05d}.jpg", f"{scene}/sync_depth_{frame:05d}.png"
    drive = f"{KITTI_DATE}_drive_{folder:04d}_sync"
    return (
        f"{KITTI_DATE}/{drive}/image_02/data/{frame:010d}.png",
        f"{drive}/proj_depth/groundtruth/image_02/{frame:010d}.png",
    )


def _write_one(i: int, args: argparse.Namespace, size: tuple[int, int], out: Path) -> dict:
    """Render scene ``args.start + i`` and write its RGB and uint16 depth; returns its CSV row (+ arrays)."""
    r, k = render_arrays(
        args.preset,
        args.start + i,
        *size,
        seed=args.seed,
        sparse=args.sparse,
        sparse_density=args.sparse_density,
        depth_noise=args.depth_noise,
        holes=args.holes,
    )
    rgb_rel, depth_rel = _paths(args.preset, i)
    (out / rgb_rel).parent.mkdir(parents=True, exist_ok=True)
    (out / depth_rel).parent.mkdir(parents=True, exist_ok=True)
    rgb = (np.clip(r.image.transpose(1, 2, 0), 0, 1) * 255 + 0.5).astype(np.uint8)
    if rgb_rel.endswith(".jpg"):
        Image.fromarray(rgb).save(out / rgb_rel, quality=95)
    else:
        Image.fromarray(rgb).save(out / rgb_rel)
    scale = DEPTH_SCALE[args.preset]
    q = np.clip(np.round(r.depth * scale), 0, 65535).astype(np.uint16)
    q[~r.valid] = 0
    Image.fromarray(q).save(out / depth_rel)
    kind = "synthetic_sparse_lidar_scanlines" if args.sparse else "synthetic_dense_exact"
    row = {
        "id": f"synth_{args.preset}_s{args.seed}_{args.start + i:07d}",
        "rgb": rgb_rel,
        "depth": depth_rel,
        "depth_scale": f"{scale:g}",
        "depth_kind": kind,
        "fx": f"{k[0]:.4f}",
        "fy": f"{k[1]:.4f}",
        "cx": f"{k[2]:.4f}",
        "cy": f"{k[3]:.4f}",
        "width": size[1],
        "height": size[0],
        "notes": f"disdepth synthetic {args.preset} seed {args.seed} scene {args.start + i}; "
        f"{int(r.valid.sum())} valid px; max {float(r.depth.max()):.1f} m",
    }
    return {"row": row, "preview": (r.image, r.depth, r.valid) if i < 6 else None}


def run(args: argparse.Namespace) -> int:
    size = parse_hw(args.size, "--size", minimum=8)
    if args.n < 1:
        raise ValueError(f"--n {args.n}: need at least one sample")
    n_val = args.n // 10 if args.val is None else args.val
    if not 0 <= n_val <= args.n:
        raise ValueError(f"--val {n_val}: must be between 0 and --n ({args.n})")
    if not 0 <= args.holes < 1 or not 0 <= args.depth_noise < 1e3:  # holes = 1 would leave no depth at all
        raise ValueError(f"--holes {args.holes:g}, --depth-noise {args.depth_noise:g}: need 0 <= holes < 1, noise >= 0")
    if size[0] * size[1] > MAX_SYNTH_PIXELS:
        raise ValueError(f"--size {args.size}: at most {MAX_SYNTH_PIXELS / 1e6:.0f} megapixels per sample")
    out = Path(args.out)
    existing = [f for f in ("index.csv", "filenames.txt") if (out / f).is_file()]
    if existing and not args.overwrite:
        raise FileExistsError(
            f"--out {out}: already holds a dataset ({', '.join(existing)}); pass --overwrite to replace it, or choose "
            "another folder"
        )
    out.mkdir(parents=True, exist_ok=True)
    # Only plain fields go to the workers (the parsed namespace also holds the unpicklable parser).
    keys = ("preset", "seed", "start", "sparse", "sparse_density", "depth_noise", "holes")
    opts = argparse.Namespace(**{k: getattr(args, k) for k in keys})
    job = partial(_write_one, args=opts, size=size, out=out)
    desc = f"synth {args.preset} {size[0]}x{size[1]}"
    if args.workers > 1:
        with Pool(args.workers) as pool:
            results = list(tqdm(pool.imap(job, range(args.n), chunksize=4), total=args.n, desc=desc))
    else:
        results = [job(i) for i in tqdm(range(args.n), desc=desc)]
    rows = [res["row"] for res in results]
    lines = []
    for i, row in enumerate(rows):
        row["split_hint"] = "val" if i >= args.n - n_val else "train"
        prefix = "/" if args.preset == "indoor" else ""  # NYU BTS lists start with a slash
        lines.append(f"{prefix}{row['rgb']} {prefix}{row['depth']} {float(row['fx']):.4f}")
    (out / "filenames.txt").write_text("\n".join(lines) + "\n")
    (out / "train_files.txt").write_text("".join(f"{ln}\n" for ln in lines[: args.n - n_val]))
    (out / "val_files.txt").write_text("".join(f"{ln}\n" for ln in lines[args.n - n_val :]))
    with open(out / "index.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=CSV_COLUMNS)
        writer.writeheader()
        writer.writerows(rows)
    print(f"wrote {args.n} {args.preset} samples to {out} (filenames.txt, train_files.txt, val_files.txt, index.csv)")
    if args.preview:
        sheet = [res["preview"] for res in results if res["preview"] is not None]

        path = contact_sheet(sheet, out / "preview.png", columns=2, dilate=1 if args.sparse else 0)
        print(f"preview: {path}")
    return 0
