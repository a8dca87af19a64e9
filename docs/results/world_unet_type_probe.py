"""Seed-0 tuning only, quick: the recipe's candidates for the edits of some types only, made by several world diffusion
folders with the same settings draws, judged per type (no filter). The draws are by each edit's index among the chosen
types' edits, so the candidates are not the cache blocks' (world_unet_blocks.py reads those); the folders are compared
with each other on identical settings.

Usage (repo root): PYTHONPATH=src:docs/results .venv/bin/python docs/results/world_unet_type_probe.py FOLDER[,FOLDER...] TYPES N
("bundled" names the bundled world diffusion model; TYPES comma-separated; N: seed 0's first N evaluation edits)."""
import json
import sys

import numpy as np

from cirsynth.world.evaluate import generate_candidates, world_setup
from cirsynth.world.recipe import bundled_model, world_eval_config
from cirsynth.world.scene import scene_labels
from tune_setup import judged_row, tally

folders, types, n = sys.argv[1].split(","), sys.argv[2].split(","), int(sys.argv[3])
out = {"seed": 0, "n": n, "types": types, "folders": {}}
for folder in folders:
    cfg = world_eval_config(n=n, seed=0, editor=bundled_model("editor") if folder == "bundled" else folder)
    edits, editor, clf, refs = world_setup(cfg, types)
    gen = generate_candidates(cfg, editor, edits, refs, cfg.methods[0])
    preds = clf.predict([c.image for c in gen["candidates"]])
    rows = [judged_row(p, edits[i], edit=i, type=edits[i].edit_type) for i, p in zip(gen["owner"], preds)]
    per = tally(rows, lambda r: r["type"])
    for c, i, r in zip(gen["candidates"], gen["owner"], rows):
        d = per[r["type"]]
        d.setdefault("brightness_by_target_light", {}).setdefault(scene_labels(edits[i].target)["light"], []).append(
            float(np.asarray(c.image, float).mean()))
        broken = d.setdefault("broken", {})
        for b in r["broken"]:
            broken[b] = broken.get(b, 0) + 1
    for d in per.values():
        d["brightness_by_target_light"] = {k: round(float(np.mean(v)), 1) for k, v in d["brightness_by_target_light"].items()}
    out["folders"][folder] = per
    print(folder, json.dumps(per), flush=True)
print(json.dumps(out))
