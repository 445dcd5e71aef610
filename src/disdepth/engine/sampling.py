"""Resumable, distributed-aware sampling with per-sample seeds, so a resumed run sees the same data.

The training sampler yields ``(index, seed)`` pairs: the order is a permutation drawn from
(seed, epoch), each rank takes an equal, disjoint share (the tail that does not divide evenly is
dropped, as DDP needs the same number of steps on every rank), and it can start mid-epoch.
:class:`SeededDataset` seeds Python/NumPy/torch RNGs from the per-sample seed before calling the wrapped
dataset, so random augmentation depends only on (seed, epoch, index) — not on worker count or on where
a run was interrupted.
"""

from __future__ import annotations

import random
from collections.abc import Iterator

import numpy as np
import torch
from torch.utils.data import Dataset, Sampler


class ResumableSampler(Sampler[tuple[int, int]]):
    """Shuffled ``(index, sample_seed)`` pairs for one rank and one epoch, starting at ``start`` (samples)."""

    def __init__(self, length: int, seed: int, rank: int = 0, world_size: int = 1) -> None:
        if length < world_size:
            raise ValueError(f"dataset has {length} samples, fewer than the {world_size} training processes")
        self.length, self.seed, self.rank, self.world_size = length, seed, rank, world_size
        self.epoch, self.start = 0, 0

    def set_position(self, epoch: int, start: int = 0) -> None:
        """Epoch to draw the permutation for, and how many of this rank's samples to skip."""
        self.epoch, self.start = epoch, start

    def __len__(self) -> int:
        return self.length // self.world_size - self.start

    def __iter__(self) -> Iterator[tuple[int, int]]:
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
        order = torch.randperm(self.length, generator=g)
        per_rank = self.length // self.world_size
        mine = order[self.rank : per_rank * self.world_size : self.world_size]
        for idx in mine[self.start :].tolist():
            # Seed per (run seed, epoch, index): independent of rank, worker and interruption point.
            yield idx, (self.seed * 7919 + self.epoch * 104_729 + idx * 31) % (2**31 - 1)


class SeededDataset(Dataset):
    """Wraps a dataset so ``ds[(index, seed)]`` seeds the RNGs, then returns ``inner[index]``."""

    def __init__(self, inner: Dataset) -> None:
        self.inner = inner

    def __len__(self) -> int:
        return len(self.inner)  # type: ignore[arg-type]

    def __getitem__(self, key: tuple[int, int]):
        index, seed = key
        # fork_rng keeps the caller's torch RNG untouched when loading in the main process (num_workers=0).
        with torch.random.fork_rng(devices=[]):
            py_state, np_state = random.getstate(), np.random.get_state()
            torch.manual_seed(seed)
            random.seed(seed)
            np.random.seed(seed)
            try:
                return self.inner[index]
            finally:
                random.setstate(py_state)
                np.random.set_state(np_state)


class ShardSampler(Sampler[int]):
    """Evaluation: rank r takes indices r, r + W, ... — every image exactly once, no padding duplicates."""

    def __init__(self, length: int, rank: int = 0, world_size: int = 1) -> None:
        self.indices = list(range(rank, length, world_size))

    def __len__(self) -> int:
        return len(self.indices)

    def __iter__(self) -> Iterator[int]:
        return iter(self.indices)
