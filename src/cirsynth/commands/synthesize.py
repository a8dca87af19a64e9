from __future__ import annotations

import dataclasses
import json
from typing import Any, Literal, Optional

_RAY_ARGS = ("ray_address", "workers", "gpus_per_worker")  # runtime settings of --engine ray, not of the run


def synthesize(
    images: Optional[str] = None,
    out: Optional[str] = None,
    editor: Optional[str] = None,
    captioner: Optional[str] = None,
    captions: Optional[str] = None,
    captioner_prompt: Optional[str] = None,
    captioner_max_new_tokens: Optional[int] = None,
    perturber: Literal["lexical", "llm"] = "lexical",
    perturber_model: Optional[str] = None,
    adapter: Optional[str] = None,
    vocabulary: Optional[str] = None,
    edit_types: Optional[list[str]] = None,
    edits_per_image: int = 1,
    inversion: Optional[Literal["null-text", "negative-prompt", "direct", "ddim", "ddpm"]] = None,
    num_steps: Optional[int] = None,
    guidance_scale: Optional[float] = None,
    cross_replace_steps: Optional[float] = None,
    self_replace_steps: Optional[list[float]] = None,
    local_blend: bool = True,
    paste: Optional[Literal["none", "source", "reference"]] = None,
    kept_background: Optional[float] = None,
    candidates: Optional[int] = None,
    cross_replace_choices: Optional[list[float]] = None,
    self_replace_choices: Optional[list[float]] = None,
    reweight_choices: Optional[list[float]] = None,
    skip_choices: Optional[list[float]] = None,
    by_edit_type: Optional[dict[str, dict[str, Any]]] = None,
    clip: Optional[str] = None,
    no_filter: bool = False,
    recaptioner: Optional[str] = None,
    min_recaption_target: Optional[float] = None,
    min_recaption_margin: Optional[float] = None,
    min_recaption_diff: Optional[float] = None,
    min_likelihood_edit: Optional[float] = None,
    min_likelihood_kept: Optional[float] = None,
    min_likelihood_margin: Optional[float] = None,
    diffusion_judge: Optional[str] = None,
    diffusion_timesteps: Optional[list[int]] = None,
    diffusion_negatives: Optional[int] = None,
    min_diffusion_margin: Optional[float] = None,
    min_diffusion_edit: Optional[float] = None,
    min_diffusion_kept: Optional[float] = None,
    min_clip_i2i: Optional[float] = None,
    min_clip_src_text: Optional[float] = None,
    min_clip_tgt_text: Optional[float] = None,
    min_clip_dir: Optional[float] = None,
    min_words_margin: Optional[float] = None,
    min_psnr_outside: Optional[float] = None,
    min_caption_margin: Optional[float] = None,
    hard_negatives: Optional[int] = None,
    rank_by: Optional[str] = None,
    resolution: Optional[int] = None,
    max_pixels: int = 64_000_000,
    split: str = "train",
    seed: int = 0,
    batch_size: int = 4,
    device: Optional[str] = None,
    dtype: Optional[str] = None,
    progress: bool = True,
    force_new: bool = False,
    recipe: Optional[str] = None,
    engine: Literal["local", "ray"] = "local",
    ray_address: Optional[str] = None,
    workers: int = 1,
    gpus_per_worker: Optional[float] = None,
) -> int:
    """Images in, a filtered TripletDataset out: caption -> perturb -> invert -> edit -> filter -> write.

    Re-running the same command resumes after the last complete batch; changed settings are refused
    unless --force-new (the old output is moved aside). Pass --config run.yaml to read settings from a file.
    Unset settings take the defaults shown, or with --recipe world the mini world's recipe (its bundled models,
    steps, guidance, candidates and the filter calibrated on seed-0 world edits). `--editor world`, `--clip world`
    and `--captioner world` name the bundled world models.

    Args:
        images: required: folder (recursive, by extension) or .parquet/.jsonl list (fields image, optional caption).
        out: required: output TripletDataset folder.
        editor: required: Stable Diffusion or SDXL pipeline id or folder (e.g.
            stable-diffusion-v1-5/stable-diffusion-v1-5), or "world" (the bundled world model; --recipe world sets it).
        captioner: HF image-to-text model id or folder (e.g. Salesforce/blip2-opt-2.7b), or "world".
        captions: CSV/JSONL/Parquet file with columns image, caption (instead of a captioner).
        captioner_prompt: prompt prefix for the captioner, e.g. "a photo of".
        captioner_max_new_tokens: caption length cap in tokens (default: the captioner's own, else 30); a caption
            that reaches it is a failed row ("cut off"), never edited.
        perturber: lexical (no weights) or llm.
        perturber_model: causal LM id or folder for --perturber llm.
        adapter: PEFT LoRA adapter folder for the LLM perturber.
        vocabulary: lexical perturber word lists: "world" (the mini world's), a JSON file, or unset (built-in + WordNet).
        edit_types: restrict edit types (subject object color material size pattern count background weather lighting).
        edits_per_image: counterfactual captions per image.
        inversion: null-text | negative-prompt | direct | ddim | ddpm (edit-friendly DDPM; its noise seeded by --seed).
        num_steps: DDIM steps.
        guidance_scale: classifier-free guidance scale.
        cross_replace_steps: prompt-to-prompt fraction of steps with source cross-attention.
        self_replace_steps: one value, or several for a LANCE-style sweep (the best candidate is kept).
        local_blend: LocalBlend on the changed words.
        paste: outside the LocalBlend mask, the pixels of: none (the edit's own decoding; the default), source (the
            reconstruction) or reference (the input image itself, so what the edit leaves alone loses nothing to the
            autoencoder; the world recipe's when it is set there).
        kept_background: with --paste, for edits that keep some words' regions (a background edit keeps its objects):
            the pixels of those regions within this RGB distance (0..1) of the replaced region's colours are the old
            background and take the edit's pixels, instead of a block of it staying around each object (default 0:
            off; the world recipe's when set there).
        candidates: oversample: N candidates per edit, each with settings drawn (seeded per edit) from the
            *_choices grids below; the filter keeps the best that passes. 0: one candidate per --self_replace_steps.
            With --inversion ddpm each candidate also gets its own inversion noise seed (one inversion per seed).
        cross_replace_choices: --candidates grid: cross-attention replace fractions.
        self_replace_choices: --candidates grid: self-attention replace fractions.
        reweight_choices: --candidates grid: attention scales of the changed target words (1: none).
        skip_choices: --candidates grid: fractions of the first steps the edit leaves to the reconstruction (edit-
            friendly DDPM's T_skip: more keeps more of the input's layout and look, less lets the edit reach further).
        by_edit_type: per edit type, its own --candidates grids, local_blend and/or start, as JSON, e.g.
            '{"background": {"self_replace_choices": [0.0], "start": "noise"}, "lighting": {"local_blend": false}}'
            (local_blend "mask": LocalBlend's mask without pinning the latents, with --paste restoring the rest;
            start "noise": each candidate's target branch starts from its own fresh noise, not the inversion's).
        clip: CLIP id or folder for filtering (e.g. openai/clip-vit-large-patch14), or "world".
        no_filter: accept every edit (scores are still recorded).
        recaptioner: image-to-text id or folder (or "world") that captions every edited candidate for the
            recaption rules (e.g. the --captioner itself); unset: no recaption scores.
        min_recaption_target: threshold: word overlap of the edit's caption with the target caption (0-1).
        min_recaption_margin: threshold: that overlap minus the overlap with the source caption.
        min_recaption_diff: threshold: the captioner's captions of the reference and of the edit differ by the asked
            change and no other (1: exactly; 0: no change; < 0: unasked changes).
        min_likelihood_edit: threshold (nats): the recaptioner finds the target caption likelier than the source on
            the edit, by this much more than on the reference (needs hard negatives or the source).
        min_likelihood_kept: threshold (nats): ... and no other one-attribute variant of the target likelier, relative
            to the reference (0: as kept as the reference; < 0: drifted).
        min_likelihood_margin: threshold (nats): on the edit, the recaptioner finds the target caption likelier than
            the source and every hard negative by this much (absolute, not relative to the reference).
        diffusion_judge: "editor" (the editing model itself, loaded once) or a diffusion pipeline id or folder that
            reads every candidate as a classifier of its captions (its noise-prediction error under the target
            caption, the source and each hard negative, at --diffusion_timesteps): the diffusion_* scores; unset:
            none. Costs (1 + negatives) x timesteps UNet rows per candidate.
        diffusion_timesteps: the judge's timesteps (default 100 250 400 550 700).
        diffusion_negatives: the judge reads the source caption and the first K hard negatives (default: all).
        min_diffusion_margin: threshold: on the edit, the judge's error under the source and every hard negative
            exceeds its error under the target caption by this much.
        min_diffusion_edit: threshold: the edit moved towards the target caption rather than the source, relative
            to the reference.
        min_diffusion_kept: threshold: ... and towards no hard negative, relative to the reference (0: kept).
        min_clip_i2i: threshold: CLIP image-image similarity.
        min_clip_src_text: threshold: reference image vs source caption.
        min_clip_tgt_text: threshold: edited image vs target caption.
        min_clip_dir: threshold: directional CLIP similarity.
        min_words_margin: threshold: similarity to target words minus similarity to source words.
        min_psnr_outside: threshold (dB): PSNR outside the LocalBlend mask.
        min_caption_margin: threshold: CLIP prefers the target caption over every hard negative (the source caption
            and --hard_negatives one-attribute variants of the target) by this margin; unset: rule off.
        hard_negatives: one-attribute variants of each target caption (by the run's perturber) as negatives.
        rank_by: score that orders an edit's passing candidates (clip_dir, caption_margin, clip_i2i, ...).
        resolution: square working size in pixels (default: the model's native size).
        max_pixels: decode limit per input image (width x height); larger images fail, large JPEGs decode reduced.
        split: split recorded on the triplets (train/val/test).
        seed: perturbation seed.
        batch_size: images per batch (one manifest shard per batch).
        device: cuda / cpu (default: CUDA when available).
        dtype: model dtype, e.g. bfloat16 on a GPU.
        progress: show one progress bar per stage.
        force_new: start over when the settings changed (moves the old output aside).
        recipe: "world": every unset setting (and --editor / --clip / --vocabulary) from the world recipe.
        engine: local (one process) or ray (the stages as Ray Data operators over a Ray cluster; same rows;
            needs `pip install "cirsynth[ray]"`).
        ray_address: --engine ray: a running cluster ("auto", or HOST:PORT of `ray start --head`); unset: start
            a local one on this machine.
        workers: --engine ray: parallel workers (actors per stage pool).
        gpus_per_worker: --engine ray: GPU per worker, at most 1 (0.5: two share one; 0: CPU); unset: 1 when the
            cluster has GPUs.
    """
    ray_opts = {"address": ray_address, "workers": workers, "gpus_per_worker": gpus_per_worker}
    given = {k: v for k, v in locals().items() if k not in ("force_new", "recipe", "engine", "ray_opts", *_RAY_ARGS)}
    from cirsynth.config import save_resolved_config
    from cirsynth.synth import ClusterError, ConfigChanged, Synthesizer
    from cirsynth.synth.settings import resolve_synth_config

    try:
        base = None
        if recipe is not None:
            if recipe != "world":
                raise ValueError(f"unknown --recipe {recipe!r}; the one recipe is 'world' (the mini world's)")
            from cirsynth.world.recipe import synth_settings

            base = synth_settings()
        for name in ("editor", "clip", "captioner", "recaptioner"):  # `world`: the bundled world model of that kind
            if given[name] == "world":
                from cirsynth.world.recipe import bundled_model

                given[name] = bundled_model(name)
        cfg = resolve_synth_config(given, base)
    except ValueError as e:
        raise SystemExit(f"synthesize: {e}") from e
    images, out, editor, clip = cfg.images, cfg.out, cfg.editor, cfg.clip
    missing = [f"--{n}" for n, v in (("images", images), ("out", out), ("editor", editor)) if not v]
    if missing:
        raise SystemExit(f"synthesize: {', '.join(missing)} required (--editor world or --recipe world: the bundled "
                         f"world models)" if "--editor" in missing else f"synthesize: {', '.join(missing)} required")
    if clip is None and not no_filter:
        raise SystemExit("synthesize: pass --clip ID_OR_DIR for filtering, or --no-filter to accept every edit")
    try:
        if engine == "ray":
            from cirsynth.synth.ray_engine import RayConfig, run_ray

            summary = run_ray(cfg, RayConfig(**ray_opts), force_new=force_new)
        else:
            summary = Synthesizer(cfg).run(force_new=force_new)
    except ConfigChanged as e:
        raise SystemExit(str(e)) from e
    except ClusterError as e:
        raise SystemExit(f"synthesize --engine ray: {e}") from e
    save_resolved_config(out, "synthesize", {**dataclasses.asdict(cfg), "force_new": force_new})
    print(json.dumps({"out": out, **summary.as_dict()}, indent=2))
    return 0
