"""Input images for synthesis: discovery (folder or list file) and robust loading.

Loading policy (every outcome is either an RGB image or a failure reason, never an exception):
- grayscale, palette, CMYK, 16-bit, alpha images are converted to 8-bit RGB (alpha composited on white);
- EXIF orientation is applied;
- large JPEGs are decoded at reduced size (``Image.draft``) so a 20000 x 20000 photo costs little;
  other formats are decoded up to ``max_pixels`` (64 MP by default) and fail beyond it, before decoding;
  Pillow's process-wide bomb limit is never changed;
- images whose shorter side is below ``min_side`` fail ("too small");
- unreadable, truncated or non-image files fail with the decoder's message.
Resizing to the model's size (shorter side, then centre crop) happens in the editing engine
(``cirsynth.editing.images.fit_image``).
"""

from __future__ import annotations

import errno
import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

from PIL import Image, ImageOps, UnidentifiedImageError

from cirsynth.data.errors import DataError
from cirsynth.data.io_utils import read_jsonl

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff", ".gif")


@dataclass
class InputImage:
    """One input: where it came from, its stable key, and an optional caption supplied with it.

    ``problem`` is set when the input cannot be used as listed (a dangling symlink, a folder named like an
    image, a caption of the wrong type, ...): the pipeline writes it as a failed row with that reason.
    """

    path: Path
    key: str  # stable id derived from the path relative to the input root: the resume unit
    rel: str  # path relative to the input root (or as listed)
    caption: str | None = None
    problem: str | None = None  # why this input is unusable (a failed "input" row); None when fine


@dataclass
class LoadPolicy:
    min_side: int = 16  # shorter side below this: not worth upscaling, the item fails
    max_pixels: int = 64_000_000  # decoded pixels at most (8000 x 8000, ~192 MB as RGB); beyond it the item fails
    draft_side: int = 2048  # JPEGs decode at a power-of-two reduction down to about this size


def _key(rel: str) -> str:
    return hashlib.sha256(rel.encode("utf-8")).hexdigest()[:16]


def _type_name(v: object) -> str:
    return "null" if v is None else type(v).__name__


def _folder_entry(p: Path, src: Path) -> InputImage | None:
    """An input for one folder entry with an image extension, or None for an entry that is not one."""
    rel = str(p.relative_to(src))
    item = InputImage(p, _key(rel), rel)
    if p.is_symlink():
        try:
            p.resolve(strict=True)
        except RuntimeError:  # Python < 3.13 raises RuntimeError for a loop
            item.problem = "symlink loop"
        except OSError as e:
            item.problem = "symlink loop" if e.errno == errno.ELOOP else "dangling symlink (its target does not exist)"
    if item.problem is None and p.is_dir():
        item.problem = "a folder, not an image file"
    elif item.problem is None and not p.is_file():
        item.problem = "not a regular file"
    return item


def discover(source: str | os.PathLike) -> list[InputImage]:
    """List input images from a folder (recursive, by extension, sorted) or a .parquet/.jsonl list.

    A list file holds one record per image with ``image`` (or ``path``) and optional ``caption``;
    relative paths are relative to the list file's folder. Nothing is dropped silently: a folder entry
    with an image extension that is not a readable file (dangling symlink, symlink loop, a folder named
    ``x.png``) and a list record with a field of the wrong type or a repeated image are returned with
    ``problem`` set. Only a list file that cannot be read at all raises.

    Raises:
        DataError: the source is missing, of an unknown kind, or not a readable list.
    """
    src = Path(source)
    if src.is_dir():
        entries = sorted(p for p in src.rglob("*") if p.suffix.lower() in IMAGE_EXTENSIONS)
        # rglob does not descend into symlinked folders, so a folder symlink loop ends here too
        return [_folder_entry(p, src) for p in entries]
    if not src.is_file():
        raise DataError("no such folder or list file", file=str(src))
    try:
        if src.suffix == ".parquet":
            import pyarrow.parquet as pq

            rows = pq.read_table(src).to_pylist()
        elif src.suffix in (".jsonl", ".json"):
            rows = read_jsonl(src)
        else:
            raise DataError("input list must be .parquet or .jsonl (or pass a folder)", file=str(src))
    except (ValueError, OSError) as e:  # pyarrow's ArrowInvalid is a ValueError
        if isinstance(e, DataError):
            raise
        raise DataError(f"unreadable input list: {e}", file=str(src)) from e
    out: list[InputImage] = []
    seen: dict[str, int] = {}
    for n, row in enumerate(rows, 1):
        out.append(_list_record(src, n, row, seen))
    return out


def _list_record(src: Path, n: int, row: object, seen: dict[str, int]) -> InputImage:
    """One record of an input list, validated field by field."""
    if not isinstance(row, dict):
        rel = f"record {n}"
        return InputImage(src, _key(rel), rel, problem=f"record {n} is a JSON {_type_name(row)}, not an object")
    field_name = "image" if "image" in row else "path"
    rel = row.get(field_name)
    if not isinstance(rel, str) or not rel.strip() or "\x00" in rel:
        what = f"field {field_name!r} is missing" if rel is None else f"field {field_name!r} is not a usable path but {_type_name(rel)}"
        bad = f"record {n}"
        return InputImage(src, _key(bad), bad, problem=f"record {n}: {what}")
    if rel in seen:
        dup = f"{rel}#record{n}"
        return InputImage(src, _key(dup), dup, problem=f"record {n} lists {rel!r} again (first in record {seen[rel]})")
    seen[rel] = n
    p = Path(rel) if Path(rel).is_absolute() else src.parent / rel
    cap = row.get("caption")
    item = InputImage(p, _key(rel), rel)
    if isinstance(cap, str):
        item.caption = cap.strip() or None
    elif cap is not None:  # null means "no caption given": the captioner (or --captions) supplies it
        item.problem = f"record {n}: caption is not a string but {_type_name(cap)}"
    return item


