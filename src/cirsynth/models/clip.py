"""Load any CLIP that transformers' ``CLIPModel`` reads, by hub id or local folder.

The same loader serves the synthesis CLIP filter and the CIR models: ``openai/clip-vit-base-patch32``
online, a fine-tuned checkpoint folder, the mini world's CLIP, or the tiny test CLIP.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, NamedTuple

if TYPE_CHECKING:
    import torch
    from transformers import CLIPModel, CLIPProcessor


class LoadedCLIP(NamedTuple):
    """A CLIP model and the processor (tokenizer + image processor) saved with it."""

    model: "CLIPModel"
    processor: "CLIPProcessor"


def load_clip(
    name_or_path: str | os.PathLike,
    device: "str | torch.device | None" = None,
    dtype: "str | torch.dtype | None" = None,
) -> LoadedCLIP:
    """Load ``CLIPModel`` + ``CLIPProcessor`` from a hub id or a folder, in eval mode.

    Args:
        name_or_path: hub id (``openai/clip-vit-large-patch14``) or a folder written by ``save_pretrained``.
        device: where to put the model (default: CUDA when available, else CPU).
        dtype: parameter dtype, a ``torch.dtype`` or its name (``"float16"``, ``"bfloat16"``); default float32.

    Returns:
        ``LoadedCLIP(model, processor)``.
    """
    import torch
    from transformers import CLIPModel, CLIPProcessor

    if isinstance(dtype, str):
        if not isinstance(getattr(torch, dtype, None), torch.dtype):
            raise ValueError(f"load_clip: unknown dtype {dtype!r} (use e.g. 'float32', 'float16', 'bfloat16')")
        dtype = getattr(torch, dtype)
    if device is None:
        device = "cuda" if torch.cuda.is_available() else "cpu"
    try:
        model = CLIPModel.from_pretrained(name_or_path, dtype=dtype or torch.float32)
        processor = CLIPProcessor.from_pretrained(name_or_path)
    except OSError as e:
        raise OSError(
            f"load_clip: cannot load a CLIP from {str(name_or_path)!r}; pass a hub id reachable from this "
            f"machine or a folder holding config.json, model weights, tokenizer and preprocessor files ({e})"
        ) from e
    return LoadedCLIP(model.to(device).eval(), processor)


def clip_feature_dim(model: "CLIPModel") -> int:
    """Size of CLIP's joint embedding (the projection dimension), e.g. 512 for ViT-B/32."""
    return int(model.config.projection_dim)


def image_features(model: "CLIPModel", pixel_values: "torch.Tensor") -> "torch.Tensor":
    """Projected (not normalised) image embeddings, (B, 3, H, W) -> (B, D), across transformers 4 and 5."""
    out = model.get_image_features(pixel_values=pixel_values)
    return out if hasattr(out, "shape") else out.pooler_output  # v5 returns a model output


def text_features(
    model: "CLIPModel", input_ids: "torch.Tensor", attention_mask: "torch.Tensor | None" = None
) -> "torch.Tensor":
    """Projected (not normalised) text embeddings, (B, L) token ids -> (B, D)."""
    out = model.get_text_features(input_ids=input_ids, attention_mask=attention_mask)
    return out if hasattr(out, "shape") else out.pooler_output
