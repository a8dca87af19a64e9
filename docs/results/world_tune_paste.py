"""Seed-0 only (tuning data): LocalBlend pinning vs mask-only, and pasting the reference outside the mask.

Usage (from the repo root):
  PYTHONPATH=src .venv/bin/python docs/results/world_tune_paste.py TYPES N OUT.json
TYPES: comma-separated edit types; N: evaluation edits of seed 0 to draw them from (edit types in turn).
Each edit gets the recipe's 8 drawn candidate settings, made once with LocalBlend pinning and once mask-only; every
candidate is then judged as decoded (paste none) and with the input scene pasted outside its mask, grown by 0, 1
or 2 latent cells (pasting needs no UNet call, so it is applied here to the same decoded candidates). Prints
right / target / preserved counts per (type, blend, paste) and writes every candidate's verdicts to OUT.json."""
import json
import sys
import numpy as np
import torch

from cirsynth.editing.editor import paste_outside
from cirsynth.editing.images import images_to_tensor, tensor_to_images
from cirsynth.synth.candidates import draw_settings, edit_candidates
from tune_setup import judged_row, print_tally, tuning_inputs

types, n, out = sys.argv[1].split(","), int(sys.argv[2]), sys.argv[3]
cfg, edits, editor, clf, refs, ces, inv = tuning_inputs(types, n, paste="none")
settings = [draw_settings(cfg.candidates.for_edit_type(e.edit_type), f"world-edit-{i}", 0) for i, e in enumerate(edits)]
rows = []
for blend in ("pin", "mask"):
    cand_cfg = type(cfg.candidates)(n=cfg.candidates.n, by_edit_type={t: {"local_blend": True if blend == "pin" else "mask"}
                                                                      for t in types})
    words, pins = cand_cfg.blends(ces, True)
    cands = edit_candidates(editor, inv, [c.target_caption for c in ces], words, [c.target_words for c in ces],
                            settings, images=refs, blend_pin=pins)
    flat = [(i, k, c) for i, cs in enumerate(cands) for k, c in enumerate(cs)]
    for paste in ("none", "ref0", "ref1", "ref2"):
        images = []
        for i, _, c in flat:
            if paste == "none" or c.mask is None:
                images.append(c.image)
                continue
            m = torch.from_numpy(c.mask)[None, None]
            f = m.shape[-1] // 16  # the world latent is 16 x 16
            lat = m[..., f // 2 :: f, f // 2 :: f]  # (1, 1, 16, 16): the latent mask the pixel mask was upsampled from
            images.append(tensor_to_images(paste_outside(images_to_tensor([c.image]), images_to_tensor([refs[i]]),
                                                         lat, int(paste[-1])))[0])
        preds = clf.predict(images)
        for (i, k, c), p in zip(flat, preds):
            rows.append(judged_row(p, edits[i], edit=i, type=edits[i].edit_type, blend=blend, paste=paste,
                                   **settings[i][k].as_dict(), mask_share=None if c.mask is None else float(c.mask.mean())))
    print("blend", blend, "done", flush=True)
with open(out, "w") as f:
    json.dump(rows, f)
print_tally(rows, lambda r: (r["type"], r["blend"], r["paste"]))
