"""Image preprocessing for CIR: CLIP4Cir's target-pad (or square-pad) before CLIP's own processor.

CLIP's processor resizes the short side and centre-crops, which cuts the ends off elongated images
(FashionIQ's full-body dresses, panoramas). Target-pad first pads an image with black borders
until its aspect ratio is at most ``ratio`` (CLIP4Cir uses 1.25), so the crop keeps most of it
while nearly square images stay untouched. The rest (resize, crop, normalise) is the model's
``CLIPImageProcessor``, so the pixel statistics always match the loaded CLIP.
"""

from __future__ import annotations

from typing import Literal

from PIL import Image, ImageOps

PadMode = Literal["targetpad", "squarepad", "none"]


def target_pad(image: Image.Image, ratio: float = 1.25) -> Image.Image:
    """Pad ``image`` symmetrically with black so that max(w, h) / min(w, h) <= ``ratio``.

    Images already within ``ratio`` are returned unchanged. ``ratio=1`` pads to a square.
    """
    if ratio < 1:
        raise ValueError(f"target_pad: ratio must be >= 1, got {ratio}")
    w, h = image.size
    if max(w, h) / min(w, h) <= ratio:
        return image
    short = max(w, h) / ratio  # the short side the padded image needs
    pad_w = max(int(round(short - w)), 0)
    pad_h = max(int(round(short - h)), 0)
    border = (pad_w // 2, pad_h // 2, pad_w - pad_w // 2, pad_h - pad_h // 2)  # left, top, right, bottom
    return ImageOps.expand(image.convert("RGB"), border=border, fill=(0, 0, 0))


def pad_image(image: Image.Image, mode: PadMode = "targetpad", ratio: float = 1.25) -> Image.Image:
    """Apply the named padding: ``targetpad`` (to ``ratio``), ``squarepad`` (to 1:1) or ``none``."""
    image = image.convert("RGB")
    if mode == "targetpad":
        return target_pad(image, ratio)
    if mode == "squarepad":
        return target_pad(image, 1.0)
    if mode == "none":
        return image
    raise ValueError(f"pad_image: unknown mode {mode!r}; use 'targetpad', 'squarepad' or 'none'")
