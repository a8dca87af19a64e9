"""``TripletDataset``: a Parquet manifest in shards plus image files, under one root.

Layout::

    ROOT/
      dataset.json                 # format version and free-form metadata
      manifest/part-000000.parquet # one shard per flush; complete files only (temp name + rename)
      images/ref/<sha256[:20]>.png # reference images, content-addressed (shared by several edits)
      images/tgt/<id>.png          # generated target images

Crash safety: images are written under a temp name and renamed before their row is buffered; a
shard is written under a temp name and renamed when complete. A crash can therefore lose buffered
rows (their work is redone on resume) but never leaves a half-written row or image. Readers only
see complete shards, so the dataset is readable while a writer appends to it.

The manifest loads with Hugging Face ``datasets`` without custom code::

    load_dataset("parquet", data_files="ROOT/manifest/*.parquet")
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
from PIL import Image

from cirsynth.config import atomic_write_bytes, atomic_write_json
from cirsynth.data.errors import DataError, Rejection
from cirsynth.data.io_utils import resolve_inside
from cirsynth.data.records import STATUSES, Triplet

FORMAT_VERSION = 1

MANIFEST_SCHEMA = pa.schema(
    [
        ("id", pa.string()),
        ("reference", pa.string()),
        ("modification_text", pa.string()),
        ("target", pa.string()),
        ("reference_caption", pa.string()),
        ("target_caption", pa.string()),
        ("edit_type", pa.string()),
        ("source_words", pa.list_(pa.string())),
        ("target_words", pa.list_(pa.string())),
        ("paraphrases", pa.list_(pa.string())),
        ("scores", pa.string()),  # JSON object: filter name -> value
        ("status", pa.string()),
        ("reason", pa.string()),
        ("split", pa.string()),
        ("group", pa.list_(pa.string())),
        ("provenance", pa.string()),  # JSON object: model ids, seeds, config hash
    ]
)

# part-NNNNNN.parquet, written in sequence by one process; part-NNNNNN-<16 hex>.parquet, named by the content it
# holds (see ``keyed_shard_name``), written by whichever worker finishes that content
_SHARD_RE = re.compile(r"^part-(\d{6})(?:-[0-9a-f]{16})?\.parquet$")
_SAFE_ID = re.compile(r"[^A-Za-z0-9_.-]")


def encode_png(image: Image.Image) -> bytes:
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    return buf.getvalue()


def safe_name(s: str) -> str:
    """A file-name-safe form of an id (ids may hold any characters)."""
    name = _SAFE_ID.sub("_", s)
    if name != s:  # keep distinct ids distinct after substitution
        name += "-" + hashlib.sha256(s.encode()).hexdigest()[:8]
    return name


class TripletDataset:
    """A triplet dataset on disk. Open an existing one with ``TripletDataset(root)``."""

    def __init__(self, root: str | os.PathLike):
        self.root = Path(root)
        meta_path = self.root / "dataset.json"
        if not meta_path.is_file():
            raise DataError("not a cirsynth TripletDataset (dataset.json missing)", file=str(self.root))
        try:
            self.meta: dict[str, Any] = json.loads(meta_path.read_text())
        except json.JSONDecodeError as e:
            raise DataError(f"malformed JSON: {e}", file=str(meta_path)) from e
        if self.meta.get("format_version") != FORMAT_VERSION:
            raise DataError(
                f"unsupported format_version {self.meta.get('format_version')!r} (expected {FORMAT_VERSION})",
                file=str(meta_path),
            )

    # -- creation -------------------------------------------------------------------------------
    @classmethod
    def create(cls, root: str | os.PathLike, meta: dict[str, Any] | None = None, exist_ok: bool = False) -> "TripletDataset":
        """Create an empty dataset at ``root`` (or open it if ``exist_ok`` and it exists)."""
        root = Path(root)
        if (root / "dataset.json").exists():
            if not exist_ok:
                raise FileExistsError(f"{root}: a TripletDataset already exists here")
            return cls(root)
        (root / "manifest").mkdir(parents=True, exist_ok=True)
        (root / "images" / "ref").mkdir(parents=True, exist_ok=True)
        (root / "images" / "tgt").mkdir(parents=True, exist_ok=True)
        atomic_write_json(root / "dataset.json", {"format_version": FORMAT_VERSION, **(meta or {})}, indent=2)
        return cls(root)

    def writer(self, shard_size: int = 256, keep_on_error: bool = True, shard_name: str | None = None) -> "TripletWriter":
        """A writer that appends rows in shards of ``shard_size``; use it as a context manager.

        ``keep_on_error=False``: an exception (Ctrl-C included) leaving the block discards the buffered rows
        instead of writing them, so every shard is all of what was flushed together or nothing.
        """
        return TripletWriter(self, shard_size=shard_size, keep_on_error=keep_on_error, shard_name=shard_name)

    def next_shard_number(self) -> int:
        """One more than the highest shard number written so far (0 for an empty manifest)."""
        nums = [int(_SHARD_RE.match(p.name).group(1)) for p in self.shard_paths()]
        return max(nums) + 1 if nums else 0

    # -- reading --------------------------------------------------------------------------------
    def shard_paths(self) -> list[Path]:
        """Complete manifest shards, in write order (temp files are never listed)."""
        d = self.root / "manifest"
        if not d.is_dir():
            return []
        return sorted(p for p in d.iterdir() if _SHARD_RE.match(p.name))

    def table(self) -> pa.Table:
        """The whole manifest as one Arrow table; a truncated or foreign shard raises ``DataError``."""
        tables = []
        for p in self.shard_paths():
            try:
                t = pq.read_table(p)
            except (pa.ArrowInvalid, OSError) as e:
                raise DataError(f"unreadable Parquet shard: {e}", file=str(p)) from e
            missing = set(MANIFEST_SCHEMA.names) - set(t.column_names)
            if missing:
                raise DataError(f"manifest shard lacks columns {sorted(missing)}", file=str(p))
            tables.append(t.select(MANIFEST_SCHEMA.names).cast(MANIFEST_SCHEMA))
        if not tables:
            return MANIFEST_SCHEMA.empty_table()
        return pa.concat_tables(tables)

    def triplets(self, status: str | None = None, split: str | None = None) -> Iterator[Triplet]:
        """Iterate records, optionally only one ``status`` ("accepted": the accepted view) or ``split``.

        Raises ``DataError`` naming the shard and id for a duplicated id or an invalid row.
        """
        if status is not None and status not in STATUSES:
            raise ValueError(f"status must be one of {STATUSES} or None, got {status!r}")
        seen: dict[str, str] = {}
        for p in self.shard_paths():
            try:
                rows = pq.read_table(p).to_pylist()
            except (pa.ArrowInvalid, OSError) as e:
                raise DataError(f"unreadable Parquet shard: {e}", file=str(p)) from e
            for row in rows:
                rid = row.get("id")
                if rid in seen:
                    raise DataError(f"duplicated triplet id (first in {seen[rid]})", file=str(p), entry=rid)
                seen[rid] = p.name
                try:
                    t = Triplet.from_row(row)
                except (ValueError, TypeError, json.JSONDecodeError) as e:
                    raise DataError(f"invalid row: {e}", file=str(p), entry=rid) from e
                if (status is None or t.status == status) and (split is None or t.split == split):
                    yield t

    def ids(self) -> set[str]:
        """Ids of every row written so far (all statuses): what a resumed run must not redo."""
        return set(self.table().column("id").to_pylist())

    def __len__(self) -> int:
        return sum(pq.ParquetFile(p).metadata.num_rows for p in self.shard_paths())

    def image_path(self, rel: str) -> Path:
        p = Path(rel)
        return p if p.is_absolute() else self.root / p

    def resolve_image(self, rel: str) -> Path:
        """The file of image ``rel`` after symlinks; ``DataError`` when it lies outside the dataset root."""
        path, why = resolve_inside(self.root, rel)
        if path is None:
            raise DataError(why, file=str(self.root))
        return path

    def open_image(self, rel: str) -> Image.Image:
        """Open an image of this dataset as RGB; a missing, corrupt or outside-the-root file raises ``DataError``."""
        path = self.resolve_image(rel)
        if not path.is_file():
            raise DataError("image file missing", file=str(path))
        try:
            with Image.open(path) as im:
                return im.convert("RGB")
        except OSError as e:
            raise DataError(f"unreadable image: {e}", file=str(path)) from e


def exportable_triplets(ds: TripletDataset, status: str = "accepted") -> tuple[list[Triplet], list[Rejection]]:
    """Triplets of one ``status`` whose every image (reference, target, group) lies inside the dataset root.

    An export must not copy, link or read files from elsewhere (``../`` or absolute paths, symlinks out):
    such a triplet is left out and returned as a ``Rejection`` with the reason.
    """
    keep, rejected = [], []
    for t in ds.triplets(status=status):
        refs = [t.reference] + ([t.target] if t.target is not None else []) + list(t.group)
        why = next((w for w in (resolve_inside(ds.root, r)[1] for r in refs) if w), None)
        if why:
            rejected.append(Rejection(str(ds.root), t.id, why))
        else:
            keep.append(t)
    return keep, rejected


def write_rejections(out: Path, rejections: list[Rejection], counts: dict[str, int]) -> None:
    """Record an export's left-out triplets in ``out/cirsynth_rejections.json`` and as ``counts["rejected"]``."""
    if rejections:
        atomic_write_json(out / "cirsynth_rejections.json",
                          [{"id": r.entry, "reason": r.reason} for r in rejections], indent=1)
        counts["rejected"] = len(rejections)


