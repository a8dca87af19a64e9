"""Seed-0 tuning only, quick: can the generator itself rank an edit's candidates? A diffusion model read as a
classifier (Li et al. 2023, "Your diffusion model is secretly a zero-shot classifier"): noise an image's latent at a
few fixed timesteps and compare how well the UNet predicts that noise under the target caption, the source caption
and every hard-negative caption (the same noise and timesteps for every caption and for every image of one edit).
A user has all of that on real photos (their diffusion model, the images, the captions); no judge, no ground truth.

Scores per candidate E with reference R (err(X, c): mean squared noise-prediction error of image X under caption c):
- ``diffusion_margin``: min_n err(E, n) - err(E, T) over the source and every negative (> 0: T explains E best);
- ``diffusion_edit``: [err(E, S) - err(E, T)] - [err(R, S) - err(R, T)] (E moved towards T, relative to R);
- ``diffusion_kept``: min over negatives n != S of [err(E, n) - err(E, T)] - [err(R, n) - err(R, T)];
- ``diffusion_rank``: the share of the negatives (and S) that explain E worse than T does.

It reads the candidates' images from a ``world evaluate --cache`` folder and their ground-truth verdicts from the
matching calibration candidate table, and prints each score's within-edit AUC (right against wrong candidates of one
edit) beside the pooled AUC, and the same for the table's own scores.

Usage (repo root): PYTHONPATH=src:docs/results .venv/bin/python docs/results/world_diffusion_judge_probe.py
    RECIPE TABLE CACHE SEED N OUT.json [TIMESTEPS [FIRST [JUDGE]]]
(TIMESTEPS comma-separated, default 100,250,400,550,700; edits FIRST to N-1 scored, default from 0; JUDGE: another diffusion pipeline folder reads them, default the
recipe's editor). OUT.json also
keeps every error (edit, image, caption, timestep), so cheaper settings (fewer timesteps, fewer negatives) can be
read off it (``world_diffusion_judge_cv.py``; the committed outputs are gzipped)."""
import glob
import json
import sys

import numpy as np
import torch
from PIL import Image
from sklearn.metrics import roc_auc_score

from cirsynth.synth.candidates import hard_negative_captions
from cirsynth.synth.filters import relative_scores
from cirsynth.world.evaluate import _world_perturber, evaluation_edits, world_setup
from cirsynth.world.recipe import world_eval_config

recipe, table_path, cache, seed, n, out_path = sys.argv[1:7]
seed, n = int(seed), int(n)
steps = [int(x) for x in (sys.argv[7] if len(sys.argv) > 7 else "100,250,400,550,700").split(",")]
first = int(sys.argv[8]) if len(sys.argv) > 8 else 0
torch.set_num_threads(1)
cfg = world_eval_config(recipe, n=n, seed=seed)
edits = evaluation_edits(cfg)
ces = [e.caption_edit for e in edits]
negs = hard_negative_captions(_world_perturber(), [c.target_caption for c in ces], [c.source_caption for c in ces],
                              cfg.filter.hard_negatives, cfg.seed)
_, editor, _, refs = world_setup(cfg)
if len(sys.argv) > 9:
    from cirsynth.editing import CounterfactualEditor

    editor = CounterfactualEditor.from_pretrained(sys.argv[9])
report_judge = sys.argv[9] if len(sys.argv) > 9 else "recipe editor"
table = json.load(open(table_path))
rows = [[] for _ in range(n)]
for r in table:
    if r["edit"] < n:
        rows[r["edit"]].append(r)
rows = [sorted(rs, key=lambda r: r["candidate"]) for rs in rows]

images = {}  # edit -> candidate images in the table's order
for p in glob.glob(f"{cache}/candidates-*.npz"):
    z = np.load(p)
    key = json.loads(str(z["key"]))
    if key["seed"] != seed or key["first"] >= n:
        continue
    for k, (o, a) in enumerate(zip(z["owner"].tolist(), z["images"])):
        images.setdefault(key["first"] + o, []).append(Image.fromarray(a))
