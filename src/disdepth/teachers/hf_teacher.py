"""Pretrained Hugging Face depth models as teachers: Depth Anything (V1/V2), DPT, GLPN.

Loaded with ``AutoModelForDepthEstimation.from_pretrained`` from a hub id or a local folder (needs the
``hf`` extra: ``pip install disdepth[hf]``). The adapter handles, inside ``forward``:

* **Normalisation** - mean/std from the checkpoint's ``preprocessor_config.json`` (``image_mean``/``image_std``,
  none when ``do_normalize`` is false), else the family's documented processor defaults.
* **Size rules** - the batch is resized (bilinear, anti-aliased when shrinking) to the size the model needs,
  and every output is brought back to the input size: DINOv2-based models (Depth Anything, DPT-DINOv2) run at
  the nearest multiple of 14, GLPN at the nearest multiple of 32, ViT-DPT (DPT-Large/Hybrid) at its square
  ``image_size`` (its reassemble stage only accepts square token grids).
* **Feature pyramid** - from the model's own outputs (``output_hidden_states=True``, no hooks): GLPN's four
  encoder stages (strides 4..32 already); for ViT models the token maps of the 4 layers its own DPT neck
  reads (``backbone_out_indices`` / ``backbone_config.out_indices``), prefix tokens dropped, reshaped to NCHW,
  each token layer-normalised without parameters (ViT residual streams carry a few huge channels that would
  swamp any feature distance), and resampled bilinearly to strides 4, 8, 16, 32 of the input. Resampling is
  parameter-free on purpose: a frozen pretrained teacher must not hide random layers.
* **Metric vs relative** - GLPN (NYU/KITTI) and Depth Anything ``depth_estimation_type="metric"`` checkpoints
  predict metres; Depth Anything relative checkpoints (V1/V2 base) and DPT (MiDaS-trained) predict relative
  inverse depth ("disparity"). ``TeacherConfig.metric`` / ``relative_space`` override this.
"""

from __future__ import annotations

import json
import logging
import math
import pickle
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from disdepth.models.encoder import FeatureInfo
from disdepth.models.spec import IMAGENET_MEAN, IMAGENET_STD
from disdepth.teachers.base import PYRAMID_STRIDES, RelativeSpace, Teacher, pyramid_sizes, resample

log = logging.getLogger(__name__)

# Processor defaults per family (transformers' DPTImageProcessor, DPT/Depth Anything processor configs,
# GLPNImageProcessor which only rescales to [0, 1]).
FAMILY_NORM: dict[str, tuple[tuple[float, ...], tuple[float, ...]]] = {
    "depth_anything": (IMAGENET_MEAN, IMAGENET_STD),
    "dpt": ((0.5, 0.5, 0.5), (0.5, 0.5, 0.5)),
    "glpn": ((0.0, 0.0, 0.0), (1.0, 1.0, 1.0)),
}
SUPPORTED_HF_TEACHERS: dict[str, str] = {
    "depth-anything/Depth-Anything-V2-Small-hf": "Depth Anything V2 ViT-S, relative (disparity)",
    "depth-anything/Depth-Anything-V2-Base-hf": "Depth Anything V2 ViT-B, relative (disparity)",
    "depth-anything/Depth-Anything-V2-Large-hf": "Depth Anything V2 ViT-L, relative (disparity)",
    "depth-anything/Depth-Anything-V2-Metric-Indoor-Small-hf": "DA-V2 metric indoor (Hypersim), max 20 m",
    "depth-anything/Depth-Anything-V2-Metric-Outdoor-Small-hf": "DA-V2 metric outdoor (VKITTI), max 80 m",
    "LiheYoung/depth-anything-small-hf": "Depth Anything V1 ViT-S, relative (disparity)",
    "Intel/dpt-large": "DPT-Large (MiDaS 3.0), relative (disparity), 384x384",
    "Intel/dpt-hybrid-midas": "DPT-Hybrid (MiDaS 3.0), relative (disparity), 384x384",
    "vinvino02/glpn-nyu": "GLPN trained on NYU Depth V2, metric, max 10 m",
    "vinvino02/glpn-kitti": "GLPN trained on KITTI, metric, max 80 m",
}


