"""What the seed-0 filter studies in this folder share: scores standardised as calibrate-filter does, and the
cross-validated figures of a candidate model as the filter would use it."""
import numpy as np
from sklearn.metrics import roc_auc_score


def standardise(a, b):
    """Clip to the training rows' 1st-99th percentiles and standardise, as calibrate.fit_learned does."""
    lo, hi = np.percentile(a, 1, 0), np.percentile(a, 99, 0)
    a, b = np.clip(a, lo, hi), np.clip(b, lo, hi)
    m, s = a.mean(0), a.std(0)
    s[s == 0] = 1
    return (a - m) / s, (b - m) / s


def measure(fit_predict, E, y, partitions=(0, 1, 2), folds=4, target=0.8, min_accepted=0.1):
    """Cross-validate ``fit_predict(train rows, held-out rows) -> probabilities`` over ``folds`` folds of edits (``E``:
    each candidate's edit; ``y``: whether it is right), for each fold partition: held-out ROC AUC over candidates;
    then, as the filter works, each edit keeps its most probable candidate, the edits are ranked by that probability
    and accepted down to the lowest probability where the accepted ones are still >= ``target`` right (>=
    ``min_accepted`` of edits), giving the number accepted, their precision and the number right among them; and how
    often the kept candidate is right at all. Mean over the partitions."""
    edits = sorted(set(E.tolist()))
    figs = []
    for s in partitions:
        order = np.random.default_rng(s).permutation(len(edits))
        p = np.zeros(len(y))
        for k in range(folds):
            held = np.isin(E, np.array(edits)[order[k::folds]])
            p[held] = fit_predict(np.where(~held)[0], np.where(held)[0])
        best_p, best_right = [], []
        for e in edits:
            i = np.where(E == e)[0]
            j = i[np.argmax(p[i])]
            best_p.append(p[j]); best_right.append(y[j])
        best_p, best_right = np.array(best_p), np.array(best_right)
        o = np.argsort(-best_p, kind="stable")
        hits = np.cumsum(best_right[o])
        prec = hits / np.arange(1, len(o) + 1)
        ok = [k for k in range(int(np.ceil(min_accepted * len(o))), len(o) + 1) if prec[k - 1] >= target]
        k = max(ok) if ok else 0
        figs.append([roc_auc_score(y, p), k, 100 * prec[k - 1] if k else 0, hits[k - 1] if k else 0,
                     100 * best_right.mean()])
    m = np.mean(figs, 0)
    return {"auc": round(m[0], 3), "accepted": round(m[1], 1), "precision": round(m[2], 1),
            "accepted_right": round(m[3], 1), "kept_candidate_right": round(m[4], 1)}


def kept_by_partition(cands, probabilities=None, partitions=(0, 1, 2), target=0.8, min_accepted=0.1):
    """For each fold partition ``s`` of ``cands`` (a list of edits, each a list of candidate rows):
    ``(best_p, kept_right, cv)``: each edit's most probable candidate's held-out probability, whether that kept
    candidate is right, and the filter's figures at the threshold calibrate-filter would choose on them (as
    calibrate.cross_validate_learned). ``probabilities(cands, s)`` gives every candidate's held-out probability, edit
    by edit (default: calibrate.held_out_probabilities, the learned filter itself)."""
    from cirsynth.world.calibrate import _best_per_edit, held_out_probabilities, learned_threshold

    probabilities = probabilities or (lambda cs, s: held_out_probabilities(cs, seed=s))
    for s in partitions:
        flat = np.array([v for ps in probabilities(cands, s) for v in ps], dtype=float)
        best_p, kept_right = _best_per_edit(cands, flat)
        yield best_p, kept_right, learned_threshold(best_p, kept_right, target, min_accepted)[1]


def within_auc(cands, f):
    """ROC AUC within edits: each edit's AUC (right against wrong candidates of that edit), weighted by its number of
    right-wrong pairs."""
    wins = pairs = 0.0
    for cs in cands:
        y = [bool(c["right"]) for c in cs]
        if any(y) and not all(y):
            k = sum(y) * (len(y) - sum(y))
            wins += roc_auc_score(y, [c["scores"][f] for c in cs]) * k
            pairs += k
    return wins / pairs
