"""File IO: every bad input gives an error that names the file."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from disdepth.data.csv import csv_records
from disdepth.data.io import DataError, Record, load_record, read_bts_list, read_depth, read_image, write_depth_png


def _rgb(path: Path, h: int = 8, w: int = 10) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((h, w, 3), 128, np.uint8)).save(path)
    return path


def test_depth_png_roundtrip_and_invalid_values(tmp_path: Path) -> None:
    d = np.array([[0.0, 1.0, 2.5], [10.0, 0.0, 3.0]], np.float32)
    p = write_depth_png(tmp_path / "d.png", d, 256.0)
    with Image.open(p) as im:
        assert im.mode in ("I;16", "I")
    depth, valid = read_depth(p, 256.0)
    assert depth.shape == (1, 2, 3) and depth.dtype == torch.float64  # exact decode (see eval.metrics)
    assert torch.allclose(depth[0], torch.from_numpy(d).double(), atol=1 / 512)
    assert valid[0].tolist() == [[False, True, True], [True, False, True]]
    Image.fromarray(np.array([[65535, 1000]], np.uint16)).save(tmp_path / "s.png")  # 7-Scenes invalid marker
    depth, valid = read_depth(tmp_path / "s.png", 1000.0)
    assert depth[0].tolist() == [[0.0, 1.0]] and valid[0].tolist() == [[False, True]]


def test_read_image(tmp_path: Path) -> None:
    img = read_image(_rgb(tmp_path / "a.jpg"))
    assert img.shape == (3, 8, 10) and 0.0 <= float(img.min()) <= float(img.max()) <= 1.0


@pytest.mark.parametrize("case", ["missing_image", "unreadable_image", "missing_depth", "size", "nan", "negative"])
def test_bad_inputs_name_the_file(tmp_path: Path, case: str) -> None:
    rgb, depth = _rgb(tmp_path / "img.png"), tmp_path / "depth.png"
    write_depth_png(depth, np.ones((8, 10)), 1000.0)
    bad = {"missing_image": "img.png", "unreadable_image": "img.png", "missing_depth": "depth.png"}.get(case)
    if case == "missing_image":
        rgb.unlink()
    elif case == "unreadable_image":
        rgb.write_bytes(b"not a png at all")
    elif case == "missing_depth":
        depth.unlink()
    elif case == "size":
        write_depth_png(depth, np.ones((7, 10)), 1000.0)
        bad = "depth.png"
    else:
        arr = np.ones((8, 10), np.float32)
        arr[2, 3] = np.nan if case == "nan" else -1.0
        depth = tmp_path / "depth.npy"
        np.save(depth, arr)
        bad = "depth.npy"
    record = Record(rgb, depth, 1000.0, 500.0, None, "x", "list:1")
    with pytest.raises((DataError, FileNotFoundError)) as err:
        load_record(record)
    assert bad in str(err.value)
    expected = {"size": "size", "nan": "nan", "negative": "negative", "unreadable_image": "unreadable"}.get(case)
    if expected:
        assert err.value.problem == expected


def test_bts_list_parsing(tmp_path: Path) -> None:
    lst = tmp_path / "list.txt"
    lst.write_text("/scene/rgb_00001.jpg /scene/sync_depth_00001.png 518.8579\n\nd/img.png None 721.5\n")
    recs = read_bts_list(lst, tmp_path / "data", tmp_path / "gt", 1000.0, 1.0)
    assert recs[0].rgb == tmp_path / "data" / "scene" / "rgb_00001.jpg"
    assert recs[0].depth == tmp_path / "gt" / "scene" / "sync_depth_00001.png"
    assert recs[0].id == "scene_rgb_00001" and recs[0].focal == pytest.approx(518.8579)
    assert recs[1].depth is None and recs[1].source.endswith("list.txt:3")
    lst.write_text("a.png b.png notanumber\n")
    with pytest.raises(DataError, match=r"list.txt:1"):
        read_bts_list(lst, tmp_path, "", 1.0, 1.0)
    with pytest.raises(FileNotFoundError, match="nope.txt"):
        read_bts_list(tmp_path / "nope.txt", tmp_path, "", 1.0, 1.0)


def test_csv_records(tmp_path: Path) -> None:
    csv = tmp_path / "index.csv"
    csv.write_text("id,rgb,depth,depth_scale,fx,fy,cx,cy\na,r/a.jpg,d/a.png,256,700,701,600,170\nb,r/b.jpg,,,,,,\n")
    recs = csv_records(csv, depth_scale=1000.0)
    assert recs[0].intrinsics == (700.0, 701.0, 600.0, 170.0) and recs[0].depth_scale == 256.0
    assert recs[1].depth is None and recs[1].intrinsics is None
    csv.write_text("rgb,depthfile\na.jpg,a.png\n")
    with pytest.raises(DataError, match="missing column"):
        csv_records(csv)
    csv.write_text("rgb,depth\na.jpg,a.png\n")
    with pytest.raises(DataError, match=r"index.csv:2.*depth_scale"):
        csv_records(csv)
    csv.write_text("rgb,depth,fx\na.jpg,a.npy,abc\n")
    with pytest.raises(DataError, match="'fx' is not a number"):
        csv_records(csv)
