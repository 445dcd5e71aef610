"""``disdepth data check``: validate a dataset config and report *every* problem, not just the first.

For each configured split (train/val/test list) it parses every line of the list or CSV (malformed lines,
bad numbers, bad or absurd depth_scale values are collected, each named ``file:line``), then reads every
listed pair and reports counts, missing or unreadable files (by name), 8-bit or colour depth images,
image/depth size mismatches, NaN/negative/out-of-range depth, frames without a valid pixel, frames too small
for the KB crop or the training crop, and depth-range and valid-pixel statistics. A list without any depth
is not a problem but a note (images for label-free distillation). Exit status 1 when any problem was found.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from disdepth.config import Config
from disdepth.data.build import build_transform, kb_crop_enabled, roots_for_split
from disdepth.data.csv import csv_columns, csv_records
from disdepth.data.io import LABEL_FREE_ROUTE, DataError, Record, load_record
from disdepth.data.kitti import kitti_records
from disdepth.data.nyu import nyu_records
from disdepth.data.transforms import KB_HEIGHT, KB_WIDTH


@dataclass
class Problem:
    split: str
    sample: str  # sample id, or "-" for a problem of the list file itself
    path: str  # the offending file (or ``list:line``)
    kind: str  # a key of disdepth.data.io.PROBLEMS (missing, unreadable, 8bit, size, range, crop ...)
    message: str

    @classmethod
    def of(cls, split: str, sample: str, error: DataError) -> Problem:
        return cls(split, sample, error.path, error.problem, str(error))


@dataclass
class SplitStats:
    """Per-split statistics over readable frames with ground truth (depth in metres)."""

    listed: int = 0
    with_depth: int = 0
    ok: int = 0
    sizes: Counter = field(default_factory=Counter)
    depth_min: float = math.inf
    depth_max: float = -math.inf
    depth_sum: float = 0.0
    valid_pixels: int = 0
    valid_fractions: list[float] = field(default_factory=list)

    @property
    def note(self) -> str:
        """Not a problem, but what the split can be used for: a list without any depth holds images only."""
        if self.listed and not self.with_depth:
            return f"{self.listed} images, no depth: usable label-free ({LABEL_FREE_ROUTE})"
        return ""

    def summary(self) -> dict[str, Any]:
        vf = self.valid_fractions
        return {
            "note": self.note,
            "listed": self.listed,
            "with_depth": self.with_depth,
            "ok": self.ok,
            "sizes_hw": {f"{h}x{w}": n for (h, w), n in self.sizes.most_common()},
            "depth_min_m": self.depth_min if self.valid_pixels else None,
            "depth_max_m": self.depth_max if self.valid_pixels else None,
            "depth_mean_m": self.depth_sum / self.valid_pixels if self.valid_pixels else None,
            "valid_fraction_mean": sum(vf) / len(vf) if vf else None,
            "valid_fraction_min": min(vf) if vf else None,
            "valid_fraction_max": max(vf) if vf else None,
        }


def _records(cfg: Config, split: str, list_file: str, errors: list[DataError]) -> list[Record]:
    """Every well-formed record of a split's list; malformed lines go to ``errors``.

    Raises:
        DataError / FileNotFoundError: the list file as a whole is unusable (missing, not UTF-8, no header).
    """

    d = cfg.data
    root, gt_root = roots_for_split(cfg, split)  # type: ignore[arg-type]
    if d.dataset == "kitti":
        return kitti_records(list_file, root, gt_root, d.depth_scale, errors)
    if d.dataset == "nyu":
        return nyu_records(list_file, root, gt_root, d.depth_scale, errors)

    # A CSV without a depth column is an images-only list (a note, see SplitStats.note), not a broken one.
    images_only = "depth" not in csv_columns(list_file)
    return csv_records(list_file, root, d.depth_scale, images_only=images_only, errors=errors)


def check_records(
    records: list[Record], split: str, min_hw: tuple[int, int] | None = None, limit: int = 0, progress: bool = False
) -> tuple[SplitStats, list[Problem]]:
    """Read every record; return statistics and all problems found.

    Args:
        records: the pairs to check.
        split: name used in problem reports.
        min_hw: smallest acceptable (H, W) (KB crop or training crop), or None.
        limit: check only the first ``limit`` records (0 = all).
        progress: show a tqdm bar.
    """
    stats, problems = SplitStats(listed=len(records)), []
    todo = records[:limit] if limit > 0 else records
    if progress:
        from tqdm import tqdm

        todo = tqdm(todo, desc=f"check {split}", unit="img", leave=False)
    seen_paths: set[str] = set()
    for r in todo:
        stats.with_depth += r.depth is not None
        if r.depth is not None and r.depth == r.rgb:
            msg = f"{r.rgb}: listed as both image and depth ({r.source})"
            problems.append(Problem(split, r.id, str(r.rgb), "format", msg))
            continue
        # Report each missing file separately so one listing shows all of them.
        missing = [p for p in (r.rgb, r.depth) if p is not None and not p.is_file()]
        for p in missing:
            problems.append(Problem(split, r.id, str(p), "missing", f"{p}: file not found (listed at {r.source})"))
        if missing:
            continue
        try:
            s = load_record(r, with_image=True)
        except DataError as exc:
            problems.append(Problem.of(split, r.id, exc))
            continue
        except (FileNotFoundError, OSError, ValueError) as exc:
            problems.append(Problem(split, r.id, str(r.rgb), "unreadable", str(exc)))
            continue
        h, w = s["image"].shape[-2:]
        stats.sizes[(h, w)] += 1
        if min_hw and (h < min_hw[0] or w < min_hw[1]):
            msg = f"{r.rgb}: image is {h}x{w}, smaller than the required {min_hw[0]}x{min_hw[1]} (crop)"
            problems.append(Problem(split, r.id, str(r.rgb), "crop", msg))
            continue
        if r.depth is not None:
            valid = s["valid"]
            n_valid = int(valid.sum())
            if n_valid == 0:
                problems.append(Problem(split, r.id, str(r.depth), "no_valid", f"{r.depth}: no valid depth pixel"))
                continue
            d = s["depth"][valid]
            stats.depth_min = min(stats.depth_min, float(d.min()))
            stats.depth_max = max(stats.depth_max, float(d.max()))
            stats.depth_sum += float(d.double().sum())
            stats.valid_pixels += n_valid
            stats.valid_fractions.append(n_valid / valid.numel())
            if str(r.depth) in seen_paths:
                problems.append(Problem(split, r.id, str(r.depth), "duplicate", f"{r.depth}: listed twice"))
            seen_paths.add(str(r.depth))
        stats.ok += 1
    return stats, problems


def check_dataset(
    cfg: Config, splits: list[str] | None = None, limit: int = 0, progress: bool = False
) -> tuple[dict[str, SplitStats], list[Problem]]:
    """Check every configured split of ``cfg.data`` (kitti, nyu, csv).

    Returns:
        per-split statistics and the list of all problems (list-file errors included).
    """

    d = cfg.data
    if d.dataset == "synthetic":
        raise ValueError("data check validates files on disk; data.dataset is 'synthetic' (nothing to check)")
    lists = {"train": d.train_list, "val": d.val_list, "test": d.test_list}
    wanted = splits or [s for s, f in lists.items() if f]
    if not wanted:
        raise ValueError("data check: no list configured (data.train_list / val_list / test_list are empty)")
    all_stats: dict[str, SplitStats] = {}
    problems: list[Problem] = []
    for split in wanted:
        list_file = lists[split] or (d.test_list if split == "val" else "")
        if not list_file:
            problems.append(Problem(split, "-", "-", "format", f"data.{split}_list is empty"))
            continue
        errors: list[DataError] = []
        try:
            records = _records(cfg, split, list_file, errors)
        except DataError as exc:
            problems.append(Problem.of(split, "-", exc))
            continue
        except FileNotFoundError as exc:
            problems.append(Problem(split, "-", list_file, "missing", str(exc)))
            continue
        problems += [Problem.of(split, "-", e) for e in errors]
        min_h, min_w = (KB_HEIGHT, KB_WIDTH) if kb_crop_enabled(cfg) else (0, 0)
        t = build_transform(cfg, split) if split == "train" else None
        for step in getattr(t, "transforms", []):  # the random crop must fit (after the KB crop)
            if hasattr(step, "height") and hasattr(step, "width"):
                min_h, min_w = max(min_h, step.height), max(min_w, step.width)
        stats, found = check_records(records, split, (min_h, min_w) if min_h else None, limit, progress)
        all_stats[split] = stats
        problems += found
    return all_stats, problems


def format_report(stats: dict[str, SplitStats], problems: list[Problem], max_list: int = 50) -> str:
    """The human-readable report: per-split counts and statistics, then every problem (up to ``max_list``).

    The last line is ``no problems found`` only when every split is usable as configured; a split without any
    depth ends the report with its note (images for label-free distillation) instead.
    """
    lines = []
    for split, st in stats.items():
        s = st.summary()
        lines.append(f"[{split}] listed {s['listed']}, with depth {s['with_depth']}, ok {s['ok']}")
        if s["sizes_hw"]:
            lines.append("  sizes (HxW): " + ", ".join(f"{k} x{n}" for k, n in s["sizes_hw"].items()))
        if s["depth_min_m"] is not None:
            lines.append(
                f"  depth {s['depth_min_m']:.3f}..{s['depth_max_m']:.3f} m (mean {s['depth_mean_m']:.3f}); valid "
                f"{100 * s['valid_fraction_mean']:.1f}% mean, {100 * s['valid_fraction_min']:.1f}%..."
                f"{100 * s['valid_fraction_max']:.1f}%"
            )
    if problems:
        kinds = Counter(p.kind for p in problems)
        lines.append(f"{len(problems)} problem(s): " + ", ".join(f"{k} {n}" for k, n in kinds.most_common()))
        for p in problems[:max_list]:
            lines.append(f"  [{p.split}] {p.kind}: {p.message}")
        if len(problems) > max_list:
            lines.append(f"  ... {len(problems) - max_list} more (see --json)")
    notes = [f"[{split}] {st.note}" for split, st in stats.items() if st.note]
    lines += notes
    if not problems and not notes:
        lines.append("no problems found")
    return "\n".join(lines)
