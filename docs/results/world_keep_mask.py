"""Seed-0 only (tuning data): how well LocalBlend's kept-word map covers the objects of a background edit.

Usage (from the repo root):
  PYTHONPATH=src .venv/bin/python docs/results/world_keep_mask.py N
For the background edits among seed 0's first N evaluation edits, one fresh-start edit each (cross 0.8, self 0.2)
records the kept words' (the object nouns') accumulated cross-attention map; against the scene's true object masks
(the world's ground truth, used here for tuning only, never by the editor or the filter) it prints, per max-pool
kernel and threshold, the share of object cells the kept region covers and the share of background cells it takes."""
import collections
import sys

import numpy as np
import torch
import torch.nn.functional as F

from cirsynth.editing import attention as A
from cirsynth.world.render import object_masks
from cirsynth.synth.candidates import blend_words_of
from tune_setup import tuning_inputs

cfg, edits, editor, clf, refs, ces, inv = tuning_inputs(["background"], int(sys.argv[1]), paste="reference")
last = {}
orig = A.P2PController.blend
def blend(self, x_src, x_tgt):
    maps = torch.cat([self.maps_src, self.maps_tgt, self.maps_keep])
    last["raw"] = maps.clone()
    return orig(self, x_src, x_tgt)
A.P2PController.blend = blend
res = []
for i, (e, c) in enumerate(zip(edits, ces)):
    words = blend_words_of(c, True)
    editor.edit([inv[i]], [c.target_caption], cross_replace_steps=0.8, self_replace_steps=0.2,
                blend_words=[words], blend_pin=[True], start_noise=[1000 + i])
    raw = last["raw"][2:3]  # keep map (1,1,gh,gw)
    gh = raw.shape[-1]
    om = object_masks(e.reference, size=64)  # (k, 64, 64)
    obj = torch.tensor(np.clip(om.sum(0), 0, 1))[None, None].float()
    obj_g = F.adaptive_max_pool2d(obj, gh)[0, 0] > 0.5  # object cells at grid res
    for pool in (3, 5):
        m = F.max_pool2d(raw, pool, 1, pool // 2)
        m = (m / m.amax().clamp_min(1e-12))[0, 0]
        for t in (0.05, 0.1, 0.2, 0.3):
            keep = m > t
            rec = float((keep & obj_g).sum() / obj_g.sum().clamp_min(1))
            over = float((keep & ~obj_g).sum() / (~obj_g).sum().clamp_min(1))
            res.append((pool, t, rec, over))
    print(i, c.source_caption, "| keep", words[2] if len(words) > 2 else None, "obj share %.2f" % float(obj_g.float().mean()), flush=True)
agg = collections.defaultdict(list)
for p, t, r, o in res:
    agg[(p, t)].append((r, o))
for k, v in sorted(agg.items()):
    a = np.array(v)
    print(k, "object recall %.2f (min %.2f), background kept %.2f" % (a[:, 0].mean(), a[:, 0].min(), a[:, 1].mean()))
