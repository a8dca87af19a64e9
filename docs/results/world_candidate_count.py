"""Seed-0 tuning only: what oversampling buys once the filter has to choose. Each calibration candidate table
(calibrate-filter's `*_candidates.json`, K candidates per edit, their settings and noise seeds drawn independently,
so any k of them are a fair sample of a k-candidate recipe) is cut, on its first N edits, into K / k disjoint subsets
of k candidates per edit, for k = 1, 2, 4, ... K. On each subset, as calibrate-filter measures it (the learned
filter, 4 folds by edit, fold partitions 0-2):

- edits with a right candidate (what a perfect chooser would keep);
- the held-out kept candidate right (each edit keeps its most probable candidate under the model fitted on the
  other folds; with k = 1 this is the generator's own right rate);
- the learned filter cross-validated at the 80% precision target with at least 10% accepted: precision and
  accepted-and-right.

Figures are means over the subsets and the 3 partitions (with the subsets' range of accepted-and-right).

Usage (repo root): PYTHONPATH=src .venv/bin/python docs/results/world_candidate_count.py N OUT.json NAME=TABLE ...
"""
import json
import os
import sys

import numpy as np

from cirsynth.world.evaluate import candidates_by_edit
from filter_cv import kept_by_partition


def subset_figures(sub):
    kept, figs = [], []
    for _, kept_right, cv in kept_by_partition(sub):
        kept.append(int(kept_right.sum()))
        figs.append(cv)
    return {"edits_with_right": sum(any(c["right"] for c in cs) for cs in sub), "held_out_kept_right": float(np.mean(kept)),
            "filter_cv_precision": float(np.mean([f["precision"] for f in figs])),
            "filter_cv_accepted_success": float(np.mean([f["accepted_success"] for f in figs]))}


n, out_path = int(sys.argv[1]), sys.argv[2]
out = {"seed": 0, "n": n, "tables": {}}
for spec in sys.argv[3:]:
    name, path = spec.split("=", 1)
    cands = candidates_by_edit(json.load(open(path)), n)
    K = min(len(cs) for cs in cands)
    rows = {}
    k = 1
    while k <= K:
        subs = [subset_figures([cs[a:a + k] for cs in cands]) for a in range(0, K - k + 1, k)]
        acc = [f["filter_cv_accepted_success"] for f in subs]
        rows[str(k)] = {"subsets": len(subs), **{key: round(float(np.mean([f[key] for f in subs])), 1) for key in subs[0]},
                        "filter_cv_accepted_success_range": [round(min(acc), 1), round(max(acc), 1)]}
        r = rows[str(k)]
        print(f"{name:16s} k={k}: any right {r['edits_with_right']}/{n}, kept right {r['held_out_kept_right']}, "
              f"filter CV {r['filter_cv_precision']}% precise, {r['filter_cv_accepted_success']}% accepted and right "
              f"(subsets {r['filter_cv_accepted_success_range']})", flush=True)
        k *= 2
    out["tables"][name] = {"table": path, "candidates_per_edit": K, "by_k": rows}
with open(out_path + ".tmp", "w") as f:
    json.dump(out, f, indent=1)
os.replace(out_path + ".tmp", out_path)
