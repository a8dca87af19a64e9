"""CIRR (Liu et al. 2021) layout: import the real benchmark, export a ``TripletDataset`` to it.

On disk (the folder CLIP4Cir and SPRC call ``cirr_dataset``)::

    ROOT/cirr/captions/cap.rc2.{train,val,test1}.json      # list of query entries
    ROOT/cirr/image_splits/split.rc2.{train,val,test1}.json # image name -> path relative to ROOT
    ROOT/<relative image paths>

A caption entry holds ``pairid`` (int), ``reference``, ``target_hard``, ``target_soft``, ``caption``
and ``img_set`` (``members``: the 6 images of the query's group, the reference included). The test1
split of the real benchmark has no targets.
"""

from __future__ import annotations

import os
import random
from dataclasses import dataclass, field
from pathlib import Path

from cirsynth.config import atomic_write_json
from cirsynth.data.dataset import TripletDataset, exportable_triplets, write_rejections
from cirsynth.data.errors import Collector, DataError, Rejection
from cirsynth.data.io_utils import caption_tokens, copy_or_link, is_file, load_json_of, resolve_inside, staged_output_dir

CIRR_SPLITS = ("train", "val", "test1")
GROUP_SIZE = 6
# TripletDataset split name -> CIRR split name.
SPLIT_TO_CIRR = {"train": "train", "val": "val", "test": "test1", "test1": "test1"}


@dataclass
class CIRRQuery:
    pairid: int
    reference: str  # image name
    caption: str  # relative caption (modification text)
    target: str | None  # image name; None in test1
    members: list[str]  # img_set members: 6 image names, reference included
    target_soft: dict[str, float] = field(default_factory=dict)


@dataclass
class CIRRSplit:
    split: str
    queries: list[CIRRQuery]
    images: dict[str, Path]  # gallery: image name -> absolute path
    rejections: list[Rejection] = field(default_factory=list)


def _base_dir(root: Path) -> Path:
    """Accept the ``cirr_dataset`` folder, or its inner ``cirr`` folder."""
    if (root / "cirr" / "captions").is_dir():
        return root
    if root.name == "cirr" and (root / "captions").is_dir():
        return root.parent
    raise FileNotFoundError(f"{root}: no cirr/captions folder; pass the folder that holds cirr/ and the images")


def cirr_splits(root: str | os.PathLike) -> list[str]:
    """The CIRR splits a ``cirr_dataset`` folder holds (those with a ``cap.rc2.<split>.json``), in CIRR order."""
    base = _base_dir(Path(root))
    return [s for s in CIRR_SPLITS if (base / "cirr" / "captions" / f"cap.rc2.{s}.json").is_file()]


def read_cirr(root: str | os.PathLike, split: str, strict: bool = True, check_images: bool = True) -> CIRRSplit:
    """Read one CIRR split.

    Args:
        root: the ``cirr_dataset`` folder (holding ``cirr/captions`` and the image folders).
        split: "train", "val" or "test1".
        strict: raise ``DataError`` (naming file and entry) on the first problem; if False, skip the
            bad item and record a ``Rejection`` in the result instead. Nothing is dropped silently.
        check_images: also check that every image file exists.

    Returns:
        ``CIRRSplit`` with the queries, the gallery and any rejections.
    """
    if split not in CIRR_SPLITS:
        raise ValueError(f"CIRR split must be one of {CIRR_SPLITS}, got {split!r}")
    base = _base_dir(Path(root))
    cap_file = base / "cirr" / "captions" / f"cap.rc2.{split}.json"
    img_file = base / "cirr" / "image_splits" / f"split.rc2.{split}.json"
    if not cap_file.is_file():
        raise DataError(f"no CIRR {split} split here (no {cap_file.name}); splits present: "
                        f"{', '.join(cirr_splits(root)) or 'none'}", file=str(base))
    col = Collector(strict)

    # 1. the gallery
    name_to_rel = load_json_of(img_file, dict, col, "object mapping image name to relative path")
    images: dict[str, Path] = {}
    for name, rel in name_to_rel.items():
        if not isinstance(rel, str):
            col.reject(str(img_file), name, f"relative path must be a string, got {type(rel).__name__}")
            continue
        path, why = resolve_inside(base, rel)
        if path is None:
            col.reject(str(img_file), name, why)
            continue
        if check_images and not is_file(path):
            col.reject(str(img_file), name, f"image file missing: {path}")
            continue
        images[name] = path

    # 2. the queries
    entries = load_json_of(cap_file, list, col, "list of query entries")
    queries: list[CIRRQuery] = []
    seen: set[int] = set()
    needs_target = not split.startswith("test")
    for i, e in enumerate(entries):
        q = _parse_query(e, i, needs_target, images, seen, col, str(cap_file))
        if q is not None:
            seen.add(q.pairid)
            queries.append(q)
    return CIRRSplit(split, queries, images, col.rejections)


def _parse_query(e, index: int, needs_target: bool, images: dict, seen: set, col: Collector, file: str) -> CIRRQuery | None:
    entry = e.get("pairid", f"#{index}") if isinstance(e, dict) else f"#{index}"
    if not isinstance(e, dict):
        col.reject(file, entry, "entry is not a JSON object")
        return None
    for key, typ in (("pairid", int), ("reference", str), ("caption", str)):
        if not isinstance(e.get(key), typ) or isinstance(e.get(key), bool):
            col.reject(file, entry, f"field {key!r} missing or not a {typ.__name__}")
            return None
    if e["pairid"] in seen:
        col.reject(file, entry, "duplicated pairid")
        return None
    members = (e.get("img_set") or {}).get("members") if isinstance(e.get("img_set"), dict) else None
    if not isinstance(members, list) or not all(isinstance(m, str) for m in members):
        col.reject(file, entry, "img_set.members missing or not a list of image names")
        return None
    target = e.get("target_hard")
    if (needs_target or target is not None) and not isinstance(target, str):
        col.reject(file, entry, "field 'target_hard' missing or not a string")
        return None
    for role, name in [("reference", e["reference"]), ("target", target)] + [("img_set member", m) for m in members]:
        if name is not None and name not in images:
            col.reject(file, entry, f"{role} {name!r} is not in the gallery (image_splits)")
            return None
    soft = e.get("target_soft") or {}
    if not isinstance(soft, dict) or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in soft.values()):
        col.reject(file, entry, "field 'target_soft' is not an object of image name -> number")
        return None
    return CIRRQuery(e["pairid"], e["reference"], e["caption"], target, list(members), dict(soft))


