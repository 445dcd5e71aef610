"""Which module's output goes straight into which other module, found by running the model once with hooks.

The eager inference rewrites (``deploy/inference.py``: a conv and its BatchNorm folded; ``deploy/conv_activation.py``:
a conv and its ReLU computed in one call) need pairs (producer, consumer) where the consumer's input is exactly the
producer's output. Hooks see that inside any model (timm backbones included) without tracing a graph.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn


def direct_pairs(
    model: nn.Module,
    example: torch.Tensor,
    is_producer: Callable[[nn.Module], bool],
    is_consumer: Callable[[nn.Module], bool],
) -> list[tuple[str, str]]:
    """(producer name, consumer name) for every consumer whose first input is exactly a producer's output in one
    forward of ``example`` (in inference mode), in the order the consumers ran.

    Modules called more than once per forward (shared) are left out: rewriting one call would change the others.
    Whether something else also reads the producer's output cannot be seen from hooks; the callers check the rewritten
    model's output instead.
    """
    produced_by: dict[int, tuple[str, torch.Tensor]] = {}  # id(output) -> (producer name, output kept alive)
    calls: dict[str, int] = {}
    found: list[tuple[str, str]] = []
    handles = []

    def after_producer(name: str):
        def hook(_module: nn.Module, _inputs: tuple, output: torch.Tensor) -> None:
            calls[name] = calls.get(name, 0) + 1
            produced_by[id(output)] = (name, output)

        return hook

    def before_consumer(name: str):
        def hook(_module: nn.Module, inputs: tuple) -> None:
            calls[name] = calls.get(name, 0) + 1
            source = produced_by.get(id(inputs[0]))
            if source is not None and source[1] is inputs[0]:
                found.append((source[0], name))

        return hook

    for name, module in model.named_modules():
        if is_producer(module):
            handles.append(module.register_forward_hook(after_producer(name)))
        elif is_consumer(module):
            handles.append(module.register_forward_pre_hook(before_consumer(name)))
    try:
        with torch.inference_mode():
            model(example)
    finally:
        for handle in handles:
            handle.remove()
    return [(p, c) for p, c in found if calls[p] == 1 and calls[c] == 1]


def set_submodule(model: nn.Module, name: str, module: nn.Module) -> None:
    """Put ``module`` at the dotted ``name`` inside ``model``."""
    parent, _, leaf = name.rpartition(".")
    setattr(model.get_submodule(parent) if parent else model, leaf, module)
