"""Seed-0 tuning only: does the diffusion judge help the learned filter, and how cheap can it be? Reads
``world_diffusion_judge_probe.py`` outputs (every error: edit, image, caption, timestep) and the calibration candidate
table they belong to; for each variant (a subset of the timesteps, the first K hard negatives) it recomputes the three
diffusion scores, and reports their within-edit and pooled AUC and the learned filter cross-validated as
calibrate-filter measures it (4 folds by edit, fold partitions 0-2, the 80% target with at least 10% accepted), with
the table's scores alone and with the diffusion scores added.

Usage (repo root): PYTHONPATH=src:docs/results .venv/bin/python docs/results/world_diffusion_judge_cv.py TABLE OUT.json
    PROBE.json[.gz] [PROBE.json[.gz] ...]
"""
import gzip
import json
import os
import sys

import numpy as np
from sklearn.metrics import roc_auc_score

from cirsynth.synth.filters import relative_scores
from cirsynth.world.evaluate import candidates_by_edit
from filter_cv import kept_by_partition, within_auc

table_path, out_path, probes = sys.argv[1], sys.argv[2], sys.argv[3:]
errors, steps = {}, None
for p in probes:
    d = json.load(gzip.open(p, "rt") if p.endswith(".gz") else open(p))
    steps = d["timesteps"]
    for m in d["errors"]:
        errors[m["edit"]] = np.array(m["errors"])  # (1 + candidates, captions, timesteps); caption 0: T, 1: S
n = max(errors) + 1
if sorted(errors) != list(range(n)):
    raise SystemExit(f"the probes cover edits {sorted(errors)[:3]}... not 0..{n - 1} without a gap")
table = candidates_by_edit(json.load(open(table_path)), n)


def diffusion_scores(err):
    """(images, captions) errors -> per candidate the three scores (row 0: the reference)."""
    out = []
    for e in range(1, len(err)):
        margin, edit, kept = relative_scores(-err[e], -err[0])  # as the filter: minus the errors, higher is better
        out.append({"diffusion_margin": margin, "diffusion_edit": edit, "diffusion_kept": kept})
    return out


def cv(cands):
    kept, figs = [], []
    for _, kept_right, f in kept_by_partition(cands):
        kept.append(int(kept_right.sum()))
        figs.append(f)
    return {"held_out_kept_right": round(float(np.mean(kept)), 1),
            "accepted": round(float(np.mean([f["accepted"] for f in figs])), 1),
            "precision": round(float(np.mean([f["precision"] for f in figs])), 1),
            "accepted_success": round(float(np.mean([f["accepted_success"] for f in figs])), 1)}


def variant(ts, k):
    """The table's candidates with the diffusion scores of timesteps ``ts`` and the first ``k`` negatives."""
    ti = [steps.index(t) for t in ts]
    cands = []
    for i, cs in enumerate(table):
        err = errors[i][:, :, ti].mean(-1)
        err = err[:, :2 + k] if k is not None else err
        cands.append([{**c, "scores": {**c["scores"], **s}} for c, s in zip(cs, diffusion_scores(err))])
    return cands


out = {"seed": 0, "n": n, "table": table_path, "timesteps": steps, "without": cv(table), "variants": {}}
print("table scores only:", out["without"], flush=True)
flat = [c for cs in table for c in cs]
for name in sorted(flat[0]["scores"]):
    print(f"  {name:18s} within-edit AUC {within_auc(table, name):.3f} pooled {roc_auc_score([c['right'] for c in flat], [c['scores'][name] for c in flat]):.3f}")
for ts in (steps, [s for s in steps if s in (100, 400, 700)] or steps[:3], steps[:2], steps[-2:]):
    for k in (None, 16, 8):
        cands = variant(ts, k)
        y = [c["right"] for cs in cands for c in cs]
        aucs = {s: [round(within_auc(cands, s), 3),
                    round(roc_auc_score(y, [c["scores"][s] for cs in cands for c in cs]), 3)]
                for s in ("diffusion_margin", "diffusion_edit", "diffusion_kept")}
        key = f"t={','.join(map(str, ts))} negatives={'all' if k is None else k}"
        out["variants"][key] = {"auc_within_pooled": aucs, "with": cv(cands)}
        print(key, aucs, out["variants"][key]["with"], flush=True)
with open(out_path + ".tmp", "w") as f:
    json.dump(out, f, indent=1)
os.replace(out_path + ".tmp", out_path)
