"""Tuning seed only: how well each diffusion model draws what the words say, side by side on the same prompts.

Text-to-image from the target captions of ``world evaluate``'s edits (the recipe's steps and guidance), read by the
world attribute classifier (the judge): per label kind, and whether the attribute each edit names came out right.
It needs no inversion, so it compares UNets in minutes where a full ``world evaluate`` takes half an hour.

Usage (from the repo root): .venv/bin/python docs/results/world_t2i_probe.py EDITOR[,EDITOR...] SEED N OUT.json
("bundled" names the bundled world diffusion model)."""
import json
import sys
import time

from cirsynth.models.diffusion import load_sd_pipeline
from cirsynth.world.classifier import AttributeClassifier
from cirsynth.world.evaluate import evaluation_edits, text_to_image, text_to_image_reading
from cirsynth.world.recipe import bundled_model, world_eval_config

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
    reading = text_to_image_reading(clf.predict(text_to_image(pipe, prompts, cfg)), edits)
    result["editors"][name] = {**reading, "seconds": round(time.time() - t0, 1)}
    print(name, json.dumps(reading), flush=True)
json.dump(result, open(out, "w"), indent=1)
