"""Training engine: loss falls, exact kill-and-resume, NaN handling, overwrite protection, schedules, losses."""

from __future__ import annotations

import math
import os
import signal

import pytest
import torch
from torch import nn
from torch.utils.data import Dataset

from disdepth.checkpoint import read_checkpoint as load_checkpoint
from disdepth.config import Config, load_config
from disdepth.deploy.weights import load_model as load_model_from_checkpoint
from disdepth.engine.evaluation import evaluate_model, summary_of
from disdepth.engine.loop import RunDirExists, TrainingAborted, train
from disdepth.engine.optim import build_optimizer, build_scheduler
from disdepth.engine.sampling import ResumableSampler
from disdepth.eval.protocols import get_protocol
from disdepth.models.student import build_student
from disdepth.pipeline.stages import supervised_task
from disdepth.tasks.losses import bins_chamfer_loss, l1_depth_loss, silog_loss
from disdepth.tasks.supervised import SupervisedTask


class RampDataset(Dataset):
    """Tiny learnable world: depth is a vertical ramp whose range is written into the image colour.

    Random flips (torch RNG) stand in for augmentation so per-sample seeding is exercised.
    """

    def __init__(self, n: int = 16, size: tuple[int, int] = (32, 32), poison_from: int | None = None) -> None:
        self.n, self.size, self.poison_from, self.calls = n, size, poison_from, 0

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, index: int) -> dict:
        self.calls += 1
        h, w = self.size
        near = 1.0 + (index % 4)
        ramp = torch.linspace(0, 1, h).view(1, h, 1).expand(1, h, w)
        depth = near + 3.0 * ramp
        image = torch.cat([depth / 7.0, 1.0 - depth / 7.0, ramp], dim=0) - 0.5
        if torch.rand(()) < 0.5:
            image, depth = image.flip(-1), depth.flip(-1)
        if self.poison_from is not None and self.calls > self.poison_from:
            image = image * float("nan")  # NaN input -> NaN prediction -> NaN loss
        valid = torch.isfinite(depth) & (depth > 0)
        return {
            "image": image,
            "depth": torch.nan_to_num(depth, nan=1.0),
            "valid": valid,
            "focal": torch.tensor(20.0),
            "intrinsics": torch.tensor([20.0, 20.0, 16.0, 16.0]),
            "id": f"ramp_{index}",
        }


def tiny_config(steps: int = 6, **train_overrides) -> Config:
    overrides = [
        "model.encoder=test_efficientnet",
        "model.pretrained=none",
        "model.decoder=unet",
        "model.decoder_channels=[16,16,8,8,8]",
        "model.max_depth=8",
        f"train.steps={steps}",
        "train.lr=2e-3",
        "train.log_every=2",
        "train.eval_every=0",
        "train.checkpoint_every=0",
        "data.batch_size=4",
        "data.num_workers=0",
        "train.image_panels=1",
    ] + [f"train.{k}={v}" for k, v in train_overrides.items()]
    return load_config(overrides=overrides)


def make_task(cfg: Config) -> SupervisedTask:
    torch.manual_seed(cfg.seed)
    return SupervisedTask(build_student(cfg.model))


def evaluator(dataset):
    protocol = get_protocol("none")

    def evaluate(model):
        result, panels = evaluate_model(model, dataset, protocol, n_panels=1)
        return summary_of(result), panels

    return evaluate


def test_silog_golden_values():
    gt = torch.tensor([1.0, 2.0, 4.0]).view(1, 1, 1, 3)
    pred = gt * math.e  # g = 1 everywhere: mean(g^2) - 0.85 mean(g)^2 = 0.15
    valid = torch.ones_like(gt, dtype=torch.bool)
    assert silog_loss(pred, gt, valid).item() == pytest.approx(10 * math.sqrt(0.15), rel=1e-6)
    assert silog_loss(pred, gt, valid, variance_focus=1.0).item() == pytest.approx(10 * math.sqrt(1e-12), abs=1e-5)
    pred2 = torch.tensor([1.0, 2.0 * math.e, 4.0]).view(1, 1, 1, 3)  # g = [0, 1, 0]
    expected = 10 * math.sqrt(1 / 3 - 0.85 * (1 / 3) ** 2)
    assert silog_loss(pred2, gt, valid).item() == pytest.approx(expected, rel=1e-6)
    empty = silog_loss(pred.requires_grad_(), gt, torch.zeros_like(valid))
    assert empty.item() == 0.0 and empty.requires_grad


