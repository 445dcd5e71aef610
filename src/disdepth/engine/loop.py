"""The one training loop. It drives a *task* (an ``nn.Module`` mapping a batch to named losses) for a fixed
number of optimizer steps: supervised training of students and teachers, acclimation and distillation alike.

Read top to bottom: prepare the run directory -> wrap the trainable part in DDP -> optimiser, schedule,
AMP scaler, EMA -> resume -> for each step: forward, skip non-finite losses, backward, clip, step ->
log, evaluate, checkpoint -> on SIGINT/SIGTERM write a checkpoint and stop.
"""

from __future__ import annotations

import logging
import math
import shutil
import signal
import time
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, Dataset
from tqdm import tqdm

from disdepth.checkpoint import (
    CheckpointKind,
    read_checkpoint,
    remove_stale_temp_files,
    rng_state,
    save_checkpoint,
    save_model_folder,
    set_rng_state,
)
from disdepth.config import Config, flat_dict, save_config, to_dict
from disdepth.engine import dist
from disdepth.engine.logging import RunLogger
from disdepth.engine.optim import build_ema, build_optimizer, build_scheduler
from disdepth.engine.runlock import RunLock
from disdepth.engine.sampling import ResumableSampler, SeededDataset
from disdepth.eval.metrics import HIGHER_IS_BETTER
from disdepth.runs import RUN_FILES, Run
from disdepth.tasks.supervised import Task

log = logging.getLogger(__name__)

# evaluate(model) -> (metrics, panels): metrics hold the protocol's means and counts; panels are (H, W, 3) uint8.
EvaluateFn = Callable[[nn.Module], tuple[dict[str, Any], list]]


class TrainingAborted(RuntimeError):
    """Training stopped on purpose (e.g. too many non-finite losses in a row); the last checkpoint is intact."""


class RunDirExists(FileExistsError):
    """The run directory already holds a run and neither --resume nor --overwrite was given."""


@dataclass
class TrainResult:
    step: int
    interrupted: bool = False
    best: dict[str, Any] = field(default_factory=dict)
    last_metrics: dict[str, Any] = field(default_factory=dict)


def prepare_run_dir(run_dir: Path, resume: bool, overwrite: bool) -> Path | None:
    """Refuse to clobber an existing run unless asked; ``--resume`` needs a ``last.pt`` to resume from.

    ``overwrite`` moves the old run's files (:data:`disdepth.runs.RUN_FILES`) into ``previous_run/`` (nothing is
    deleted yet) and returns that folder; the loop deletes it once the new run has written its first checkpoint,
    so a new run that fails early leaves the old one intact. Temp files of a killed checkpoint write are removed.
    """
    run = Run(run_dir)
    remove_stale_temp_files(run.checkpoints)
    remove_stale_temp_files(run.root)
    if resume:
        if not run.last.is_file():
            raise FileNotFoundError(f"--resume: no checkpoint to resume from at {run.last}")
        return None
    if not run.holds_run():
        return None
    if not overwrite:
        raise RunDirExists(f"{run_dir} already holds a run; pass --resume to continue it or --overwrite to start over")
    aside = run.previous
    if aside.exists() and not run.last.exists():
        # An earlier --overwrite failed before its first checkpoint (the loop deletes the aside run once one is
        # written): the run set aside is the last finished one, so it stays, whatever the failed attempt left.
        for name in RUN_FILES:
            partial = run.root / name
            shutil.rmtree(partial, ignore_errors=True) if partial.is_dir() else partial.unlink(missing_ok=True)
        return aside
    shutil.rmtree(aside, ignore_errors=True)
    aside.mkdir(parents=True)
    for name in RUN_FILES:
        if (run.root / name).exists():
            (run.root / name).rename(aside / name)
    return aside


# The config sections a checkpoint's weights belong to: a last.pt saved under other values is another run's.
MODEL_DEFINING = ("model.", "teacher.")


def refuse_another_runs_checkpoint(saved: dict[str, Any], cfg: Config, path: Path) -> None:
    """``--resume`` continues the run in config.yaml: a ``last.pt`` saved with other model or teacher settings (a
    copied-in or edited file) is refused naming the keys, even where its weights happen to fit."""
    before, now = flat_dict(saved), flat_dict(to_dict(cfg))
    differ = sorted(k for k in now if k.startswith(MODEL_DEFINING) and k in before and before[k] != now[k])
    if differ:
        raise ValueError(
            f"{path}: saved by a run with other settings ({', '.join(differ[:6])}); it cannot continue this run"
        )


