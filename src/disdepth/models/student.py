"""The DisDepth student: timm CNN encoder (optionally with LG-Conv) -> U-Net decoder -> depth head."""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from disdepth.config import ModelConfig
from disdepth.config.schema import PACKAGE_WEIGHTS
from disdepth.models.decoder import UNetDecoder
from disdepth.models.encoder import FeatureInfo, TimmEncoder, encoder_normalization
from disdepth.models.heads import BinsHead, PointwiseHead, SigmoidHead
from disdepth.models.hub import StudentHubMixin
from disdepth.models.lgconv import LGConvPolicy, convert_to_lgconv, lgconv_parameters
from disdepth.models.lite_decoder import LiteDecoder
from disdepth.models.peer_decoders import Monodepth2Decoder, NNConv5Decoder
from disdepth.models.spec import InputSpec

log = logging.getLogger(__name__)
_ANNOUNCED_LGCONV: set[tuple[str, tuple[str, ...]]] = set()  # (encoder, converted names) logged so far

# Published decoders (models/peer_decoders.py), built at their papers' widths.
PEER_DECODERS: dict[str, type[nn.Module]] = {"nnconv5": NNConv5Decoder, "monodepth2": Monodepth2Decoder}


class DepthStudent(nn.Module, StudentHubMixin):
    """Monocular metric depth CNN.

    ``forward(image)`` with image (B, 3, H, W), normalised with ``encoder.mean/std``, returns a dict:
        depth: (B, 1, H, W) metres, at input resolution;
        encoder_features: list of (B, C_i, H/s_i, W/s_i), shallow to deep (``encoder.feature_info``);
        decoder_features: list, deep to shallow (``decoder.feature_info``);
        bin_centers: (B, n_bins) metres — bins head only.
    """

    def __init__(self, encoder: TimmEncoder, decoder: nn.Module, head: nn.Module) -> None:
        super().__init__()
        self.encoder, self.decoder, self.head = encoder, decoder, head
        self.lgconv_names: list[str] = []
        # A relative student (set by build_student): output known up to relative_fit in relative_space.
        self.metric, self.relative_space, self.relative_fit = True, "disparity", "scale_shift"
        self.disdepth_config: dict | None = None  # the resolved config it was loaded with (models/hub.py)

    def copy_attributes(self, other: DepthStudent) -> DepthStudent:
        """Take what ``build_student`` sets besides the modules (LG-Conv names, output semantics) from ``other``."""
        self.lgconv_names = list(other.lgconv_names)
        self.metric, self.relative_space, self.relative_fit = other.metric, other.relative_space, other.relative_fit
        return self

    @property
    def feature_info(self) -> list[FeatureInfo]:
        """Encoder pyramid levels (what distillation matches against the teacher)."""
        return self.encoder.feature_info

    @property
    def input_spec(self) -> InputSpec:
        """Normalisation of the encoder's weights, the head's depth range, and the encoder's deepest stride."""
        return InputSpec(
            self.encoder.mean,
            self.encoder.std,
            self.head.min_depth,
            self.head.max_depth,
            max(f.stride for f in self.feature_info),
            self.metric,
            self.relative_space,
            self.relative_fit,
        )

    def forward(self, image: torch.Tensor) -> dict[str, torch.Tensor | list[torch.Tensor]]:
        enc = self.encoder(image)
        dec = self.decoder(enc)
        out: dict = dict(self.head(dec[-1]))
        if out["depth"].shape[-2:] != image.shape[-2:]:  # a head at full resolution (FastDepth's) needs no resize
            out["depth"] = F.interpolate(out["depth"], size=image.shape[-2:], mode="bilinear", align_corners=False)
        out["encoder_features"] = enc
        out["decoder_features"] = dec
        return out


