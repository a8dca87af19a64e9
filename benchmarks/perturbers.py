"""Edit quality per perturber on real-style captions, and validity / edits per second on the held-out captions;
prints JSON.

Quality (``real``): the captions of ``captions/data/real_captions.tsv`` (237, indoor/outdoor labelled) in the two
parts of ``cirsynth.captions.rubric.real_caption_split``: ``tune`` (two of every three lines: the lexical
perturber's rules and thresholds were tuned looking at these) and ``heldout`` (every third line: the figures to
quote). Each caption is asked for 2 edits (seed 0); each accepted edit is judged by
``cirsynth.captions.rubric.judge`` (hand-written lists, no WordNet): contradictory (stacked time/light/weather
phrase, day+night, weather indoors) and implausible (noun outside the hand lexicon or crossing categories, split
compound, colour/material/pattern the thing cannot have, an attribute named as the object). Reported: coverage
(captions with an edit), valid / contradictory / implausible rates over accepted edits, edit types used. The
lexical perturber runs with and without the MiniLM context scorer.

An LLM perturber (``--model`` and/or ``--adapter``: a base causal LM and a LoRA adapter from
``cirsynth train-perturber``) runs on ``llm_heldout``: the held-out captions that are not source captions of the
built-in training edits (``captions/data/edits_train.jsonl``), with the lexical perturber on the same captions
beside it. Its single-sample rates (``max_attempts=1``) and its rates with resampling (``max_attempts=3``) are both
given. The quality comparison means something only with real weights, e.g. SmolLM2-1.7B-Instruct:

    cirsynth train-perturber src/cirsynth/captions/data/edits_train.jsonl runs/lora \
        --model HuggingFaceTB/SmolLM2-1.7B-Instruct --max_steps 300
    python benchmarks/perturbers.py --real_only --adapter runs/lora

Each held-out caption of ``captions_heldout.txt`` is asked for one edit of one type: the type the lexical
perturber picks for it (seed 0), so the LLM perturbers are asked for the same types. The LLM runs sample once per
request (max_attempts=1), so validity is the single-sample rate. Usage:

    python benchmarks/perturbers.py [--model M] [--adapter DIR] [--threads N] [--skip_zero_shot] [--real_only]
"""

from __future__ import annotations

import argparse
import collections
import json
import time
from importlib import resources


def _run(perturber, by_type: dict[str, list[str]]) -> dict:
    t0 = time.perf_counter()
    results = [r for t, caps in by_type.items() for r in perturber.perturb(caps, edit_types=[t], n=1, seed=0)]
    seconds = time.perf_counter() - t0
    valid = sum(1 for r in results if not r.rejected)
    reasons = collections.Counter(r.reason.split("(last: ")[-1].split(":")[0].rstrip(")") for r in results if r.rejected)
    examples = [(e.source_caption, e.target_caption, e.modification_text) for r in results for e in r.edits][:5]
    return {"requests": len(results), "valid": valid, "validity_rate": round(valid / len(results), 3),
            "seconds": round(seconds, 2), "edits_per_second": round(valid / seconds, 3),
            "requests_per_second": round(len(results) / seconds, 3),
            "rejection_reasons": dict(reasons.most_common(6)), "examples": examples}


def _rubric_run(perturber, caps, n: int = 2) -> dict:
    from cirsynth.captions.rubric import rubric_report

    t0 = time.perf_counter()
    res = perturber.perturb([c.caption for c in caps], n=n, seed=0)
    return {**rubric_report(res, [c.scene for c in caps]), "seconds": round(time.perf_counter() - t0, 1)}


def _real(perturbers: dict, args) -> dict:
    from cirsynth.captions.rubric import real_caption_split

    split = real_caption_split()
    out: dict = {"split": {"tune": f"{len(split['tune'])} captions (2 of every 3 lines): rules tuned on these",
                           "heldout": f"{len(split['heldout'])} captions (every 3rd line from the first): reported"}}
    for part, caps in split.items():
        out[part] = {name: _rubric_run(p, caps) for name, p in perturbers.items()}
    if args.model or args.adapter:
        from cirsynth.captions.llm import LLMConfig, LLMPerturber

        text = resources.files("cirsynth.captions").joinpath("data/edits_train.jsonl").read_text("utf-8")
        trained = {json.loads(line)["source_caption"].lower() for line in text.splitlines() if line.strip()}
        caps = [c for c in split["heldout"] if c.caption.lower() not in trained]
        llm = {"captions": f"{len(caps)} held-out captions that are no source of the built-in training edits",
               "model": args.model, "adapter": args.adapter, "lexical": _rubric_run(perturbers["lexical"], caps)}
        from cirsynth.models.text import load_causal_lm

        lm = load_causal_lm(args.model, adapter=args.adapter, device=args.device)
        for attempts in (1, 3):
            p = LLMPerturber(lm, LLMConfig(max_attempts=attempts, batch_size=16))
            llm[f"llm_attempts{attempts}"] = _rubric_run(p, caps)
        out["llm_heldout"] = llm
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", help="base causal LM for the LLM perturber: hub id, folder, .gguf or 'smollm2' "
                                    "(default with --adapter: the base the adapter records)")
    ap.add_argument("--adapter", help="LoRA adapter folder from `cirsynth train-perturber`")
    ap.add_argument("--device", default="cpu", help="torch device of the LLM perturber")
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--skip_zero_shot", action="store_true")
    ap.add_argument("--real_only", action="store_true", help="only the rubric run on the real-style captions")
    args = ap.parse_args()
    import torch

    from cirsynth.captions import LexicalPerturber
    from cirsynth.captions.llm import LLMConfig, LLMPerturber

    if args.threads:
        torch.set_num_threads(args.threads)
    text = resources.files("cirsynth.captions").joinpath("data/captions_heldout.txt").read_text("utf-8")
    captions = [c for c in text.splitlines() if c.strip()]
    lex = LexicalPerturber()
    out = {"captions": len(captions), "threads": torch.get_num_threads()}
    out["real"] = _real({"lexical": lex, "lexical_no_context": LexicalPerturber(context=False)}, args)
    if args.real_only:
        print(json.dumps(out, indent=1))
        return
    # the lexical run also fixes the edit type each caption is asked for
    t0 = time.perf_counter()
    lex_results = lex.perturb(captions, n=1, seed=0)
    seconds = time.perf_counter() - t0
    by_type: dict[str, list[str]] = collections.defaultdict(list)
    for r in lex_results:
        by_type[r.edits[0].edit_type if r.edits else "color"].append(r.caption)
    out["types"] = {t: len(c) for t, c in by_type.items()}
    out["lexical"] = _run(lex, by_type)
    out["lexical"]["note"] = f"free choice of type: {seconds:.3f}s for {len(captions)} captions"
    cfg = LLMConfig(max_attempts=1, batch_size=16)
    if not args.skip_zero_shot:
        out["smollm2_zero_shot"] = _run(LLMPerturber.from_pretrained("smollm2", config=cfg, device="cpu"), by_type)
    if args.adapter:
        out["smollm2_lora"] = _run(LLMPerturber.from_pretrained(args.model, adapter=args.adapter, config=cfg,
                                                                device=args.device), by_type)
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