class _StopFlag:
    """SIGINT/SIGTERM set a flag; the loop checkpoints at the next step boundary and exits cleanly."""

    def __init__(self) -> None:
        self.signum: int | None = None
        self._previous: dict[int, Any] = {}

    def __enter__(self) -> _StopFlag:
        for sig in (signal.SIGINT, signal.SIGTERM):
            try:
                self._previous[sig] = signal.signal(sig, self._handle)
            except ValueError:  # not the main thread (e.g. inside some test runners): no handler
                pass
        return self

    def _handle(self, signum: int, frame: Any) -> None:
        if self.signum is not None:  # second Ctrl-C: give up waiting
            raise KeyboardInterrupt
        self.signum = signum
        log.warning("received signal %d: writing a checkpoint at the end of this step, then stopping", signum)

    def __exit__(self, *exc: Any) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)


def _collective_batches(loader: DataLoader, info: dist.DistInfo):
    """The loader's batches; a data error on one rank stops every rank together (its one-line message, no hang)."""
    batches = iter(loader)
    while True:
        error: Exception | None = None
        try:
            batch = next(batches)
        except StopIteration:  # every rank has the same number of batches (ResumableSampler shards evenly)
            return
        except Exception as exc:  # re-raised below, on its own rank
            error = exc
        if dist.any_true(error is not None, info.device):
            dist.raise_if_any_failed(error)
        yield batch


def _to_device(batch: dict, device: torch.device) -> dict:
    return {k: v.to(device, non_blocking=True) if torch.is_tensor(v) else v for k, v in batch.items()}


def train(
    cfg: Config,
    run_dir: Path,
    task: Task,
    train_set: Dataset,
    evaluate: EvaluateFn | None = None,
    *,
    resume: bool = False,
    overwrite: bool = False,
    info: dist.DistInfo | None = None,
) -> TrainResult:
    """Train ``task.model`` for ``cfg.train.steps`` optimizer steps; checkpoints go to ``run_dir/checkpoints``.

    Learning rates come from ``task.parameter_groups()``; every checkpoint holds the task's deployable model
    (``task.deployable``) and the training state for ``resume``. At the end a deployable model is also written to
    ``run_dir/model`` (safetensors + config.json). The main process holds the run folder's lock
    (:class:`~disdepth.engine.runlock.RunLock`) throughout: a second run in the same folder is refused.
    """
    info = info or dist.setup(cfg.train.device)
    with RunLock(run_dir) if info.is_main else nullcontext():
        return _train(cfg, Path(run_dir), task, train_set, evaluate, resume, overwrite, info)


