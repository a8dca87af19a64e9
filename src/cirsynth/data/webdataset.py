"""WebDataset tar shards of triplets: ``000000123.ref.png``, ``000000123.tgt.png``, ``000000123.json``.

Keys hold no dots (WebDataset splits a member name at its first dot into key and extension).
Each shard is written under a temp name and renamed when complete.
"""

from __future__ import annotations

import io
import json
import os
import tarfile
from pathlib import Path

from cirsynth.data.dataset import TripletDataset, exportable_triplets, write_rejections
from cirsynth.data.io_utils import staged_output_dir


def _add(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mtime = 0  # reproducible shards
    tar.addfile(info, io.BytesIO(data))


def export_webdataset(
    dataset: TripletDataset | str | os.PathLike,
    dst: str | os.PathLike,
    *,
    shard_size: int = 1000,
    status: str = "accepted",
    overwrite: bool = False,
) -> dict[str, int]:
    """Write triplets of one ``status`` as ``shard-000000.tar``, ... under ``dst``.

    The ``.json`` member carries the whole manifest row (modification text, captions, edit type,
    words, scores, provenance, the triplet id) with the dataset-relative image paths.

    A triplet with an image outside the dataset root is left out and listed in ``cirsynth_rejections.json``.

    Returns:
        ``{"samples": n, "shards": m}`` (and ``"rejected"`` when triplets were left out).
    """
    if shard_size < 1:
        raise ValueError("shard_size must be >= 1")
    ds = dataset if isinstance(dataset, TripletDataset) else TripletDataset(dataset)
    n = 0
    tar = None
    rows, rejections = exportable_triplets(ds, status)
    with staged_output_dir(dst, overwrite) as out:
        try:
            for t in rows:
                if n % shard_size == 0:
                    if tar is not None:
                        tar.close()
                    tar = tarfile.open(out / f"shard-{n // shard_size:06d}.tar", "w")
                key = f"{n:09d}"
                _add(tar, f"{key}.ref.png", ds.resolve_image(t.reference).read_bytes())
                if t.target is not None:
                    _add(tar, f"{key}.tgt.png", ds.resolve_image(t.target).read_bytes())
                row = t.to_row()
                row["scores"], row["provenance"] = t.scores, t.provenance
                _add(tar, f"{key}.json", json.dumps(row, ensure_ascii=False).encode())
                n += 1
        finally:
            if tar is not None:
                tar.close()
        counts = {"samples": n, "shards": (n + shard_size - 1) // shard_size}
        write_rejections(out, rejections, counts)
    return counts


def shard_paths(root: str | os.PathLike) -> list[Path]:
    return sorted(Path(root).glob("shard-*.tar"))
