"""The checkpoint format: one reader, one writer, typed kinds, and nothing that can run code when loaded.

A checkpoint file (``.pt``, written by :func:`save_checkpoint`) is a dict of tensors and plain Python values:

    format:      FORMAT_VERSION
    kind:        a :class:`CheckpointKind` value (str): what ``model`` holds
    model:       state dict of the deployable model (a student or a teacher); {} for training-only kinds
    ema:         the same for the EMA weights, or None
    input_spec:  ``InputSpec.to_dict()`` of the deployable model (normalisation, depth range, size multiple)
    config:      the resolved config as a plain dict
    step:        optimizer steps done
    best:        {"metric": name, "value": float | None, "step": int | None}
    training:    (resumable checkpoints) {"model", "ema", "optimizer", "scheduler", "scaler", "rng"} of the
                 trainable module as the training loop holds it
    extra:       kind-specific plain data (an acclimated teacher's parts and accuracy)

Every file is read with ``torch.load(weights_only=True)``: tensors and plain containers only, so a malicious
pickle cannot execute code. RNG states are therefore stored as tensors (:func:`rng_state`). A file that needs the
full unpickler (a checkpoint from before this format) loads only after :func:`trust_pickled_checkpoints` (the
``--trust-checkpoint`` flag), and the error says why.

A deployable model is also written as a folder in the Hugging Face layout (:func:`save_model_folder`):
``config.json`` (kind, input spec, resolved config), ``model.safetensors`` and a short ``README.md`` model card.
:func:`read_checkpoint` reads either form into the same dict.
"""

from __future__ import annotations

import json
import os
import pickle
import random
import shutil
from enum import Enum
from pathlib import Path
from typing import Any

import numpy as np
import torch

FORMAT_VERSION = 2
MODEL_FOLDER_FILES = ("config.json", "model.safetensors")


class CheckpointKind(str, Enum):
    """What a checkpoint's ``model`` entry is."""

    STUDENT = "student"  # a DepthStudent
    TEACHER = "teacher"  # a timm / hybrid teacher trained by disdepth
    ACCLIMATED_TEACHER = "acclimated_teacher"  # teacher + FAMs + ghost decoder (``extra``), from ``acclimate``
    ACCLIMATION = "acclimation"  # an acclimation run's training state (resume only; use acclimated.pt)

    @property
    def deployable(self) -> bool:
        return self in (CheckpointKind.STUDENT, CheckpointKind.TEACHER)


# Kinds written before FORMAT_VERSION 2.
_LEGACY_KINDS = {"distilled_student": CheckpointKind.STUDENT}

_trust_pickles = False


def trust_pickled_checkpoints(trust: bool = True) -> None:
    """Allow the full unpickler for files that need it (``--trust-checkpoint``): only for files you made."""
    global _trust_pickles
    _trust_pickles = trust


class UnsafeCheckpointError(ValueError):
    """The file holds Python objects that only the full unpickler can load (which can run code)."""


# --------------------------------------------------------------------------------------------
# Writing.
# --------------------------------------------------------------------------------------------


