"""Weights that do not fit their model, said in one line: the first differing key and both shapes.

:func:`check_state_dict` checks a state dict against a model before loading it (for eval, resume, any
loader); :func:`readable_load_errors` turns the ``RuntimeError`` of a strict ``load_state_dict`` raised
anywhere inside it into the same one-line ``ValueError``; :func:`load_model` rebuilds the deployable model of any
checkpoint (file or model folder) with these checks.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch
from torch import nn

from disdepth.checkpoint import CheckpointKind, deployable_weights, read_checkpoint
from disdepth.config import Config, config_from_dict
from disdepth.models.spec import InputSpec
from disdepth.models.student import build_student
from disdepth.teachers.build import build_teacher

log = logging.getLogger(__name__)

_SIZE = re.compile(
    r"size mismatch for (\S+): copying a param with shape torch\.Size\(\[([^\]]*)\]\) from checkpoint, "
    r"the shape in current model is torch\.Size\(\[([^\]]*)\]\)"
)
_KEYS = re.compile(r"(Missing|Unexpected) key\(s\) in state_dict: (.*)")


def _shape(shape: Any) -> str:
    """``(5, 3)`` / ``"5, 3"`` (torch's message) -> ``"(5, 3)"``; one dim -> ``"(5,)"``; a scalar -> ``"()"``."""
    dims = [d.strip() for d in shape.split(",")] if isinstance(shape, str) else [str(d) for d in shape]
    dims = [d for d in dims if d]
    return "(" + ", ".join(dims) + ("," if len(dims) == 1 else "") + ")"


def _more(n: int, what: str) -> str:
    return f" (and {n} more {what})" if n else ""


def mismatch_message(
    source: str | Path,
    shapes: list[tuple[str, Any, Any]],
    missing: list[str],
    unexpected: list[str],
) -> str:
    """One line for weights that do not fit: the first shape mismatch, else the first missing, else unexpected key.

    Args:
        shapes: (key, shape in the checkpoint, shape in the model), in the model's order.
        missing: model keys absent from the checkpoint; unexpected: checkpoint keys the model lacks.
    """
    head = f"{source}: checkpoint weights do not fit the model built from its config: "
    if shapes:
        key, saved, wanted = shapes[0]
        return (
            head
            + f"{key} has shape {_shape(saved)} in the checkpoint but {_shape(wanted)} in the model"
            + _more(len(shapes) - 1, "shape mismatches")
        )
    if missing:
        return head + f"{missing[0]} is missing from the checkpoint" + _more(len(missing) - 1, "missing keys")
    return head + f"{unexpected[0]} is not a key of the model" + _more(len(unexpected) - 1, "unexpected keys")


def check_state_dict(model: nn.Module, state: Mapping[str, Any], source: str | Path) -> None:
    """Check that ``state`` loads strictly into ``model``: same keys, same shapes.

    Args:
        model: the module the weights are meant for.
        state: a state dict (name -> tensor).
        source: the file (or a label such as ``"ckpt.pt [ema]"``) named in the error.

    Raises:
        ValueError: one line naming ``source``, the first differing key (model order) and both shapes, or the
            first missing / unexpected key, with how many more there are.
    """
    expected = model.state_dict()
    shapes = [
        (k, tuple(state[k].shape), tuple(v.shape))
        for k, v in expected.items()
        if k in state and hasattr(state[k], "shape") and tuple(state[k].shape) != tuple(v.shape)
    ]
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    if shapes or missing or unexpected:
        raise ValueError(mismatch_message(source, shapes, missing, unexpected))


def describe_load_error(source: str | Path, exc: RuntimeError) -> str | None:
    """The one-line message for the RuntimeError of a strict ``load_state_dict``; None for any other error."""
    text = str(exc)
    if "Error(s) in loading state_dict" not in text:
        return None
    shapes = _SIZE.findall(text)
    keys = {kind: [k.strip(' ".') for k in rest.split(",") if k.strip(' ".')] for kind, rest in _KEYS.findall(text)}
    if not (shapes or keys):
        detail = text.splitlines()[-1].strip()
        return f"{source}: checkpoint weights do not fit the model built from its config ({detail})"
    return mismatch_message(source, shapes, keys.get("Missing", []), keys.get("Unexpected", []))


@contextmanager
def readable_load_errors(source: str | Path) -> Iterator[None]:
    """Turn a strict ``load_state_dict`` failure inside the block into one ``ValueError`` line naming ``source``."""
    try:
        yield
    except RuntimeError as exc:
        message = describe_load_error(source, exc)
        if message is None:
            raise
        raise ValueError(message) from None


def load_weights(model: nn.Module, state: dict[str, Any], path: str | Path, use_ema: bool = True) -> None:
    """Put a checkpoint's deployable weights (EMA when present and ``use_ema``) into ``model``, strictly; weights
    that do not fit name ``path``, the first differing key and both shapes."""
    weights = deployable_weights(state, use_ema)
    check_state_dict(model, weights, path)
    model.load_state_dict(weights)


# Beyond this magnitude a float32 weight is not a trained value but damage (1e30-scaled weights overflow to inf).
MAX_WEIGHT_MAGNITUDE = 1e12


def check_finite_weights(model: nn.Module, path: str | Path) -> None:
    """Refuse, naming the file and the first bad tensor, weights or buffers that are NaN, infinite or absurdly large:
    such a model predicts NaN/inf depth, which must never reach a user's files with exit status 0."""
    for name, tensor in [*model.named_parameters(), *model.named_buffers()]:
        if not tensor.is_floating_point() or tensor.numel() == 0:
            continue
        values = tensor.detach()
        if not torch.isfinite(values).all():
            raise ValueError(f"{path}: weight {name} holds NaN or infinite values; the file is damaged")
        if values.abs().max() > MAX_WEIGHT_MAGNITUDE:
            raise ValueError(
                f"{path}: weight {name} holds values up to {float(values.abs().max()):.3g}, beyond any trained model "
                f"(> {MAX_WEIGHT_MAGNITUDE:g}); the file is damaged"
            )


def load_model(path: str | Path, use_ema: bool = True) -> tuple[nn.Module, Config]:
    """Rebuild the deployable model of a checkpoint file or model folder, in eval mode, with its Config.

    The model is built from the checkpoint's config without pretrained weights (they come from the checkpoint);
    EMA weights are used when present and ``use_ema``. Weights that do not fit name the first differing key.

    Raises:
        FileNotFoundError / ValueError: naming ``path`` (missing, unsafe, not deployable, weights do not fit).
    """
    state = read_checkpoint(path)
    kind = state["kind"]
    if not kind.deployable:
        hint = "use its acclimated.pt with distill.acclimated_checkpoint" if kind.value.startswith("acclim") else ""
        raise ValueError(f"{path}: a {kind.value} checkpoint holds no deployable depth model {hint}".rstrip())
    try:
        cfg = config_from_dict(state["config"])
    except ValueError as exc:  # ConfigError: a wrong key or type in the saved config (a foreign or edited file)
        raise ValueError(f"{path}: its saved config does not load ({exc})") from None
    if kind == CheckpointKind.STUDENT:
        model: nn.Module = build_student(cfg.model, load_weights=False)
        model.disdepth_config = state["config"]  # so model.save_pretrained / push_to_hub need no config
    else:
        model = build_teacher(cfg.teacher, load_weights=False)
    load_weights(model, state, path, use_ema)
    check_finite_weights(model, path)
    saved = state.get("input_spec")
    if saved and InputSpec.from_dict(saved) != model.input_spec:
        log.warning("%s: saved input spec %s differs from the rebuilt model's %s", path, saved, model.input_spec)
    return model.eval(), cfg