missing = [i for i in range(first, n) if len(images.get(i, [])) != len(rows[i])]
if missing:
    raise SystemExit(f"{len(missing)} edits without their cached candidates, e.g. {missing[:5]}")

sched = editor.pipe.scheduler
abar = sched.alphas_cumprod.float()
ts = torch.tensor(steps)


@torch.no_grad()
def errors(latents, captions, gen):
    """(images, captions) mean squared noise-prediction error, the same noise and timesteps for every pair."""
    cond = editor.encode_text(captions)  # C rows
    n_img, n_cap, n_t = latents.shape[0], len(captions), len(steps)
    eps = torch.randn((n_t,) + latents.shape[1:], generator=gen)  # one noise per timestep, shared by every image
    a = abar[ts].view(-1, 1, 1, 1)
    noisy = a.sqrt()[None] * latents[:, None] + (1 - a).sqrt()[None] * eps[None]  # (I, T, C, h, w)
    out = torch.empty(n_img, n_cap, n_t)
    for i in range(n_img):
        x = noisy[i].repeat(n_cap, 1, 1, 1)  # (C*T, ...): caption-major
        t = ts.repeat(n_cap)
        c = cond[torch.arange(n_cap).repeat_interleave(n_t)]
        pred = editor._unet(x, t, c).float()
        err = ((pred - eps.repeat(n_cap, 1, 1, 1)) ** 2).mean(dim=(1, 2, 3)).view(n_cap, n_t)
        out[i] = err
    return out  # (images, captions, timesteps)


results, matrices = [], []
for i in range(first, n):
    ce = ces[i]
    caps = [ce.target_caption, ce.source_caption] + [c for c in negs[i] if c != ce.source_caption]
    lat = editor.encode_images([refs[i]] + images[i]).float()
    full = errors(lat, caps, torch.Generator().manual_seed(1000 + i)).numpy()  # row 0: the reference
    err = full.mean(-1)
    for k, r in enumerate(rows[i]):
        e = 1 + k
        margin, edit, kept = relative_scores(-err[e], -err[0])  # as the filter: minus the errors, higher is better
        results.append({"edit": i, "type": r["edit_type"], "right": r["right"], "table": r["scores"],
                        "diffusion_margin": margin, "diffusion_edit": edit, "diffusion_kept": kept,
                        "diffusion_rank": float((err[e, 1:] > err[e, 0]).mean())})
    matrices.append({"edit": i, "captions": len(caps), "errors": full.round(6).tolist()})  # (1 + candidates, C, T)
    if i % 16 == 15:
        print(i + 1, "edits", flush=True)


def within(f):
    wins = pairs = 0.0
    for i in range(first, n):
        cs = [r for r in results if r["edit"] == i]
        y = [r["right"] for r in cs]
        if any(y) and not all(y):
            k = sum(y) * (len(y) - sum(y))
            wins += roc_auc_score(y, [f(r) for r in cs]) * k
            pairs += k
    return wins / pairs


y = [r["right"] for r in results]
report = {"seed": seed, "n": n, "first": first, "judge": report_judge, "timesteps": steps, "auc": {}}
names = ["diffusion_margin", "diffusion_edit", "diffusion_kept", "diffusion_rank"]
for name in names + sorted(results[0]["table"]):
    f = (lambda r, k=name: r[k]) if name in names else (lambda r, k=name: r["table"][k])
    report["auc"][name] = {"within": round(within(f), 3), "pooled": round(roc_auc_score(y, [f(r) for r in results]), 3)}
    print(name, report["auc"][name], flush=True)
report["candidates"] = [{k: v for k, v in r.items() if k != "table"} for r in results]
report["errors"] = matrices  # per edit: the reference's and each candidate's error under T, S, the negatives
with open(out_path, "w") as fh:
    json.dump(report, fh, indent=1)
