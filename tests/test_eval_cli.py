"""`disdepth eval --pred-dir` end to end on a tmp folder (BTS offline evaluation)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from disdepth.cli import main
from disdepth.data.bench import write_kitti_fixture, write_nyu_fixture
from disdepth.data.io import read_depth, write_depth_png
from disdepth.eval.scoring import flip_tta, score_pairs


def _nyu(tmp_path: Path) -> tuple[Path, list[str]]:
    lst = write_nyu_fixture(tmp_path / "nyu", n=3)
    # frame 2: ground truth only outside the Eigen crop -> skipped with a reason
    gt2 = tmp_path / "nyu" / "bench_scene" / "sync_depth_00002.png"
    d = np.zeros((480, 640), np.float32)
    d[:20] = 3.0
    write_depth_png(gt2, d, 1000.0)
    args = ["--set", "data.dataset=nyu", "--set", f"data.root={tmp_path / 'nyu'}", "--set", f"data.test_list={lst}"]
    return lst, args


def test_eval_pred_dir_end_to_end(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _, args = _nyu(tmp_path)
    pred_dir = tmp_path / "pred"
    for i in range(3):
        gt, _ = read_depth(tmp_path / "nyu" / "bench_scene" / f"sync_depth_{i:05d}.png", 1000.0)
        write_depth_png(pred_dir / f"rgb_{i:05d}.png", gt * 1.1, 1000.0)  # BTS names: <image stem>.png
    out = tmp_path / "res.json"
    rc = main(
        [
            "eval",
            *args,
            "--pred-dir",
            str(pred_dir),
            "--pred-scale",
            "1000",
            "--protocol",
            "nyu_eigen",
            "--json",
            str(out),
            "--per-image",
            "--set",
            "eval.max_depth=20",  # so that 1.1 x gt is never clamped
        ]
    )
    assert rc == 0
    text = capsys.readouterr().out
    assert "protocol nyu_eigen" in text and "images 2 (skipped 1)" in text and "flip-TTA no" in text
    res = json.loads(out.read_text())
    assert res["metrics"]["abs_rel"] == pytest.approx(0.1, abs=2e-4)  # PNG quantisation only
    assert res["metrics"]["d1"] == 1.0
    assert res["protocol"] == "nyu_eigen" and res["caps"] == {"min_depth": 0.001, "max_depth": 20.0}
    assert res["crop"] == "rows 45:471, cols 41:601 at 480x640"
    assert res["n_evaluated"] == 2 and res["n_skipped"] == 1 and res["flip_tta"] is False
    assert res["skipped"][0]["id"] == "bench_scene_rgb_00002" and "no valid" in res["skipped"][0]["reason"]
    assert set(res["per_image"]) == {"bench_scene_rgb_00000", "bench_scene_rgb_00001"}


def test_eval_errors_name_files(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _, args = _nyu(tmp_path)
    pred_dir = tmp_path / "pred"
    pred_dir.mkdir()
    write_depth_png(pred_dir / "rgb_00000.png", np.ones((240, 320)), 1000.0)  # wrong size
    assert main(["eval", *args, "--pred-dir", str(pred_dir)]) == 2
    assert "rgb_00001.png" in capsys.readouterr().err  # missing predictions are listed by name
    assert main(["eval", *args, "--pred-dir", str(pred_dir), "--allow-missing"]) == 2
    err = capsys.readouterr().err
    assert "rgb_00000.png" in err and "wrong size" in err
    assert main(["eval", *args, "--pred-dir", str(tmp_path / "nope")]) == 2
    assert "prediction folder not found" in capsys.readouterr().err


def test_eval_kitti_kb_cropped_predictions(tmp_path: Path) -> None:
    root = tmp_path / "kitti"
    lst = write_kitti_fixture(root, n=1)
    lines = lst.read_text().splitlines()
    test = root / "test.txt"
    test.write_text(f"{lines[0]}\n{lines[0].split()[0].replace('0000000000', '0000000009')} None 721.5377\n")
    gt, _ = read_depth(root / "gt" / lines[0].split()[1], 256.0)
    pred_dir = tmp_path / "pred"
    write_depth_png(pred_dir / "0000000000.png", gt[:, 23:375, 13:1229], 256.0)  # 352x1216 KB crop, as BTS saves
    base = [
        "eval",
        "--set",
        "data.dataset=kitti",
        "--set",
        f"data.root={root / 'raw'}",
        "--set",
        f"data.gt_root={root / 'gt'}",
        "--set",
        f"data.test_list={test}",
        "--pred-dir",
        str(pred_dir),
    ]
    for protocol in ("kitti_eigen_garg", "kitti_garg_full", "kitti_eigen"):
        out = tmp_path / f"{protocol}.json"
        assert main([*base, "--protocol", protocol, "--json", str(out), "--flip-tta"]) == 0
        res = json.loads(out.read_text())
        assert res["metrics"]["abs_rel"] == pytest.approx(0.0, abs=1e-6), protocol
        assert res["n_evaluated"] == 1 and res["skip_reasons"] == {"no ground truth in the list": 1}
        assert res["flip_tta"] is True and res["caps"]["max_depth"] == 80.0 and res["pred_scale"] == 256.0


def test_score_pairs_and_flip_tta() -> None:
    gt = torch.rand(1, 8, 8) + 1
    res = score_pairs([("a", gt.clone(), gt, gt > 0), ("b", gt, torch.zeros_like(gt), gt < 0)], "none", flip_tta=True)
    assert res.n_evaluated == 1 and res.skipped[0][0] == "b" and res.to_dict()["flip_tta"] is True
    img = torch.arange(12.0).view(1, 1, 3, 4)
    assert torch.equal(flip_tta(lambda x: x, img), img)  # an equivariant model is unchanged by flip TTA
    with pytest.raises(ValueError, match="^a: "):
        score_pairs([("a", torch.ones(2, 2), torch.ones(3, 3), torch.ones(3, 3, dtype=torch.bool))], "none")


def test_eval_pred_dir_skips_8bit_and_empty_predictions_with_a_reason(tmp_path: Path, capsys) -> None:
    """An 8-bit PNG or an all-zero prediction is not a depth map: it is skipped and counted, not scored."""
    from PIL import Image

    _, args = _nyu(tmp_path)
    pred_dir = tmp_path / "pred"
    gt, _ = read_depth(tmp_path / "nyu" / "bench_scene" / "sync_depth_00000.png", 1000.0)
    write_depth_png(pred_dir / "rgb_00000.png", gt, 1000.0)
    Image.fromarray(np.full((480, 640), 200, np.uint8)).save(pred_dir / "rgb_00001.png")  # 8-bit
    write_depth_png(pred_dir / "rgb_00002.png", np.zeros((480, 640), np.float32), 1000.0)  # empty
    out = tmp_path / "res.json"
    rc = main(["eval", *args, "--pred-dir", str(pred_dir), "--pred-scale", "1000", "--json", str(out)])
    assert rc == 0
    res = json.loads(out.read_text())
    assert res["n_evaluated"] == 1 and res["n_skipped"] == 2
    reasons = " ".join(res["skip_reasons"])
    assert "8-bit" in reasons and "prediction:" in reasons
    assert "Traceback" not in capsys.readouterr().err
