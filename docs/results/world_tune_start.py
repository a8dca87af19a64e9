"""Seed-0 only (tuning data): start the target branch from the inversion or from fresh noise, for global edits.

Usage (from the repo root):
  PYTHONPATH=src .venv/bin/python docs/results/world_tune_start.py TYPES N OUT.json [VARIANTS]
TYPES: comma-separated edit types; N: evaluation edits of seed 0 to draw them from (edit types in turn).
Every edit is made by the recipe's editor (paste "reference") with 8 candidates drawn as the recipe draws them
(keyed by the edit's place among the chosen types, so not the very draws of `world evaluate`), under each variant:
start inversion / noise, LocalBlend pinning / mask-only, and for fresh starts also a self-replace grid of
{0, 0.2}. Prints right / target / preserved counts per (type, variant) and writes every candidate's verdicts to OUT.json."""
import dataclasses
import json
import sys

from cirsynth.synth.candidates import draw_settings, edit_candidates
from tune_setup import judged_row, print_tally, tuning_inputs

types, n, out = sys.argv[1].split(","), int(sys.argv[2]), sys.argv[3]
cfg, edits, editor, clf, refs, ces, inv = tuning_inputs(types, n, paste="reference")
VARIANTS = {  # name -> (start, local_blend, self_replace_choices or None for the recipe's)
    "inversion-mask": ("inversion", "mask", None),
    "noise-pin": ("noise", True, None),
    "noise-mask": ("noise", "mask", None),
    "noise-pin-self0": ("noise", True, (0.0, 0.2)),
}
if len(sys.argv) > 4:  # a subset of the variants, comma-separated
    VARIANTS = {k: VARIANTS[k] for k in sys.argv[4].split(",")}
rows = []
for name, (start, blend, self_choices) in VARIANTS.items():
    base = dataclasses.replace(cfg.candidates, start=start, by_edit_type={t: {"local_blend": blend} for t in types})
    if self_choices is not None:
        base = dataclasses.replace(base, self_replace_choices=self_choices)
    settings = [draw_settings(base.for_edit_type(e.edit_type), f"world-edit-{i}", 0) for i, e in enumerate(edits)]
    words, pins = base.blends(ces, True)
    cands = edit_candidates(editor, inv, [c.target_caption for c in ces], words, [c.target_words for c in ces],
                            settings, images=refs, blend_pin=pins)
    flat = [(i, k, c) for i, cs in enumerate(cands) for k, c in enumerate(cs)]
    preds = clf.predict([c.image for _, _, c in flat])
    for (i, k, c), p in zip(flat, preds):
        rows.append(judged_row(p, edits[i], edit=i, type=edits[i].edit_type, variant=name, **settings[i][k].as_dict(),
                               mask_share=None if c.mask is None else float(c.mask.mean())))
    print(name, "done", flush=True)
with open(out, "w") as f:
    json.dump(rows, f)
print_tally(rows, lambda r: (r["type"], r["variant"]))
