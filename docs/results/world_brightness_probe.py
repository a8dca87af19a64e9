"""Why a world UNet draws night scenes as bright as midday ones (tuning scenes only, never the reported seed).

1. Starting point: night scenes (the night targets among seed 0's first 96 evaluation edits, at most 16) rendered,
   encoded, noised to the first timestep of a 20-step schedule entered at strength s (SDEdit; s = 1: the first step of
   plain sampling, t = 951) and sampled with their captions (guidance 3, the recipe's): the drawings' mean brightness
   beside the renders'. A model that keeps the night dark from the noised render but draws it bright from pure noise
   reads the brightness off its starting noise, not off the words.
2. How much of the brightness the starting noise holds: 64 random seed-0 scenes rendered at midday and at night, encoded; per
   latent channel, the night - midday difference of the channel mean, and at t = 999 and 951 that difference times
   sqrt(alpha_bar_t) (what the noisy latent still shows of it) beside the noise's own per-channel mean (its std:
   sqrt(1 - alpha_bar_t) / latent side), and with offset noise of std o added (sqrt((1 - alpha_bar_t)(1/side^2 + o^2))).

Usage (repo root): PYTHONPATH=src .venv/bin/python docs/results/world_brightness_probe.py DIFFUSION_FOLDER
"""
import dataclasses
import json
import sys

import numpy as np
import torch

from cirsynth.models.diffusion import load_sd_pipeline
from cirsynth.world.evaluate import evaluation_edits
from cirsynth.world.recipe import world_eval_config
from cirsynth.world.render import render_array
from cirsynth.world.scene import measurement_rng, random_scene, scene_labels

torch.set_num_threads(1)
pipe = load_sd_pipeline(sys.argv[1])
sf = pipe.vae.config.scaling_factor


def encode(scenes):
    px = torch.tensor(np.stack([render_array(s) for s in scenes]), dtype=torch.float32).permute(0, 3, 1, 2) * 2 - 1
    with torch.no_grad():
        return px, pipe.vae.encode(px).latent_dist.mean * sf


cfg = world_eval_config(seed=0, n=96)
edits = [e for e in evaluation_edits(cfg) if scene_labels(e.target)["light"] == "night"][:16]
px, z0 = encode([e.target for e in edits])
captions = [e.caption_edit.target_caption for e in edits]
out = {"folder": sys.argv[1], "night_scenes": len(edits), "rendered_brightness": round(float((px.mean() + 1) / 2 * 255), 1),
       "sdedit": {}}
with torch.no_grad():
    cond, uncond = pipe.encode_prompt(captions, "cpu", 1, True, [""] * len(captions))
    for strength in (1.0, 0.9, 0.8, 0.6, 0.4):
        pipe.scheduler.set_timesteps(20)
        ts = pipe.scheduler.timesteps[int(round((1 - strength) * 20)):]
        x = pipe.scheduler.add_noise(z0, torch.randn(z0.shape, generator=torch.Generator().manual_seed(0)),
                                     ts[:1].repeat(len(z0)))
        for t in ts:
            eu, ec = pipe.unet(torch.cat([x, x]), t, encoder_hidden_states=torch.cat([uncond, cond])).sample.chunk(2)
            x = pipe.scheduler.step(eu + cfg.guidance_scale * (ec - eu), t, x).prev_sample
        img = (pipe.vae.decode(x / sf).sample.clamp(-1, 1) + 1) / 2
        out["sdedit"][f"strength {strength} (from t {int(ts[0])})"] = round(float(img.mean()) * 255, 1)

rng = measurement_rng(0, "attention")  # a measurement stream (no trainer draws from it), tuning seed
scenes = [random_scene(rng) for _ in range(64)]
_, mid = encode([dataclasses.replace(s, light="midday") for s in scenes])
_, night = encode([dataclasses.replace(s, light="night") for s in scenes])
d = (night.mean((2, 3)) - mid.mean((2, 3))).abs()  # (64, C)
side = mid.shape[-1]
ab = pipe.scheduler.alphas_cumprod
out["channel_mean_difference"] = {"per_channel": round(float(d.mean()), 3),
                                  "norm_over_channels": round(float(d.norm(dim=1).mean()), 2)}
for t in (999, 951):
    s_t = float(ab[t].sqrt() * d.mean())
    noise = {o: float(((1 - ab[t]) * (1 / side ** 2 + o ** 2)).sqrt()) for o in (0.0, 0.1, 0.3)}
    out[f"t {t}"] = {"signal_per_channel": round(s_t, 4),
                     **{f"noise_per_channel_offset_{o}": round(v, 4) for o, v in noise.items()}}
print(json.dumps(out, indent=1))
