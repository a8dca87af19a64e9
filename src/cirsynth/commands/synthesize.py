from __future__ import annotations

import dataclasses
import json
from typing import Literal, Optional


def synthesize(
    images: Optional[str] = None,
    out: Optional[str] = None,
    editor: Optional[str] = None,
    captioner: Optional[str] = None,
    captions: Optional[str] = None,
    captioner_prompt: Optional[str] = None,
    perturber: Literal["lexical", "llm"] = "lexical",
    perturber_model: Optional[str] = None,
    adapter: Optional[str] = None,
    vocabulary: Optional[str] = None,
    edit_types: Optional[list[str]] = None,
    edits_per_image: int = 1,
    inversion: Literal["null-text", "negative-prompt", "direct", "ddim"] = "null-text",
    num_steps: int = 50,
    guidance_scale: float = 7.5,
    cross_replace_steps: float = 0.8,
    self_replace_steps: list[float] = [0.6],
    local_blend: bool = True,
    clip: Optional[str] = None,
    no_filter: bool = False,
    min_clip_i2i: float = 0.7,
    min_clip_src_text: float = 0.2,
    min_clip_tgt_text: float = 0.2,
    min_clip_dir: float = 0.2,
    min_words_margin: float = 0.0,
    min_psnr_outside: float = 18.0,
    resolution: Optional[int] = None,
    max_pixels: int = 64_000_000,
    split: str = "train",
    seed: int = 0,
    batch_size: int = 4,
    device: Optional[str] = None,
    dtype: Optional[str] = None,
    progress: bool = True,
    force_new: bool = False,
) -> int:
    """Images in, a filtered TripletDataset out: caption -> perturb -> invert -> edit -> filter -> write.

    Re-running the same command resumes after the last complete batch; changed settings are refused
    unless --force-new (the old output is moved aside). Pass --config run.yaml to read settings from a file.

    Args:
        images: folder (recursive, by extension) or .parquet/.jsonl list (fields image, optional caption).
        out: output TripletDataset folder.
        editor: Stable Diffusion pipeline id or folder (e.g. stable-diffusion-v1-5/stable-diffusion-v1-5).
        captioner: HF image-to-text model id or folder (e.g. Salesforce/blip2-opt-2.7b).
        captions: CSV/JSONL/Parquet file with columns image, caption (instead of a captioner).
        captioner_prompt: prompt prefix for the captioner, e.g. "a photo of".
        perturber: lexical (no weights) or llm.
        perturber_model: causal LM id or folder for --perturber llm.
        adapter: PEFT LoRA adapter folder for the LLM perturber.
        vocabulary: lexical perturber word lists: "world" (the mini world's), a JSON file, or unset (built-in + WordNet).
        edit_types: restrict edit types (subject object color material size pattern count background weather lighting).
        edits_per_image: counterfactual captions per image.
        inversion: null-text | negative-prompt | direct | ddim.
        num_steps: DDIM steps.
        guidance_scale: classifier-free guidance scale.
        cross_replace_steps: prompt-to-prompt fraction of steps with source cross-attention.
        self_replace_steps: one value, or several for a LANCE-style sweep (the best candidate is kept).
        local_blend: LocalBlend on the changed words.
        clip: CLIP id or folder for filtering (e.g. openai/clip-vit-large-patch14).
        no_filter: accept every edit (scores are still recorded).
        min_clip_i2i: threshold: CLIP image-image similarity.
        min_clip_src_text: threshold: reference image vs source caption.
        min_clip_tgt_text: threshold: edited image vs target caption.
        min_clip_dir: threshold: directional CLIP similarity.
        min_words_margin: threshold: similarity to target words minus similarity to source words.
        min_psnr_outside: threshold (dB): PSNR outside the LocalBlend mask.
        resolution: square working size in pixels (default: the model's native size).
        max_pixels: decode limit per input image (width x height); larger images fail, large JPEGs decode reduced.
        split: split recorded on the triplets (train/val/test).
        seed: perturbation seed.
        batch_size: images per batch (one manifest shard per batch).
        device: cuda / cpu (default: CUDA when available).
        dtype: model dtype, e.g. bfloat16 on a GPU.
        progress: show one progress bar per stage.
        force_new: start over when the settings changed (moves the old output aside).
    """
    from cirsynth.config import save_resolved_config
    from cirsynth.synth import ConfigChanged, FilterConfig, SynthConfig, Synthesizer

    missing = [f"--{n}" for n, v in (("images", images), ("out", out), ("editor", editor)) if not v]
    if missing:
        raise SystemExit(f"synthesize: {', '.join(missing)} required")

    filters = FilterConfig(
        min_clip_i2i=min_clip_i2i, min_clip_src_text=min_clip_src_text, min_clip_tgt_text=min_clip_tgt_text,
        min_clip_dir=min_clip_dir, min_words_margin=min_words_margin, min_psnr_outside=min_psnr_outside,
    )
    cfg = SynthConfig(
        images=images, out=out, editor=editor, captioner=captioner, captions=captions, captioner_prompt=captioner_prompt,
        perturber=perturber, perturber_model=perturber_model, adapter=adapter, vocabulary=vocabulary, edit_types=edit_types,
        edits_per_image=edits_per_image, inversion=inversion, num_steps=num_steps, guidance_scale=guidance_scale,
        cross_replace_steps=cross_replace_steps, self_replace_steps=list(self_replace_steps), local_blend=local_blend,
        clip=clip, no_filter=no_filter, filters=filters, resolution=resolution, max_pixels=max_pixels, split=split, seed=seed,
        batch_size=batch_size, device=device, dtype=dtype, progress=progress,
    )
    if clip is None and not no_filter:
        raise SystemExit("synthesize: pass --clip ID_OR_DIR for filtering, or --no-filter to accept every edit")
    try:
        summary = Synthesizer(cfg).run(force_new=force_new)
    except ConfigChanged as e:
        raise SystemExit(str(e)) from e
    save_resolved_config(out, "synthesize", {**dataclasses.asdict(cfg), "force_new": force_new})
    print(json.dumps({"out": out, **summary.as_dict()}, indent=2))
    return 0
