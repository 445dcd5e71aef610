"""Synthetic world: analytic depth, determinism, masks, the sample contract and ``disdepth data synth``."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from disdepth.cli import main
from disdepth.data.sample import IMAGENET_MEAN, IMAGENET_STD
from disdepth.data.synth.camera import KITTI_INTRINSICS, NYU_INTRINSICS, preset_intrinsics, rotation
from disdepth.data.synth.primitives import Box, Cylinder, Sphere
from disdepth.data.synth.render import Light, Scene, render
from disdepth.data.synth.textures import Material
from disdepth.data.synthetic import SyntheticDepthDataset, render_arrays, render_sample, render_test_scene

H, W = 48, 64
GREY = Material("checker", np.full(3, 0.7, np.float32), np.full(3, 0.3, np.float32), 0.5)


def _grid(k):
    fx, fy, cx, cy = k
    return (np.arange(W) - cx) / fx, (np.arange(H) - cy) / fy


def _one_object_scene(prim) -> Scene:
    """Camera at the origin looking along +z at one primitive (and nothing else: misses are sky)."""
    sky = {"zenith": np.full(3, 0.5, np.float32), "horizon": np.full(3, 0.7, np.float32)}
    light = Light("point", np.array([0.0, 2.0, 0.0], np.float32), np.ones(3, np.float32))
    return Scene([prim], [light], np.full(3, 0.3, np.float32), np.zeros(3, np.float32), rotation(0, 0), sky=sky,
                 max_depth=100.0)


def test_fronto_parallel_plane_has_constant_z_depth():
    r, _ = render_test_scene("plane", H, W, distance=3.0)
    assert r.valid.all()
    np.testing.assert_allclose(r.depth, 3.0, atol=1e-5)


def test_depth_is_z_not_ray_length():
    # Camera at the centre of a sphere: every ray travels exactly R, so z-depth = R / |(x, y, 1)|.
    radius = 4.0
    r, k = render_test_scene("sphere", H, W, distance=radius)
    xs, ys = _grid(k)
    norm = np.sqrt(xs[None, :] ** 2 + ys[:, None] ** 2 + 1)
    np.testing.assert_allclose(r.depth * norm, radius, rtol=1e-5)
    assert r.depth[0, 0] < r.depth[H // 2, W // 2] - 0.1  # corners are closer in z than the centre


def test_box_face_and_wall_behind():
    r, k = render_test_scene("box", H, W, distance=3.0)
    xs, ys = _grid(k)
    # Rays whose footprint at z = 3 lies inside the 1 m face see the face; clearly outside it, the wall at 6.
    inside = (np.abs(xs[None, :] * 3) < 0.45) & (np.abs(ys[:, None] * 3) < 0.45)
    outside = (np.abs(xs[None, :] * 3) > 0.55) | (np.abs(ys[:, None] * 3) > 0.55)
    np.testing.assert_allclose(r.depth[inside], 3.0, atol=1e-5)
    np.testing.assert_allclose(r.depth[outside], 6.0, atol=1e-4)
    assert inside.sum() > 50


def test_floor_rows_match_ground_plane_geometry_and_sky_is_invalid():
    h_cam = 1.5
    r, (fx, fy, cx, cy) = render_test_scene("floor", H, W, camera_height=h_cam)
    v = np.arange(H)
    below = v > cy + 0.5
    expected = h_cam * fy / (v[below] - cy)  # level camera: z = h * f / (v - cy)
    np.testing.assert_allclose(r.depth[below], np.repeat(expected[:, None], W, 1), rtol=1e-4)
    above = v < cy
    assert (r.pid[above] == -1).all() and (r.depth[above] == 0).all() and not r.valid[above].any()


@pytest.mark.parametrize("yaw", [0.0, np.pi / 4])
def test_rotated_box_sphere_cylinder_centre_pixel(yaw):
    # Principal point on a pixel centre: that pixel's ray is the optical axis, so z = nearest surface distance.
    k = (100.0, 100.0, W / 2, H / 2)
    box = Box(GREY, center=np.array([0, 0, 5.0], np.float32), half=np.full(3, 0.5, np.float32), yaw=yaw)
    expected_box = 5.0 - 0.5 * (np.sqrt(2) if yaw else 1.0)  # a 45-degree box shows its vertical edge
    sphere = Sphere(GREY, center=np.array([0, 0, 5.0], np.float32), radius=1.0)
    cyl = Cylinder(GREY, center=(0.0, 5.0), radius=0.75, y0=-1.0, y1=1.0)
    for prim, z in ((box, expected_box), (sphere, 4.0), (cyl, 4.25)):
        out = render(_one_object_scene(prim), H, W, k)
        assert out.depth[H // 2, W // 2] == pytest.approx(z, abs=1e-4)
        assert (out.depth[0, 0] == 0) and not out.valid[0, 0]  # corner ray misses: sky


def test_preset_intrinsics_match_reference_cameras():
    np.testing.assert_allclose(preset_intrinsics("indoor", 480, 640), NYU_INTRINSICS[:4], rtol=1e-6)
    np.testing.assert_allclose(preset_intrinsics("outdoor", 375, 1242), KITTI_INTRINSICS[:4], rtol=1e-6)
    np.testing.assert_allclose(preset_intrinsics("indoor", 240, 320)[0], 518.8579 / 2, rtol=1e-6)


def test_same_seed_same_sample_and_different_index_differs():
    a = render_sample("indoor", 3, H, W, seed=7)
    b = render_sample("indoor", 3, H, W, seed=7)
    for key in ("image", "depth", "valid", "intrinsics"):
        assert torch.equal(a[key], b[key])
    assert a["id"] == b["id"]
    assert not torch.equal(a["depth"], render_sample("indoor", 4, H, W, seed=7)["depth"])
    assert not torch.equal(a["depth"], render_sample("indoor", 3, H, W, seed=8)["depth"])


@pytest.mark.parametrize("preset,max_depth", [("indoor", 10.0), ("outdoor", 80.0)])
def test_depth_ranges_and_masks(preset, max_depth):
    for i in range(3):
        r, _ = render_arrays(preset, i, H, W)
        assert r.depth.dtype == np.float32 and r.valid.dtype == bool
        assert (r.depth[r.valid] > 0).all() and (r.depth[r.valid] < max_depth).all()
        assert (r.depth[~r.valid] == 0).all()
        assert 0.0 <= r.image.min() and r.image.max() <= 1.0
        if preset == "outdoor":
            sky = r.pid == -1
            assert sky.any() and not r.valid[sky].any() and (r.depth[sky] == 0).all()
        else:
            assert r.valid.mean() > 0.95  # a closed room: every ray hits something within 10 m


def test_sparse_lidar_mask_density_and_subset():
    size = (120, 160)
    for density in (0.05, 0.02):
        sparse, _ = render_arrays("outdoor", 1, *size, sparse=True, sparse_density=density)
        dense, _ = render_arrays("outdoor", 1, *size)
        assert abs(sparse.valid.mean() - density) < 0.2 * density
        assert not (sparse.valid & ~dense.valid).any()
        np.testing.assert_array_equal(sparse.depth[sparse.valid], dense.depth[sparse.valid])
        np.testing.assert_array_equal(sparse.image, dense.image)  # sparsity changes ground truth only


def test_sensor_effects_are_optional():
    clean, _ = render_arrays("indoor", 0, H, W)
    holes, _ = render_arrays("indoor", 0, H, W, holes=0.3)
    noisy, _ = render_arrays("indoor", 0, H, W, depth_noise=0.01)
    assert holes.valid.mean() < clean.valid.mean() - 0.1
    both = clean.valid & noisy.valid
    assert not np.array_equal(noisy.depth[both], clean.depth[both])
    np.testing.assert_array_equal(noisy.image, clean.image)


def test_dataset_contract_offset_and_transform():
    calls = []

    def transform(raw):
        calls.append(raw["id"])
        return raw

    ds = SyntheticDepthDataset("outdoor", length=4, height=H, width=W, seed=1, transform=transform)
    item = ds[0]
    assert len(ds) == 4 and calls == [item["id"]]
    assert item["image"].shape == (3, H, W) and item["image"].dtype == torch.float32
    assert item["depth"].shape == (1, H, W) and item["depth"].dtype == torch.float32
    assert item["valid"].shape == (1, H, W) and item["valid"].dtype == torch.bool
    assert item["intrinsics"].shape == (4,) and item["focal"].shape == () and isinstance(item["id"], str)
    raw = ds.raw(0)
    mean, std = torch.tensor(IMAGENET_MEAN).view(3, 1, 1), torch.tensor(IMAGENET_STD).view(3, 1, 1)
    torch.testing.assert_close(item["image"], (raw["image"] - mean) / std)
    assert item["focal"] == item["intrinsics"][0]
    val = SyntheticDepthDataset("outdoor", length=2, height=H, width=W, seed=1, index_offset=2)
    assert torch.equal(val[0]["depth"], ds[2]["depth"])
    batch = torch.utils.data.default_collate([ds[0], ds[1]])
    assert batch["depth"].shape == (2, 1, H, W) and len(batch["id"]) == 2
    with pytest.raises(IndexError):
        ds[4]
    with pytest.raises(ValueError, match="preset"):
        SyntheticDepthDataset("mars", 1, H, W)


def _read_list(path: Path) -> list[list[str]]:
    return [line.split() for line in path.read_text().splitlines() if line.strip()]


def test_cli_writes_nyu_layout(tmp_path):
    out = tmp_path / "nyu"
    assert main(["data", "synth", "--preset", "indoor", "--n", "3", "--size", f"{H}x{W}", "--out", str(out),
                 "--seed", "2", "--val", "1", "--preview"]) == 0
    lines = _read_list(out / "filenames.txt")
    assert len(lines) == 3 and len(_read_list(out / "train_files.txt")) == 2
    for i, (rgb, depth, focal) in enumerate(lines):
        assert rgb.startswith("/") and rgb.endswith(f"rgb_{i:05d}.jpg") and "sync_depth_" in depth
        assert (out / rgb[1:]).is_file() and (out / depth[1:]).is_file()
        ref, k = render_arrays("indoor", i, H, W, seed=2)
        assert float(focal) == pytest.approx(k[0], abs=1e-3)
        png = np.asarray(Image.open(out / depth[1:]))
        assert png.dtype == np.uint16 and png.shape == (H, W)
        np.testing.assert_allclose(png / 1000.0, ref.depth, atol=0.5e-3 + 1e-6)  # millimetre quantisation
        assert np.asarray(Image.open(out / rgb[1:])).shape == (H, W, 3)
    with open(out / "index.csv") as f:
        rows = list(csv.DictReader(f))
    assert list(rows[0]) == ["id", "rgb", "depth", "depth_scale", "depth_kind", "fx", "fy", "cx", "cy", "width",
                             "height", "split_hint", "notes"]
    assert rows[0]["depth_scale"] == "1000" and [r["split_hint"] for r in rows] == ["train", "train", "val"]
    assert (out / rows[2]["rgb"]).is_file()
    assert (out / "preview.png").stat().st_size > 0


def test_cli_writes_kitti_layout_sparse(tmp_path):
    out = tmp_path / "kitti"
    assert main(["data", "synth", "--preset", "outdoor", "--n", "2", "--size", f"{H}x{W}", "--out", str(out),
                 "--sparse", "--preview"]) == 0
    for i, (rgb, depth, focal) in enumerate(_read_list(out / "filenames.txt")):
        assert "/image_02/data/" in rgb and "/proj_depth/groundtruth/image_02/" in depth
        assert rgb.split("/")[1] == depth.split("/")[0]  # same drive folder
        ref, k = render_arrays("outdoor", i, H, W, sparse=True)
        png = np.asarray(Image.open(out / depth)).astype(np.float64)
        np.testing.assert_allclose(png / 256.0, ref.depth, atol=1 / 512 + 1e-6)
        assert ((png > 0) == ref.valid).all()
        assert float(focal) == pytest.approx(k[0], abs=1e-3)
    assert (out / "preview.png").is_file()


def test_cli_rejects_bad_size(tmp_path, capsys):
    assert main(["data", "synth", "--size", "big", "--out", str(tmp_path)]) == 2
    assert "--size" in capsys.readouterr().err
