"""A run folder, written down once: where a run keeps its config, checkpoints, deployable model, result and log.

    import disdepth
    run = disdepth.open_run("runs/mine")          # a pipeline run (stage folders) or a single run
    run.model("distill")                          # runs/mine/distill/model (or its checkpoints/last.pt)
    run.stage("baseline").result()                # the finished stage's result.json, or None

One training run (``disdepth train``/``acclimate``/``distill``, or one pipeline stage) owns a folder::

    config.yaml          the resolved config (what --resume continues and what a stage is compared against)
    checkpoints/         last.pt (every checkpoint_every steps and at the end), best.pt (best validation score)
    model/               the deployable model in the Hugging Face layout: config.json, model.safetensors, README.md
    result.json          a finished stage's result (its step, metrics, inputs); absent while it runs
    log.jsonl            one JSON object per logged step or event; TensorBoard events beside it
    previous_run/        a run set aside by --overwrite until the new one writes its first checkpoint
    .lock                held while a process trains here (engine/runlock.py)

A pipeline (``disdepth pipeline``) owns a folder of stage folders, ``teacher/ baseline/ acclimate/ distill/``, each
laid out as above, plus ``report/``. This module only names and reads paths (layer 0: it imports nothing of ours but
the config); writing is the training loop's, loading a model is ``disdepth.load``'s.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

CONFIG = "config.yaml"
CHECKPOINTS = "checkpoints"
LAST = "last.pt"
BEST = "best.pt"
MODEL = "model"
RESULT = "result.json"
LOG = "log.jsonl"
PREVIOUS_RUN = "previous_run"
LOCK = ".lock"
REPORT = "report"
# What --overwrite sets aside (and a failed attempt's partial files): everything a run writes but its lock.
RUN_FILES = (CHECKPOINTS, MODEL, LOG, CONFIG, RESULT)

# The pipeline's stage folders in the order they run, and the labels reports and the app give their models.
PIPELINE_STAGES: tuple[str, ...] = ("teacher", "baseline", "acclimate", "distill")
MODEL_LABELS: dict[str, str] = {"distilled": "distill", "baseline": "baseline", "teacher": "teacher"}


@dataclass(frozen=True)
class Run:
    """The run (or pipeline) in folder ``root``; nothing is read until asked."""

    root: Path

    def __post_init__(self) -> None:
        object.__setattr__(self, "root", Path(self.root))

    # ---------------------------------------------------------------------------------------------- layout

    @property
    def config_path(self) -> Path:
        return self.root / CONFIG

    @property
    def checkpoints(self) -> Path:
        return self.root / CHECKPOINTS

    @property
    def last(self) -> Path:
        return self.checkpoints / LAST

    @property
    def best(self) -> Path:
        return self.checkpoints / BEST

    @property
    def model_dir(self) -> Path:
        return self.root / MODEL

    @property
    def result_path(self) -> Path:
        return self.root / RESULT

    @property
    def log_path(self) -> Path:
        return self.root / LOG

    @property
    def previous(self) -> Path:
        return self.root / PREVIOUS_RUN

    @property
    def lock_path(self) -> Path:
        return self.root / LOCK

    @property
    def report_dir(self) -> Path:
        return self.root / REPORT

    def checkpoint(self, name: str) -> Path:
        """``checkpoints/<name>.pt`` (``last``, ``best``)."""
        return self.checkpoints / f"{name}.pt"

    # ---------------------------------------------------------------------------------------------- state

    def holds_run(self) -> bool:
        """Whether a run was started here (its config or a checkpoint exists)."""
        return self.config_path.exists() or self.last.exists()

    def result(self) -> dict[str, Any] | None:
        """The finished run's ``result.json`` (None while unfinished, or when the file is not a JSON object)."""
        if not self.result_path.is_file():
            return None
        try:
            data = json.loads(self.result_path.read_text())
        except (OSError, ValueError):
            return None
        return data if isinstance(data, dict) else None

    def finished(self) -> bool:
        return self.result() is not None

    # ---------------------------------------------------------------------------------------------- pipelines

    def stage(self, name: str) -> Run:
        """A pipeline stage's own run folder (``teacher``, ``baseline``, ``acclimate``, ``distill``)."""
        if name not in PIPELINE_STAGES:
            raise ValueError(f"stage {name!r}: a pipeline's stages are {', '.join(PIPELINE_STAGES)}")
        return Run(self.root / name)

    def is_pipeline(self) -> bool:
        """Whether this folder holds pipeline stage folders rather than one run."""
        return not self.holds_run() and any((self.root / s).is_dir() for s in PIPELINE_STAGES)

    def deployable(self) -> Path | None:
        """This run's deployable model: ``model/`` once written, else ``checkpoints/last.pt``; None before either."""
        if (self.model_dir / "config.json").is_file() and (self.model_dir / "model.safetensors").is_file():
            return self.model_dir
        return self.last if self.last.is_file() else None

    def model(self, stage: str | None = None) -> Path:
        """The deployable model of this run, or of a pipeline's ``stage`` (``"distill"``; the labels
        ``"distilled"`` etc. work too).

        Raises:
            FileNotFoundError: naming the folder, when that run has written no model yet.
        """
        run = self if stage is None else self.stage(MODEL_LABELS.get(stage, stage))
        found = run.deployable()
        if found is None:
            raise FileNotFoundError(f"{run.root}: no model yet (no {MODEL}/ and no {CHECKPOINTS}/{LAST})")
        return found


def open_run(path: str | Path) -> Run:
    """The run or pipeline in folder ``path``.

    Raises:
        FileNotFoundError: ``path`` is not a folder.
    """
    root = Path(path)
    if not root.is_dir():
        raise FileNotFoundError(f"{root}: not a run folder")
    return Run(root)
