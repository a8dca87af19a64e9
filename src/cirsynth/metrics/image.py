"""Image-structure metrics (numpy only): PSNR, optionally restricted to a mask."""

from __future__ import annotations

import numpy as np


def _as_float(img) -> np.ndarray:
    a = np.asarray(img)
    if a.dtype == np.uint8:
        return a.astype(np.float64) / 255.0
    return a.astype(np.float64)


def psnr(a, b, mask=None, data_range: float = 1.0) -> float:
    """Peak signal-to-noise ratio in dB between two images (uint8 arrays/PIL, or floats in [0, 1]).

    Args:
        a, b: images of equal shape (H, W) or (H, W, C).
        mask: optional (H, W) boolean array; only pixels where it is True count (e.g. outside an
            edit's blend mask, to measure structure preservation).
    Returns:
        PSNR in dB; ``inf`` for identical images.
    """
    x, y = _as_float(a), _as_float(b)
    if x.shape != y.shape:
        raise ValueError(f"image shapes differ: {x.shape} vs {y.shape}")
    se = (x - y) ** 2
    if mask is not None:
        m = np.asarray(mask, dtype=bool)
        if m.shape != x.shape[:2]:
            raise ValueError(f"mask shape {m.shape} does not match image {x.shape[:2]}")
        if not m.any():
            raise ValueError("mask selects no pixels")
        se = se[m]
    mse = float(se.mean())
    return float("inf") if mse == 0 else 10.0 * np.log10(data_range**2 / mse)
