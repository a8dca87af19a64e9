"""FashionIQ (Wu et al. 2021) layout: import the real benchmark, export a ``TripletDataset`` to it.

On disk (the folder CLIP4Cir calls ``fashionIQ_dataset``)::

    ROOT/captions/cap.{dress,shirt,toptee}.{train,val,test}.json   # [{"candidate", "target", "captions": [2]}]
    ROOT/image_splits/split.{dress,shirt,toptee}.{train,val,test}.json  # [image names]
    ROOT/images/<name>.jpg   # the file name CLIP4Cir's loader opens (``.png`` is accepted on import)
"""

from __future__ import annotations

import io
import os
from dataclasses import dataclass, field
from pathlib import Path

from cirsynth.config import atomic_write_bytes, atomic_write_json
from cirsynth.data.cirr import image_name
from cirsynth.data.dataset import TripletDataset, exportable_triplets, write_rejections
from cirsynth.data.errors import Collector, Rejection
from cirsynth.data.io_utils import is_file, load_json_of, resolve_inside, staged_output_dir

FASHIONIQ_CATEGORIES = ("dress", "shirt", "toptee")
FASHIONIQ_SPLITS = ("train", "val", "test")


@dataclass
class FashionIQQuery:
    index: int  # position in the caption file
    candidate: str  # reference image name
    target: str | None
    captions: list[str]  # two relative captions


@dataclass
class FashionIQSplit:
    category: str
    split: str
    queries: list[FashionIQQuery]
    images: dict[str, Path]
    rejections: list[Rejection] = field(default_factory=list)


def join_captions(captions: list[str]) -> str:
    """The deterministic test-time caption joining: "<first> and <second>", trailing punctuation stripped."""
    parts = [c.strip().strip(".?!, ").strip() for c in captions if c and c.strip(" .?!,")]
    if not parts:
        return ""
    first = parts[0][:1].upper() + parts[0][1:]
    return " and ".join([first] + parts[1:])


def read_fashioniq(
    root: str | os.PathLike, category: str, split: str, strict: bool = True, check_images: bool = True
) -> FashionIQSplit:
    """Read one FashionIQ category/split; problems raise ``DataError`` or, if not ``strict``, become rejections."""
    if split not in FASHIONIQ_SPLITS:
        raise ValueError(f"FashionIQ split must be one of {FASHIONIQ_SPLITS}, got {split!r}")
    root = Path(root)
    cap_file = root / "captions" / f"cap.{category}.{split}.json"
    img_file = root / "image_splits" / f"split.{category}.{split}.json"
    col = Collector(strict)

    names = load_json_of(img_file, list, col, "list of image names")
    images: dict[str, Path] = {}
    for i, name in enumerate(names):
        if not isinstance(name, str):
            col.reject(str(img_file), f"#{i}", "image name is not a string")
            continue
        path, why = resolve_inside(root, f"images/{name}.jpg")
        if path is not None and not is_file(path):
            png = resolve_inside(root, f"images/{name}.png")[0]
            path = png if png is not None and is_file(png) else path
        if path is None:
            col.reject(str(img_file), name, why)
            continue
        if check_images and not is_file(path):
            col.reject(str(img_file), name, f"image file missing: {path}")
            continue
        images[name] = path

    entries = load_json_of(cap_file, list, col, "list of query entries")
    queries = []
    for i, e in enumerate(entries):
        entry = f"#{i}"
        if not isinstance(e, dict):
            col.reject(str(cap_file), entry, "entry is not a JSON object")
            continue
        caps = e.get("captions")
        if not isinstance(e.get("candidate"), str):
            col.reject(str(cap_file), entry, "field 'candidate' missing or not a string")
            continue
        if not isinstance(caps, list) or not caps or not all(isinstance(c, str) for c in caps):
            col.reject(str(cap_file), entry, "field 'captions' missing or not a list of strings")
            continue
        target = e.get("target")
        if (split != "test" or target is not None) and not isinstance(target, str):
            col.reject(str(cap_file), entry, "field 'target' missing or not a string")
            continue
        bad = [(r, n) for r, n in (("candidate", e["candidate"]), ("target", target)) if n is not None and n not in images]
        if bad:
            col.reject(str(cap_file), entry, f"{bad[0][0]} {bad[0][1]!r} is not in the gallery (image_splits)")
            continue
        queries.append(FashionIQQuery(i, e["candidate"], target, list(caps)))
    return FashionIQSplit(category, split, queries, images, col.rejections)


def export_fashioniq(
    dataset: TripletDataset | str | os.PathLike, dst: str | os.PathLike, *, category: str = "dress", overwrite: bool = False
) -> dict[str, int]:
    """Write the accepted triplets as a FashionIQ folder under one ``category``.

    Each pair gets two captions, as FashionIQ has: the modification text and its first paraphrase
    (the modification text twice when the triplet has no paraphrase). Images are written as
    ``images/<name>.jpg`` (JPEG, quality 95), the name CLIP4Cir's FashionIQ loader opens.

    A triplet with an image outside the dataset root is left out and listed in ``cirsynth_rejections.json``.

    Returns:
        pairs written per split (and ``"rejected"`` when triplets were left out).
    """
    if not category or "." in category or "/" in category:
        raise ValueError(f"category must be a plain name without dots or slashes, got {category!r}")
    ds = dataset if isinstance(dataset, TripletDataset) else TripletDataset(dataset)
    by_split: dict[str, list] = {}
    accepted, rejections = exportable_triplets(ds)
    for t in accepted:
        if t.split not in FASHIONIQ_SPLITS:
            raise ValueError(f"triplet {t.id}: split {t.split!r} is not a FashionIQ split {FASHIONIQ_SPLITS}")
        by_split.setdefault(t.split, []).append(t)
    counts = {}
    with staged_output_dir(dst, overwrite) as out:
        for split, triplets in sorted(by_split.items()):
            names: dict[str, str] = {}
            entries = []
            for t in triplets:
                ref, tgt = image_name(t.reference), image_name(t.target)
                names[ref], names[tgt] = t.reference, t.target
                second = t.paraphrases[0] if t.paraphrases else t.modification_text
                entries.append({"candidate": ref, "target": tgt, "captions": [t.modification_text, second], "cirsynth_id": t.id})
            for name, rel in sorted(names.items()):
                dst_img = out / "images" / f"{name}.jpg"
                if not dst_img.exists():
                    buf = io.BytesIO()
                    ds.open_image(rel).save(buf, format="JPEG", quality=95)
                    atomic_write_bytes(dst_img, buf.getvalue())
            atomic_write_json(out / "captions" / f"cap.{category}.{split}.json", entries, indent=1)
            atomic_write_json(out / "image_splits" / f"split.{category}.{split}.json", sorted(names), indent=1)
            counts[split] = len(entries)
        write_rejections(out, rejections, counts)
    return counts
