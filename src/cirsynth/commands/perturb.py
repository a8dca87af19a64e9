"""``cirsynth perturb``: caption edits as JSONL, to inspect and curate before paying for image synthesis."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Literal, Optional


def perturb(
    input: Path,
    out: Path,
    perturber: Literal["lexical", "llm"] = "lexical",
    model: Optional[str] = None,
    adapter: Optional[Path] = None,
    edit_types: Optional[list[str]] = None,
    edits_per_image: int = 1,
    seed: int = 0,
    vocabulary: Optional[str] = None,
    caption_column: str = "caption",
    batch_size: int = 16,
    max_attempts: int = 3,
    temperature: float = 0.7,
    device: Optional[str] = None,
) -> int:
    """Write one JSON line per caption edit; a caption short of edits gets a line with `rejected` and the reason.

    Edit lines hold source_caption, target_caption, modification_text, edit_type, source_words,
    target_words, paraphrases, provenance, caption_index (the input row) and image (when the input has one).
    Rejection lines hold caption_index, source_caption, rejected=true and reason; a caption that got some
    but fewer than --edits_per_image edits also gets one, after its edits. (--edits_per_caption and --vocab are
    the old names of --edits_per_image and --vocabulary, still accepted.)

    Args:
        input: captions: .txt (one per line), .jsonl (strings or objects with a caption field), .csv or .parquet.
        out: output JSONL (written atomically); the resolved config is saved beside it.
        perturber: lexical (word lists + WordNet, no weights) or llm (a causal LM, maybe LoRA-tuned).
        model: llm only: hub id, folder, .gguf file or "smollm2"; default: the base recorded with the adapter,
            else "smollm2".
        adapter: llm only: LoRA adapter folder from `cirsynth train-perturber`.
        edit_types: allowed edit types (default all): subject object color material size pattern count
            background weather lighting.
        edits_per_image: distinct edits wanted per caption (one caption per image, as in synthesize).
        seed: random seed (choice of edit types, words, sampling).
        vocabulary: word lists: "world" (the mini world's), a vocabulary JSON replacing the built-in one (same keys
            as Vocabulary), or unset (built-in + WordNet); for llm, the keywords its edit checks use.
        caption_column: caption field name in .jsonl / .csv / .parquet inputs.
        batch_size: llm only: prompts per generate call.
        max_attempts: llm only: samples per requested edit before rejecting it.
        temperature: llm only: sampling temperature.
        device: llm only: torch device (default CUDA when available).

    Returns:
        0.
    """
    from cirsynth.captions.captioner import read_captions
    from cirsynth.config import atomic_write_text, save_resolved_config
    from cirsynth.models.refs import check_model_ref
    from cirsynth.synth.refs import check_vocabulary, vocabulary_ref

    params = {k: (str(v) if isinstance(v, Path) else v) for k, v in locals().items()}
    if perturber == "lexical" and (model or adapter):
        raise ValueError("perturb: --model/--adapter apply to --perturber llm only")
    check_vocabulary("--vocabulary", vocabulary)
    if perturber == "llm":
        if model:
            check_model_ref("--model", model, "causal-lm")
        if adapter:
            check_model_ref("--adapter", adapter, "adapter")
    rows = read_captions(input, caption_column)
    captions = [r["caption"] for r in rows]
    voc = vocabulary_ref(vocabulary)
    if perturber == "lexical":
        from cirsynth.captions.lexical import LexicalConfig, LexicalPerturber
        from cirsynth.captions.vocab import Vocabulary

        p = LexicalPerturber(LexicalConfig(vocab=voc.vocab or Vocabulary.default()), wordnet=voc.wordnet)
    else:
        from cirsynth.captions.llm import LLMConfig, LLMPerturber

        cfg = LLMConfig(batch_size=batch_size, max_attempts=max_attempts, temperature=temperature)
        if voc.vocab is not None:
            cfg.vocab = voc.vocab
        name = model if model or adapter else "smollm2"
        p = LLMPerturber.from_pretrained(name, adapter=str(adapter) if adapter else None, config=cfg, device=device)
    results = p.perturb(captions, edit_types=edit_types, n=edits_per_image, seed=seed)
    lines, n_edits, n_rejected = [], 0, 0
    for i, (row, res) in enumerate(zip(rows, results)):
        extra = {"caption_index": i, **({"image": row["image"]} if "image" in row else {})}
        for e in res.edits:
            lines.append({**extra, **e.to_dict()})
        n_edits += len(res.edits)
        if res.reason:
            n_rejected += res.rejected
            lines.append({**extra, "source_caption": res.caption, "rejected": True, "reason": res.reason})
    atomic_write_text(out, "".join(json.dumps(l, ensure_ascii=False, default=str) + "\n" for l in lines))
    save_resolved_config(Path(out).parent, "perturb", params)
    print(json.dumps({"captions": len(rows), "edits": n_edits, "rejected_captions": n_rejected, "out": str(out)}))
    return 0
