"""Teachers we train ourselves: a timm transformer backbone (or a hybrid CNN-stem transformer) -> DPT-style
decoder -> the student's depth heads, so a teacher predicts metric depth exactly like a student does.

Backbones (each returns a pyramid at strides 4, 8, 16, 32 and states it in ``feature_info``):

* :class:`HierarchicalBackbone` - Swin, PVTv2 (and any timm model whose ``features_only`` pyramid has those
  strides), via ``features_only=True``. Swin is built with ``dynamic_img_size=True`` so it accepts any input
  size (attention masks are rebuilt per size); its NHWC outputs are permuted to NCHW.
* :class:`ViTBackbone` - plain ViTs (``vit_*``, ``deit*``, ``eva*``), tokens of 4 blocks from
  ``forward_intermediates`` (no hooks), resampled DPT-style by :class:`~disdepth.teachers.decoders.ViTReassemble`.
* :class:`HybridBackbone` - a timm CNN stem (default EfficientNet-Lite0, whose ImageNet weights install
  offline) with transformer blocks at stride 16, as in DPT-Hybrid.

Size rule: inputs are zero-padded to a multiple of 32 (every stride-32 pyramid needs it, and Swin's window
partition / patch merging then never has to pad), outputs are cropped back; features have
ceil(H/s) x ceil(W/s) cells like timm CNN students.
"""

from __future__ import annotations

from pathlib import Path

import timm
import torch
import torch.nn.functional as F
from timm.models import is_model_in_modules
from timm.models.vision_transformer import Block
from torch import nn

from disdepth.models.encoder import FeatureInfo, TimmEncoder, encoder_normalization, mark_from_scratch
from disdepth.models.heads import HEADS, BinsHead
from disdepth.teachers.base import PYRAMID_STRIDES, Teacher, pad_to_multiple, pyramid_sizes, resample
from disdepth.teachers.decoders import DPTDecoder, ViTReassemble

# timm modules whose models are single-scale token transformers with ``forward_intermediates``.
VIT_MODULES = ("vision_transformer", "vision_transformer_hybrid", "deit", "eva")


def _create(name: str, pretrained: bool, weights: str | Path | None, **kwargs) -> nn.Module:
    """timm.create_model with local weights through timm's own loader (``pretrained_cfg_overlay=file``), so
    timm's checkpoint filters (position-embedding resize, Swin bias tables) apply."""
    if weights:
        if not Path(weights).is_file():
            raise FileNotFoundError(f"teacher.weights: file not found: {weights}")
        kwargs["pretrained_cfg_overlay"] = {"file": str(weights)}
        pretrained = True
    try:
        return timm.create_model(name, pretrained=pretrained, **kwargs)
    except RuntimeError as exc:
        if "Unknown model" in str(exc):
            raise ValueError(f"teacher.name={name!r}: not a timm model (see docs/teachers.md for the list)") from exc
        raise


class HierarchicalBackbone(nn.Module):
    """A timm hierarchical transformer (Swin, PVTv2...) with ``features_only=True``.

    Args:
        name: timm model name, e.g. ``swin_tiny_patch4_window7_224``, ``pvt_v2_b2``.
        pretrained: timm hub ImageNet weights (network).
        weights: local timm weights file.
        drop_path: stochastic depth rate.
        model_kwargs: extra timm constructor arguments (e.g. tiny ``embed_dim``/``depths`` in tests).
    """

    def __init__(
        self,
        name: str,
        pretrained: bool = False,
        weights: str | Path | None = None,
        drop_path: float = 0.0,
        **model_kwargs,
    ) -> None:
        super().__init__()
        kwargs = dict(model_kwargs)
        if name.startswith("swin"):
            # Any input size: attention masks built per size instead of fixed to img_size=224.
            kwargs.setdefault("dynamic_img_size", True)
        self.body = _create(name, pretrained, weights, features_only=True, drop_path_rate=drop_path, **kwargs)
        strides = list(self.body.feature_info.reduction())
        channels = list(self.body.feature_info.channels())
        missing = [s for s in PYRAMID_STRIDES if s not in strides]
        if missing:
            raise ValueError(f"teacher.name={name!r}: timm features have strides {strides}, need {PYRAMID_STRIDES}")
        self.levels = [strides.index(s) for s in PYRAMID_STRIDES]
        self.channels_last = getattr(self.body, "output_fmt", "NCHW") == "NHWC"
        self.feature_info = [
            FeatureInfo(int(channels[i]), s) for i, s in zip(self.levels, PYRAMID_STRIDES, strict=True)
        ]
        self.mean, self.std = encoder_normalization(name)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        """x: (B, 3, H, W), H and W multiples of 32 -> 4 maps (B, C_i, H/s_i, W/s_i)."""
        feats = self.body(x)
        feats = [feats[i] for i in self.levels]
        if self.channels_last:
            feats = [f.permute(0, 3, 1, 2).contiguous() for f in feats]
        return feats


