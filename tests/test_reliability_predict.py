"""Bad and unusual inputs to predict / export / bench: one line naming the file or flag, exit code 2, no traceback.

Also the input conversions that replace silent wrong answers: EXIF orientation, 8-bit greyscale, alpha on white.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

import disdepth
from disdepth.api import DepthPredictor, to_tensor
from disdepth.checkpoint import save_checkpoint
from disdepth.cli import main
from disdepth.config import Config, to_dict
from disdepth.deploy.limits import is_out_of_memory, suggest_size
from disdepth.deploy.sources import read_rgb
from disdepth.deploy.weights import check_state_dict, describe_load_error
from disdepth.models.student import build_student


def tiny_config() -> Config:
    cfg = Config()
    cfg.model.encoder, cfg.model.decoder_channels = "test_efficientnet", [16, 16, 8, 8, 8]
    cfg.model.pretrained, cfg.model.decoder = "none", "unet"
    return cfg


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    torch.manual_seed(0)
    cfg = tiny_config()
    model = build_student(cfg.model)
    state = {"kind": "student", "model": model.state_dict(), "ema": None, "config": to_dict(cfg), "step": 0}
    return save_checkpoint(state, tmp_path_factory.mktemp("ckpt") / "s.pt")


@pytest.fixture(scope="module")
def bad_ckpt(ckpt):
    """Same keys as ``ckpt``, but two conv weights with one output channel too many (the first named)."""
    state = torch.load(ckpt, weights_only=False)
    convs = [k for k, v in state["model"].items() if v.ndim == 4]
    first, later = convs[1], convs[-1]
    for key in (later, first):  # dict order must not matter: the model's order decides which is "first"
        v = state["model"][key]
        state["model"][key] = torch.zeros(v.shape[0] + 1, *v.shape[1:])
    path = save_checkpoint(state, ckpt.with_name("bad.pt"))
    return path, first, tuple(state["model"][first].shape)


def smooth_rgb(h: int, w: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w]
    base = np.stack([x / w, y / h, 0.5 + 0.5 * np.sin(x / 5)], -1) * 200 + rng.integers(0, 50, (h, w, 3))
    return base.clip(0, 255).astype(np.uint8)


def predict(ckpt, inputs, out, *extra) -> int:
    return main(["predict", str(ckpt), *[str(i) for i in inputs], "--out", str(out), "--device", "cpu", *extra])


def one_line_error(err: str, *needles: str) -> str:
    """The single ``disdepth: error:`` line of ``err`` (asserted: no traceback, every needle present)."""
    assert "Traceback" not in err
    lines = [line for line in err.splitlines() if "error" in line]
    assert len(lines) == 1, err
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])
    return lines[0]


# ---------------------------------------------------------------------------------------------- conversions


def test_exif_orientation_is_applied_in_predict_and_the_api(ckpt, tmp_path):
    upright = smooth_rgb(40, 56)
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 degrees clockwise to display": a phone held upright
    photo = tmp_path / "phone.jpg"
    Image.fromarray(np.rot90(upright).copy()).save(photo, exif=exif, quality=95)  # stored sideways, 56x40

    stored = np.asarray(Image.open(photo).convert("RGB"))
    assert stored.shape == (56, 40, 3)
    rgb, notes = read_rgb(photo)
    np.testing.assert_array_equal(rgb, np.rot90(stored, k=-1))  # upright, exactly the stored pixels turned
    assert "orientation 6" in notes["exif"]

    out = tmp_path / "out"
    assert predict(ckpt, [photo], out) == 0
    depth = np.load(out / "phone.npy")
    assert depth.shape == (40, 56)
    entry = json.loads((out / "predictions.json").read_text())["predictions"][0]
    assert (entry["height"], entry["width"]) == (40, 56) and "exif" in entry["input_notes"]
    predictor = disdepth.load(ckpt)
    np.testing.assert_allclose(predictor.predict(Image.open(photo)), depth, atol=1e-5)  # the API agrees
    np.testing.assert_allclose(predictor.predict(rgb), depth, atol=1e-5)


def test_greyscale_and_alpha_are_converted_and_stated(ckpt, tmp_path, capsys):
    rgb = smooth_rgb(40, 56)
    grey = tmp_path / "grey.png"
    Image.fromarray(rgb[..., 0]).save(grey)  # 8-bit single channel
    alpha = np.full((40, 56), 255, np.uint8)
    alpha[:, :20] = 0  # a transparent left part
    rgba = tmp_path / "logo.png"
    Image.fromarray(np.dstack([rgb, alpha])).save(rgba)
    opaque = tmp_path / "opaque.png"
    Image.fromarray(np.dstack([rgb, np.full((40, 56), 255, np.uint8)])).save(opaque)

    out = tmp_path / "out"
    assert predict(ckpt, [grey, rgba, opaque], out) == 0
    err = capsys.readouterr().err
    assert f"note: {rgba}" in err and "composited on white" in err and str(opaque) not in err
    entries = {e["name"]: e for e in json.loads((out / "predictions.json").read_text())["predictions"]}
    assert "greyscale" in entries["grey"]["input_notes"]
    assert "white" in entries["logo"]["input_notes"]["alpha"] and "input_notes" not in entries["opaque"]

    predictor = disdepth.load(ckpt)
    grey3 = np.repeat(rgb[..., :1], 3, axis=2)
    np.testing.assert_allclose(np.load(out / "grey.npy"), predictor.predict(grey3), atol=1e-5)
    on_white = rgb.copy()
    on_white[:, :20] = 255
    np.testing.assert_allclose(np.load(out / "logo.npy"), predictor.predict(on_white), atol=1e-5)
    np.testing.assert_allclose(np.load(out / "opaque.npy"), predictor.predict(rgb), atol=1e-5)
    np.testing.assert_array_equal(to_tensor(Image.open(rgba)), to_tensor(on_white))  # the API composites too


# ---------------------------------------------------------------------------------------------- refusals


def test_16bit_greyscale_png_is_refused_as_a_depth_map(ckpt, tmp_path, capsys):
    depth_png = tmp_path / "sync_depth_00045.png"
    Image.fromarray(np.linspace(500, 4500, 40 * 56).reshape(40, 56).astype(np.uint16)).save(depth_png)
    assert Image.open(depth_png).mode.startswith("I;16")
    out = tmp_path / "out"
    assert predict(ckpt, [depth_png], out) == 2
    one_line_error(capsys.readouterr().err, str(depth_png), "16-bit", "depth map", "500..4500")
    assert not out.exists()  # refused before the model is loaded; nothing written

    folder = tmp_path / "scene"  # a dataset folder: photos and depth maps side by side
    folder.mkdir()
    Image.fromarray(smooth_rgb(40, 56)).save(folder / "rgb_00045.jpg")
    depth_png.rename(folder / depth_png.name)
    assert predict(ckpt, [folder], out) == 2
    one_line_error(capsys.readouterr().err, str(folder / depth_png.name), "depth map")

    with pytest.raises(ValueError, match="depth map") as info:
        to_tensor(Image.open(folder / depth_png.name))
    assert depth_png.name in str(info.value)


def test_huge_image_is_refused_before_the_model_runs(ckpt, tmp_path, capsys):
    huge = tmp_path / "pano.jpg"
    Image.new("RGB", (8000, 8000), (90, 120, 200)).save(huge, quality=50)
    out = tmp_path / "out"
    assert predict(ckpt, [huge], out) == 2
    one_line_error(capsys.readouterr().err, str(huge), "8000x8000", "64.0 MP", "--size 1024x1024", "--max-megapixels")
    assert not out.exists()

    small = tmp_path / "small.png"
    Image.fromarray(smooth_rgb(40, 56)).save(small)
    assert predict(ckpt, [small], out, "--max-megapixels", "0.002") == 2  # at 32x64 = 2048 px > 2000 px
    one_line_error(capsys.readouterr().err, str(small), "40x56", "32x64", "0.002 MP limit", "--size 32x32")
    assert predict(ckpt, [small], out, "--max-megapixels", "0.002", "--size", "32x32") == 0  # 1024 px fit
    assert suggest_size(3000, 12000) == (256, 1024) and suggest_size(8000, 8000) == (1024, 1024)
    assert suggest_size(40, 56) == (32, 32) and suggest_size(8000, 8000, max_megapixels=0.5) == (704, 704)


@pytest.mark.parametrize(
    "error",
    [
        MemoryError(),
        RuntimeError(
            "[enforce fail at alloc_cpu.cpp:121] data. DefaultCPUAllocator: not enough memory: "
            "you tried to allocate 1024 bytes."
        ),
    ],  # fmt: skip
    ids=["MemoryError", "alloc"],
)
def test_out_of_memory_during_inference_is_one_line(ckpt, tmp_path, capsys, monkeypatch, error):
    image = tmp_path / "img.png"
    Image.fromarray(smooth_rgb(40, 56)).save(image)

    def boom(self, images, size=None, flip_tta=None):
        raise error

    monkeypatch.setattr(DepthPredictor, "predict_tensor", boom)
    assert predict(ckpt, [image], tmp_path / "out") == 2
    one_line_error(capsys.readouterr().err, str(image), "out of memory", "40x56", "32x64", "--size")
    assert is_out_of_memory(error) and not is_out_of_memory(RuntimeError("shape mismatch"))


def test_invalid_sizes_name_the_flag(ckpt, tmp_path, capsys):
    for bad in ("0x0", "64x", "abc", "64x16"):
        assert main(["bench", "--resolutions", f"64x96,{bad}", "--runs", "1"]) == 2
        one_line_error(capsys.readouterr().err, "--resolutions", repr(bad))
    for command in ("predict", "export"):
        inputs = [str(tmp_path)] if command == "predict" else []
        with pytest.raises(SystemExit) as info:
            main([command, str(ckpt), *inputs, "--out", str(tmp_path / "o"), "--size", "16x640"])
        assert info.value.code == 2
        err = capsys.readouterr().err
        assert "--size" in err and "at least 32" in err and "Traceback" not in err


def test_bad_device_and_output_folder_name_the_flag(ckpt, tmp_path, capsys):
    image = tmp_path / "img.png"
    Image.fromarray(smooth_rgb(40, 56)).save(image)
    assert predict(ckpt, [image], tmp_path / "o", "--device", "gpu") == 2  # predict() passes cpu first; last wins
    one_line_error(capsys.readouterr().err, "--device 'gpu'")
    if not torch.cuda.is_available():
        assert predict(ckpt, [image], tmp_path / "o", "--device", "cuda") == 2
        one_line_error(capsys.readouterr().err, "--device cuda", "not available")
    blocker = tmp_path / "file"
    blocker.write_text("")
    assert predict(ckpt, [image], blocker / "out") == 2
    one_line_error(capsys.readouterr().err, f"--out {blocker / 'out'}", "cannot create")


# ---------------------------------------------------------------------------------------------- weights


def test_weights_that_do_not_fit_name_the_key_and_both_shapes(ckpt, bad_ckpt, tmp_path, capsys):
    path, key, saved = bad_ckpt
    wanted = (saved[0] - 1, *saved[1:])
    shapes = f"{key} has shape {saved} in the checkpoint but {wanted} in the model (and 1 more shape mismatches)"
    image = tmp_path / "img.png"
    Image.fromarray(smooth_rgb(40, 56)).save(image)
    assert predict(path, [image], tmp_path / "out") == 2
    one_line_error(capsys.readouterr().err, str(path), shapes)
    pytest.importorskip("onnx")
    assert main(["export", str(path), "--out", str(tmp_path / "m.onnx"), "--no-check"]) == 2
    one_line_error(capsys.readouterr().err, str(path), shapes)
    assert main(["bench", "--checkpoint", str(path), "--resolutions", "64x64", "--runs", "1"]) == 2
    one_line_error(capsys.readouterr().err, str(path), shapes)


def test_check_state_dict():
    model = build_student(tiny_config().model)
    state = model.state_dict()
    check_state_dict(model, state, "ok.pt")  # fits: no error
    first = next(iter(state))
    wrong = dict(state)
    wrong[first] = torch.zeros(3)
    with pytest.raises(ValueError, match=rf"^w\.pt: .*{first} has shape \(3,\) in the checkpoint but"):
        check_state_dict(model, wrong, "w.pt")
    missing = {k: v for k, v in state.items() if k != first}
    with pytest.raises(ValueError, match=rf"{first} is missing from the checkpoint$"):
        check_state_dict(model, missing, "m.pt")
    with pytest.raises(ValueError, match=r"extra\.weight is not a key of the model"):
        check_state_dict(model, {**state, "extra.weight": torch.zeros(1)}, "u.pt")
    # The RuntimeError of a strict load_state_dict gives the same line.
    with pytest.raises(RuntimeError) as info:
        model.load_state_dict(wrong)
    with pytest.raises(ValueError) as direct:
        check_state_dict(model, wrong, "w.pt")
    assert describe_load_error("w.pt", info.value) == str(direct.value)
    assert describe_load_error("x.pt", RuntimeError("something else")) is None