def _train(
    cfg: Config,
    run_dir: Path,
    task: Task,
    train_set: Dataset,
    evaluate: EvaluateFn | None,
    resume: bool,
    overwrite: bool,
    info: dist.DistInfo,
) -> TrainResult:
    tc = cfg.train
    run = Run(run_dir)
    previous_run = None
    if info.is_main:
        previous_run = prepare_run_dir(run_dir, resume, overwrite)
        save_config(cfg, run.config_path)
    dist.barrier()
    logger = RunLogger(run_dir, enabled=info.is_main)

    # Model: only the trainable part is wrapped in DDP; anything frozen on the task (a teacher) is not.
    task.to(info.device)
    if info.distributed and tc.sync_bn:
        task.model = nn.SyncBatchNorm.convert_sync_batchnorm(task.model)
    raw_model = task.model
    if info.distributed:
        task.model = DistributedDataParallel(
            raw_model, device_ids=[info.local_rank] if info.device.type == "cuda" else None
        )
    optimizer = build_optimizer(task.parameter_groups(), tc)
    scheduler = build_scheduler(optimizer, tc)
    scaler = torch.amp.GradScaler(info.device.type, enabled=tc.amp == "fp16")
    ema = build_ema(raw_model, tc.ema_decay)
    amp_dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(tc.amp)

    step, best = 0, {"metric": tc.best_metric, "value": None, "step": None}
    if resume:
        state = read_checkpoint(run.last, map_location=info.device)
        training = state.get("training")
        if not training:
            raise ValueError(f"{run.last}: holds no training state to resume from")
        refuse_another_runs_checkpoint(state["config"], cfg, run.last)
        try:
            raw_model.load_state_dict(training["model"])
            optimizer.load_state_dict(training["optimizer"])
        except (RuntimeError, ValueError) as exc:  # shapes or parameter groups that do not fit this run's model
            detail = str(exc).strip().splitlines()[-1].strip()[:300]
            raise ValueError(f"{run.last}: does not fit this run's model ({detail})") from None
        scheduler.load_state_dict(training["scheduler"])
        if training.get("scaler"):
            scaler.load_state_dict(training["scaler"])
        if ema is not None and training.get("ema") is not None:
            ema.load_state_dict(training["ema"])
        step, best = state["step"], state["best"]
        set_rng_state(training["rng"])
        logger.event(step, "resumed", path=str(run.last))
        log.info("resumed from step %d", step)

    def deployable_state() -> dict[str, Any]:
        kind, module = task.deployable(raw_model)
        ema_module = task.deployable(ema.module)[1] if ema is not None and module is not None else None
        return {
            "kind": kind.value,
            "model": module.state_dict() if module is not None else {},
            "ema": ema_module.state_dict() if ema_module is not None else None,
            "input_spec": module.input_spec.to_dict() if module is not None else None,
        }

    def checkpoint(name: str) -> None:
        if not info.is_main:
            return
        training = {
            "model": raw_model.state_dict(),
            "ema": ema.state_dict() if ema is not None else None,
            "optimizer": optimizer.state_dict(),
            "scheduler": scheduler.state_dict(),
            "scaler": scaler.state_dict() if scaler.is_enabled() else None,
            "rng": rng_state(),
        }
        state = {**deployable_state(), "step": step, "best": best, "config": to_dict(cfg), "training": training}
        save_checkpoint(state, run.checkpoint(name))
        nonlocal previous_run
        if previous_run is not None:  # the new run now has a checkpoint of its own: the old run can go
            shutil.rmtree(previous_run, ignore_errors=True)
            previous_run = None

    def write_model_folder() -> None:
        """The deployable model as shipped: EMA weights when kept, safetensors + config.json + model card."""
        if not info.is_main:
            return
        state = deployable_state()
        if not state["model"]:  # a training-only kind (acclimation): its artifact is written by the stage
            return
        weights = state["ema"] if state["ema"] is not None else state["model"]
        spec = state["input_spec"]
        output = (
            "Output: depth in metres."
            if spec.get("metric", True)
            else f"Output: RELATIVE depth ({spec.get('relative_space')}, known only up to "
            f"{'scale and shift' if spec.get('relative_fit') == 'scale_shift' else 'scale'}), not metres."
        )
        best_text = "not evaluated" if best["value"] is None else f"{best['value']:.4f} (step {best['step']})"
        card = (
            f"# {cfg.name}: disdepth {state['kind']}\n\nTrained {step} steps by disdepth on `{cfg.data.dataset}`; "
            f"best validation {best['metric']}: {best_text}. {output} Load it with `disdepth.load(folder)` or "
            "`disdepth predict folder IMAGES --out DIR`. Input spec (normalisation, output range, metric or relative) "
            "and the resolved training config are in config.json; weights in model.safetensors.\n"
        )
        kind = CheckpointKind(state["kind"])
        save_model_folder(run.model_dir, kind, weights, state["input_spec"], to_dict(cfg), card)

    def run_evaluation() -> dict[str, Any]:
        if evaluate is None:
            return {}
        model = ema.module if ema is not None else raw_model
        dist.broadcast_buffers(model)  # every evaluation shard sees rank 0's BN statistics
        metrics, panels = evaluate(model)
        logger.scalars(step, {k: v for k, v in metrics.items() if isinstance(v, (int, float))}, prefix="val")
        for i, panel in enumerate(panels):
            logger.image(step, f"val/panel_{i}", panel)
        value = metrics.get(tc.best_metric)
        if value is None:
            raise ValueError(f"train.best_metric={tc.best_metric!r} is not among the metrics {sorted(metrics)}")
        better = best["value"] is None or (
            value > best["value"] if tc.best_metric in HIGHER_IS_BETTER else value < best["value"]
        )
        if better and math.isfinite(value):
            best.update(value=value, step=step)
            checkpoint("best")
        if info.is_main:
            log.info("step %d: %s", step, ", ".join(f"{k}={v:.4f}" for k, v in metrics.items() if isinstance(v, float)))
        return metrics

    # Data: per-sample seeds make augmentation independent of workers and of interruptions.
    sampler = ResumableSampler(len(train_set), cfg.seed, info.rank, info.world_size)
    batch_size = cfg.data.batch_size
    batches_per_epoch = (len(train_set) // info.world_size) // batch_size
    if batches_per_epoch == 0:
        raise ValueError(
            f"data.batch_size={batch_size} is larger than this process's share of the training set "
            f"({len(train_set) // info.world_size} samples)"
        )
    loader_kwargs = dict(
        batch_size=batch_size, num_workers=cfg.data.num_workers, drop_last=True, pin_memory=info.device.type == "cuda"
    )

    result = TrainResult(step=step, best=best)
    bad_steps, window_losses, window_steps, window_images, window_start = 0, {}, 0, 0, time.perf_counter()
    # Named after the run folder (a pipeline's stage folders: teacher, baseline, acclimate, distill).
    progress = tqdm(total=tc.steps, initial=step, disable=not info.is_main, desc=run_dir.name, dynamic_ncols=True)
    task.train()
    # tqdm closes its bar on the way out, so an error message never lands on the bar's line.
    with _StopFlag() as stop, progress:
        while step < tc.steps:
            epoch, offset = divmod(step, batches_per_epoch)
            sampler.set_position(epoch, offset * batch_size)
            loader = DataLoader(SeededDataset(train_set), sampler=sampler, **loader_kwargs)
            for batch in _collective_batches(loader, info):
                batch = _to_device(batch, info.device)
                autocast = torch.autocast(info.device.type, dtype=amp_dtype) if amp_dtype else nullcontext()
                task.set_progress(step / tc.steps)  # loss weights that follow a schedule (distill.feature_schedule)
                with autocast:
                    losses = task(batch)
                loss = losses["loss"]
                if dist.any_true(not torch.isfinite(loss.detach()).all().item(), info.device):
                    bad_steps += 1
                    optimizer.zero_grad(set_to_none=True)
                    log.warning("step %d: non-finite loss (%d in a row); step skipped", step, bad_steps)
                    logger.event(step, "non_finite_loss", in_a_row=bad_steps)
                    if bad_steps >= tc.max_bad_steps:
                        progress.close()
                        logger.close()
                        saved = "no checkpoint was written"
                        if run.last.is_file():
                            saved = f"the last good checkpoint is {run.last}"
                        raise TrainingAborted(
                            f"{bad_steps} non-finite losses in a row at step {step}; stopped, {saved} (lower "
                            "train.lr, try train.grad_clip, or check the data with `disdepth data check`)"
                        )
                    continue
                bad_steps = 0
                optimizer.zero_grad(set_to_none=True)
                scaler.scale(loss).backward()
                if tc.grad_clip > 0:
                    scaler.unscale_(optimizer)
                    torch.nn.utils.clip_grad_norm_(raw_model.parameters(), tc.grad_clip)
                scaler.step(optimizer)
                scaler.update()
                scheduler.step()
                if ema is not None:
                    ema.update_parameters(raw_model)
                step += 1
                progress.update(1)

                for k, v in losses.items():
                    window_losses[k] = window_losses.get(k, 0.0) + float(v.detach())
                window_steps += 1
                window_images += batch_size * info.world_size
                if step % tc.log_every == 0 or step == tc.steps:
                    elapsed = time.perf_counter() - window_start
                    values = {k: v / window_steps for k, v in window_losses.items()}
                    values.update(lr=scheduler.get_last_lr()[-1], images_per_s=window_images / max(elapsed, 1e-9))
                    logger.scalars(step, values)
                    progress.set_postfix(loss=f"{values['loss']:.4f}", img_s=f"{values['images_per_s']:.1f}")
                    window_losses, window_steps, window_images, window_start = {}, 0, 0, time.perf_counter()

                stopping = dist.any_true(stop.signum is not None, info.device)
                if tc.eval_every and step % tc.eval_every == 0 and step < tc.steps and not stopping:
                    result.last_metrics = run_evaluation()
                    task.train()
                if stopping or step == tc.steps or (tc.checkpoint_every and step % tc.checkpoint_every == 0):
                    checkpoint("last")
                if stopping:
                    progress.close()
                    logger.event(step, "interrupted", signal=stop.signum)
                    logger.close()
                    log.warning("stopped at step %d; resume with --resume", step)
                    return TrainResult(step=step, interrupted=True, best=best, last_metrics=result.last_metrics)
                if step >= tc.steps:
                    break
    progress.close()
    for module in (raw_model, ema.module if ema is not None else None):
        if module is not None:
            dist.broadcast_buffers(module)  # ranks leave training with identical weights and statistics
    result.last_metrics = run_evaluation()
    if evaluate is not None:
        checkpoint("last")  # stores the best-so-far record updated by the final evaluation
    write_model_folder()
    logger.event(step, "finished", best=best)
    logger.close()
    result.step, result.best = step, best
    return result
