"""Every distillation config (``configs/<dataset>/disdepth.yaml``, ``configs/sevenscenes/``, the packaged
``recipe:demo``) resolves; with tiny stand-in models each runs one acclimate and one distill step;
``disdepth pipeline`` runs end to end, writes its report, and a re-run skips finished stages."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

import disdepth
from disdepth.cli import main
from disdepth.config import load_config

ROOT = Path(__file__).resolve().parents[1]
# The smoke-scale recipe ships inside the package: ``-c recipe:demo`` (src/disdepth/recipes/demo.yaml).
DEMO = "recipe:demo"
DISTILL_CONFIGS = [
    *sorted(ROOT.glob("configs/*/disdepth.yaml")),
    *sorted(ROOT.glob("configs/sevenscenes/*.yaml")),
    DEMO,
]
# Tiny stand-ins for the heavy parts (hub weights, full-size data) so one step runs offline in seconds.
SHRINK = [
    "model.encoder=test_efficientnet",
    "model.pretrained=none",
    "model.weights=",
    "model.decoder=unet",
    "model.decoder_channels=[16,16,8,8,8]",
    "teacher.kind=hybrid",
    "teacher.name=test_efficientnet",
    "teacher.pretrained=none",
    "teacher.weights=",
    "teacher.hybrid_dim=32",
    "teacher.hybrid_depth=1",
    "teacher.hybrid_heads=2",
    "teacher.decoder_channels=16",
    "data.dataset=synthetic",
    "data.synthetic.n_train=4",
    "data.synthetic.n_val=2",
    "data.synthetic.height=32",
    "data.synthetic.width=32",
    "data.batch_size=2",
    "data.num_workers=0",
    "data.augment.enabled=false",
    "train.steps=1",
    "train.eval_every=0",
    "train.checkpoint_every=0",
    "train.image_panels=1",
    "train.device=cpu",
    "eval.protocol=none",
    "pipeline.bench_resolution=[32,32]",
    "pipeline.panels=1",
]


def _id(path: Path | str) -> str:
    return path if isinstance(path, str) else f"{path.parent.name}/{path.name}"


def test_there_are_distill_configs_for_nyu_kitti_synthetic_and_sevenscenes():
    names = {_id(p).split("/")[0] for p in DISTILL_CONFIGS}
    assert {"nyu", "kitti", DEMO, "sevenscenes"} <= names
    for path in DISTILL_CONFIGS:  # every one holds the typed stage budgets of `disdepth pipeline`
        assert load_config(path).pipeline.acclimate.steps > 0


@pytest.mark.parametrize("path", DISTILL_CONFIGS, ids=_id)
def test_config_resolves_and_runs_one_acclimate_and_distill_step(path, tmp_path):
    from disdepth.pipeline.run import run_stages

    cfg = load_config(path)
    assert cfg.distill.levels and cfg.acclimate.ghost_init in ("baseline", "fresh")
    cfg = load_config(path, [*SHRINK, "pipeline.teacher.steps=1", "pipeline.acclimate.steps=1"])
    results = run_stages(cfg, tmp_path)
    assert set(results["acclimate"]["metrics"]) == {"teacher_before", "teacher_after", "ghost", "baseline"}
    out = results["distill"]
    assert Path(out["checkpoint"]).is_file() and out["step"] == 1


def test_pipeline_cli_end_to_end_then_rerun_skips_finished_stages(tmp_path, capsys):
    args = ["pipeline", "-c", DEMO, "--run-dir", str(tmp_path / "p")]
    for item in [*SHRINK, "pipeline.teacher.steps=0", "pipeline.teacher.lr=0", "pipeline.acclimate.steps=0"]:
        args += ["--set", item]
    assert main(args) == 0
    report = json.loads((tmp_path / "p/report/report.json").read_text())
    assert [e["label"] for e in report["entries"]] == ["teacher", "baseline", "distilled"]
    for e in report["entries"]:
        assert e["gflops"] > 0 and e["params_m"] > 0 and "abs_rel" in e["metrics"]
        assert all((tmp_path / "p/report" / p).is_file() for p in e["panels"])
    results_table = (tmp_path / "p/report/report.md").read_text().split("## Stages")[0]
    assert results_table.count("| teacher |") == 1
    stamps = {s: (tmp_path / "p" / s / "result.json").stat().st_mtime for s in ("teacher", "baseline", "distill")}
    assert main(args) == 0
    assert stamps == {s: (tmp_path / "p" / s / "result.json").stat().st_mtime for s in stamps}


def test_acclimate_and_distill_cli_print_results(tmp_path, capsys):
    common = ["-c", DEMO] + [x for item in SHRINK for x in ("--set", item)]
    assert main(["train", "--model", "teacher", *common, "--run-dir", str(tmp_path / "t")]) == 0
    assert main(["train", *common, "--run-dir", str(tmp_path / "b")]) == 0
    assert (
        main(
            [
                "acclimate",
                *common,
                "--run-dir",
                str(tmp_path / "a"),
                "--set",
                f"teacher.checkpoint={tmp_path / 't/checkpoints/last.pt'}",
                "--set",
                f"acclimate.baseline_checkpoint={tmp_path / 'b/checkpoints/last.pt'}",
            ]
        )
        == 0
    )
    assert (tmp_path / "a/acclimated.pt").is_file()
    assert (
        main(
            [
                "distill",
                *common,
                "--run-dir",
                str(tmp_path / "d"),
                "--set",
                f"distill.acclimated_checkpoint={tmp_path / 'a/acclimated.pt'}",
            ]
        )
        == 0
    )
    # The distilled student ships as a safetensors model folder and as last.pt, both without the KD adapters.
    from disdepth.checkpoint import read_checkpoint

    for shipped in (tmp_path / "d/model", tmp_path / "d/checkpoints/last.pt"):
        state = read_checkpoint(shipped)
        assert state["kind"].value == "student" and not any(k.startswith("adapters.") for k in state["model"])
    assert disdepth.load(tmp_path / "d/model").predict(np.zeros((32, 32, 3), np.uint8)).shape == (32, 32)
    # The same distillation with unlabelled images (an rgb-only CSV) mixed into its epochs.
    from PIL import Image

    (tmp_path / "u").mkdir()
    for i in range(3):
        Image.new("RGB", (32, 32), (40 * i, 90, 200)).save(tmp_path / "u" / f"frame{i}.png")
    (tmp_path / "u/index.csv").write_text("rgb\n" + "".join(f"frame{i}.png\n" for i in range(3)))
    unlabelled = ["--set", f"distill.unlabelled_list={tmp_path / 'u/index.csv'}", "--set", "train.steps=2"]
    accl = ["--set", f"distill.acclimated_checkpoint={tmp_path / 'a/acclimated.pt'}"]
    capsys.readouterr()
    assert main(["distill", *common, *accl, *unlabelled, "--run-dir", str(tmp_path / "du")]) == 0
    log = capsys.readouterr().err  # the console log (logging.basicConfig on stderr)
    assert "3 unlabelled images from" in log and "4 of every 8 samples" in log  # 4 labelled train scenes
    assert (tmp_path / "du/model/model.safetensors").is_file()
    # A missing acclimated checkpoint is a clear error, not a traceback.
    assert main(["distill", *common, "--run-dir", str(tmp_path / "e")]) == 2
    assert "acclimated_checkpoint" in capsys.readouterr().err
