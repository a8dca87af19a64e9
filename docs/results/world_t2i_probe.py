"""Tuning seed only: how well each diffusion model draws what the words say, side by side on the same prompts.

Text-to-image from the target captions of ``world evaluate``'s edits (the recipe's steps and guidance), read by the
world attribute classifier (the judge): per label kind, and whether the attribute each edit names came out right; and
the drawings' mean brightness by the light their caption names, beside the renders'.
It needs no inversion, so it compares UNets in minutes where a full ``world evaluate`` takes half an hour.

Usage (from the repo root): .venv/bin/python docs/results/world_t2i_probe.py EDITOR[,EDITOR...] SEED N OUT.json
("bundled" names the bundled world diffusion model)."""
import json
import sys
import time

import numpy as np

from cirsynth.models.diffusion import load_sd_pipeline
from cirsynth.world.classifier import AttributeClassifier
from cirsynth.world.evaluate import evaluation_edits, text_to_image, text_to_image_reading
from cirsynth.world.recipe import bundled_model, world_eval_config
from cirsynth.world.render import render_array
from cirsynth.world.scene import scene_labels

editors, seed, n, out = sys.argv[1].split(","), int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
cfg = world_eval_config(seed=seed, n=n)
edits = evaluation_edits(cfg)
clf = AttributeClassifier.from_pretrained(cfg.classifier)
prompts = [e.caption_edit.target_caption for e in edits]
result = {"seed": seed, "n": len(edits), "num_steps": cfg.num_steps, "guidance_scale": cfg.guidance_scale, "editors": {}}
for name in editors:
    folder = bundled_model("editor") if name == "bundled" else name
    t0 = time.time()
    pipe = load_sd_pipeline(folder)
    pipe.set_progress_bar_config(disable=True)
    images = text_to_image(pipe, prompts, cfg)
    reading = text_to_image_reading(clf.predict(images), edits)
    # how bright the drawings come out by the light their caption names, beside the renders of those scenes (0-255):
    # a model that cannot set overall brightness from the words draws night as bright as midday
    by_light = {}
    for e, im in zip(edits, images):
        by_light.setdefault(scene_labels(e.target)["light"], []).append((np.asarray(im, float).mean(),
                                                                        255 * render_array(e.target).mean()))
    reading["brightness_by_light"] = {k: {"drawn": round(float(np.mean([a for a, _ in v])), 1),
                                          "rendered": round(float(np.mean([b for _, b in v])), 1)}
                                      for k, v in sorted(by_light.items())}
    result["editors"][name] = {**reading, "seconds": round(time.time() - t0, 1)}
    print(name, json.dumps(reading), flush=True)
json.dump(result, open(out, "w"), indent=1)