def save_checkpoint(state: dict[str, Any], path: str | Path) -> Path:
    """Write ``state`` to ``path`` atomically: a crash mid-write leaves the previous file intact."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp.{os.getpid()}")
    try:
        torch.save({"format": FORMAT_VERSION, **state}, tmp)
        os.replace(tmp, path)
    except (OSError, RuntimeError) as exc:
        # torch reports a full disk, a file-size limit or a read-only folder as a RuntimeError from its zip writer
        # ("PytorchStreamWriter failed writing file ..."): say it as one line naming the checkpoint.
        tmp.unlink(missing_ok=True)
        reason = getattr(exc, "strerror", None) or str(exc).strip().splitlines()[0][:200]
        raise CheckpointWriteError(
            f"{path}: could not write the checkpoint ({reason}); free disk space or check the folder's permissions, "
            "then --resume (the previous checkpoint is intact)"
        ) from None
    return path


class CheckpointWriteError(OSError):
    """Writing a checkpoint failed (full disk, file-size limit, read-only folder); the previous file is intact."""


def remove_stale_temp_files(folder: str | Path) -> list[Path]:
    """Delete what a killed writer left in ``folder``: ``.<name>.tmp.<pid>`` files and folders (checkpoints, a model
    folder being written) and ``.<name>.old.<pid>`` folders (a model folder being replaced); returns them."""
    folder = Path(folder)
    stale = sorted([*folder.glob(".*.tmp.*"), *folder.glob(".*.old.*")]) if folder.is_dir() else []
    for path in stale:
        if path.is_dir():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)
    return stale


def save_model_folder(
    folder: str | Path,
    kind: CheckpointKind,
    weights: dict[str, torch.Tensor],
    input_spec: dict[str, Any],
    config: dict[str, Any],
    card: str = "",
) -> Path:
    """A deployable model in the Hugging Face layout: ``config.json`` + ``model.safetensors`` + ``README.md``.

    Written into a temporary sibling folder and renamed, so a reader never sees half a folder.
    """
    from safetensors.torch import save_file

    folder = Path(folder)
    tmp = folder.with_name(f".{folder.name}.tmp.{os.getpid()}")
    tmp.mkdir(parents=True, exist_ok=True)
    # safetensors refuses tensors that share memory (tied weights); contiguous copies are always safe to write.
    save_file({k: v.detach().contiguous().clone() for k, v in weights.items()}, str(tmp / "model.safetensors"))
    meta = {"format": FORMAT_VERSION, "library": "disdepth", "kind": kind.value, "input_spec": input_spec}
    (tmp / "config.json").write_text(json.dumps({**meta, "disdepth_config": config}, indent=2, default=float))
    (tmp / "README.md").write_text(card or f"# disdepth {kind.value}\n")
    if folder.exists():
        old = folder.with_name(f".{folder.name}.old.{os.getpid()}")
        folder.rename(old)
        tmp.rename(folder)
        shutil.rmtree(old)
    else:
        tmp.rename(folder)
    return folder


# --------------------------------------------------------------------------------------------
# Reading.
# --------------------------------------------------------------------------------------------


def load_weights_only(path: str | Path, map_location: str | torch.device = "cpu") -> Any:
    """``torch.load`` that never runs code: ``weights_only=True``, or the full unpickler only when trusted.

    Raises:
        FileNotFoundError: no such file.
        UnsafeCheckpointError: the file needs the full unpickler and :func:`trust_pickled_checkpoints` was not set.
        ValueError: the file is not readable by torch (names the file).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as exc:
        if not _trust_pickles:
            raise UnsafeCheckpointError(
                f"{path}: holds Python objects that only the full unpickler can load, and unpickling can run code "
                f"({str(exc).splitlines()[0][:160]}). Files from disdepth >= 0.2 never need it; if you made this "
                "file yourself with an older version, pass --trust-checkpoint (or re-save it)"
            ) from None
        return torch.load(path, map_location=map_location, weights_only=False)
    except Exception as exc:  # torch raises several types for a corrupt or foreign file
        raise ValueError(f"{path}: not a readable checkpoint ({type(exc).__name__}: {exc})") from None