@dataclass
class CaptionTable:
    """Captions from a ``--captions`` file, checked row by row; see :func:`read_captions_table`."""

    by_image: dict[str, str]  # image (as listed) -> caption
    conflicts: dict[str, str]  # image -> why its caption is unusable (a failed row for that input)
    warnings: list[str]  # rows that name no usable image: counted in the run summary

    def lookup(self, item: InputImage) -> tuple[str | None, str | None]:
        """``(caption, problem)`` for an input, matched by its listed path, then by its file name."""
        for name in (item.rel, item.path.name):
            if name in self.conflicts:
                return None, self.conflicts[name]
            if name in self.by_image:
                return self.by_image[name], None
        return None, None

    def unmatched(self, inputs: list[InputImage]) -> list[str]:
        """Caption rows naming an image that is not among ``inputs``."""
        names = {i.rel for i in inputs} | {i.path.name for i in inputs}
        return sorted(set(self.by_image) - names)


def read_captions_table(path: str | os.PathLike) -> CaptionTable:
    """Read a CSV / JSONL / Parquet captions file (columns image, caption), validating each field's type.

    A row whose image is not a string is a warning; a non-string caption, or two rows giving one image
    different captions, makes that image's caption unusable (a failed row naming the rows).

    Raises:
        DataError: the file cannot be read or lacks the columns.
    """
    from cirsynth.captions.captioner import read_caption_file

    try:
        rows = read_caption_file(path)
    except (ValueError, OSError, UnicodeDecodeError) as e:
        raise DataError(f"unreadable captions file: {e}", file=str(path)) from e
    by_image: dict[str, str] = {}
    first_row: dict[str, int] = {}
    conflicts: dict[str, str] = {}
    warnings: list[str] = []
    for k, r in enumerate(rows, 1):
        image, cap = r["image"], r["caption"]
        if not isinstance(image, str) or not image.strip():
            warnings.append(f"captions row {k}: image is not a file name but {_type_name(image)!s}")
            continue
        if not isinstance(cap, str) or not cap.strip():
            what = "empty" if isinstance(cap, str) else f"not a string but {_type_name(cap)}"
            conflicts.setdefault(image, f"captions row {k}: caption is {what}")
            continue
        cap = cap.strip()
        if image in by_image and by_image[image] != cap:
            conflicts.setdefault(image, f"captions rows {first_row[image]} and {k} give different captions")
            continue
        by_image.setdefault(image, cap)
        first_row.setdefault(image, k)
    return CaptionTable(by_image, conflicts, warnings)


def load_rgb(path: str | os.PathLike, policy: LoadPolicy = LoadPolicy()) -> tuple[Image.Image | None, str | None]:
    """Load an image as 8-bit RGB following the module's policy.

    Returns:
        ``(image, None)`` on success, ``(None, reason)`` on failure.
    """
    path = Path(path)
    if not path.is_file():
        return None, f"file not found: {path}"
    try:
        im = _open_header(path)  # reads the header only
        w, h = im.size
        if im.format == "JPEG" and max(w, h) > policy.draft_side:
            im.draft("RGB", (policy.draft_side, policy.draft_side))  # decode at 1/2, 1/4 or 1/8 size
        if im.size[0] * im.size[1] > policy.max_pixels:
            return None, f"image too large to decode: {w}x{h} > {policy.max_pixels} pixels"
        im.load()
    except UnidentifiedImageError:
        return None, "not a readable image (unidentified format or corrupt header)"
    except Image.DecompressionBombError as e:  # beyond Pillow's own guard and not reducible
        return None, f"image too large to decode: {e}"
    except (OSError, SyntaxError, ValueError) as e:
        return None, f"corrupt or truncated image: {e}"
    if min(im.size) < policy.min_side:
        return None, f"image too small: {im.size[0]}x{im.size[1]} (shorter side < {policy.min_side})"
    try:
        im = ImageOps.exif_transpose(im)
        return to_rgb8(im), None
    except (OSError, ValueError) as e:
        return None, f"cannot convert to RGB: {e}"


def _open_header(path: Path) -> Image.Image:
    """``Image.open`` without touching Pillow's process-wide ``MAX_IMAGE_PIXELS``.

    Pillow refuses any image over twice its limit at open time, before a JPEG could be decoded reduced.
    Such a JPEG is opened through its plugin class directly (the header only; the caller drafts it);
    any other format keeps Pillow's refusal (``DecompressionBombError``).
    """
    try:
        return Image.open(path)
    except Image.DecompressionBombError:
        with open(path, "rb") as f:
            if f.read(3) != b"\xff\xd8\xff":
                raise
        from PIL import JpegImagePlugin

        return JpegImagePlugin.JpegImageFile(str(path))


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
