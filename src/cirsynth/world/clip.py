"""Train the mini world's image-text model as a transformers ``CLIPModel`` (+ ``CLIPProcessor``).

The saved folder loads with ``CLIPModel.from_pretrained`` / ``CLIPProcessor.from_pretrained`` (and
``cirsynth.models.clip.load_clip``), so the CLIP filter and the CIR backbone use it exactly as they
would use ``openai/clip-vit-base-patch32``. The tokenizer is a real byte-level BPE ``CLIPTokenizer``
whose merges make every word of the world's captions and relative captions a single token; any
other text still tokenises (into byte symbols). Training is CLIP's symmetric InfoNCE (Radford et al.
2021, Fig. 3) on renders and their grammar captions.
"""

from __future__ import annotations

import math
import os
import time
from dataclasses import asdict, dataclass
from typing import Any, Callable

import numpy as np
import torch

from cirsynth.world.diffusion import optimizer_step
from cirsynth.world.language import NUM_CAPTION_VARIANTS, WORLD_EDIT_TYPES, apply_edit, caption, tokenize
from cirsynth.world.render import render
from cirsynth.world.scene import random_scene


def world_words(num_scenes: int = 300, seed: int = 0) -> list[str]:
    """Every lower-case word of the world's captions and relative captions (sorted), from a fixed sample."""
    rng = np.random.default_rng(seed)
    words: set[str] = set()
    for _ in range(num_scenes):
        scene = random_scene(rng)
        for v in range(NUM_CAPTION_VARIANTS):
            words.update(tokenize(caption(scene, v).lower()))
        for etype in WORLD_EDIT_TYPES:
            ce = apply_edit(scene, etype, rng).caption_edit
            for text in (ce.modification_text, *ce.paraphrases):
                words.update(tokenize(text.lower()))
    return sorted(w for w in words if w.isalpha())


def _bytes_to_unicode() -> dict[int, str]:
    """GPT-2 / CLIP's reversible byte -> printable character table."""
    keep = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    table = {b: chr(b) for b in keep}
    extra = 0
    for b in range(256):
        if b not in table:
            table[b] = chr(256 + extra)
            extra += 1
    return table


def _bpe(pieces: list[str], ranks: dict[tuple[str, str], int]) -> list[str]:
    """Apply BPE merges by rank (lowest first), as CLIP's tokenizer does."""
    while len(pieces) > 1:
        pairs = [(ranks.get(p, math.inf), i) for i, p in enumerate(zip(pieces, pieces[1:]))]
        rank, _ = min(pairs)
        if rank == math.inf:
            break
        best = next(p for p in zip(pieces, pieces[1:]) if ranks.get(p) == rank)
        merged, i = [], 0
        while i < len(pieces):
            if i + 1 < len(pieces) and (pieces[i], pieces[i + 1]) == best:
                merged.append(pieces[i] + pieces[i + 1])
                i += 2
            else:
                merged.append(pieces[i])
                i += 1
        pieces = merged
    return pieces


def build_tokenizer(words: list[str], max_length: int = 64):
    """A ``CLIPTokenizer`` over byte symbols plus merges that make each of ``words`` one token.

    Merges are added word by word: tokenise the word with the merges so far, then join its first
    two pieces, until it is one token. New merges rank after all older ones, so they never change
    how an earlier word tokenises.
    """
    from transformers import CLIPTokenizer

    symbols = list(_bytes_to_unicode().values())
    vocab: dict[str, int] = {}
    for tok in ["<|startoftext|>", "<|endoftext|>", *symbols, *(s + "</w>" for s in symbols)]:
        vocab.setdefault(tok, len(vocab))
    ranks: dict[tuple[str, str], int] = {}
    byte = _bytes_to_unicode()
    for word in words:
        chars = [byte[b] for b in word.encode("utf-8")]
        while len(pieces := _bpe([*chars[:-1], chars[-1] + "</w>"], ranks)) > 1:
            ranks[(pieces[0], pieces[1])] = len(ranks)
            vocab.setdefault(pieces[0] + pieces[1], len(vocab))
    merges = sorted(ranks, key=ranks.__getitem__)
    return CLIPTokenizer(vocab=vocab, merges=merges, model_max_length=max_length)


@dataclass
class WorldClipConfig:
    """Sizes, data and schedule of the world CLIP."""

    image_size: int = 64  # vision input side (renders are 64x64)
    patch_size: int = 8  # 8x8 = 64 patches
    hidden_size: int = 128  # width of both towers
    num_layers: int = 4  # transformer layers per tower
    num_heads: int = 4  # attention heads
    projection_dim: int = 128  # joint embedding size (the CIR feature size)
    max_length: int = 64  # text positions (3-object captions take about 50 tokens)
    num_scenes: int = 20000  # training renders, one random caption paraphrase each
    num_eval: int = 500  # held-out renders for retrieval accuracy
    steps: int = 4000  # optimiser steps
    batch_size: int = 128  # pairs per step (the contrastive negatives)
    lr: float = 5e-4  # AdamW peak lr (warm-up, cosine decay)
    seed: int = 0  # scenes, init, order
    log_every: int = 50  # steps between log lines


