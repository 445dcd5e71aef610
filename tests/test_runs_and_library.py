"""The run folder as an object (``disdepth.open_run``) and deployment as a library (``disdepth.predict``): the same
layout the training loop writes, and the same files the command line writes."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image
from tiny_runs import TINY

import disdepth
from disdepth.cli import main
from disdepth.runs import PIPELINE_STAGES, Run, open_run


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    run = tmp_path_factory.mktemp("runs") / "student"
    assert main(["train", "--run-dir", str(run), "--threads", "1", *TINY]) == 0
    return run


@pytest.fixture
def photos(tmp_path):
    folder = tmp_path / "photos"
    folder.mkdir()
    for i in range(2):
        rgb = (np.random.default_rng(i).random((40, 56, 3)) * 255).astype(np.uint8)
        Image.fromarray(rgb).save(folder / f"p{i}.png")
    return folder


def test_the_run_object_names_what_the_training_loop_wrote(trained):
    run = open_run(trained)
    assert run.config_path.is_file() and run.last.is_file() and run.best.exists() is run.best.is_file()
    assert run.holds_run() and not run.is_pipeline()
    assert run.model() == run.model_dir and (run.model_dir / "model.safetensors").is_file()
    assert run.result()["step"] == 2 and run.finished()


def test_a_pipeline_folder_gives_each_stage_its_model(tmp_path, trained):
    import shutil

    pipe = tmp_path / "pipe"
    shutil.copytree(trained, pipe / "distill")
    (pipe / "baseline" / "checkpoints").mkdir(parents=True)
    shutil.copy(trained / "checkpoints" / "last.pt", pipe / "baseline" / "checkpoints" / "last.pt")
    run = disdepth.open_run(pipe)
    assert run.is_pipeline()
    assert run.model("distill") == pipe / "distill" / "model" == run.model("distilled")
    assert run.model("baseline") == pipe / "baseline" / "checkpoints" / "last.pt"  # no model/ folder yet
    with pytest.raises(FileNotFoundError, match="teacher: no model yet"):
        run.model("teacher")
    with pytest.raises(ValueError, match="stages are teacher, baseline, acclimate, distill"):
        run.stage("student")
    (pipe / "distill" / "result.json").write_text(json.dumps({"stage": "distill", "step": 2}))
    assert run.stage("distill").result() == {"stage": "distill", "step": 2} and run.stage("distill").finished()
    assert PIPELINE_STAGES == ("teacher", "baseline", "acclimate", "distill")


def test_open_run_refuses_what_is_not_a_folder(tmp_path):
    with pytest.raises(FileNotFoundError, match="not a run folder"):
        open_run(tmp_path / "missing")
    assert Run(tmp_path).deployable() is None


def test_predict_from_python_writes_what_the_command_writes(trained, photos, tmp_path, capsys):
    library = disdepth.predict(disdepth.open_run(trained).model(), [photos], tmp_path / "lib", legend=True)
    assert main(["predict", str(trained / "model"), str(photos), "--out", str(tmp_path / "cli"), "--legend"]) == 0
    assert [e["name"] for e in library.entries] == ["p0", "p1"] and library.depth_units == "m"
    for name in ("p0.png", "p0.npy", "p1_color.png"):
        assert (tmp_path / "lib" / name).read_bytes() == (tmp_path / "cli" / name).read_bytes()
    summary = json.loads((tmp_path / "lib" / "predictions.json").read_text())
    assert [e["name"] for e in summary["predictions"]] == ["p0", "p1"]
    with pytest.raises(ValueError, match="--vmin 5 --vmax 1"):
        disdepth.predict(trained / "model", [photos], tmp_path / "bad", vmin=5.0, vmax=1.0)


def test_students_follow_hugging_face_conventions(trained, tmp_path, monkeypatch):
    """save_pretrained / from_pretrained / push_to_hub read and write the model folder training writes; the hub is
    a local folder here (huggingface_hub's upload and download functions are pointed at it)."""
    import shutil

    import huggingface_hub
    import torch

    from disdepth.models.student import DepthStudent

    student = DepthStudent.from_pretrained(trained / "model")
    image = torch.rand(1, 3, 64, 96)
    with torch.inference_mode():
        before = student(image)["depth"]
    saved = student.save_pretrained(tmp_path / "saved")
    assert {p.name for p in saved.iterdir()} == {"config.json", "model.safetensors", "README.md"}
    again = DepthStudent.from_pretrained(saved)
    with torch.inference_mode():
        assert torch.equal(again(image)["depth"], before)
    assert np.allclose(disdepth.load(saved).predict(image[0]), disdepth.load(trained / "model").predict(image[0]))
    # push_to_hub: create_repo then upload_folder of what save_pretrained writes
    remote = tmp_path / "remote"
    calls = []
    monkeypatch.setattr(huggingface_hub.HfApi, "create_repo", lambda self, repo_id, **kw: calls.append(repo_id))

    def upload_folder(self, repo_id, folder_path, **kw):
        shutil.copytree(folder_path, remote / repo_id)
        return f"commit to {repo_id}"

    monkeypatch.setattr(huggingface_hub.HfApi, "upload_folder", upload_folder)
    assert student.push_to_hub("me/student") == "commit to me/student" and calls == ["me/student"]
    # from_pretrained with a hub id: snapshot_download (pointed at the "remote" folder) fetches only the folder files
    asked = {}

    def snapshot_download(repo_id, **kw):
        asked.update(kw)
        return str(remote / repo_id)

    monkeypatch.setattr(huggingface_hub, "snapshot_download", snapshot_download)
    pulled = DepthStudent.from_pretrained("me/student")
    with torch.inference_mode():
        assert torch.equal(pulled(image)["depth"], before)
    assert asked["allow_patterns"] == ["config.json", "model.safetensors", "README.md"]
    # a student built from a config alone must be given the config to save
    from disdepth.config import load_config
    from disdepth.models.student import build_student

    cfg = load_config(
        overrides=[
            "model.encoder=test_efficientnet",
            "model.decoder_channels=[16,16,8,8,8]",
            "model.pretrained=none",
            "model.decoder=unet",
        ]
    )
    with pytest.raises(ValueError, match="config="):
        build_student(cfg.model, load_weights=False).save_pretrained(tmp_path / "x")
    assert build_student(cfg.model, load_weights=False).save_pretrained(tmp_path / "y", config=cfg).is_dir()


def test_export_and_evaluate_from_python(trained, tmp_path):
    pytest.importorskip("onnxruntime")
    result = disdepth.export(trained / "model", tmp_path / "m.onnx", size=(64, 96), runs=1, warmup=0)
    assert result.path.is_file() and result.metadata["input_size"] == "64x96" and result.metric
    assert result.check["max_abs_diff_m"]["random"] < 1e-3 and result.variants == {"fp32": tmp_path / "m.onnx"}
    with pytest.raises(ValueError, match="--out .*expected a .onnx file name"):
        disdepth.export(trained / "model", tmp_path / "m.pt")
    scored = disdepth.evaluate(checkpoint=trained / "model")
    assert scored.n_evaluated == 2 and 0 < scored.metrics["abs_rel"] < 10  # the run's 2 synthetic val scenes
    with pytest.raises(ValueError, match="nothing to evaluate"):
        disdepth.evaluate()
