"""Hostile input through the real CLI, one fast case per category of ``tools/hostile_inputs.py``: each exits
non-zero without a traceback and its one line names the file or key. Five cases also go through the runner's own
subprocess and classification code, so the benchmark's verdicts stay honest."""

from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.multiprocessing as mp
from PIL import Image
from tiny_runs import TINY_UNET, free_port, join_as_rank

from disdepth import cli
from disdepth.cli import main
from disdepth.config import load_config, to_dict
from disdepth.data import io
from disdepth.data.build import build_dataset
from disdepth.data.io import DataError
from disdepth.engine import dist
from disdepth.models.student import build_student

ROOT = Path(__file__).resolve().parents[1]
TINY = TINY_UNET


def _sets(items: list[str]) -> list[str]:
    return [x for item in items for x in ("--set", item)]


def _frames(folder: Path, n: int = 2) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    lines = ["rgb,depth,depth_scale"]
    for i in range(n):
        Image.fromarray(rng.integers(0, 255, (64, 64, 3), dtype=np.uint8)).save(folder / f"rgb_{i}.png")
        Image.fromarray(rng.integers(500, 5000, (64, 64), dtype=np.uint16)).save(folder / f"depth_{i}.png")
        lines.append(f"rgb_{i}.png,depth_{i}.png,1000")
    (folder / "index.csv").write_text("\n".join(lines) + "\n")
    return folder / "index.csv"


def _one_line_error(capsys, code: int, *names: str) -> str:
    err = capsys.readouterr().err
    assert code != 0
    assert "Traceback" not in err
    last = err.strip().splitlines()[-1]
    assert any(n in last for n in names), last
    return last


@pytest.fixture
def student_ckpt(tmp_path: Path) -> Path:
    cfg = load_config(overrides=TINY)
    path = tmp_path / "student.pt"
    torch.save({"kind": "student", "model": build_student(cfg.model).state_dict(), "config": to_dict(cfg)}, path)
    return path


# --- data ---------------------------------------------------------------------------------------------------------


