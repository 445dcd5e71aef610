"""Nothing disdepth loads can run code: a malicious pickle is refused by every entry point that reads a checkpoint,
and the unsafe path needs ``--trust-checkpoint``. Deployable models also ship as safetensors folders."""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import pytest
import torch
from tiny_runs import TINY_UNET  # tests/tiny_runs.py

import disdepth
from disdepth.checkpoint import (
    CheckpointKind,
    UnsafeCheckpointError,
    read_checkpoint,
    rng_state,
    save_checkpoint,
    set_rng_state,
    trust_pickled_checkpoints,
)
from disdepth.cli import main
from disdepth.config import load_config, to_dict
from disdepth.models.student import build_student

TINY = TINY_UNET


class Payload:
    """Unpickling this writes a file: what an attacker's checkpoint would do (here harmlessly)."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.write_text, (self.marker, "code ran"))


@pytest.fixture(autouse=True)
def untrusted():
    trust_pickled_checkpoints(False)
    yield
    trust_pickled_checkpoints(False)


@pytest.fixture
def evil(tmp_path: Path) -> tuple[Path, Path]:
    """(malicious checkpoint, marker file the payload would create). The config is real, so only the pickle fails."""
    marker = tmp_path / "pwned.txt"
    cfg = load_config(overrides=TINY)
    state = {"kind": "student", "model": build_student(cfg.model).state_dict(), "config": to_dict(cfg),
             "payload": Payload(marker)}  # fmt: skip
    path = tmp_path / "evil.pt"
    torch.save(state, path)
    return path, marker


def _image(tmp_path: Path) -> Path:
    from PIL import Image

    path = tmp_path / "photo.png"
    Image.fromarray(np.full((40, 48, 3), 120, np.uint8)).save(path)
    return path


def _commands(tmp_path: Path, ckpt: Path) -> dict[str, list[str]]:
    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    (run / "checkpoints" / "last.pt").write_bytes(ckpt.read_bytes())
    (run / "config.yaml").write_text(
        "model:\n  encoder: test_efficientnet\n  pretrained: none\n  decoder: unet\n"
        "  decoder_channels: [16, 8, 8, 8, 8]\n"
    )
    sizes = ["data.synthetic.n_train=2", "data.synthetic.n_val=1", "data.synthetic.height=32",
             "data.synthetic.width=32", "data.batch_size=1"]  # fmt: skip
    tiny_data = [x for item in sizes for x in ("--set", item)]
    return {
        "predict": ["predict", str(ckpt), str(_image(tmp_path)), "--out", str(tmp_path / "out")],
        "eval": ["eval", "--checkpoint", str(ckpt), *tiny_data],
        "export": ["export", str(ckpt), "--out", str(tmp_path / "m.onnx")],
        "bench": ["bench", "--checkpoint", str(ckpt), "--resolutions", "32x32", "--runs", "1"],
        "train --resume": ["train", "--run-dir", str(run), "--resume", "--set", "train.device=cpu"],
        "teacher.checkpoint": ["distill", "--run-dir", str(tmp_path / "d"), *tiny_data, "--set",
                               "distill.feature_target=raw", "--set", "teacher.kind=hybrid", "--set",
                               "teacher.name=test_efficientnet", "--set", f"teacher.checkpoint={ckpt}"],  # fmt: skip
        "acclimated checkpoint": ["distill", "--run-dir", str(tmp_path / "d2"), *tiny_data, "--set",
                                  f"distill.acclimated_checkpoint={ckpt}"],  # fmt: skip
    }


@pytest.mark.parametrize(
    "entry",
    ["predict", "eval", "export", "bench", "train --resume", "teacher.checkpoint", "acclimated checkpoint"],
)
def test_a_malicious_pickle_runs_no_code_through_any_command(entry, evil, tmp_path, capfd):
    ckpt, marker = evil
    rc = main(_commands(tmp_path, ckpt)[entry])
    err = capfd.readouterr().err
    assert rc == 2, err
    assert not marker.exists(), f"{entry}: the payload ran"
    named = "last.pt" if entry == "train --resume" else ckpt.name  # the resumed run's copy of the file
    assert "Traceback" not in err and named in err and "--trust-checkpoint" in err


def test_a_malicious_pickle_runs_no_code_through_the_python_api(evil):
    ckpt, marker = evil
    with pytest.raises(UnsafeCheckpointError, match="unpickling can run code"):
        disdepth.load(ckpt)
    with pytest.raises(UnsafeCheckpointError):
        read_checkpoint(ckpt)
    assert not marker.exists()


def test_trust_checkpoint_is_the_only_way_to_the_full_unpickler(evil, tmp_path, capfd):
    """An old-format checkpoint (numpy RNG state pickled) loads only with the flag, and then it loads."""
    cfg = load_config(overrides=TINY)
    old = tmp_path / "old.pt"
    legacy = {"kind": "student", "model": build_student(cfg.model).state_dict(), "config": to_dict(cfg),
              "rng": {"numpy": np.random.get_state()}}  # fmt: skip
    torch.save(legacy, old)
    args = ["predict", str(old), str(_image(tmp_path)), "--out", str(tmp_path / "o")]
    assert main(args) == 2 and "--trust-checkpoint" in capfd.readouterr().err
    assert main([*args, "--trust-checkpoint"]) == 0
    assert (tmp_path / "o" / "photo.png").is_file()


def test_rng_states_round_trip_as_tensors(tmp_path):
    """Our own training checkpoints need no pickle: RNG states are stored as tensors and plain values."""
    state = rng_state()
    expected = (random.random(), float(np.random.rand()), torch.rand(1).item())
    path = save_checkpoint({"model": {}, "config": {}, "training": {"rng": state}}, tmp_path / "r.pt")
    loaded = torch.load(path, weights_only=True)  # would raise on any non-allowlisted object
    set_rng_state(loaded["training"]["rng"])
    assert (random.random(), float(np.random.rand()), torch.rand(1).item()) == expected


def test_a_training_run_writes_a_safetensors_model_folder_that_every_loader_reads(tmp_path):
    rc = main(["train", "--run-dir", str(tmp_path / "r"), "--set", "train.steps=2", "--set", "train.device=cpu",
               "--set", "data.synthetic.n_train=4", "--set", "data.synthetic.n_val=2", "--set",
               "data.synthetic.height=32", "--set", "data.synthetic.width=32", "--set", "data.batch_size=2",
               "--set", "data.num_workers=0", *[x for t in TINY for x in ("--set", t)]])  # fmt: skip
    assert rc == 0
    folder = tmp_path / "r" / "model"
    assert {p.name for p in folder.iterdir()} == {"config.json", "model.safetensors", "README.md"}
    state = read_checkpoint(folder)
    assert state["kind"] == CheckpointKind.STUDENT and state["input_spec"]["max_depth"] == 10.0
    image = np.zeros((32, 32, 3), np.uint8)
    from_folder = disdepth.load(folder).predict(image)
    from_pt = disdepth.load(tmp_path / "r" / "checkpoints" / "last.pt").predict(image)
    assert np.allclose(from_folder, from_pt)
    assert main(["predict", str(folder), str(_image(tmp_path)), "--out", str(tmp_path / "p")]) == 0
    assert main(["export", str(folder), "--out", str(tmp_path / "m.onnx"), "--size", "32x32"]) == 0


def test_what_a_killed_writer_leaves_is_removed_files_and_folders(tmp_path):
    """A half-written checkpoint file and a half-written model folder are both cleared at the next start."""
    from disdepth.checkpoint import remove_stale_temp_files

    (tmp_path / ".last.pt.tmp.123").write_bytes(b"half")
    (tmp_path / ".model.tmp.123").mkdir()
    (tmp_path / ".model.tmp.123" / "model.safetensors").write_bytes(b"half")
    (tmp_path / ".model.old.123").mkdir()
    (tmp_path / "last.pt").write_bytes(b"kept")
    assert len(remove_stale_temp_files(tmp_path)) == 3
    assert [p.name for p in tmp_path.iterdir()] == ["last.pt"]


def test_a_checkpoint_saved_before_the_decoder_keys_existed_loads_as_it_was_trained(tmp_path):
    """decoder_upsample and decoder_conv_first_strides came later, with other defaults (nearest; the conv-first levels
    may change): a checkpoint whose config lacks them was trained bilinear, every level upsample-first, and loads so."""
    from disdepth.deploy.weights import load_model

    cfg = load_config(overrides=[*TINY, "model.decoder_upsample=nearest", "model.decoder_conv_first_strides=[4,2]"])
    old_cfg = load_config(overrides=[*TINY, "model.decoder_upsample=bilinear"])
    for saved_cfg, drop_keys, want in (
        (cfg, False, ("nearest", [4, 2], {"upsample_first", "conv_first"})),
        (old_cfg, True, ("bilinear", [], {"upsample_first"})),
    ):
        saved_config = to_dict(saved_cfg)
        if drop_keys:
            del saved_config["model"]["decoder_upsample"], saved_config["model"]["decoder_conv_first_strides"]
        state = {"kind": "student", "model": build_student(saved_cfg.model).state_dict(), "config": saved_config}
        path = save_checkpoint(state, tmp_path / f"{want[0]}.pt")
        loaded, loaded_cfg = load_model(path)  # a strict state-dict load: the block structure must match
        upsample, conv_first_strides, orders = want
        assert (loaded_cfg.model.decoder_upsample, loaded_cfg.model.decoder_conv_first_strides) == want[:2]
        assert {block.upsample for block in loaded.decoder.blocks} == {upsample}
        assert {block.order for block in loaded.decoder.blocks} == orders


def test_checkpoints_saved_before_the_lite_default_load_as_they_were_trained(tmp_path):
    """Since 0.5 the default decoder is the lite one with nearest upsampling. A checkpoint whose config lacks
    ``model.decoder`` (saved before the key existed) is a U-Net and loads as one; a lite checkpoint without
    ``model.lite_upsample`` was trained bilinear and loads so; a checkpoint with both keys loads as saved."""
    from disdepth.deploy.weights import load_model

    lite = ["model.encoder=test_efficientnet", "model.pretrained=none", "model.lite_channels=[16,8,8]"]
    cases = (
        (load_config(overrides=TINY), "decoder", ("unet", "nearest")),
        (load_config(overrides=[*lite, "model.lite_upsample=bilinear"]), "lite_upsample", ("lite", "bilinear")),
        (load_config(overrides=lite), None, ("lite", "nearest")),
    )
    for i, (saved_cfg, dropped, want) in enumerate(cases):
        saved_config = to_dict(saved_cfg)
        if dropped:
            del saved_config["model"][dropped]
        state = {"kind": "student", "model": build_student(saved_cfg.model).state_dict(), "config": saved_config}
        loaded, loaded_cfg = load_model(save_checkpoint(state, tmp_path / f"{i}.pt"))  # strict: same structure
        assert (loaded_cfg.model.decoder, loaded_cfg.model.lite_upsample) == want
        if want[0] == "lite":
            assert {block.upsample for block in loaded.decoder.blocks} == {want[1]}
