"""Issue 13, data and metrics: bad input gets one clear line naming the file or key, never a traceback.

Each case goes through the library (exception type, ``problem`` kind, the file in the message) and, where a
user meets it, through the CLI (exit code, one ``disdepth:`` line on stderr, no "Traceback").
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from disdepth.cli import main
from disdepth.config import load_config
from disdepth.data.build import build_dataset
from disdepth.data.check import check_dataset, format_report
from disdepth.data.csv import CSVDataset, csv_records
from disdepth.data.io import (
    DataError,
    FileDepthDataset,
    MissingFileError,
    Record,
    read_bts_list,
    read_depth,
    read_image,
    write_depth_png,
)
from disdepth.data.mixing import MixedDataset
from disdepth.data.transforms import RandomCrop

H, W = 32, 48
TINY_MODEL = [
    *("--set", "model.encoder=test_efficientnet", "--set", "model.decoder_channels=[16,16,8,8,8]"),
    *("--set", "model.pretrained=none", "--set", "model.decoder=unet"),
]


def _rgb(path: Path, h: int = H, w: int = W) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (h, w, 3), dtype=np.uint8)).save(path)
    return path


def _dataset(folder: Path, n: int = 4, scale: str = "1000") -> Path:
    """``n`` JPEG + 16-bit PNG pairs (2 m everywhere) and their ``index.csv`` with a depth_scale column."""
    rows = ["rgb,depth,depth_scale"]
    for i in range(n):
        _rgb(folder / f"{i}.jpg")
        write_depth_png(folder / f"{i}.png", np.full((H, W), 2.0), 1000.0)
        rows.append(f"{i}.jpg,{i}.png,{scale}")
    index = folder / "index.csv"
    index.write_text("\n".join(rows) + "\n")
    return index


def _truncate(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def _cli(args: list[str], capsys: pytest.CaptureFixture) -> tuple[int, str, str]:
    """Run the CLI; return (exit code, stdout, the single ``disdepth:`` line on stderr)."""
    rc = main(args)
    out, err = capsys.readouterr()
    assert "Traceback" not in err and "Traceback" not in out
    # stderr may also hold progress-bar fragments and log warnings; the error itself is exactly one line.
    errors = re.findall(r"disdepth: .*", err)
    assert len(errors) <= 1, err
    return rc, out, errors[0] if errors else ""


def _train(index: Path, tmp_path: Path, *extra: str) -> list[str]:
    return [
        "train", "--run-dir", str(tmp_path / "run"), *TINY_MODEL,
        "--set", "data.dataset=csv", "--set", f"data.train_list={index}", "--set", "data.batch_size=2",
        "--set", "train.steps=2", "--set", "train.eval_every=0", "--set", "train.checkpoint_every=0",
        "--set", "train.log_every=1", *extra,
    ]  # fmt: skip


def _check(index: Path, *extra: str) -> list[str]:
    return ["data", "check", "--set", "data.dataset=csv", "--set", f"data.test_list={index}", *extra]


# --- 1. data errors survive DataLoader workers --------------------------------------------------------


def test_truncated_jpeg_with_workers_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    index = _dataset(tmp_path / "ds")
    _truncate(tmp_path / "ds" / "2.jpg")
    rc, _, line = _cli(_train(index, tmp_path, "--set", "data.num_workers=2"), capsys)
    assert rc == 2
    assert line.startswith("disdepth: error: ") and f"{tmp_path / 'ds' / '2.jpg'}: unreadable image" in line


def _first_error_through_worker(dataset: torch.utils.data.Dataset) -> BaseException:
    loader = torch.utils.data.DataLoader(dataset, batch_size=1, num_workers=1)
    with pytest.raises(Exception) as err:
        list(loader)
    return err.value


def test_every_dataset_error_is_rebuilt_after_a_worker(tmp_path: Path) -> None:
    """torch re-raises a worker's exception as ``type(text)``: ours keep their one-line message and type."""
    index = _dataset(tmp_path, n=1)
    (tmp_path / "0.jpg").unlink()
    missing = _first_error_through_worker(CSVDataset(index))
    assert isinstance(missing, MissingFileError) and isinstance(missing, FileNotFoundError)
    assert str(missing) == f"{tmp_path / '0.jpg'}: image file not found" and missing.problem == "missing"

    _rgb(tmp_path / "0.jpg")  # back; now a crop that does not fit: a ValueError of the transform, wrapped
    too_small = _first_error_through_worker(CSVDataset(index, transform=RandomCrop(64, 64)))
    assert type(too_small) is DataError and "\n" not in str(too_small)
    assert str(too_small).startswith(f"{tmp_path / '0.jpg'}: random crop 64x64 is larger than the sample 32x48")
    assert too_small.path == str(tmp_path / "0.jpg") and f"{index}:2" in str(too_small)


