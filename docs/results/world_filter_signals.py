"""New filter signals from the pixels, measured on seed-0 tuning candidates only (never the reported seed).

The filter's 13 scores (CLIP, the world captioner as re-captioner and as reader) leave the kept candidate right in
under half of the edits, while 62% of edits have some right candidate (world_filter_models_seed0.log). The candidates
of one edit are mostly all right or all wrong, so what the filter must learn is mostly which *edits* worked. This
script computes signals a user also has on real photos (the reference R, the candidate E, the editor's LocalBlend
mask M, and the edit's other candidates; never the judge or the scene) and asks, by the same cross-validation as
world_filter_models.py, whether they let the filter accept more edits at 80% precision:

- pixel signals inside / outside M: the changed area (share of pixels whose RGB moved > 0.1), the structure kept
  inside M (correlation of the grey-level gradient magnitudes of R and E), the texture energy ratio inside M (log
  Laplacian variance E / R), the mean luminance and chroma shift inside M, the mask's area;
- edit-level signals: the inversion's reconstruction PSNR, each of the 13 scores averaged over the edit's candidates,
  and how much the candidates agree (mean RGB distance to the edit's other candidates).

Usage (repo root; the cache holds the candidate images of the table's edits, as calibrate-filter made them):
    OMP_NUM_THREADS=1 PYTHONPATH=src .venv/bin/python docs/results/world_filter_signals.py CANDIDATES.json CACHE N
e.g. docs/results/world_calibration_seed0_n288_unet_s18_candidates.json /tmp/cache_s18 288
"""
import json
import sys

import numpy as np
from scipy import ndimage
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score

from filter_cv import measure, standardise
from tune_setup import cached_blocks

from cirsynth.world.recipe import world_eval_config
from cirsynth.world.evaluate import evaluation_edits, render

rows = json.load(open(sys.argv[1]))
cache, n = sys.argv[2], int(sys.argv[3])
cfg = world_eval_config(None, n=n, seed=0)
edits = evaluation_edits(cfg)
refs = [np.asarray(render(e.reference), float) / 255.0 for e in edits]  # render gives 8-bit RGB

# the cached blocks of these edits (seed 0, first = 0, 96, ...), by (edit, candidate)
blocks = cached_blocks(cache, 0, n)
cands = list(zip(blocks["owner"], blocks["candidate"]))
images = {k: a.astype(float) / 255.0 for k, a in zip(cands, blocks["images"])}
masks = dict(zip(cands, blocks["masks"]))
has_mask = {k: bool(h) for k, h in zip(cands, blocks["has_mask"])}
psnr = blocks["psnr"]
missing = [(r["edit"], r["candidate"]) for r in rows if (r["edit"], r["candidate"]) not in images]
if missing:
    sys.exit(f"{len(missing)} candidates of the table are not in {cache} (first: {missing[:3]})")


def grey(a):
    return a @ np.array([0.299, 0.587, 0.114])


def pixel_signals(R, E, M, hm):
    d = np.abs(E - R).max(-1)
    changed = d > 0.1
    inside = M if hm and M.any() else np.ones(M.shape, bool)
    outside = ~inside
    gR, gE = grey(R), grey(E)
    mR = np.hypot(ndimage.sobel(gR, 0), ndimage.sobel(gR, 1))[inside]
    mE = np.hypot(ndimage.sobel(gE, 0), ndimage.sobel(gE, 1))[inside]
    corr = float(np.corrcoef(mR, mE)[0, 1]) if mR.std() > 1e-6 and mE.std() > 1e-6 else 0.0
    lR, lE = ndimage.laplace(gR)[inside], ndimage.laplace(gE)[inside]
    chroma = lambda a: a.max(-1) - a.min(-1)
    return {
        "px_changed": float(changed.mean()),
        "px_changed_in": float(changed[inside].mean()),
        "px_changed_out": float(changed[outside].mean()) if outside.any() else 0.0,
        "px_grad_corr_in": corr,
        "px_texture_ratio_in": float(np.log((lE.var() + 1e-4) / (lR.var() + 1e-4))),
        "px_luma_shift_in": float((gE - gR)[inside].mean()),
        "px_chroma_shift_in": float((chroma(E) - chroma(R))[inside].mean()),
        "px_mask_area": float(inside.mean()),
    }


base = list(rows[0]["scores"])
by_edit = {}
for r in rows:
    by_edit.setdefault(r["edit"], []).append(r)
for e, rs in by_edit.items():
    stack = np.stack([images[(e, r["candidate"])] for r in rs])
    for k, r in enumerate(rs):
        key = (e, r["candidate"])
        r["new"] = pixel_signals(refs[e], images[key], masks[key], has_mask[key])
        others = np.delete(np.arange(len(rs)), k)
        r["new"]["ed_agreement"] = float(-np.abs(stack[others] - stack[k]).mean()) if len(others) else 0.0
        r["new"]["ed_recon_psnr"] = psnr[e]
        for f in base:
            r["new"][f"ed_mean_{f}"] = float(np.mean([x["scores"][f] for x in rs]))

types = sorted({r["edit_type"] for r in rows})
E = np.array([r["edit"] for r in rows])
y = np.array([bool(r["right"]) for r in rows])
T = np.array([types.index(r["edit_type"]) for r in rows])
eds = sorted(set(E.tolist()))


def matrix(feats):
    return np.array([[{**r["scores"], **r["new"]}[f] for f in feats] for r in rows], float)


def logistic(X, by_type=False, C=0.3):
    """calibrate-filter's logistic model over the columns of ``X`` (with one-hot edit types when ``by_type``)."""
    def fit_predict(tr, te):
        a, b = standardise(X[tr], X[te])
        if by_type:
            a, b = np.hstack([a, np.eye(len(types))[T[tr]]]), np.hstack([b, np.eye(len(types))[T[te]]])
        return LogisticRegression(C=C, max_iter=5000).fit(a, y[tr]).predict_proba(b)[:, 1]
    return fit_predict


new = list(rows[0]["new"])
px = [f for f in new if f.startswith("px_")]
ed = [f for f in new if f.startswith("ed_")]
print(f"{len(eds)} edits, {len(rows)} candidates, {y.mean():.1%} right; edits with some right candidate "
      f"{np.mean([y[E == e].any() for e in eds]):.1%}", flush=True)
print("single-signal AUC over candidates (new signals):")
for f in new:
    x = matrix([f])[:, 0]
    print(f"  {f:32s} {roc_auc_score(y, x):.3f}")
sets = {
    "13 scores (calibrate-filter's)": base,
    "13 scores + pixel signals": base + px,
    "13 scores + edit-level signals": base + ed,
    "13 scores + pixel + edit-level": base + px + ed,
}
for name, feats in sets.items():
    X = matrix(feats)
    for by_type in (False, True):
        print(f"{name}{' + per-type offsets' if by_type else ''}", json.dumps(measure(logistic(X, by_type), E, y)), flush=True)
