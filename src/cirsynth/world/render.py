"""Deterministic numpy renderer for mini-world scenes.

Pictures are drawn in normalised image coordinates at ``size * ss`` pixels and box-filtered down, so
a 64x64 render and a 512x512 viewing render show the same scene (edges antialiased). All randomness
(texture noise, jitter) comes from ``scene.seed``: same scene -> same pixels, bit for bit.
"""

from __future__ import annotations

import numpy as np
from PIL import Image

from cirsynth.world.scene import COLORS, POSITION_X, POSITIONS, SIZES, Scene, WorldObject

_NOISE_RES = 64  # texture noise is drawn at this grid size and resampled, so it is size-independent
_PATTERN_PERIOD = 0.085  # stripe / dot / checker period, as a fraction of image width
_OBJECT_Y = 0.56  # slot centre height / image height


def _grid(n: int) -> tuple[np.ndarray, np.ndarray]:
    """Pixel-centre coordinates in [0, 1): (x, y), each (n, n), y pointing down."""
    t = (np.arange(n, dtype=np.float64) + 0.5) / n
    return np.meshgrid(t, t, indexing="xy")


def _resample(noise: np.ndarray, n: int) -> np.ndarray:
    """Bilinear resample of a small (h, w) noise field to (n, n)."""
    img = Image.fromarray(noise.astype(np.float32), mode="F")
    return np.asarray(img.resize((n, n), Image.BILINEAR), dtype=np.float64)


