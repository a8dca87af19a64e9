"""Train the mini world's image captioner: a small BLIP (``BlipForConditionalGeneration``) saved with its
``BlipProcessor``, so ``Captioner.from_pretrained(folder)`` loads it exactly as it loads a real BLIP.

The tokenizer is a BERT WordPiece tokenizer whose vocabulary is the world's own words (every word of
every caption paraphrase) plus BERT's special tokens and BLIP's ``[DEC]`` start token; the model learns
the canonical caption (paraphrase 0) of renders, which is the form the lexical perturber and the
ground-truth mapper read best. Quality is measured on held-out renders: exact caption match and the
share of caption words right.
"""

from __future__ import annotations

import functools
import math
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from cirsynth.world.classifier import gaussian_blur
from cirsynth.world.diffusion import _cosine_lr, optimizer_step
from cirsynth.world.language import VOCABULARY, caption, caption_variants, tokenize
from cirsynth.world.render import render_batch, to_pil
from cirsynth.world.scene import random_scene

SPECIAL_TOKENS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "[DEC]")


@dataclass
class WorldCaptionerConfig:
    """Architecture, data and schedule of the world captioner."""

    image_size: int = 64  # input pixels (renders)
    patch_size: int = 8  # ViT patch side: 64 px -> 8x8 = 64 patch tokens
    hidden_size: int = 128  # vision and text width
    vision_layers: int = 4  # ViT blocks
    text_layers: int = 3  # decoder blocks (self-attention + cross-attention to the patches)
    num_heads: int = 4  # attention heads (vision and text)
    max_length: int = 80  # caption tokens incl. [DEC] and [SEP] (3-object captions use about 60)
    num_scenes: int = 20000  # training renders (canonical caption each)
    num_eval: int = 300  # held-out renders
    steps: int = 3000  # optimiser steps
    batch_size: int = 64  # renders per step
    lr: float = 1e-3  # AdamW peak lr (warm-up then cosine)
    seed: int = 0  # scenes, init, batches
    log_every: int = 50  # steps between loss lines
    init: str = ""  # folder of a trained world captioner to go on training (same architecture; its processor kept)
    render_workers: int = 1  # processes that render the scenes (the data is the same for any number)
    # Robustness to the generator's images, which the filter's re-captioner reads: a share of each batch shows the
    # render after a round trip through an autoencoder (the editor's VAE: its softness and colour shifts) instead of
    # the render itself, and each batch is blurred by a sigma drawn in [0, blur_max] px. Renders and their captions
    # only: no generated image and no judge.
    autoencoder: str = ""  # a diffusers pipeline folder with a vae/ subfolder, or an AutoencoderKL folder ("": none)
    autoencoder_share: float = 0.0  # share of each batch shown as its autoencoder round trip (needs autoencoder)
    blur_max: float = 0.0  # per-batch Gaussian blur sigma drawn in [0, blur_max] px

    def architecture(self) -> dict[str, int]:
        """The fields a model built from this config has, which a captioner trained further (``init``) must share."""
        return {k: getattr(self, k) for k in ("image_size", "patch_size", "hidden_size", "vision_layers", "text_layers",
                                               "num_heads")}


def world_words(num_scenes: int = 2000, seed: int = 12345) -> list[str]:
    """Every word and punctuation token world captions use, in a fixed order (lower-case). Computed once per
    process (it captions ``num_scenes`` scenes every way the grammar can, a few seconds)."""
    return list(_world_words(num_scenes, seed))


@functools.lru_cache(maxsize=4)
def _world_words(num_scenes: int, seed: int) -> tuple[str, ...]:
    rng = np.random.default_rng(seed)
    words = {w for values in VOCABULARY.values() for v in values for w in tokenize(str(v).lower())}
    for _ in range(num_scenes):
        for text in caption_variants(random_scene(rng)):
            words.update(tokenize(text.lower()))
    return tuple(sorted(words))


