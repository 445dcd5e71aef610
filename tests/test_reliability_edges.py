"""The edges that must hold against a hostile but realistic user: nothing a user gave is overwritten, no write
escapes its root, one run per folder and resume means the same run, non-finite is an error everywhere, I/O failures
are one line, and the data cases users hit (phone photos, header spellings, .npz depth)."""

from __future__ import annotations

import json
import os
import threading

import numpy as np
import pytest
import torch
from PIL import Image
from tiny_runs import TINY

from disdepth.cli import main
from disdepth.config import ConfigError, load_config
from disdepth.data.io import DataError, Record, load_record, read_depth, read_image
from disdepth.deploy.sources import to_rgb
from disdepth.engine.runlock import RunFolderBusy, RunLock


def one_line(capsys, code: int, *names: str) -> str:
    err = capsys.readouterr().err
    assert code == 2, err
    assert "Traceback" not in err
    last = err.strip().splitlines()[-1]
    assert all(n in last for n in names), last
    return last


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    run = tmp_path_factory.mktemp("edges") / "run"
    assert main(["train", "--run-dir", str(run), "--threads", "1", *TINY]) == 0
    return run / "model"


@pytest.fixture
def photos(tmp_path):
    folder = tmp_path / "photos"
    folder.mkdir()
    rgb = (np.random.default_rng(0).random((40, 56, 3)) * 255).astype(np.uint8)
    Image.fromarray(rgb).save(folder / "kitchen.png")
    return folder


# ---------------------------------------------------------------------------------------------- data loss


def test_predict_never_overwrites_a_photo_and_skips_its_own_outputs(model_dir, photos, capsys):
    before = (photos / "kitchen.png").read_bytes()
    one_line(capsys, main(["predict", str(model_dir), str(photos), "--out", str(photos)]), "kitchen.png", "overwrite")
    assert (photos / "kitchen.png").read_bytes() == before
    # --out inside the input folder: a second run does not read the first run's PNGs as photos.
    out = photos / "depth"
    for _ in range(2):
        assert main(["predict", str(model_dir), str(photos), "--out", str(out)]) == 0
    names = [e["name"] for e in json.loads((out / "predictions.json").read_text())["predictions"]]
    assert names == ["kitchen"]


def test_export_never_replaces_the_checkpoint(model_dir, tmp_path, capsys):
    ckpt = model_dir.parent / "checkpoints" / "last.pt"
    before = ckpt.read_bytes()
    one_line(capsys, main(["export", str(ckpt), "--out", str(ckpt), "--no-check"]), "--out", ".onnx")
    assert ckpt.read_bytes() == before
    other = tmp_path / "notes.txt"
    other.write_text("mine")
    one_line(capsys, main(["export", str(ckpt), "--out", str(other), "--no-check"]), "--out")
    assert other.read_text() == "mine"


def test_data_synth_refuses_an_existing_dataset_without_overwrite(tmp_path, capsys):
    out = tmp_path / "ds"
    args = ["data", "synth", "--n", "2", "--size", "16x24", "--out", str(out)]
    assert main(args) == 0
    index = (out / "index.csv").read_text()
    one_line(capsys, main([*args, "--seed", "7"]), "already holds a dataset", "--overwrite")
    assert (out / "index.csv").read_text() == index
    assert main([*args, "--seed", "7", "--overwrite"]) == 0
    assert (out / "index.csv").read_text() != index