# ---------------------------------------------------------------------------------------------
# export


def image_name(rel: str) -> str:
    """CIRR-style image name for a dataset image path: ``images/tgt/x.png`` -> ``tgt-x``."""
    p = Path(rel)
    if p.is_absolute():
        import hashlib

        return "ext-" + hashlib.sha256(str(p).encode()).hexdigest()[:16]
    return f"{p.parent.name}-{p.stem}"


def build_group(ref: str, tgt: str, caption: str, pool: dict[str, str], rng: random.Random, size: int = GROUP_SIZE) -> list[str]:
    """A plausible CIRR img_set: the reference, the target and the images whose captions overlap most.

    Args:
        ref, tgt: names of the reference and target.
        caption: the reference caption (used to find look-alikes).
        pool: every image name of the split -> its caption.
        rng: seeded; breaks ties between equally similar candidates.
    Returns:
        ``size`` distinct names, reference first, then target, then the most similar others.
    """
    if len(pool) < size:
        raise ValueError(f"a CIRR group needs {size} distinct images in the split, the split has {len(pool)}")
    words = caption_tokens(caption)
    others = [n for n in pool if n not in (ref, tgt)]
    rng.shuffle(others)

    def jaccard(n: str) -> float:
        w = caption_tokens(pool[n])
        return len(words & w) / max(1, len(words | w))

    others.sort(key=jaccard, reverse=True)  # stable: shuffled order breaks ties
    return [ref, tgt] + others[: size - 2]


def export_cirr(
    dataset: TripletDataset | str | os.PathLike, dst: str | os.PathLike, *, seed: int = 0, overwrite: bool = False,
    link: bool = False,
) -> dict[str, int]:
    """Write the accepted triplets of ``dataset`` as a CIRR folder that CIRR loaders read unchanged.

    Every split gets ``captions``, ``image_splits`` and ``img_set.members`` (CLIP4Cir reads members
    for every split, train included). A triplet's own ``group`` is used when it names 6 images of
    the dataset; otherwise a group is built from caption overlap (``build_group``). Dataset split
    "test" becomes CIRR "test1" (targets are kept, unlike the hidden real test set). Extra field
    ``cirsynth_id`` maps each pair back to its triplet.

    Images are copied (``link=True``: hard-linked, so editing the export edits the dataset). A triplet
    with an image outside the dataset root is left out and listed in ``cirsynth_rejections.json``.

    Returns:
        pairs written per CIRR split (and ``"rejected"`` when triplets were left out).
    """
    ds = dataset if isinstance(dataset, TripletDataset) else TripletDataset(dataset)
    by_split: dict[str, list] = {}
    accepted, rejections = exportable_triplets(ds)
    for t in accepted:
        if t.split not in SPLIT_TO_CIRR:
            raise ValueError(f"triplet {t.id}: split {t.split!r} has no CIRR counterpart {tuple(SPLIT_TO_CIRR)}")
        by_split.setdefault(SPLIT_TO_CIRR[t.split], []).append(t)
    counts: dict[str, int] = {}
    rng = random.Random(seed)
    with staged_output_dir(dst, overwrite) as out:
        for split, triplets in sorted(by_split.items()):
            pool: dict[str, str] = {}  # name -> caption
            rels: dict[str, str] = {}  # name -> dataset-relative path
            for t in triplets:
                for rel, cap in ((t.reference, t.reference_caption), (t.target, t.target_caption)):
                    name = image_name(rel)
                    rels[name] = rel
                    pool.setdefault(name, cap or "")
                for rel in t.group:
                    rels.setdefault(image_name(rel), rel)
                    pool.setdefault(image_name(rel), "")
            entries = []
            for pairid, t in enumerate(triplets):
                ref, tgt = image_name(t.reference), image_name(t.target)
                members = [image_name(g) for g in t.group]
                if len(set(members)) != GROUP_SIZE or ref not in members or tgt not in members:
                    members = build_group(ref, tgt, t.reference_caption or t.modification_text, pool, rng)
                entries.append(
                    {
                        "pairid": pairid,
                        "reference": ref,
                        "target_hard": tgt,
                        "target_soft": {tgt: 1.0},
                        "caption": t.modification_text,
                        "img_set": {"id": pairid, "members": members, "reference_rank": members.index(ref), "target_rank": members.index(tgt)},
                        "cirsynth_id": t.id,
                    }
                )
            name_to_rel = {}
            for name, rel in sorted(rels.items()):
                copy_or_link(ds.resolve_image(rel), out / split / f"{name}.png", link=link)
                name_to_rel[name] = f"./{split}/{name}.png"
            atomic_write_json(out / "cirr" / "captions" / f"cap.rc2.{split}.json", entries, indent=1)
            atomic_write_json(out / "cirr" / "image_splits" / f"split.rc2.{split}.json", name_to_rel, indent=1)
            counts[split] = len(entries)
        write_rejections(out, rejections, counts)
    return counts
