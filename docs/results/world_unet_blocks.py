"""Seed-0 tuning only: the same cached candidate blocks made by different world UNets, judged side by side per edit
type (no filter: what the generator makes). Each CACHE is a folder that `world evaluate --seed 0 --n N --block B
--cache CACHE` (or world_adopt_unet.sh) filled with one UNet installed; the blocks of edits 0..N-1 are read.

Per UNet and edit type: edits with some right candidate, and over the candidates: right, named attribute right
(target), rest preserved; and the mean brightness of the candidates of lighting edits by the light they ask for.

Usage (repo root): PYTHONPATH=src:docs/results .venv/bin/python docs/results/world_unet_blocks.py N NAME=CACHE [NAME=CACHE ...]
"""
import json
import sys
from collections import defaultdict

import numpy as np
from PIL import Image

from cirsynth.world.classifier import AttributeClassifier
from cirsynth.world.evaluate import evaluation_edits
from cirsynth.world.recipe import world_eval_config
from cirsynth.world.scene import scene_labels
from tune_setup import cached_blocks, judged_row, tally

n = int(sys.argv[1])
cfg = world_eval_config(n=n, seed=0)
edits = evaluation_edits(cfg)
clf = AttributeClassifier.from_pretrained(cfg.classifier)
out = {"seed": 0, "n": n, "unets": {}}
for spec in sys.argv[2:]:
    name, cache = spec.split("=", 1)
    blocks = cached_blocks(cache, 0, n)
    images, owner = blocks["images"], blocks["owner"]
    preds = clf.predict([Image.fromarray(a) for a in images])
    rows = [judged_row(p, edits[i], edit=i, type=edits[i].edit_type) for i, p in zip(owner, preds)]
    table = tally(rows, lambda r: [r["type"], "all"])
    light = defaultdict(list)
    broken = defaultdict(int)
    for a, i, r in zip(images, owner, rows):
        for b in r["broken"]:
            broken[b] += 1
        if edits[i].edit_type == "lighting":
            light[scene_labels(edits[i].target)["light"]].append(float(a.mean()))
    out["unets"][name] = {"cache": cache, "by_type": table, "broken": dict(sorted(broken.items())),
                          "lighting_candidate_brightness": {k: round(float(np.mean(v)), 1) for k, v in light.items()}}
    print(name, json.dumps(table["all"]), json.dumps(out["unets"][name]["lighting_candidate_brightness"]), flush=True)
types = [t for t in next(iter(out["unets"].values()))["by_type"] if t != "all"]
print("edits with a right candidate / right candidates, per type:")
for t in sorted(types) + ["all"]:
    print(f"  {t:11s}", "  ".join(f"{name}: {u['by_type'][t]['edits_with_right']:3d}/{u['by_type'][t]['edits']:3d} "
                                   f"{u['by_type'][t]['right']:4d}/{u['by_type'][t]['candidates']:4d}"
                                   for name, u in out["unets"].items()))
print(json.dumps(out))
