"""A checkpoint run by ONNX Runtime (``runtime="onnxruntime"``, ``disdepth predict --runtime onnxruntime``): the same
depth as PyTorch, one export per run size, and PyTorch wherever no exported graph matches."""

from __future__ import annotations

import json
import sys

import numpy as np
import pytest
import torch
from PIL import Image
from tiny_runs import TINY

import disdepth
from disdepth.api import DepthPredictor
from disdepth.cli import main
from disdepth.deploy import ort_runtime
from disdepth.deploy.ort_runtime import OrtRuntimeModel

pytest.importorskip("onnxruntime")


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    run = tmp_path_factory.mktemp("ort_runtime") / "run"
    assert main(["train", "--run-dir", str(run), *TINY]) == 0
    return run / "checkpoints" / "last.pt"


@pytest.fixture()
def count_exports(monkeypatch):
    """How many graphs ``ort_runtime`` exported (the real export still runs)."""
    calls = []
    real = ort_runtime.export_onnx

    def counted(*args, **kwargs):
        calls.append(tuple(args[2]))
        return real(*args, **kwargs)

    monkeypatch.setattr(ort_runtime, "export_onnx", counted)
    return calls


def images(height: int, width: int, n: int = 2) -> torch.Tensor:
    """(n, 3, H, W) smooth images in [0, 1] (depth then varies across the frame)."""
    y, x = torch.meshgrid(torch.linspace(0, 1, height), torch.linspace(0, 1, width), indexing="ij")
    base = torch.stack([x, y, 0.5 + 0.5 * torch.sin(6 * x)])
    return torch.stack([(base * (0.6 + 0.2 * i)).clamp(0, 1) for i in range(n)])


def test_onnxruntime_gives_pytorchs_depth_and_exports_once_per_run_size(ckpt, count_exports):
    eager = disdepth.load(ckpt, device="cpu")
    ort = disdepth.load(ckpt, runtime="onnxruntime")
    assert isinstance(ort.model, OrtRuntimeModel) and (ort.runtime, eager.runtime) == ("onnxruntime", "torch")
    for h, w in [(40, 56), (64, 96), (40, 56)]:  # run sizes 32x64, 64x96, and 32x64 again (kept)
        x = images(h, w)
        want, got = eager.predict_tensor(x), ort.predict_tensor(x)
        assert got.shape == (2, 1, h, w) and torch.isfinite(got).all()
        torch.testing.assert_close(got, want, rtol=1e-3, atol=1e-4)
    assert count_exports == [(32, 64), (64, 96)]  # one export per run size, the graph reused after
    assert not ort.model.pytorch_sizes
    single = ort.predict(np.asarray(images(40, 56, 1)[0].permute(1, 2, 0) * 255, dtype=np.uint8))
    assert single.shape == (40, 56) and count_exports == [(32, 64), (64, 96)]  # batch 1 runs the same graph


def test_only_the_last_max_sizes_keep_their_graph(ckpt, count_exports):
    model, _ = disdepth.deploy.weights.load_model(ckpt)
    runner = OrtRuntimeModel(model, max_sizes=1)
    for size in [(32, 64), (64, 64), (32, 64)]:
        runner(torch.randn(1, 3, *size))
    assert count_exports == [(32, 64), (64, 64), (32, 64)] and list(runner.sessions) == [(32, 64)]


class WrongSession:
    """An ONNX Runtime session stand-in whose depth is off by 1 m everywhere."""

    def __init__(self, session):
        self.session = session

    def run(self, names, feed):
        return [self.session.run(names, feed)[0] + 1.0]