def keyed_shard_name(number: int, keys: list[str]) -> str:
    """The shard name for the rows of ``keys`` (e.g. a batch's input keys): the same keys always give the same
    name, so a batch written twice (a retried worker) replaces its shard instead of adding a second one."""
    digest = hashlib.sha256("\n".join(keys).encode()).hexdigest()[:16]
    return f"part-{number:06d}-{digest}.parquet"


class TripletWriter:
    """Appends triplets (and their images) to a ``TripletDataset`` in crash-safe shards.

    ``shard_name`` (from ``keyed_shard_name``): the writer writes that one shard, for a caller that runs many
    writers at once and itself keeps ids apart between them; ids are then checked within the shard only.
    """

    def __init__(self, dataset: TripletDataset, shard_size: int = 256, keep_on_error: bool = True,
                 shard_name: str | None = None):
        if shard_size < 1:
            raise ValueError("shard_size must be >= 1")
        if shard_name is not None and not _SHARD_RE.match(shard_name):
            raise ValueError(f"not a shard name: {shard_name!r} (part-NNNNNN[-16 hex].parquet)")
        self.dataset = dataset
        self.shard_size = shard_size
        self.keep_on_error = keep_on_error  # False: a block left by an exception writes no partial shard
        self.shard_name = shard_name
        self._rows: list[dict[str, Any]] = []
        self._ids = set() if shard_name is not None else dataset.ids()
        self._next_shard: int | None = 0 if shard_name is not None else dataset.next_shard_number()

    def __enter__(self) -> "TripletWriter":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is not None and not self.keep_on_error:
            self.discard()
            return
        # Rows finished before an exception are still worth keeping: they are complete.
        self.flush()

    def discard(self) -> int:
        """Drop the buffered rows (their image files stay, unreferenced); returns how many."""
        n = len(self._rows)
        self._ids.difference_update(r["id"] for r in self._rows)
        self._rows = []
        return n

    def save_reference(self, image: Image.Image) -> str:
        """Store a reference image by content hash (deduplicated); returns its relative path."""
        data = encode_png(image.convert("RGB"))
        rel = f"images/ref/{hashlib.sha256(data).hexdigest()[:20]}.png"
        path = self.dataset.root / rel
        if not path.exists():
            atomic_write_bytes(path, data)
        return rel

    def add(
        self,
        triplet: Triplet,
        reference_image: Image.Image | None = None,
        target_image: Image.Image | None = None,
        mask: Any = None,
    ) -> Triplet:
        """Append one triplet; given images are saved first and the paths set on the record.

        Args:
            mask: optional (H, W) boolean LocalBlend mask of the target, saved as ``images/mask/<id>.png`` (white =
                edited) and named by ``provenance["mask"]``.

        Raises:
            DataError: the id was written before (duplicate), or a referenced image file is missing.
        """
        if triplet.id in self._ids:
            raise DataError("duplicated triplet id", file=str(self.dataset.root), entry=triplet.id)
        if reference_image is not None:
            triplet.reference = self.save_reference(reference_image)
        if target_image is not None:
            rel = f"images/tgt/{safe_name(triplet.id)}.png"
            atomic_write_bytes(self.dataset.root / rel, encode_png(target_image.convert("RGB")))
            triplet.target = rel
        if mask is not None:
            import numpy as np

            rel = f"images/mask/{safe_name(triplet.id)}.png"
            atomic_write_bytes(self.dataset.root / rel, encode_png(Image.fromarray(np.asarray(mask, bool).astype(np.uint8) * 255)))
            triplet.provenance = {**(triplet.provenance or {}), "mask": rel}
        # A failed row may point at an input that could not be read; every other row's images must exist.
        for rel in (triplet.reference, triplet.target) if triplet.status != "failed" else ():
            if rel is not None and not self.dataset.image_path(rel).is_file():
                raise DataError(f"image file missing: {rel}", file=str(self.dataset.root), entry=triplet.id)
        triplet.validate()
        self._rows.append(triplet.to_row())
        self._ids.add(triplet.id)
        if len(self._rows) >= self.shard_size:
            self.flush()
        return triplet

    def flush(self) -> Path | None:
        """Write buffered rows as one new shard (temp name + rename). Returns its path, if any."""
        if not self._rows:
            return None
        table = pa.Table.from_pylist(self._rows, schema=MANIFEST_SCHEMA)
        buf = pa.BufferOutputStream()
        pq.write_table(table, buf)
        if self.shard_name is not None:
            if self._next_shard is None:
                raise RuntimeError(f"{self.shard_name}: a named shard is written once")
            path, self._next_shard = self.dataset.root / "manifest" / self.shard_name, None
        else:
            path = self.dataset.root / "manifest" / f"part-{self._next_shard:06d}.parquet"
            self._next_shard += 1
        atomic_write_bytes(path, buf.getvalue().to_pybytes())
        self._rows = []
        return path