def _background(name: str, x: np.ndarray, y: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """(n, n, 3) background texture in [0, 1]."""
    n = x.shape[0]
    coarse = _resample(rng.random((8, 8)), n)  # (n, n) slow variation
    fine = _resample(rng.random((_NOISE_RES, _NOISE_RES)), n)  # (n, n) grain
    if name == "grass":
        blades = _resample(rng.random((8, _NOISE_RES)), n)  # vertical streaks
        base = np.array([0.28, 0.52, 0.16])
        shade = 0.65 + 0.25 * coarse + 0.35 * blades * fine
    elif name == "sand":
        base = np.array([0.87, 0.76, 0.52])
        shade = 0.88 + 0.08 * np.sin(2 * np.pi * (y * 9 + 0.6 * coarse)) + 0.08 * fine
    elif name == "snow":
        base = np.array([0.92, 0.94, 0.98])
        shade = 0.93 + 0.05 * coarse + 0.03 * fine
    elif name == "water":
        base = np.array([0.12, 0.38, 0.66])
        shade = 0.8 + 0.22 * np.sin(2 * np.pi * (y * 12 + 0.8 * coarse)) ** 2 + 0.06 * fine
    elif name == "bricks":
        row = np.floor(y * 8)
        bx = x * 4 + 0.5 * (row % 2)
        mortar = (np.abs(y * 8 - np.round(y * 8)) < 0.08) | (np.abs(bx - np.round(bx)) < 0.04)
        brick = np.array([0.66, 0.26, 0.18])[None, None] * (0.8 + 0.25 * fine)[..., None]
        return np.where(mortar[..., None], np.array([0.78, 0.76, 0.70]), brick)
    elif name == "wood":
        base = np.array([0.58, 0.40, 0.22])
        gap = np.abs(x * 5 - np.round(x * 5)) < 0.03
        grain = 0.85 + 0.15 * np.sin(2 * np.pi * (x * 30 + 2.0 * coarse))
        shade = np.where(gap, 0.45, grain + 0.05 * fine)
    else:
        raise ValueError(f"unknown background {name!r}")
    return np.clip(base[None, None] * shade[..., None], 0, 1)


def _shape_mask(shape: str, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Boolean mask of a unit-radius shape in object coordinates (u right, v down)."""
    if shape == "circle":
        return u**2 + v**2 <= 1.0
    if shape == "square":
        return np.maximum(np.abs(u), np.abs(v)) <= 0.85
    if shape == "diamond":
        return np.abs(u) + np.abs(v) <= 1.1
    if shape == "triangle":  # apex up
        return (v <= 0.8) & (np.abs(u) <= (v + 1.0) * (1.0 / 1.8))
    if shape == "cross":
        arm = 0.34
        return ((np.abs(u) <= arm) & (np.abs(v) <= 1.0)) | ((np.abs(v) <= arm) & (np.abs(u) <= 1.0))
    if shape == "star":  # five points, one up
        r = np.hypot(u, v)
        theta = np.arctan2(v, u) + np.pi / 2  # 0 at the top point
        sector = 2 * np.pi / 5
        t = np.abs(((theta % sector) / sector) - 0.5) * 2  # 1 at a tip, 0 between tips
        return r <= 0.48 + (1.1 - 0.48) * t**1.5
    raise ValueError(f"unknown shape {shape!r}")


def _pattern(pattern: str, px: np.ndarray, py: np.ndarray) -> np.ndarray:
    """Boolean 'dark ink' mask of a pattern; px, py are offsets from the object centre (image units)."""
    a, b = px / _PATTERN_PERIOD, py / _PATTERN_PERIOD
    if pattern == "plain":
        return np.zeros_like(px, dtype=bool)
    if pattern == "striped":  # diagonal stripes
        return ((a + b) % 1.0) < 0.5
    if pattern == "dotted":
        return np.hypot((a % 1.0) - 0.5, (b % 1.0) - 0.5) < 0.27
    if pattern == "checkered":
        return ((np.floor(a * 0.85) + np.floor(b * 0.85)) % 2) == 0
    raise ValueError(f"unknown pattern {pattern!r}")


def _object_geometry(
    obj: WorldObject, x: np.ndarray, y: np.ndarray, rng: np.random.Generator
) -> tuple[float, float, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Where one object lies: centre (cx, cy), object coordinates (u, v), and its inside and rim masks.
    Draws the slot jitter from ``rng`` (the object's own stream)."""
    radius = SIZES[obj.size]
    cx = POSITION_X[obj.position] + rng.uniform(-0.02, 0.02)
    cy = _OBJECT_Y + rng.uniform(-0.04, 0.04)
    u, v = (x - cx) / radius, (y - cy) / radius
    inside = _shape_mask(obj.shape, u, v)
    outline = _shape_mask(obj.shape, u / 1.12, v / 1.12) & ~inside  # thin rim around the shape
    return cx, cy, u, v, inside, outline


def _draw_object(
    canvas: np.ndarray, obj: WorldObject, x: np.ndarray, y: np.ndarray, rng: np.random.Generator
) -> None:
    """Composite one object onto ``canvas`` (n, n, 3) in place."""
    cx, cy, u, v, inside, outline = _object_geometry(obj, x, y, rng)

    base = np.array(COLORS[obj.color])
    ink = _pattern(obj.pattern, x - cx, y - cy)
    col = np.where(ink[..., None], base * 0.3, base[None, None])  # (n, n, 3)
    # Light from the top-left: d in about [-1.4, 1.4], negative towards the light.
    d = (u + v) / 2
    if obj.material == "matte":
        col = col * np.clip(0.95 - 0.2 * d, 0.55, 1.0)[..., None]
        alpha, rim = 1.0, np.array([0.08, 0.08, 0.08])
    elif obj.material == "metal":
        bands = 0.5 + 0.5 * np.cos(np.pi * (1.6 * v + 0.5 * u))  # anisotropic reflections
        col = (0.75 * col + 0.25 * col.mean(-1, keepdims=True)) * (0.3 + 0.8 * bands)[..., None]
        spec = np.exp(-((u + 0.4) ** 2 + (v + 0.45) ** 2) / 0.05)
        col = col + spec[..., None]
        alpha, rim = 1.0, np.array([0.15, 0.15, 0.18])
    elif obj.material == "glass":
        col = 0.55 * col + 0.3  # pale, see-through tint
        spec = np.exp(-((u + 0.35) ** 2 + (v + 0.4) ** 2) / 0.03)
        col = col + 0.8 * spec[..., None]
        alpha, rim = 0.6, np.array([0.97, 0.97, 1.0])
    else:
        raise ValueError(f"unknown material {obj.material!r}")
    col = np.clip(col, 0, 1)
    canvas[outline] = rim
    m = inside[..., None]
    canvas[:] = np.where(m, (1 - alpha) * canvas + alpha * col, canvas)


def _light(canvas: np.ndarray, light: str, y: np.ndarray) -> np.ndarray:
    if light == "midday":
        return canvas
    if light == "sunset":
        glow = np.clip(1.0 - y, 0, 1)[..., None] ** 2 * np.array([0.22, 0.08, 0.0])
        return np.clip(canvas * np.array([1.0, 0.74, 0.52]) + glow, 0, 1)
    if light == "night":
        return np.clip(canvas * np.array([0.4, 0.46, 0.72]) + np.array([0.0, 0.01, 0.05]), 0, 1)
    raise ValueError(f"unknown light {light!r}")


def _sample_grid(size: int, supersample: int | None) -> tuple[int, np.ndarray, np.ndarray]:
    """(samples per pixel side, x, y): the supersampled coordinates every raster of a scene is drawn on (default:
    enough samples for >= 256 across)."""
    ss = supersample or max(2, -(-256 // size))
    return ss, *_grid(size * ss)


def _object_rng(scene: Scene, obj: WorldObject) -> np.random.Generator:
    """The random stream of one object (its slot jitter, its texture), keyed by (scene seed, slot)."""
    return np.random.default_rng([scene.seed, 1 + POSITIONS.index(obj.position)])


def render_array(scene: Scene, size: int = 64, supersample: int | None = None) -> np.ndarray:
    """Render a scene to an array.

    Args:
        scene: the scene.
        size: output width = height in pixels.
        supersample: samples per pixel side (default: enough for >= 256 samples across).

    Returns:
        float64 array (size, size, 3) in [0, 1].
    """
    if size < 8:
        raise ValueError(f"size must be >= 8, got {size}")
    ss, x, y = _sample_grid(size, supersample)
    # Each part draws from its own stream keyed by (seed, part), so adding or removing an object
    # never moves the others or changes the background.
    canvas = _background(scene.background, x, y, np.random.default_rng([scene.seed, 0]))
    for obj in scene.objects:
        _draw_object(canvas, obj, x, y, _object_rng(scene, obj))
    canvas = _light(canvas, scene.light, y)
    return canvas.reshape(size, ss, size, ss, 3).mean(axis=(1, 3))


def object_masks(scene: Scene, size: int = 64, supersample: int | None = None) -> np.ndarray:
    """(len(scene.objects), size, size) float coverage in [0, 1] of each object (shape and rim), in
    ``scene.objects`` order, pixel-aligned with :func:`render_array` of the same scene and size."""
    ss, x, y = _sample_grid(size, supersample)
    out = np.empty((len(scene.objects), size, size))
    for i, obj in enumerate(scene.objects):
        *_, inside, outline = _object_geometry(obj, x, y, _object_rng(scene, obj))
        out[i] = (inside | outline).reshape(size, ss, size, ss).mean(axis=(1, 3))
    return out


def object_mask(scene: Scene, size: int = 64, supersample: int | None = None) -> np.ndarray:
    """(size, size) coverage in [0, 1] of all the scene's objects together (see :func:`object_masks`)."""
    return np.clip(object_masks(scene, size, supersample).sum(0), 0.0, 1.0)


def render(scene: Scene, size: int = 64, supersample: int | None = None) -> Image.Image:
    """Render a scene as an RGB PIL image of ``size`` x ``size`` pixels (see :func:`render_array`)."""
    return to_pil([render_array(scene, size=size, supersample=supersample)])[0]


def to_pil(images: "list[np.ndarray] | np.ndarray") -> list[Image.Image]:
    """Float images (H, W, 3) in [0, 1] as 8-bit RGB PIL images (clipped, rounded)."""
    return [Image.fromarray((np.clip(a, 0, 1) * 255).round().astype(np.uint8)) for a in images]


def _render_chunk(scenes: list[Scene], size: int, masks: bool) -> tuple[np.ndarray, np.ndarray | None]:
    pixels = np.stack([render_array(scene, size=size) for scene in scenes]).astype(np.float32)
    if not masks:
        return pixels, None
    return pixels, np.stack([object_mask(scene, size=size) for scene in scenes]).astype(np.float32)[:, None]


def render_batch(
    scenes: list[Scene], size: int = 64, workers: int = 1, masks: bool = False
) -> tuple[np.ndarray, np.ndarray | None]:
    """Render many scenes, spread over ``workers`` processes (the result is the same for any number of workers).

    Returns:
        (pixels (n, size, size, 3) float32 in [0, 1], and when ``masks`` the objects' joint coverage
        (n, 1, size, size) float32, else None).
    """
    if workers < 1:
        raise ValueError(f"workers must be >= 1, got {workers}")
    if not scenes:
        return np.empty((0, size, size, 3), np.float32), np.empty((0, 1, size, size), np.float32) if masks else None
    if workers == 1 or len(scenes) == 1:
        return _render_chunk(scenes, size, masks)
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    chunk = -(-len(scenes) // (workers * 4))
    parts = [scenes[i : i + chunk] for i in range(0, len(scenes), chunk)]
    with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn")) as pool:
        done = list(pool.map(_render_chunk, parts, [size] * len(parts), [masks] * len(parts)))
    pixels = np.concatenate([d[0] for d in done])
    return pixels, np.concatenate([d[1] for d in done]) if masks else None
