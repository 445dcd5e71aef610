"""Eager CPU inference without training-time overhead: BatchNorm folded into its conv, channels-last memory.

A trained student still runs every BatchNorm as its own op in eager PyTorch (a quarter of a 480x640 forward on this
project's CPU), and PyTorch's oneDNN convolutions run fastest on channels-last (NHWC) tensors. ONNX export folds
BatchNorm by itself; this module does the same for eager inference (``DepthPredictor``, ``disdepth predict``,
``benchmarks/student_latency.py``):

- :func:`fold_batchnorm` finds every Conv2d whose output goes straight into a BatchNorm by running the model once with
  hooks (so it needs no graph tracing and works inside timm backbones), folds each pair with PyTorch's
  ``fuse_conv_bn_eval`` and replaces the BatchNorm by what it ran after normalising (nothing, or timm's
  activation in ``BatchNormAct2d``).
- :func:`optimize_for_inference` rewrites the decoder's nearest-upsampling blocks (``deploy/upsample_fusion.py``: the
  upsampled conv as a stride-2 transposed conv, exact), folds, computes each ReLU / ReLU6 inside the conv before it
  (``deploy/conv_activation.py``, exact), runs timm's padded stride-2 ``Conv2dSame`` convs without their padding copy
  (``deploy/same_padding.py``, exact), converts to channels-last, and checks the result against the model it started
  from on an example input. A fold that changes the depth (something else reads that
  conv's raw output; hooks cannot see that) is undone pair by pair; any other mismatch keeps the original model (and
  says so in the log).
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Callable

import torch
from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_eval

from disdepth.deploy.conv_activation import convs_to_onednn, fuse_conv_activations
from disdepth.deploy.module_pairs import direct_pairs, set_submodule
from disdepth.deploy.same_padding import rewrite_same_padding
from disdepth.deploy.upsample_fusion import fuse_decoder_upsampling

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
    return direct_pairs(model, example, lambda m: isinstance(m, nn.Conv2d), lambda m: isinstance(m, nn.BatchNorm2d))


def fold_batchnorm(
    model: nn.Module, example: torch.Tensor, output_unchanged: Callable[[nn.Module], bool] | None = None
) -> tuple[nn.Module, int]:
    """A copy of ``model`` (in eval mode) with every conv -> BatchNorm pair folded into one conv; and the number folded.

    Args:
        model: any module; it is not changed.
        example: an input it accepts (e.g. (1, 3, 64, 64)), used once to find the pairs.
        output_unchanged: when given, checked after each fold (one forward each); a fold that fails it is undone —
            something else also reads that conv's raw output (timm's GhostNet returns its stem conv's output as the
            stride-2 feature, before the BatchNorm).
    """
    folded = copy.deepcopy(model).eval()
    count = 0
    for conv_name, bn_name in conv_bn_pairs(folded, example):
        conv, bn = folded.get_submodule(conv_name), folded.get_submodule(bn_name)
        replacement = _bn_replacement(bn)
        if replacement is None:
            continue
        set_submodule(folded, conv_name, fuse_conv_bn_eval(conv, bn))  # a new conv: ``conv`` is kept as it was
        set_submodule(folded, bn_name, replacement)
        if output_unchanged is not None and not output_unchanged(folded):
            set_submodule(folded, conv_name, conv)
            set_submodule(folded, bn_name, bn)
            continue
        count += 1
    return folded, count


def depth_of(output: torch.Tensor | dict) -> torch.Tensor:
    """The depth of a model's output: its ``depth`` entry (a student or teacher) or the tensor itself (a wrapper)."""
    return output["depth"] if isinstance(output, dict) else output


def _checked_diff(candidate: nn.Module, max_diff: Callable[[nn.Module, torch.Tensor], float], x: torch.Tensor) -> float:
    """``max_diff(candidate, x)``, or NaN when the candidate raises (a oneDNN build without the fused kernel an op asks
    for): a rewrite that cannot run here is dropped like one that changes the depth, instead of failing the load."""
    try:
        return max_diff(candidate, x)
    except RuntimeError as err:
        log.debug("inference rewrite failed to run (%s)", err)
        return float("nan")


