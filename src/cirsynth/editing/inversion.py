"""``Inversion`` records (what reconstruction and editing need) and an on-disk cache of them."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from cirsynth.config import atomic_write_bytes
from cirsynth.data.records import config_hash

METHODS: tuple[str, ...] = ("null-text", "negative-prompt", "direct", "ddim", "ddpm")


@dataclass
class Inversion:
    """One inverted image.

    Attributes:
        method: one of ``METHODS``.
        prompt: the source prompt it was inverted under.
        num_steps: DDIM steps.
        guidance_scale: classifier-free guidance scale reconstruction/editing use.
        model_id: the pipeline it belongs to (id or folder).
        image_hash: content hash of the fitted input image (``images.image_hash``).
        x_T: (C, h, w) float32, the inverted noise latent.
        null_embeddings: (T, L, D) float32, per-step optimised unconditional embeddings (``null-text`` only).
        latents: (T + 1, C, h, w) float32, the inversion trajectory, index k = after k inversion steps
            (``direct`` only: the source branch is pinned to it).
        noise: (T, C, h, w) float32, the per-step noise maps z_t of edit-friendly DDPM inversion, in sampling order
            (index i belongs to the i-th denoising step; ``ddpm`` only).
        image: (3, H, W) uint8, the fitted input image itself (what ``EditorConfig.paste="reference"`` composites
            outside the edit mask); ``None`` in files written before it was kept.
        settings: what else determined it (dtype, null-text optimiser settings, scheduler).
        stats: diagnostics (inner Adam steps per timestep, last losses).
    """

    method: str
    prompt: str
    num_steps: int
    guidance_scale: float
    model_id: str
    image_hash: str
    x_T: torch.Tensor
    null_embeddings: torch.Tensor | None = None
    latents: torch.Tensor | None = None
    noise: torch.Tensor | None = None
    image: torch.Tensor | None = None
    settings: dict[str, Any] = field(default_factory=dict)
    stats: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise ValueError(f"unknown inversion method {self.method!r}; expected one of {METHODS}")
        if self.method == "null-text" and (self.null_embeddings is None or len(self.null_embeddings) != self.num_steps):
            raise ValueError("a null-text Inversion needs num_steps null embeddings")
        if self.method == "direct" and (self.latents is None or len(self.latents) != self.num_steps + 1):
            raise ValueError("a direct Inversion needs its num_steps + 1 trajectory latents")
        if self.method == "ddpm" and (self.noise is None or len(self.noise) != self.num_steps):
            raise ValueError("a ddpm Inversion needs num_steps noise maps")

    def group_key(self) -> tuple:
        """Inversions with equal keys can share UNet calls."""
        return (self.method, self.num_steps, float(self.guidance_scale), self.model_id, tuple(self.x_T.shape))

    def save(self, path: str | os.PathLike) -> None:
        """Write to a ``.safetensors`` file (tensors + JSON metadata), atomically."""
        from safetensors.torch import save

        tensors = {"x_T": self.x_T.float().contiguous().cpu()}
        if self.null_embeddings is not None:
            tensors["null_embeddings"] = self.null_embeddings.float().contiguous().cpu()
        if self.latents is not None:
            tensors["latents"] = self.latents.float().contiguous().cpu()
        if self.noise is not None:
            tensors["noise"] = self.noise.float().contiguous().cpu()
        if self.image is not None:
            tensors["image"] = self.image.to(torch.uint8).contiguous().cpu()
        meta = {
            "method": self.method,
            "prompt": self.prompt,
            "num_steps": self.num_steps,
            "guidance_scale": self.guidance_scale,
            "model_id": self.model_id,
            "image_hash": self.image_hash,
            "settings": self.settings,
            "stats": self.stats,
        }
        atomic_write_bytes(path, save(tensors, metadata={"cirsynth.inversion": json.dumps(meta, default=str)}))

    @classmethod
    def load(cls, path: str | os.PathLike) -> "Inversion":
        from safetensors import safe_open

        with safe_open(str(path), framework="pt") as f:
            raw = (f.metadata() or {}).get("cirsynth.inversion")
            if raw is None:
                raise ValueError(f"{path} is not a cirsynth Inversion file (no metadata)")
            tensors = {k: f.get_tensor(k) for k in f.keys()}
        meta = json.loads(raw)
        return cls(
            **meta,
            x_T=tensors["x_T"],
            null_embeddings=tensors.get("null_embeddings"),
            latents=tensors.get("latents"),
            noise=tensors.get("noise"),
            image=tensors.get("image"),
        )


def inversion_key(
    image_hash: str, model_id: str, prompt: str, method: str, num_steps: int, guidance_scale: float, settings: dict
) -> str:
    """Cache key over everything that determines an inversion."""
    return config_hash(
        {
            "image": image_hash,
            "model": model_id,
            "prompt": prompt,
            "method": method,
            "steps": num_steps,
            "guidance": float(guidance_scale),
            "settings": settings,
        }
    )


class InversionCache:
    """A folder of ``<key>.safetensors`` inversions (see ``inversion_key``)."""

    def __init__(self, root: str | os.PathLike) -> None:
        self.root = Path(root)

    def path(self, key: str) -> Path:
        return self.root / f"{key}.safetensors"

    def get(self, key: str) -> Inversion | None:
        path = self.path(key)
        return Inversion.load(path) if path.exists() else None

    def put(self, key: str, inversion: Inversion) -> None:
        inversion.save(self.path(key))