def test_l1_depth_loss_golden_values_and_the_task_that_uses_it():
    gt = torch.tensor([1.0, 2.0, 4.0, 0.0]).view(1, 1, 1, 4)
    valid = gt > 0
    pred = torch.tensor([1.5, 1.0, 4.0, 9.0]).view(1, 1, 1, 4)  # |error| 0.5, 1, 0 on the valid three
    assert l1_depth_loss(pred, gt, valid).item() == pytest.approx(0.5)
    empty = l1_depth_loss(pred.requires_grad_(), gt, torch.zeros_like(valid))
    assert empty.item() == 0.0 and empty.requires_grad
    # Near zero depth the L1 gradient stays one metre per metre, where SILog's 1/pred is huge: why FastDepth's ReLU
    # output layer is not pinned at the minimum depth under it.
    tiny = torch.full((1, 1, 1, 3), 1e-3, requires_grad=True)
    l1_depth_loss(tiny, gt[..., :3], valid[..., :3]).backward()
    assert torch.allclose(tiny.grad, torch.full_like(tiny, -1 / 3))

    cfg = tiny_config(steps=1, depth_loss="l1")
    task = SupervisedTask(build_student(cfg.model), depth_loss=cfg.train.depth_loss)
    batch = {"image": torch.rand(2, 3, 64, 64), "depth": torch.rand(2, 1, 64, 64) + 0.5}
    batch["valid"] = torch.ones_like(batch["depth"], dtype=torch.bool)
    losses = task(batch)
    assert set(losses) == {"l1", "loss"} and torch.equal(losses["loss"], losses["l1"])
    with pytest.raises(ValueError, match="train.depth_loss"):
        SupervisedTask(build_student(cfg.model), depth_loss="berhu")
    assert supervised_task(cfg, "student").depth_loss == "l1"  # what `disdepth train` and the pipeline build


def test_chamfer_golden_value():
    centers = torch.tensor([[1.0, 3.0]])
    gt = torch.tensor([1.0, 2.0, 0.0]).view(1, 1, 1, 3)
    valid = gt > 0
    # centres->points: min dists 0 (1->1), 1 (3->2): mean 0.5; points->centres: 0 (1), 1 (2): mean 0.5.
    assert bins_chamfer_loss(centers, gt, valid).item() == pytest.approx(1.0)


def test_new_modules_inside_a_pretrained_encoder_learn_at_full_lr():
    """LG-Conv branches and a hybrid teacher's transformer are new: only pretrained weights get the lr scale."""
    from disdepth.models.encoder import clear_from_scratch
    from disdepth.tasks.supervised import pretrained_groups

    def lrs(model: nn.Module, pretrained: nn.Module) -> dict[int, float]:
        groups = pretrained_groups(model, pretrained, cfg.train.encoder_lr_scale)
        return {id(p): cfg.train.lr * g.lr_scale for g in groups for p in g.params}

    from disdepth.teachers.timm_teacher import HybridBackbone

    cfg = load_config(overrides=["model.lgconv.enabled=true", "model.lgconv.min_channels=8"], base=tiny_config())
    student = build_student(cfg.model)
    assert student.lgconv_names
    lr_of = lrs(student, student.encoder)
    scaled = cfg.train.lr * cfg.train.encoder_lr_scale
    for name, param in student.named_parameters():
        if ".global_branch." in name or not name.startswith("encoder."):
            assert lr_of[id(param)] == pytest.approx(cfg.train.lr), name
        else:
            assert lr_of[id(param)] == pytest.approx(scaled), name

    hybrid = nn.Module()
    hybrid.backbone = HybridBackbone("test_efficientnet", dim=16, depth=1, heads=2)
    lr_of = lrs(hybrid, hybrid.backbone)
    for name, param in hybrid.named_parameters():
        expected = scaled if name.startswith("backbone.stem.") else cfg.train.lr
        assert lr_of[id(param)] == pytest.approx(expected), name

    clear_from_scratch(hybrid)  # a trained teacher (loaded checkpoint) is fine-tuned with one backbone scale
    lr_of = lrs(hybrid, hybrid.backbone)
    assert all(lr_of[id(p)] == pytest.approx(scaled) for p in hybrid.parameters())


