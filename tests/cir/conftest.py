"""Shared tiny fixtures: the tiny CLIP folder and small TripletDatasets of a colour-change task."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from cirsynth.data import Triplet, TripletDataset
from cirsynth.testing.tiny_clip import make_tiny_clip

COLOURS = {"red": (220, 30, 30), "green": (30, 200, 40), "blue": (30, 40, 220), "yellow": (230, 220, 30),
           "white": (245, 245, 245), "black": (10, 10, 10)}


def square(colour: str, x: int, y: int, size: int = 12) -> Image.Image:
    """A 32x32 grey image with one coloured square at (x, y)."""
    a = np.full((32, 32, 3), 128, np.uint8)
    a[y : y + size, x : x + size] = COLOURS[colour]
    return Image.fromarray(a)


def write_colour_triplets(root, n: int, seed: int, splits=("train",), prefix: str = "t") -> TripletDataset:
    """``n`` triplets per split: a square changes colour; the text names the new colour."""
    rng = np.random.default_rng(seed)
    names = list(COLOURS)
    ds = TripletDataset.create(root)
    with ds.writer() as w:
        for split in splits:
            for i in range(n):
                a, b = rng.choice(len(names), 2, replace=False)
                x, y = (int(v) for v in rng.integers(0, 20, 2))
                t = Triplet(id=f"{prefix}-{split}-{i}", reference="pending", target="pending",
                            modification_text=f"make it {names[b]}", paraphrases=[f"change it to {names[b]}"],
                            split=split)
                w.add(t, reference_image=square(names[a], x, y), target_image=square(names[b], x, y))
    return ds


@pytest.fixture(scope="session")
def tiny_clip_dir(tmp_path_factory):
    return make_tiny_clip(tmp_path_factory.mktemp("clip") / "tiny-clip")


@pytest.fixture(scope="session")
def real_ds(tmp_path_factory):
    return write_colour_triplets(tmp_path_factory.mktemp("real") / "ds", 24, seed=1, splits=("train", "test"))


@pytest.fixture(scope="session")
def synthetic_ds(tmp_path_factory):
    return write_colour_triplets(tmp_path_factory.mktemp("syn") / "ds", 24, seed=2, prefix="s")
