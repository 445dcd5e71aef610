"""Tiny random Hugging Face depth models (one per family), as the tests save them with ``save_pretrained``.

Import after ``pytest.importorskip("transformers")``.
"""

from __future__ import annotations

import transformers
from torch import nn


def _dinov2(**kw) -> transformers.Dinov2Config:
    # As in the released Depth Anything configs: token outputs (not reshaped), final layernorm applied.
    return transformers.Dinov2Config(
        hidden_size=32, num_hidden_layers=4, num_attention_heads=2, intermediate_size=64, image_size=56,
        patch_size=14, out_indices=[1, 2, 3, 4], reshape_hidden_states=False, apply_layernorm=True, **kw,
    )  # fmt: skip


def _depth_anything(metric: bool) -> nn.Module:
    cfg = transformers.DepthAnythingConfig(
        backbone_config=_dinov2(), reassemble_hidden_size=32, neck_hidden_sizes=[8, 16, 32, 32],
        fusion_hidden_size=16, head_hidden_size=8, patch_size=14,
        depth_estimation_type="metric" if metric else "relative", max_depth=20,
    )  # fmt: skip
    return transformers.DepthAnythingForDepthEstimation(cfg)


def _dpt() -> nn.Module:
    cfg = transformers.DPTConfig(
        hidden_size=32, num_hidden_layers=4, num_attention_heads=2, intermediate_size=64, image_size=64,
        patch_size=16, backbone_out_indices=[0, 1, 2, 3], neck_hidden_sizes=[8, 16, 32, 32],
        fusion_hidden_size=16, head_in_index=-1,
    )  # fmt: skip
    return transformers.DPTForDepthEstimation(cfg)


def _dpt_hybrid() -> nn.Module:
    # DPT-Hybrid has a (BiT) backbone_config *and* is_hybrid: its features must still come from the ViT layers.
    bit = transformers.BitConfig(
        global_padding="same", layer_type="bottleneck", depths=[1, 1, 1], out_features=["stage1", "stage2", "stage3"],
        embedding_dynamic_padding=True, hidden_sizes=[32, 64, 128], embedding_size=32, num_groups=8,
    )  # fmt: skip
    cfg = transformers.DPTConfig(
        is_hybrid=True, backbone_config=bit, backbone_featmap_shape=[1, 128, 4, 4], hidden_size=32,
        num_hidden_layers=4, num_attention_heads=2, intermediate_size=64, image_size=64, patch_size=16,
        backbone_out_indices=[0, 1, 2, 3], neck_hidden_sizes=[32, 64, 32, 32], fusion_hidden_size=16,
        head_in_index=-1, readout_type="project",
    )  # fmt: skip
    return transformers.DPTForDepthEstimation(cfg)


def _glpn() -> nn.Module:
    cfg = transformers.GLPNConfig(
        num_encoder_blocks=4, depths=[1, 1, 1, 1], sr_ratios=[8, 4, 2, 1], hidden_sizes=[8, 16, 32, 64],
        num_attention_heads=[1, 1, 2, 2], mlp_ratios=[2, 2, 2, 2], decoder_hidden_size=16, max_depth=10,
    )  # fmt: skip
    return transformers.GLPNForDepthEstimation(cfg)
