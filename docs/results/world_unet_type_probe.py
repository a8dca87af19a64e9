"""Seed-0 tuning only, quick: the recipe's candidates for the edits of some types only, made by several world diffusion
folders with the same settings draws, judged per type (no filter). The draws are by each edit's index among the chosen
types' edits, so the candidates are not the cache blocks' (world_unet_blocks.py reads those); the folders are compared
with each other on identical settings.

Usage (repo root): PYTHONPATH=src .venv/bin/python docs/results/world_unet_type_probe.py FOLDER[,FOLDER...] TYPES N
("bundled" names the bundled world diffusion model; TYPES comma-separated; N: seed 0's first N evaluation edits)."""
import json
import sys

import numpy as np

from cirsynth.world.evaluate import broken_labels, generate_candidates, judge_edit, world_setup
from cirsynth.world.recipe import bundled_model, world_eval_config
from cirsynth.world.scene import scene_labels

folders, types, n = sys.argv[1].split(","), sys.argv[2].split(","), int(sys.argv[3])
out = {"seed": 0, "n": n, "types": types, "folders": {}}
for folder in folders:
    cfg = world_eval_config(n=n, seed=0, editor=bundled_model("editor") if folder == "bundled" else folder)
    edits, editor, clf, refs = world_setup(cfg, types)
    gen = generate_candidates(cfg, editor, edits, refs, cfg.methods[0])
    preds = clf.predict([c.image for c in gen["candidates"]])
    per = {}
    for c, i, p in zip(gen["candidates"], gen["owner"], preds):
        e = edits[i]
        t, pr = judge_edit(p, e.reference, e.target)
        d = per.setdefault(e.edit_type, {"edits": set(), "edits_with_right": set(), "candidates": 0, "right": 0,
                                         "target": 0, "preserved": 0, "brightness_by_target_light": {}, "broken": {}})
        d["edits"].add(i); d["candidates"] += 1; d["right"] += t and pr; d["target"] += t; d["preserved"] += pr
        if t and pr:
            d["edits_with_right"].add(i)
        d["brightness_by_target_light"].setdefault(scene_labels(e.target)["light"], []).append(
            float(np.asarray(c.image, float).mean()))
        for b in broken_labels(p, e.reference, e.target):
            d["broken"][b] = d["broken"].get(b, 0) + 1
    for d in per.values():
        d["edits"], d["edits_with_right"] = len(d["edits"]), len(d["edits_with_right"])
        d["brightness_by_target_light"] = {k: round(float(np.mean(v)), 1) for k, v in d["brightness_by_target_light"].items()}
    out["folders"][folder] = per
    print(folder, json.dumps(per), flush=True)
print(json.dumps(out))
