"""Which scores the learned filter should read, compared on seed-0 tuning candidates only (never the reported seed).

For each candidate table (a `calibrate-filter` `_candidates.json`) and each feature set, the learned filter
(`calibrate.fit_learned`, the model `calibrate-filter` fits) is cross-validated over 4 folds of edits, 3 fold
partitions: held-out ROC AUC over candidates, and the precision of the edits it would accept when it accepts the top
10%, 15% or 20% of edits by their best candidate's probability; then `cross_validate_learned`'s own figures (the
threshold that calibrate-filter would choose, at precision >= 80% with >= 10% accepted), without and with per-type
offsets (calibrate-filter then keeps whichever holds better over 3 fold partitions; its log says which).

    .venv/bin/python docs/results/world_tune_filter.py NAME=CANDIDATES.json [NAME=CANDIDATES.json ...]
"""
import json
import sys

import numpy as np
from sklearn.metrics import roc_auc_score

from cirsynth.world.calibrate import _best_per_edit, cross_validate_learned, held_out_probabilities

OLD = ["clip_i2i", "clip_src_text", "clip_tgt_text", "clip_dir", "words_margin", "psnr_outside", "caption_margin",
       "recaption_target", "recaption_margin", "recaption_diff", "likelihood_edit", "likelihood_kept"]
SETS = {"12 scores (session 16)": OLD, "12 + likelihood_margin": OLD + ["likelihood_margin"],
        "likelihood scores only": ["likelihood_edit", "likelihood_kept", "likelihood_margin"]}


def grouped(rows, feats):
    E = max(r["edit"] for r in rows) + 1
    out = [[] for _ in range(E)]
    for r in rows:
        out[r["edit"]].append({"right": r["right"], "edit_type": r["edit_type"],
                               "scores": {f: r["scores"][f] for f in feats}})
    return out


def held_out(cands, seed):
    flat_p = np.array([v for ps in held_out_probabilities(cands, seed=seed) for v in ps], dtype=float)
    flat_y = np.array([c["right"] for cs in cands for c in cs])
    bp, br = _best_per_edit(cands, flat_p)
    hits = np.cumsum(br[np.argsort(-bp, kind="stable")])
    at = {f"precision_top{q}%": 100 * hits[int(q / 100 * len(cands)) - 1] / int(q / 100 * len(cands))
          for q in (10, 15, 20)}
    return {"auc": roc_auc_score(flat_y, flat_p), **at}


out = {}
for arg in sys.argv[1:]:
    name, path = arg.split("=", 1)
    rows = json.load(open(path))
    for set_name, feats in SETS.items():
        if not all(f in rows[0]["scores"] for f in feats):
            continue
        cands = grouped(rows, feats)
        runs = [held_out(cands, s) for s in (0, 1, 2)]
        thr, figs = cross_validate_learned(cands)
        _, by_type = cross_validate_learned(cands, by_type=True)
        out[f"{name}: {set_name}"] = {**{k: round(float(np.mean([r[k] for r in runs])), 3 if k == "auc" else 1)
                                         for k in runs[0]}, "calibrate_cv": figs, "calibrate_threshold": round(thr, 3),
                                      "calibrate_cv_type_offsets": by_type}
        print(f"{name}: {set_name}", json.dumps(out[f"{name}: {set_name}"]), flush=True)