def test_poly_schedule_and_encoder_lr():
    cfg = tiny_config(steps=10, schedule="poly", warmup_steps=2, end_lr_ratio=0.0, poly_power=1.0)
    model = build_student(cfg.model)
    task = SupervisedTask(model, pretrained=model.encoder, pretrained_lr_scale=cfg.train.encoder_lr_scale)
    opt = build_optimizer(task.parameter_groups(), cfg.train)
    names = {g["name"]: g["lr"] for g in opt.param_groups}
    assert names["pretrained"] == pytest.approx(cfg.train.lr * cfg.train.encoder_lr_scale)
    assert names["new"] == pytest.approx(cfg.train.lr) and names["new_no_decay"] == pytest.approx(cfg.train.lr)
    sched = build_scheduler(opt, cfg.train)
    lrs = []
    for _ in range(10):
        lrs.append(next(g["lr"] for g in opt.param_groups if g["name"] == "new"))
        opt.step()
        sched.step()
    assert lrs[0] == pytest.approx(cfg.train.lr / 2) and lrs[1] == pytest.approx(cfg.train.lr)
    assert lrs[2] == pytest.approx(cfg.train.lr) and lrs[-1] == pytest.approx(cfg.train.lr / 8)


def test_sampler_is_resumable_and_sharded():
    full = list(ResumableSampler(10, seed=3))
    tail = ResumableSampler(10, seed=3)
    tail.set_position(0, 4)
    assert list(tail) == full[4:]
    shards = [list(ResumableSampler(10, seed=3, rank=r, world_size=3)) for r in range(3)]
    indices = [i for shard in shards for i, _ in shard]
    assert len(indices) == 9 and len(set(indices)) == 9  # disjoint, equal shares, tail dropped


def test_loss_falls_and_checkpoints(tmp_path):
    cfg = tiny_config(steps=40)
    data = RampDataset(16)
    task = make_task(cfg)
    with torch.no_grad():
        batch = {k: torch.stack([data[i][k] for i in range(8)]) for k in ("image", "depth", "valid")}
        before = task(batch)["loss"].item()
    result = train(cfg, tmp_path / "run", task, data, evaluator(RampDataset(6)))
    task.eval()
    with torch.no_grad():
        after = task(batch)["loss"].item()
    assert after < 0.5 * before, (before, after)
    assert result.step == 40 and result.best["value"] is not None
    assert (tmp_path / "run" / "config.yaml").is_file() and (tmp_path / "run" / "log.jsonl").is_file()
    state = load_checkpoint(tmp_path / "run" / "checkpoints" / "last.pt")
    assert state["step"] == 40 and state["config"]["model"]["encoder"] == "test_efficientnet"
    model, saved_cfg = load_model_from_checkpoint(tmp_path / "run" / "checkpoints" / "best.pt")
    assert saved_cfg.model == cfg.model and not model.training


class SignalAt(RampDataset):
    """Sends SIGTERM to this process when the k-th sample is loaded (num_workers=0: same process)."""

    def __init__(self, k: int, **kw) -> None:
        super().__init__(**kw)
        self.k = k

    def __getitem__(self, index: int) -> dict:
        if self.calls + 1 == self.k:
            os.kill(os.getpid(), signal.SIGTERM)
        return super().__getitem__(index)


