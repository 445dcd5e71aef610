"""Teacher-target store (tasks/target_store.py, pipeline/teach.py, ``disdepth teach``): the teacher once per view,
distillation reads the store instead of running it, restarts keep finished shards, damaged shards are recomputed and
never read, another teacher's store is refused, and two gloo processes write what one writes."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp
from test_teacher_cache import count_rows, draw, targets_for, tiny_setup
from tiny_runs import free_port, join_as_rank

from disdepth.checkpoint import save_checkpoint
from disdepth.cli import main
from disdepth.config import load_config
from disdepth.engine.dist import DistInfo
from disdepth.pipeline.stages import build_distillation
from disdepth.pipeline.teach import teach_stage
from disdepth.tasks.acclimation import acclimated_state
from disdepth.tasks.target_store import StoreError, TargetStore, write_store
from disdepth.tasks.teacher_cache import frame_source

SETTINGS = ("distill.attention=saliency", "distill.levels=[8,16]")  # scores are gradients: the hardest case to store


def setup(tmp_path: Path, *extra: str):
    """The tiny student + acclimated teacher of the cache tests (4 synthetic frames, crops and flips on), its
    acclimated checkpoint written where ``distill.acclimated_checkpoint`` points."""
    cfg, student, acclimated, dataset = tiny_setup(*SETTINGS, *extra)
    path = tmp_path / "acclimated.pt"
    if not path.is_file():
        save_checkpoint(acclimated_state(acclimated, cfg, {}), path)
    cfg.distill.acclimated_checkpoint = str(path)
    return cfg, student, acclimated, dataset


def files(store: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(store.iterdir()) if p.is_file()}


def test_distillation_reads_the_store_and_the_teacher_never_runs(tmp_path):
    cfg, student, acclimated, dataset = setup(tmp_path)
    store = tmp_path / "store"
    out = teach_stage(cfg, store, dataset, DistInfo.single(), views_per_shard=3, batch_size=2)
    # 4 frames x (frame, mirror image): each view once, in ceil(8 / 3) shards
    assert (out["views"], out["views_computed"], out["shards"], out["computed_shards"]) == (8, 8, 3, 3)
    from disdepth.tasks.target_store import _umask

    assert (store / "shard-00000.safetensors").stat().st_mode & 0o777 == 0o666 & ~_umask()  # not safetensors' 0600
    cfg.distill.target_store = str(store)
    task = build_distillation(cfg, dataset)
    rows = count_rows(task.targets.teacher)
    memory = targets_for(cfg, student, acclimated, True, frame_source(dataset))
    for epoch in range(3):  # new crops and flips of every frame each epoch
        batch = draw(dataset, epoch, [0, 1, 2, 3])
        got, want = task.targets(batch), memory(batch)
        for g, w in zip(got["features"] + got["attention"], want["features"] + want["attention"], strict=True):
            torch.testing.assert_close(g, w, atol=2e-3, rtol=2e-3)  # float16 storage in both
        torch.testing.assert_close(got["depth"], want["depth"], atol=2e-3, rtol=2e-3)
    assert rows == [] and task.targets.views_computed == 0  # the teacher never ran
    assert task.targets.cache == {} and task.targets.store.reads == 12  # nothing read from disk is kept in memory
    losses = task(draw(dataset, 5, [0, 1]))
    assert torch.isfinite(losses["loss"])


class Interrupt(Exception):
    pass


def test_a_restart_keeps_finished_shards_and_ends_byte_identical(tmp_path, monkeypatch):
    import disdepth.pipeline.teach as teach

    cfg, *_, dataset = setup(tmp_path)
    whole, cut = tmp_path / "whole", tmp_path / "cut"
    teach_stage(cfg, whole, dataset, DistInfo.single(), views_per_shard=3, batch_size=2)

    def killed_after_the_first_shard(*args):
        *head, progress = args

        def stop(k: int) -> None:
            progress(k)
            raise Interrupt(f"killed after shard {k}")

        return write_store(*head, stop)

    monkeypatch.setattr(teach, "write_store", killed_after_the_first_shard)
    with pytest.raises(Interrupt):
        teach_stage(cfg, cut, dataset, DistInfo.single(), views_per_shard=3, batch_size=2)
    monkeypatch.undo()
    first = (cut / "shard-00000.safetensors").stat().st_mtime_ns
    assert sorted(p.name for p in cut.glob("shard-*")) == ["shard-00000.done", "shard-00000.safetensors"]
    with pytest.raises(StoreError, match="2 of 3 shards are unfinished .* run disdepth teach again"):
        TargetStore(cut)
    out = teach_stage(cfg, cut, dataset, DistInfo.single(), views_per_shard=3, batch_size=2)
    assert (out["skipped_shards"], out["computed_shards"], out["views_computed"]) == (1, 2, 5)
    assert (cut / "shard-00000.safetensors").stat().st_mtime_ns == first
    assert files(cut) == files(whole)


def test_a_damaged_shard_is_refused_then_recomputed(tmp_path):
    cfg, *_, dataset = setup(tmp_path)
    store = tmp_path / "store"
    teach_stage(cfg, store, dataset, DistInfo.single(), views_per_shard=3, batch_size=2)
    before = files(store)
    shard = store / "shard-00001.safetensors"
    shard.write_bytes(before[shard.name][: len(before[shard.name]) // 2])  # a truncated copy
    with pytest.raises(StoreError, match="1 of 3 shards are unfinished or damaged \\(shard-00001\\)"):
        TargetStore(store)
    shard.write_bytes(before[shard.name][:-1] + b"x")  # same size, one byte changed: the hash catches it
    out = teach_stage(cfg, store, dataset, DistInfo.single(), views_per_shard=3, batch_size=2)
    assert (out["skipped_shards"], out["computed_shards"]) == (2, 1)
    assert files(store) == before


def test_a_store_of_another_teacher_or_setting_is_refused_naming_what_differs(tmp_path):
    cfg, _, acclimated, dataset = setup(tmp_path)
    store = tmp_path / "store"
    teach_stage(cfg, store, dataset, DistInfo.single(), views_per_shard=3, batch_size=2)
    cfg.distill.target_store = str(store)
    cfg.distill.attention = "magnitude"
    with pytest.raises(StoreError, match="attention: store has 'saliency', this run wants 'magnitude'"):
        build_distillation(cfg, dataset)
    cfg.distill.attention, cfg.distill.levels = "saliency", [16, 32]
    with pytest.raises(StoreError, match=r"levels: store has \[8, 16\], this run wants \[16, 32\]"):
        build_distillation(cfg, dataset)
    cfg.distill.levels = [8, 16]
    with torch.no_grad():  # another acclimation of the same architecture
        next(acclimated.parameters()).add_(0.01)
    other = tmp_path / "other.pt"
    save_checkpoint(acclimated_state(acclimated, cfg, {}), other)
    retrained = load_config(overrides=[f"distill.acclimated_checkpoint={other}"], base=copy.deepcopy(cfg))
    with pytest.raises(StoreError, match="teacher_sha256: store has '[0-9a-f]{64}', this run wants"):
        build_distillation(retrained, dataset)
    cfg.distill.target_store = ""
    with pytest.raises(StoreError, match="plans other views \\(another dataset, flips or shard size\\)"):
        teach_stage(cfg, store, dataset, DistInfo.single(), views_per_shard=4)


def test_the_cli_writes_a_store_and_names_a_missing_one(tmp_path, capsys):
    cfg, *_ = setup(tmp_path)
    from tiny_runs import TINY_PAIR

    sets = [*TINY_PAIR, *SETTINGS, "data.synthetic.n_train=2", "data.synthetic.height=64", "data.synthetic.width=96",
            f"distill.acclimated_checkpoint={cfg.distill.acclimated_checkpoint}"]  # fmt: skip
    args = ["teach", "--store", str(tmp_path / "s"), "--views-per-shard", "2", "--threads", "1"]
    assert main([*args, *(a for s in sets for a in ("--set", s))]) == 0
    assert "4 views in 2 shards; teacher runs this time: 4" in capsys.readouterr().out
    missing = tmp_path / "nowhere"
    rc = main(["distill", "--run-dir", str(tmp_path / "d"), *(a for s in sets for a in ("--set", s)),
               "--set", f"distill.target_store={missing}", "--set", "train.steps=1"])  # fmt: skip
    err = capsys.readouterr().err
    assert rc == 2 and f"{missing}: not a teacher-target store" in err and "Traceback" not in err


def _worker(rank: int, world_size: int, port: int, store: str, acclimated: str) -> None:
    join_as_rank(rank, world_size, port)
    torch.set_num_threads(1)
    from test_teacher_cache import tiny_setup  # noqa: PLC0415 - child process import

    from disdepth.engine import dist

    cfg, _, _, dataset = tiny_setup(*SETTINGS)
    cfg.distill.acclimated_checkpoint = acclimated
    info = dist.setup("cpu")
    try:
        teach_stage(cfg, store, dataset, info, views_per_shard=3, batch_size=2)
    finally:
        dist.cleanup()


def test_two_gloo_processes_write_the_store_one_process_writes(tmp_path):
    torch.set_num_threads(1)  # the same kernels as the one-thread workers: byte-identical outputs
    cfg, *_, dataset = setup(tmp_path)
    one, two = tmp_path / "one", tmp_path / "two"
    out = teach_stage(cfg, one, dataset, DistInfo.single(), views_per_shard=3, batch_size=2)
    mp.spawn(_worker, args=(2, free_port(), str(two), cfg.distill.acclimated_checkpoint), nprocs=2, join=True)
    assert out["views_computed"] == 8 and files(two) == files(one)


def test_label_free_from_a_folder_of_images_reads_the_store(tmp_path):
    """``data.train_list`` may be a folder of images (no index): label-free distillation learns the teacher's depth
    from the store, and the teacher does not run."""
    import numpy as np
    from PIL import Image
    from tiny_runs import TINY_PAIR

    from disdepth.data.build import build_dataset

    photos = tmp_path / "photos"
    for i, rel in enumerate(["a.jpg", "b.png", "trip/c.jpg", "trip/day2/d.jpg"]):
        (photos / rel).parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(np.random.default_rng(i).integers(0, 255, (48, 64, 3), dtype=np.uint8)).save(photos / rel)
    (photos / "notes.txt").write_text("not an image")
    cfg = load_config(overrides=[
        *TINY_PAIR, "data.dataset=csv", f"data.train_list={photos}", "data.require_depth=false",
        "data.augment.crop_height=32", "data.augment.crop_width=48", "distill.feature_target=none",
        "distill.response_weight=1", "data.batch_size=2",
    ])  # fmt: skip
    dataset = build_dataset(cfg, "train")
    assert [r.id for r in dataset.records] == ["a", "b", "trip_c", "trip_day2_d"]
    store = tmp_path / "store"
    out = teach_stage(cfg, store, dataset, DistInfo.single(), views_per_shard=4)
    assert (out["views"], out["views_computed"], out["shards"]) == (8, 8, 2)  # 4 photos and their mirror images
    cfg.distill.target_store = str(store)
    task = build_distillation(cfg, dataset)
    losses = task(draw(dataset, 0, [0, 1, 2, 3]))
    assert torch.isfinite(losses["loss"]) and task.targets.views_computed == 0 and task.targets.store.reads == 4
    with pytest.raises(ValueError, match="a folder holds images only, no depth; set data.require_depth=false"):
        build_dataset(load_config(overrides=["data.dataset=csv", f"data.train_list={photos}"]), "train")


def test_a_killed_teach_process_resumes_to_the_same_store(tmp_path):
    """SIGKILL during ``disdepth teach`` (no clean-up runs): the rerun keeps every finished shard and the final
    store equals one written without interruption."""
    import signal
    import subprocess
    import sys
    import time

    from tiny_runs import TINY_PAIR

    cfg, *_ = setup(tmp_path)
    sets = [*TINY_PAIR, *SETTINGS, "data.synthetic.n_train=24", "data.synthetic.height=64", "data.synthetic.width=96",
            f"distill.acclimated_checkpoint={cfg.distill.acclimated_checkpoint}"]  # fmt: skip

    def teach(store: Path) -> list[str]:
        args = ["teach", "--store", str(store), "--views-per-shard", "1", "--batch-size", "1", "--threads", "1"]
        return [sys.executable, "-m", "disdepth", *args, *(a for s in sets for a in ("--set", s))]

    whole, killed = tmp_path / "whole", tmp_path / "killed"
    subprocess.run(teach(whole), check=True, capture_output=True)
    proc = subprocess.Popen(teach(killed), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while len(list(killed.glob("*.done"))) < 3 and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    finished = {p.name: p.stat().st_mtime_ns for p in killed.glob("shard-*.safetensors")
                if (killed / p.name.replace(".safetensors", ".done")).is_file()}  # fmt: skip
    assert 3 <= len(finished) < 48, "the kill must land mid-pass"
    out = subprocess.run(teach(killed), check=True, capture_output=True, text=True).stdout
    assert f"teacher runs this time: {48 - len(finished)}" in out
    assert all((killed / name).stat().st_mtime_ns == ns for name, ns in finished.items())
    assert {k: v for k, v in files(killed).items() if not k.startswith(".")} == files(whole)
