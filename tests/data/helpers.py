"""Builders of small TripletDatasets for tests."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from cirsynth.data import Triplet, TripletDataset

COLORS = ["red", "blue", "green", "yellow", "purple", "orange"]
SHAPES = ["cube", "ball", "cone"]


def solid(color_index: int, shape_index: int, size: int = 16) -> Image.Image:
    rng = np.random.default_rng(color_index * 31 + shape_index)
    arr = rng.integers(0, 255, size=(size, size, 3), dtype=np.uint8)
    arr[..., color_index % 3] = (40 * shape_index) % 256
    return Image.fromarray(arr)


def make_dataset(root: Path, per_split: dict[str, int] | None = None, shard_size: int = 4, rejected: int = 2) -> TripletDataset:
    """A dataset whose triplets swap the colour of a shape; ``rejected`` extra rejected rows per split."""
    per_split = per_split or {"train": 8, "val": 6, "test": 6}
    ds = TripletDataset.create(root, meta={"made_by": "tests"})
    with ds.writer(shard_size=shard_size) as w:
        for split, n in per_split.items():
            for i in range(n + rejected):
                c, s = i % len(COLORS), i % len(SHAPES)
                c2 = (c + 1) % len(COLORS)
                src, tgt = f"a {COLORS[c]} {SHAPES[s]}", f"a {COLORS[c2]} {SHAPES[s]}"
                status = "accepted" if i < n else "rejected"
                t = Triplet(
                    id=f"{split}-{i}",
                    reference="",
                    modification_text=f"make it {COLORS[c2]}",
                    reference_caption=src,
                    target_caption=tgt,
                    edit_type="color",
                    source_words=[COLORS[c]],
                    target_words=[COLORS[c2]],
                    paraphrases=[f"is {COLORS[c2]} instead of {COLORS[c]}"],
                    scores={"clip_i2i": 0.8},
                    status=status,
                    reason=None if status == "accepted" else "clip_dir < 0.2",
                    split=split,
                    provenance={"seed": i},
                )
                w.add(t, reference_image=solid(c, s + 7 * i + 1000 * len(split)), target_image=solid(c2, s + 100 * i))
    return ds
