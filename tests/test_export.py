"""disdepth export: ONNX parity with PyTorch (sigmoid, bins, LG-Conv; fixed and dynamic size), metadata, CLI."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from tiny_runs import TINY_UNET  # tests/tiny_runs.py

pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")

from disdepth.checkpoint import save_checkpoint  # noqa: E402
from disdepth.cli import main  # noqa: E402
from disdepth.config import Config, to_dict  # noqa: E402
from disdepth.deploy.export import DepthOnly, export_onnx, ort_session, parity, read_metadata  # noqa: E402
from disdepth.models.lgconv import GlobalBranch  # noqa: E402
from disdepth.models.student import build_student  # noqa: E402

MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


def tiny_config(head: str, lgconv: bool) -> Config:
    cfg = Config()
    m = cfg.model
    m.encoder, m.decoder_channels, m.head, m.n_bins = "test_efficientnet", [16, 16, 8, 8, 8], head, 16
    m.pretrained, m.decoder = "none", "unet"
    m.max_depth = 10.0
    m.lgconv.enabled, m.lgconv.min_channels = lgconv, 8  # test_efficientnet is narrow: convert its deep convs
    return cfg


def tiny_student(head: str, lgconv: bool) -> torch.nn.Module:
    torch.manual_seed(0)
    model = build_student(tiny_config(head, lgconv).model)
    if lgconv:
        assert model.lgconv_names
        for branch in (m for m in model.modules() if isinstance(m, GlobalBranch)):
            # gamma starts at 0 (identity); make the global branch contribute so parity really covers it
            torch.nn.init.normal_(branch.norm.weight, 1.0, 0.2)
    return model.eval()


# Each head and LG-Conv in both fixed and dynamic mode (the CLI test adds bins + LG-Conv, dynamic).
@pytest.mark.parametrize(
    ("head", "lgconv", "dynamic"),
    [("sigmoid", False, False), ("sigmoid", True, True), ("bins", False, True), ("bins", True, False)],
    ids=["sigmoid-fixed", "sigmoid+lgconv-dynamic", "bins-dynamic", "bins+lgconv-fixed"],
)
def test_onnx_parity(tmp_path, head, lgconv, dynamic):
    wrapper = DepthOnly(tiny_student(head, lgconv), MEAN, STD).eval()
    path = tmp_path / "m.onnx"
    exporter = export_onnx(wrapper, path, (64, 96), dynamic=dynamic, exporter="torchscript")
    assert exporter == "torchscript"
    session = ort_session(path, threads=1)
    torch.manual_seed(1)
    assert parity(session, wrapper, torch.rand(1, 3, 64, 96)) < 1e-4
    y, x = torch.meshgrid(torch.linspace(0, 1, 64), torch.linspace(0, 1, 96), indexing="ij")
    smooth = torch.stack([x, y, (x * 7).sin() * 0.5 + 0.5])[None]  # structured, image-like
    assert parity(session, wrapper, smooth) < 1e-4
    assert parity(session, wrapper, torch.rand(2, 3, 64, 96)) < 1e-4  # batch is always dynamic
    out = session.run(["depth"], {"image": smooth.numpy()})[0]
    assert out.shape == (1, 1, 64, 96) and out.min() > 0 and out.max() <= 10.0 + 1e-4
    if dynamic:
        assert parity(session, wrapper, torch.rand(1, 3, 48, 80)) < 1e-4  # another size, not a multiple of 32
    else:
        with pytest.raises(Exception, match="(?i)dimension|shape"):
            session.run(None, {"image": np.zeros((1, 3, 48, 80), np.float32)})


def test_a_conv_first_student_exports_and_folds_with_the_same_depth(tmp_path):
    """Conv-first levels (and the odd-size crops of nearest upsampling): ONNX and the eager inference path agree."""
    from disdepth.deploy.inference import optimize_for_inference

    cfg = tiny_config("sigmoid", False)
    cfg.model.decoder_conv_first_strides = [16, 8, 4, 2]
    torch.manual_seed(0)
    wrapper = DepthOnly(build_student(cfg.model).eval(), MEAN, STD).eval()
    assert {b.order for b in wrapper.model.decoder.blocks} == {"conv_first"}
    path = tmp_path / "m.onnx"
    export_onnx(wrapper, path, (70, 100), dynamic=True, exporter="torchscript")
    session = ort_session(path, threads=1)
    for size in ((70, 100), (64, 96)):
        assert parity(session, wrapper, torch.rand(1, 3, *size)) < 1e-4
    optimized, ok = optimize_for_inference(wrapper, torch.rand(1, 3, 64, 96))
    assert ok and optimized is not wrapper
    x = torch.rand(1, 3, 70, 100)
    with torch.inference_mode():
        torch.testing.assert_close(optimized(x.contiguous(memory_format=torch.channels_last)), wrapper(x))


def test_export_cli_metadata_and_report(tmp_path, capsys):
    cfg = tiny_config("bins", True)
    model = tiny_student("bins", True)
    ckpt = save_checkpoint(
        {"kind": "student", "model": model.state_dict(), "ema": None, "config": to_dict(cfg), "step": 0},
        tmp_path / "s.pt",
    )
    out = tmp_path / "m.onnx"
    args = [
        "export",
        str(ckpt),
        "--out",
        str(out),
        "--size",
        "64x96",
        "--dynamic",
        "--runs",
        "2",
        "--warmup",
        "1",
        "--threads",
        "1",
    ]
    assert main(args) == 0
    text = capsys.readouterr().out
    diffs = [float(line.split("=")[-1].split()[0]) for line in text.splitlines() if line.startswith("parity")]
    assert len(diffs) == 3 and max(diffs) < 1e-4  # random, real-ish (synthetic render), second size + batch 2
    assert "eager" in text and "ONNX Runtime CPU" in text
    assert "as `predict` runs it" in text  # a student is also timed BatchNorm-folded, as predict runs it
    meta = read_metadata(out)
    assert meta["encoder"] == "test_efficientnet" and meta["head"] == "bins" and json.loads(meta["lgconv"]) is True
    assert json.loads(meta["max_depth_m"]) == 10.0 and json.loads(meta["mean"]) == pytest.approx(list(MEAN))
    assert meta["input_size"] == "dynamic" and "RGB in [0,1]" in meta["input"] and "metres" in meta["output"]
    assert "TorchScript" in meta["exporter"] or "dynamo" in meta["exporter"]

    # A normalised-input, fixed-size graph: feeding (x - mean) / std must give the same depth.
    out2 = tmp_path / "n.onnx"
    assert main(["export", str(ckpt), "--out", str(out2), "--size", "64x96", "--normalized-input", "--no-check"]) == 0
    meta2 = read_metadata(out2)
    assert meta2["input_size"] == "64x96" and "normalised" in meta2["input"]
    x = torch.rand(1, 3, 64, 96)
    norm = (x - torch.tensor(MEAN).view(1, 3, 1, 1)) / torch.tensor(STD).view(1, 3, 1, 1)
    a = ort_session(out, 1).run(None, {"image": x.numpy()})[0]
    b = ort_session(out2, 1).run(None, {"image": norm.numpy()})[0]
    assert np.abs(a - b).max() < 1e-4


def test_export_missing_checkpoint(tmp_path, capsys):
    assert main(["export", str(tmp_path / "none.pt"), "--out", str(tmp_path / "m.onnx")]) == 2
    assert "none.pt" in capsys.readouterr().err


def test_export_int8_is_calibrated_on_the_users_images_and_reports_latency_and_change(tmp_path, capsys):
    """--int8: a QDQ graph next to the fp32 one, metadata kept, its depth close to fp32 on held-out images."""
    import onnx
    from PIL import Image

    from disdepth.cli import main
    from disdepth.config import load_config, to_dict
    from disdepth.models.student import build_student

    cfg = load_config(overrides=TINY_UNET)
    torch.manual_seed(0)
    ckpt = save_checkpoint(
        {"kind": "student", "model": build_student(cfg.model).state_dict(), "config": to_dict(cfg)}, tmp_path / "s.pt"
    )
    photos = tmp_path / "photos"
    photos.mkdir()
    rng = np.random.default_rng(0)
    for i in range(8):
        Image.fromarray(rng.integers(0, 255, (40, 56, 3), dtype=np.uint8)).save(photos / f"p{i}.png")
    out = tmp_path / "m.onnx"
    args = ["export", str(ckpt), "--out", str(out), "--size", "32x64", "--runs", "2", "--warmup", "1"]
    assert main([*args, "--no-check", "--int8", "--calibration", str(photos)]) == 0
    int8 = tmp_path / "m.int8.onnx"
    graph = onnx.load(str(int8))
    assert any(n.op_type == "QuantizeLinear" for n in graph.graph.node)
    assert [o.name for o in graph.graph.output] == ["depth"]
    props = {p.key: p.value for p in graph.metadata_props}
    assert "int8" in props["quantization"] and "6 images" in props["quantization"]
    printed = capsys.readouterr().out
    assert "calibrated on 6 images" in printed and "held-out images" in printed
    assert main([*args, "--no-check", "--int8"]) == 2  # no calibration images: one clear line


def test_predict_runs_an_exported_onnx_file_like_its_checkpoint(tmp_path):
    """`disdepth predict model.onnx` (ONNX Runtime) writes the same depth as `disdepth predict model.pt`."""
    from PIL import Image

    from disdepth.cli import main
    from disdepth.config import load_config, to_dict
    from disdepth.data.io import read_depth
    from disdepth.models.student import build_student

    cfg = load_config(overrides=TINY_UNET)
    torch.manual_seed(0)
    ckpt = save_checkpoint(
        {"kind": "student", "model": build_student(cfg.model).state_dict(), "config": to_dict(cfg)}, tmp_path / "s.pt"
    )
    image = tmp_path / "photo.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (48, 64, 3), dtype=np.uint8)).save(image)
    for dynamic in (["--dynamic"], []):  # a fixed-size graph gets the image resized to its size
        onnx_file = tmp_path / f"m{len(dynamic)}.onnx"
        assert main(["export", str(ckpt), "--out", str(onnx_file), "--size", "64x64", *dynamic, "--no-check"]) == 0
        for name, model in (("pt", ckpt), ("onnx", onnx_file)):
            size = [] if dynamic else ["--size", "64x64"]
            assert main(["predict", str(model), str(image), "--out", str(tmp_path / name), *size]) == 0
        a, _ = read_depth(tmp_path / "pt" / "photo.png", 1000.0)
        b, _ = read_depth(tmp_path / "onnx" / "photo.png", 1000.0)
        assert (a - b).abs().max().item() <= 2e-3  # PNG millimetres: at most a rounding step apart
