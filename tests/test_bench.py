"""disdepth bench: FLOP counting, table and JSON output."""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn

from disdepth.cli import main
from disdepth.commands.common import parse_hw_list
from disdepth.deploy.bench import count_flops


def test_flops_of_a_single_conv_are_two_per_mac():
    conv = nn.Conv2d(3, 8, 3, padding=1, bias=False)
    # 8 output channels x 3 input channels x 9 taps x 10 x 12 pixels MACs, 2 FLOPs each.
    assert count_flops(conv, 10, 12) == 2 * 8 * 3 * 9 * 10 * 12


def test_parse_resolutions():
    assert parse_hw_list("480x640,352X1216", "--resolutions", 32) == [(480, 640), (352, 1216)]
    try:
        parse_hw_list("480by640", "--resolutions", 32)
    except ValueError as exc:
        assert "480by640" in str(exc) and "--resolutions" in str(exc)
    else:
        raise AssertionError("bad resolution accepted")


def test_bench_cli_writes_table_and_json(tmp_path, capsys):
    out = tmp_path / "bench.json"
    code = main(
        [
            "bench",
            "--set",
            "model.encoder=test_resnet",
            "--set",
            "model.pretrained=none",
            "--set",
            "model.decoder=unet",
            "--set",
            "model.decoder_channels=[16,16,8,8,8]",
            "--compare-lgconv",
            "--set",
            "model.lgconv.min_channels=8",
            "--set",
            "model.lgconv.strides=[16,32]",
            "--resolutions",
            "64x96",
            "--runs",
            "2",
            "--warmup",
            "1",
            "--json",
            str(out),
        ]
    )
    assert code == 0
    text = capsys.readouterr().out
    assert "| test_resnet+sigmoid | 64x96 |" in text and "+LG-Conv" in text
    rows = json.loads(out.read_text())
    assert len(rows) == 2
    plain, lg = rows
    assert lg["params_m"] > plain["params_m"] and lg["gflops"] > plain["gflops"]
    assert all(r["threads"] == torch.get_num_threads() and r["latency_ms_median"] > 0 for r in rows)
    # students are also timed as `predict` runs them (BatchNorm folded, channels-last)
    assert "as `predict` runs it" in text
    assert all(r["optimized_ms_p10"] <= r["optimized_ms_median"] <= r["optimized_ms_p90"] for r in rows)


def test_bench_interleaves_the_models_it_compares():
    """One forward of each model per timed round (A B, B A, ...), not all of A then all of B: drift hits both alike."""
    from torch import nn

    from disdepth.deploy.bench import bench_models

    calls: list[str] = []

    class Recorder(nn.Module):
        def __init__(self, name: str) -> None:
            super().__init__()
            self.name, self.conv = name, nn.Conv2d(3, 1, 1)

        def forward(self, x):
            calls.append(self.name)
            return self.conv(x)

    results = bench_models([("a", Recorder("a")), ("b", Recorder("b"))], [(8, 8)], warmup=1, runs=3)
    timed = [c for c in calls[2:8]]  # after one warm-up round; the FLOP counting passes come last
    assert all(sorted(timed[i : i + 2]) == ["a", "b"] for i in range(0, 6, 2))
    assert [r.model for r in results] == ["a", "b"] and all(r.runs == 3 for r in results)
    assert all(r.optimized_ms_median is None for r in results)  # not students: nothing `predict` would optimise


def test_interleaved_rounds_run_every_callable_once_in_a_seeded_random_order():
    """A fixed order lets what ran before a model bias it steadily; each round is a fresh permutation instead."""
    from disdepth.deploy.bench import time_interleaved

    def rounds(seed: int) -> list[tuple[str, ...]]:
        calls: list[str] = []
        fns = {name: (lambda name=name: calls.append(name)) for name in "abcd"}
        times = time_interleaved(fns, warmup=1, runs=12, seed=seed)
        assert {name: len(t) for name, t in times.items()} == dict.fromkeys("abcd", 12)
        timed = calls[4:]
        return [tuple(timed[i : i + 4]) for i in range(0, len(timed), 4)]

    orders = rounds(0)
    assert all(sorted(order) == list("abcd") for order in orders)
    assert len(set(orders)) > 3  # not one fixed order
    assert rounds(0) == orders  # reproducible


def test_pause_is_slept_before_each_call_and_not_timed(monkeypatch: pytest.MonkeyPatch) -> None:
    """``pause_s`` lets busy-waiting thread pools go idle between models; the sleep is outside the timed interval."""
    from disdepth.deploy import bench

    fns = {name: (lambda: None) for name in "ab"}
    times = bench.time_interleaved(fns, warmup=1, runs=2, pause_s=0.05)
    assert all(t < 40.0 for ts in times.values() for t in ts)  # ms: a 50 ms sleep inside would show

    events: list[str] = []
    monkeypatch.setattr(bench.time, "sleep", lambda s: events.append(f"sleep {s}"))
    fns = {name: (lambda name=name: events.append(name)) for name in "ab"}
    bench.time_interleaved(fns, warmup=1, runs=3, pause_s=0.25)
    timed = events[2:]  # the warm-up round does not pause
    assert timed[0::2] == ["sleep 0.25"] * 6 and sorted(timed[1::2]) == sorted("ab" * 3)


def test_inference_forward_runs_the_model_once_in_inference_mode() -> None:
    from disdepth.deploy.bench import inference_forward

    seen: list[bool] = []
    model = nn.Identity()
    model.register_forward_hook(lambda m, i, o: seen.append(torch.is_inference_mode_enabled()))
    run = inference_forward(model, torch.zeros(1, 3, 4, 4))
    assert seen == [] and not torch.is_inference_mode_enabled()
    run()
    assert seen == [True] and not torch.is_inference_mode_enabled()