def build_processor(config: WorldCaptionerConfig) -> Any:
    """A ``BlipProcessor`` whose WordPiece vocabulary is the world's words."""
    from transformers import BertTokenizerFast, BlipImageProcessorPil, BlipProcessor

    vocab = {w: i for i, w in enumerate([*SPECIAL_TOKENS, *world_words()])}
    tokenizer = BertTokenizerFast(vocab=vocab, do_lower_case=True, model_max_length=config.max_length)
    tokenizer.add_special_tokens({"bos_token": "[DEC]"})
    image_processor = BlipImageProcessorPil(size={"height": config.image_size, "width": config.image_size})
    return BlipProcessor(image_processor=image_processor, tokenizer=tokenizer)


def build_model(config: WorldCaptionerConfig, tokenizer: Any) -> Any:
    """A fresh (seeded) ``BlipForConditionalGeneration`` at world size."""
    from transformers import BlipConfig, BlipForConditionalGeneration

    blip_config = BlipConfig(
        text_config=dict(
            vocab_size=len(tokenizer),
            hidden_size=config.hidden_size,
            encoder_hidden_size=config.hidden_size,
            intermediate_size=4 * config.hidden_size,
            num_hidden_layers=config.text_layers,
            num_attention_heads=config.num_heads,
            max_position_embeddings=config.max_length,
            bos_token_id=tokenizer.bos_token_id,
            pad_token_id=tokenizer.pad_token_id,
            sep_token_id=tokenizer.sep_token_id,
            eos_token_id=tokenizer.sep_token_id,
        ),
        vision_config=dict(
            hidden_size=config.hidden_size,
            intermediate_size=4 * config.hidden_size,
            num_hidden_layers=config.vision_layers,
            num_attention_heads=config.num_heads,
            image_size=config.image_size,
            patch_size=config.patch_size,
        ),
        projection_dim=config.hidden_size,
    )
    torch.manual_seed(config.seed)
    return BlipForConditionalGeneration(blip_config)


def _renders(n: int, seed: int, size: int, workers: int = 1) -> tuple[np.ndarray, list[str]]:
    rng = np.random.default_rng(seed)
    scenes = [random_scene(rng) for _ in range(n)]
    return render_batch(scenes, size, workers)[0], [caption(s, 0) for s in scenes]


def _autoencoder_folder(folder: str | os.PathLike) -> Path:
    """The ``AutoencoderKL`` folder of ``folder``: its ``vae`` subfolder (a pipeline) or itself."""
    folder = Path(folder)
    sub = folder / "vae" if (folder / "vae" / "config.json").is_file() else folder
    if not (sub / "config.json").is_file():
        raise FileNotFoundError(f"autoencoder={str(folder)!r}: no AutoencoderKL there (no config.json in it or its vae/)")
    return sub


def check_augmentation(config: WorldCaptionerConfig) -> None:
    """Refuse augmentation settings that could not run (or would fail mid-way) before anything is rendered."""
    if not 0 <= config.autoencoder_share <= 1:
        raise ValueError(f"autoencoder_share must lie in [0, 1] (got {config.autoencoder_share})")
    if config.autoencoder_share > 0 and not config.autoencoder:
        raise ValueError("autoencoder_share > 0 needs an autoencoder (the editor's pipeline folder)")
    if config.autoencoder:
        _autoencoder_folder(config.autoencoder)
    if not 0 <= config.blur_max or math.ceil(3 * config.blur_max) >= config.image_size:
        raise ValueError(f"blur_max must be >= 0 and its kernel (3 sigma) narrower than the {config.image_size}-px "
                         f"image (got {config.blur_max})")