def _preprocessor(name_or_path: str) -> dict:
    """The checkpoint's ``preprocessor_config.json`` as a dict ({} when it has none)."""
    local = Path(name_or_path) / "preprocessor_config.json"
    if local.is_file():
        return json.loads(local.read_text())
    if Path(name_or_path).is_dir():
        return {}
    try:
        from transformers.utils import cached_file

        path = cached_file(name_or_path, "preprocessor_config.json", _raise_exceptions_for_missing_entries=False)
    except OSError:
        return {}
    return json.loads(Path(path).read_text()) if path else {}


def _norm_stats(proc: dict, family: str) -> tuple[tuple[float, ...], tuple[float, ...]]:
    if proc.get("do_normalize") is False:
        return (0.0, 0.0, 0.0), (1.0, 1.0, 1.0)
    mean, std = FAMILY_NORM[family]
    return tuple(proc.get("image_mean", mean)), tuple(proc.get("image_std", std))


class HFTeacher(Teacher):
    """A ``transformers`` depth-estimation model behind the :class:`Teacher` interface.

    ``forward(image)`` with image (B, 3, H, W) normalised with ``self.mean/std`` returns: depth (B, 1, H, W)
    metres (relative models: aligned when ``target``/``valid`` are given, else unaligned - see ``Teacher``);
    relative (B, 1, H, W) raw output (relative models only); features / encoder_features (4 maps at strides
    4, 8, 16, 32 of the input).

    Args:
        model: a ``DPTForDepthEstimation``, ``DepthAnythingForDepthEstimation`` or ``GLPNForDepthEstimation``.
        mean, std: the model's RGB normalisation.
        min_depth, max_depth: metres; depth is clamped to this range.
        is_metric: whether ``predicted_depth`` is metres.
        relative_space: what a relative model's output is affine in.
        input_size: fixed (H, W) to run the model at; None = the family's size rule.
        size_multiple: multiple of the rounded size (0 = family default).
        normalize_tokens: parameter-free LayerNorm of ViT token features (see module docstring).
    """

    def __init__(
        self,
        model: nn.Module,
        mean: tuple[float, ...],
        std: tuple[float, ...],
        min_depth: float,
        max_depth: float,
        is_metric: bool,
        relative_space: RelativeSpace = "disparity",
        input_size: tuple[int, int] | None = None,
        size_multiple: int = 0,
        normalize_tokens: bool = True,
    ) -> None:
        config = model.config
        family = config.model_type
        if family not in FAMILY_NORM:
            raise ValueError(f"HF model type {family!r} is not supported; supported: {sorted(FAMILY_NORM)}")
        backbone_cfg = getattr(config, "backbone_config", None)
        if family == "glpn":
            channels = list(config.hidden_sizes)
            layers: list[int] = []
            patch, multiple, square = 0, 32, None
        elif backbone_cfg is not None and not getattr(config, "is_hybrid", False):
            # Depth Anything, DPT-DINOv2: hidden_states[i] of the backbone stages (0 = embeddings)
            layers = list(backbone_cfg.out_indices)
            channels = [backbone_cfg.hidden_size] * 4
            patch = backbone_cfg.patch_size
            multiple, square = patch, None
        else:  # ViT-DPT (DPT-Large, DPT-Hybrid): hidden_states[0] is the embedding output
            layers = [1 + i for i in config.backbone_out_indices]
            channels = [config.hidden_size] * 4
            patch = 16 if getattr(config, "is_hybrid", False) else config.patch_size
            size = config.image_size if isinstance(config.image_size, int) else config.image_size[0]
            multiple, square = patch, int(size)
        if len(channels) != 4 or (layers and len(layers) != 4):
            raise ValueError(f"HF {family} model: need 4 feature levels, config gives {channels} / {layers}")
        super().__init__(
            [FeatureInfo(int(c), s) for c, s in zip(channels, PYRAMID_STRIDES, strict=True)],
            mean,
            std,
            min_depth,
            max_depth,
            is_metric,
            relative_space,
        )
        self.model = model
        self.family = family
        self.layers, self.patch = layers, patch
        self.size_multiple = size_multiple or multiple
        self.input_size = tuple(input_size) if input_size else ((square, square) if square else None)
        self.normalize_tokens = normalize_tokens
        self.eval()  # as from_pretrained leaves it; an outer .train() still reaches it unless frozen

    def model_input_size(self, height: int, width: int) -> tuple[int, int]:
        """The (H, W) the wrapped model runs at for an H x W input."""
        if self.input_size:
            return self.input_size  # type: ignore[return-value]
        m = self.size_multiple
        return max(m, round(height / m) * m), max(m, round(width / m) * m)

    def _token_maps(self, hidden_states: tuple[torch.Tensor, ...], size: tuple[int, int]) -> list[torch.Tensor]:
        gh, gw = size[0] // self.patch, size[1] // self.patch
        maps = []
        for i in self.layers:
            tokens = hidden_states[i]
            if tokens.dim() == 4:  # a backbone configured to return NCHW maps already
                maps.append(tokens)
                continue
            tokens = tokens[:, tokens.shape[1] - gh * gw :]  # drop CLS / register tokens in front
            if self.normalize_tokens:
                tokens = F.layer_norm(tokens, tokens.shape[-1:])
            maps.append(tokens.transpose(1, 2).reshape(tokens.shape[0], tokens.shape[2], gh, gw))
        return maps

    def forward(
        self, image: torch.Tensor, target: torch.Tensor | None = None, valid: torch.Tensor | None = None
    ) -> dict:
        """image: (B, 3, H, W); target/valid: optional (B, 1, H, W) metres / bool for relative alignment."""
        h, w = image.shape[-2:]
        size = self.model_input_size(h, w)
        x = resample(image, size)
        outputs = self.model(pixel_values=x, output_hidden_states=True, return_dict=True)
        pred = outputs.predicted_depth
        pred = pred.unsqueeze(1) if pred.dim() == 3 else pred
        pred = F.interpolate(pred, size=(h, w), mode="bilinear", align_corners=False)
        hidden = outputs.hidden_states
        feats = list(hidden) if self.family == "glpn" else self._token_maps(hidden, size)
        out: dict = {"features": [resample(f, s) for f, s in zip(feats, pyramid_sizes(h, w), strict=True)]}
        if self.is_metric:
            out["depth"] = pred.clamp(self.min_depth, self.max_depth)
        else:
            out["relative"] = pred
        return self._finish(out, target, valid)

    def extra_repr(self) -> str:
        return f"{self.family}, input {self.input_size or f'multiple of {self.size_multiple}'}, " + super().extra_repr()