def build_student(cfg: ModelConfig, load_weights: bool = True) -> DepthStudent:
    """Build a student from its config section (the only place a ModelConfig is read).

    ``load_weights=False`` skips the ImageNet weights (``model.pretrained``/``weights``): for a model whose weights
    come from a checkpoint next.
    """
    if not load_weights:
        cfg = dataclasses.replace(cfg, pretrained="none", weights="")
    if cfg.pretrained == "file" and not cfg.weights:
        raise ValueError("model.pretrained='file' needs model.weights=<path to a weights file>")
    # A weights file of the user's with another pretrained setting is a mistake; the default (the packaged Lite0
    # weights) is simply unused, so that model.pretrained=none alone gives random weights.
    if cfg.weights and cfg.weights != PACKAGE_WEIGHTS and cfg.pretrained != "file":
        raise ValueError(f"model.weights={cfg.weights!r} is set but model.pretrained={cfg.pretrained!r}; use 'file'")
    if cfg.weights and not cfg.weights.startswith("package:") and not Path(cfg.weights).is_file():
        raise FileNotFoundError(f"model.weights: file not found: {cfg.weights}")
    if not 0 < cfg.min_depth < cfg.max_depth:
        raise ValueError(f"model.min_depth/max_depth: need 0 < min < max, got {cfg.min_depth}, {cfg.max_depth}")
    weights = cfg.weights if cfg.pretrained == "file" else None
    encoder = TimmEncoder(cfg.encoder, pretrained=cfg.pretrained == "timm", weights=weights)
    names: list[str] = []
    if cfg.lgconv.enabled:
        lg = cfg.lgconv
        policy = LGConvPolicy(
            tuple(lg.strides), lg.min_channels, lg.include_depthwise, lg.heads, lg.reduction, lg.min_width
        )
        names = convert_to_lgconv(encoder.body, policy)
        if not names:  # e.g. MobileNetV3-Large: its stride-32 stage has 5x5 depthwise convs only
            log.warning(
                "model.lgconv: no 3x3 conv of %s matches the policy (strides %s, >= %d input channels): LG-Conv adds "
                "nothing; try model.lgconv.strides=[16,32]",
                cfg.encoder,
                list(lg.strides),
                lg.min_channels,
            )
        # A run builds the same student several times (train, evaluate, load best, export): say it once.
        announce = log.info if (cfg.encoder, tuple(names)) not in _ANNOUNCED_LGCONV else log.debug
        _ANNOUNCED_LGCONV.add((cfg.encoder, tuple(names)))
        announce(
            "LG-Conv: converted %d convs of %s (+%d params): %s",
            len(names),
            cfg.encoder,
            lgconv_parameters(encoder),
            ", ".join(names),
        )
    if cfg.decoder == "unet":
        decoder: nn.Module = UNetDecoder(
            encoder.feature_info,
            cfg.decoder_channels,
            cfg.decoder_upsample,
            cfg.decoder_conv_first_strides,
        )
    elif cfg.decoder == "lite":
        decoder = LiteDecoder(encoder.feature_info, cfg.lite_channels, upsample=cfg.lite_upsample)
    else:
        decoder = PEER_DECODERS[cfg.decoder](encoder.feature_info)
    if cfg.head == "bins":
        head: nn.Module = BinsHead(decoder.out_channels, cfg.n_bins, cfg.min_depth, cfg.max_depth)
    elif cfg.head == "pointwise":
        head = PointwiseHead(decoder.out_channels, cfg.min_depth, cfg.max_depth)
    else:
        head = SigmoidHead(decoder.out_channels, cfg.min_depth, cfg.max_depth)
    model = DepthStudent(encoder, decoder, head)
    model.lgconv_names = names
    model.metric, model.relative_space, model.relative_fit = cfg.metric, cfg.relative_space, cfg.relative_fit
    return model


def student_input_spec(cfg: ModelConfig) -> InputSpec:
    """The :class:`InputSpec` of the student ``cfg`` describes, without building it (equals ``input_spec``)."""
    mean, std = encoder_normalization(cfg.encoder)
    # every timm CNN encoder ends at stride 32
    return InputSpec(mean, std, cfg.min_depth, cfg.max_depth, 32, cfg.metric, cfg.relative_space, cfg.relative_fit)


def count_parameters(model: nn.Module, trainable_only: bool = False) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)
