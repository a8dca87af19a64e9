"""Shared tiny fixtures: tiny CLIP and BLIP folders and small TripletDatasets of a colour-change task."""

from __future__ import annotations

import string

import numpy as np
import pytest
import torch
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


def make_tiny_blip(folder):
    """A random ``BlipForImageTextRetrieval`` (32 px, 2 layers, width 32) and its ``BlipProcessor``, saved to ``folder``.

    The processor is real: a WordPiece ``BertTokenizer`` over the task's words plus single letters, and a
    ``BlipImageProcessor`` at 32 px, so the folder loads the way a hub BLIP checkpoint does.
    """
    from transformers import BertTokenizer, BlipConfig, BlipForImageTextRetrieval, BlipImageProcessor, BlipProcessor

    words = ["make", "it", "change", "to", *COLOURS]
    letters = list(string.ascii_lowercase)
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *words, *letters, *(f"##{c}" for c in letters)]
    tokenizer = BertTokenizer(vocab={w: i for i, w in enumerate(vocab)})
    vision = dict(image_size=32, patch_size=8, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                  num_attention_heads=4, initializer_range=0.02)  # BLIP's vision default 1e-10 gives a dead ViT
    # At BERT's 0.02 the random text layers barely move the first token, so every query starts out the same
    # and a few steps learn nothing; 0.2 gives text and image a say from the start.
    text = dict(vocab_size=len(vocab), hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                encoder_hidden_size=32, max_position_embeddings=32, pad_token_id=tokenizer.pad_token_id,
                bos_token_id=tokenizer.cls_token_id, sep_token_id=tokenizer.sep_token_id, initializer_range=0.2)
    torch.manual_seed(0)
    BlipForImageTextRetrieval(BlipConfig(vision_config=vision, text_config=text, image_text_hidden_size=16)
                              ).save_pretrained(folder)
    BlipProcessor(BlipImageProcessor(size={"height": 32, "width": 32}), tokenizer).save_pretrained(folder)
    return folder


@pytest.fixture(scope="session")
def tiny_blip_dir(tmp_path_factory):
    return make_tiny_blip(tmp_path_factory.mktemp("blip") / "tiny-blip")
