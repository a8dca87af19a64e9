"""How fast the gallery opens and pages a large manifest: prints JSON.

Builds a TripletDataset of N rows (manifest only, in shards of 1000; no images: the page shows "no image" for them),
then times the server's work: reading the manifest view, the first page, a filtered page, a page sorted by a score,
and a deep page, each through the real HTTP API on 127.0.0.1.

    PYTHONPATH=src python benchmarks/gallery.py --n 100000
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
import urllib.request
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from cirsynth.data import TripletDataset
from cirsynth.data.dataset import MANIFEST_SCHEMA
from cirsynth.report import Gallery, serve_in_thread


def build(root: Path, n: int, shard: int = 1000) -> None:
    TripletDataset.create(root)
    rng = np.random.default_rng(0)
    types = np.array(["color", "size", "material", "shape"])
    for s in range(0, n, shard):
        k = min(shard, n - s)
        i2i, cdir = rng.uniform(0.5, 1.0, k), rng.uniform(-0.2, 0.6, k)
        status = np.where(cdir < 0.2, "rejected", "accepted")
        rows = {
            "id": [f"img{s + j:07d}:0" for j in range(k)], "reference": [f"images/ref/{j}.png" for j in range(k)],
            "modification_text": ["make it blue"] * k, "target": [f"images/tgt/{j}.png" for j in range(k)],
            "reference_caption": ["a red cube"] * k, "target_caption": ["a blue cube"] * k,
            "edit_type": types[rng.integers(0, 4, k)].tolist(), "source_words": [["red"]] * k, "target_words": [["blue"]] * k,
            "paraphrases": [[]] * k,
            "scores": [json.dumps({"clip_i2i": a, "clip_dir": b}) for a, b in zip(i2i, cdir)],
            "status": status.tolist(), "reason": [None if st == "accepted" else f"clip_dir {b:.3f} < 0.2" for st, b in zip(status, cdir)],
            "split": ["train"] * k, "group": [[]] * k, "provenance": ["{}"] * k,
        }
        pq.write_table(pa.table(rows, schema=MANIFEST_SCHEMA), root / "manifest" / f"part-{s // shard:06d}.parquet")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=100_000)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "ds"
        t = time.perf_counter()
        build(root, args.n)
        build_s = time.perf_counter() - t
        t = time.perf_counter()
        gallery = Gallery(root)
        open_s = time.perf_counter() - t
        server, url = serve_in_thread(gallery)
        result = {"rows": args.n, "build_manifest_s": round(build_s, 2), "open_view_s": round(open_s, 3)}
        for name, q in [("meta", "/api/meta"), ("first_page", "/api/rows?limit=20"),
                        ("filter_status_rule_type", "/api/rows?status=rejected&rule=clip_dir&edit_type=size&limit=20"),
                        ("sort_by_score", "/api/rows?sort=clip_i2i&order=desc&limit=20"),
                        ("deep_page", f"/api/rows?offset={args.n - 20}&limit=20")]:
            times = []
            for _ in range(3):
                t = time.perf_counter()
                body = urllib.request.urlopen(url + q, timeout=60).read()
                times.append(time.perf_counter() - t)
            result[f"{name}_ms"] = round(1000 * min(times), 1)
            result[f"{name}_bytes"] = len(body)
        server.shutdown()
    print(json.dumps(result))


if __name__ == "__main__":
    main()
