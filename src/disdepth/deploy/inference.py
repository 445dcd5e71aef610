"""Eager CPU inference without training-time overhead: BatchNorm folded into its conv, channels-last memory.

A trained student still runs every BatchNorm as its own op in eager PyTorch (a quarter of a 480x640 forward on this
project's CPU), and PyTorch's oneDNN convolutions run fastest on channels-last (NHWC) tensors. ONNX export folds
BatchNorm by itself; this module does the same for eager inference (``DepthPredictor``, ``disdepth predict``,
``benchmarks/student_latency.py``):

- :func:`fold_batchnorm` finds every Conv2d whose output goes straight into a BatchNorm by running the model once with
  hooks (so it needs no graph tracing and works inside timm backbones), folds each pair with PyTorch's
  ``fuse_conv_bn_eval`` and replaces the BatchNorm by what it ran after normalising (nothing, or timm's
  activation in ``BatchNormAct2d``).
- :func:`optimize_for_inference` folds, converts to channels-last, and checks the result against the model it started
  from on an example input; a mismatch keeps the original model (and says so in the log).
"""

from __future__ import annotations

import copy
import logging

import torch
from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_eval

log = logging.getLogger(__name__)


def _bn_replacement(bn: nn.BatchNorm2d) -> nn.Module | None:
    """What runs in place of ``bn`` once folded: Identity for a plain BatchNorm2d, drop + act for timm's
    ``BatchNormAct2d`` (which normalises, then applies ``drop`` and ``act``); None for a subclass we do not know."""
    if type(bn) is nn.BatchNorm2d:
        return nn.Identity()
    if type(bn).__name__ == "BatchNormAct2d" and hasattr(bn, "drop") and hasattr(bn, "act"):
        return nn.Sequential(bn.drop, bn.act)
    return None


def conv_bn_pairs(model: nn.Module, example: torch.Tensor) -> list[tuple[str, str]]:
    """(conv name, batchnorm name) for every BatchNorm2d whose input is exactly a Conv2d's output in one forward.

    Modules called more than once per forward (shared) are left out: folding one call would change the others.
    Whether something else also reads the conv's output cannot be seen from hooks; :func:`optimize_for_inference`
    checks the folded model's output instead.
    """
    produced_by: dict[int, tuple[str, torch.Tensor]] = {}  # id(output) -> (conv name, output kept alive)
    calls: dict[str, int] = {}
    found: list[tuple[str, str]] = []
    handles = []

    def after_conv(name: str):
        def hook(_module: nn.Module, _inputs: tuple, output: torch.Tensor) -> None:
            calls[name] = calls.get(name, 0) + 1
            produced_by[id(output)] = (name, output)

        return hook

    def before_bn(name: str):
        def hook(_module: nn.Module, inputs: tuple) -> None:
            calls[name] = calls.get(name, 0) + 1
            source = produced_by.get(id(inputs[0]))
            if source is not None and source[1] is inputs[0]:
                found.append((source[0], name))

        return hook

    for name, module in model.named_modules():
        if isinstance(module, nn.Conv2d):
            handles.append(module.register_forward_hook(after_conv(name)))
        elif isinstance(module, nn.BatchNorm2d):
            handles.append(module.register_forward_pre_hook(before_bn(name)))
    try:
        with torch.inference_mode():
            model(example)
    finally:
        for handle in handles:
            handle.remove()
    return [(c, b) for c, b in found if calls[c] == 1 and calls[b] == 1]


def _set_submodule(model: nn.Module, name: str, module: nn.Module) -> None:
    parent, _, leaf = name.rpartition(".")
    setattr(model.get_submodule(parent) if parent else model, leaf, module)


def fold_batchnorm(model: nn.Module, example: torch.Tensor) -> tuple[nn.Module, int]:
    """A copy of ``model`` (in eval mode) with every conv -> BatchNorm pair folded into one conv; and the number folded.

    Args:
        model: any module; it is not changed.
        example: an input it accepts (e.g. (1, 3, 64, 64)), used once to find the pairs.
    """
    folded = copy.deepcopy(model).eval()
    count = 0
    for conv_name, bn_name in conv_bn_pairs(folded, example):
        bn = folded.get_submodule(bn_name)
        replacement = _bn_replacement(bn)
        if replacement is None:
            continue
        _set_submodule(folded, conv_name, fuse_conv_bn_eval(folded.get_submodule(conv_name), bn))
        _set_submodule(folded, bn_name, replacement)
        count += 1
    return folded, count


def depth_of(output: torch.Tensor | dict) -> torch.Tensor:
    return output["depth"] if isinstance(output, dict) else output


def optimize_for_inference(
    model: nn.Module, example: torch.Tensor, rtol: float = 1e-3, atol: float = 1e-4
) -> tuple[nn.Module, bool]:
    """BatchNorm folded and channels-last weights, checked against ``model`` on ``example``.

    Args:
        model: maps (B, 3, H, W) to depth (or a dict with ``depth``); not changed.
        example: (B, 3, H, W) input, e.g. a normalised random image at a multiple of 32.
        rtol, atol: allowed difference of the depth (metres) between the optimised and the original model.

    Returns:
        (the model to run, True) when the check passes; (``model`` itself in eval mode, False) when it does not. Feed
        the optimised model channels-last input (``x.contiguous(memory_format=torch.channels_last)``) for the speed.
    """
    model = model.eval()
    optimized, count = fold_batchnorm(model, example)
    optimized = optimized.to(memory_format=torch.channels_last)
    with torch.inference_mode():
        want = depth_of(model(example))
        got = depth_of(optimized(example.contiguous(memory_format=torch.channels_last)))
    if got.shape != want.shape or not torch.allclose(got, want, rtol=rtol, atol=atol):
        diff = (got - want).abs().max().item() if got.shape == want.shape else float("nan")
        log.warning("inference optimisation changed the output (max |diff| %.3g); running the model unchanged", diff)
        return model, False
    log.debug("inference optimisation: %d BatchNorms folded, channels-last", count)
    return optimized, True
