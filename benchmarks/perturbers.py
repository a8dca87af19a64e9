"""Edit quality per perturber on real-style captions, and validity / edits per second on the held-out captions;
prints JSON.

Quality (``real``): every caption of ``captions/data/real_captions.tsv`` (237 captions, indoor/outdoor labelled)
is asked for 2 edits (seed 0); each accepted edit is judged by ``cirsynth.captions.rubric.judge`` (hand-written
lists, no WordNet): contradictory (stacked time/light/weather phrase, day+night, weather indoors) and implausible
(noun outside the hand lexicon or crossing categories, split compound, colour/material/pattern the thing cannot
have, an attribute named as the object). Reported: coverage (captions with an edit), valid / contradictory /
implausible rates over accepted edits, edit types used. The lexical perturber runs with and without the MiniLM
context scorer; an LLM adapter (``--adapter``) runs the same requests.

Each held-out caption is asked for one edit of one type: the type the lexical perturber picks for it (seed 0),
so the LLM perturbers are asked for the same types. The LLM runs sample once per request (max_attempts=1), so
validity is the single-sample rate. Usage:

    python benchmarks/perturbers.py [--adapter DIR] [--threads N] [--skip_zero_shot] [--real_only]
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


def _real(perturbers: dict, args) -> dict:
    from cirsynth.captions.llm import LLMConfig, LLMPerturber
    from cirsynth.captions.rubric import real_captions, rubric_report

    caps = real_captions()
    if args.adapter:
        perturbers["smollm2_lora"] = LLMPerturber.from_pretrained(None, adapter=args.adapter, device="cpu",
                                                                  config=LLMConfig(max_attempts=1, batch_size=16))
    out = {}
    for name, p in perturbers.items():
        t0 = time.perf_counter()
        res = p.perturb([c.caption for c in caps], n=2, seed=0)
        out[name] = {**rubric_report(res, [c.scene for c in caps]), "seconds": round(time.perf_counter() - t0, 1)}
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--adapter", help="LoRA adapter folder from `cirsynth train-perturber`")
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
        out["smollm2_lora"] = _run(LLMPerturber.from_pretrained(None, adapter=args.adapter, config=cfg,
                                                                device="cpu"), by_type)
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
