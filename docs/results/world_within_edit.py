"""Seed-0 tuning only: can the filter's scores tell a right candidate from a wrong one of the same edit? For each
calibration candidate table (calibrate-filter's `*_candidates.json`) on its first N edits:

- per score, its within-edit AUC (over every pair of a right and a wrong candidate of one edit, how often the right
  one scores higher) beside its pooled AUC (right against wrong candidates of any edits);
- three ways of keeping each edit's candidate, 4 folds by edit, fold partitions 0-2: "plain" (the learned filter's
  most probable candidate, as calibrate-filter does), "centred" (the logistic model also sees every score minus its
  edit's mean) and "ranks" (it also sees each score's rank among its edit's candidates); for each, the held-out kept
  candidate right and the filter's CV at the 80% target with at least 10% accepted, as calibrate-filter chooses the
  threshold.

Usage (repo root): PYTHONPATH=src .venv/bin/python docs/results/world_within_edit.py N OUT.json NAME=TABLE ...
"""
import json
import os
import sys

import numpy as np
from sklearn.linear_model import LogisticRegression

from cirsynth.world.calibrate import _features
from cirsynth.world.evaluate import candidates_by_edit, score_auc
from filter_cv import kept_by_partition, standardise, within_auc


def design(cs, feats, mode):
    X = np.array([[c["scores"][f] for f in feats] for c in cs], dtype=float)
    if mode == "centred":
        return np.hstack([X, X - X.mean(0)])
    if mode == "ranks":
        return np.hstack([X, X.argsort(0).argsort(0) / max(1, len(cs) - 1) - 0.5])
    return X


def held_out(cands, feats, mode, seed, C=0.3):
    """Each edit's candidates' probabilities from a model fitted on the other folds (standardised as
    calibrate.fit_learned does), edit by edit."""
    Xs = [design(cs, feats, mode) for cs in cands]
    ys = [np.array([bool(c["right"]) for c in cs]) for cs in cands]
    order = np.random.default_rng(seed).permutation(len(cands))
    p = [None] * len(cands)
    for f in range(4):
        test = sorted(order[f::4].tolist())
        train = sorted(set(range(len(cands))) - set(test))
        Z, Zt = standardise(np.vstack([Xs[i] for i in train]), np.vstack([Xs[i] for i in test]))
        model = LogisticRegression(C=C, max_iter=5000).fit(Z, np.concatenate([ys[i] for i in train]))
        probs = model.predict_proba(Zt)[:, 1]
        for i, part in zip(test, np.split(probs, np.cumsum([len(Xs[i]) for i in test])[:-1])):
            p[i] = part
    return p


n, out_path = int(sys.argv[1]), sys.argv[2]
out = {"seed": 0, "n": n, "tables": {}}
for spec in sys.argv[3:]:
    name, path = spec.split("=", 1)
    cands = candidates_by_edit(json.load(open(path)), n)
    feats = _features(cands)
    flat = [c for cs in cands for c in cs]
    pooled = score_auc(flat)
    scores = {f: {"within_edit_auc": round(within_auc(cands, f), 3), "pooled_auc": pooled[f]} for f in feats}
    keeping = {}
    for mode in ("plain", "centred", "ranks"):
        kept, cv = [], []
        for _, kept_right, figs in kept_by_partition(cands, lambda cs, s: held_out(cs, feats, mode, s)):
            kept.append(int(kept_right.sum()))
            cv.append(figs)
        keeping[mode] = {"held_out_kept_right_by_partition": kept, "filter_cv_by_partition": cv,
                         "filter_cv_accepted_success_mean_of_3": round(float(np.mean([f["accepted_success"] for f in cv])), 1)}
        print(f"{name:16s} {mode:8s} kept right {kept}, filter CV accepted and right "
              f"{[f['accepted_success'] for f in cv]} (mean {keeping[mode]['filter_cv_accepted_success_mean_of_3']})",
              flush=True)
    out["tables"][name] = {"table": path, "scores": scores, "keeping": keeping}
with open(out_path + ".tmp", "w") as f:
    json.dump(out, f, indent=1)
os.replace(out_path + ".tmp", out_path)
