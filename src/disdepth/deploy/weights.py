"""Weights that do not fit their model, said in one line: the first differing key and both shapes.

:func:`check_state_dict` checks a state dict against a model before loading it (for eval, resume, any
loader); :func:`readable_load_errors` turns the ``RuntimeError`` of a strict ``load_state_dict`` raised
anywhere inside it into the same one-line ``ValueError``; :func:`load_model` is
``engine.checkpoint.load_model_from_checkpoint`` under it.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from torch import nn

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


def load_model(path: str | Path, use_ema: bool = True) -> tuple[nn.Module, Any]:
    """``load_model_from_checkpoint(path, use_ema)`` with weights that do not fit reported in one line."""
    from disdepth.engine.checkpoint import load_model_from_checkpoint

    with readable_load_errors(path):
        return load_model_from_checkpoint(path, use_ema=use_ema)
