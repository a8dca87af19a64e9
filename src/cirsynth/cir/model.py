"""A CLIP-based CIR model (CLIP + Combiner, or CLIP + element-wise sum), its checkpoint folder,
the loader of every CIR checkpoint kind, and batched, cached feature extraction.

Checkpoint folder layout of the CLIP kinds (what ``train_cir`` writes and ``load_cir_model`` reads)::

    cir_model.json          kind ("clip-combiner" | "clip-sum"), CLIP location, Combiner config, padding
    clip/                   the CLIP (save_pretrained) when stage 1 fine-tuned it; else
                            cir_model.json names the original hub id / folder
    combiner.safetensors    Combiner weights (kind "clip-combiner" only)

A ``cir_model.json`` of kind "blip" marks a ``BlipCIR`` folder instead (see ``cirsynth.cir.blip``);
``load_cir_model`` dispatches on the kind.
"""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Literal, Sequence

import torch
from PIL import Image

from cirsynth.cir.checkpoint import CHECKPOINT_FILE, weights_fingerprint
from cirsynth.cir.combiner import Combiner, CombinerConfig, sum_combine
from cirsynth.cir.preprocess import PadMode, pad_image
from cirsynth.config import atomic_write_json
from cirsynth.data.records import config_hash
from cirsynth.models.clip import image_features, load_clip, text_features

if TYPE_CHECKING:
    from cirsynth.cir.blip import BlipCIR

ModelKind = Literal["clip-combiner", "clip-sum", "blip"]


class ClipCIR(torch.nn.Module):
    """CLIP encoders plus a fusion (a ``Combiner``, or ``sum_combine`` when ``combiner`` is None)."""

    def __init__(self, clip, processor, combiner: Combiner | None = None, *, clip_source: str = "",
                 pad_mode: PadMode = "targetpad", pad_ratio: float = 1.25):
        super().__init__()
        self.clip = clip
        self.processor = processor
        self.combiner = combiner
        self.clip_source = clip_source  # hub id or folder the CLIP came from
        self.pad_mode = pad_mode
        self.pad_ratio = pad_ratio

    @property
    def kind(self) -> ModelKind:
        return "clip-combiner" if self.combiner is not None else "clip-sum"

    @property
    def feature_dim(self) -> int:
        return int(self.clip.config.projection_dim)

    @property
    def device(self) -> torch.device:
        return next(self.clip.parameters()).device

    # -- inputs --
    def pixel_values(self, images: Sequence[Image.Image]) -> torch.Tensor:
        """Padded, resized, cropped, normalised pixels: list of PIL -> (B, 3, H, W) float32 on CPU."""
        padded = [pad_image(im, self.pad_mode, self.pad_ratio) for im in images]
        return self.processor.image_processor(images=padded, return_tensors="pt")["pixel_values"]

    def tokens(self, texts: Sequence[str]) -> dict[str, torch.Tensor]:
        """Token ids and attention mask, padded and truncated to the text tower's length: (B, L) each."""
        return dict(self.processor.tokenizer(
            list(texts), padding=True, truncation=True,
            max_length=self.clip.config.text_config.max_position_embeddings, return_tensors="pt",
        ))

    # -- features --
    def image_features(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) -> (B, D) projected CLIP image features (not normalised)."""
        return image_features(self.clip, pixel_values.to(self.device, self.clip.dtype)).float()

    def text_features(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        """(B, L) -> (B, D) projected CLIP text features (not normalised)."""
        mask = attention_mask.to(self.device) if attention_mask is not None else None
        return text_features(self.clip, input_ids.to(self.device), mask).float()

    def compose(self, image_feats: torch.Tensor, text_feats: torch.Tensor) -> torch.Tensor:
        """(B, D) reference-image and text features -> (B, D) normalised query features."""
        if self.combiner is None:
            return sum_combine(image_feats, text_feats)
        return self.combiner.combine(image_feats, text_feats)

    @torch.no_grad()
    def encode_images(self, images: Sequence[Image.Image]) -> torch.Tensor:
        return self.image_features(self.pixel_values(images))

    @torch.no_grad()
    def encode_texts(self, texts: Sequence[str]) -> torch.Tensor:
        return self.text_features(**self.tokens(texts))

    def fingerprint(self) -> str:
        """Hash of the CLIP's config, a strided sample of every weight, and the padding; keys feature caches."""
        return weights_fingerprint([self.clip.config.to_dict(), self.pad_mode, self.pad_ratio], self.clip.state_dict())

    # -- checkpoint --
    def save(self, folder: str | os.PathLike, *, save_clip: bool = False) -> Path:
        """Write the checkpoint folder; ``save_clip`` stores the CLIP itself (after fine-tuning)."""
        from safetensors.torch import save_file

        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        clip_ref = self.clip_source
        if save_clip:
            self.clip.save_pretrained(folder / "clip")
            self.processor.save_pretrained(folder / "clip")
            clip_ref = "clip"
        meta = {"kind": self.kind, "clip": clip_ref, "pad_mode": self.pad_mode, "pad_ratio": self.pad_ratio,
                "combiner": dataclasses.asdict(self.combiner.config) if self.combiner is not None else None}
        if self.combiner is not None:
            state = {k: v.detach().cpu().contiguous() for k, v in self.combiner.state_dict().items()}
            save_file(state, str(folder / "combiner.safetensors"))
        atomic_write_json(folder / CHECKPOINT_FILE, meta, indent=2)
        return folder


