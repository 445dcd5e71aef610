"""torch.distributed set-up for ``torchrun`` launches (NCCL on GPU, gloo on CPU) and small helpers.

A plain ``disdepth train`` is a world of one; ``torchrun --nproc_per_node N disdepth train ...`` sets
RANK / WORLD_SIZE / LOCAL_RANK / MASTER_ADDR, and multi-node runs use torchrun's rendezvous.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class DistInfo:
    rank: int
    world_size: int
    local_rank: int
    device: torch.device

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    @classmethod
    def single(cls, device: torch.device | str = "cpu") -> DistInfo:
        """A world of one process (scoring on rank 0 alone, benchmarks, library calls without torchrun)."""
        return cls(0, 1, 0, torch.device(device))


def setup(device: str = "auto") -> DistInfo:
    """Initialise the process group when launched by torchrun; pick the device ("auto": CUDA if available)."""
    use_cuda = torch.cuda.is_available() if device == "auto" else device == "cuda"
    if device == "cuda" and not torch.cuda.is_available():
        raise ValueError("train.device=cuda but CUDA is not available on this machine")
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if use_cuda:
        torch.cuda.set_device(local_rank)
        dev = torch.device("cuda", local_rank)
    else:
        dev = torch.device("cpu")
    if world_size > 1 and not dist.is_initialized():
        dist.init_process_group(backend="nccl" if use_cuda else "gloo")
    return DistInfo(rank, world_size, local_rank, dev)


def cleanup() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def barrier() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.barrier()


def any_true(flag: bool, device: torch.device) -> bool:
    """True on every rank if ``flag`` is True on any rank (so all ranks take the same branch)."""
    if not (dist.is_available() and dist.is_initialized()):
        return flag
    t = torch.tensor([1.0 if flag else 0.0], device=device)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return bool(t.item() > 0)


def broadcast_buffers(module: torch.nn.Module, src: int = 0) -> None:
    """Copy rank ``src``'s buffers (BN running statistics) to every rank.

    DDP broadcasts buffers at the *start* of each forward, so after the last step every rank holds the statistics
    of its own last batch; evaluation shards and checkpoints must all see rank 0's.
    """
    if not (dist.is_available() and dist.is_initialized()):
        return
    for buffer in module.buffers():
        dist.broadcast(buffer.data, src)


class PeerRankFailed(RuntimeError):
    """Another rank failed and reports its own error; this rank stops without a second message.

    ``quiet`` tells the CLI to exit non-zero without printing: the failing rank's one line is the message.
    """

    quiet = True


def raise_if_any_failed(error: BaseException | None) -> None:
    """Collective: after work that may fail on some ranks, every rank learns whether any did.

    The failing rank re-raises its own error (the CLI prints its one line); the others raise
    :class:`PeerRankFailed` instead of waiting in the next collective for a rank that is gone (a gloo/NCCL traceback
    or a hang). Without a process group this just re-raises ``error``.
    """
    if not (dist.is_available() and dist.is_initialized()):
        if error is not None:
            raise error
        return
    reports = all_gather_objects(None if error is None else f"{type(error).__name__}: {error}")
    if error is not None:
        raise error
    failed = [(rank, text) for rank, text in enumerate(reports) if text is not None]
    if failed:
        rank, text = failed[0]
        raise PeerRankFailed(f"rank {rank} failed: {text}")


def all_gather_objects(obj: Any) -> list[Any]:
    """Every rank's ``obj`` (pickled), in rank order; ``[obj]`` without a process group."""
    if not (dist.is_available() and dist.is_initialized()):
        return [obj]
    out: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(out, obj)
    return out


def mean_over_ranks(value: float, device: torch.device) -> float:
    if not (dist.is_available() and dist.is_initialized()):
        return value
    t = torch.tensor([value], device=device, dtype=torch.float64)
    dist.all_reduce(t)
    return float(t.item()) / dist.get_world_size()