def test_failed_overwrites_never_lose_the_run_set_aside(tmp_path, monkeypatch, capsys):
    from disdepth import checkpoint

    run = tmp_path / "run"
    assert main(["train", "--run-dir", str(run), "--threads", "1", *TINY]) == 0
    finished = (run / "checkpoints" / "last.pt").read_bytes()

    def full_disk(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(checkpoint.torch, "save", full_disk)
    for _ in range(2):  # two failing --overwrite in a row: the finished run stays set aside
        one_line(capsys, main(["train", "--run-dir", str(run), "--overwrite", *TINY]), "last.pt", "No space left")
        assert (run / "previous_run" / "checkpoints" / "last.pt").read_bytes() == finished


# ---------------------------------------------------------------------------------------------- security


@pytest.mark.parametrize("name", ["../escape", "/tmp/abs", "", "a/b", ".."])
def test_a_configs_name_cannot_direct_writes_outside_runs(name, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    config = tmp_path / "shared.yaml"
    config.write_text(f"name: {json.dumps(name)}\n")
    one_line(capsys, main(["train", "-c", str(config), *TINY]), "name")
    assert not (tmp_path.parent / "escape").exists() and not (tmp_path / "runs").exists()


# ---------------------------------------------------------------------------------------------- one run per folder


def test_a_run_folder_is_locked_while_a_run_trains_in_it(tmp_path):
    with RunLock(tmp_path):
        with pytest.raises(RunFolderBusy, match=f"pid {os.getpid()}"):
            # flock locks are per open file: a second open in another thread stands in for a second process
            errors = []
            thread = threading.Thread(target=lambda: errors.append(_try_lock(tmp_path)))
            thread.start()
            thread.join()
            raise errors[0]
    with RunLock(tmp_path):  # released on exit
        pass


def _try_lock(folder):
    try:
        with RunLock(folder):
            return None
    except RunFolderBusy as exc:
        return exc


def test_resume_refuses_a_change_of_data(tmp_path, capsys):
    run = tmp_path / "run"
    assert main(["train", "--run-dir", str(run), "--threads", "1", *TINY]) == 0
    code = main(["train", "--run-dir", str(run), "--resume", "--set", "data.synthetic.height=32"])
    one_line(capsys, code, "data.synthetic.height")
    code = main(["train", "--run-dir", str(run), "--resume", "--set", "data.train_list=other.csv"])
    one_line(capsys, code, "data.train_list")
    # what may change: the budget and the loader's workers
    allowed = ["--set", "train.steps=3", "--set", "data.num_workers=1"]
    assert main(["train", "--run-dir", str(run), "--resume", *allowed]) == 0


# ---------------------------------------------------------------------------------------------- non-finite


def test_nan_or_huge_weights_are_refused_at_load(model_dir, tmp_path, photos, capsys):
    import shutil

    from safetensors.torch import load_file, save_file

    for label, damage in (("nan", lambda t: t * float("nan")), ("huge", lambda t: t * 1e30)):
        broken = tmp_path / label
        shutil.copytree(model_dir, broken)
        weights = load_file(str(broken / "model.safetensors"))
        first = next(k for k, v in weights.items() if v.is_floating_point() and v.numel() > 1)
        weights[first] = damage(weights[first])
        save_file(weights, str(broken / "model.safetensors"))
        one_line(capsys, main(["predict", str(broken), str(photos), "--out", str(tmp_path / "o")]), str(broken), first)
        assert not (tmp_path / "o" / "predictions.json").exists()


def test_nan_tensors_and_bad_sizes_are_refused_by_the_api(model_dir):
    import disdepth

    predictor = disdepth.load(model_dir)
    image = torch.rand(3, 32, 32)
    image[0, 0, 0] = float("nan")
    with pytest.raises(ValueError, match="NaN"):
        predictor.predict(image)
    for size in ((0, 0), (-32, 64)):
        with pytest.raises(ValueError, match="size"):
            disdepth.load(model_dir, size=size)


@pytest.mark.parametrize(
    "flags, named",
    [
        (["--vmin", "5", "--vmax", "1"], "--vmin"),
        (["--vmin", "nan"], "--vmin"),
        (["--fov", "nan"], "--fov"),
        (["--fov", "200"], "--fov"),
        (["--intrinsics", "nan,1,1,1"], "intrinsics"),
        (["--formats", ""], "--formats"),
        (["--max-megapixels", "nan"], "--max-megapixels"),
    ],
)
def test_predict_flags_are_range_checked(flags, named, model_dir, photos, tmp_path, capsys):
    try:
        code = main(["predict", str(model_dir), str(photos), "--out", str(tmp_path / "o"), *flags])
    except SystemExit as exc:  # argparse types: one line naming the flag, exit 2
        code = exc.code
    one_line(capsys, code, named)


@pytest.mark.parametrize("flags", [["--holes", "1.5"], ["--holes", "nan"], ["--size", "100000x100000"]])
def test_data_synth_values_are_range_checked(flags, tmp_path, capsys):
    code = main(["data", "synth", "--n", "1", "--out", str(tmp_path / "ds"), *flags])
    one_line(capsys, code, flags[0])


def test_seed_beyond_the_generators_range_is_one_config_error():
    with pytest.raises(ConfigError, match="seed"):
        load_config(overrides=["seed=100000000000000000000"])


# ---------------------------------------------------------------------------------------------- I/O failures


def test_port_in_use_and_missing_device_are_one_line(model_dir, capsys):
    pytest.importorskip("gradio")
    import socket

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        one_line(capsys, main(["app", str(model_dir), "--port", str(port)]), f"--port {port}")
    if not torch.cuda.is_available():
        one_line(capsys, main(["app", str(model_dir), "--device", "cuda"]), "--device cuda")


def test_a_read_only_output_folder_is_one_line(model_dir, photos, tmp_path, capsys):
    if os.geteuid() == 0:
        pytest.skip("root writes into read-only folders")
    out = tmp_path / "ro"
    out.mkdir()
    out.chmod(0o500)
    try:
        one_line(capsys, main(["predict", str(model_dir), str(photos), "--out", str(out / "x")]), str(out))
    finally:
        out.chmod(0o700)


# ---------------------------------------------------------------------------------------------- data users have


@pytest.mark.parametrize("orientation", range(1, 9))
def test_phone_photos_are_read_upright_in_training_as_in_predict(orientation, tmp_path):
    rgb = (np.random.default_rng(orientation).random((6, 10, 3)) * 255).astype(np.uint8)
    exif = Image.Exif()
    exif[0x0112] = orientation
    path = tmp_path / "photo.jpg"
    Image.fromarray(rgb).save(path, exif=exif, quality=100)
    with Image.open(path) as im:
        upright, _ = to_rgb(im, path)  # what predict reads
    training = (read_image(path) * 255).round().byte().permute(1, 2, 0).numpy()
    assert training.shape == upright.shape and np.abs(training.astype(int) - upright.astype(int)).max() <= 1
    # The depth map shares the stored pixel grid: it is turned the same way and stays aligned with the photo.
    depth = np.arange(60, dtype=np.uint16).reshape(6, 10) * 100 + 100
    Image.fromarray(depth).save(tmp_path / "depth.png")
    marked = np.asarray(Image.open(tmp_path / "depth.png"))
    record = Record(path, tmp_path / "depth.png", 1000.0, 50.0, None, "photo", "index.csv:2")
    sample = load_record(record)
    assert tuple(sample["depth"].shape[-2:]) == training.shape[:2]
    expected = np.asarray(Image.fromarray(marked).transpose(_PIL_TRANSPOSE[orientation])) if orientation > 1 else marked
    assert np.allclose(sample["depth"][0].numpy(), expected / 1000.0)


_PIL_TRANSPOSE = {
    2: Image.Transpose.FLIP_LEFT_RIGHT, 3: Image.Transpose.ROTATE_180, 4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE, 6: Image.Transpose.ROTATE_270, 7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}  # fmt: skip


def test_header_names_as_users_write_them_and_duplicates_named(tmp_path):
    from disdepth.data.csv import csv_records

    Image.fromarray(np.zeros((4, 4, 3), np.uint8)).save(tmp_path / "a.png")
    Image.fromarray(np.full((4, 4), 1000, np.uint16)).save(tmp_path / "a_d.png")
    (tmp_path / "upper.csv").write_text("RGB, Depth ,Depth_Scale\na.png,a_d.png,1000\n")
    assert len(csv_records(tmp_path / "upper.csv")) == 1
    (tmp_path / "twice.csv").write_text("rgb,depth,rgb\na.png,a_d.png,a.png\n")
    with pytest.raises(DataError, match=r"\['rgb'\] appear more than once"):
        csv_records(tmp_path / "twice.csv")


def test_npz_depth_is_read_as_metres(tmp_path):
    metres = np.full((4, 5), 2.5, np.float32)
    np.savez(tmp_path / "one.npz", metres)
    depth, valid = read_depth(tmp_path / "one.npz", 0.0)
    assert torch.allclose(depth, torch.full((1, 4, 5), 2.5, dtype=torch.float64)) and bool(valid.all())
    np.savez(tmp_path / "two.npz", a=metres, b=metres)
    with pytest.raises(DataError, match="expected one"):
        read_depth(tmp_path / "two.npz", 0.0)


def test_test_list_equal_to_train_list_is_warned(tmp_path, caplog):
    from disdepth.data.build import build_dataset

    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(tmp_path / "a.png")
    Image.fromarray(np.full((8, 8), 1000, np.uint16)).save(tmp_path / "a_d.png")
    (tmp_path / "i.csv").write_text("rgb,depth,depth_scale\na.png,a_d.png,1000\n")
    cfg = load_config(overrides=["data.dataset=csv", f"data.train_list={tmp_path / 'i.csv'}",
                                 f"data.test_list={tmp_path / 'i.csv'}"])  # fmt: skip
    build_dataset(cfg, "test")
    assert "same file as data.train_list" in caplog.text


def test_after_a_ctrl_c_stop_a_second_ctrl_c_cannot_reach_the_shutdown(monkeypatch):
    """An impatient second Ctrl-C used to land in torch's atexit hooks and print a traceback after the clean stop."""
    import signal

    from disdepth import cli

    before = signal.getsignal(signal.SIGINT)
    monkeypatch.setattr(cli, "_main", lambda argv: 130)
    try:
        assert cli.main([]) == 130
        assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN
    finally:
        signal.signal(signal.SIGINT, before)


def test_a_one_pixel_image_is_predicted(model_dir, tmp_path):
    Image.fromarray(np.zeros((1, 1, 3), np.uint8)).save(tmp_path / "dot.png")
    assert main(["predict", str(model_dir), str(tmp_path / "dot.png"), "--out", str(tmp_path / "o")]) == 0
    assert np.asarray(Image.open(tmp_path / "o" / "dot.png")).shape == (1, 1)


def test_resume_refuses_a_checkpoint_whose_config_is_damaged(tmp_path, capsys):
    run = tmp_path / "run"
    assert main(["train", "--run-dir", str(run), "--threads", "1", *TINY]) == 0
    state = torch.load(run / "checkpoints" / "last.pt", weights_only=True)
    torch.save({**state, "config": "model: x"}, run / "checkpoints" / "last.pt")
    one_line(capsys, main(["train", "--run-dir", str(run), "--resume", "--set", "train.steps=3"]), "last.pt", "config")


def test_resume_refuses_a_checkpoint_saved_by_another_run(tmp_path, capsys):
    run = tmp_path / "run"
    assert main(["train", "--run-dir", str(run), "--threads", "1", *TINY]) == 0
    state = torch.load(run / "checkpoints" / "last.pt", weights_only=True)
    state["config"]["model"]["decoder_channels"] = [1 << 20] * 5  # weights fit, the saved settings do not
    torch.save(state, run / "checkpoints" / "last.pt")
    code = main(["train", "--run-dir", str(run), "--resume", "--set", "train.steps=3"])
    one_line(capsys, code, "last.pt", "model.decoder_channels")


def test_an_opset_torch_cannot_export_is_refused_naming_the_flag(model_dir, tmp_path, capsys):
    one_line(capsys, main(["export", str(model_dir), "--out", str(tmp_path / "m.onnx"), "--opset", "3"]), "--opset 3")
