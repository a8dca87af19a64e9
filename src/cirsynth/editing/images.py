"""Fitting arbitrary images to a diffusion model's input size, and pixel tensors <-> PIL."""

from __future__ import annotations

import hashlib
from typing import Any, Sequence

import numpy as np
import torch
from PIL import Image


def model_image_size(pipe: Any) -> tuple[int, int]:
    """(H, W) in pixels a pipeline works at: ``vae_scale_factor * unet.config.sample_size``."""
    size = pipe.unet.config.sample_size
    h, w = (size, size) if isinstance(size, int) else tuple(size)
    return pipe.vae_scale_factor * h, pipe.vae_scale_factor * w


def fit_image(image: Image.Image, size: tuple[int, int]) -> Image.Image:
    """Resize so the image covers ``size`` (H, W) keeping its aspect ratio (bicubic), then centre-crop to it.

    Any mode is converted to RGB (alpha dropped, greyscale replicated).
    """
    if not isinstance(image, Image.Image):
        raise TypeError(f"expected a PIL.Image, got {type(image).__name__}")
    height, width = size
    image = image.convert("RGB")
    scale = max(width / image.width, height / image.height)
    new_w, new_h = max(width, round(image.width * scale)), max(height, round(image.height * scale))
    if (new_w, new_h) != image.size:
        image = image.resize((new_w, new_h), Image.Resampling.BICUBIC)
    left, top = (new_w - width) // 2, (new_h - height) // 2
    return image.crop((left, top, left + width, top + height))


def uint8_to_pixels(u8: torch.Tensor) -> torch.Tensor:
    """(..., 3, H, W) uint8 -> float32 in [-1, 1], the range the autoencoder reads."""
    return u8.float() / 127.5 - 1.0


def images_to_tensor(images: Sequence[Image.Image]) -> torch.Tensor:
    """RGB PIL images of equal size -> (N, 3, H, W) float32 in [-1, 1]."""
    arrays = np.stack([np.asarray(im, dtype=np.uint8) for im in images])  # (N, H, W, 3)
    return uint8_to_pixels(torch.from_numpy(arrays).permute(0, 3, 1, 2))


def tensor_to_images(pixels: torch.Tensor) -> list[Image.Image]:
    """(N, 3, H, W) in [-1, 1] -> RGB PIL images (rounded to uint8)."""
    arrays = ((pixels.float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()
    return [Image.fromarray(a) for a in arrays]


def image_hash(image: Image.Image) -> str:
    """SHA-256 (first 16 hex) of an RGB image's pixels and size: the content part of an inversion cache key."""
    array = np.ascontiguousarray(np.asarray(image.convert("RGB"), dtype=np.uint8))
    digest = hashlib.sha256(f"{array.shape}".encode())
    digest.update(array.tobytes())
    return digest.hexdigest()[:16]
