"""Datasets on generated KITTI/NYU fixtures (BTS layouts), on ../shared/data via CSV, and `data check`."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from disdepth.cli import main
from disdepth.config import load_config
from disdepth.data.bench import write_kitti_fixture, write_nyu_fixture
from disdepth.data.build import build_dataset
from disdepth.data.check import check_dataset
from disdepth.data.io import write_depth_png

KEYS = {"image", "depth", "valid", "focal", "intrinsics", "id"}


def _check_sample(s: dict, hw: tuple[int, int]) -> None:
    assert set(s) - {"geometry", "geometry_hw"} == KEYS  # augmented samples record their geometry (transforms.py)
    assert s["image"].shape == (3, *hw) and s["image"].dtype == torch.float32
    assert s["depth"].shape == (1, *hw) and s["valid"].shape == (1, *hw) and s["valid"].dtype == torch.bool
    assert torch.equal(s["valid"], s["depth"] > 0)
    assert s["intrinsics"].shape == (4,) and s["focal"] == s["intrinsics"][0]


@pytest.fixture(scope="module")
def kitti(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("kitti")
    lst = write_kitti_fixture(root, n=2)
    # a test list with a frame without ground truth, as in BTS's eigen_test_files_with_gt
    lines = lst.read_text().splitlines()
    (root / "test.txt").write_text("\n".join([*lines, lines[0].split()[0] + " None 721.5377"]) + "\n")
    return root, lst


def _kitti_cfg(root: Path, lst: Path, *extra: str):
    return load_config(
        overrides=[
            "data.dataset=kitti",
            f"data.root={root / 'raw'}",
            f"data.gt_root={root / 'gt'}",
            f"data.train_list={lst}",
            f"data.test_list={root / 'test.txt'}",
            *extra,
        ]
    )


def test_kitti_fixture(kitti: tuple[Path, Path]) -> None:
    root, lst = kitti
    cfg = _kitti_cfg(root, lst)
    train = build_dataset(cfg, "train")
    torch.manual_seed(0)
    s = train[0]
    _check_sample(s, (352, 704))  # KB crop then BTS random crop
    assert len(train) == 2
    test = build_dataset(cfg, "test")
    assert len(test) == 3  # the None line is kept for evaluation (counted as skipped there)
    s = test[0]
    _check_sample(s, (352, 1216))
    assert s["id"] == "2011_09_26_2011_09_26_drive_0001_sync_image_02_data_0000000000"
    assert s["intrinsics"][3] == pytest.approx((375 - 1) / 2 - 23)  # cy shifted by the KB crop top margin
    assert float(s["depth"].max()) < 85 and 0 < float(s["valid"].float().mean()) < 0.2  # sparse
    assert not test[2]["valid"].any()  # no GT: all invalid
    gt = test.load_gt(0)
    assert gt["depth"].shape == (1, 375, 1242)  # native resolution for the full-frame protocols
    loader = torch.utils.data.DataLoader(test, batch_size=3)
    assert next(iter(loader))["image"].shape == (3, 3, 352, 1216)


def test_nyu_fixture(tmp_path: Path) -> None:
    lst = write_nyu_fixture(tmp_path, n=2)
    cfg = load_config(
        overrides=["data.dataset=nyu", f"data.root={tmp_path}", f"data.train_list={lst}", f"data.test_list={lst}"]
    )
    torch.manual_seed(0)
    _check_sample(build_dataset(cfg, "train")[0], (416, 544))
    s = build_dataset(cfg, "test")[1]
    _check_sample(s, (480, 640))
    assert s["id"] == "bench_scene_rgb_00001" and s["intrinsics"][0] == pytest.approx(518.8579)
    assert 0.4 <= float(s["depth"][s["valid"]].min()) and float(s["depth"].max()) <= 10.6
    off = load_config(overrides=["data.augment.enabled=false"], base=cfg)
    assert build_dataset(off, "train")[0]["depth"].shape == (1, 427, 565)  # BTS border crop only


def test_missing_list_is_a_clear_error() -> None:
    cfg = load_config(overrides=["data.dataset=nyu"])
    with pytest.raises(ValueError, match="data.train_list is empty"):
        build_dataset(cfg, "train")
    with pytest.raises(ValueError, match="split must be"):
        build_dataset(cfg, "dev")  # type: ignore[arg-type]


def test_shared_kitti_samples_via_csv(shared_data: Path) -> None:
    csv = shared_data / "kitti_samples" / "index.csv"
    cfg = load_config(
        overrides=["data.dataset=csv", f"data.test_list={csv}", f"data.train_list={csv}", "data.kb_crop=true"]
    )
    test = build_dataset(cfg, "test")
    assert len(test) == 20
    s = test[0]
    _check_sample(s, (352, 1216))  # 1242x375 and 1224x370 frames alike
    assert s["intrinsics"][0] == pytest.approx(721.5377)
    assert 0.02 < float(s["valid"].float().mean()) < 0.1 and float(s["depth"].max()) < 80.5
    torch.manual_seed(0)
    cfg.data.augment.crop_height, cfg.data.augment.crop_width = 352, 704
    _check_sample(build_dataset(cfg, "train")[5], (352, 704))


def test_shared_seven_scenes_via_csv(shared_data: Path) -> None:
    csv = shared_data / "seven_scenes_redkitchen" / "index.csv"
    cfg = load_config(overrides=["data.dataset=csv", f"data.test_list={csv}", f"data.train_list={csv}"])
    test = build_dataset(cfg, "test")
    assert len(test) == 234
    s = test[0]
    _check_sample(s, (480, 640))
    d = s["depth"][s["valid"]]
    assert 0.5 < float(d.min()) and float(d.max()) < 4.5 and float(s["valid"].float().mean()) > 0.7
    assert s["intrinsics"].tolist() == [585.0, 585.0, 320.0, 240.0]
    cfg.data.augment.crop_height, cfg.data.augment.crop_width = 416, 544
    torch.manual_seed(0)
    _check_sample(build_dataset(cfg, "train")[3], (416, 544))


def test_synthetic_branch() -> None:
    pytest.importorskip("disdepth.data.synthetic")
    cfg = load_config(
        overrides=[
            "data.synthetic.n_train=3",
            "data.synthetic.n_val=2",
            "data.synthetic.height=48",
            "data.synthetic.width=64",
        ]
    )
    train, val = build_dataset(cfg, "train"), build_dataset(cfg, "val")
    assert (len(train), len(val)) == (3, 2)
    _check_sample(val[0], (48, 64))
    torch.manual_seed(0)
    assert train[0]["image"].shape == (3, 48, 64)


def test_data_check_finds_all_problems(tmp_path: Path) -> None:
    img = tmp_path / "img"
    img.mkdir()
    rows = ["rgb,depth,depth_scale"]
    for i in range(6):
        Image.fromarray(np.full((12, 16, 3), 100, np.uint8)).save(img / f"{i}.png")
        write_depth_png(img / f"{i}_d.png", np.full((12, 16), 2.0), 1000.0)
        rows.append(f"img/{i}.png,img/{i}_d.png,1000")
    (img / "1.png").write_bytes(b"garbage")  # unreadable image
    (img / "2_d.png").unlink()  # missing depth
    write_depth_png(img / "3_d.png", np.full((10, 16), 2.0), 1000.0)  # wrong size
    write_depth_png(img / "4_d.png", np.zeros((12, 16)), 1000.0)  # no valid pixel
    np.save(img / "5_d.npy", np.full((12, 16), np.nan, np.float32))  # NaN depth
    rows[6] = "img/5.png,img/5_d.npy,"
    csv = tmp_path / "index.csv"
    csv.write_text("\n".join(rows) + "\n")
    cfg = load_config(overrides=["data.dataset=csv", f"data.test_list={csv}"])
    stats, problems = check_dataset(cfg)
    kinds = {p.kind: p for p in problems}
    assert set(kinds) == {"unreadable", "missing", "size", "no_valid", "nan"}
    assert "1.png" in kinds["unreadable"].message and "2_d.png" in kinds["missing"].message
    assert "3_d.png" in kinds["size"].message and "4_d.png" in kinds["no_valid"].message
    assert "5_d.npy" in kinds["nan"].message
    assert stats["test"].ok == 1 and stats["test"].summary()["depth_min_m"] == pytest.approx(2.0)
    out = tmp_path / "check.json"
    assert (
        main(["data", "check", "--set", "data.dataset=csv", "--set", f"data.test_list={csv}", "--json", str(out)]) == 1
    )
    assert json.loads(out.read_text())["n_problems"] == 5
