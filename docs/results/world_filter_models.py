"""Which kind of model the learned filter should be, compared on seed-0 tuning candidates only (never the reported seed).

The same 13 scores `calibrate-filter` reads, five model families: the logistic model it fits (C 0.3 and 1), the
logistic model with each score also taken relative to the mean over its edit's candidates, the logistic model with
every score crossed with the edit type, and gradient-boosted trees (scikit-learn's HistGradientBoosting, depth 3, the
type as a category) on the scores alone and with the relative scores. Each is cross-validated over 4 folds of edits,
3 fold partitions (mean): held-out ROC AUC over candidates; then, as the filter works, each edit keeps its most
probable candidate, the edits are ranked by that probability and accepted down to the lowest probability where the
accepted ones are still >= 80% right (>= 10% of edits), giving the number accepted, their precision and the number
right among them; and how often the kept candidate is right at all.

    OMP_NUM_THREADS=1 .venv/bin/python docs/results/world_filter_models.py CANDIDATES.json
"""
import json
import sys

import numpy as np
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.linear_model import LogisticRegression

from filter_cv import measure, standardise

rows = json.load(open(sys.argv[1]))
feats = list(rows[0]["scores"])
types = sorted({r["edit_type"] for r in rows})
edits = sorted({r["edit"] for r in rows})
X = np.array([[r["scores"][f] for f in feats] for r in rows], float)
y = np.array([bool(r["right"]) for r in rows])
E = np.array([r["edit"] for r in rows])
T = np.array([types.index(r["edit_type"]) for r in rows])


def relative(Z, idx):
    """Each row minus the mean of its edit's rows."""
    R, owner = Z.copy(), E[idx]
    for e in np.unique(owner):
        R[owner == e] = Z[owner == e] - Z[owner == e].mean(0)
    return R


def crossed(Z, idx):
    onehot = np.eye(len(types))[T[idx]]
    return np.hstack([Z, onehot, (Z[:, :, None] * onehot[:, None, :]).reshape(len(Z), -1)])


def logistic(C, extra=None):
    def fit_predict(tr, te):
        a, b = standardise(X[tr], X[te])
        if extra is not None:
            a, b = extra(a, tr), extra(b, te)
        return LogisticRegression(C=C, max_iter=5000).fit(a, y[tr]).predict_proba(b)[:, 1]
    return fit_predict


def trees(with_relative):
    def fit_predict(tr, te):
        a, b = standardise(X[tr], X[te])
        if with_relative:
            a, b = np.hstack([a, relative(a, tr)]), np.hstack([b, relative(b, te)])
        a, b = np.hstack([a, T[tr, None]]), np.hstack([b, T[te, None]])
        gb = HistGradientBoostingClassifier(categorical_features=[a.shape[1] - 1], max_iter=200, learning_rate=0.05,
                                            max_depth=3, min_samples_leaf=30, l2_regularization=1.0, random_state=0)
        return gb.fit(a, y[tr]).predict_proba(b)[:, 1]
    return fit_predict


MODELS = {
    "logistic C 0.3 (calibrate-filter's)": logistic(0.3),
    "logistic C 1": logistic(1.0),
    "logistic + scores relative to the edit's mean": logistic(0.3, lambda Z, idx: np.hstack([Z, relative(Z, idx)])),
    "logistic, scores x edit type, C 0.1": logistic(0.1, crossed),
    "logistic, scores x edit type, C 0.03": logistic(0.03, crossed),
    "boosted trees": trees(False),
    "boosted trees + relative scores": trees(True),
}
print(f"{len(edits)} edits, {len(rows)} candidates, {y.mean():.1%} right", flush=True)
for name, fp in MODELS.items():
    print(name, json.dumps(measure(fp, E, y)), flush=True)
