"""Every output says only what is true: a relative model's files never call its values metres, a fixed-size graph
states the size it ran at, timings are warmed and spread, changes come with their interval, labels name the user's
run, one version string, --threads on every compute command."""

from __future__ import annotations

import json
from importlib.metadata import version

import numpy as np
import pytest
import torch
from PIL import Image
from tiny_runs import TINY

import disdepth
from disdepth.cli import COMMANDS, build_parser, main
from disdepth.config import load_config
from disdepth.deploy.writers import WriteOptions, png_note, tick_labels, write_outputs
from disdepth.pipeline.report import change_json, change_lines, trained_budgets

RELATIVE = ["--set", "model.metric=false", "--set", "model.relative_space=disparity"]


def says_metres(text: str) -> bool:
    """Whether ``text`` calls something metres, other than to say it is *not* metres."""
    return "metre" in text.replace("not metres", "")


@pytest.fixture(scope="module")
def relative_run(tmp_path_factory):
    run = tmp_path_factory.mktemp("relative") / "run"
    assert main(["train", "--run-dir", str(run), "--threads", "1", *TINY, *RELATIVE]) == 0
    return run


@pytest.fixture(scope="module")
def metric_run(tmp_path_factory):
    run = tmp_path_factory.mktemp("metric") / "run"
    assert main(["train", "--run-dir", str(run), "--threads", "1", *TINY]) == 0
    return run


@pytest.fixture(scope="module")
def photo(tmp_path_factory):
    folder = tmp_path_factory.mktemp("photos")
    y, x = np.mgrid[0:40, 0:56]
    rgb = np.stack([x / 56, y / 40, 0.5 + 0.5 * np.sin(x / 5)], -1) * 255
    Image.fromarray(rgb.astype(np.uint8)).save(folder / "kitchen.png")
    return folder


def test_relative_model_outputs_never_say_metres(relative_run, photo, tmp_path, capsys):
    out = tmp_path / "out"
    args = ["predict", str(relative_run / "model"), str(photo), "--out", str(out), "--legend", "--panel"]
    assert main(args) == 0
    printed = capsys.readouterr().out
    summary = (out / "predictions.json").read_text()
    readme = (out / "README.txt").read_text()
    for text in (printed, summary, readme):
        assert not says_metres(text), text
        assert "relative" in text.lower()
    entry = json.loads(summary)["predictions"][0]
    assert not [k for k in entry if k.endswith("_m")] and "depth_relative" in entry and "color_range_relative" in entry
    # The 16-bit PNG states its own encoding (rel16 with this image's range) and decodes back to the .npy values.
    values = np.load(out / "kitchen.npy")
    raw = np.asarray(Image.open(out / "kitchen.png")).astype(np.float64)
    lo, hi = entry["png_range"]
    assert raw.min() == 1 and raw.max() == 65534
    decoded = lo + (raw - 1) / 65533 * (hi - lo)
    assert np.abs(decoded - values).max() <= (hi - lo) / 65533 + 1e-6
    # The model card of a relative student says relative, and rounds its figure.
    card = (relative_run / "model" / "README.md").read_text()
    assert "RELATIVE" in card and not says_metres(card)


def test_metric_outputs_still_say_metres(metric_run, photo, tmp_path):
    out = tmp_path / "out"
    assert main(["predict", str(metric_run / "model"), str(photo), "--out", str(out)]) == 0
    entry = json.loads((out / "predictions.json").read_text())["predictions"][0]
    assert "depth_m" in entry and "png_range" not in entry
    assert "metres" in (out / "README.txt").read_text()
    card = (metric_run / "model" / "README.md").read_text()
    assert "Output: depth in metres." in card and "RELATIVE" not in card
    best = card.split("abs_rel: ")[1].split(" ")[0]
    assert len(best.split(".")[1]) == 4  # rounded, not 0.24637293538445354


def test_legend_ticks_and_png_note_carry_the_unit():
    assert tick_labels([1.0, 1.5, 2.0]) == ["1.0 m", "1.5 m", "2.0 m"]
    relative = tick_labels([1.0, 1.5], "relative (disparity, unknown scale and shift)")
    assert relative == ["1.0 relative", "1.5 relative"]
    assert "metres = value / 1000" in png_note("mm")
    assert not says_metres(png_note("mm", "relative (disparity, unknown scale and shift)"))
    with pytest.raises(ValueError, match="point cloud"):
        WriteOptions(formats=frozenset({"ply"}), fov=60.0, depth_units="relative (depth, unknown scale)")


