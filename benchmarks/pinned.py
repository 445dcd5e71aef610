"""The student settings that the committed benchmark figures were measured with, pinned.

Until 0.5 the default student was MobileNetV2 (random weights) under the U-Net decoder; the benchmarks name their
rows by overrides on top of the defaults ("default student": no overrides, "lite student": ``model.decoder=lite``).
Each benchmark prepends these settings, so that a row's overrides mean what they meant when its figures were made
and a change of the library's defaults cannot change a committed row. The default student since 0.5 (ImageNet
EfficientNet-Lite0 under the lite decoder) is the row named "lite decoder 96/48/24, nearest upsampling, ImageNet
EfficientNet-Lite0 encoder" (``lite0_lite_near`` in student_accuracy.py).
"""

from __future__ import annotations

STUDENT_UNTIL_0_5 = [
    "model.encoder=mobilenetv2_100",
    "model.pretrained=none",
    "model.decoder=unet",
    "model.lite_channels=[128,64,32]",
    "model.lite_upsample=bilinear",
]
