"""A tiny random CLIP (model + working tokenizer + image processor) that loads offline.

``make_tiny_clip(folder)`` writes a folder that ``CLIPModel.from_pretrained`` and
``CLIPProcessor.from_pretrained`` read like any hub checkpoint, so tests exercise exactly the
loading code a user with ``openai/clip-vit-base-patch32`` runs. The tokenizer is a real
byte-level BPE ``CLIPTokenizer``: its vocabulary is the 256 byte symbols (alone and as word
ends) plus merges for a small word list, so any text tokenises and common words are one token.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

# Words that get whole-word tokens; anything else falls back to byte symbols.
_WORDS: tuple[str, ...] = (
    "a", "an", "the", "is", "and", "of", "with", "in", "on", "instead", "make", "it", "change",
    "red", "green", "blue", "yellow", "white", "black", "small", "large", "big", "cube", "sphere",
    "cylinder", "cat", "dog", "car", "shirt", "dress", "metal", "rubber", "photo", "more", "less",
)


@dataclass
class TinyClipConfig:
    """Sizes of the tiny CLIP; defaults keep a forward pass on CPU in milliseconds."""

    image_size: int = 32  # input resolution of the vision tower
    patch_size: int = 8  # 16 patches at 32 px
    hidden_size: int = 32  # width of both towers
    num_layers: int = 2  # transformer layers per tower
    num_heads: int = 2  # attention heads per layer
    projection_dim: int = 16  # joint embedding size = CIR feature size
    max_text_len: int = 32  # text positions (real CLIP: 77)
    seed: int = 0  # seed for the random weights


def _bytes_to_unicode() -> dict[int, str]:
    """GPT-2's reversible byte -> printable character table (CLIP's BPE runs on these symbols)."""
    printable = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    chars = printable[:]
    n = 0
    for b in range(256):
        if b not in printable:
            printable.append(b)
            chars.append(256 + n)
            n += 1
    return dict(zip(printable, (chr(c) for c in chars)))


def build_tiny_clip_tokenizer(max_length: int = 32):
    """A real ``CLIPTokenizer`` with a small byte-level BPE vocabulary (see module docstring)."""
    from transformers import CLIPTokenizer

    symbols = list(_bytes_to_unicode().values())
    vocab: dict[str, int] = {}
    for tok in ["<|startoftext|>", "<|endoftext|>"] + symbols + [s + "</w>" for s in symbols]:
        vocab.setdefault(tok, len(vocab))
    merges: list[tuple[str, str]] = []
    for word in _WORDS:
        # Merge left to right: ("r","e") -> "re", ("re","d</w>") -> "red</w>".
        pieces = list(word[:-1]) + [word[-1] + "</w>"]
        while len(pieces) > 1:
            pair = (pieces[0], pieces[1])
            merged = pair[0] + pair[1]
            if pair not in merges:
                merges.append(pair)
            vocab.setdefault(merged, len(vocab))
            pieces = [merged] + pieces[2:]
    return CLIPTokenizer(vocab=vocab, merges=merges, model_max_length=max_length)


def build_tiny_clip(cfg: TinyClipConfig | None = None):
    """Return ``(CLIPModel, CLIPProcessor)`` with random weights and a working tokenizer, in memory."""
    import torch
    from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel, CLIPProcessor

    cfg = cfg or TinyClipConfig()
    tokenizer = build_tiny_clip_tokenizer(cfg.max_text_len)
    common = dict(hidden_size=cfg.hidden_size, intermediate_size=2 * cfg.hidden_size,
                  num_hidden_layers=cfg.num_layers, num_attention_heads=cfg.num_heads)
    config = CLIPConfig(
        text_config=dict(vocab_size=len(tokenizer), max_position_embeddings=cfg.max_text_len,
                         bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
                         pad_token_id=tokenizer.pad_token_id, **common),
        vision_config=dict(image_size=cfg.image_size, patch_size=cfg.patch_size, **common),
        projection_dim=cfg.projection_dim,
    )
    torch.manual_seed(cfg.seed)
    model = CLIPModel(config).eval()
    image_processor = CLIPImageProcessor(
        size={"shortest_edge": cfg.image_size}, crop_size={"height": cfg.image_size, "width": cfg.image_size}
    )
    return model, CLIPProcessor(image_processor=image_processor, tokenizer=tokenizer)


def make_tiny_clip(folder: str | os.PathLike, cfg: TinyClipConfig | None = None) -> Path:
    """Write the tiny CLIP to ``folder`` (model weights, config, tokenizer, image processor); returns it.

    Reuses an existing folder written with the same ``cfg`` (a marker file records it).
    """
    folder = Path(folder)
    cfg = cfg or TinyClipConfig()
    marker = folder / "tiny_clip.json"
    if marker.exists() and json.loads(marker.read_text()) == cfg.__dict__:
        return folder
    model, processor = build_tiny_clip(cfg)
    model.save_pretrained(folder)
    processor.save_pretrained(folder)
    marker.write_text(json.dumps(cfg.__dict__))
    return folder