def test_relative_downloads_in_the_app_say_relative_and_offer_no_point_cloud(relative_run, metric_run, tmp_path):
    from disdepth.deploy.app import downloads_note, load_models, predict_view

    models = load_models({"distilled": str(relative_run / "model"), "baseline": str(metric_run / "model")})
    rgb = (np.random.default_rng(0).random((40, 56, 3)) * 255).astype(np.uint8)
    view = predict_view(models, rgb, fov=60.0, out_dir=tmp_path)
    assert not view.error, view.error
    files = [f.rsplit("/", 1)[-1] for f in view.files]
    assert "image_baseline.ply" in files and "image_distilled.ply" not in files
    note = downloads_note(view, models)
    relative_part, metric_part = note.split("; baseline")
    assert "rel16" in relative_part and not says_metres(relative_part)
    assert "metres x 1000" in metric_part


def test_app_timings_are_warmed_and_show_their_spread(metric_run):
    from disdepth.deploy.app import _latency_table, load_models, predict_view

    models = load_models({"distilled": str(metric_run / "model"), "baseline": str(metric_run / "model")})
    rgb = (np.random.default_rng(0).random((40, 56, 3)) * 255).astype(np.uint8)
    calls = {m.label: 0 for m in models}
    for m in models:  # count forward passes: each model runs once untimed at a new size, then once per answer
        original = m.predictor.predict_tensor

        def counted(*a, _label=m.label, _original=original, **kw):
            calls[_label] += 1
            return _original(*a, **kw)

        m.predictor.predict_tensor = counted
    for _ in range(3):
        view = predict_view(models, rgb, downloads=False)
    assert calls == {"distilled": 4, "baseline": 4}
    assert all(len(m.latencies[view.run_size]) == 3 for m in models)
    table = _latency_table(view, models)
    assert "(n = 3)" in table and "warmed up" in table


def test_fixed_size_graph_states_the_size_it_ran_at(metric_run, photo, tmp_path, capsys):
    pytest.importorskip("onnxruntime")
    graph = tmp_path / "fixed.onnx"
    assert main(["export", str(metric_run / "model"), "--out", str(graph), "--size", "64x96", "--no-check"]) == 0
    capsys.readouterr()
    out = tmp_path / "out"
    assert main(["predict", str(graph), str(photo), "--out", str(out)]) == 0
    assert "fixed-size graph: every image runs at 64x96" in capsys.readouterr().out
    summary = json.loads((out / "predictions.json").read_text())
    assert summary["predictions"][0]["run_size"] == [64, 96]  # not the 32x64 the image would round to
    assert "fixed size" in summary["size_policy"]
    # Asking for another size is refused, naming the graph's own.
    assert main(["predict", str(graph), str(photo), "--out", str(tmp_path / "o2"), "--size", "32x64"]) == 2
    assert "fixed 64x96" in capsys.readouterr().err
    # The graph's depth matches the PyTorch model run at the same (64x96) size.
    onnx_depth = disdepth.load(graph).predict(np.asarray(Image.open(photo / "kitchen.png")))
    image = np.asarray(Image.open(photo / "kitchen.png"))
    torch_depth = disdepth.load(metric_run / "model", size=(64, 96)).predict(image)
    assert np.abs(onnx_depth - torch_depth).max() < 1e-3


def test_one_version_string_everywhere(capsys):
    assert disdepth.__version__ == version("disdepth")
    with pytest.raises(SystemExit):
        main(["--version"])
    assert capsys.readouterr().out.strip() == f"disdepth {version('disdepth')}"


@pytest.mark.parametrize("command", ["train", "acclimate", "distill", "pipeline", "predict", "eval", "export", "demo"])
def test_every_compute_command_takes_threads(command):
    import importlib

    parser = build_parser()
    sub = parser._subparsers._group_actions[0].choices[command]
    importlib.import_module(COMMANDS[command][0]).add_arguments(sub)
    assert any("--threads" in a.option_strings for a in sub._actions)


