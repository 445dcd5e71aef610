"""Evaluation protocols as data: depth caps, crop and the map they apply to (docs/data.md, "Metrics and protocols").

| protocol          | caps (m)   | map                        | crop (rows, cols as fractions of H, W)            |
|-------------------|------------|----------------------------|---------------------------------------------------|
| none              | 1e-3..inf  | as given                   | none                                              |
| nyu_eigen         | 1e-3..10   | 480x640                    | [45:471, 41:601] (Eigen et al. 2014, as in BTS)   |
| kitti_eigen_garg  | 1e-3..80   | KB-cropped 352x1216        | Garg: rows .40810811-.99189189, cols .0359-.9641  |
| kitti_garg_full   | 1e-3..80   | full frame (~375x1242)     | Garg (as BTS ``--garg_crop`` on full-size GT)     |
| kitti_eigen       | 1e-3..80   | full frame (~375x1242)     | Eigen: rows .3324324-.91351351, cols as Garg      |

Garg et al. 2016 and Eigen et al. 2014 crop fractions are the ones in BTS ``eval_with_pngs.py``;
box edges are ``int(fraction * size)`` exactly as there. Valid pixels: ``min < gt < max`` (strict)
inside the crop; predictions are clamped to ``[min, max]`` (NaN -> min, inf -> max) as in BTS.

Maps are scored in float64 (float32 inputs are promoted exactly): ground truth decoded in float64 keeps
values such as 1 mm = 0.001 m exact, so the strict caps and the delta thresholds behave as in exact
arithmetic (:mod:`disdepth.eval.metrics`). Casting to float32 here would turn 0.001 into 0.0010000000475,
which passes ``gt > 0.001``.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch

from disdepth.eval.metrics import compute_metrics

KB_HEIGHT, KB_WIDTH = 352, 1216  # KITTI benchmark crop (same constants as disdepth.data.transforms)

# Crop boxes (top, bottom, left, right) as fractions of (H, W); int() rounding as in BTS.
GARG_FRACTIONS = (0.40810811, 0.99189189, 0.03594771, 0.96405229)
EIGEN_FRACTIONS = (0.3324324, 0.91351351, 0.03594771, 0.96405229)
# NYU Eigen crop in pixels at the 480x640 reference size; other sizes scale it (rounded).
NYU_EIGEN_BOX = (45, 471, 41, 601)
NYU_SIZE = (480, 640)


@dataclass(frozen=True)
class Protocol:
    """An evaluation protocol.

    Attributes:
        name: registry key.
        min_depth, max_depth: caps in metres (valid: min < gt < max; pred clamped to [min, max]).
        crop: ``none``, ``garg``, ``eigen`` or ``nyu_eigen``.
        kb_map: score on the KB-cropped 352x1216 map (larger maps are KB-cropped first).
        full_map: score on the full KITTI frame (a 352x1216 prediction is put back into it, BTS style).
        description: one line for tables and JSON.
    """

    name: str
    min_depth: float
    max_depth: float
    crop: str
    kb_map: bool = False
    full_map: bool = False
    description: str = ""

    def with_caps(self, min_depth: float | None = None, max_depth: float | None = None) -> Protocol:
        """Copy with caps overridden where given (None keeps the protocol's)."""
        d = asdict(self)
        if min_depth is not None:
            d["min_depth"] = float(min_depth)
        if max_depth is not None:
            d["max_depth"] = float(max_depth)
        if not d["max_depth"] > d["min_depth"] >= 0:
            raise ValueError(f"eval caps: need 0 <= min_depth < max_depth, got {d['min_depth']}..{d['max_depth']}")
        return Protocol(**d)

    def to_dict(self) -> dict[str, object]:
        d = asdict(self)
        d["max_depth"] = d["max_depth"] if math.isfinite(d["max_depth"]) else None  # JSON has no inf
        d["crop_box"] = crop_description(self.crop)
        return d


PROTOCOLS: dict[str, Protocol] = {
    "none": Protocol("none", 1e-3, math.inf, "none", description="no crop, no max cap"),
    "nyu_eigen": Protocol("nyu_eigen", 1e-3, 10.0, "nyu_eigen", description="NYU Depth V2, Eigen crop, cap 10 m"),
    "kitti_eigen_garg": Protocol(
        "kitti_eigen_garg",
        1e-3,
        80.0,
        "garg",
        kb_map=True,
        description="KITTI Eigen, Garg crop on the KB-cropped map, cap 80 m",
    ),
    "kitti_garg_full": Protocol(
        "kitti_garg_full",
        1e-3,
        80.0,
        "garg",
        full_map=True,
        description="KITTI Eigen, Garg crop on the full frame, cap 80 m",
    ),
    "kitti_eigen": Protocol(
        "kitti_eigen",
        1e-3,
        80.0,
        "eigen",
        full_map=True,
        description="KITTI Eigen, Eigen crop on the full frame, cap 80 m",
    ),
}


def get_protocol(name: str, min_depth: float | None = None, max_depth: float | None = None) -> Protocol:
    """Protocol by name, caps optionally overridden. Raises ValueError listing the known names."""
    if name not in PROTOCOLS:
        raise ValueError(f"unknown eval protocol {name!r}; known: {', '.join(PROTOCOLS)}")
    return PROTOCOLS[name].with_caps(min_depth, max_depth)


def crop_box(crop: str, height: int, width: int) -> tuple[int, int, int, int]:
    """(top, bottom, left, right) of the evaluation crop at ``height x width`` (bottom/right exclusive)."""
    if crop == "none":
        return 0, height, 0, width
    if crop in ("garg", "eigen"):
        t, b, l, r = GARG_FRACTIONS if crop == "garg" else EIGEN_FRACTIONS
        return int(t * height), int(b * height), int(l * width), int(r * width)
    if crop == "nyu_eigen":
        (rh, rw), (t, b, l, r) = NYU_SIZE, NYU_EIGEN_BOX
        return round(t * height / rh), round(b * height / rh), round(l * width / rw), round(r * width / rw)
    raise ValueError(f"unknown crop {crop!r}")


def crop_description(crop: str) -> str:
    if crop == "none":
        return "none"
    if crop == "nyu_eigen":
        return "rows 45:471, cols 41:601 at 480x640"
    t, b, l, r = GARG_FRACTIONS if crop == "garg" else EIGEN_FRACTIONS
    return f"rows int({t}*H):int({b}*H), cols int({l}*W):int({r}*W)"


def crop_mask(crop: str, height: int, width: int) -> torch.Tensor:
    """(H, W) bool, True inside the evaluation crop."""
    t, b, l, r = crop_box(crop, height, width)
    mask = torch.zeros(height, width, dtype=torch.bool)
    mask[t:b, l:r] = True
    return mask


def kb_crop_map(x: torch.Tensor) -> torch.Tensor:
    """KB crop (bottom 352 rows, centred 1216 cols) of an (H, W) map."""
    h, w = x.shape[-2:]
    top, left = h - KB_HEIGHT, (w - KB_WIDTH) // 2
    return x[..., top : top + KB_HEIGHT, left : left + KB_WIDTH]


def kb_uncrop(pred: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """Put a 352x1216 prediction back into a zero ``height x width`` frame (BTS ``do_kb_crop`` eval)."""
    out = pred.new_zeros(height, width)
    top, left = height - KB_HEIGHT, (width - KB_WIDTH) // 2
    out[top : top + KB_HEIGHT, left : left + KB_WIDTH] = pred
    return out


def _as_map(x: torch.Tensor, name: str) -> torch.Tensor:
    if x.dim() == 3 and x.shape[0] == 1:
        x = x[0]
    if x.dim() != 2:
        raise ValueError(f"{name} must be (H, W) or (1, H, W), got shape {tuple(x.shape)}")
    return x


def align(pred: torch.Tensor, gt: torch.Tensor, valid: torch.Tensor, protocol: Protocol) -> tuple[torch.Tensor, ...]:
    """Bring pred, gt and valid onto the map the protocol scores, as (H, W) tensors.

    Raises:
        ValueError: the sizes cannot be reconciled (message gives both shapes and the protocol).
    """
    pred, gt, valid = _as_map(pred, "pred"), _as_map(gt, "gt"), _as_map(valid, "valid").bool()
    if valid.shape != gt.shape:
        raise ValueError(f"valid mask {tuple(valid.shape)} != gt {tuple(gt.shape)}")
    kb = (KB_HEIGHT, KB_WIDTH)
    if protocol.kb_map:
        if gt.shape[0] < KB_HEIGHT or gt.shape[1] < KB_WIDTH:
            raise ValueError(f"{protocol.name}: ground truth {tuple(gt.shape)} is smaller than the KB crop {kb}")
        gt, valid = kb_crop_map(gt), kb_crop_map(valid)
        if pred.shape[0] >= KB_HEIGHT and pred.shape[1] >= KB_WIDTH and tuple(pred.shape) != kb:
            pred = kb_crop_map(pred)
    elif protocol.full_map:
        if tuple(gt.shape) == kb:
            raise ValueError(
                f"{protocol.name} scores the full KITTI frame but the ground truth is KB-cropped {kb}; "
                "use kitti_eigen_garg or load uncropped ground truth"
            )
        if tuple(pred.shape) == kb and tuple(gt.shape) != kb:
            pred = kb_uncrop(pred, *gt.shape)  # zeros outside: clamped to min, outside both crops anyway
    if pred.shape != gt.shape:
        raise ValueError(f"{protocol.name}: prediction is {tuple(pred.shape)} but ground truth is {tuple(gt.shape)}")
    return pred, gt, valid


def eval_mask(gt: torch.Tensor, valid: torch.Tensor, protocol: Protocol) -> torch.Tensor:
    """(H, W) bool: ``valid & min < gt < max & inside crop`` (caller has already aligned the maps; gt float64)."""
    caps = (gt > protocol.min_depth) & (gt < protocol.max_depth) & torch.isfinite(gt)
    return valid & caps & crop_mask(protocol.crop, *gt.shape).to(gt.device)


def clamp_prediction(pred: torch.Tensor, protocol: Protocol) -> torch.Tensor:
    """Clamp to [min, max] in float64; NaN -> min, +inf -> max (BTS ``eval_with_pngs``)."""
    pred = pred.to(torch.float64)
    pred = torch.nan_to_num(pred, nan=protocol.min_depth, posinf=protocol.max_depth, neginf=protocol.min_depth)
    return pred.clamp(protocol.min_depth, protocol.max_depth)


def evaluate_image(
    pred: torch.Tensor, gt: torch.Tensor, valid: torch.Tensor, protocol: Protocol | str
) -> tuple[dict[str, float] | None, str]:
    """Score one prediction under a protocol.

    Args:
        pred: (H, W) or (1, H, W) metres (a 352x1216 KITTI prediction may go with full-size GT).
        gt: (H, W) or (1, H, W) metres, 0 where missing; float64 as decoded (``read_depth``) for exact caps
            and deltas (float32 is promoted and scored as the float32 values it holds).
        valid: bool mask of gt's shape.
        protocol: a :class:`Protocol` or its name.

    Returns:
        ``(metrics, "")``, or ``(None, reason)`` when no valid pixel is left after caps and crop.

    Raises:
        ValueError: shapes that the protocol cannot reconcile.
    """
    if isinstance(protocol, str):
        protocol = get_protocol(protocol)
    pred, gt, valid = align(pred, gt, valid, protocol)
    gt = gt.to(torch.float64)
    mask = eval_mask(gt, valid, protocol)
    if not bool(mask.any()):
        return None, f"no valid ground-truth pixel inside the {protocol.crop} crop and caps"
    return compute_metrics(clamp_prediction(pred, protocol), gt, mask), ""
