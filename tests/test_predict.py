"""disdepth predict and the disdepth.load API: every output format, value round-trips, inputs and errors."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image
from tiny_runs import TINY

import disdepth
from disdepth.api import round_size, to_tensor
from disdepth.cli import main
from disdepth.data.io import read_depth
from disdepth.deploy.writers import nice_ticks

K = (50.0, 52.0, 20.0, 15.0)  # fx, fy, cx, cy in pixels; integer principal point for the on-axis check


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    run = tmp_path_factory.mktemp("predict") / "run"
    assert main(["train", "--run-dir", str(run), *TINY]) == 0
    return run / "checkpoints" / "last.pt"


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    """A folder with two 40x56 images and one 50x30 image in a sub-folder (smooth, so depth varies)."""
    root = tmp_path_factory.mktemp("images")
    (root / "sub").mkdir()
    rng = np.random.default_rng(0)
    for name, (h, w) in {"a.png": (40, 56), "b.jpg": (40, 56), "sub/c.png": (50, 30)}.items():
        y, x = np.mgrid[0:h, 0:w]
        base = np.stack([x / w, y / h, 0.5 + 0.5 * np.sin(x / 5)], -1) * 200 + rng.integers(0, 50, (h, w, 3))
        Image.fromarray(base.clip(0, 255).astype(np.uint8)).save(root / name, quality=95)
    return root


def read_ply(path):
    """(header lines, vertices (N,) structured) of a binary or ASCII PLY written by disdepth predict."""
    data = path.read_bytes()
    end = data.index(b"end_header\n") + len(b"end_header\n")
    header = data[:end].decode().splitlines()
    n = int(next(line for line in header if line.startswith("element vertex")).split()[-1])
    dtype = [("x", "<f4"), ("y", "<f4"), ("z", "<f4"), ("r", "u1"), ("g", "u1"), ("b", "u1")]
    if "format binary_little_endian 1.0" in header:
        return header, np.frombuffer(data[end:], dtype=dtype, count=n)
    rows = np.loadtxt(data[end:].decode().splitlines(), ndmin=2)
    verts = np.zeros(len(rows), dtype=dtype)
    for i, name in enumerate(verts.dtype.names):
        verts[name] = rows[:, i]
    return header, verts


def test_predict_writes_every_format_mm(ckpt, images, tmp_path):
    out = tmp_path / "out"
    intr = ",".join(str(v) for v in K)
    args = [
        "predict",
        str(ckpt),
        str(images),
        "--out",
        str(out),
        "--intrinsics",
        intr,
        "--panel",
        "--legend",
        "--device",
        "cpu",
        "--batch-size",
        "2",
    ]
    assert main(args) == 0
    summary = json.loads((out / "predictions.json").read_text())
    assert summary["png_units"] == "mm" and summary["png_scale"] == 1000.0 and "value / 1000" in summary["units"]["png"]
    assert [e["name"] for e in summary["predictions"]] == ["a", "b", "sub/c"]
    assert "metres = value / 1000" in (out / "README.txt").read_text()

    predictor = disdepth.load(ckpt)
    for name, src in (("a", "a.png"), ("b", "b.jpg"), ("sub/c", "sub/c.png")):
        rgb = np.asarray(Image.open(images / src).convert("RGB"))
        h, w = rgb.shape[:2]
        depth = np.load(out / f"{name}.npy")
        assert depth.dtype == np.float32 and depth.shape == (h, w)
        np.testing.assert_allclose(depth, predictor.predict(rgb), atol=1e-5)  # batch of 2 vs batch of 1
        png, valid = read_depth(out / f"{name}.png", 1000.0)
        assert valid.all() and np.abs(png[0].numpy() - depth).max() <= 0.5e-3 + 1e-6  # half a millimetre
        assert Image.open(out / f"{name}_color.png").size[0] > w  # colour bar appended
        panel = Image.open(out / f"{name}_panel.png")
        assert panel.size == (w + Image.open(out / f"{name}_color.png").size[0], h)
        header, verts = read_ply(out / f"{name}.ply")
        assert "format binary_little_endian 1.0" in header and len(verts) == h * w
        fx, fy, cx, cy = K
        on_axis = verts[int(cy) * w + int(cx)]
        assert on_axis["x"] == 0 and on_axis["y"] == 0 and on_axis["z"] == pytest.approx(depth[int(cy), int(cx)])
        corner = verts[(h - 1) * w + (w - 1)]  # pixel (u, v) = (w - 1, h - 1)
        z = depth[h - 1, w - 1]
        assert corner["x"] == pytest.approx((w - 1 - cx) * z / fx, rel=1e-5)
        assert corner["y"] == pytest.approx((h - 1 - cy) * z / fy, rel=1e-5)
        assert tuple(corner[["r", "g", "b"]].item()) == tuple(rgb[h - 1, w - 1])


def test_predict_kitti_units_ascii_ply_fov_and_gif(ckpt, images, tmp_path):
    frames = [Image.open(images / "a.png").convert("RGB"), Image.open(images / "b.jpg").convert("RGB")]
    frames[0].save(tmp_path / "clip.gif", save_all=True, append_images=frames[1:])
    out = tmp_path / "out"
    args = [
        "predict",
        str(ckpt),
        str(images / "a.png"),
        str(tmp_path / "clip.gif"),
        "--out",
        str(out),
        "--png-units",
        "kitti",
        "--fov",
        "60",
        "--ply-ascii",
        "--formats",
        "png,npy",
        "--size",
        "64x64",
        "--flip-tta",
        "--device",
        "cpu",
    ]
    assert main(args) == 0
    summary = json.loads((out / "predictions.json").read_text())
    assert summary["png_scale"] == 256.0 and summary["flip_tta"] and "64x64" in summary["size_policy"]
    assert [e["name"] for e in summary["predictions"]] == ["a", "clip/frame_000000", "clip/frame_000001"]
    assert summary["predictions"][0]["run_size"] == [64, 64]
    for name in ("a", "clip/frame_000000", "clip/frame_000001"):
        depth = np.load(out / f"{name}.npy")
        png, _ = read_depth(out / f"{name}.png", 256.0)
        assert np.abs(png[0].numpy() - depth).max() <= 1 / 512 + 1e-6
        assert not (out / f"{name}_color.png").exists()  # only the requested formats
        header, verts = read_ply(out / f"{name}.ply")
        assert "format ascii 1.0" in header and len(verts) == depth.size
    # Flip-TTA and a fixed network size, through the API, give the same map as the CLI.
    predictor = disdepth.load(ckpt, size=(64, 64), flip_tta=True)
    np.testing.assert_allclose(np.load(out / "a.npy"), predictor.predict(Image.open(images / "a.png")), atol=1e-5)


def test_api_inputs_batches_and_sizes(ckpt, images):
    predictor = disdepth.load(ckpt, device="cpu")
    pil = Image.open(images / "a.png")
    arr = np.asarray(pil.convert("RGB"))
    ref = predictor.predict(pil)
    assert ref.shape == arr.shape[:2] and ref.dtype == np.float32 and (ref > 0).all()
    np.testing.assert_array_equal(predictor.predict(arr), ref)
    np.testing.assert_allclose(predictor.predict(torch.tensor(arr).permute(2, 0, 1) / 255.0), ref, atol=1e-6)
    other = np.asarray(Image.open(images / "sub" / "c.png").convert("RGB"))
    batch = predictor.predict_batch([arr, other, arr], batch_size=2)
    assert [d.shape for d in batch] == [(40, 56), (50, 30), (40, 56)]
    np.testing.assert_allclose(batch[1], predictor.predict(other), atol=1e-5)
    assert predictor.run_size(40, 56) == (32, 64) and round_size(50, 30) == (64, 32) and round_size(10, 10) == (32, 32)
    with pytest.raises(ValueError, match="shape"):
        to_tensor(np.zeros((4, 4), np.uint8))
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        to_tensor(torch.full((3, 4, 4), 2.0))
    with pytest.raises(TypeError, match="unsupported image type"):
        to_tensor("a.png")


def test_predict_bad_inputs_name_the_file(ckpt, tmp_path, capsys):
    out = str(tmp_path / "out")
    missing = tmp_path / "nope.png"
    assert main(["predict", str(ckpt), str(missing), "--out", out]) == 2
    assert str(missing) in capsys.readouterr().err
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"not a png at all")
    assert main(["predict", str(ckpt), str(broken), "--out", out]) == 2
    err = capsys.readouterr().err
    assert str(broken) in err and "unreadable image" in err
    text = tmp_path / "notes.txt"
    text.write_text("hello")
    assert main(["predict", str(ckpt), str(text), "--out", out]) == 2
    err = capsys.readouterr().err
    assert str(text) in err and "unsupported input type .txt" in err
    empty = tmp_path / "empty"
    empty.mkdir()
    assert main(["predict", str(ckpt), str(empty), "--out", out]) == 2
    assert "folder has no images" in capsys.readouterr().err
    fake_gif = tmp_path / "fake.gif"
    fake_gif.write_bytes(b"GIF89a broken")
    assert main(["predict", str(ckpt), str(fake_gif), "--out", out]) == 2
    assert str(fake_gif) in capsys.readouterr().err
    assert main(["predict", str(ckpt), str(broken), "--out", out, "--formats", "ply"]) == 2
    assert "intrinsics" in capsys.readouterr().err
    try:
        import av  # noqa: F401
    except ImportError:
        video = tmp_path / "clip.mp4"
        video.write_bytes(b"\x00" * 16)
        assert main(["predict", str(ckpt), str(video), "--out", out]) == 2
        err = capsys.readouterr().err
        assert str(video) in err and "pip install av" in err
    assert not (tmp_path / "out" / "predictions.json").exists()  # nothing is written when an input is bad


def test_nice_ticks():
    assert nice_ticks(0.0, 10.0) == [0.0, 2.5, 5.0, 7.5, 10.0]
    assert nice_ticks(2.0, 80.0) == [20.0, 40.0, 60.0, 80.0]
    ticks = nice_ticks(4.951, 4.958)
    assert ticks[0] >= 4.951 and ticks[-1] <= 4.958 and len(ticks) >= 3
