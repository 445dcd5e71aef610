"""Cameras and views: intrinsics per preset, world-from-camera rotations, ray grids, screen-space culling.

World frame: x right, y up, z forward (metres). Camera frame (OpenCV): x right, y down, z forward.
Primary ray directions are *not* normalised: their camera-frame z component is 1, so the ray
parameter ``t`` of a hit is exactly its z-depth (distance along the optical axis), not the ray length.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

# Reference intrinsics (fx, fy, cx, cy, width, height) of the cameras the presets imitate.
NYU_INTRINSICS = (518.8579, 519.4696, 325.5824, 253.7362, 640, 480)  # NYU Depth V2 RGB camera
KITTI_INTRINSICS = (721.5377, 721.5377, 609.5593, 172.854, 1242, 375)  # KITTI cam 2, 2011_09_26


def preset_intrinsics(preset: str, height: int, width: int) -> tuple[float, float, float, float]:
    """Intrinsics (fx, fy, cx, cy) in pixels at ``height`` x ``width`` for a preset's reference camera.

    The reference frame is resized to *cover* the requested size, then centre-cropped (pixel aspect
    stays square): 240x320 indoor is NYU at 1/2 (fx 259.4); 240x320 outdoor is a KITTI-like centre
    crop with KITTI's vertical field of view (fx 461.8).
    """
    fx, fy, cx, cy, w0, h0 = NYU_INTRINSICS if preset == "indoor" else KITTI_INTRINSICS
    s = max(width / w0, height / h0)
    return fx * s, fy * s, width / 2 + (cx - w0 / 2) * s, height / 2 + (cy - h0 / 2) * s


def rotation(yaw: float, pitch: float, roll: float = 0.0) -> np.ndarray:
    """World-from-camera rotation (3, 3) whose columns are the camera's right, down and forward axes.

    Args:
        yaw: radians about world +y (0 looks along +z, positive turns towards +x).
        pitch: radians, positive looks up.
        roll: radians about the optical axis.
    """
    cp, sp, cy, sy = np.cos(pitch), np.sin(pitch), np.cos(yaw), np.sin(yaw)
    forward = np.array([sy * cp, sp, cy * cp])
    right = np.array([cy, 0.0, -sy])
    down = np.cross(right, forward)
    cr, sr = np.cos(roll), np.sin(roll)
    right, down = cr * right + sr * down, -sr * right + cr * down
    return np.stack([right, down, forward], axis=1)


_GRID_CACHE: dict[tuple, tuple[np.ndarray, np.ndarray]] = {}


def _pixel_grid(height: int, width: int, fx: float, fy: float, cx: float, cy: float) -> tuple[np.ndarray, np.ndarray]:
    """Normalised image coordinates x=(u-cx)/fx (W,), y=(v-cy)/fy (H,); pixel centres at integers (OpenCV)."""
    key = (height, width, fx, fy, cx, cy)
    if key not in _GRID_CACHE:
        if len(_GRID_CACHE) > 64:
            _GRID_CACHE.clear()
        xs = ((np.arange(width) - cx) / fx).astype(np.float32)
        ys = ((np.arange(height) - cy) / fy).astype(np.float32)
        _GRID_CACHE[key] = (xs, ys)
    return _GRID_CACHE[key]


@dataclass
class View:
    """A bundle of rays on an (H, W) grid plus a conservative screen-space rectangle test for culling.

    Attributes:
        origin: (3,) for a pinhole view, (3, H, W) for an orthographic one (metres, world).
        dirs: (3, H, W) pinhole directions (camera-frame z = 1) or (3,) for orthographic.
        inv: 1 / dirs (same shape), shared by every slab test.
        shape: (H, W).
    """

    origin: np.ndarray
    dirs: np.ndarray
    shape: tuple[int, int]
    kind: str = "pinhole"
    rot: np.ndarray = field(default_factory=lambda: np.eye(3))  # pinhole: world-from-camera
    k: tuple[float, float, float, float] = (1.0, 1.0, 0.0, 0.0)  # pinhole (fx, fy, cx, cy)
    res: float = 1.0  # orthographic: metres per texel
    inv: np.ndarray = field(init=False)

    def __post_init__(self) -> None:
        with np.errstate(divide="ignore"):
            self.inv = (1.0 / self.dirs).astype(np.float32)

    @classmethod
    def pinhole(cls, position, rot: np.ndarray, k: tuple[float, float, float, float], shape: tuple[int, int]) -> View:
        """Rays from ``position`` through every pixel centre of an (H, W) image with intrinsics ``k``."""
        xs, ys = _pixel_grid(*shape, *k)
        r = rot.astype(np.float32)
        # d = R @ (x, y, 1): a rank-one sum over columns, broadcast from the (W,) and (H,) grids.
        dirs = r[:, 0, None, None] * xs[None, None, :] + r[:, 1, None, None] * ys[None, :, None] + r[:, 2, None, None]
        return cls(np.asarray(position, np.float32), dirs.astype(np.float32), shape, "pinhole", rot, k)

    @classmethod
    def orthographic(cls, direction, lo_corner, e1, e2, res: float, shape: tuple[int, int]) -> View:
        """Parallel rays along ``direction`` from a (H, W) grid of origins ``lo + i*res*e2 + j*res*e1``."""
        h, w = shape
        jj = (np.arange(w, dtype=np.float32) * res)[None, None, :]
        ii = (np.arange(h, dtype=np.float32) * res)[None, :, None]
        lo = np.asarray(lo_corner, np.float32)[:, None, None]
        origin = lo + np.asarray(e1, np.float32)[:, None, None] * jj + np.asarray(e2, np.float32)[:, None, None] * ii
        rot = np.stack([e1, e2, direction], axis=1)
        return cls(origin.astype(np.float32), np.asarray(direction, np.float32), shape, "ortho", rot, res=res)

    def to_view_frame(self, points: np.ndarray) -> np.ndarray:
        """World points (..., 3) -> view frame (..., 3): pinhole camera coords, or ortho (a, b, along)."""
        base = self.origin if self.kind == "pinhole" else self.origin[:, 0, 0]
        return (points - base) @ self.rot

    def rects(self, corners: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Pixel rectangles that hold every ray able to hit each of P convex hulls, vectorised over P.

        Args:
            corners: (P, 8, 3) world bounding-box corners (bit i of the corner index = + side of axis i);
                NaN rows mean unbounded (planes, rooms): the full image.
        Returns:
            rects: (P, 4) int array (v0, v1, u0, u1); an empty rectangle (v0 >= v1 or u0 >= u1) when
                nothing can be hit, e.g. a box entirely behind a pinhole camera (a hit needs t = z > 0).
            near: (P,) lower bound of the ray parameter t of any hit (0 for unbounded primitives).
        """
        h, w = self.shape
        unbounded = np.isnan(corners[:, 0, 0])
        pts = self.to_view_frame(corners)  # (P, 8, 3)
        with np.errstate(invalid="ignore", divide="ignore"):
            if self.kind == "ortho":
                u, v = pts[..., 0] / self.res, pts[..., 1] / self.res
                t_near = pts[..., 2].min(1)
            else:
                near = 1e-3
                front = pts[..., 2] > near
                # Clip the 12 box edges at the near plane so boxes reaching behind the camera stay tight.
                a, b = pts[:, _EDGES[:, 0]], pts[:, _EDGES[:, 1]]
                cross = front[:, _EDGES[:, 0]] != front[:, _EDGES[:, 1]]
                s = (near - a[..., 2]) / (b[..., 2] - a[..., 2])
                clipped = a + s[..., None] * (b - a)
                pts = np.concatenate(
                    [np.where(front[..., None], pts, np.nan), np.where(cross[..., None], clipped, np.nan)], axis=1
                )
                fx, fy, cx, cy = self.k
                u, v = fx * pts[..., 0] / pts[..., 2] + cx, fy * pts[..., 1] / pts[..., 2] + cy
                t_near = np.nanmin(np.where(np.isnan(pts[..., 2]), np.inf, pts[..., 2]), 1)  # z = t for pinhole
            empty = np.all(np.isnan(u), axis=1) & ~unbounded
            u = np.where(np.isnan(u), np.inf, u)
            v = np.where(np.isnan(v), np.inf, v)
            umin, vmin = u.min(1), v.min(1)
            u = np.where(np.isinf(u), -np.inf, u)
            v = np.where(np.isinf(v), -np.inf, v)
            umax, vmax = u.max(1), v.max(1)
            out = np.stack([np.floor(vmin), np.ceil(vmax) + 1, np.floor(umin), np.ceil(umax) + 1], 1)
            out = np.nan_to_num(out, nan=0.0, posinf=1e9, neginf=-1e9)
        out = np.clip(out, 0, [h, h, w, w]).astype(np.int64)
        out[unbounded] = (0, h, 0, w)
        out[empty] = 0
        t_near = np.where(unbounded | ~np.isfinite(t_near), 0.0, t_near)
        return out, t_near


# Box corner index pairs along the 12 edges (corner bit i = sign on axis i).
_EDGES = np.array([(a, a | (1 << i)) for a in range(8) for i in range(3) if not a & (1 << i)])
