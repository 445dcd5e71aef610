"""disdepth train / eval --checkpoint / bench --checkpoint end to end on the synthetic world (tiny, CPU)."""

from __future__ import annotations

import json

import pytest

from disdepth.cli import main

TINY = [
    "--set", "model.encoder=test_efficientnet", "--set", "model.decoder_channels=[16,16,8,8,8]",
    "--set", "model.pretrained=none", "--set", "model.decoder=unet",
    "--set", "data.dataset=synthetic", "--set", "data.synthetic.n_train=8", "--set", "data.synthetic.n_val=3",
    "--set", "data.synthetic.height=48", "--set", "data.synthetic.width=64", "--set", "data.batch_size=4",
    "--set", "data.num_workers=0", "--set", "train.steps=4", "--set", "train.log_every=2",
    "--set", "train.eval_every=2", "--set", "train.checkpoint_every=2", "--set", "eval.protocol=none",
]  # fmt: skip


def test_train_then_eval_and_bench_checkpoint(tmp_path, capsys):
    pytest.importorskip("disdepth.data.synthetic")
    run = tmp_path / "run"
    assert main(["train", "--run-dir", str(run), *TINY]) == 0
    assert "step 4/4" in capsys.readouterr().out
    ckpt = run / "checkpoints" / "best.pt"
    assert ckpt.is_file() and (run / "checkpoints" / "last.pt").is_file()
    log = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]
    assert any(r.get("split") == "val" and r["images"] == 3 for r in log)
    assert list((run / "tb").iterdir())  # TensorBoard events written

    out = tmp_path / "eval.json"
    assert main(["eval", "--checkpoint", str(ckpt), "--split", "val", "--flip-tta", "--json", str(out)]) == 0
    result = json.loads(out.read_text())
    assert result["n_evaluated"] == 3 and result["flip_tta"] is True and result["protocol"] == "none"
    assert 0 < result["metrics"]["abs_rel"] < 10

    # A second train into the same directory is refused; --resume continues; bench reads the checkpoint.
    assert main(["train", "--run-dir", str(run), *TINY]) == 2
    assert "--resume" in capsys.readouterr().err
    assert main(["train", "--run-dir", str(run), "--resume", *TINY, "--set", "train.steps=6"]) == 0
    assert main(["bench", "--checkpoint", str(ckpt), "--resolutions", "48x64", "--runs", "1", "--warmup", "0"]) == 0
    assert "best.pt | 48x64" in capsys.readouterr().out
