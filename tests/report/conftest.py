"""A small TripletDataset with every kind of row the gallery shows: accepted, rejected by rules, failed, two edit
types, spread scores, a caption holding markup, and a target missing for a failed row."""

from __future__ import annotations

import pytest

from cirsynth.data import Triplet, TripletDataset
from tests.data.helpers import solid

SCRIPT_CAPTION = '<script>window.__pwned = 1</script><b>bold</b> & "quotes"'


def make_gallery_dataset(root, n: int = 12) -> TripletDataset:
    """``n`` rows: ids t00.. ; every 3rd rejected (clip_dir), t01 failed at the edit stage; colour and size edits;
    clip_i2i rises with the index, clip_dir falls. t02's reference caption holds a <script>."""
    ds = TripletDataset.create(root, meta={"made_by": "tests", "run_config": {"filters": {"min_clip_dir": 0.25}}})
    with ds.writer(shard_size=5) as w:
        for i in range(n):
            tid = f"t{i:02d}"
            status = "failed" if i == 1 else ("rejected" if i % 3 == 0 else "accepted")
            clip_dir = 0.5 - 0.04 * i
            t = Triplet(
                id=tid, reference="", modification_text=f"make it colour {i}",
                reference_caption=SCRIPT_CAPTION if i == 2 else f"a thing number {i}",
                target_caption=f"a changed thing number {i}", edit_type="color" if i % 2 == 0 else "size",
                source_words=["red"], target_words=["blue"],
                scores={} if status == "failed" else {"clip_i2i": 0.7 + 0.02 * i, "clip_dir": clip_dir, "psnr_outside": 20.0 + i},
                status=status,
                reason={"failed": "edit: RuntimeError: out of memory", "rejected": f"clip_dir {clip_dir:.3f} < 0.25"}.get(status),
                split="train", provenance={"seed": i, "candidates": 3, "input": f"img{i}.png"},
            )
            w.add(t, reference_image=solid(i % 6, i % 3, size=24), target_image=None if status == "failed" else solid((i + 1) % 6, i % 3, size=24))
    return ds


@pytest.fixture
def gallery_ds(tmp_path):
    return make_gallery_dataset(tmp_path / "ds")