def test_threads_are_applied_before_the_command_runs(metric_run, photo, tmp_path):
    before = torch.get_num_threads()
    try:
        assert main(["predict", str(metric_run / "model"), str(photo), "--out", str(tmp_path), "--threads", "1"]) == 0
        assert torch.get_num_threads() == 1
        with pytest.raises(SystemExit):  # argparse: one line naming --threads, exit 2
            main(["predict", str(metric_run / "model"), str(photo), "--out", str(tmp_path / "b"), "--threads", "-2"])
    finally:
        torch.set_num_threads(before)


def test_a_users_config_built_on_a_recipe_is_named_after_the_user(tmp_path):
    mine = tmp_path / "kitchen_robot.yaml"
    mine.write_text("base: recipe:demo\ntrain:\n  steps: 5\n")
    assert load_config(mine).name == "kitchen_robot"
    named = tmp_path / "named.yaml"
    named.write_text("base: recipe:demo\nname: my_run\n")
    assert load_config(named).name == "my_run"
    assert load_config("recipe:demo").name == "disdepth_demo"


def test_report_lists_only_stages_that_trained_and_states_changes_with_their_interval():
    cfg = load_config("recipe:demo")
    stages = {
        "teacher": {"stage": "teacher", "checkpoint": "hub/folder", "loaded": True},
        "baseline": {"step": 3}, "acclimate": {"step": 2}, "distill": {"step": 2},
    }  # fmt: skip
    budgets = trained_budgets(cfg, stages)
    assert "teacher" not in budgets and budgets.startswith("baseline ")
    per_image = {f"i{k}": {"abs_rel": 0.2 + 0.01 * k, "rmse": 1.0, "d1": 0.5} for k in range(10)}
    entries = [{"label": "baseline", "metrics": {"per_image": per_image}},
               {"label": "distilled", "metrics": {"per_image": per_image}}]  # fmt: skip
    lines = change_lines(change_json(entries))
    assert "abs_rel +0.0 % [+0.0, +0.0] no measurable effect" in lines[0] and "One seed" in lines[1]
    assert change_lines(change_json(entries[:1])) == []


def test_write_outputs_keys_follow_the_unit(tmp_path):
    depth = np.linspace(1, 2, 12, dtype=np.float32).reshape(3, 4)
    rgb = np.zeros((3, 4, 3), np.uint8)
    metric = write_outputs(tmp_path, "a", depth, rgb, WriteOptions())
    relative = write_outputs(tmp_path, "b", depth, rgb, WriteOptions(depth_units="relative (depth, unknown scale)"))
    assert "depth_m" in metric and "color_range_m" in metric
    assert "depth_relative" in relative and relative["png_range"] == [1.0, 2.0]


def test_an_unreachable_hub_id_fails_in_seconds_naming_the_key(monkeypatch):
    pytest.importorskip("transformers")
    import time

    from disdepth.teachers import hf_teacher

    assert not hf_teacher.hub_reachable("http://127.0.0.1:9", timeout_s=1.0)  # nothing listens on port 9
    monkeypatch.setattr(hf_teacher, "hub_reachable", lambda endpoint, timeout_s=3.0: False)
    start = time.perf_counter()
    with pytest.raises(ValueError, match=r"teacher.name='depth-anything/no-such-model': not in the local"):
        hf_teacher.load_hf_teacher("depth-anything/no-such-model")
    assert time.perf_counter() - start < 5.0


def test_an_images_only_list_names_the_documented_route(tmp_path):
    from disdepth.data.io import DataError, Record, with_depth

    with pytest.raises(DataError, match="data.require_depth=false"):
        with_depth([Record(tmp_path / "a.jpg", None, 1000.0, 500.0, None, "a", "index.csv:2")], tmp_path / "index.csv")


def test_int8_per_tensor_fallback_warnings_become_one_explained_line(caplog):
    import logging

    from disdepth.deploy.quantize import _PerTensorFallbacks

    with caplog.at_level(logging.INFO), _PerTensorFallbacks() as fallbacks:
        for name in ("head.bias", "up.weight"):
            logging.warning(f"Axis 1 is out-of-range for weight '{name}' with rank 1")
        logging.warning("something else")
    assert fallbacks.names == ["head.bias", "up.weight"]
    assert [r.getMessage() for r in caplog.records] == ["something else"]


