"""Seed-0 only: which prompt-to-prompt settings make background / lighting / size edits right (tuning data).

Usage (from the repo root): PYTHONPATH=src .venv/bin/python docs/results/world_tune_types.py TYPES N OUT.json CROSS SELF REWEIGHT
with the grids as JSON lists; prints right/target/preserved counts per (type, blend, cross, self, reweight)."""
import itertools
import json
import sys

from cirsynth.synth.candidates import CandidateSetting, blend_words_of, edit_candidates
from tune_setup import judged_row, print_tally, tuning_inputs
types = sys.argv[1].split(",")
n = int(sys.argv[2]); out = sys.argv[3]
cfg, edits, editor, clf, refs, ces, inv = tuning_inputs(types, n, paste="none")
print("inverted", flush=True)
grid = [CandidateSetting(c, s, r) for c, s, r in itertools.product(json.loads(sys.argv[4]), json.loads(sys.argv[5]), json.loads(sys.argv[6]))]
rows = []
for blend in (True, False):
    cands = edit_candidates(editor, inv, [c.target_caption for c in ces], [blend_words_of(c, blend) for c in ces],
                            [c.target_words for c in ces], [grid] * len(ces), images=refs)
    flat = [(i, k, c) for i, cs in enumerate(cands) for k, c in enumerate(cs)]
    preds = clf.predict([c.image for _, _, c in flat])
    for (i, k, c), p in zip(flat, preds):
        rows.append(judged_row(p, edits[i], edit=i, type=edits[i].edit_type, blend=blend, **grid[k].as_dict()))
    print("blend", blend, "done", flush=True)
json.dump(rows, open(out, "w"))
print_tally(rows, lambda r: (r["type"], r["blend"], r["cross_replace_steps"], r["self_replace_steps"], r["reweight"]),
            edits_with_right=False)