def build_clip(config: WorldClipConfig, words: list[str] | None = None):
    """A fresh ``(CLIPModel, CLIPProcessor)`` of the given sizes with the world tokenizer."""
    from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel, CLIPProcessor

    tokenizer = build_tokenizer(words if words is not None else world_words(), config.max_length)
    common = dict(
        hidden_size=config.hidden_size,
        intermediate_size=4 * config.hidden_size,
        num_hidden_layers=config.num_layers,
        num_attention_heads=config.num_heads,
    )
    clip_config = CLIPConfig(
        text_config=dict(
            vocab_size=len(tokenizer),
            max_position_embeddings=config.max_length,
            bos_token_id=tokenizer.bos_token_id,
            eos_token_id=tokenizer.eos_token_id,
            pad_token_id=tokenizer.pad_token_id,
            **common,
        ),
        vision_config=dict(image_size=config.image_size, patch_size=config.patch_size, **common),
        projection_dim=config.projection_dim,
    )
    torch.manual_seed(config.seed)
    model = CLIPModel(clip_config)
    size = config.image_size
    processor = CLIPProcessor(
        image_processor=CLIPImageProcessor(size={"shortest_edge": size}, crop_size={"height": size, "width": size}),
        tokenizer=tokenizer,
    )
    return model, processor


def _pairs(processor: Any, n: int, seed: int, size: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Render n scenes and caption each: (pixel_values (n, 3, S, S), input_ids (n, L), attention_mask (n, L))."""
    rng = np.random.default_rng(seed)
    images, texts = [], []
    for _ in range(n):
        scene = random_scene(rng)
        images.append(render(scene, size=size))
        texts.append(caption(scene, int(rng.integers(NUM_CAPTION_VARIANTS))))
    batch = processor(text=texts, images=images, return_tensors="pt", padding="max_length", truncation=True)
    return batch["pixel_values"], batch["input_ids"], batch["attention_mask"]


@torch.no_grad()
def retrieval_accuracy(model: Any, pixels: torch.Tensor, ids: torch.Tensor, mask: torch.Tensor) -> dict[str, float]:
    """Top-1 image->text and text->image accuracy among the given pairs (chance = 1 / N)."""
    model.eval()
    from cirsynth.models.clip import image_features, text_features

    img = torch.nn.functional.normalize(image_features(model, pixels), dim=-1)  # (N, P)
    txt = torch.nn.functional.normalize(text_features(model, ids, mask), dim=-1)  # (N, P)
    sim = img @ txt.T  # (N, N)
    target = torch.arange(len(sim))
    return {"i2t_top1": float((sim.argmax(1) == target).float().mean()), "t2i_top1": float((sim.argmax(0) == target).float().mean())}


def train_world_clip(config: WorldClipConfig, out: str | os.PathLike, log: Callable[[str], None] = print) -> dict[str, Any]:
    """Train and save the world CLIP (model + processor) to ``out``.

    Returns:
        report: losses, held-out retrieval accuracy among ``num_eval`` pairs, seconds, config.
    """
    t0 = time.time()
    model, processor = build_clip(config)
    # 1. data, rendered once
    pixels, ids, mask = _pairs(processor, config.num_scenes, config.seed * 2 + 1, config.image_size)
    e_pixels, e_ids, e_mask = _pairs(processor, config.num_eval, config.seed * 2 + 2, config.image_size)
    log(f"rendered {config.num_scenes}+{config.num_eval} pairs in {time.time() - t0:.0f}s")
    # 2. contrastive training
    opt = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=0.1)
    warm = min(200, config.steps // 10 + 1)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: (s + 1) / warm if s < warm else 0.5 * (1 + math.cos(math.pi * (s - warm) / max(1, config.steps - warm)))
    )
    gen = torch.Generator().manual_seed(config.seed)
    losses: list[float] = []
    t1 = time.time()
    for step in range(config.steps):
        model.train()
        idx = torch.randperm(config.num_scenes, generator=gen)[: config.batch_size]
        # return_loss: CLIP's symmetric cross-entropy over the batch similarity matrix
        loss = model(pixel_values=pixels[idx], input_ids=ids[idx], attention_mask=mask[idx], return_loss=True).loss
        losses.append(optimizer_step(loss, model.parameters(), opt, sched))
        if (step + 1) % config.log_every == 0 or step + 1 == config.steps:
            log(f"clip step {step + 1}/{config.steps} loss {np.mean(losses[-config.log_every:]):.4f} ({time.time() - t1:.0f}s)")
    acc = retrieval_accuracy(model, e_pixels, e_ids, e_mask)
    log(f"held-out retrieval among {config.num_eval}: {acc}")
    model.eval().save_pretrained(out)
    processor.save_pretrained(out)
    return {
        "loss_first": losses[0] if losses else None,
        "loss_last50": float(np.mean(losses[-50:])) if losses else None,
        "eval_retrieval": acc,
        "seconds_total": time.time() - t0,
        "seconds_per_step": (time.time() - t1) / max(1, config.steps),
        "threads": torch.get_num_threads(),
        "config": asdict(config),
    }
