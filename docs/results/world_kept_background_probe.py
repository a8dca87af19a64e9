"""Seed-0 only (tuning renders): which kept_background distance separates a kept cell's old background from its object.

Usage (from the repo root): PYTHONPATH=src .venv/bin/python docs/results/world_kept_background_probe.py
Kept cells = the objects' true masks (read by this tuning script only) pooled onto the 16x16 latent grid and grown by
2 cells (what keep_pool 5 does) on 100 seed-0 evaluation scenes; for each distance: the share of the old-background
pixels in those cells that old_background finds, the share of object pixels it takes away (fully covered pixels only;
edge pixels are left out of both), and the share of scenes whose objects lose over 10% of their pixels."""
import json, sys
import numpy as np, torch, torch.nn.functional as F
from cirsynth.editing.editor import old_background
from cirsynth.world.render import render, object_mask
from cirsynth.world.scene import random_scene, measurement_rng
rng = measurement_rng(0, "evaluate")
rows = {}
scenes = [random_scene(rng) for _ in range(100)]
imgs = torch.tensor(np.stack([np.asarray(render(s)) for s in scenes])).permute(0, 3, 1, 2).float() / 127.5 - 1
cov = torch.tensor(np.stack([object_mask(s) for s in scenes]))[:, None].float()
objs = (cov > 0).float()  # (J,1,64,64)
lat = F.max_pool2d(objs, 4) > 0  # 16x16 cells touching an object
kept = F.max_pool2d(lat.float(), 5, 1, 2).bool()
mask = ~kept
kept_px = F.interpolate(kept.float(), size=64)[:, 0].bool()
ob = cov[:, 0] > 0.99  # fully covered object pixels
old = kept_px & (cov[:, 0] == 0)  # the old background inside the kept cells
for d in (0.02, 0.04, 0.06, 0.08, 0.1, 0.15):
    bg = old_background(imgs, mask, kept, d)[:, 0].bool()
    rows[d] = {"old_background_found": round(float((bg & old).sum() / old.sum()) * 100, 1),
               "object_pixels_lost": round(float((bg & ob).sum() / ob.sum()) * 100, 1),
               "objects_losing_over_10pct": round(float((((bg & ob).sum((1, 2)) / ob.sum((1, 2)).clamp(min=1)) > 0.1).float().mean()) * 100, 1)}
print(json.dumps(rows, indent=1))
