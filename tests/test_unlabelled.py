"""Unlabelled images in the distillation stage (disdepth.data.mixing, distill.unlabelled_list)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from disdepth.config import load_config
from disdepth.data.csv import CSVDataset
from disdepth.data.mixing import UNLABELLED_PREFIX, MixedDataset, UnlabelledImages, unlabelled_slots
from disdepth.engine.sampling import SeededDataset
from disdepth.pipeline.stages import add_unlabelled, cache_enabled


class Labelled(torch.utils.data.Dataset):
    """``n`` samples of ``size``; sample i has image value i and depth 1 + i metres everywhere."""

    def __init__(self, n: int, size: int | tuple[int, int] = 8, name: str = "lab") -> None:
        self.n, self.name = n, name
        self.h, self.w = (size, size) if isinstance(size, int) else size

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int) -> dict:
        h, w = self.h, self.w
        return {
            "image": torch.full((3, h, w), float(i)),
            "depth": torch.full((1, h, w), 1.0 + i),
            "valid": torch.ones(1, h, w, dtype=torch.bool),
            "focal": torch.tensor(100.0),
            "intrinsics": torch.tensor([100.0, 100.0, w / 2, h / 2]),
            "id": f"{self.name}{i}",
        }


def write_images(folder: Path, n: int, size: tuple[int, int], with_depth_column: bool) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    rows = ["rgb,depth" if with_depth_column else "rgb"]
    for i in range(n):
        Image.fromarray(np.full((*size, 3), 20 * i, dtype=np.uint8)).save(folder / f"im{i}.png")
        rows.append(f"im{i}.png,missing_depth_{i}.png" if with_depth_column else f"im{i}.png")
    index = folder / "index.csv"
    index.write_text("\n".join(rows) + "\n")
    return index


def pool_config(index: Path, *extra: str):
    """A tiny-student config whose distillation draws from the unlabelled CSV ``index`` (augmentation off)."""
    overrides = ["model.encoder=test_efficientnet", "model.pretrained=none", "model.decoder=unet",
                 "data.augment.enabled=false", f"distill.unlabelled_list={index}"]
    return load_config(overrides=[*overrides, *extra])


def test_unlabelled_images_drop_ground_truth_and_prefix_ids():
    sample = UnlabelledImages(Labelled(2))[1]
    assert sample["depth"].abs().sum() == 0 and not sample["valid"].any()
    assert sample["valid"].dtype == torch.bool and sample["depth"].shape == (1, 8, 8)
    assert sample["id"] == UNLABELLED_PREFIX + "lab1"
    assert torch.equal(sample["image"], torch.full((3, 8, 8), 1.0))


@pytest.mark.parametrize(("fraction", "slots"), [(0.0, 0), (0.5, 10), (0.75, 30), (0.2, 2)])
def test_slot_count_gives_the_requested_unlabelled_share(fraction, slots):
    assert unlabelled_slots(10, fraction) == slots


@pytest.mark.parametrize("fraction", [-0.1, 1.0, 1.5])
def test_fraction_outside_zero_one_is_an_error_naming_the_key(fraction):
    with pytest.raises(ValueError, match="distill.unlabelled_fraction"):
        unlabelled_slots(10, fraction)


def test_mixed_dataset_labelled_first_then_random_unlabelled_draws_seeded_per_sample():
    mixed = SeededDataset(MixedDataset(Labelled(4), Labelled(50, name="pool"), fraction=0.5))
    assert len(mixed) == 8
    for i in range(4):  # labelled samples keep their ground truth
        s = mixed[(i, 123)]
        assert s["id"] == f"lab{i}" and s["valid"].all()
    draws = [mixed[(5, seed)]["id"] for seed in range(40)]
    assert all(d.startswith(UNLABELLED_PREFIX + "pool") for d in draws)
    assert len(set(draws)) > 10  # a fresh image per (epoch, index) seed: the pool is sampled, not fixed
    assert mixed[(5, 7)]["id"] == mixed[(5, 7)]["id"]  # same seed, same image (resumable)
    assert not mixed[(6, 7)]["valid"].any()
    with pytest.raises(IndexError):
        MixedDataset(Labelled(4), Labelled(5))[8]


def test_csv_images_only_needs_just_an_rgb_column_and_ignores_depth(tmp_path):
    ds = CSVDataset(write_images(tmp_path / "a", 2, (8, 12), with_depth_column=False), images_only=True)
    assert len(ds) == 2 and ds[1]["image"].shape == (3, 8, 12) and not ds[1]["valid"].any()
    # A depth column (here naming files that do not exist) is ignored: never read, never a label.
    ds = CSVDataset(write_images(tmp_path / "b", 2, (8, 12), with_depth_column=True), images_only=True)
    assert not ds[0]["valid"].any()
    bad_scale = tmp_path / "b" / "scaled.csv"  # a depth_scale cell means nothing without depth: not parsed
    bad_scale.write_text("rgb,depth_scale\nim0.png,not-a-number\n")
    assert len(CSVDataset(bad_scale, images_only=True)) == 1


def test_add_unlabelled_mixes_the_distill_list_and_names_the_key_on_errors(tmp_path):
    index = write_images(tmp_path / "u", 3, (8, 8), with_depth_column=False)
    cfg = pool_config(index, "distill.unlabelled_fraction=0.5")
    mixed = add_unlabelled(cfg, Labelled(6))
    assert isinstance(mixed, MixedDataset) and len(mixed) == 12
    assert mixed[9]["id"].startswith(UNLABELLED_PREFIX + "im") and not mixed[9]["valid"].any()
    assert add_unlabelled(load_config(), Labelled(2)).__class__ is Labelled  # no list: unchanged

    cfg.distill.unlabelled_list = str(tmp_path / "nowhere.csv")
    with pytest.raises(ValueError, match="distill.unlabelled_list.*nowhere.csv"):
        add_unlabelled(cfg, Labelled(6))
    cfg.distill.unlabelled_list = str(write_images(tmp_path / "big", 2, (16, 16), with_depth_column=False))
    with pytest.raises(ValueError, match="distill.unlabelled_list.*16, 16.*8, 8"):
        add_unlabelled(cfg, Labelled(6))


def test_an_odd_sized_unlabelled_image_is_an_error_naming_the_key_and_image_when_drawn():
    class Odd(Labelled):
        def __getitem__(self, i: int) -> dict:
            sample = super().__getitem__(i)
            if i == 3:
                sample["image"] = torch.zeros(3, 8, 9)
            return sample

    mixed = MixedDataset(Labelled(2), Odd(4, name="pool"))  # image 0 is fine: construction passes
    with pytest.raises(ValueError, match=r"distill.unlabelled_list: image 'unlabelled/pool3' is \(3, 8, 9\)"):
        for seed in range(50):
            SeededDataset(mixed)[(3, seed)]


def test_nyu_unlabelled_frames_get_the_border_crop_like_the_labelled_ones(tmp_path):
    index = write_images(tmp_path / "nyu", 1, (480, 640), with_depth_column=False)
    cfg = pool_config(index, "data.dataset=nyu")
    # Labelled NYU training frames come out of the border crop at 427x565 (BTS [45:472, 43:608]); so must these.
    mixed = add_unlabelled(cfg, Labelled(1, size=(427, 565)))
    assert mixed.unlabelled[0]["image"].shape[-2:] == (427, 565)


def test_teacher_target_cache_auto_is_off_with_an_unlabelled_pool():
    cfg = load_config(overrides=["data.augment.enabled=false"])
    assert cache_enabled(cfg)
    cfg.distill.unlabelled_list = "pool.csv"
    assert not cache_enabled(cfg)
