"""Unlabelled images for the distillation stage: the teacher supervises the student where no ground truth exists.

Distillation needs only the teacher's output, so images without depth (raw video frames, a target-domain photo
collection) can carry the KD losses while labelled images carry the depth loss as well. Two pieces:

* :class:`UnlabelledImages` wraps any dataset of :class:`~disdepth.data.sample.DepthSample` and removes its
  ground truth (``depth`` = 0, ``valid`` = False) and prefixes its ids, so unlabelled images never add depth labels
  and never collide with a labelled id in the teacher-target cache.
* :class:`MixedDataset` appends unlabelled *slots* to a labelled set so that a fraction ``f`` of every epoch is
  unlabelled. Each slot draws a random unlabelled image from the torch RNG, which the engine's
  :class:`~disdepth.engine.sampling.SeededDataset` seeds per (run seed, epoch, index): a large pool is sampled
  afresh each epoch, deterministically, and a resumed run sees the same images.

The depth loss (SILog over the batch's valid pixels) ignores the unlabelled samples by construction; the
saliency attention, which needs ground truth, is uniform on them (a zero gradient standardises to a flat map).
"""

from __future__ import annotations

import torch
from torch.utils.data import Dataset

from disdepth.data.io import DataError
from disdepth.data.sample import DepthSample

UNLABELLED_PREFIX = "unlabelled/"


class UnlabelledImages(Dataset):
    """``inner`` with its ground truth removed: ``depth`` (1, H, W) zeros, ``valid`` all False, id prefixed."""

    def __init__(self, inner: Dataset) -> None:
        self.inner = inner

    def __len__(self) -> int:
        return len(self.inner)  # type: ignore[arg-type]

    def __getitem__(self, index: int) -> DepthSample:
        sample = dict(self.inner[index])
        sample["depth"] = torch.zeros_like(sample["depth"])
        sample["valid"] = torch.zeros_like(sample["valid"], dtype=torch.bool)
        sample["id"] = UNLABELLED_PREFIX + str(sample["id"])
        return sample  # type: ignore[return-value]


def unlabelled_slots(n_labelled: int, fraction: float) -> int:
    """Unlabelled slots per epoch so that ``slots / (n_labelled + slots)`` is ``fraction`` (rounded)."""
    if not 0.0 <= fraction < 1.0:
        raise ValueError(f"distill.unlabelled_fraction must be in [0, 1), got {fraction}")
    return round(n_labelled * fraction / (1.0 - fraction))


class MixedDataset(Dataset):
    """Labelled samples ``0..n-1`` followed by ``unlabelled_slots(n, fraction)`` random unlabelled images.

    Batches mix both kinds, so every unlabelled image must leave the training transform at the labelled images'
    size (the first labelled image's); one that does not is a :class:`~disdepth.data.io.DataError` (a ValueError
    that survives DataLoader workers) naming the key and the image's id, raised when it is drawn (and at
    construction for the first unlabelled image).

    Args:
        labelled: the training set (with ground truth).
        unlabelled: images whose ground truth is ignored (wrapped in :class:`UnlabelledImages` here).
        fraction: share of each epoch drawn from ``unlabelled``, in [0, 1); 0.5 = one unlabelled per labelled.
    """

    def __init__(self, labelled: Dataset, unlabelled: Dataset, fraction: float = 0.5) -> None:
        if len(unlabelled) == 0:  # type: ignore[arg-type]
            raise ValueError("distill.unlabelled_list: the unlabelled set has no images")
        self.labelled, self.unlabelled = labelled, UnlabelledImages(unlabelled)
        self.n_labelled = len(labelled)  # type: ignore[arg-type]
        self.slots = unlabelled_slots(self.n_labelled, fraction)
        self.image_shape = tuple(labelled[0]["image"].shape)
        try:  # fail before training, not at the first mixed batch
            self._checked(self.unlabelled[0])
        except DataError as exc:
            # In the main process a plain ValueError (the message names the key): callers that prefix the key to
            # file errors (DataError) from the unlabelled CSV leave this one alone.
            raise ValueError(str(exc)) from None

    def __len__(self) -> int:
        return self.n_labelled + self.slots

    def __getitem__(self, index: int) -> DepthSample:
        if index < 0 or index >= len(self):
            raise IndexError(f"index {index} out of range for {len(self)} samples")
        if index < self.n_labelled:
            return self.labelled[index]
        pick = int(torch.randint(len(self.unlabelled), (1,)).item())  # seeded per sample by SeededDataset
        return self._checked(self.unlabelled[pick])

    def _checked(self, sample: DepthSample) -> DepthSample:
        shape = tuple(sample["image"].shape)
        if shape != self.image_shape:
            raise DataError(
                "distill.unlabelled_list",
                f"image {sample['id']!r} is {shape} after the training transform but labelled images are "
                f"{self.image_shape}; resize them alike or use a fixed random crop (data.augment.crop_height/width)",
                "size",
            )
        return sample