class ProgressRecorder(SupervisedTask):
    """Records the share of steps done that the loop reports before each step."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__(model)
        self.seen: list[float] = []

    def set_progress(self, done: float) -> None:
        self.seen.append(done)


def test_the_loop_reports_progress_before_every_step_also_after_a_resume(tmp_path):
    cfg = tiny_config(steps=8)
    torch.manual_seed(cfg.seed)
    interrupted = ProgressRecorder(build_student(cfg.model))
    result = train(cfg, tmp_path / "run", interrupted, SignalAt(k=4 * 5 + 1, n=16))  # stops after step 6
    assert result.interrupted and interrupted.seen[:6] == [i / 8 for i in range(6)]
    resumed = ProgressRecorder(build_student(cfg.model))
    train(cfg, tmp_path / "run", resumed, RampDataset(16), resume=True)
    assert resumed.seen == [6 / 8, 7 / 8]  # the schedule goes on where it stopped, not from 0


def test_kill_and_resume_matches_uninterrupted_run(tmp_path):
    cfg = tiny_config(steps=8, ema_decay=0.9)  # 16 samples / batch 4: crosses an epoch boundary
    reference = make_task(cfg)
    train(cfg, tmp_path / "a", reference, RampDataset(16))

    interrupted = make_task(cfg)
    result = train(cfg, tmp_path / "b", interrupted, SignalAt(k=4 * 5 + 1, n=16))  # signal while loading step 6
    assert result.interrupted and result.step == 6
    assert load_checkpoint(tmp_path / "b" / "checkpoints" / "last.pt")["step"] == 6

    resumed = make_task(cfg)
    with torch.no_grad():  # scramble: resume must restore every weight from the checkpoint
        for p in resumed.parameters():
            p.add_(1.0)
    result = train(cfg, tmp_path / "b", resumed, RampDataset(16), resume=True)
    assert result.step == 8
    for (name, a), (_, b) in zip(reference.model.state_dict().items(), resumed.model.state_dict().items(), strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=0, msg=f"{name} differs after resume")
    ema_a = load_checkpoint(tmp_path / "a" / "checkpoints" / "last.pt")["ema"]
    ema_b = load_checkpoint(tmp_path / "b" / "checkpoints" / "last.pt")["ema"]
    for name in ema_a:
        torch.testing.assert_close(ema_a[name], ema_b[name], rtol=0, atol=0)


def test_non_finite_losses_skip_then_abort(tmp_path):
    cfg = tiny_config(steps=20, max_bad_steps=3, checkpoint_every=2)
    task = make_task(cfg)
    # Steps 1-2 are clean (8 samples), then every sample is poisoned: 3 skipped steps, then abort.
    with pytest.raises(TrainingAborted, match="3 non-finite losses in a row at step 2"):
        train(cfg, tmp_path / "run", task, RampDataset(16, poison_from=8))
    state = load_checkpoint(tmp_path / "run" / "checkpoints" / "last.pt")
    assert state["step"] == 2
    assert all(torch.isfinite(v).all() for v in state["model"].values() if v.is_floating_point())


def test_run_dir_is_not_overwritten(tmp_path):
    cfg = tiny_config(steps=2)
    train(cfg, tmp_path / "run", make_task(cfg), RampDataset(8))
    with pytest.raises(RunDirExists, match="--resume"):
        train(cfg, tmp_path / "run", make_task(cfg), RampDataset(8))
    train(cfg, tmp_path / "run", make_task(cfg), RampDataset(8), overwrite=True)
    with pytest.raises(FileNotFoundError, match="no checkpoint to resume"):
        train(cfg, tmp_path / "other", make_task(cfg), RampDataset(8), resume=True)


def test_overwrite_keeps_the_old_run_until_the_new_one_has_a_checkpoint(tmp_path):
    """--overwrite then a run that fails before its first checkpoint: the old checkpoints are all still there;
    a stale temp file of a killed checkpoint write is removed at the next start."""
    cfg = tiny_config(steps=2)
    run = tmp_path / "run"
    train(cfg, run, make_task(cfg), RampDataset(8))
    old = load_checkpoint(run / "checkpoints" / "last.pt")["model"]
    (run / "checkpoints" / ".last.pt.tmp.12345").write_bytes(b"half a checkpoint")
    with pytest.raises(TrainingAborted):  # every sample poisoned: aborts before writing any checkpoint
        train(tiny_config(steps=4, max_bad_steps=2), run, make_task(cfg), RampDataset(8, poison_from=0),
              overwrite=True)  # fmt: skip
    kept = run / "previous_run" / "checkpoints" / "last.pt"
    assert kept.is_file() and all(torch.equal(v, load_checkpoint(kept)["model"][k]) for k, v in old.items())
    assert not list(run.rglob(".last.pt.tmp.*"))
    train(cfg, run, make_task(cfg), RampDataset(8), overwrite=True)  # now it succeeds: the old run goes
    assert (run / "checkpoints" / "last.pt").is_file() and not (run / "previous_run").exists()
