"""Two CPU processes over gloo: identical parameters on both ranks, and evaluation counts every image once."""

from __future__ import annotations

import os

import torch
import torch.multiprocessing as mp
from tiny_runs import free_port, join_as_rank

from disdepth.engine import dist
from disdepth.engine.evaluation import evaluate_model
from disdepth.engine.loop import train
from disdepth.eval.protocols import get_protocol


def _worker(rank: int, world_size: int, port: int, out_dir: str) -> None:
    join_as_rank(rank, world_size, port)
    torch.set_num_threads(1)
    from test_engine import RampDataset, make_task, tiny_config  # noqa: PLC0415 - child process import

    cfg = tiny_config(steps=4)
    info = dist.setup("cpu")
    try:
        task = make_task(cfg)
        train(cfg, os.path.join(out_dir, "run"), task, RampDataset(16), info=info)
        result, _ = evaluate_model(task.model.module, RampDataset(7), get_protocol("none"), info=info)
        summary = {**result.metrics, "images": result.n_evaluated}
        torch.save({"state": task.model.module.state_dict(), "summary": summary}, os.path.join(out_dir, f"{rank}.pt"))
    finally:
        dist.cleanup()


def test_two_process_gloo_training_and_eval(tmp_path):
    mp.spawn(_worker, args=(2, free_port(), str(tmp_path)), nprocs=2, join=True)
    r0, r1 = (torch.load(tmp_path / f"{r}.pt", weights_only=False) for r in (0, 1))
    for name, value in r0["state"].items():
        torch.testing.assert_close(value, r1["state"][name], rtol=0, atol=0, msg=f"{name} differs between ranks")
    assert r0["summary"]["images"] == r1["summary"]["images"] == 7  # odd count: no padding duplicates

    # Same weights evaluated in one process: same count, same means.
    from test_engine import RampDataset, make_task, tiny_config

    task = make_task(tiny_config())
    task.model.load_state_dict(r0["state"])
    single, _ = evaluate_model(task.model, RampDataset(7), get_protocol("none"))
    assert single.n_evaluated == 7
    for key in ("abs_rel", "rmse", "d1"):
        assert abs(single.metrics[key] - r0["summary"][key]) < 1e-6
