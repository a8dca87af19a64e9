"""Input images for synthesis: discovery (folder or list file) and robust loading.

Loading policy (every outcome is either an RGB image or a failure reason, never an exception):
- grayscale, palette, CMYK, 16-bit, alpha images are converted to 8-bit RGB (alpha composited on white);
- EXIF orientation is applied;
- large JPEGs are decoded at reduced size (``Image.draft``) so a 20000 x 20000 photo costs little;
  other formats are decoded up to ``max_pixels`` and fail beyond it;
- images whose shorter side is below ``min_side`` fail ("too small");
- unreadable, truncated or non-image files fail with the decoder's message.
Resizing to the model's size (shorter side, then centre crop) happens in the editing engine
(``cirsynth.editing.images.fit_image``).
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

from PIL import Image, ImageOps, UnidentifiedImageError

from cirsynth.data.io_utils import read_jsonl

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff", ".gif")


@dataclass
class InputImage:
    """One input: where it came from, its stable key, and an optional caption supplied with it."""

    path: Path
    key: str  # stable id derived from the path relative to the input root: the resume unit
    rel: str  # path relative to the input root (or as listed)
    caption: str | None = None


@dataclass
class LoadPolicy:
    min_side: int = 16  # shorter side below this: not worth upscaling, the item fails
    max_pixels: int = 450_000_000  # decode limit for formats without reduced decoding (20000^2 = 4e8 fits)
    draft_side: int = 2048  # JPEGs decode at a power-of-two reduction down to about this size


def _key(rel: str) -> str:
    return hashlib.sha256(rel.encode("utf-8")).hexdigest()[:16]


def discover(source: str | os.PathLike) -> list[InputImage]:
    """List input images from a folder (recursive, by extension, sorted) or a .parquet/.jsonl list.

    A list file holds one record per image with ``image`` (or ``path``) and optional ``caption``;
    relative paths are relative to the list file's folder.
    """
    src = Path(source)
    if src.is_dir():
        files = sorted(p for p in src.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS)
        return [InputImage(p, _key(str(p.relative_to(src))), str(p.relative_to(src))) for p in files]
    if not src.is_file():
        raise FileNotFoundError(f"{src}: no such folder or list file")
    if src.suffix == ".parquet":
        import pyarrow.parquet as pq

        rows = pq.read_table(src).to_pylist()
    elif src.suffix in (".jsonl", ".json"):
        rows = read_jsonl(src)
    else:
        raise ValueError(f"{src}: input list must be .parquet or .jsonl (or pass a folder)")
    out, seen = [], set()
    for n, row in enumerate(rows, 1):
        rel = row.get("image") or row.get("path") if isinstance(row, dict) else None
        if not isinstance(rel, str):
            raise ValueError(f"{src}: record {n} has no 'image' (or 'path') string")
        if rel in seen:
            raise ValueError(f"{src}: record {n} lists {rel!r} a second time")
        seen.add(rel)
        p = Path(rel) if Path(rel).is_absolute() else src.parent / rel
        cap = row.get("caption")
        out.append(InputImage(p, _key(rel), rel, cap if isinstance(cap, str) else None))
    return out


def load_rgb(path: str | os.PathLike, policy: LoadPolicy = LoadPolicy()) -> tuple[Image.Image | None, str | None]:
    """Load an image as 8-bit RGB following the module's policy.

    Returns:
        ``(image, None)`` on success, ``(None, reason)`` on failure.
    """
    path = Path(path)
    if not path.is_file():
        return None, f"file not found: {path}"
    old_limit = Image.MAX_IMAGE_PIXELS
    Image.MAX_IMAGE_PIXELS = None  # we check the size ourselves, after choosing a reduced decode
    try:
        im = Image.open(path)  # reads the header only
        w, h = im.size
        if im.format == "JPEG" and max(w, h) > policy.draft_side:
            im.draft("RGB", (policy.draft_side, policy.draft_side))  # decode at 1/2, 1/4 or 1/8 size
        if im.size[0] * im.size[1] > policy.max_pixels:
            return None, f"image too large to decode: {w}x{h} > {policy.max_pixels} pixels"
        im.load()
    except UnidentifiedImageError:
        return None, "not a readable image (unidentified format or corrupt header)"
    except (OSError, SyntaxError, ValueError) as e:
        return None, f"corrupt or truncated image: {e}"
    finally:
        Image.MAX_IMAGE_PIXELS = old_limit
    if min(im.size) < policy.min_side:
        return None, f"image too small: {im.size[0]}x{im.size[1]} (shorter side < {policy.min_side})"
    try:
        im = ImageOps.exif_transpose(im)
        return to_rgb8(im), None
    except (OSError, ValueError) as e:
        return None, f"cannot convert to RGB: {e}"


def to_rgb8(im: Image.Image) -> Image.Image:
    """Any PIL mode to 8-bit RGB: 16-bit and float scaled, palette/LA/RGBA composited on white."""
    if im.mode in ("I;16", "I;16B", "I;16L", "I"):
        import numpy as np

        a = np.asarray(im, dtype=np.float64)
        hi = 65535.0 if im.mode.startswith("I;16") or a.max() > 255 else 255.0
        im = Image.fromarray(np.clip(a / hi * 255.0 + 0.5, 0, 255).astype("uint8"), "L")
    elif im.mode == "F":
        import numpy as np

        a = np.asarray(im, dtype=np.float64)
        scale = 255.0 if a.max() <= 1.0 else 1.0
        im = Image.fromarray(np.clip(a * scale + 0.5, 0, 255).astype("uint8"), "L")
    if im.mode == "P":
        im = im.convert("RGBA")
    if im.mode in ("RGBA", "LA", "PA"):
        bg = Image.new("RGB", im.size, (255, 255, 255))
        bg.paste(im.convert("RGBA"), mask=im.convert("RGBA").getchannel("A"))
        return bg
    return im.convert("RGB")
