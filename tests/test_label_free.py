"""Teachers users have (relative and metric Hugging Face models saved by ``save_pretrained``) on images they have
(most without depth): the SSI loss, aligned and labelled scores, label-free stages, relative students, stale stages."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from disdepth.cli import main
from disdepth.config import load_config
from disdepth.data.io import write_depth_png
from disdepth.eval.alignment import align_to_ground_truth, alignment_note
from disdepth.models.spec import InputSpec
from disdepth.pipeline.run import StaleStage, run_stages
from disdepth.tasks.losses import ssi_loss
from disdepth.tasks.pseudo import TeacherTarget, loss_to_teacher

transformers = pytest.importorskip("transformers")

from hf_tiny import _depth_anything, _dpt, _glpn  # noqa: E402  (tests/hf_tiny.py)

pytestmark = pytest.mark.usefixtures("one_thread")  # conftest.py


# --------------------------------------------------------------------------------------------- losses, alignment


def test_ssi_loss_golden_value_zero_at_equality_and_invariant_to_scale_and_shift():
    pred = torch.tensor([0.0, 1.0, 2.0, 3.0]).view(1, 1, 2, 2)
    target = torch.tensor([0.0, 1.0, 2.0, 4.0]).view(1, 1, 2, 2)
    # pred: median 1, mean |dev| 1 -> [-1, 0, 1, 2]; target: median 1, mean |dev| 1.25 -> [-.8, 0, .8, 2.4]
    assert ssi_loss(pred, target).item() == pytest.approx(0.2)
    assert ssi_loss(pred, pred).item() == 0.0
    assert ssi_loss(pred, 7.0 * target + 3.0).item() == pytest.approx(0.2, abs=1e-6)
    assert ssi_loss(0.5 * pred - 2.0, target).item() == pytest.approx(0.2, abs=1e-6)
    valid = torch.tensor([True, True, True, False]).view(1, 1, 2, 2)  # the outlier masked out: exact fit
    assert ssi_loss(pred, target, valid).item() == pytest.approx(0.0, abs=1e-6)


def test_response_kd_to_a_relative_teacher_ignores_the_teacher_scale_and_shift():
    """Never 1/relative as metres: an affine change of the relative output leaves the loss unchanged."""
    torch.manual_seed(0)
    student = torch.rand(2, 1, 8, 8) + 0.5
    relative = torch.rand(2, 1, 8, 8) + 0.1
    base = loss_to_teacher(student, TeacherTarget(1.0 / relative, relative, "disparity")).item()
    moved = loss_to_teacher(student, TeacherTarget(1.0 / relative, 40.0 * relative + 5.0, "disparity")).item()
    assert base > 0 and moved == pytest.approx(base, rel=1e-5)
    exact = loss_to_teacher(1.0 / (3.0 * relative + 1.0), TeacherTarget(1.0 / relative, relative, "disparity"))
    assert exact.item() == pytest.approx(0.0, abs=1e-5)  # the student's disparity is affine in the teacher's


def test_alignment_recovers_metric_depth_from_an_affine_disparity():
    gt = torch.rand(16, 16, dtype=torch.float64) * 4 + 1
    relative_depth = 1.0 / (2.0 / gt + 0.3)  # what a relative model in disparity space could output
    spec = InputSpec(metric=False, relative_space="disparity", max_depth=10.0)
    aligned = align_to_ground_truth(relative_depth, gt, torch.ones_like(gt, dtype=torch.bool), spec)
    assert torch.allclose(aligned, gt, rtol=1e-6)
    assert alignment_note(spec) == "aligned per image (least squares, scale+shift in disparity)"


# --------------------------------------------------------------------------------------------- tiny HF teachers


@pytest.fixture(scope="module")
def hub(tmp_path_factory) -> dict[str, Path]:
    """Tiny Hugging Face teachers as local folders (as a hub download leaves them): Depth Anything V2 relative and
    metric, DPT (relative), GLPN (metric)."""
    root = tmp_path_factory.mktemp("hub")
    torch.manual_seed(0)
    makers = {"relative": lambda: _depth_anything(False), "metric": lambda: _depth_anything(True), "dpt": _dpt,
              "glpn": _glpn}  # fmt: skip
    out = {}
    for name, make in makers.items():
        make().save_pretrained(root / name)
        out[name] = root / name
    return out


@pytest.fixture(scope="module")
def frames(tmp_path_factory) -> dict[str, Path]:
    """Tiny RGB frames: an images-only train CSV, a mixed one (2 of 6 labelled), and a labelled test CSV."""
    root = tmp_path_factory.mktemp("frames")
    rng = np.random.default_rng(0)
    rows = []
    for i in range(8):
        yy, xx = np.mgrid[0:28, 0:42]
        depth = 1.0 + 3.0 * yy / 28.0 + 0.2 * rng.random((28, 42))
        rgb = np.stack([xx * 6, yy * 9, 255 / depth], -1).clip(0, 255).astype(np.uint8)
        Image.fromarray(rgb).save(root / f"f{i}.png")
        write_depth_png(root / f"d{i}.png", depth.astype(np.float32), 1000.0)
        rows.append((f"f{i}.png", f"d{i}.png"))
    (root / "images.csv").write_text("rgb\n" + "".join(f"{r}\n" for r, _ in rows[:6]))
    mixed = "".join(f"{r},{d if i < 2 else ''}\n" for i, (r, d) in enumerate(rows[:6]))
    (root / "mixed.csv").write_text("rgb,depth\n" + mixed)
    (root / "test.csv").write_text("rgb,depth\n" + "".join(f"{r},{d}\n" for r, d in rows[6:]))
    return {"images": root / "images.csv", "mixed": root / "mixed.csv", "test": root / "test.csv"}


TINY_STUDENT = [
    "model.encoder=test_efficientnet", "model.pretrained=none", "model.weights=", "model.decoder=unet",
    "model.decoder_channels=[16,16,8,8,8]", "model.lgconv.enabled=false", "data.dataset=csv", "data.depth_scale=1000",
    "data.batch_size=2", "data.num_workers=0", "data.augment.enabled=false", "data.require_depth=false",
    "train.steps=2", "train.eval_every=0", "train.checkpoint_every=0", "train.image_panels=0", "train.device=cpu",
    "pipeline.teacher.steps=0", "pipeline.teacher.lr=0", "pipeline.acclimate.steps=2",
    "pipeline.bench_resolution=[28,42]", "pipeline.panels=0", "eval.max_depth=10", "model.max_depth=10",
    "teacher.max_depth=10",
]  # fmt: skip


def _config(hub: dict, frames: dict, teacher: str, train: str, *extra: str):
    return load_config(
        "recipe:demo",
        [*TINY_STUDENT, "teacher.kind=hf", f"teacher.name={hub[teacher]}", "teacher.pretrained=none",
         "teacher.weights=", f"data.train_list={frames[train]}", f"data.val_list={frames['test']}",
         f"data.test_list={frames['test']}", *extra],
    )  # fmt: skip


# --------------------------------------------------------------------------------------------- the pipeline


@pytest.mark.parametrize("teacher", ["relative", "metric", "dpt", "glpn"])
def test_label_free_pipeline_on_an_images_only_csv(teacher, hub, frames, tmp_path, capsys):
    """Every stage runs without one depth map: the teacher's depth is the target. A relative teacher with no labelled
    frame gives a relative student (stated, scored aligned, no metric point cloud); a metric one a metric student."""
    cfg = _config(hub, frames, teacher, "images")
    results = run_stages(cfg, tmp_path / "run")
    assert results["teacher"]["loaded"] and set(results) == {"teacher", "baseline", "acclimate", "distill"}
    from disdepth.checkpoint import read_checkpoint

    metric = teacher in ("metric", "glpn")
    spec = read_checkpoint(tmp_path / "run" / "distill" / "model")["input_spec"]
    assert spec["metric"] is metric
    # Scores on the labelled test frames: a relative teacher and a relative student are aligned and say so.
    before = results["acclimate"]["metrics"]["teacher_before"]
    assert ("alignment" in before) is not metric
    assert ("alignment" in results["distill"]["metrics"]) is not metric
    image = frames["test"].parent / "f6.png"
    args = ["predict", str(tmp_path / "run" / "distill" / "model"), str(image), "--out", str(tmp_path / "p")]
    assert main(args) == 0
    summary = json.loads((tmp_path / "p" / "predictions.json").read_text())
    assert (summary["depth_units"] == "metres") is metric
    if not metric:
        assert main([*args, "--fov", "60"]) == 2
        assert "relative model" in capsys.readouterr().err


def test_a_few_labelled_frames_fix_the_scale_and_the_report_names_the_run(hub, frames, tmp_path):
    cfg = _config(hub, frames, "relative", "mixed")
    results = run_stages(cfg, tmp_path / "run")
    from disdepth.checkpoint import read_checkpoint

    assert read_checkpoint(tmp_path / "run" / "distill" / "model")["input_spec"]["metric"] is True
    assert "alignment" not in results["distill"]["metrics"]
    from disdepth.pipeline.report import describe_run

    assert "relative" in describe_run(load_config(overrides=["teacher.kind=hf", "teacher.metric=relative"]))


def test_the_pipeline_writes_a_target_store_once_and_distills_from_it(hub, frames, tmp_path):
    """With ``distill.target_store`` the pipeline runs the teacher pass before distilling (a Hugging Face teacher,
    acclimated); a later distillation with the same teacher side finds every shard finished and runs no teacher."""
    store = tmp_path / "store"
    cfg = _config(hub, frames, "relative", "mixed", f"distill.target_store={store}")
    results = run_stages(cfg, tmp_path / "run")
    assert (results["teach"]["views"], results["teach"]["views_computed"]) == (6, 6)  # augmentation off: no mirrors
    assert results["distill"]["step"] == 2 and (store / "shard-00000.done").is_file()
    shutil.rmtree(tmp_path / "run" / "distill")  # e.g. another student budget on the same acclimated teacher
    again = run_stages(cfg, tmp_path / "run")
    assert (again["teach"]["skipped_shards"], again["teach"]["views_computed"]) == (1, 0)
    assert again["distill"]["step"] == 2


def test_a_changed_setting_is_refused_naming_the_key_and_a_bad_teacher_fails_before_training(hub, frames, tmp_path):
    cfg = _config(hub, frames, "metric", "images")
    run_stages(cfg, tmp_path / "run")
    changed = _config(hub, frames, "metric", "images", "model.decoder_channels=[16,16,8,8,4]")
    with pytest.raises(StaleStage, match="model.decoder_channels"):
        run_stages(changed, tmp_path / "run")
    run_stages(changed, tmp_path / "run", overwrite=True)  # --overwrite redoes it
    missing = _config(hub, frames, "metric", "images", f"teacher.name={tmp_path / 'nowhere'}")
    with pytest.raises((FileNotFoundError, ValueError, OSError)):
        run_stages(missing, tmp_path / "other")
    assert not (tmp_path / "other" / "baseline").exists()  # nothing trained before the teacher failed


def test_label_free_without_a_teacher_is_refused_naming_the_key(frames, tmp_path, capsys):
    args = ["train", "--run-dir", str(tmp_path / "t"), "-c", "recipe:demo"]
    for item in [*TINY_STUDENT, f"data.train_list={frames['images']}", f"data.val_list={frames['test']}",
                 "teacher.kind=hybrid", "teacher.checkpoint="]:  # fmt: skip
        args += ["--set", item]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "data.require_depth=false" in err and "teacher" in err and "Traceback" not in err


def test_a_scale_only_relative_model_is_aligned_by_scale_alone_and_says_so():
    gt = torch.rand(16, 16, dtype=torch.float64) * 4 + 1
    valid = torch.ones_like(gt, dtype=torch.bool)
    scale_only = InputSpec(metric=False, relative_space="depth", relative_fit="scale", max_depth=10.0)
    assert torch.allclose(align_to_ground_truth(0.5 * gt, gt, valid, scale_only), gt)
    shifted = align_to_ground_truth(0.5 * gt + 1.0, gt, valid, scale_only)  # a shift it may not remove
    assert not torch.allclose(shifted, gt, atol=1e-3)
    assert alignment_note(scale_only) == "aligned per image (least squares, scale only in depth)"
    assert scale_only.units == "relative (depth, unknown scale)"