def optimize_for_inference(
    model: nn.Module,
    example: torch.Tensor,
    rtol: float = 1e-3,
    atol: float = 1e-4,
    fuse_upsampling: bool = True,
    fuse_activations: bool = True,
    rewrite_same: bool = True,
    onednn_convs: bool = True,
) -> tuple[nn.Module, bool]:
    """Decoder upsampling fused, BatchNorm folded and channels-last weights, checked against ``model`` on ``example``.

    The decoder's nearest-upsampling blocks become :class:`~disdepth.deploy.upsample_fusion.FusedDecoderBlock` (their
    BatchNorms folded with them); then all other conv -> BatchNorm pairs are folded at once. If that changes the
    depth, they are folded one at a time, each kept only if the depth stays the same (one forward per pair, so only
    for models that need it). timm's stride-2 ``Conv2dSame`` convs (TF-ported encoders) then run without their padding
    copy (:func:`~disdepth.deploy.same_padding.rewrite_same_padding`), and each conv whose output goes straight into a
    ReLU / ReLU6 computes it inside the conv (:func:`~disdepth.deploy.conv_activation.fuse_conv_activations`; kept
    only if the depth stays the same); the other convs are run by oneDNN directly too
    (:func:`~disdepth.deploy.conv_activation.convs_to_onednn`, checked with the rest).

    Args:
        model: maps (B, 3, H, W) to depth (or a dict with ``depth``); not changed.
        example: (B, 3, H, W) input, e.g. a normalised random image at a multiple of 32.
        rtol, atol: allowed difference of the depth (metres) between the optimised and the original model.
        fuse_upsampling: rewrite the decoder's nearest-upsampling blocks (False: only fold and convert, for comparing).
        fuse_activations, rewrite_same, onednn_convs: the conv-activation fusion, the SAME-padding rewrite and the
            other convs run by oneDNN (False: without it, for comparing; ``benchmarks/eager_rewrites.py``).

    Returns:
        (the model to run, True) when the check passes; (``model`` itself in eval mode, False) when it does not. Feed
        the optimised model channels-last input (``x.contiguous(memory_format=torch.channels_last)``) for the speed.
    """
    model = model.eval()
    with torch.inference_mode():
        want = depth_of(model(example))

    def max_diff(candidate: nn.Module, x: torch.Tensor) -> float:
        with torch.inference_mode():
            got = depth_of(candidate(x))
        if got.shape != want.shape or not torch.allclose(got, want, rtol=rtol, atol=atol):
            return (got - want).abs().max().item() if got.shape == want.shape else float("nan")
        return 0.0

    fused, n_fused = fuse_decoder_upsampling(model) if fuse_upsampling else (model, 0)
    optimized, count = fold_batchnorm(fused, example)
    if max_diff(optimized, example):
        optimized, count = fold_batchnorm(fused, example, lambda folded: not max_diff(folded, example))
    # Both after folding: the folded conv is what both SAME branches run and what feeds the activation. The SAME
    # rewrite first: its stride-2 convs (the stem and each stage's first depthwise conv, on the largest maps) then
    # take their activation inside too (timm's Conv2dSame cannot).
    optimized, n_same = rewrite_same_padding(optimized) if rewrite_same else (optimized, 0)

    def kept_if_unchanged(current: nn.Module, rewritten: tuple[nn.Module, int], what: str) -> tuple[nn.Module, int]:
        """The rewritten model and its count, or ``current`` and 0 where the rewrite changed the depth or failed
        (e.g. a oneDNN build without the fused kernel)."""
        candidate, n = rewritten
        if n and _checked_diff(candidate, max_diff, example):
            log.debug("%s changed the output or failed; left out", what)
            return current, 0
        return candidate, n

    n_act = n_onednn = 0
    if fuse_activations:
        fused_act = fuse_conv_activations(optimized, example)
        optimized, n_act = kept_if_unchanged(optimized, fused_act, "conv-activation fusion")
    if onednn_convs:
        optimized, n_onednn = kept_if_unchanged(optimized, convs_to_onednn(optimized), "the other convs on oneDNN")
    optimized = optimized.to(memory_format=torch.channels_last)
    diff = _checked_diff(optimized, max_diff, example.contiguous(memory_format=torch.channels_last))
    if diff:  # NaN (it failed to run) counts as changed
        log.warning("inference optimisation changed the output (max |diff| %.3g); running the model unchanged", diff)
        return model, False
    log.debug(
        "inference optimisation: %d decoder blocks fused, %d BatchNorms folded, %d activations in their convs, %d SAME "
        "convs rewritten, %d other convs on oneDNN, channels-last",
        n_fused,
        count,
        n_act,
        n_same,
        n_onednn,
    )
    return optimized, True
