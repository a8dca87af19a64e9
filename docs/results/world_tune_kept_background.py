"""Seed-0 only (tuning data): background edits with the kept cells' old background replaced (EditorConfig.kept_background).

Usage (from the repo root):
  PYTHONPATH=src:docs/results .venv/bin/python docs/results/world_tune_kept_background.py N OUT.json [DISTANCES]
The background edits among seed 0's first N evaluation edits, each made exactly as `world evaluate` makes it (the
recipe's settings and its 8 candidates drawn from the edit's own index, so distance 0 is the recipe's images). The
distance acts only on the final paste, so every candidate is generated once and pasted at each distance (default
0,0.02; the first distance is the editor's own output, by which each candidate finds its other pastes).
Prints right / target / preserved counts per distance and writes every candidate's verdicts to OUT.json."""
import json
import os
import sys

import numpy as np
import torch

import cirsynth.editing.editor as editor_module
from cirsynth.editing.images import tensor_to_images
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

pastes = []  # per editor call: the pasted pixels at every distance
paste_once = editor_module.paste_outside


def paste_at_every_distance(edited, outside, mask, dilate, kept=None, kept_background=0.0):
    each = [paste_once(edited, outside, mask, dilate, kept, d) for d in distances]
    pastes.append(each)
    return each[0]


editor_module.paste_outside = paste_at_every_distance
rows = []
for i, e, ref in zip(index, edits, refs):  # one at a time: each edit's draws come from its own index
    pastes.clear()
    gen = generate_candidates(cfg, editor, [e], [ref], cfg.methods[0], first=i)
    # edit calls group candidates by their settings, so a paste is found by its first-distance image, which is the
    # candidate's own image pixel for pixel
    by_image = {}
    for each in pastes:
        per_distance = [tensor_to_images(p) for p in each]
        for k, first in enumerate(per_distance[0]):
            by_image[np.asarray(first).tobytes()] = [images[k] for images in per_distance]
    found = [by_image[np.asarray(c.image).tobytes()] for c in gen["candidates"]]  # KeyError: a paste went missing
    for k, d in enumerate(distances):
        preds = clf.predict([f[k] for f in found])
        for j, (c, p) in enumerate(zip(gen["candidates"], preds)):
            rows.append({"edit": i, **judged_row(p, e, candidate=j, distance=d, **c.setting.as_dict())})
    print("edit", i, "done", flush=True)
    with open(out + ".tmp", "w") as f:
        json.dump(rows, f)
os.replace(out + ".tmp", out)
print_tally(rows, lambda r: r["distance"])