def test_lgconv_conversion_is_announced_once_per_process(caplog):
    import logging

    from disdepth.models.student import build_student

    cfg = load_config(overrides=["model.encoder=test_efficientnet", "model.pretrained=none", "model.decoder=unet",
                                 "model.lgconv.enabled=true",
                                 "model.lgconv.min_channels=8", "model.lgconv.strides=[16,32]"])  # fmt: skip
    with caplog.at_level(logging.INFO, logger="disdepth.models.student"):
        for _ in range(3):
            build_student(cfg.model)
    assert len([r for r in caplog.records if r.getMessage().startswith("LG-Conv: converted")]) <= 1


def test_progress_bar_names_the_stage(tmp_path, capsys):
    run = tmp_path / "baseline"
    assert main(["train", "--run-dir", str(run), "--threads", "1", *TINY]) == 0
    err = capsys.readouterr().err
    assert "baseline:" in err and "train:" not in err


def test_a_run_on_a_recipe_is_named_after_its_run_dir(tmp_path, capsys):
    run_dir = tmp_path / "mine"
    assert main(["pipeline", "-c", "recipe:demo", "--run-dir", str(run_dir), "--print-config"]) == 0
    assert "name: mine" in capsys.readouterr().out
    assert main(["pipeline", "-c", "recipe:demo", "--run-dir", str(run_dir), "--set", "name=x", "--print-config"]) == 0
    assert "name: x" in capsys.readouterr().out


def test_report_panels_carry_their_names_and_colour_range():
    from disdepth.eval.viz import depth_panel, with_title

    rng = np.random.default_rng(0)
    image = (rng.random((48, 64, 3)) * 255).astype(np.uint8)
    gt = rng.random((48, 64)) * 4 + 1
    panel = depth_panel(image, gt * 1.1, gt, gt > 0)
    assert panel.shape[0] > 48 and panel.shape[1] == 4 * 64
    caption = panel[48:]
    for tile in range(4):  # every tile has its name written under it (dark text on the white strip)
        assert (caption[:, tile * 64 : (tile + 1) * 64] < 100).any()
    titled = with_title(panel, "distilled: test image 1")
    assert titled.shape[0] > panel.shape[0] and (titled[: titled.shape[0] - panel.shape[0]] < 100).any()


def test_stage_table_and_log_state_the_gap_shares_rounded():
    from disdepth.pipeline.report import gap_cell, stage_table
    from disdepth.pipeline.stages import format_gap

    gap = {"metric": "abs_rel", "baseline": 0.28201234, "teacher": 0.149, "ghost": 0.19, "retained": 0.6912345}
    assert gap_cell(gap) == "retained 0.69" and gap_cell({**gap, "retained": None}) == "teacher not ahead"
    assert format_gap(gap) == "abs_rel: baseline 0.2820, teacher 0.1490, ghost 0.1900 | retained 0.69"
    rows = stage_table({"acclimate": {"step": 3, "wall_s": 2.0, "metrics": {}, "gap": gap, "checkpoint": "a.pt"}})
    assert "| acclimate | 3 | 2 |  | retained 0.69 | `a.pt` |" in rows


def test_a_low_retained_share_is_called_out():
    """Retained below 0.2 (the ghost decoder reads little of the teacher's lead) is warned about; above it, or
    unknown, it is not."""
    from disdepth.tasks.acclimation import LOW_RETAINED, gap_report, low_retained_warning

    def gap(ghost: float) -> dict:
        scores = {"baseline": 0.14, "teacher_before": 0.12, "ghost": ghost}  # the teacher's lead: 0.02
        return gap_report({k: {"abs_rel": v} for k, v in scores.items()})

    warning = low_retained_warning(gap(0.1395))  # retained 0.025
    assert warning is not None and warning.startswith("retained 0.03:") and "feature KD" in warning
    assert low_retained_warning(gap(0.146)) is not None  # negative: the ghost decoder reads worse than the student
    assert LOW_RETAINED == 0.2 and low_retained_warning(gap(0.135)) is None  # retained 0.25: no warning
    assert low_retained_warning(gap(0.125)) is None and low_retained_warning(None) is None
    assert low_retained_warning({"retained": None}) is None  # teacher not ahead: the share is unknown
