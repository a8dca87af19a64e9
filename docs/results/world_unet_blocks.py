"""Seed-0 tuning only: the same cached candidate blocks made by different world UNets, judged side by side per edit
type (no filter: what the generator makes). Each CACHE is a folder that `world evaluate --seed 0 --n N --block B
--cache CACHE` (or world_adopt_unet.sh) filled with one UNet installed; the blocks of edits 0..N-1 are read.

Per UNet and edit type: edits with some right candidate, and over the candidates: right, named attribute right
(target), rest preserved; and the mean brightness of the candidates of lighting edits by the light they ask for.

Usage (repo root): PYTHONPATH=src .venv/bin/python docs/results/world_unet_blocks.py N NAME=CACHE [NAME=CACHE ...]
"""
import glob
import json
import sys
from collections import defaultdict

import numpy as np

from cirsynth.world.classifier import AttributeClassifier
from cirsynth.world.evaluate import broken_labels, evaluation_edits, judge_edit
from cirsynth.world.recipe import world_eval_config
from cirsynth.world.scene import scene_labels

n = int(sys.argv[1])
cfg = world_eval_config(n=n, seed=0)
edits = evaluation_edits(cfg)
clf = AttributeClassifier.from_pretrained(cfg.classifier)
out = {"seed": 0, "n": n, "unets": {}}
for spec in sys.argv[2:]:
    name, cache = spec.split("=", 1)
    images, owner = [], []
    for f in sorted(glob.glob(f"{cache}/candidates-*.npz")):
        z = np.load(f)
        key = json.loads(str(z["key"]))
        if key["seed"] != 0 or key["first"] >= n:
            continue
        images.extend(z["images"])
        owner.extend(key["first"] + int(o) for o in z["owner"])
    have = sorted(set(owner))
    if have != list(range(n)):
        sys.exit(f"{cache}: blocks cover {len(have)} of edits 0..{n - 1}")
    from PIL import Image

    preds = clf.predict([Image.fromarray(a) for a in images])
    by_type = defaultdict(lambda: {"edits": set(), "edits_with_right": set(), "candidates": 0, "right": 0,
                                   "target": 0, "preserved": 0})
    light = defaultdict(list)
    broken = defaultdict(int)
    for a, i, p in zip(images, owner, preds):
        e = edits[i]
        t, pr = judge_edit(p, e.reference, e.target)
        for k in (e.edit_type, "all"):
            d = by_type[k]
            d["edits"].add(i); d["candidates"] += 1; d["right"] += t and pr; d["target"] += t; d["preserved"] += pr
            if t and pr:
                d["edits_with_right"].add(i)
        for b in broken_labels(p, e.reference, e.target):
            broken[b] += 1
        if e.edit_type == "lighting":
            light[scene_labels(e.target)["light"]].append(float(a.mean()))
    table = {k: {"edits": len(d["edits"]), "edits_with_right": len(d["edits_with_right"]),
                 **{f: d[f] for f in ("candidates", "right", "target", "preserved")}} for k, d in by_type.items()}
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