def load_cir_model(
    ckpt: str | os.PathLike, device: str | torch.device | None = None, dtype: str | torch.dtype | None = None
) -> "ClipCIR | BlipCIR":
    """Load a checkpoint folder written by ``train_cir`` (``ClipCIR.save``, ``BlipCIR.save_pretrained``), in eval mode.

    Dispatches on the ``kind`` in ``cir_model.json``: "clip-combiner" / "clip-sum" give a ``ClipCIR``,
    "blip" a ``BlipCIR``. A plain CLIP (hub id or folder without ``cir_model.json``) loads as a zero-shot
    ``clip-sum`` model.

    Args:
        ckpt: checkpoint folder, or a CLIP hub id / folder.
        device: where to put the model (default: CUDA when available, else CPU).
        dtype: parameter dtype or its name; default float32.
    """
    path = Path(ckpt)
    meta_file = path / CHECKPOINT_FILE
    if not meta_file.exists():
        clip, processor = load_clip(ckpt, device=device, dtype=dtype)
        return ClipCIR(clip, processor, None, clip_source=str(ckpt)).eval()
    meta = json.loads(meta_file.read_text())
    if meta.get("kind") == "blip":
        from cirsynth.cir.blip import BlipCIR

        if isinstance(dtype, str):
            if not isinstance(getattr(torch, dtype, None), torch.dtype):
                raise ValueError(f"load_cir_model: unknown dtype {dtype!r} (use e.g. 'float32', 'bfloat16')")
            dtype = getattr(torch, dtype)
        device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        return BlipCIR.from_pretrained(path).to(device=device, dtype=dtype).eval()
    clip_ref = meta["clip"]
    clip_path = path / clip_ref if (path / clip_ref).is_dir() else clip_ref
    clip, processor = load_clip(clip_path, device=device, dtype=dtype)
    combiner = None
    if meta["kind"] == "clip-combiner":
        from safetensors.torch import load_file

        combiner = Combiner(CombinerConfig(**meta["combiner"]))
        combiner.load_state_dict(load_file(str(path / "combiner.safetensors")))
        combiner.to(clip.device)
    elif meta["kind"] != "clip-sum":
        raise ValueError(f"{meta_file}: unknown model kind {meta['kind']!r}")
    model = ClipCIR(clip, processor, combiner, clip_source=str(clip_ref), pad_mode=meta["pad_mode"],
                    pad_ratio=meta["pad_ratio"])
    return model.eval()


# --- cached feature extraction --------------------------------------------------------------------


def _cached(cache_dir: str | os.PathLike | None, key: dict, compute: Callable[[], torch.Tensor]) -> torch.Tensor:
    """Load features stored under the hash of ``key`` or compute and store them (safetensors)."""
    if cache_dir is None:
        return compute()
    from safetensors.torch import load_file, save_file

    path = Path(cache_dir) / f"feats-{config_hash(key)}.safetensors"
    if path.exists():
        return load_file(str(path))["feats"]
    feats = compute().cpu().contiguous()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".{os.getpid()}.tmp")
    save_file({"feats": feats}, str(tmp))
    os.replace(tmp, path)
    return feats


def extract_image_features(
    model: ClipCIR, keys: Sequence[str], opener: Callable[[str], Image.Image], *, source: str,
    batch_size: int = 64, cache_dir: str | os.PathLike | None = None,
) -> torch.Tensor:
    """Image features of ``keys`` in order, (N, D) float32 on CPU; cached on (model, source, keys)."""
    keys = list(keys)

    def compute() -> torch.Tensor:
        out = [model.encode_images([opener(k) for k in keys[i:i + batch_size]]).cpu()
               for i in range(0, len(keys), batch_size)]
        return torch.cat(out) if out else torch.zeros(0, model.feature_dim)

    return _cached(cache_dir, {"what": "image", "model": model.fingerprint(), "source": source, "keys": keys}, compute)


def extract_text_features(
    model: ClipCIR, texts: Sequence[str], *, batch_size: int = 256, cache_dir: str | os.PathLike | None = None
) -> torch.Tensor:
    """Text features of ``texts`` in order, (N, D) float32 on CPU; cached on (model, texts)."""
    texts = list(texts)

    def compute() -> torch.Tensor:
        out = [model.encode_texts(texts[i:i + batch_size]).cpu() for i in range(0, len(texts), batch_size)]
        return torch.cat(out) if out else torch.zeros(0, model.feature_dim)

    return _cached(cache_dir, {"what": "text", "model": model.fingerprint(), "texts": texts}, compute)
