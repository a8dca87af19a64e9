"""A filter's figures on a saved candidate table (`world evaluate --json_out`, or a calibration's _candidates.json
wrapped the same way): which edits it accepts and how many of them are right, with each score's ROC AUC.

The filter's decisions depend only on the candidates' scores, so this gives exactly what `world evaluate` reports for
that filter on those edits, without generating them again (checked: the table of
docs/results/world_evaluate.json with the recipe it ran gives its 6 accepted, 16.7% precision, 1.0% accepted and right).

    .venv/bin/python docs/results/world_filter_figures.py RECIPE.json docs/results/world_evaluate.json
"""
import json, sys
import numpy as np
from cirsynth.synth.filters import RULES
from cirsynth.world.calibrate import filter_outcome
from cirsynth.world.evaluate import score_auc

rec = json.load(open(sys.argv[1]))
ev = json.load(open(sys.argv[2]))
rows = ev["methods"]["null-text"]["candidate_table"]
E = max(r["edit"] for r in rows) + 1
K = max(r["candidate"] for r in rows) + 1
names = [n for n, _ in RULES if all(n in r["scores"] for r in rows)]
scores = {n: np.full((E, K), -np.inf) for n in names}
valid = np.zeros((E, K), bool); right = np.zeros((E, K), bool); pres = np.zeros((E, K), bool)
for r in rows:
    i, k = r["edit"], r["candidate"]
    valid[i, k] = True; right[i, k] = r["right"]; pres[i, k] = r["preserved"]
    for n in names:
        scores[n][i, k] = r["scores"][n]
f = rec["filter"]
th = {n: f[a] for n, a in RULES if n in names}
prec, succ, acc = filter_outcome(scores, valid, right, th, f["rank_by"])
# preserved among accepted
passed = valid.copy()
for n, t in th.items():
    if t is not None: passed &= scores[n] >= t
best = np.where(passed, scores[f["rank_by"]], -np.inf).argmax(1); accd = passed.any(1)
print(json.dumps({"filter": {k: v for k, v in f.items()}, "figures": {"accepted": acc, "precision": round(100*prec, 1),
      "accepted_success": round(100*succ, 1), "preserved_after_filter": round(100*float(pres[np.arange(E), best][accd].mean()), 1) if acc else None,
      "any_candidate_right": round(100*float(right.any(1).mean()), 1)},
      "auc": score_auc([{"scores": r["scores"], "right": r["right"]} for r in rows]),
      "search_on_tuning_edits": (rec.get("calibration") or {}).get("search")}, indent=1))