def test_data_error_from_one_string() -> None:
    text = (
        "Caught DataError in DataLoader worker process 0.\nOriginal Traceback (most recent call last):\n"
        '  File "x.py", line 1, in f\n    raise DataError(path, "bad", "nan")\n'
        "disdepth.data.io.DataError: /d/0.png: depth has 3 NaN/inf values\n"
    )
    err = DataError(text)
    assert (str(err), err.path, err.message) == (
        "/d/0.png: depth has 3 NaN/inf values",
        "/d/0.png",
        "depth has 3 NaN/inf values",
    )
    assert str(DataError("plain message without a path")) == "plain message without a path"
    assert DataError("/d/1.png", "bad", "8bit").reason.startswith("8-bit depth image")


def test_unlabelled_image_of_the_wrong_size_is_a_data_error() -> None:
    class Images(torch.utils.data.Dataset):
        def __init__(self, sizes: list[int]) -> None:
            self.sizes = sizes

        def __len__(self) -> int:
            return len(self.sizes)

        def __getitem__(self, i: int) -> dict:
            s = self.sizes[i]
            return {"image": torch.zeros(3, s, s), "depth": torch.zeros(1, s, s), "valid": torch.ones(1, s, s) > 0,
                    "focal": torch.tensor(1.0), "intrinsics": torch.ones(4), "id": f"im{i}"}  # fmt: skip

    mixed = MixedDataset(Images([8, 8]), Images([8, 9, 9, 9]), fraction=0.5)
    with pytest.raises(DataError, match=r"^distill.unlabelled_list: image 'unlabelled/im\d'"):
        for i in range(len(mixed)):
            torch.manual_seed(i)
            mixed[i]


# --- 2. depth images must be 16-bit ---------------------------------------------------------------------


def test_eight_bit_and_colour_depth_are_refused(tmp_path: Path) -> None:
    Image.fromarray(np.full((4, 5), 200, np.uint8)).save(tmp_path / "d8.png")  # mode L
    with pytest.raises(DataError, match=r"d8.png: depth image is an 8-bit greyscale PNG, not 16-bit.*uint16") as err:
        read_depth(tmp_path / "d8.png", 1000.0)
    assert err.value.problem == "8bit" and err.value.reason == "8-bit depth image (depth PNGs must be 16-bit)"
    Image.fromarray(np.full((4, 5), 200, np.uint8)).convert("P").save(tmp_path / "viz.png")
    with pytest.raises(DataError, match="palette") as err:
        read_depth(tmp_path / "viz.png", 1000.0)
    assert err.value.problem == "8bit"
    _rgb(tmp_path / "rgb.png", 4, 5)
    with pytest.raises(DataError, match=r"rgb.png: depth image is a RGB colour PNG \(the RGB image\?\)") as err:
        read_depth(tmp_path / "rgb.png", 1000.0)
    assert err.value.problem == "format"
    # ... and the other way round: a 16-bit depth map in the image column.
    write_depth_png(tmp_path / "d16.png", np.ones((4, 5)), 1000.0)
    with pytest.raises(DataError, match=r"d16.png: image is a single-channel I;16 map \(a depth file\?\)"):
        read_image(tmp_path / "d16.png")


def test_predictions_report_eight_bit_and_no_valid_pixel(tmp_path: Path) -> None:
    """What ``eval --pred-dir`` calls to skip a prediction with a reason: read_depth(..., require_valid=True)."""
    write_depth_png(tmp_path / "zero.png", np.zeros((4, 5)), 256.0)
    depth, valid = read_depth(tmp_path / "zero.png", 256.0)  # ground truth may be empty: no error
    assert not valid.any()
    with pytest.raises(DataError, match="zero.png: no valid depth pixel") as err:
        read_depth(tmp_path / "zero.png", 256.0, require_valid=True)
    assert (err.value.problem, err.value.reason) == ("no_valid", "no valid depth pixel")
    Image.fromarray(np.full((4, 5), 9, np.uint8)).save(tmp_path / "pred8.png")
    with pytest.raises(DataError) as err:
        read_depth(tmp_path / "pred8.png", 256.0, require_valid=True)
    assert err.value.problem == "8bit" and "pred8.png" in str(err.value)