def read_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Read a disdepth checkpoint file or model folder into the dict described in the module docstring.

    Raises:
        FileNotFoundError / ValueError naming the file when it is missing, unreadable or not a disdepth checkpoint.
    """
    path = Path(path)
    if path.is_dir():
        return _read_model_folder(path)
    state = load_weights_only(path, map_location)
    if not isinstance(state, dict) or "model" not in state or "config" not in state:
        have = ", ".join(sorted(map(str, state))[:8]) if isinstance(state, dict) else type(state).__name__
        raise ValueError(f"{path}: not a disdepth checkpoint (needs 'model' and 'config'; has {have})")
    if not isinstance(state["config"], dict):  # every reader (and --resume) relies on it: refuse a damaged one
        raise ValueError(f"{path}: its saved config is a {type(state['config']).__name__}, not a mapping (damaged)")
    return _upgrade(state, path)


def _read_model_folder(folder: Path) -> dict[str, Any]:
    missing = [name for name in MODEL_FOLDER_FILES if not (folder / name).is_file()]
    if missing:
        raise FileNotFoundError(f"{folder}: not a disdepth model folder (missing {', '.join(missing)})")
    try:
        meta = json.loads((folder / "config.json").read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ValueError(f"{folder / 'config.json'}: not valid JSON ({exc})") from None
    if not isinstance(meta, dict) or meta.get("library") != "disdepth" or "disdepth_config" not in meta:
        raise ValueError(f"{folder}: config.json is not a disdepth model config (a Hugging Face hub model? use it "
                         "as a teacher with teacher.kind=hf)")  # fmt: skip
    from safetensors.torch import load_file

    try:
        weights = load_file(str(folder / "model.safetensors"))
    except Exception as exc:  # safetensors raises its own error types for truncated files
        raise ValueError(f"{folder / 'model.safetensors'}: not readable ({exc})") from None
    if "kind" not in meta or not isinstance(meta["disdepth_config"], dict):
        raise ValueError(f"{folder / 'config.json'}: needs 'kind' and a 'disdepth_config' mapping")
    state = {"kind": meta["kind"], "model": weights, "ema": None, "input_spec": meta.get("input_spec")}
    return _upgrade({**state, "config": meta["disdepth_config"], "step": meta.get("step", 0)}, folder)


def _upgrade(state: dict[str, Any], path: Path) -> dict[str, Any]:
    """Fill defaults and turn ``kind`` into a :class:`CheckpointKind` (older files: legacy names)."""
    raw = state.get("kind", "student")
    try:
        kind = _LEGACY_KINDS.get(raw) or CheckpointKind(raw)
    except ValueError:
        allowed = ", ".join(k.value for k in CheckpointKind)
        raise ValueError(f"{path}: unknown checkpoint kind {raw!r} (expected one of {allowed})") from None
    if raw == "distilled_student":  # pre-format-2 distillation runs: drop the training-only KD adapters
        state["model"] = {k: v for k, v in state["model"].items() if not k.startswith("adapters.")}
        if state.get("ema") is not None:
            state["ema"] = {k: v for k, v in state["ema"].items() if not k.startswith("adapters.")}
    model_cfg = state["config"].get("model") if isinstance(state.get("config"), dict) else None
    if isinstance(model_cfg, dict):  # keys added after checkpoints were saved: what those checkpoints were trained with
        before_the_key = {
            "decoder": "unet",
            "decoder_upsample": "bilinear",
            "decoder_conv_first_strides": [],
            "lite_upsample": "bilinear",
        }
        state["config"] = {**state["config"], "model": {**before_the_key, **model_cfg}}
    if kind == CheckpointKind.ACCLIMATED_TEACHER and "extra" not in state:  # format 1 kept the parts at the top
        state["extra"] = {k: state.pop(k) for k in ("teacher", "fams", "ghost", "metrics") if k in state}
    return {"ema": None, "input_spec": None, "step": 0, "best": {}, "extra": {}, **state, "kind": kind}


def deployable_weights(state: dict[str, Any], use_ema: bool = True) -> dict[str, torch.Tensor]:
    """The model weights of a checkpoint dict: EMA when present and asked for."""
    return state["ema"] if use_ema and state.get("ema") is not None else state["model"]


# --------------------------------------------------------------------------------------------
# RNG states as tensors (``weights_only``-safe).
# --------------------------------------------------------------------------------------------


def rng_state() -> dict[str, Any]:
    """Python, NumPy and torch (and CUDA) RNG states as tensors and plain values."""
    _, keys, pos, has_gauss, cached = np.random.get_state()
    state: dict[str, Any] = {
        "python": random.getstate(),  # (version, tuple of 625 ints, None): plain types
        "numpy": {
            "keys": torch.from_numpy(keys.astype(np.int64)),
            "pos": int(pos),
            "has_gauss": int(has_gauss),
            "cached_gaussian": float(cached),
        },
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore what :func:`rng_state` returned."""
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    n = state["numpy"]
    keys = n["keys"].numpy().astype(np.uint32)
    np.random.set_state(("MT19937", keys, n["pos"], n["has_gauss"], n["cached_gaussian"]))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