def hub_reachable(endpoint: str, timeout_s: float = 3.0) -> bool:
    """Whether a TCP connection to the hub endpoint's host opens within ``timeout_s`` (a proxy in the environment
    is assumed to reach it: only a direct connection can be probed this way)."""
    import os
    import socket
    from urllib.parse import urlparse

    if any(os.environ.get(v) for v in ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy")):
        return True
    url = urlparse(endpoint)
    port = url.port or (443 if url.scheme == "https" else 80)
    try:
        with socket.create_connection((url.hostname or "", port), timeout=timeout_s):
            return True
    except OSError:
        return False


def _check_hub_id_loadable(repo_id: str) -> None:
    """Fail in seconds, naming ``teacher.name``, when a hub id is neither in the local Hugging Face cache nor
    downloadable (offline): otherwise ``from_pretrained`` retries for half a minute, warning at each try."""
    from huggingface_hub import constants, try_to_load_from_cache

    try:
        cached = try_to_load_from_cache(repo_id, "config.json")
    except ValueError as exc:  # huggingface_hub's HFValidationError: not of the form "org/name"
        raise ValueError(f"teacher.name={repo_id!r}: no such local folder, and not a hub id ({exc})") from None
    if isinstance(cached, str):
        return  # cached: from_pretrained loads it (offline too)
    if constants.HF_HUB_OFFLINE or not hub_reachable(constants.ENDPOINT):
        raise ValueError(
            f"teacher.name={repo_id!r}: not in the local Hugging Face cache and the hub ({constants.ENDPOINT}) cannot "
            "be reached from here; download it where there is a network (huggingface-cli download) or give a local "
            "folder"
        )


def load_hf_teacher(
    name_or_path: str,
    min_depth: float = 1e-3,
    max_depth: float = 10.0,
    metric: str = "auto",
    relative_space: str = "auto",
    input_size: tuple[int, int] | list[int] | None = None,
    size_multiple: int = 0,
) -> HFTeacher:
    """Load a Hugging Face depth model (hub id or local folder) as a teacher.

    Args:
        name_or_path: e.g. ``depth-anything/Depth-Anything-V2-Small-hf`` or a folder with ``config.json``.
        min_depth, max_depth: metres.
        metric: ``auto`` (from the model config, see module docstring), ``metric`` or ``relative``.
        relative_space: ``auto`` (disparity for every supported relative family), ``disparity`` or ``depth``.
        input_size: fixed (H, W) to run at; None/[] = family rule.
        size_multiple: 0 = family rule (14 DINOv2, 32 GLPN, 16 ViT-DPT), or the preprocessor's own value.
    """
    try:
        from transformers import AutoModelForDepthEstimation
    except ImportError as exc:
        raise ImportError("teacher.kind=hf needs transformers: pip install 'disdepth[hf]'") from exc
    local = Path(name_or_path).expanduser()
    if name_or_path.startswith(("/", ".", "~")) and not local.exists():
        # Clearly a path, not an "org/name" hub id: don't send it to the hub.
        raise ValueError(f"teacher.name={name_or_path!r}: local folder not found")
    if local.exists():
        name_or_path = str(local)
    else:
        _check_hub_id_loadable(name_or_path)
    try:
        model = AutoModelForDepthEstimation.from_pretrained(name_or_path)
    except pickle.UnpicklingError:  # transformers loads .bin files with torch's weights_only loader
        raise ValueError(
            f"teacher.name={name_or_path!r}: its pytorch_model.bin holds Python objects that the safe loader refuses "
            "(unpickling can run code); use a model.safetensors copy of the model"
        ) from None
    except (OSError, ValueError) as exc:
        where = "local folder" if Path(name_or_path).exists() else "hub id (offline? not in the HF cache?)"
        first_line = (str(exc).strip().splitlines() or [""])[0][:300]
        raise ValueError(
            f"teacher.name={name_or_path!r}: could not load a HF depth model from this {where}: {first_line}"
        ) from None
    family = model.config.model_type
    if family not in FAMILY_NORM:
        raise ValueError(
            f"teacher.name={name_or_path!r}: model type {family!r} not supported; use {sorted(FAMILY_NORM)}"
        )
    proc = _preprocessor(name_or_path)
    mean, std = _norm_stats(proc, family)
    if metric == "auto":
        if family == "glpn":
            is_metric = True
        elif family == "depth_anything":
            is_metric = getattr(model.config, "depth_estimation_type", "relative") == "metric"
        else:
            is_metric = False  # DPT checkpoints on the hub are MiDaS-style relative inverse depth
    else:
        is_metric = metric == "metric"
    space = "disparity" if relative_space == "auto" else relative_space
    proc_multiple = int(proc.get("ensure_multiple_of") or proc.get("size_divisor") or 0)
    multiple = size_multiple or (proc_multiple if proc_multiple > 1 else 0)
    teacher = HFTeacher(
        model,
        mean,
        std,
        min_depth,
        max_depth,
        is_metric,
        space,  # type: ignore[arg-type]
        input_size=tuple(input_size) if input_size else None,
        size_multiple=multiple,
    )
    model_max = getattr(model.config, "max_depth", None)
    if is_metric and model_max and not math.isclose(float(model_max), max_depth):
        log.info(
            "HF teacher %s predicts up to %s m; outputs are clamped to [%s, %s] m",
            name_or_path,
            model_max,
            min_depth,
            max_depth,
        )
    return teacher
