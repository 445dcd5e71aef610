"""Run logging: a JSONL log, TensorBoard scalars and image panels, and the console (rank 0 only)."""

from __future__ import annotations

import json
import logging
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from disdepth.runs import Run


def setup_console_logging(is_main: bool) -> None:
    """INFO on rank 0, WARNING elsewhere, one format."""
    logging.basicConfig(
        level=logging.INFO if is_main else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
        force=True,
    )


class RunLogger:
    """Writes ``log.jsonl`` and TensorBoard events under the run directory; silent on ranks > 0."""

    def __init__(self, run_dir: Path, enabled: bool = True) -> None:
        self.enabled = enabled
        self.writer = None
        self.jsonl = None
        if enabled:
            run_dir.mkdir(parents=True, exist_ok=True)
            self.jsonl = open(Run(run_dir).log_path, "a", buffering=1)  # noqa: SIM115 - closed in close()
            try:
                from torch.utils.tensorboard import SummaryWriter

                self.writer = SummaryWriter(str(run_dir / "tb"))
            except ImportError:  # tensorboard is a dependency; keep going with the JSONL log if it is broken
                logging.getLogger(__name__).warning("TensorBoard unavailable; logging to log.jsonl only")

    def scalars(self, step: int, values: dict[str, float], prefix: str = "train") -> None:
        if not self.enabled:
            return
        record = {"time": time.time(), "step": step, "split": prefix, **values}
        self.jsonl.write(json.dumps(record) + "\n")
        if self.writer is not None:
            for key, value in values.items():
                if isinstance(value, (int, float)):
                    self.writer.add_scalar(f"{prefix}/{key}", value, step)

    def image(self, step: int, tag: str, panel: np.ndarray) -> None:
        """panel: (H, W, 3) uint8."""
        if self.enabled and self.writer is not None:
            self.writer.add_image(tag, panel, step, dataformats="HWC")

    def event(self, step: int, message: str, **extra: Any) -> None:
        if self.enabled:
            self.jsonl.write(json.dumps({"time": time.time(), "step": step, "event": message, **extra}) + "\n")

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
        if self.jsonl is not None:
            self.jsonl.close()
