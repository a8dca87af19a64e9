"""``CounterfactualEditor``: invert real images into SD's DDIM trajectory and regenerate them under edited prompts.

Conventions: latents and optimised embeddings are float32 ("master" copies); only the UNet / VAE / text encoder run
in the pipeline's dtype (e.g. bf16 on a GPU), so a bf16 UNet still optimises fp32 null embeddings.
Classifier-free guidance (Ho & Salimans 2022, eq. 6): eps = eps_u + w * (eps_c - eps_u).
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import os
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from cirsynth.editing.attention import (
    AttentionReweight,
    LocalBlend,
    P2PController,
    PairEdit,
    cross_attention_edit,
    p2p_attention,
)
from cirsynth.editing.images import fit_image, image_hash, images_to_tensor, model_image_size, tensor_to_images, uint8_to_pixels
from cirsynth.editing.inversion import METHODS, Inversion, InversionCache, inversion_key


@dataclass
class NullTextConfig:
    """Null-text inversion optimiser (Mokady et al. 2022, Alg. 1; defaults are the reference notebook's)."""

    inner_steps: int = 10  # Adam steps per timestep
    lr: float = 1e-2  # Adam learning rate at the first timestep
    lr_decay: float = 1e-2  # lr at timestep i = lr * (1 - lr_decay * i)
    early_stop: float = 1e-5  # stop an image's inner loop once its MSE < early_stop + i * early_stop_growth
    early_stop_growth: float = 2e-5  # later (less noisy) steps tolerate a larger error


PASTE_MODES: tuple[str, ...] = ("none", "source", "reference")


@dataclass
class EditorConfig:
    """Settings of the editor that are not per-call arguments."""

    null_text: NullTextConfig = field(default_factory=NullTextConfig)
    batch_size: int = 8  # images per UNet call when inverting; (image, edit) pairs per call when editing
    self_replace_max_tokens: int = 32 * 32  # self-attention is swapped only in layers with <= this many queries (P2P)
    blend_threshold: float = 0.3  # LocalBlend threshold on the max-normalised word map (P2P)
    keep_threshold: float = 0.2  # ... and on the kept words' map, pooled over keep_pool x keep_pool grid cells: on
    keep_pool: int = 5  # seed-0 background edits the 0.3 / 3x3 of changed words covered 64% of the kept objects,
    # 0.2 / 5x5 covers 98% and takes 15% of the rest (docs/results/world_keep_mask_seed0.log)
    blend_start: float = 0.2  # fraction of steps before LocalBlend starts pinning latents
    blend_grid_divisor: int = 4  # word maps are pooled onto a (h / 4, w / 4) latent grid (SD-1.5: 16 x 16, as P2P) ...
    blend_grid_min: int = 16  # ... but never coarser than this many cells a side (or the latent's own side)
    paste: str = "none"  # outside the final LocalBlend mask, take the pixels of: "none" (the edit's own decoding),
    # "source" (the source branch's decoding, i.e. the reconstruction) or "reference" (the input image itself, so
    # what the edit leaves alone keeps no autoencoder loss; as Blended Latent Diffusion's background step)
    paste_dilate: int = 2  # the mask grows by this many latent cells before pasting, then is feathered (bilinear);
    # 2 made the most world edits right on seed 0 (docs/results/world_tune_paste_seed0.log: 191 of 768 vs 188 with 1)
    kept_background: float = 0.0  # with kept words (a background edit keeps its objects): inside the kept regions,
    # which are latent cells, pixels whose colour lies within this RGB distance (0..1 scale) of some pixel of the
    # region the edit replaces are that old background, not the kept object: they take the edited pixels (0: off,
    # every kept cell pasted whole, a block of old background around each object)
    direct_add_target: bool = True  # direct inversion: add the source branch's per-step offset to the target branch
    # too (PnP Inversion's add-target variant), so an identity edit is exactly the reconstruction; False applies it
    # to the source branch only (PnP Inversion's default; identity edit off by 0.15 mean abs on the tiny pipeline)

    def __post_init__(self) -> None:
        if self.paste not in PASTE_MODES:
            raise ValueError(f"EditorConfig.paste must be one of {PASTE_MODES}, got {self.paste!r}")
        if self.keep_pool < 1 or self.keep_pool % 2 == 0:
            raise ValueError(f"EditorConfig.keep_pool must be an odd kernel size >= 1, got {self.keep_pool}")
        if self.paste_dilate < 0:
            raise ValueError(f"EditorConfig.paste_dilate must be >= 0, got {self.paste_dilate}")
        if not 0 <= self.kept_background < 1:
            raise ValueError(f"EditorConfig.kept_background must be in [0, 1), got {self.kept_background}")


def is_sdxl(pipe: Any) -> bool:
    """Whether a pipeline is SDXL-shaped: a second text encoder and a UNet with SDXL's "text_time" added conditioning."""
    return getattr(pipe, "text_encoder_2", None) is not None and (
        getattr(pipe.unet.config, "addition_embed_type", None) == "text_time"
    )


def ddpm_noise_seed(seed: int, image_hash: str) -> int:
    """The generator seed of an image's ddpm noise: from the user's seed and the image content, so an image's noise
    is the same whichever batch it is inverted in, and two images under one seed get unrelated noise."""
    return int(hashlib.sha256(f"{int(seed)}:{image_hash}".encode()).hexdigest()[:15], 16)


def paste_outside(
    edited: torch.Tensor, outside: torch.Tensor, mask: torch.Tensor, dilate: int, kept: torch.Tensor | None = None,
    kept_background: float = 0.0,
) -> torch.Tensor:
    """Composite ``outside`` pixels where the latent ``mask`` is off.

    Args:
        edited, outside: (J, 3, H, W) pixels.
        mask: (J, 1, h, w) bool latent mask, True where the edit acts.
        dilate: latent cells the mask grows by (max-pool) before it is upsampled bilinearly into a soft alpha, so the
            edited region keeps a margin and its border blends instead of cutting along latent cells.
        kept: optional (J, 1, h, w) bool regions that must stay as ``outside`` has them (LocalBlend's kept words):
            the margin never grows into them.
        kept_background: with ``kept``, an RGB distance (0..1 scale, see ``EditorConfig.kept_background``): kept
            pixels of ``outside`` this close in colour to some ``outside`` pixel of the edited region take the edited
            pixels, so a kept cell keeps its object but not the old background around it (0: off).
    """
    alpha = mask.float()
    if dilate:
        alpha = F.max_pool2d(alpha, kernel_size=2 * dilate + 1, stride=1, padding=dilate)
    if kept is not None:
        alpha = alpha * (~kept).float()
    alpha = F.interpolate(alpha, size=edited.shape[-2:], mode="bilinear", align_corners=False).clamp(0, 1)
    if kept is not None and kept_background > 0:
        alpha = torch.maximum(alpha, old_background(outside, mask, kept, kept_background))
    return alpha * edited + (1 - alpha) * outside


def old_background(image: torch.Tensor, mask: torch.Tensor, kept: torch.Tensor, distance: float,
                   samples: int = 2048) -> torch.Tensor:
    """(J, 1, H, W) float: 1 on the pixels of the kept cells whose colour is within ``distance`` (RGB, 0..1 scale) of
    some pixel of ``image`` that the edit replaces (in ``mask``, not in ``kept``), i.e. the old background around a
    kept object; 0 elsewhere. ``image`` is (J, 3, H, W) in [-1, 1]; up to ``samples`` pixels of the edited region
    (evenly strided) stand for its colours."""
    size = image.shape[-2:]
    kept_px = F.interpolate(kept.float(), size=size, mode="nearest")[:, 0].bool()  # (J, H, W)
    edited_px = F.interpolate((mask & ~kept).float(), size=size, mode="nearest")[:, 0].bool()
    rgb = (image.float().clamp(-1, 1) + 1) / 2  # (J, 3, H, W) in [0, 1]
    out = torch.zeros(image.shape[0], 1, *size, dtype=image.dtype, device=image.device)
    for j in range(image.shape[0]):
        if not kept_px[j].any() or not edited_px[j].any():
            continue
        colours = rgb[j][:, edited_px[j]].T  # (N, 3)
        colours = colours[:: max(1, len(colours) // samples)]
        inside = rgb[j][:, kept_px[j]].T  # (M, 3)
        near = torch.cdist(inside, colours).amin(dim=1) <= distance
        out[j, 0][kept_px[j]] = near.to(out.dtype)
    return out


def blend_grid(h: int, w: int, divisor: int, minimum: int) -> tuple[int, int]:
    """LocalBlend's grid on an (h, w) latent: (h / divisor, w / divisor), but never coarser than ``minimum`` cells a
    side, or the latent's own side if that is smaller."""
    return max(h // divisor, min(h, minimum)), max(w // divisor, min(w, minimum))


@dataclass
class TextCond:
    """Text conditioning of a batch of UNet rows: the token sequence, and for SDXL the pooled embedding.

    Attributes:
        seq: (N, L, D) float32 token embeddings (SDXL: both encoders' hidden states concatenated along D).
        pooled: (N, P) float32 pooled embedding of SDXL's second encoder, or ``None`` (SD-1.x/2.x).
    """

    seq: torch.Tensor
    pooled: torch.Tensor | None = None

    def __len__(self) -> int:
        return len(self.seq)

    def __getitem__(self, index: Any) -> "TextCond":
        return TextCond(self.seq[index], None if self.pooled is None else self.pooled[index])

    def expand(self, n: int) -> "TextCond":
        """The single row of a (1, ...) conditioning repeated ``n`` times."""
        return TextCond(self.seq.expand(n, -1, -1), None if self.pooled is None else self.pooled.expand(n, -1))

    def with_seq(self, seq: torch.Tensor) -> "TextCond":
        """The same pooled embedding with another (N, L, D) sequence (null-text optimises only the sequence)."""
        return TextCond(seq, self.pooled)

    @staticmethod
    def cat(parts: Sequence["TextCond"]) -> "TextCond":
        pooled = None if parts[0].pooled is None else torch.cat([p.pooled for p in parts])
        return TextCond(torch.cat([p.seq for p in parts]), pooled)


@dataclass
class EditResult:
    """All candidates of one (image, target prompt) pair.

    Attributes:
        images: one edited image per ``self_replace_steps`` candidate.
        self_replace_steps: the candidate values, aligned with ``images``.
        masks: per candidate, (H, W) bool at image resolution, True where LocalBlend let the edit act
            (nearest-upsampled from the latent mask); ``None`` without LocalBlend.
        source: the source branch decoded (the reconstruction computed alongside the edit).
        mode: "replace" (same token count) or "refine" (token alignment).
    """

    images: list[Image.Image]
    self_replace_steps: list[float]
    masks: list[np.ndarray | None]
    source: Image.Image
    mode: str


class CounterfactualEditor:
    """Inversion + prompt-to-prompt over the components of a diffusers ``StableDiffusionPipeline`` or
    ``StableDiffusionXLPipeline``.

    Works with any SD-1.x/2.x-compatible pipeline and whatever tokenizer/text encoder it holds (CLIP, BERT, ...), and
    with SDXL (two tokenizers and encoders, pooled embeddings and ``add_time_ids``; see ``encode_text`` / ``_unet``).
    A fp16 VAE whose config asks for it (``force_upcast``, as SDXL's) is moved to fp32: it overflows in fp16.

    Args:
        pipe: the pipeline (its modules are used in place; their device and dtype are the editor's).
        config: editor settings.
        model_id: id recorded in inversions and cache keys (default: the pipeline's ``name_or_path``).
    """

    def __init__(self, pipe: Any, config: EditorConfig | None = None, model_id: str | None = None) -> None:
        from diffusers import DDIMInverseScheduler, DDIMScheduler

        from cirsynth.models.diffusion import model_id_of

        self.pipe = pipe
        self.config = config or EditorConfig()
        self.unet, self.vae, self.tokenizer = pipe.unet, pipe.vae, pipe.tokenizer
        self.is_xl = is_sdxl(pipe)
        self.tokenizer_2 = getattr(pipe, "tokenizer_2", None) if self.is_xl else None
        if self.vae.dtype == torch.float16 and getattr(self.vae.config, "force_upcast", False):
            self.vae.to(torch.float32)
        self.model_id = model_id or model_id_of(pipe)
        self.device = self.unet.device
        self.dtype = self.unet.dtype
        self.scheduler = DDIMScheduler.from_config(pipe.scheduler.config)
        self.inverse_scheduler = DDIMInverseScheduler.from_config(pipe.scheduler.config)
        if self.scheduler.config.timestep_spacing not in ("leading", "trailing"):
            raise ValueError(f"DDIM inversion supports 'leading'/'trailing' spacing, not {self.scheduler.config.timestep_spacing!r}")
        self.image_size = model_image_size(pipe)  # (H, W) pixels
        self.step_callback: Callable[[], None] | None = None  # called after every inversion / sampling step (progress)

    @classmethod
    def from_pretrained(
        cls, path_or_id: str | os.PathLike, device: Any = None, dtype: Any = None, config: EditorConfig | None = None
    ) -> "CounterfactualEditor":
        """Load a pipeline folder or HF id (SD or SDXL, told apart by its ``model_index.json``; see
        ``cirsynth.models.diffusion.load_sd_pipeline``) and wrap it."""
        from cirsynth.models.diffusion import load_sd_pipeline

        return cls(load_sd_pipeline(path_or_id, device=device, dtype=dtype), config=config, model_id=str(path_or_id))

    # ------------------------------------------------------------------------------------------- primitives
    def prepare(self, images: Sequence[Image.Image]) -> list[Image.Image]:
        """Fit images to the model size (``fit_image``: cover-resize + centre-crop to ``self.image_size``)."""
        return [fit_image(im, self.image_size) for im in images]

    @torch.no_grad()
    def encode_images(self, images: Sequence[Image.Image]) -> torch.Tensor:
        """Fitted RGB images -> (N, C, h, w) float32 latents (posterior mean, times the VAE's scaling factor)."""
        pixels = images_to_tensor(images).to(self.device, self.vae.dtype)  # (N, 3, H, W)
        latents = self.vae.encode(pixels).latent_dist.mean.float()  # (N, C, h, w)
        shift = getattr(self.vae.config, "shift_factor", None) or 0.0
        return (latents - shift) * self.vae.config.scaling_factor

    @torch.no_grad()
    def decode_latents(self, latents: torch.Tensor) -> torch.Tensor:
        """(N, C, h, w) latents -> (N, 3, H, W) float32 pixels in [-1, 1]."""
        shift = getattr(self.vae.config, "shift_factor", None) or 0.0
        z = latents / self.vae.config.scaling_factor + shift
        out = [self.vae.decode(chunk.to(self.vae.dtype)).sample.float() for chunk in z.split(self.config.batch_size)]
        return torch.cat(out).clamp(-1, 1)

    @torch.no_grad()
    def encode_text(self, prompts: Sequence[str]) -> TextCond:
        """Prompts -> float32 ``TextCond`` (N rows) through the pipeline's own ``encode_prompt``.

        SDXL: both encoders (sequence (N, L, D1 + D2)) and the second one's pooled (N, P) embedding. The empty prompt
        maps to zeros when the pipeline's ``force_zeros_for_empty_prompt`` says so (SDXL's unconditional input).
        """
        prompts = list(prompts)
        if not self.is_xl:
            embeds, _ = self.pipe.encode_prompt(prompts, self.device, 1, False)
            return TextCond(embeds.float())
        embeds, _, pooled, _ = self.pipe.encode_prompt(
            prompts, device=self.device, num_images_per_prompt=1, do_classifier_free_guidance=False
        )  # (N, L, D1 + D2), (N, P)
        if getattr(self.pipe.config, "force_zeros_for_empty_prompt", False):
            empty = torch.tensor([p == "" for p in prompts], device=embeds.device)  # (N,)
            embeds = torch.where(empty[:, None, None], torch.zeros_like(embeds), embeds)
            pooled = torch.where(empty[:, None], torch.zeros_like(pooled), pooled)
        return TextCond(embeds.float(), pooled.float())

    def _unet(self, latents: torch.Tensor, t: torch.Tensor, cond: TextCond) -> torch.Tensor:
        """eps for (B, C, h, w) fp32 latents and B rows of fp32 conditioning; runs in the UNet dtype, returns fp32.

        SDXL: the pooled embedding and ``add_time_ids`` (original size, crop top-left (0, 0), target size, all the
        working size, as for an uncropped image) go through ``added_cond_kwargs``, one row per UNet row (so the
        guidance rows get them too).
        """
        added = None
        if cond.pooled is not None:
            h, w = self.image_size
            time_ids = torch.tensor([[h, w, 0, 0, h, w]], device=self.device, dtype=self.dtype).expand(len(latents), -1)
            added = {"text_embeds": cond.pooled.to(self.dtype), "time_ids": time_ids}  # (B, P), (B, 6)
        return self.unet(
            latents.to(self.dtype), t, encoder_hidden_states=cond.seq.to(self.dtype), added_cond_kwargs=added
        ).sample.float()

    def _settings(self, method: str, seed: int) -> dict[str, Any]:
        settings: dict[str, Any] = {"dtype": str(self.dtype).removeprefix("torch."), "scheduler": "DDIM"}
        if method == "null-text":
            settings["null_text"] = dataclasses.asdict(self.config.null_text)
        if method == "ddpm":
            settings["seed"] = int(seed)
        return settings

    def _stepped(self) -> None:
        if self.step_callback is not None:
            self.step_callback()

    # ------------------------------------------------------------------------------------------- inversion
    def invert(
        self,
        images: Sequence[Image.Image],
        prompts: Sequence[str],
        method: str = "null-text",
        num_steps: int = 50,
        guidance_scale: float = 7.5,
        cache: InversionCache | None = None,
        seed: int | Sequence[int] = 0,
    ) -> list[Inversion]:
        """Invert images under their source prompts.

        Methods: ``ddim`` (DDIM inversion, no guidance while inverting), ``null-text`` (Mokady et al. 2022),
        ``negative-prompt`` (Miyake et al. 2023: the source embedding stands in for the unconditional one),
        ``direct`` (Ju et al. 2023: the source branch is pinned to the inversion trajectory), ``ddpm``
        (edit-friendly DDPM inversion, Huberman-Spiegelglas et al. 2023: exact, random, seedable).

        Args:
            images: PIL images of any size (fitted with ``prepare``).
            prompts: one source prompt per image.
            method: see above.
            num_steps: DDIM steps T.
            guidance_scale: CFG scale w used when reconstructing/editing (and in null-text's objective).
            cache: optional ``InversionCache``; hits are loaded, misses computed and stored.
            seed: ``ddpm`` only: one seed for all images or one per image. An image's noise depends only on its seed
                and its content (not on batching); different seeds give different noise maps, hence different edits
                of one image (candidates to oversample), all reconstructing it exactly. Part of the cache key.

        Returns:
            One ``Inversion`` per image, in order.
        """
        if method not in METHODS:
            raise ValueError(f"unknown inversion method {method!r}; expected one of {METHODS}")
        if len(images) != len(prompts):
            raise ValueError(f"got {len(images)} images but {len(prompts)} prompts")
        if num_steps < 1:
            raise ValueError(f"num_steps must be >= 1, got {num_steps}")
        seeds = [seed] * len(images) if isinstance(seed, int) else [int(s) for s in seed]
        if len(seeds) != len(images):
            raise ValueError(f"got {len(images)} images but {len(seeds)} seeds")
        fitted = self.prepare(images)
        hashes = [image_hash(im) for im in fitted]
        settings = [self._settings(method, s) for s in seeds]
        keys = [
            inversion_key(h, self.model_id, p, method, num_steps, guidance_scale, st)
            for h, p, st in zip(hashes, prompts, settings)
        ]
        results: list[Inversion | None] = [cache.get(k) if cache else None for k in keys]
        todo = [i for i, r in enumerate(results) if r is None]
        for start in range(0, len(todo), self.config.batch_size):
            chunk = todo[start : start + self.config.batch_size]
            invs = self._invert_batch(
                [fitted[i] for i in chunk], [prompts[i] for i in chunk], [hashes[i] for i in chunk],
                method, num_steps, guidance_scale, [settings[i] for i in chunk],
            )  # fmt: skip
            for i, inv in zip(chunk, invs):
                results[i] = inv
                if cache is not None:
                    cache.put(keys[i], inv)
        return results  # type: ignore[return-value]

    @torch.no_grad()
    def _invert_batch(self, fitted, prompts, hashes, method, num_steps, guidance_scale, settings) -> list[Inversion]:
        z0 = self.encode_images(fitted)  # (N, C, h, w)
        cond = self.encode_text(prompts)  # N rows
        nulls, noise, stats = None, None, [{} for _ in prompts]
        if method == "ddpm":
            seeds = [ddpm_noise_seed(st["seed"], h) for st, h in zip(settings, hashes)]
            x_T, noise = self._ddpm_inversion(z0, cond, num_steps, guidance_scale, seeds)  # (N,C,h,w), (N,T,C,h,w)
            trajectory = x_T[:, None]  # (N, 1, C, h, w): only x_T is kept
        else:
            trajectory = self._ddim_inversion(z0, cond, num_steps)  # (N, T+1, C, h, w)
        if method == "null-text":
            nulls, stats = self._null_text(trajectory, cond, guidance_scale)  # (N, T, L, D)
        return [
            Inversion(
                method=method,
                prompt=prompt,
                num_steps=num_steps,
                guidance_scale=float(guidance_scale),
                model_id=self.model_id,
                image_hash=h,
                x_T=trajectory[n, -1].cpu(),
                null_embeddings=None if nulls is None else nulls[n].cpu(),
                latents=trajectory[n].cpu() if method == "direct" else None,
                noise=None if noise is None else noise[n].cpu(),
                image=torch.from_numpy(np.array(fitted[n], dtype=np.uint8)).permute(2, 0, 1),  # (3, H, W)
                settings=settings[n],
                stats=stats[n],
            )
            for n, (prompt, h) in enumerate(zip(prompts, hashes))
        ]

    def _ddim_inversion(self, z0: torch.Tensor, cond: TextCond, num_steps: int) -> torch.Tensor:
        """DDIM inversion under the source prompt without guidance (DDIM paper eq. 13 run backwards).

        Returns:
            (N, T+1, C, h, w) latents; index k is after k inversion steps (0 = clean, T = x_T).
        """
        self.inverse_scheduler.set_timesteps(num_steps, device=self.device)
        latents = [z0]
        z = z0
        for t in self.inverse_scheduler.timesteps:
            eps = self._unet(z, t, cond)  # (N, C, h, w)
            z = self.inverse_scheduler.step(eps, t, z).prev_sample
            latents.append(z)
            self._stepped()
        return torch.stack(latents, dim=1)

    def _ddpm_inversion(
        self, z0: torch.Tensor, cond: TextCond, num_steps: int, guidance: float, seeds: Sequence[int]
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Edit-friendly DDPM inversion (Huberman-Spiegelglas et al. 2023, Sec. 3).

        Each noisy latent is drawn independently from the forward marginal, x_t = sqrt(abar_t) x_0 + sqrt(1 - abar_t)
        eps_t (their eq. 6, ``scheduler.add_noise``); then, step by step, the noise that takes the guided DDPM
        (DDIM eta = 1) mean mu_t(x_t) exactly to x_{t-1} is extracted: noise_t = x_{t-1} - mu_t(x_t) = sigma_t z_t
        (their eq. 5, stored times sigma_t, which also makes a sigma_t = 0 final step exact). Sampling
        x_{t-1} = mu_t(x_t) + noise_t from x_T then reproduces the trajectory, hence x_0, without optimisation.

        Args:
            z0: (N, C, h, w) clean latents.
            cond: N rows of source-prompt conditioning (CFG with the empty prompt, scale ``guidance``).
            seeds: one generator seed per image (CPU generator, so noise is device-independent).

        Returns:
            ``(x_T, noise)``: (N, C, h, w) and (N, T, C, h, w), noise in sampling order.
        """
        N, T = len(z0), num_steps
        self.scheduler.set_timesteps(T, device=self.device)
        timesteps = self.scheduler.timesteps  # (T,) descending
        draws = torch.stack(
            [torch.randn((T, *z0.shape[1:]), generator=torch.Generator().manual_seed(s)) for s in seeds]
        ).to(self.device)  # (N, T, C, h, w)
        xs = [self.scheduler.add_noise(z0, draws[:, i], t) for i, t in enumerate(timesteps)]  # T x (N, C, h, w)
        xs.append(z0)
        empty = self.encode_text([""]).expand(N)
        noise = []
        for i, t in enumerate(timesteps):
            eps = self._guided_eps(xs[i], t, empty, cond, guidance)  # (N, C, h, w)
            noise.append(xs[i + 1] - self._ddpm_mean(eps, t, xs[i]))
            self._stepped()
        return xs[0], torch.stack(noise, dim=1)

    def _guided_eps(self, x: torch.Tensor, t, uncond: TextCond, cond: TextCond, w: float) -> torch.Tensor:
        """CFG eps (Ho & Salimans 2022, eq. 6) for (N, C, h, w) latents in one UNet call of 2N rows."""
        eps_u, eps_c = self._unet(torch.cat([x, x]), t, TextCond.cat([uncond, cond])).chunk(2)
        return eps_u + w * (eps_c - eps_u)

    def _ddpm_mean(self, eps: torch.Tensor, t, x: torch.Tensor) -> torch.Tensor:
        """The DDPM posterior mean mu_t(x_t): DDIM's step at eta = 1 (DDIM paper eq. 12 / 16) without its noise."""
        return self.scheduler.step(eps, t, x, eta=1.0, variance_noise=torch.zeros_like(x)).prev_sample

    def _null_text(self, trajectory: torch.Tensor, cond: TextCond, guidance: float):
        """Null-text optimisation (Mokady et al. 2022, eq. 3 / Alg. 1), batched over images.

        Each image has its own null embedding; the loss is a sum of per-image means, so gradients (and Adam's
        element-wise updates) stay independent, and an image whose loss passed the early-stop threshold is frozen
        and leaves the UNet batch: N images together give what N single runs give.

        Args:
            trajectory: (N, T+1, C, h, w) DDIM-inversion latents.
            cond: N rows of source-prompt conditioning.

        Returns:
            ``(nulls, stats)``: (N, T, L, D) float32 embeddings and per-image diagnostics.
        """
        cfg = self.config.null_text
        N, T = trajectory.shape[0], trajectory.shape[1] - 1
        self.scheduler.set_timesteps(T, device=self.device)
        empty = self.encode_text([""]).expand(N)  # SDXL: its pooled part stays fixed; only the sequence is optimised
        null = empty.seq.clone()  # (N, L, D) fp32 master copy
        latent = trajectory[:, T]  # (N, C, h, w)
        nulls, inner_steps, last_loss = [], [[] for _ in range(N)], [0.0] * N
        for i, t in enumerate(self.scheduler.timesteps):
            target = trajectory[:, T - i - 1]  # (N, C, h, w) where the guided step should land
            eps_c = self._unet(latent, t, cond)  # (N, C, h, w)
            null = null.clone().requires_grad_(True)
            optimizer = torch.optim.Adam([null], lr=cfg.lr * (1.0 - cfg.lr_decay * i))
            active = torch.ones(N, dtype=torch.bool, device=self.device)
            steps = [0] * N
            for _ in range(cfg.inner_steps):
                idx = active.nonzero().squeeze(1)  # (n,)
                frozen = null.detach().clone()
                with torch.enable_grad():
                    eps_u = self._unet(latent[idx], t, empty[idx].with_seq(null[idx]))  # (n, C, h, w)
                    eps = eps_u + guidance * (eps_c[idx] - eps_u)
                    prev = self.scheduler.step(eps, t, latent[idx]).prev_sample
                    loss = ((prev - target[idx]) ** 2).mean(dim=(1, 2, 3))  # (n,) per-image MSE
                    (null.grad,) = torch.autograd.grad(loss.sum(), [null])
                optimizer.step()
                with torch.no_grad():
                    null[~active] = frozen[~active]  # Adam momentum must not move frozen images
                for k, n in enumerate(idx.tolist()):
                    steps[n] += 1
                    last_loss[n] = float(loss[k])
                done = loss.detach() < cfg.early_stop + i * cfg.early_stop_growth
                active[idx[done]] = False
                if not active.any():
                    break
            null = null.detach()
            for n in range(N):
                inner_steps[n].append(steps[n])
            eps_u = self._unet(latent, t, empty.with_seq(null))
            latent = self.scheduler.step(eps_u + guidance * (eps_c - eps_u), t, latent).prev_sample
            nulls.append(null)
            self._stepped()
        stats = [{"inner_steps": inner_steps[n], "last_loss": last_loss[n]} for n in range(N)]
        return torch.stack(nulls, dim=1), stats

    # ------------------------------------------------------------------------------------------- sampling
    @torch.no_grad()
    def _sample(
        self, sources: Sequence[Inversion], targets: Sequence[str] = (), edits: Sequence[PairEdit] = ()
    ) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None, torch.Tensor | None]:
        """Run S source branches (reconstruction) and J edited target branches in shared UNet calls.

        Args:
            sources: S inversions with one ``group_key``.
            targets: J target prompts; ``edits[j]`` says which source target j edits against and how.

        A target whose edit has a ``start_seed`` starts from that seed's fresh noise and takes the plain empty
        unconditional (and, under ddpm, DDIM steps without the source's noise maps or, under direct, no add-target
        offset); the others start from their source's inverted noise.
        A target whose edit skips steps (``PairEdit.skip_steps``) takes its source's latent after each of those steps.

        Returns:
            ``(x_src, x_tgt, mask, kept)``: (S, C, h, w) and (J, C, h, w) clean latents, the (J, 1, h, w) LocalBlend
            mask and its kept-word regions (``P2PController.blend``; both ``None`` when nothing was blended).
        """
        first = sources[0]
        method, T, w = first.method, first.num_steps, first.guidance_scale
        S, J = len(sources), len(targets)
        dev = self.device
        self.scheduler.set_timesteps(T, device=dev)
        x_src = torch.stack([s.x_T for s in sources]).to(dev)  # (S, C, h, w)
        if method == "direct" and J == 0:  # the source branch is the stored trajectory itself
            return torch.stack([s.latents[0] for s in sources]).to(dev), None, None
        cond_src = self.encode_text([s.prompt for s in sources])  # S rows
        empty = self.encode_text([""])  # 1 row
        nulls = torch.stack([s.null_embeddings for s in sources]).to(dev) if method == "null-text" else None  # (S,T,L,D)
        traj = torch.stack([s.latents for s in sources]).to(dev) if method == "direct" else None  # (S,T+1,C,h,w)
        noise = torch.stack([s.noise for s in sources]).to(dev) if method == "ddpm" else None  # (S, T, C, h, w)
        add_target = method == "direct" and self.config.direct_add_target and J > 0
        # negative-prompt: eps_u == eps_c; direct: the source is pinned (its guided step only for the add-target offset)
        src_cfg = method in ("null-text", "ddim", "ddpm") or add_target
        controller = None
        if J:
            src_idx = torch.tensor([e.source_index for e in edits], device=dev)  # (J,)
            x_tgt = x_src[src_idx].clone()  # (J, C, h, w)
            fresh = torch.tensor([e.start_seed is not None for e in edits], device=dev)  # (J,)
            skip = torch.tensor([e.skip_steps for e in edits], device=dev)  # (J,)
            for j in fresh.nonzero().flatten().tolist():
                g = torch.Generator().manual_seed(edits[j].start_seed)
                x_tgt[j] = torch.randn(x_tgt.shape[1:], generator=g).to(x_tgt) * self.scheduler.init_noise_sigma
            cond_tgt = self.encode_text(targets)  # J rows
            h, w_lat = x_src.shape[-2:]
            grid = blend_grid(h, w_lat, self.config.blend_grid_divisor, self.config.blend_grid_min)
            controller = P2PController(edits, S, (h, w_lat), self.config.self_replace_max_tokens, grid, dev,
                                       keep_pool=self.config.keep_pool)
        blend_from = int(self.config.blend_start * T)
        mask = kept = None
        ctx = p2p_attention(self.unet, controller) if controller else contextlib.nullcontext()
        with ctx:
            for i, t in enumerate(self.scheduler.timesteps):
                if method == "null-text":
                    u_src = empty.expand(S).with_seq(nulls[:, i])
                    u_tgt = empty.expand(J).with_seq(nulls[src_idx, i]) if J else None
                elif method == "negative-prompt":
                    u_src, u_tgt = None, (cond_src[src_idx] if J else None)
                else:
                    u_src, u_tgt = empty.expand(S), (empty.expand(J) if J else None)
                if J and fresh.any():  # fresh starts: the plain unconditional, not one fitted to the source
                    e = empty.expand(J)
                    u_tgt = TextCond(torch.where(fresh[:, None, None], e.seq, u_tgt.seq),
                                     None if e.pooled is None else torch.where(fresh[:, None], e.pooled, u_tgt.pooled))
                lat, emb = [], []
                if src_cfg:
                    lat.append(x_src), emb.append(u_src)
                if J:
                    lat.append(x_tgt), emb.append(u_tgt)
                n_uncond = sum(len(x) for x in lat)
                lat.append(x_src), emb.append(cond_src)
                if J:
                    lat.append(x_tgt), emb.append(cond_tgt)
                if controller:
                    controller.begin_step(i, n_uncond)
                eps = self._unet(torch.cat(lat), t, TextCond.cat(emb))  # (n_uncond + S + J, C, h, w)
                parts = list(eps.split([len(x) for x in lat]))
                eps_u_src = parts.pop(0) if src_cfg else None
                eps_u_tgt = parts.pop(0) if J else None
                eps_c_src = parts.pop(0)
                eps_c_tgt = parts.pop(0) if J else None
                e_src = eps_u_src + w * (eps_c_src - eps_u_src) if src_cfg else eps_c_src
                if method == "direct":
                    x_src_next = traj[:, T - i - 1]
                    if add_target:  # PnP Inversion's offset: where the guided source step lands vs the trajectory
                        offset = x_src_next - self.scheduler.step(e_src, t, x_src).prev_sample  # (S, C, h, w)
                elif method == "ddpm":
                    x_src_next = self._ddpm_mean(e_src, t, x_src) + noise[:, i]
                else:
                    x_src_next = self.scheduler.step(e_src, t, x_src).prev_sample
                if J:
                    e_tgt = eps_u_tgt + w * (eps_c_tgt - eps_u_tgt)
                    if method == "ddpm":  # the target branch reuses its source's noise maps (fresh starts: DDIM)
                        stepped = self._ddpm_mean(e_tgt, t, x_tgt) + noise[src_idx, i]
                        if fresh.any():
                            ddim = self.scheduler.step(e_tgt, t, x_tgt).prev_sample
                            stepped = torch.where(fresh[:, None, None, None], ddim, stepped)
                        x_tgt = stepped
                    else:
                        x_tgt = self.scheduler.step(e_tgt, t, x_tgt).prev_sample
                    if add_target:  # the source trajectory's offset; a fresh start does not follow that trajectory
                        x_tgt = x_tgt + torch.where(fresh[:, None, None, None], 0.0, offset[src_idx])
                    if bool((skip > i).any()):  # still following the source: the edit starts at step skip_steps
                        x_tgt = torch.where((skip > i)[:, None, None, None], x_src_next[src_idx], x_tgt)
                    if controller.has_blend.any() and i >= blend_from:
                        x_tgt, mask, kept = controller.blend(x_src_next, x_tgt)
                x_src = x_src_next
                self._stepped()
        return x_src, (x_tgt if J else None), mask, kept

    def _reference_pixels(self, inversions: Sequence[Inversion]) -> torch.Tensor:
        """(S, 3, H, W) in [-1, 1]: the input images the inversions keep (``paste="reference"``)."""
        missing = [i for i, inv in enumerate(inversions) if inv.image is None]
        if missing:
            raise ValueError(
                f'EditorConfig.paste="reference" needs the input image, and {len(missing)} inversion(s) do not keep it '
                "(files cached before cirsynth kept images in inversions): clear the inversion cache and invert again"
            )
        return uint8_to_pixels(torch.stack([inv.image for inv in inversions])).to(self.device)

    def _groups(self, inversions: Sequence[Inversion]) -> dict[tuple, list[int]]:
        groups: dict[tuple, list[int]] = {}
        for i, inv in enumerate(inversions):
            if inv.model_id != self.model_id:
                raise ValueError(f"inversion {i} belongs to model {inv.model_id!r}, this editor is {self.model_id!r}")
            groups.setdefault(inv.group_key(), []).append(i)
        return groups

    def reconstruct(self, inversions: Sequence[Inversion]) -> list[Image.Image]:
        """Regenerate each inverted image under its own prompt and method (no attention control, SDPA everywhere)."""
        out: list[Image.Image | None] = [None] * len(inversions)
        for members in self._groups(inversions).values():
            for start in range(0, len(members), self.config.batch_size):
                chunk = members[start : start + self.config.batch_size]
                x_src = self._sample([inversions[i] for i in chunk])[0]
                for i, im in zip(chunk, tensor_to_images(self.decode_latents(x_src))):
                    out[i] = im
        return out  # type: ignore[return-value]

    # ------------------------------------------------------------------------------------------- editing
    def edit(
        self,
        inversions: Sequence[Inversion],
        target_prompts: Sequence[str],
        *,
        cross_replace_steps: float = 0.8,
        self_replace_steps: float | Sequence[float] = 0.6,
        blend_words: Sequence[tuple[Sequence[str], ...] | None] | None = None,
        reweight: Sequence[dict[str, float] | None] | None = None,
        mode: str = "auto",
        return_details: bool = False,
        blend_pin: Sequence[bool] | None = None,
        start_noise: Sequence[int | None] | None = None,
        skip_steps: float = 0.0,
    ) -> list[Image.Image] | list[list[Image.Image]] | list[EditResult]:
        """Prompt-to-prompt edits of inverted images; many (image, edit) pairs share each UNet call.

        Args:
            inversions: one per pair (the same inversion may appear in several pairs).
            target_prompts: one per pair.
            cross_replace_steps: fraction of steps whose cross-attention is taken from the source.
            self_replace_steps: fraction of steps whose self-attention is taken from the source; a list runs a sweep
                (as LANCE does) and yields one candidate per value.
            blend_words: per pair ``(source_words, target_words)`` or ``(source_words, target_words, keep_words)``
                for LocalBlend (keep words: source words whose regions stay as they are), or ``None`` (no blend).
            reweight: per pair ``{target word: scale}`` for AttentionReweight, or ``None``.
            mode: "auto" (replace when token counts match, else refine), "replace" or "refine".
            return_details: return ``EditResult``s (candidates, masks, source branch).
            blend_pin: per pair, whether its LocalBlend pins the latents outside the mask (default: all do); False
                only measures the mask (``LocalBlend.pin``), for ``paste`` to restore what lies outside it.
            start_noise: per pair, ``None`` (the target branch starts from the inversion's noise, as prompt-to-prompt
                does) or a seed: the target branch starts from fresh noise drawn with it and takes the plain
                empty-prompt unconditional instead of the inversion's, so nothing of the source reaches it but
                attention control and a pinning LocalBlend (Blended Latent Diffusion when the blend pins). For edits
                the inverted noise holds back, such as a new background.
            skip_steps: fraction of the first steps in which every target branch follows its source branch (the
                reconstruction), so the edit starts from the source's partly denoised latent: edit-friendly DDPM
                inversion's T_skip (Huberman-Spiegelglas et al. 2024), which keeps the layout and the coarse look of
                the input that the first, noisiest steps decide. 0 edits from the first step; not with ``start_noise``.
                The replace fractions count from the first step too, so attention control ends with the skipped
                steps when its fraction is no larger than ``skip_steps``.

        Returns:
            ``list[Image]`` for a single ``self_replace_steps``; ``list[list[Image]]`` (pair -> candidates) for a
            sweep; ``list[EditResult]`` with ``return_details``.

        Raises:
            ValueError: length mismatches, unknown words, or a replace edit between prompts of different lengths.
        """
        P = len(inversions)
        if len(target_prompts) != P:
            raise ValueError(f"got {P} inversions but {len(target_prompts)} target prompts")
        for name, per_pair in (("blend_words", blend_words), ("reweight", reweight), ("blend_pin", blend_pin),
                               ("start_noise", start_noise)):
            if per_pair is not None and len(per_pair) != P:
                raise ValueError(f"{name} must have one entry per pair ({P}), got {len(per_pair)}")
        for start in start_noise or ():
            if start is not None and (isinstance(start, bool) or not isinstance(start, (int, np.integer))):
                raise ValueError(f"start_noise entries are integer seeds or None, got {start!r}")
        sweep = not isinstance(self_replace_steps, (int, float))
        fractions = [float(f) for f in (self_replace_steps if sweep else [self_replace_steps])]
        for f in [*fractions, cross_replace_steps]:
            if not 0.0 <= f <= 1.0:
                raise ValueError(f"replace-step fractions must lie in [0, 1], got {f}")
        if not 0.0 <= skip_steps < 1.0:
            raise ValueError(f"skip_steps is a fraction of the steps in [0, 1), got {skip_steps}")
        if skip_steps > 0 and any(s is not None for s in start_noise or ()):
            raise ValueError("skip_steps follows the source branch, start_noise leaves it: a pair cannot have both")
        results: list[EditResult | None] = [None] * P
        for members in self._groups(inversions).values():
            per_call = max(1, self.config.batch_size // len(fractions))
            for start in range(0, len(members), per_call):
                chunk = members[start : start + per_call]
                for i, res in zip(chunk, self._edit_chunk(
                    [inversions[i] for i in chunk], [target_prompts[i] for i in chunk],
                    [blend_words[i] if blend_words else None for i in chunk],
                    [reweight[i] if reweight else None for i in chunk],
                    [bool(blend_pin[i]) if blend_pin is not None else True for i in chunk],
                    [None if start_noise is None or start_noise[i] is None else int(start_noise[i]) for i in chunk],
                    cross_replace_steps, fractions, mode, skip_steps,
                )):  # fmt: skip
                    results[i] = res
        if return_details:
            return results  # type: ignore[return-value]
        if sweep:
            return [r.images for r in results]  # type: ignore[union-attr]
        return [r.images[0] for r in results]  # type: ignore[union-attr]

    def _edit_chunk(self, invs, targets, blends, reweights, pins, starts, cross_frac, fractions, mode,
                    skip_frac=0.0) -> list[EditResult]:
        T = invs[0].num_steps
        sources: list[Inversion] = []
        slot: dict[int, int] = {}
        for inv in invs:  # pairs sharing an inversion share its source branch
            slot.setdefault(id(inv), len(sources))
            if slot[id(inv)] == len(sources):
                sources.append(inv)
        edits, prompts, modes = [], [], []
        for inv, target, blend, weights, pin, start in zip(invs, targets, blends, reweights, pins, starts):
            cross = cross_attention_edit(self.tokenizer, inv.prompt, target, mode)
            if self.tokenizer_2 is not None:  # SDXL: both encoders' tokens share the sequence positions
                other = cross_attention_edit(self.tokenizer_2, inv.prompt, target, mode)
                if other.name != cross.name or not (torch.equal(other.mapper, cross.mapper) and torch.equal(other.alpha, cross.alpha)):
                    raise ValueError(
                        f"SDXL's two tokenizers align {inv.prompt!r} -> {target!r} differently; prompt-to-prompt "
                        "needs one token alignment for both encoders"
                    )
            modes.append(cross.name)
            local = None
            if blend is not None:
                src_words, tgt_words, *keep = blend
                local = LocalBlend.from_words(
                    self.tokenizer, inv.prompt, target, list(src_words), list(tgt_words), self.config.blend_threshold,
                    keep_words=list(keep[0]) if keep else [], pin=pin, keep_threshold=self.config.keep_threshold,
                )
            rw = AttentionReweight.from_words(self.tokenizer, target, weights, source=inv.prompt) if weights else None
            for frac in fractions:
                edits.append(PairEdit(slot[id(inv)], cross, rw, local, int(cross_frac * T), int(frac * T), start,
                                      round(skip_frac * T)))
                prompts.append(target)
        x_src, x_tgt, mask, kept = self._sample(sources, prompts, edits)
        pixels = self.decode_latents(torch.cat([x_src, x_tgt]))  # (S + J, 3, H, W)
        src_px, tgt_px = pixels[: len(sources)], pixels[len(sources) :]
        mask_px = None
        if mask is not None:
            mask_px = F.interpolate(mask.float(), size=tgt_px.shape[-2:], mode="nearest").bool()  # (J, 1, H, W)
            if self.config.paste != "none":
                rows = torch.tensor([e.source_index for e in edits], device=src_px.device)
                outside = src_px if self.config.paste == "source" else self._reference_pixels(sources)
                tgt_px = paste_outside(tgt_px, outside.to(tgt_px)[rows], mask, self.config.paste_dilate, kept,
                                       self.config.kept_background)
        src_images, tgt_images = tensor_to_images(src_px), tensor_to_images(tgt_px)
        results, j = [], 0
        for k, (inv, blend) in enumerate(zip(invs, blends)):
            n = len(fractions)
            masks = [
                mask_px[j + c, 0].cpu().numpy() if (mask_px is not None and blend is not None) else None for c in range(n)
            ]
            results.append(EditResult(tgt_images[j : j + n], list(fractions), masks, src_images[slot[id(inv)]], modes[k]))
            j += n
        return results