def autoencoder_round_trip(folder: str | os.PathLike, images: np.ndarray, batch_size: int = 256) -> np.ndarray:
    """``images`` (N, H, W, 3) floats in [0, 1] encoded and decoded by the ``AutoencoderKL`` in ``folder`` (a pipeline
    folder with a ``vae`` subfolder, or the autoencoder's own folder), latent means, clipped back to [0, 1]."""
    from diffusers import AutoencoderKL

    vae = AutoencoderKL.from_pretrained(_autoencoder_folder(folder)).float().eval()
    out = np.empty_like(images, dtype=np.float32)
    with torch.no_grad():
        for b in range(0, len(images), batch_size):
            x = torch.from_numpy(np.ascontiguousarray(images[b:b + batch_size], dtype=np.float32)).permute(0, 3, 1, 2)
            y = vae.decode(vae.encode(x * 2 - 1).latent_dist.mean).sample
            out[b:b + batch_size] = ((y.clamp(-1, 1) + 1) / 2).permute(0, 2, 3, 1).numpy()
    return out


def model_architecture(model: Any) -> dict[str, int]:
    """A loaded world captioner's :meth:`WorldCaptionerConfig.architecture` fields, read off its config."""
    v, t = model.config.vision_config, model.config.text_config
    return {"image_size": v.image_size, "patch_size": v.patch_size, "hidden_size": v.hidden_size,
            "vision_layers": v.num_hidden_layers, "text_layers": t.num_hidden_layers, "num_heads": v.num_attention_heads}


def load_for_training(config: WorldCaptionerConfig) -> tuple[Any, Any]:
    """(processor, float32 model in train mode): built fresh, or loaded from ``config.init`` to train further."""
    if not config.init:
        processor = build_processor(config)
        return processor, build_model(config, processor.tokenizer).train()
    from transformers import BlipForConditionalGeneration, BlipProcessor

    folder = Path(config.init)
    if not (folder / "config.json").is_file():
        raise FileNotFoundError(f"init={config.init!r} is not a trained captioner folder (no config.json)")
    model = BlipForConditionalGeneration.from_pretrained(folder, dtype=torch.float32)
    have, want = model_architecture(model), config.architecture()
    changed = [f"{k}: {have[k]} in {folder}, {want[k]} asked" for k in want if have[k] != want[k]]
    if changed:
        raise ValueError(f"cannot train {folder} further under another architecture ({'; '.join(changed)})")
    return BlipProcessor.from_pretrained(folder), model.train()


def _pixels(processor: Any, images: list[np.ndarray]) -> torch.Tensor:
    return processor(images=to_pil(images), return_tensors="pt")["pixel_values"]


def caption_scores(predicted: list[str], truth: list[str]) -> dict[str, float]:
    """Exact-match rate and word accuracy (position by position, over the longer of each pair)."""
    exact, right, total = 0, 0, 0
    for p, t in zip(predicted, truth, strict=True):
        pw, tw = tokenize(p.lower()), tokenize(t.lower())
        exact += pw == tw
        right += sum(a == b for a, b in zip(pw, tw))
        total += max(len(pw), len(tw))
    return {"exact_match": exact / max(1, len(truth)), "word_accuracy": right / max(1, total), "n": len(truth)}


