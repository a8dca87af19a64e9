"""The world's LLM perturber: SmolLM2-135M + a LoRA adapter trained (with ``train-perturber``'s trainer) on
world caption edits, and its ground-truth evaluation.

Training data are lexical edits of canonical world captions that map to exactly one attribute change of
their scene (``ground_truth``), so the adapter learns only edits the world can render. Evaluation asks the
perturber for one edit per held-out caption and counts: valid (passes cirsynth's edit validation) and
grounded (valid AND equal to a one-attribute change of the true scene).
"""

from __future__ import annotations

import os
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

from cirsynth.world.ground_truth import ground_truth
from cirsynth.world.language import caption, lexical_vocabulary
from cirsynth.world.scene import Scene, random_scene

# Edit types a word swap can express in world captions (count edits add or remove whole objects).
PERTURBER_EDIT_TYPES: tuple[str, ...] = ("subject", "object", "color", "material", "size", "pattern", "background", "lighting")


@dataclass
class WorldPerturberConfig:
    """Data, LoRA recipe and evaluation of the world perturber."""

    num_scenes: int = 400  # training scenes (canonical caption each)
    edits_per_caption: int = 2  # lexical edits asked per training caption
    num_eval: int = 30  # held-out captions, one edit requested each
    model: str = "smollm2"  # base causal LM
    r: int = 8  # LoRA rank (LANCE)
    alpha: int = 16  # LoRA alpha (LANCE)
    dropout: float = 0.05  # LoRA dropout (LANCE)
    lr: float = 1e-3  # AdamW lr (higher than LANCE's 3e-4: a short CPU run)
    batch_size: int = 8  # examples per step
    max_steps: int = 80  # optimiser steps
    max_new_tokens: int = 96  # world captions run to ~60 tokens
    baseline: bool = True  # also evaluate the base model without the adapter
    seed: int = 0  # scenes, edits, LoRA init, sampling
    edit_types: list[str] = field(default_factory=lambda: list(PERTURBER_EDIT_TYPES))


def scenes_and_captions(n: int, seed: int) -> tuple[list[Scene], list[str]]:
    """``n`` random scenes and their canonical captions (paraphrase 0, what the world captioner writes)."""
    rng = np.random.default_rng(seed)
    scenes = [random_scene(rng) for _ in range(n)]
    return scenes, [caption(s, 0) for s in scenes]


def grounded_lexical_edits(scenes: list[Scene], captions: list[str], n: int, seed: int,
                           edit_types: list[str]) -> tuple[list, Counter]:
    """Lexical world edits that map to a one-attribute scene change; also the count of dropped ones by reason."""
    from cirsynth.captions.lexical import LexicalConfig, LexicalPerturber

    perturber = LexicalPerturber(LexicalConfig(vocab=lexical_vocabulary()))
    kept, dropped = [], Counter()
    for scene, res in zip(scenes, perturber.perturb(captions, edit_types=edit_types, n=n, seed=seed)):
        for e in res.edits:
            if ground_truth(scene, 0, e.target_caption) is None:
                dropped["no one-attribute scene change matches the target caption"] += 1
            else:
                kept.append(e)
        if res.reason:
            dropped[res.reason] += 1
    return kept, dropped


def evaluate_perturber(perturber: Any, scenes: list[Scene], captions: list[str], edit_types: list[str],
                       seed: int) -> dict[str, Any]:
    """One edit per caption; valid and grounded rates overall and per requested edit type, and throughput."""
    t0 = time.perf_counter()
    results = perturber.perturb(captions, edit_types=edit_types, n=1, seed=seed)
    seconds = time.perf_counter() - t0
    valid, grounded, per_type, reasons = 0, 0, {}, Counter()
    for scene, res in zip(scenes, results):
        for e in res.edits:
            ok = ground_truth(scene, 0, e.target_caption) is not None
            valid += 1
            grounded += ok
            t = per_type.setdefault(e.edit_type, {"valid": 0, "grounded": 0})
            t["valid"] += 1
            t["grounded"] += ok
        if res.reason:
            reasons[res.reason[:80]] += 1
    n = len(captions)
    return {
        "requests": n,
        "valid": valid,
        "grounded": grounded,
        "valid_rate": valid / max(1, n),
        "grounded_rate": grounded / max(1, n),
        "per_edit_type": per_type,
        "top_rejection_reasons": reasons.most_common(5),
        "seconds": seconds,
        "requests_per_second": n / max(seconds, 1e-9),
    }


def train_world_perturber(config: WorldPerturberConfig, out: str | os.PathLike,
                          log: Callable[[str], None] = print) -> dict[str, Any]:
    """Write grounded lexical world edits, train a LoRA adapter on them, evaluate on held-out captions."""
    from cirsynth.captions.llm import LLMConfig, LLMPerturber
    from cirsynth.captions.lora import LoRATrainConfig, train_lora
    from cirsynth.config import atomic_write_text
    import json

    t0 = time.time()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    scenes, captions = scenes_and_captions(config.num_scenes, config.seed * 2 + 1)
    edits, dropped = grounded_lexical_edits(scenes, captions, config.edits_per_caption, config.seed, config.edit_types)
    data_file = out / "world_edits.jsonl"  # the train-perturber input, kept for inspection and reruns
    atomic_write_text(data_file, "".join(json.dumps(e.to_dict(), default=str) + "\n" for e in edits))
    log(f"{len(edits)} grounded lexical edits of {len(captions)} captions; dropped {dict(dropped)}")
    lora = LoRATrainConfig(model=config.model, r=config.r, alpha=config.alpha, dropout=config.dropout, lr=config.lr,
                           batch_size=config.batch_size, max_steps=config.max_steps, epochs=100.0, seed=config.seed)
    summary = train_lora(edits, out, lora)
    log(f"LoRA: {summary}")

    eval_scenes, eval_captions = scenes_and_captions(config.num_eval, config.seed * 2 + 2)
    llm_cfg = LLMConfig(max_new_tokens=config.max_new_tokens, vocab=lexical_vocabulary())
    report: dict[str, Any] = {"train": {"edits": len(edits), "dropped": dict(dropped), **summary}}
    tuned = LLMPerturber.from_pretrained(config.model, adapter=str(out), config=llm_cfg)
    report["eval_lora"] = evaluate_perturber(tuned, eval_scenes, eval_captions, config.edit_types, config.seed)
    log(f"held-out with LoRA: {report['eval_lora']['valid_rate']:.0%} valid, {report['eval_lora']['grounded_rate']:.0%} grounded")
    if config.baseline:
        del tuned
        base = LLMPerturber.from_pretrained(config.model, config=llm_cfg)
        report["eval_base"] = evaluate_perturber(base, eval_scenes, eval_captions, config.edit_types, config.seed)
        log(f"held-out zero-shot: {report['eval_base']['valid_rate']:.0%} valid, "
            f"{report['eval_base']['grounded_rate']:.0%} grounded")
    report.update(seconds_total=time.time() - t0, config=asdict(config))
    return report