def test_truncated_depth_in_training_names_the_file(tmp_path, capsys):
    csv = _frames(tmp_path / "d")
    data = (tmp_path / "d" / "depth_1.png").read_bytes()
    (tmp_path / "d" / "depth_1.png").write_bytes(data[: len(data) // 2])
    code = main(["train", "--run-dir", str(tmp_path / "run"), *_sets([*TINY, "train.device=cpu", "train.steps=1",
                 "data.dataset=csv", f"data.train_list={csv}", f"data.test_list={csv}", "data.batch_size=2",
                 "data.num_workers=0", "data.augment.enabled=false"])])  # fmt: skip
    _one_line_error(capsys, code, "depth_1.png")


def test_frame_too_large_for_the_network_names_the_file(tmp_path, monkeypatch):
    csv = _frames(tmp_path / "d")
    monkeypatch.setattr(io, "MAX_FRAME_PIXELS", 48 * 48)  # stands in for an 8000 x 8000 frame
    cfg = load_config(overrides=["data.dataset=csv", f"data.test_list={csv}"])
    with pytest.raises(DataError) as info:
        build_dataset(cfg, "test")[1]
    assert info.value.problem == "too_large" and "rgb_1.png" in str(info.value) and "crop_height" in str(info.value)
    cropped = load_config(overrides=["data.dataset=csv", f"data.train_list={csv}", "data.augment.crop_height=32",
                                     "data.augment.crop_width=32"])  # fmt: skip
    assert build_dataset(cropped, "train")[1]["image"].shape[-2:] == (32, 32)  # a crop makes it fit


# --- config -------------------------------------------------------------------------------------------------------


def test_unknown_key_and_list_yaml_name_key_and_file(tmp_path, capsys):
    _one_line_error(capsys, main(["train", "--set", "model.encodr=x"]), "model.encodr")
    bad = tmp_path / "list.yaml"
    bad.write_text("- model\n- train\n")
    _one_line_error(capsys, main(["train", "-c", str(bad)]), "list.yaml")


# --- checkpoints --------------------------------------------------------------------------------------------------


def test_truncated_and_shape_mismatched_checkpoints(tmp_path, capsys, student_ckpt):
    photo = tmp_path / "p.png"
    Image.fromarray(np.zeros((32, 32, 3), np.uint8)).save(photo)
    cut = tmp_path / "cut.pt"
    cut.write_bytes(student_ckpt.read_bytes()[:1000])
    _one_line_error(capsys, main(["predict", str(cut), str(photo), "--out", str(tmp_path / "o")]), "cut.pt")
    state = torch.load(student_ckpt, weights_only=True)
    key = next(k for k, v in state["model"].items() if v.ndim == 4)
    state["model"][key] = torch.zeros(*(d + 1 for d in state["model"][key].shape))
    torch.save(state, tmp_path / "shapes.pt")
    argv = ["bench", "--checkpoint", str(tmp_path / "shapes.pt"), "--resolutions", "32x32", "--runs", "1"]
    last = _one_line_error(capsys, main(argv), "shapes.pt")
    assert key in last
    torch.save({**torch.load(student_ckpt, weights_only=True), "config": {"modle": {}}}, tmp_path / "cfg.pt")
    last = _one_line_error(capsys, main(["eval", "--checkpoint", str(tmp_path / "cfg.pt")]), "cfg.pt")
    assert "modle" in last


# --- command line -------------------------------------------------------------------------------------------------


def test_bad_sizes_name_the_flag(capsys):
    _one_line_error(capsys, main(["bench", "--resolutions", "0x0"]), "--resolutions")


def test_cli_turns_os_errors_interrupts_and_peer_failures_into_one_line(monkeypatch, capsys):
    def fails_with(exc: BaseException):
        class Module:
            @staticmethod
            def add_arguments(parser):
                pass

            @staticmethod
            def run(args):
                raise exc

        monkeypatch.setattr(cli.importlib, "import_module", lambda name: Module)

    fails_with(IsADirectoryError(21, "Is a directory", "/tmp/some_folder"))
    assert main(["bench"]) == 2
    assert capsys.readouterr().err.strip() == "disdepth: error: /tmp/some_folder: Is a directory"
    fails_with(KeyboardInterrupt())
    assert main(["bench"]) == 130
    assert capsys.readouterr().err.strip() == "disdepth: interrupted"
    fails_with(dist.PeerRankFailed("rank 1 failed: ..."))
    assert main(["bench"]) == 2
    assert capsys.readouterr().err == ""  # the failing rank printed the message


# --- distributed --------------------------------------------------------------------------------------------------


def _rank(rank: int, port: int, out: str) -> None:
    join_as_rank(rank, 2, port)
    torch.set_num_threads(1)
    dist.setup("cpu")
    try:
        error = DataError("/data/rgb_1.png", "unreadable image", "unreadable") if rank == 1 else None
        dist.raise_if_any_failed(error)
        result = "no error"
    except Exception as exc:  # what each rank would hand to the CLI
        result = f"{type(exc).__name__}: {exc}"
    finally:
        dist.cleanup()
    Path(out, f"{rank}.txt").write_text(result)


def test_one_failing_rank_stops_both_without_a_hang(tmp_path):
    mp.spawn(_rank, args=(free_port(), str(tmp_path)), nprocs=2, join=True)
    assert (tmp_path / "1.txt").read_text().startswith("DataError: /data/rgb_1.png")
    assert (tmp_path / "0.txt").read_text().startswith("PeerRankFailed: rank 1 failed: DataError")
    assert dist.PeerRankFailed.quiet


# --- the runner's own classification -------------------------------------------------------------------------------


def _runner():
    spec = importlib.util.spec_from_file_location("hostile_inputs", ROOT / "tools" / "hostile_inputs.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["hostile_inputs"] = module
    spec.loader.exec_module(module)
    return module


def test_runner_classifies_five_cases_through_the_real_cli(tmp_path, student_ckpt):
    h = _runner()
    csv = _frames(tmp_path / "d")
    (tmp_path / "d" / "rgb_1.png").unlink()
    (tmp_path / "list.yaml").write_text("- a\n")
    cases = [
        h.Case(
            "data",
            "missing rgb / data check",
            ["data", "check", *_sets(["data.dataset=csv", f"data.train_list={csv}"])],
            "error",
            ("rgb_1.png",),
            in_report=True,
        ),  # fmt: skip
        h.Case("config", "unknown key", ["train", "--set", "model.encodr=x"], "error", ("model.encodr",)),
        h.Case("config", "YAML list", ["train", "-c", str(tmp_path / "list.yaml")], "error", ("list.yaml",)),
        h.Case("command line", "bench 0x0", ["bench", "--resolutions", "0x0"], "error", ("--resolutions",)),
        h.Case("checkpoint", "missing", ["predict", "nope.pt", "x.png", "--out", "o"], "error", ("nope.pt", "x.png")),
    ]
    env = {"PYTHONPATH": str(ROOT / "src") + os.pathsep + os.environ.get("PYTHONPATH", "")}
    for case in cases:
        case.env = env
        record = h.run_case(case, tmp_path)
        assert record["verdict"] == "clear error", record
        assert record["exit_code"] != 0 and record["command"]
    # the verdict rules themselves
    bad = h.Case("x", "bad", [], "error", ("file.png",))
    assert (
        h.classify(bad, h.Result(1, "", "Traceback (most recent call last):\n  boom\nValueError: x", 1.0))[0] == "crash"
    )
    assert h.classify(bad, h.Result(0, "", "", 1.0))[0] == "silent"
    assert h.classify(bad, h.Result(2, "", "disdepth: error: something", 1.0))[0] == "unclear error"
    assert h.classify(bad, h.Result(-9, "", "", 1.0))[0] == "crash"
    assert h.classify(bad, h.Result(0, "", "", 1.0, timed_out=True))[0] == "crash"
    good = h.Case("x", "good", [], "ok", check=lambda r: None if "abs_rel" in r.stdout else "no metrics")
    assert h.classify(good, h.Result(0, "abs_rel 0.1", "", 1.0))[0] == "ok"
    assert h.classify(good, h.Result(0, "", "", 1.0)) == ("silent", "no metrics")


def test_config_files_and_keys_that_are_wrong_in_shape_get_one_line(tmp_path, capsys):
    """Non-UTF-8 YAML, a YAML syntax error (file:line:column), an empty key part, out-of-range sizes."""
    from disdepth.cli import main

    latin = tmp_path / "latin.yaml"
    latin.write_bytes("name: caf\xe9\n".encode("latin-1"))
    broken = tmp_path / "broken.yaml"
    broken.write_text("model:\n  encoder: [resnet18\n")
    cases = [
        (["train", "-c", str(latin), "--print-config"], "not UTF-8"),
        (["train", "-c", str(broken), "--print-config"], "broken.yaml:"),
        (["train", "--set", "model..encoder=resnet18", "--print-config"], "empty part"),
        (["train", "--set", "model.decoder_channels=[1048576]", "--print-config"], "model.decoder_channels"),
        (["train", "--set", "train.betas=[0.9, 1.5]", "--print-config"], "train.betas"),
    ]
    for args, expected in cases:
        assert main(args) == 2, args
        err = capsys.readouterr().err
        assert expected in err and "Traceback" not in err and err.count("\n") == 1, (args, err)
