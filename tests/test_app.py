"""The browser app: model discovery, ``predict_view`` (same values as ``disdepth predict``, shared colour scale,
refusals as one line), the ``disdepth app`` command, and the real page driven in headless Chromium."""

from __future__ import annotations

import importlib.util
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from tiny_runs import free_port

from disdepth.cli import main
from disdepth.config import load_config, save_config
from disdepth.deploy.app import View, colour_bar, depth_at, find_models, load_models, predict_view

TINY = [
    "model.encoder=test_efficientnet", "model.pretrained=none", "model.decoder=unet",
    "model.decoder_channels=[16,8,8,8,8]", "train.steps=2", "train.device=cpu",
    "data.synthetic.n_train=4", "data.synthetic.n_val=2", "data.synthetic.height=32", "data.synthetic.width=32",
    "data.batch_size=2", "data.num_workers=0",
]  # fmt: skip
CHROMIUM_FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]  # fmt: skip


@pytest.fixture(autouse=True)
def _one_thread():
    """One intra-op thread: on shared 2-core machines two OpenMP threads contend and run much slower."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    run = tmp_path_factory.mktemp("app") / "run"
    assert main(["train", "--run-dir", str(run), *[x for s in TINY for x in ("--set", s)]]) == 0
    return run


@pytest.fixture(scope="module")
def ckpt(run_dir) -> Path:
    return run_dir / "checkpoints" / "last.pt"


@pytest.fixture(scope="module")
def models(ckpt):
    return load_models(find_models(ckpt))


@pytest.fixture(scope="module")
def photo(tmp_path_factory) -> Path:
    """A 48x64 smooth colour image (so the depth varies) saved as PNG."""
    y, x = np.mgrid[0:48, 0:64]
    rgb = np.stack([x * 4, y * 5, (x + y) * 2], axis=-1).clip(0, 255).astype(np.uint8)
    path = tmp_path_factory.mktemp("photo") / "room.png"
    Image.fromarray(rgb).save(path)
    return path


def _predict_cli(ckpt: Path, image: Path, out: Path) -> None:
    assert main(["predict", str(ckpt), str(image), "--out", str(out), "--formats", "png,npy"]) == 0


# ---------------------------------------------------------------------------------------------- discovery


def test_find_models_file_folder_and_run_dir(run_dir, ckpt):
    assert find_models(ckpt) == {"student": str(ckpt)}
    assert find_models(run_dir / "model") == {"student": str(run_dir / "model")}
    assert find_models(run_dir) == {"student": str(run_dir / "model")}  # the safetensors folder first
    assert find_models(run_dir, teacher=ckpt) == {"student": str(run_dir / "model"), "teacher": str(ckpt)}


def test_find_models_pipeline_run_dir(run_dir, tmp_path):
    root = tmp_path / "pipeline"
    for stage in ("teacher", "baseline", "acclimate", "distill"):
        shutil.copytree(run_dir, root / stage)
    shutil.rmtree(root / "teacher" / "model")  # a run without its model folder: checkpoints/last.pt
    found = find_models(root)
    assert list(found) == ["distilled", "baseline", "teacher"]
    assert found["distilled"] == str(root / "distill" / "model")
    assert found["teacher"] == str(root / "teacher" / "checkpoints" / "last.pt")
    # A pipeline given its teacher has no teacher/ folder: the stage's config.yaml names it.
    shutil.rmtree(root / "teacher")
    given = tmp_path / "given.pt"
    shutil.copy(run_dir / "checkpoints" / "last.pt", given)
    cfg = load_config(root / "distill" / "config.yaml")
    cfg.teacher.checkpoint = str(given)
    save_config(cfg, root / "distill" / "config.yaml")
    assert find_models(root) == {
        "distilled": str(root / "distill" / "model"), "baseline": str(root / "baseline" / "model"),
        "teacher": str(given),
    }  # fmt: skip


def test_find_models_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="nothing"):
        find_models(tmp_path / "nothing")
    with pytest.raises(ValueError, match="no model found.*pipeline run directory"):
        find_models(tmp_path)
    with pytest.raises(FileNotFoundError, match="--teacher"):
        find_models(tmp_path, teacher=tmp_path / "missing.pt")


# ---------------------------------------------------------------------------------------------- predict_view


def test_predict_view_matches_disdepth_predict(models, ckpt, photo, tmp_path):
    view = predict_view(models, str(photo), fov=60.0, out_dir=tmp_path / "app")
    assert not view.error and view.name == "room" and view.rgb.shape == (48, 64, 3)
    _predict_cli(ckpt, photo, tmp_path / "cli")
    expected = np.load(tmp_path / "cli" / "room.npy")
    np.testing.assert_array_equal(view.depth["student"], expected)
    names = sorted(Path(f).name for f in view.files)
    assert names == ["room_student.npy", "room_student.ply", "room_student.png"]
    np.testing.assert_array_equal(np.load(tmp_path / "app" / "room_student.npy"), expected)
    png = np.asarray(Image.open(tmp_path / "app" / "room_student.png"))
    assert png.dtype == np.uint16
    np.testing.assert_array_equal(png, np.asarray(Image.open(tmp_path / "cli" / "room.png")))
    np.testing.assert_allclose(png / 1000.0, expected, atol=5e-4)  # millimetres
    assert b"element vertex 3072" in (tmp_path / "app" / "room_student.ply").read_bytes()[:200]
    # Shared scale, colour bar, latency, readout.
    assert view.unit == "m" and view.vmin < view.vmax
    assert view.color["student"].shape == (48, 64, 3) and view.colour_bar.ndim == 3
    assert view.latency_ms["student"] > 0 and view.total_ms >= view.latency_ms["student"]
    assert view.run_size == (64, 64)
    assert depth_at(view, 5, 7) == f"depth at pixel x=5, y=7: **student** {expected[7, 5]:.3f} m"
    assert "outside" in depth_at(view, 64, 0)


def test_predict_view_inputs_pil_array_and_intrinsics(models, photo, tmp_path):
    rgb = np.asarray(Image.open(photo).convert("RGB"))
    from_array = predict_view(models, rgb, out_dir=tmp_path / "a", fov=None)
    from_pil = predict_view(models, Image.open(photo), out_dir=tmp_path / "b", intrinsics="50, 52, 31.5, 23.5")
    np.testing.assert_array_equal(from_array.depth["student"], from_pil.depth["student"])
    assert not any(f.endswith(".ply") for f in from_array.files) and any("point cloud" in n for n in from_array.notes)
    assert any(f.endswith(".ply") for f in from_pil.files)


def test_predict_view_refuses_bad_inputs_with_one_line(models, photo, tmp_path):
    text = tmp_path / "notes.txt"
    text.write_text("not an image")
    depth16 = tmp_path / "depth.png"
    Image.fromarray((np.arange(48 * 64).reshape(48, 64) * 20).astype(np.uint16)).save(depth16)
    cases = {
        "notes.txt: unreadable image": predict_view(models, str(text)),
        "depth.png: 16-bit single-channel image": predict_view(models, str(depth16)),
        "room.png: image is 64x48 pixels": predict_view(models, str(photo), max_megapixels=0.001),
        "room.png: file is": predict_view(models, str(photo), max_mb=1e-4),
        "intrinsics: expected fx,fy,cx,cy": predict_view(models, str(photo), intrinsics="1,2"),
        "field of view": predict_view(models, str(photo), fov=200.0),
        "Upload an image": predict_view(models, None),
        "missing.png: image file not found": predict_view(models, str(tmp_path / "missing.png")),
    }
    for start, view in cases.items():
        assert start in view.error and "\n" not in view.error and not view.files, (start, view.error)
    assert str(tmp_path) not in cases["notes.txt: unreadable image"].error  # the upload's name, not the server path


def _tiny_depth_anything(folder: Path) -> Path:
    """A relative Depth Anything of a few thousand parameters, saved as a user's Hugging Face folder."""
    transformers = pytest.importorskip("transformers")
    backbone = transformers.Dinov2Config(
        hidden_size=32, num_hidden_layers=4, num_attention_heads=2, intermediate_size=64, image_size=56,
        patch_size=14, out_indices=[1, 2, 3, 4], reshape_hidden_states=False, apply_layernorm=True,
    )  # fmt: skip
    cfg = transformers.DepthAnythingConfig(
        backbone_config=backbone, reassemble_hidden_size=32, neck_hidden_sizes=[8, 16, 32, 32],
        fusion_hidden_size=16, head_hidden_size=8, patch_size=14, depth_estimation_type="relative",
    )  # fmt: skip
    torch.manual_seed(0)
    transformers.DepthAnythingForDepthEstimation(cfg).save_pretrained(folder)
    return folder


