"""Seed-0 tuning only, quick: how many of the first steps an edit leaves to the reconstruction (edit-friendly DDPM's
T_skip, ``CandidateConfig.skip_choices``). The recipe's candidates for the edits of some types, made once per skip
fraction with the same settings draws and inversion noise (paired: only the skip differs), judged per type (no
filter). Background edits start from fresh noise, which has no source to follow, so they are not probed.

Usage (repo root): PYTHONPATH=src:docs/results .venv/bin/python docs/results/world_skip_probe.py SKIPS TYPES N K OUT.json [FIRST]
(SKIPS and TYPES comma-separated; N: seed 0's first N evaluation edits, from edit FIRST on (default 0); K: candidates
per edit, at most the recipe's)."""
import dataclasses
import json
import sys

import torch

from cirsynth.world.evaluate import evaluation_edits, generate_candidates, world_setup
from cirsynth.world.recipe import world_eval_config
from tune_setup import judged_row, tally

skips, types = [float(x) for x in sys.argv[1].split(",")], sys.argv[2].split(",")
n, k, out_path = int(sys.argv[3]), int(sys.argv[4]), sys.argv[5]
first = int(sys.argv[6]) if len(sys.argv) > 6 else 0
if "background" in types:
    raise SystemExit("background edits start from fresh noise and cannot skip steps")
torch.set_num_threads(1)
out = {"seed": 0, "n": n, "first": first, "candidates_per_edit": k, "types": types, "skips": {}}
base = world_eval_config(n=n, seed=0)
edits, editor, clf, refs = world_setup(base, types)
index = [i for i, e in enumerate(evaluation_edits(base)) if e.edit_type in types]  # world_setup's edits, in order
edits, refs = [e for e, i in zip(edits, index) if i >= first], [r for r, i in zip(refs, index) if i >= first]
# types that start from fresh noise keep skip 0 (they are not probed, but the config must stay valid)
by_type = {t: {**o, "skip_choices": [0.0]} if o.get("start") == "noise" else o
           for t, o in base.candidates.by_edit_type.items()}
for skip in skips:
    cand = dataclasses.replace(base.candidates, n=k, skip_choices=(skip,), by_edit_type=by_type)
    cfg = dataclasses.replace(base, candidates=cand)
    gen = generate_candidates(cfg, editor, edits, refs, cfg.methods[0])
    preds = clf.predict([c.image for c in gen["candidates"]])
    rows = [judged_row(p, edits[i], edit=i, type=edits[i].edit_type) for i, p in zip(gen["owner"], preds)]
    per = tally(rows, lambda r: r["type"])
    per["all"] = tally(rows, lambda r: "all")["all"]
    for r in rows:
        for b in r["broken"]:
            d = per[r["type"]].setdefault("broken", {})
            d[b] = d.get(b, 0) + 1
    out["skips"][str(skip)] = {"by_type": per, "right_by_candidate": [bool(r["right"]) for r in rows]}
    print(skip, json.dumps(per["all"]), flush=True)
    with open(out_path, "w") as f:
        json.dump(out, f, indent=1)