def test_a_graph_that_disagrees_or_fails_is_not_used_and_predict_says_where_pytorch_ran(
    ckpt, tmp_path, monkeypatch, caplog
):
    eager = disdepth.load(ckpt, device="cpu")
    real_session = ort_runtime.ort_session
    monkeypatch.setattr(ort_runtime, "ort_session", lambda *a, **k: WrongSession(real_session(*a, **k)))
    ort = disdepth.load(ckpt, runtime="onnxruntime")
    x = images(40, 56)
    with caplog.at_level("WARNING", logger="disdepth.deploy.ort_runtime"):
        got = ort.predict_tensor(x)
    torch.testing.assert_close(got, eager.predict_tensor(x), rtol=1e-5, atol=1e-6)  # PyTorch's depth, not +1 m
    assert ort.model.pytorch_sizes == {(32, 64)} and ort.model.sessions[(32, 64)] is None
    assert "no usable graph at 32x64" in caplog.text and "differs from PyTorch by up to 1" in caplog.text

    def broken(*args, **kwargs):
        raise ValueError("export failed (test)")

    monkeypatch.setattr(ort_runtime, "export_onnx", broken)
    image = tmp_path / "in" / "a.png"
    image.parent.mkdir()
    Image.fromarray((images(40, 56, 1)[0].permute(1, 2, 0) * 255).byte().numpy()).save(image)
    out = tmp_path / "out"
    assert main(["predict", str(ckpt), str(image), "--out", str(out), "--runtime", "onnxruntime"]) == 0
    summary = json.loads((out / "predictions.json").read_text())
    assert summary["runtime"] == "onnxruntime (in PyTorch at 32x64: no matching graph)"
    want = eager.predict(Image.open(image))
    np.testing.assert_allclose(np.load(out / "a.npy"), want, rtol=1e-5, atol=1e-6)


def test_predict_runtime_onnxruntime_writes_what_pytorch_writes(ckpt, tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    for i, (h, w) in enumerate([(40, 56), (50, 30)]):
        Image.fromarray((images(h, w, 1)[0].permute(1, 2, 0) * 255).byte().numpy()).save(folder / f"{i}.png")
    runs = {}
    for runtime in ["torch", "onnxruntime"]:
        out = tmp_path / runtime
        assert main(["predict", str(ckpt), str(folder), "--out", str(out), "--runtime", runtime]) == 0
        runs[runtime] = out
        assert json.loads((out / "predictions.json").read_text())["runtime"] == runtime
    for name in ["0.npy", "1.npy"]:
        np.testing.assert_allclose(np.load(runs["onnxruntime"] / name), np.load(runs["torch"] / name), rtol=1e-3,
                                   atol=1e-4)  # fmt: skip


def test_contradictory_runtimes_are_refused_in_one_line(ckpt, tmp_path, capsys, monkeypatch):
    with pytest.raises(ValueError, match="runtime 'tensorrt': expected one of torch, onnxruntime"):
        disdepth.load(ckpt, runtime="tensorrt")
    with pytest.raises(ValueError, match="runtime onnxruntime runs on the CPU, not cuda"):
        disdepth.load(ckpt, device="cuda", runtime="onnxruntime")
    with monkeypatch.context() as patch:
        patch.setitem(sys.modules, "onnxruntime", None)  # as if the `deploy` extra were not installed
        with pytest.raises(ValueError, match=r"needs ONNX Runtime: pip install 'disdepth\[deploy\]'"):
            disdepth.load(ckpt, runtime="onnxruntime")
    graph = tmp_path / "model.onnx"
    assert main(["export", str(ckpt), "--out", str(graph), "--size", "32x64", "--runs", "1", "--warmup", "0"]) == 0
    with monkeypatch.context() as patch:
        patch.setitem(sys.modules, "onnxruntime", None)
        with pytest.raises(ValueError, match=r"model.onnx: running an .onnx graph needs ONNX Runtime: pip install"):
            disdepth.load(graph)
    assert DepthPredictor.from_checkpoint(graph, runtime="onnxruntime").runtime == "onnxruntime"
    image = tmp_path / "a.png"
    Image.fromarray((images(32, 64, 1)[0].permute(1, 2, 0) * 255).byte().numpy()).save(image)
    capsys.readouterr()
    assert main(["predict", str(graph), str(image), "--out", str(tmp_path / "o"), "--runtime", "torch"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "model.onnx: an .onnx graph runs on ONNX Runtime only, not runtime 'torch'" in err[0]