def test_eight_bit_depth_in_training_and_check(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    index = _dataset(tmp_path / "ds")
    Image.fromarray(np.full((H, W), 2, np.uint8)).save(tmp_path / "ds" / "1.png")
    rc, out, _ = _cli(_check(index), capsys)
    assert rc == 1 and f"8bit: {tmp_path / 'ds' / '1.png'}: depth image is an 8-bit greyscale PNG" in out
    rc, _, line = _cli(_train(index, tmp_path, "--set", "data.num_workers=0"), capsys)
    assert rc == 2 and line.startswith(f"disdepth: error: {tmp_path / 'ds' / '1.png'}: depth image is an 8-bit")


# --- 3. scales and ranges -------------------------------------------------------------------------------

BAD_SCALES = ["nan", "inf", "-1", "0", "1e-40", "abc"]


def test_every_bad_depth_scale_row_is_named(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    index = _dataset(tmp_path / "ds", n=len(BAD_SCALES) + 1)
    rows = index.read_text().splitlines()
    rows[2:] = [r.rsplit(",", 1)[0] + f",{s}" for r, s in zip(rows[2:], BAD_SCALES, strict=True)]
    index.write_text("\n".join(rows) + "\n")
    cfg = load_config(overrides=["data.dataset=csv", f"data.test_list={index}"])
    stats, problems = check_dataset(cfg)
    assert [(p.kind, p.path) for p in problems] == [("scale", f"{index}:{n}") for n in range(3, 3 + len(BAD_SCALES))]
    assert "got nan" in problems[0].message and "outside 0.01..1e+06" in problems[4].message
    assert stats["test"].ok == 1  # the good row is still read
    rc, _, line = _cli(_train(index, tmp_path), capsys)
    assert rc == 2 and line.startswith(f"disdepth: error: {index}:3: column 'depth_scale' must be a finite number")
    assert "and 5 more problem(s)" in line


def test_bad_config_depth_scale(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    index = tmp_path / "index.csv"
    index.write_text("rgb,depth\na.jpg,a.png\nb.jpg,b.png\n")
    rc, _, line = _cli(_check(index, "--set", "data.depth_scale=nan"), capsys)
    assert rc == 2 and line == (
        "disdepth: config error: data.depth_scale: must be finite and >= 0 (0 = dataset default), got nan"
    )
    # A value of the right type but absurd: one problem for the key, not one per row or file.
    cfg = load_config(overrides=["data.dataset=csv", f"data.test_list={index}", "data.depth_scale=1e-40"])
    _, problems = check_dataset(cfg)
    assert [(p.kind, p.path) for p in problems] == [("scale", str(index))]
    assert problems[0].message.startswith(f"{index}: data.depth_scale 1e-40 is outside 0.01..1e+06")
    lst = tmp_path / "list.txt"
    lst.write_text("a.jpg a.png 721.5\n")
    with pytest.raises(DataError, match=r"list.txt: data.depth_scale 1e-40 is outside 0.01..1e\+06"):
        read_bts_list(lst, tmp_path, "", 1e-40, 1.0)


def test_depth_beyond_the_sane_range(tmp_path: Path) -> None:
    Image.fromarray(np.array([[0, 60000]], np.uint16)).save(tmp_path / "far.png")
    assert float(read_depth(tmp_path / "far.png", 1000.0)[0].max()) == 60.0
    with pytest.raises(DataError, match=r"far.png: 1 pixel\(s\) decode beyond 10000 m \(max 600000 m\)") as err:
        read_depth(tmp_path / "far.png", 0.1)  # a scale in the accepted range, values still absurd
    assert err.value.problem == "range"
    np.save(tmp_path / "sky.npy", np.array([[1.0, 1e6]], np.float32))  # "infinity" marker instead of 0
    with pytest.raises(DataError, match="sky.npy.*'infinity' value that should be 0"):
        read_depth(tmp_path / "sky.npy", 0.0)


# --- 4. data check finds every problem in one pass -----------------------------------------------------


def test_malformed_list_lines_are_all_collected(tmp_path: Path) -> None:
    lst = tmp_path / "list.txt"
    lines = ["a.png b.png 721.5", "only_one_field", "a.png b.png focal", "a b c d", "c.png d.png nan", "e.png None -1"]
    lst.write_text("\n".join(lines) + "\n")
    errors: list[DataError] = []
    records = read_bts_list(lst, tmp_path, "", 256.0, 721.5, errors)
    assert len(records) == 1 and [e.path for e in errors] == [f"{lst}:{n}" for n in (2, 3, 4, 5, 6)]
    assert "got 1 field(s)" in errors[0].message and "focal 'focal' is not a number" in errors[1].message
    assert "got 4 field(s)" in errors[2].message and "finite number > 0" in errors[3].message
    with pytest.raises(DataError, match=r"list.txt:2: .*\(and 4 more problem\(s\)"):
        read_bts_list(lst, tmp_path, "", 256.0, 721.5)
    cfg = load_config(overrides=["data.dataset=kitti", f"data.test_list={lst}", f"data.root={tmp_path}"])
    _, problems = check_dataset(cfg)
    assert sum(p.kind == "format" for p in problems) == 5 and any(p.kind == "missing" for p in problems)


def test_malformed_csv_rows_are_all_collected(tmp_path: Path) -> None:
    index = tmp_path / "index.csv"
    index.write_text(
        "id,rgb,depth,depth_scale,fx\na,a.jpg,a.npy,,500\nb,b.jpg\nc,c.jpg,c.npy,,wide\na,d.jpg,d.npy,,1\n"
    )
    errors: list[DataError] = []
    assert [r.id for r in csv_records(index, errors=errors)] == ["a"]
    assert [e.path for e in errors] == [f"{index}:{n}" for n in (3, 4, 5)]
    assert "row has 2 cells but the header has 5 columns" in errors[0].message
    assert "column 'fx' is not a number: 'wide'" in errors[1].message and "duplicate id 'a'" in errors[2].message


def test_non_utf8_list_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    index = tmp_path / "index.csv"
    index.write_bytes("rgb,depth,depth_scale\ncaf\xe9.jpg,d.png,1000\n".encode("latin-1"))
    rc, out, _ = _cli(_check(index), capsys)
    assert rc == 1 and f"encoding: {index}: CSV index is not UTF-8 text (byte 0xe9 on line 2)" in out
    rc, _, line = _cli(_train(index, tmp_path), capsys)
    assert rc == 2 and line.startswith(f"disdepth: error: {index}: CSV index is not UTF-8 text")
    (tmp_path / "list.txt").write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00")  # a binary file given as the list
    with pytest.raises(DataError, match="list.txt: list file (is not UTF-8|contains NUL)"):
        read_bts_list(tmp_path / "list.txt", tmp_path, "", 256.0, 1.0)


@pytest.mark.parametrize("header", ["rgb", "rgb,depth"])
def test_images_only_csv_is_a_note_not_a_later_failure(
    tmp_path: Path, capsys: pytest.CaptureFixture, header: str
) -> None:
    for i in range(3):
        _rgb(tmp_path / f"{i}.jpg")
    index = tmp_path / "index.csv"
    cells = "" if header == "rgb" else ","
    index.write_text(header + "\n" + "".join(f"{i}.jpg{cells}\n" for i in range(3)))
    rc, out, _ = _cli(_check(index), capsys)
    assert rc == 0 and "no problems found" not in out
    assert (
        out.strip().splitlines()[-1]
        == "[test] 3 images, no depth: usable label-free (set data.require_depth=false to train from it label-free "
        "(the teacher's depth is the target))"
    )
    rc, _, line = _cli(_train(index, tmp_path), capsys)
    assert rc == 2 and line.startswith(f"disdepth: error: {index}: ") and "data.require_depth=false" in line


def test_check_report_names_list_problems(tmp_path: Path) -> None:
    index = _dataset(tmp_path, n=2)
    index.write_text(index.read_text() + "2.jpg,2.jpg,1000\n")  # the image listed as its own depth
    stats, problems = check_dataset(load_config(overrides=["data.dataset=csv", f"data.test_list={index}"]))
    assert [p.kind for p in problems] == ["format"] and "listed as both image and depth" in problems[0].message
    assert "1 problem(s): format 1" in format_report(stats, problems)


def test_missing_record_file_is_both_error_types(tmp_path: Path) -> None:
    ds = FileDepthDataset([Record(tmp_path / "x.jpg", None, 1.0, 1.0, None, "x", "l:1")])
    with pytest.raises(FileNotFoundError, match="x.jpg: image file not found"):
        ds[0]
    with pytest.raises(ValueError, match="x.jpg"):  # the CLI's one-line handler catches either
        ds[0]


def test_training_list_without_depth_names_the_list(tmp_path: Path) -> None:
    lst = tmp_path / "list.txt"
    lst.write_text("a.png None 721.5\nb.png None 721.5\n")
    cfg = load_config(overrides=["data.dataset=kitti", f"data.train_list={lst}", f"data.root={tmp_path}"])
    with pytest.raises(DataError, match=r"list.txt: 2 images, no depth: supervised training needs depth") as err:
        build_dataset(cfg, "train")
    assert err.value.problem == "no_depth"
