"""CNN encoders: timm ImageNet backbones with ``features_only=True``.

The encoder returns a feature pyramid (one map per level, shallow to deep) and states each level's
channels and stride in ``feature_info``, so decoders, LG-Conv placement and distillation never
guess shapes.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import timm
import torch
from torch import nn

from disdepth.models.spec import IMAGENET_MEAN, IMAGENET_STD

# Encoders we test and document. Any timm CNN with ``features_only`` support also works.
SUPPORTED_ENCODERS: dict[str, str] = {
    "mobilenetv2_100": "MobileNetV2 1.0 (inverted residuals, depthwise 3x3)",
    "mobilenetv3_large_100": "MobileNetV3-Large 1.0 (SE, hard-swish)",
    "resnet18": "ResNet-18 (basic blocks)",
    "resnet34": "ResNet-34 (basic blocks)",
    "efficientnet_b0": "EfficientNet-B0 (MBConv + SE)",
    "tf_efficientnet_lite0": "EfficientNet-Lite0 (no SE, ReLU6; offline weights available)",
    "ghostnet_100": "GhostNet 1.0 (ghost modules)",
    "regnetx_004": "RegNetX-400MF (grouped convs)",
}


def mark_from_scratch(*modules: nn.Module) -> None:
    """Mark modules that are added inside a pretrained backbone and start from random weights.

    The optimiser gives a pretrained encoder ``lr * train.encoder_lr_scale`` to protect its ImageNet weights;
    new modules inside it (LG-Conv global branches, a hybrid teacher's transformer blocks, ViT reassemble
    layers) have nothing to protect and learn at the full ``lr`` (``engine.optim.param_groups``).
    """
    for module in modules:
        module.from_scratch = True


def is_from_scratch(module: nn.Module) -> bool:
    return bool(getattr(module, "from_scratch", False))


def clear_from_scratch(model: nn.Module) -> None:
    """Unmark every module once trained weights are loaded: fine-tuning scales the whole backbone alike."""
    for module in model.modules():
        if is_from_scratch(module):
            module.from_scratch = False


@dataclass(frozen=True)
class FeatureInfo:
    """One pyramid level: ``channels`` of the map and its ``stride`` w.r.t. the input (pixels)."""

    channels: int
    stride: int


def encoder_normalization(name: str) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """(mean, std) the ImageNet weights of timm model ``name`` expect (ImageNet's unless timm says otherwise).

    Read from timm's pretrained config without building the model, so datasets can be made before the model.
    """
    cfg = timm.models.get_pretrained_cfg(name.split(".")[0])
    mean = getattr(cfg, "mean", None) or IMAGENET_MEAN
    std = getattr(cfg, "std", None) or IMAGENET_STD
    return tuple(float(v) for v in mean), tuple(float(v) for v in std)


class TimmEncoder(nn.Module):
    """A timm backbone returning its feature pyramid.

    Args:
        name: timm model name (e.g. ``mobilenetv2_100``).
        pretrained: load timm's ImageNet weights from the hub (needs network access).
        weights: optional local weights file loaded after construction (see ``models.pretrained``).
        out_indices: which timm feature levels to return; default all (strides 2..32 for most CNNs).
    """

    def __init__(
        self,
        name: str,
        pretrained: bool = False,
        weights: str | Path | None = None,
        out_indices: tuple[int, ...] | None = None,
    ) -> None:
        super().__init__()
        kwargs = {"out_indices": out_indices} if out_indices is not None else {}
        try:
            self.body = timm.create_model(name, pretrained=pretrained, features_only=True, **kwargs)
        except RuntimeError as exc:
            if "Unknown model" in str(exc):
                raise ValueError(
                    f"model.encoder={name!r}: not a timm model; try one of {list(SUPPORTED_ENCODERS)}"
                ) from exc
            raise
        if weights:
            from disdepth.models.pretrained import load_encoder_weights  # only when a local weights file is used

            load_encoder_weights(self.body, name, weights)
        self.name = name
        self.feature_info = [
            FeatureInfo(int(c), int(s))
            for c, s in zip(self.body.feature_info.channels(), self.body.feature_info.reduction(), strict=True)
        ]
        self.mean, self.std = encoder_normalization(name)

    def forward(self, image: torch.Tensor) -> list[torch.Tensor]:
        """image: (B, 3, H, W) normalised -> list of (B, C_i, H/s_i, W/s_i), shallow to deep."""
        return list(self.body(image))
