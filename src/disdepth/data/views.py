"""Dataset views: samples held in memory, and a dataset seen in another model's input normalisation.

The pipeline asks for datasets per model (``datasets(cfg, split, spec)``): a caller that keeps samples in memory in
one normalisation serves a model with another (a teacher, an ImageNet-0.5 encoder) through :class:`Renormalized`.
"""

from __future__ import annotations

from torch.utils.data import Dataset

from disdepth.models.spec import InputSpec


class InMemory(Dataset):
    """Samples (``DepthSample`` dicts) held in a list; each access returns a shallow copy."""

    def __init__(self, samples: list[dict]) -> None:
        self.samples = samples

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> dict:
        return dict(self.samples[index])


class Renormalized(Dataset):
    """``inner``'s samples with the image re-normalised from ``source``'s mean/std to ``target``'s.

    Args:
        inner: a dataset whose ``image`` is (3, H, W) normalised for ``source``.
    """

    def __init__(self, inner: Dataset, source: InputSpec, target: InputSpec) -> None:
        self.inner, self.source, self.target = inner, source, target

    def __len__(self) -> int:
        return len(self.inner)  # type: ignore[arg-type]

    def __getitem__(self, index: int) -> dict:
        sample = dict(self.inner[index])
        sample["image"] = self.target.renormalize(sample["image"][None], self.source)[0]
        return sample


def renormalized(dataset: Dataset, source: InputSpec, target: InputSpec) -> Dataset:
    """``dataset`` itself when the normalisations agree, else a :class:`Renormalized` view."""
    same = (source.mean, source.std) == (target.mean, target.std)
    return dataset if same else Renormalized(dataset, source, target)
