"""Seed-0 tuning only: two recipes' calibration candidate tables (calibrate-filter's `*_candidates.json`, one row per
candidate) on the same first N edits, side by side as the adoption rule reads them: edits with any right candidate,
the held-out kept candidate right (each edit keeps its most probable candidate under a learned filter fitted on the
other folds), how many of the top 10/20/30/50% of edits by that kept probability are right (mean over fold
partitions 0-2: the ranking, free of the threshold's step), and the learned filter cross-validated as calibrate-filter
does it (4 folds; fold partition 0, each partition, their mean), at the 80% target with at least 10% accepted.

A table made on more edits (e.g. 288) is cut to its first N, so both are measured on the same edits.

Usage (repo root): PYTHONPATH=src .venv/bin/python docs/results/world_adopt_compare.py N NAME=TABLE [NAME=TABLE ...]
"""
import json
import sys
from collections import defaultdict

import numpy as np

from cirsynth.world.evaluate import candidates_by_edit
from filter_cv import kept_by_partition


def by_type(cands):
    """Per edit type: edits, edits with a right candidate, and of their candidates how many are right, draw the named
    attribute (target) and keep the rest (preserved)."""
    out = defaultdict(lambda: dict.fromkeys(("edits", "edits_with_right", "right", "target", "preserved"), 0))
    for cs in cands:
        t = out[cs[0]["edit_type"]]
        t["edits"] += 1
        t["edits_with_right"] += any(c["right"] for c in cs)
        for k in ("right", "target", "preserved"):
            t[k] += sum(bool(c[k]) for c in cs)
    return dict(out)


TOP = (0.1, 0.2, 0.3, 0.5)  # fractions of the edits, ranked by their kept candidate's held-out probability
n = int(sys.argv[1])
out = {"seed": 0, "n": n, "tables": {}}
for spec in sys.argv[2:]:
    name, path = spec.split("=", 1)
    cands = candidates_by_edit(json.load(open(path)), n)
    kept, top, cv = [], defaultdict(list), []
    for best_p, kept_right, figs in kept_by_partition(cands):  # kept candidate, ranking and the filter's CV
        kept.append(int(kept_right.sum()))
        order = np.argsort(-best_p, kind="stable")
        for frac in TOP:
            top[frac].append(100 * kept_right[order[:round(frac * n)]].mean())
        cv.append(figs)
    out["tables"][name] = {
        "table": path,
        "edits_with_right": sum(any(c["right"] for c in cs) for cs in cands),
        "right_candidates": sum(c["right"] for cs in cands for c in cs),
        "candidates": sum(len(cs) for cs in cands),
        "held_out_kept_right": kept[0],
        "held_out_kept_right_by_partition": kept,
        "right_among_top_edits_mean_of_3": {f"{round(100 * f)}%": round(float(np.mean(v)), 1) for f, v in top.items()},
        "filter_cv_by_partition": cv,
        "filter_cv_partition0": cv[0],
        "filter_cv_mean_of_3": {k: round(float(np.mean([f[k] for f in cv])), 1) for k in cv[0]},
        "by_type": by_type(cands),
    }
    t = out["tables"][name]
    print(f"{name:24s} any right {t['edits_with_right']}/{n}, held-out kept right {t['held_out_kept_right']}/{n}, "
          f"filter CV {t['filter_cv_partition0']} (mean of 3: {t['filter_cv_mean_of_3']}); right among the top "
          f"edits {t['right_among_top_edits_mean_of_3']}", flush=True)
print(json.dumps(out))
