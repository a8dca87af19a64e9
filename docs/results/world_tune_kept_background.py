"""Seed-0 only (tuning data): background edits with the kept cells' old background replaced (EditorConfig.kept_background).

Usage (from the repo root):
  PYTHONPATH=src:docs/results .venv/bin/python docs/results/world_tune_kept_background.py N OUT.json [DISTANCES]
The background edits among seed 0's first N evaluation edits, each made exactly as `world evaluate` makes it (the
recipe's settings and its 8 candidates drawn from the edit's own index, so distance 0 is the recipe's images), under
each kept_background distance (default 0,0.02). Prints right / target / preserved counts per distance and writes
every candidate's verdicts to OUT.json."""
import dataclasses
import json
import sys

import torch

from cirsynth.world.evaluate import evaluation_edits, generate_candidates, world_setup
from cirsynth.world.recipe import world_eval_config
from tune_setup import judged_row, print_tally

n, out = int(sys.argv[1]), sys.argv[2]
distances = [float(d) for d in (sys.argv[3] if len(sys.argv) > 3 else "0,0.02").split(",")]
torch.set_num_threads(1)
cfg = world_eval_config(n=n, seed=0)
index = [i for i, e in enumerate(evaluation_edits(cfg)) if e.edit_type == "background"]
edits, editor, clf, refs = world_setup(cfg, ["background"])
print(len(edits), "background edits of", n, flush=True)
rows = []
for d in distances:
    ed = type(editor)(editor.pipe, dataclasses.replace(editor.config, kept_background=d), model_id=editor.model_id)
    for i, e, ref in zip(index, edits, refs):  # one at a time: each edit's draws come from its own index
        gen = generate_candidates(cfg, ed, [e], [ref], cfg.methods[0], first=i)
        preds = clf.predict([c.image for c in gen["candidates"]])
        for k, (c, p) in enumerate(zip(gen["candidates"], preds)):
            rows.append({"edit": i, **judged_row(p, e, candidate=k, distance=d, **c.setting.as_dict())})
    print(d, "done", flush=True)
    with open(out, "w") as f:
        json.dump(rows, f)
print_tally(rows, lambda r: r["distance"])
