"""``distill`` on two CPU processes over gloo: the student is DDP-wrapped, the teacher side is not, and both ranks
end with identical student weights while the frozen acclimated teacher is unchanged."""

from __future__ import annotations

import os

import torch
import torch.multiprocessing as mp
from tiny_runs import free_port, join_as_rank


def _worker(rank: int, world_size: int, port: int, out_dir: str, acclimated: str) -> None:
    join_as_rank(rank, world_size, port)
    torch.set_num_threads(1)
    from test_distill_core import TINY  # noqa: PLC0415 - child process import
    from test_engine import RampDataset  # noqa: PLC0415

    from disdepth.config import load_config
    from disdepth.engine import dist
    from disdepth.engine.loop import train
    from disdepth.pipeline.stages import build_distillation

    cfg = load_config(
        overrides=[
            *TINY,
            "train.steps=3",
            "train.eval_every=0",
            "train.checkpoint_every=0",
            "data.batch_size=2",
            "data.num_workers=0",
            f"distill.acclimated_checkpoint={acclimated}",
        ]
    )
    info = dist.setup("cpu")
    try:
        task = build_distillation(cfg)
        teacher_before = {k: v.clone() for k, v in task.targets.teacher.state_dict().items()}
        train(cfg, os.path.join(out_dir, "run"), task, RampDataset(8), info=info)
        wrapped = type(task.model).__name__
        teacher_same = all(torch.equal(v, task.targets.teacher.state_dict()[k]) for k, v in teacher_before.items())
        torch.save(
            {
                "state": task.model.module.state_dict(),
                "wrapped": wrapped,
                "teacher_same": teacher_same,
                "teacher_wrapped": type(task.targets.teacher).__name__,
            },
            os.path.join(out_dir, f"{rank}.pt"),
        )
    finally:
        dist.cleanup()


def test_two_process_gloo_distillation(tmp_path):
    from test_distill_core import make_acclimated, tiny_cfg

    from disdepth.checkpoint import save_checkpoint
    from disdepth.tasks.acclimation import acclimated_state

    cfg = tiny_cfg()
    model, _ = make_acclimated(cfg)
    path = save_checkpoint(acclimated_state(model, cfg), tmp_path / "acclimated.pt")
    port = free_port()
    mp.spawn(_worker, args=(2, port, str(tmp_path), str(path)), nprocs=2, join=True)
    r0, r1 = (torch.load(tmp_path / f"{r}.pt", weights_only=False) for r in (0, 1))
    assert r0["wrapped"] == "DistributedDataParallel" and r0["teacher_wrapped"] == "AcclimatedTeacher"
    assert r0["teacher_same"] and r1["teacher_same"]
    for k, v in r0["state"].items():
        torch.testing.assert_close(v, r1["state"][k], msg=k)
