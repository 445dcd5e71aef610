"""The tiny training run the command-line tests share: a test_efficientnet student on 4 synthetic 48x64 scenes,
2 steps (seconds on a CPU), as ``--set`` arguments for ``disdepth train``."""

from __future__ import annotations

import os
import socket

SETTINGS = {
    "model.encoder": "test_efficientnet", "model.pretrained": "none", "model.decoder": "unet",
    "model.decoder_channels": "[16,16,8,8,8]", "data.dataset": "synthetic",
    "data.synthetic.n_train": 4, "data.synthetic.n_val": 2, "data.synthetic.height": 48,
    "data.synthetic.width": 64, "data.batch_size": 2, "data.num_workers": 0, "train.steps": 2,
    "train.eval_every": 0, "eval.protocol": "none",
}  # fmt: skip
TINY = [arg for key, value in SETTINGS.items() for arg in ("--set", f"{key}={value}")]

# A tiny random U-Net student (test_efficientnet, 16/8/8/8/8 channels) as config overrides (KEY=VALUE).
TINY_UNET = [
    "model.encoder=test_efficientnet",
    "model.decoder_channels=[16,8,8,8,8]",
    "model.pretrained=none",
    "model.decoder=unet",
]

# A tiny student and hybrid teacher for the distillation tests, as config overrides (KEY=VALUE).
TINY_PAIR = [
    "model.encoder=test_efficientnet",
    "model.pretrained=none",
    "model.decoder=unet",
    "model.decoder_channels=[16,16,8,8,8]",
    "model.max_depth=8",
    "teacher.kind=hybrid",
    "teacher.name=test_efficientnet",
    "teacher.hybrid_dim=32",
    "teacher.hybrid_depth=1",
    "teacher.hybrid_heads=2",
    "teacher.decoder_channels=16",
    "teacher.max_depth=8",
]


def free_port() -> int:
    """A TCP port nobody listens on now (a gloo rendezvous, the app's server)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def join_as_rank(rank: int, world_size: int, port: int) -> None:
    """The environment torchrun gives rank ``rank`` of ``world_size`` processes on this host (for mp.spawn workers)."""
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(world_size),
                      LOCAL_RANK=str(rank))  # fmt: skip