class ViTBackbone(nn.Module):
    """A timm ViT whose tokens from 4 blocks become a stride 4/8/16/32 pyramid (DPT reassemble).

    Args:
        name: timm ViT name, e.g. ``vit_small_patch16_224``, ``vit_base_patch16_384``, ``test_vit``.
        pretrained, weights, drop_path: as :class:`HierarchicalBackbone`.
        layers: block indices read (default 4 evenly spaced ending at the last, e.g. 2, 5, 8, 11 of 12).
        channels: reassemble widths, shallow to deep (default [D/8, D/4, D/2, D]; DPT-Base uses 96...768).
        model_kwargs: extra timm constructor arguments.
    """

    def __init__(
        self,
        name: str,
        pretrained: bool = False,
        weights: str | Path | None = None,
        drop_path: float = 0.0,
        layers: list[int] | None = None,
        channels: list[int] | None = None,
        **model_kwargs,
    ) -> None:
        super().__init__()
        # dynamic_img_size interpolates position embeddings to any grid; dynamic_img_pad pads to the patch size.
        self.body = _create(
            name,
            pretrained,
            weights,
            num_classes=0,
            drop_path_rate=drop_path,
            dynamic_img_size=True,
            dynamic_img_pad=True,
            **model_kwargs,
        )
        depth = len(self.body.blocks)
        if not layers:  # evenly spaced, ending at the last block (repeats allowed for very shallow test models)
            layers = [max(0, round((i + 1) * depth / 4) - 1) for i in range(4)]
        layers = list(layers)
        if len(layers) != 4 or not all(0 <= i < depth for i in layers):
            raise ValueError(f"teacher.vit_layers={layers}: need 4 block indices in [0, {depth})")
        self.layers = layers
        # Drop the blocks after the last one read, the final norm and the classifier: no unused parameters.
        self.unique_layers = self.body.prune_intermediate_layers(sorted(set(layers)), prune_norm=True, prune_head=True)
        dim = int(self.body.embed_dim)
        channels = list(channels) if channels else [max(dim // 8, 16), max(dim // 4, 16), max(dim // 2, 16), dim]
        self.reassemble = ViTReassemble(dim, channels)
        mark_from_scratch(self.reassemble)  # new layers on pretrained tokens: full learning rate
        self.feature_info = self.reassemble.feature_info
        self.mean, self.std = encoder_normalization(name)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        """x: (B, 3, H, W), multiples of 32 -> 4 maps (B, C_i, H/s_i, W/s_i)."""
        maps = self.body.forward_intermediates(
            x, indices=self.unique_layers, output_fmt="NCHW", intermediates_only=True
        )
        maps = [maps[self.unique_layers.index(i)] for i in self.layers]
        grid = (x.shape[-2] // 16, x.shape[-1] // 16)
        # Patch sizes other than 16 (8, 14) give another token grid; bring it to the stride-16 grid.
        maps = [resample(m, grid) for m in maps]
        return self.reassemble(maps)


class HybridBackbone(nn.Module):
    """A pretrained timm CNN stem under transformer blocks (DPT-Hybrid's design, small).

    Levels: strides 4 and 8 are the stem's own features; the stem's stride-16 map is projected to ``dim``
    tokens, given a convolutional position encoding (a depthwise 3x3, CPVT - works at any size), and run
    through ``depth`` pre-norm transformer blocks (global attention); stride 32 is a stride-2 conv of the
    tokens plus a 1x1 projection of the stem's stride-32 map (so every pretrained stem weight is used).

    Args:
        stem: timm CNN name with ``features_only`` support (default ``tf_efficientnet_lite0``).
        pretrained: timm hub weights for the stem (network).
        weights: stem weights file (as the student's ``model.weights``, e.g. ``package:efficientnet-lite0``).
        dim, depth, heads: transformer width, blocks, attention heads.
        drop_path: stochastic depth, increasing linearly over the blocks.
    """

    def __init__(
        self,
        stem: str = "tf_efficientnet_lite0",
        pretrained: bool = False,
        weights: str | Path | None = None,
        dim: int = 384,
        depth: int = 6,
        heads: int = 6,
        drop_path: float = 0.0,
        mlp_ratio: float = 4.0,
    ) -> None:
        super().__init__()
        if dim % heads:
            raise ValueError(f"teacher.hybrid_dim={dim} must be divisible by teacher.hybrid_heads={heads}")
        self.stem = TimmEncoder(stem, pretrained=pretrained, weights=weights)
        strides = [f.stride for f in self.stem.feature_info]
        if any(s not in strides for s in PYRAMID_STRIDES):
            raise ValueError(f"teacher.name={stem!r}: hybrid stem has strides {strides}, needs {PYRAMID_STRIDES}")
        self.levels = [strides.index(s) for s in PYRAMID_STRIDES]
        c4, c8, c16, c32 = (self.stem.feature_info[i].channels for i in self.levels)
        self.embed = nn.Conv2d(c16, dim, 1)
        self.pos = nn.Conv2d(dim, dim, 3, padding=1, groups=dim)
        rates = torch.linspace(0, drop_path, depth).tolist() if depth else []
        self.blocks = nn.ModuleList(Block(dim, heads, mlp_ratio, qkv_bias=True, drop_path=r) for r in rates)
        self.norm = nn.LayerNorm(dim)
        self.down = nn.Conv2d(dim, dim, 3, stride=2, padding=1)
        self.context32 = nn.Conv2d(c32, dim, 1)
        # Only the stem is pretrained: the transformer part learns at the full rate, not encoder_lr_scale.
        mark_from_scratch(self.embed, self.pos, self.blocks, self.norm, self.down, self.context32)
        self.feature_info = [FeatureInfo(c4, 4), FeatureInfo(c8, 8), FeatureInfo(dim, 16), FeatureInfo(dim, 32)]
        self.mean, self.std = self.stem.mean, self.stem.std

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        """x: (B, 3, H, W), multiples of 32 -> 4 maps (B, C_i, H/s_i, W/s_i)."""
        stem = self.stem(x)
        f4, f8, f16, f32 = (stem[i] for i in self.levels)
        t = self.embed(f16)
        t = t + self.pos(t)
        b, d, h, w = t.shape
        tokens = t.flatten(2).transpose(1, 2)  # (B, h*w, D)
        for block in self.blocks:
            tokens = block(tokens)
        t = self.norm(tokens).transpose(1, 2).reshape(b, d, h, w)
        t32 = self.down(t) + self.context32(f32)
        return [f4, f8, t, t32]


def make_timm_backbone(
    name: str,
    pretrained: bool = False,
    weights: str | Path | None = None,
    drop_path: float = 0.0,
    vit_layers: list[int] | None = None,
    vit_channels: list[int] | None = None,
    **model_kwargs,
) -> HierarchicalBackbone | ViTBackbone:
    """ViT-style names (timm modules vision_transformer, deit, eva) -> :class:`ViTBackbone`; others ->
    :class:`HierarchicalBackbone` (Swin, PVTv2...)."""
    if name in timm.list_models() and is_model_in_modules(name, list(VIT_MODULES)):
        return ViTBackbone(name, pretrained, weights, drop_path, vit_layers, vit_channels, **model_kwargs)
    return HierarchicalBackbone(name, pretrained, weights, drop_path, **model_kwargs)


class TimmTeacher(Teacher):
    """Backbone -> DPT decoder -> sigmoid or bins head; metric depth, trainable like a student.

    ``forward(image)`` with image (B, 3, H, W) normalised with ``self.mean/std`` returns (see ``Teacher``):
    depth (B, 1, H, W) metres; features / encoder_features (backbone pyramid, strides 4..32);
    decoder_features (fused maps, strides 32, 16, 8, 4); bin_centers (B, n_bins) metres with the bins head.

    Args:
        backbone: a module returning 4 maps and stating ``feature_info``, ``mean``, ``std``.
        decoder_channels: DPT fusion width.
        head: ``sigmoid`` or ``bins`` (the student's heads).
        n_bins: bins head only.
        min_depth, max_depth: metres.
    """

    size_multiple = 32

    def __init__(
        self,
        backbone: nn.Module,
        decoder_channels: int = 256,
        head: str = "sigmoid",
        n_bins: int = 64,
        min_depth: float = 1e-3,
        max_depth: float = 10.0,
    ) -> None:
        super().__init__(backbone.feature_info, backbone.mean, backbone.std, min_depth, max_depth, is_metric=True)
        self.backbone = backbone
        self.decoder = DPTDecoder(backbone.feature_info, decoder_channels)
        if head == "bins":
            self.head: nn.Module = BinsHead(self.decoder.out_channels, n_bins, min_depth, max_depth)
        elif head in HEADS:
            self.head = HEADS[head](self.decoder.out_channels, min_depth, max_depth)
        else:
            raise ValueError(f"teacher.head={head!r}: expected one of {sorted(HEADS)}")

    def forward(
        self, image: torch.Tensor, target: torch.Tensor | None = None, valid: torch.Tensor | None = None
    ) -> dict:
        """image: (B, 3, H, W) -> output dict; ``target``/``valid`` are accepted for interface parity (metric)."""
        h, w = image.shape[-2:]
        x = pad_to_multiple(image, self.size_multiple)
        feats = self.backbone(x)
        fused, head_in = self.decoder(feats)
        out = dict(self.head(head_in))
        depth = F.interpolate(out["depth"], size=x.shape[-2:], mode="bilinear", align_corners=False)
        out["depth"] = depth[..., :h, :w]
        sizes = pyramid_sizes(h, w)
        out["features"] = [f[..., :fh, :fw] for f, (fh, fw) in zip(feats, sizes, strict=True)]
        out["decoder_features"] = [f[..., :fh, :fw] for f, (fh, fw) in zip(fused, reversed(sizes), strict=True)]
        return self._finish(out, target, valid)
