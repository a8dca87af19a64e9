from __future__ import annotations

import json
from pathlib import Path
from typing import Literal


def export(
    src: Path,
    dst: Path,
    format: Literal["cirr", "fashioniq", "webdataset"] = "cirr",
    category: str = "dress",
    shard_size: int = 1000,
    seed: int = 0,
    overwrite: bool = False,
    link: bool = False,
) -> int:
    """Export the accepted triplets of a TripletDataset in a format CIR codebases read.

    Args:
        src: TripletDataset root (holds dataset.json and manifest/).
        dst: output folder; written under a temp name and renamed when complete.
        format: cirr (the cirr_dataset folder CLIP4Cir/SPRC read), fashioniq (fashionIQ_dataset
            folder), or webdataset (tar shards with NNNNNNNNN.ref.png / .tgt.png / .json).
        category: FashionIQ category name the triplets are filed under.
        shard_size: WebDataset samples per tar shard.
        seed: seed for building CIRR img_set groups where triplets have none.
        overwrite: replace an existing dst.
        link: cirr only: hard-link the dataset's images instead of copying them (editing one then edits both).
    """
    from cirsynth.config import save_resolved_config
    from cirsynth.data import TripletDataset, export_cirr, export_fashioniq, export_webdataset

    ds = TripletDataset(src)
    if format == "cirr":
        counts = export_cirr(ds, dst, seed=seed, overwrite=overwrite, link=link)
    elif format == "fashioniq":
        counts = export_fashioniq(ds, dst, category=category, overwrite=overwrite)
    else:
        counts = export_webdataset(ds, dst, shard_size=shard_size, overwrite=overwrite)
    save_resolved_config(dst, "export", dict(src=str(src), dst=str(dst), format=format, category=category,
                                              shard_size=shard_size, seed=seed, overwrite=overwrite, link=link))
    print(json.dumps({"format": format, "dst": str(dst), "written": counts}))
    return 0