def test_hf_teacher_folder_relative_on_the_shared_scale(run_dir, photo, tmp_path):
    hf = _tiny_depth_anything(tmp_path / "depth-anything-tiny")
    found = find_models(run_dir, teacher=hf)
    assert found["teacher"] == str(hf) and find_models(hf) == {"teacher": str(hf)}
    models = load_models(found)
    assert [m.metric for m in models] == [True, False] and "relative" in models[1].description
    view = predict_view(models, str(photo), out_dir=tmp_path / "out")
    assert not view.error and view.unit == "m" and view.depth["teacher"].shape == (48, 64)
    # The relative teacher is fitted to the metric student for display; its downloads keep its own values.
    assert view.shown["teacher"] is not view.depth["teacher"] and any("relative model" in n for n in view.notes)
    np.testing.assert_array_equal(np.load(tmp_path / "out" / "room_teacher.npy"), view.depth["teacher"])
    alone = predict_view(load_models(find_models(hf)), str(photo), out_dir=tmp_path / "alone")
    assert alone.unit == "relative" and "(relative)" in depth_at(alone, 0, 0)


def test_colour_bar_and_empty_readout():
    bar = colour_bar(0.5, 4.0, "m", width=300, height=50)
    assert bar.shape == (50, 300, 3) and bar.dtype == np.uint8
    assert tuple(bar[10, 14]) != tuple(bar[10, 285])  # near and far ends differ in colour
    assert depth_at(View(), 0, 0) == ""


