"""Seed-0 only (tuning data): do longer attention injections keep the edited object's other attributes?

On seed-0 tuning edits most wrong candidates draw the named attribute but break another attribute of the same object
(a material edit loses the pattern, a size edit the colour). Prompt-to-prompt keeps structure by injecting the
source's self-attention maps (self_replace_steps) and word layout by injecting its cross-attention maps
(cross_replace_steps) for the first fraction of the steps; the recipe draws both from {0.2 .. 0.8}. This script runs
a grid of (cross, self) fractions up to 1.0 with the recipe's blend (mask-only) and paste, and judges every candidate.
The committed run (world_tune_replace_seed0.*) used the recipe of that day, null-text inversion; with today's
recipe (ddpm) tune_setup inverts each reference once with one fixed noise seed.

Usage (from the repo root):
  PYTHONPATH=src:docs/results .venv/bin/python docs/results/world_tune_replace.py TYPES N OUT.json CROSS SELF
TYPES: comma-separated edit types; N: evaluation edits of seed 0 to draw them from (edit types in turn); CROSS, SELF:
JSON lists. Prints right / target / preserved counts per (type, cross, self) and edits with any right candidate."""
import itertools
import json
import sys
from cirsynth.synth.candidates import CandidateSetting, edit_candidates
from tune_setup import judged_row, print_tally, tuning_inputs

types, n, out = sys.argv[1].split(","), int(sys.argv[2]), sys.argv[3]
grid = [CandidateSetting(c, s) for c, s in itertools.product(json.loads(sys.argv[4]), json.loads(sys.argv[5]))]
cfg, edits, editor, clf, refs, ces, inv = tuning_inputs(types, n, paste="reference")
print("inverted", flush=True)
words, pins = cfg.candidates.blends(ces, True)  # the recipe's blend per edit type
cands = edit_candidates(editor, inv, [c.target_caption for c in ces], words, [c.target_words for c in ces],
                        [grid] * len(ces), images=refs, blend_pin=pins)
flat = [(i, k, c) for i, cs in enumerate(cands) for k, c in enumerate(cs)]
rows = []
for (i, k, c), p in zip(flat, clf.predict([c.image for _, _, c in flat])):
    rows.append(judged_row(p, edits[i], edit=i, type=edits[i].edit_type, **grid[k].as_dict()))
with open(out, "w") as f:
    json.dump({"command": " ".join(sys.argv), "seed": 0, "rows": rows}, f)
print_tally(rows, lambda r: [(t, r["cross_replace_steps"], r["self_replace_steps"]) for t in (r["type"], "all")],
            edits_with_right=False)
for t in types:
    any_right = {r["edit"] for r in rows if r["type"] == t and r["right"]}
    print(t, "edits with any right candidate:", len(any_right), "of", len({r["edit"] for r in rows if r["type"] == t}))
