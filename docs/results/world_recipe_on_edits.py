"""A recipe's filter, as it stands, on edits of a candidate table it was not fitted on: each candidate judged by
`EditFilter.judge` with the recipe's `FilterConfig` (its learned model and thresholds), each edit's kept candidate
chosen by `pick_best` (`world.evaluate.keep_candidate`, as `world evaluate` does), then accepted when it passes.
Gives, for edits [FIRST, END) of the table: accepted edits, precision (right among accepted), accepted and right,
rest preserved among accepted, and the kept candidate right whether accepted or not.

Used on seed-0 edits the recipe's calibration did not see (e.g. edits 192-383 of a 384-edit calibration table when
the recipe was calibrated on the first 192): a held-out reading on the tuning seed.

Usage (repo root): PYTHONPATH=src .venv/bin/python docs/results/world_recipe_on_edits.py RECIPE TABLE FIRST END
"""
import json
import sys

from cirsynth.synth.filters import EditFilter
from cirsynth.world.evaluate import candidates_by_edit, keep_candidate
from cirsynth.world.recipe import load_recipe

recipe_path, table_path, first, end = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
recipe = load_recipe(recipe_path)
filt = EditFilter(recipe.filter)  # no CLIP or captioner: the table's scores are judged as they are
edits = candidates_by_edit(json.load(open(table_path)), end)[first:]
accepted = right = preserved = kept_right = 0
for cands in edits:
    verdicts, best = keep_candidate(filt, cands, recipe.filter.rank_by)
    kept = cands[best]
    kept_right += bool(kept["right"])
    if verdicts[best].passed:
        accepted += 1
        right += bool(kept["right"])
        preserved += bool(kept["preserved"])
n = len(edits)
out = {"recipe": recipe_path, "table": table_path, "edits": [first, end], "n": n, "accepted": accepted,
       "precision": round(100 * right / accepted, 1) if accepted else None,
       "accepted_success": round(100 * right / n, 1),
       "preserved_among_accepted": round(100 * preserved / accepted, 1) if accepted else None,
       "kept_right": kept_right}
print(json.dumps(out))