# ---------------------------------------------------------------------------------------------- the command


def test_app_command_without_gradio_says_one_line(ckpt, monkeypatch, capsys):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "gradio" else real(name, *a))
    assert main(["app", str(ckpt)]) == 2
    err = capsys.readouterr().err.strip()
    assert err == "disdepth app needs Gradio, which is not installed: pip install 'disdepth[app]'"


def test_app_command_bad_path_is_one_line(tmp_path, capsys):
    pytest.importorskip("gradio")
    assert main(["app", str(tmp_path / "none")]) == 2
    assert capsys.readouterr().err.startswith("disdepth: error: ")


# ---------------------------------------------------------------------------------------------- in a browser


def _browser_or_skip() -> str:
    for module in ("gradio", "playwright"):
        if importlib.util.find_spec(module) is None:
            pytest.skip(f"{module} is not installed (pip install -e '.[app]')")
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        pytest.skip("no chromium on PATH (apt-get install chromium)")
    return chromium


@pytest.fixture
def served_app(ckpt):
    """``disdepth app CKPT`` in a subprocess on a free port; yields its URL."""
    _browser_or_skip()
    port = free_port()
    env = {**os.environ, "OMP_NUM_THREADS": "1", "GRADIO_ANALYTICS_ENABLED": "False"}
    src = str(Path(__file__).resolve().parents[1] / "src")
    env["PYTHONPATH"] = src + os.pathsep + env.get("PYTHONPATH", "")
    log = tempfile.TemporaryFile()
    cmd = [sys.executable, "-m", "disdepth", "app", str(ckpt), "--port", str(port), "--threads", "1"]
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env)
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    log.seek(0)
                    pytest.fail(f"disdepth app did not start:\n{log.read().decode(errors='replace')[-3000:]}")
                time.sleep(0.3)
        yield f"http://127.0.0.1:{port}/"
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


def test_app_in_headless_chromium(served_app, ckpt, photo, tmp_path):
    from playwright.sync_api import sync_playwright

    chromium = _browser_or_skip()
    _predict_cli(ckpt, photo, tmp_path / "cli")
    text = tmp_path / "notes.txt"
    text.write_text("not an image")
    with sync_playwright() as p:
        context = p.chromium.launch_persistent_context(
            str(tmp_path / "profile"), executable_path=chromium, args=CHROMIUM_FLAGS, headless=True,
            accept_downloads=True, viewport={"width": 1400, "height": 1000},
        )  # fmt: skip
        try:
            page = context.new_page()
            page.goto(served_app)
            page.set_input_files("#upload input[type=file]", str(photo))
            page.wait_for_selector("#downloads a", timeout=90_000)
            # The input and the depth map are shown (decoded images with a size), with the colour bar.
            for element in ("#img-input img", "#depth-student img", "#colour-bar img"):
                page.wait_for_function(
                    f"(() => {{ const i = document.querySelector('{element}'); "
                    "return i && i.complete && i.naturalWidth > 0; })()",
                    timeout=30_000,
                )
            assert "room: 64x48 pixels" in page.inner_text("#status")
            latency = page.inner_text("#latency")
            assert "student" in latency and " ms" in latency
            assert "metres x 1000" in page.inner_text("#downloads-note")
            # The downloaded 16-bit PNG holds the same values as `disdepth predict` on the same image.
            links = page.query_selector_all("#downloads a")
            link = next(a for a in links if (a.get_attribute("href") or "").endswith("/room_student.png"))
            with page.expect_download() as info:
                link.click()
            info.value.save_as(tmp_path / "downloaded.png")
            got = np.asarray(Image.open(tmp_path / "downloaded.png"))
            assert got.dtype == np.uint16
            np.testing.assert_array_equal(got, np.asarray(Image.open(tmp_path / "cli" / "room.png")))
            # A click on the depth map reads the depth there.
            page.click("#depth-student img")
            page.wait_for_function("document.querySelector('#readout').innerText.includes('depth at pixel')")
            assert " m" in page.inner_text("#readout")
            # A text file is refused with a message in the page, not a traceback.
            page.click("#upload button[aria-label='Clear']")  # back to the empty upload box
            page.set_input_files("#upload input[type=file]", str(text))
            page.wait_for_function("document.querySelector('#status').innerText.includes('Cannot use this input')")
            status = page.inner_text("#status")
            assert "notes.txt: unreadable image" in status
            assert "Traceback" not in page.inner_text("body")
        finally:
            context.close()