def train_world_captioner(config: WorldCaptionerConfig, out: str | os.PathLike,
                          log: Callable[[str], None] = print) -> dict[str, Any]:
    """Render scenes, train the captioner, save model + processor to ``out``, score held-out renders."""
    from cirsynth.captions.captioner import Captioner, CaptionerConfig

    t0 = time.time()
    out = Path(out)
    check_augmentation(config)  # before any rendering (40,000 scenes and their round trips take half an hour)
    processor, model = load_for_training(config)
    tok = processor.tokenizer
    images, texts = _renders(config.num_scenes, config.seed * 2 + 1, config.image_size, config.render_workers)
    eval_images, eval_texts = _renders(config.num_eval, config.seed * 2 + 2, config.image_size, config.render_workers)
    pixels = _pixels(processor, images)  # (N, 3, H, W)
    # each render's round trip, made once: a batch then shows either view of its scenes
    trips = _pixels(processor, autoencoder_round_trip(config.autoencoder, images)) if config.autoencoder_share > 0 else None
    enc = tok(texts, padding="max_length", truncation=True, max_length=config.max_length, return_tensors="pt")
    longest = int(enc["attention_mask"].sum(1).max())
    if longest >= config.max_length:
        raise ValueError(f"captions need more than max_length={config.max_length} tokens")
    ids, mask = enc["input_ids"][:, :longest], enc["attention_mask"][:, :longest]
    ids[:, 0] = tok.bos_token_id  # BLIP's decoder starts from [DEC] (generate() sets the same)
    labels = ids.masked_fill(mask == 0, -100)
    log(f"rendered {len(images)}+{len(eval_images)} scenes, vocabulary {len(tok)}, {longest} tokens max "
        f"({time.time() - t0:.0f}s)")

    gen = torch.Generator().manual_seed(config.seed + 1)
    opt = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=0.01)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: _cosine_lr(s, config.steps, min(200, config.steps // 10 + 1)))
    t1, losses = time.time(), []
    for step in range(config.steps):
        idx = torch.randint(len(pixels), (config.batch_size,), generator=gen)
        x = pixels[idx]
        if trips is not None:
            x = torch.where((torch.rand(len(idx), generator=gen) < config.autoencoder_share)[:, None, None, None],
                            trips[idx], x)
        if config.blur_max > 0:  # the processor's normalisation is per channel, so blurring after it is the same
            x = gaussian_blur(x, float(torch.rand((), generator=gen)) * config.blur_max)
        loss = model(pixel_values=x, input_ids=ids[idx], attention_mask=mask[idx], labels=labels[idx]).loss
        losses.append(optimizer_step(loss, model.parameters(), opt, sched))
        if (step + 1) % config.log_every == 0 or step + 1 == config.steps:
            log(f"captioner step {step + 1}/{config.steps} loss {np.mean(losses[-config.log_every:]):.4f} "
                f"({time.time() - t1:.0f}s)")
    model.generation_config.max_new_tokens = config.max_length  # the model's own cap: Captioner uses it by default
    model.eval().to(torch.float16)  # weights on disk in fp16; Captioner loads them as float32
    model.save_pretrained(out, safe_serialization=True)
    model.float()
    processor.save_pretrained(out)

    captioner = Captioner.from_pretrained(out, CaptionerConfig(batch_size=64, max_new_tokens=config.max_length))
    def read(arrays: np.ndarray) -> list[str]:
        return captioner.caption(to_pil(arrays))

    predicted = read(eval_images)
    scores = caption_scores(predicted, eval_texts)
    log(f"held-out: exact caption {scores['exact_match']:.1%}, words right {scores['word_accuracy']:.1%}")
    trip_scores = None
    if config.autoencoder:  # the same held-out scenes as the autoencoder gives them back
        trip_scores = caption_scores(read(autoencoder_round_trip(config.autoencoder, eval_images)), eval_texts)
        log(f"held-out after the autoencoder: exact caption {trip_scores['exact_match']:.1%}, "
            f"words right {trip_scores['word_accuracy']:.1%}")
    return {
        "eval": scores,
        "eval_autoencoded": trip_scores,
        "examples": [{"truth": t, "predicted": p} for t, p in list(zip(eval_texts, predicted))[:5]],
        "loss_first": losses[0] if losses else None,
        "loss_last50": float(np.mean(losses[-50:])) if losses else None,
        "seconds_train": time.time() - t1,
        "seconds_total": time.time() - t0,
        "threads": torch.get_num_threads(),
        "config": asdict(config),
        "init": _init_record(config.init),
    }


def _init_record(init: str) -> dict[str, Any] | None:
    """What a captioner trained further started from: its label and, when it has a card, the command that made it
    (the bundled folder is overwritten when the result is installed, so its history must travel in the report)."""
    if not init:
        return None
    from cirsynth.world.assets import model_label, read_card

    previous = read_card(init) or {}
    return {"from": model_label(init), "command": previous.get("command"), "init": previous.get("init"),
            "held_out": previous.get("quality", {}).get("held_out")}
