from __future__ import annotations

import json
from typing import Literal, Optional


def train_cir(
    base: str,
    out_dir: str,
    real: Optional[str] = None,
    synthetic: list[str] = [],
    real_fraction: float = 1.0,
    synthetic_ratio: Optional[float] = None,
    val: Optional[str] = None,
    stage: Literal["combiner", "clip"] = "combiner",
    epochs: int = 10,
    batch_size: int = 128,
    lr: float = 2e-5,
    seed: int = 0,
    projection_dim: Optional[int] = None,
    hidden_dim: Optional[int] = None,
    pad_mode: Literal["targetpad", "squarepad", "none"] = "targetpad",
    mixed_precision: Literal["no", "fp16", "bf16"] = "no",
    cpu: bool = False,
    save_every: int = 0,
    cache_dir: Optional[str] = None,
    model: Literal["combiner", "blip"] = "combiner",
    embed_dim: int = 256,
    lr_schedule: Literal["constant", "cosine"] = "constant",
    warmup_steps: int = 0,
    resume: bool = False,
) -> int:
    """Train a CIR model (CLIP4Cir Combiner, stage-1 CLIP fine-tuning, or BLIP) on real and synthetic triplets.

    Dataset specs: ``triplets:<root>[:<split>]`` (a TripletDataset; the mini world's included),
    ``cirr:<root>:<split>``, ``fashioniq:<root>:<category>:<split>``; a bare path is a TripletDataset.

    Args:
        base: the model to start from. --model combiner: a CLIP hub id or folder, or a stage-1 checkpoint
            folder (<run>/model). --model blip: a BLIP hub id or folder (BlipForImageTextRetrieval or
            BlipModel, with its processor), or a blip checkpoint folder.
        out_dir: run folder; the model goes to <out_dir>/model.
        real: real training dataset spec (optional when synthetic data is given).
        synthetic: synthetic dataset specs, pooled.
        real_fraction: seeded, nested fraction of the real triplets to use (0.1, 0.3, 0.5, 1.0).
        synthetic_ratio: synthetic triplets per real one; unset = all synthetic triplets.
        val: dataset spec evaluated after training; metrics go to <out_dir>/metrics.json.
        stage: --model combiner: "combiner" (frozen cached CLIP features) or "clip" (fine-tune CLIP,
            element-wise sum).
        epochs: passes over the training triplets.
        batch_size: triplets per step (in-batch negatives).
        lr: AdamW learning rate.
        seed: seed of the real subset, synthetic draw, shuffling and init.
        projection_dim: Combiner projection width (default 4x CLIP's feature size).
        hidden_dim: Combiner hidden width (default 8x CLIP's feature size).
        pad_mode: image padding before CLIP's processor.
        mixed_precision: accelerate mixed precision.
        cpu: force CPU.
        save_every: also write a resumable checkpoint (<out_dir>/checkpoints/epoch-N) every N epochs
            (0: final model only, so nothing to resume from).
        cache_dir: frozen-feature cache (default <out_dir>/feature_cache).
        model: "combiner" (CLIP + Combiner, or CLIP + sum for stage clip) or "blip" (BlipCIR: BLIP's
            image-grounded text encoder composes the query, fine-tuned end to end).
        embed_dim: --model blip: joint retrieval space size.
        lr_schedule: per-step learning-rate schedule, "constant" or "cosine".
        warmup_steps: linear learning-rate warm-up steps.
        resume: continue after the newest checkpoint in <out_dir>/checkpoints (same settings and data
            required; epochs may grow under a constant schedule); starts afresh when there is none.
    """
    from cirsynth.cir import TrainConfig, build_training_set, evaluate_model, load_split, train_cir as run
    from cirsynth.config import atomic_write_json, save_resolved_config

    params = dict(locals())
    if real is None and not synthetic:
        raise SystemExit("train-cir: give --real and/or --synthetic training data")
    parts = build_training_set(load_split(real) if real else None, real_fraction,
                               [load_split(s) for s in synthetic], synthetic_ratio, seed)
    config = TrainConfig(clip=base, out_dir=out_dir, stage=stage, epochs=epochs, batch_size=batch_size, lr=lr,
                         seed=seed, projection_dim=projection_dim, hidden_dim=hidden_dim, pad_mode=pad_mode,
                         mixed_precision=mixed_precision, cpu=cpu, save_every=save_every, cache_dir=cache_dir,
                         model=model, embed_dim=embed_dim, lr_schedule=lr_schedule, warmup_steps=warmup_steps,
                         resume=resume)
    save_resolved_config(out_dir, "train-cir", params)
    result = run(parts, config)
    summary = {"model": str(result.model_dir), "epoch_losses": result.epoch_losses, "n_real": result.n_real,
               "n_synthetic": result.n_synthetic, "resumed_from": result.resumed_from}
    if val is not None:
        summary["metrics"] = evaluate_model(result.model_dir, load_split(val), cache_dir=config.cache_dir,
                                            out_dir=out_dir, device="cpu" if cpu else None)
        atomic_write_json(f"{out_dir}/metrics.json", summary["metrics"], indent=2)
    print(json.dumps(summary, indent=2))
    return 0
