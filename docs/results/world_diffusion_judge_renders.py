"""Seed-0 tuning only: the diffusion judge on renders, beside its reading of generated candidates. For the first N
seed-0 evaluation edits, the filter's diffusion scores (``--diffusion_judge`` with the bundled world diffusion model,
the recipe's 64 hard negatives, default timesteps) of three renders: the ground-truth target (the edit done right),
the target with one more attribute changed (pattern, or colour for pattern edits: the edit done, something else
broken, as most wrong candidates are), and the reference itself (the edit not done). Prints, per score, how often it
is > 0 and the ROC AUC of right renders against the two wrong kinds.

Usage (repo root): PYTHONPATH=src .venv/bin/python docs/results/world_diffusion_judge_renders.py N OUT.json
"""
import json
import os
import sys

import numpy as np
import torch
from sklearn.metrics import roc_auc_score

from cirsynth.synth.candidates import hard_negative_captions
from cirsynth.synth.filters import EditFilter, FilterConfig
from cirsynth.world.assets import bundled_models
from cirsynth.world.evaluate import _world_perturber, evaluation_edits
from cirsynth.world.language import apply_edit
from cirsynth.world.recipe import world_eval_config
from cirsynth.world.render import render

n, out_path = int(sys.argv[1]), sys.argv[2]
torch.set_num_threads(2)
cfg = world_eval_config(n=n, seed=0)
edits = evaluation_edits(cfg)
ces = [e.caption_edit for e in edits]
negs = hard_negative_captions(_world_perturber(), [c.target_caption for c in ces], [c.source_caption for c in ces],
                              cfg.filter.hard_negatives, cfg.seed)
filt = EditFilter(FilterConfig(clip=None, diffusion_judge=str(bundled_models()["diffusion"])))
refs = [render(e.reference) for e in edits]
kinds = {
    "right": [render(e.target) for e in edits],
    "something_else_changed": [render(apply_edit(e.target, "color" if e.edit_type == "pattern" else "pattern", k).target)
                               for k, e in enumerate(edits)],
    "not_edited": refs,
}
scored = {}
# one call: each reference is read once for all three kinds (the filter reads a reference once per caption list)
vs = filt.score(refs * 3, [im for images in kinds.values() for im in images], [c.source_caption for c in ces] * 3,
                [c.target_caption for c in ces] * 3, [c.source_words for c in ces] * 3,
                [c.target_words for c in ces] * 3, [None] * (3 * n), negatives=negs * 3)
for k, kind in enumerate(kinds):
    scored[kind] = [v.scores for v in vs[k * n:(k + 1) * n]]
out = {"seed": 0, "n": n, "scores": {}}
for name in ("diffusion_margin", "diffusion_edit", "diffusion_kept"):
    right = [s[name] for s in scored["right"]]
    row = {"share_above_0": {k: round(float(np.mean([s[name] > 0 for s in v])), 3) for k, v in scored.items()}}
    for wrong in ("something_else_changed", "not_edited"):
        w = [s[name] for s in scored[wrong]]
        row[f"auc_right_vs_{wrong}"] = round(roc_auc_score([1] * n + [0] * n, right + w), 3)
    out["scores"][name] = row
    print(name, row, flush=True)
out["per_edit"] = {k: v for k, v in scored.items()}
with open(out_path + ".tmp", "w") as f:
    json.dump(out, f, indent=1)
os.replace(out_path + ".tmp", out_path)
