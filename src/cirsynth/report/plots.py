"""Plots of a run (matplotlib PNGs under ``ROOT/report/``), also shown by the gallery.

- ``score_<name>.png``: each filter score's histogram by filter status, with the run's threshold;
- ``acceptance_by_edit_type.png``: accepted / rejected / failed per edit type (curated status);
- ``failures.png``: rejections by rule and failures by stage and reason;
- ``precision_by_edit_type.png``: for a world run, the filter's precision per edit type against ground truth
  (rows need a ground-truth verdict: ``ROOT/ground_truth.jsonl`` lines ``{"id": ..., "success": true|false}``,
  as ``cirsynth demo`` writes). Without one the plot is skipped and the summary says why.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np

from cirsynth.config import atomic_write_bytes
from cirsynth.data.errors import DataError
from cirsynth.data.io_utils import read_jsonl
from cirsynth.report.manifest import ManifestView

REPORT_DIR = "report"
GROUND_TRUTH_FILE = "ground_truth.jsonl"
STATUS_COLORS = {"accepted": "#2e7d32", "rejected": "#c62828", "failed": "#757575"}


def _save(fig, path: Path) -> None:
    import io

    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100, bbox_inches="tight")
    plt.close(fig)
    atomic_write_bytes(path, buf.getvalue())


def read_ground_truth(root: Path) -> dict[str, bool]:
    """Triplet id -> whether the edit is right on ground truth (empty when the run has no such file)."""
    path = root / GROUND_TRUTH_FILE
    if not path.is_file():
        return {}
    try:
        rows = read_jsonl(path)
    except ValueError as e:
        raise DataError(str(e), file=str(path)) from e
    out = {}
    for k, r in enumerate(rows, 1):
        if not isinstance(r, dict) or not isinstance(r.get("id"), str) or not isinstance(r.get("success"), bool):
            raise DataError('each line must be {"id": "<triplet id>", "success": true|false}', file=str(path), entry=k)
        out[r["id"]] = r["success"]
    return out


def make_plots(view: ManifestView, decisions: dict[str, dict[str, str]] | None = None) -> dict[str, Any]:
    """Write the plots of ``view``'s dataset under ``ROOT/report/``; returns {"plots": [relative paths], "notes": [...]}."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    out_dir = view.root / REPORT_DIR
    out_dir.mkdir(exist_ok=True)
    plots: list[str] = []
    notes: list[str] = []
    curated = view.curated_status(decisions or {})

    # 1. a histogram per filter score, by the filter's status, with the run's threshold
    thresholds = view.thresholds()
    for name in view.score_names:
        v = view.scores[name]
        fig, ax = plt.subplots(figsize=(5, 3))
        finite = v[np.isfinite(v)]
        bins = np.histogram_bin_edges(finite, bins=30) if len(finite) else 10
        for status, color in STATUS_COLORS.items():
            sel = v[(view.filter_status == status) & np.isfinite(v)]
            if len(sel):
                ax.hist(sel, bins=bins, alpha=0.6, color=color, label=f"{status} ({len(sel)})")
        if name in thresholds:
            ax.axvline(thresholds[name], color="black", linestyle="--", label=f"threshold {thresholds[name]:g}")
        ax.set_xlabel(name)
        ax.set_ylabel("triplets")
        ax.set_title(f"{name} (filter status)")
        ax.legend(fontsize=7, loc="upper right")
        _save(fig, out_dir / f"score_{name}.png")
        plots.append(f"{REPORT_DIR}/score_{name}.png")
    if not view.score_names:
        notes.append("no scores in the manifest: no score histograms")

    # 2. acceptance by edit type (curated status)
    types = view.edit_types()
    if len(view):
        fig, ax = plt.subplots(figsize=(max(4, 0.8 * len(types) + 2), 3))
        bottom = np.zeros(len(types))
        labels = [t or "(none)" for t in types]
        for status, color in STATUS_COLORS.items():
            counts = np.array([np.sum((view.edit_type == t) & (curated == status)) for t in types], dtype=float)
            ax.bar(labels, counts, bottom=bottom, color=color, label=status)
            bottom += counts
        for x, (t, total) in enumerate(zip(types, bottom)):
            acc = np.sum((view.edit_type == t) & (curated == "accepted"))
            ax.text(x, total, f"{100 * acc / total:.0f}%", ha="center", va="bottom", fontsize=8)
        ax.set_ylabel("triplets")
        ax.set_title("acceptance by edit type (% accepted)")
        ax.legend(fontsize=7, loc="upper right")
        _save(fig, out_dir / "acceptance_by_edit_type.png")
        plots.append(f"{REPORT_DIR}/acceptance_by_edit_type.png")

    # 3. failures by stage and reason, rejections by rule (the filter's own verdicts)
    c: Counter = Counter()
    for s, reason, rules in zip(view.filter_status, view.filter_reason, view.rules):
        if s == "rejected":
            c.update(f"rejected: {r}" for r in rules)
        elif s == "failed":
            stage, _, why = (reason or "").partition(": ")
            c[f"failed at {stage}: {why[:50]}"] += 1
    if c:
        items = c.most_common(20)[::-1]
        fig, ax = plt.subplots(figsize=(7, 0.3 * len(items) + 1.2))
        ax.barh([k for k, _ in items], [v for _, v in items],
                color=["#c62828" if k.startswith("rejected") else "#757575" for k, _ in items])
        ax.set_xlabel("triplets")
        ax.set_title("rejections by rule, failures by stage and reason")
        ax.tick_params(axis="y", labelsize=7)
        _save(fig, out_dir / "failures.png")
        plots.append(f"{REPORT_DIR}/failures.png")
    else:
        notes.append("no rejected or failed triplets: no failure plot")

    # 4. world runs: precision of the filter by edit type against ground truth
    gt = read_ground_truth(view.root)
    judged = [i for i, t in enumerate(view.ids) if t in gt and view.filter_status[i] == "accepted"]
    if judged:
        fig, ax = plt.subplots(figsize=(max(4, 0.8 * len(types) + 2), 3))
        prec, ns = [], []
        for t in types:
            sel = [gt[view.ids[i]] for i in judged if view.edit_type[i] == t]
            ns.append(len(sel))
            prec.append(100.0 * np.mean(sel) if sel else 0.0)
        ax.bar([t or "(none)" for t in types], prec, color="#1565c0")
        for x, (p, n) in enumerate(zip(prec, ns)):
            ax.text(x, p, f"n={n}", ha="center", va="bottom", fontsize=8)
        ax.set_ylim(0, 105)
        ax.set_ylabel("right among accepted (%)")
        ax.set_title("filter precision by edit type (ground truth)")
        _save(fig, out_dir / "precision_by_edit_type.png")
        plots.append(f"{REPORT_DIR}/precision_by_edit_type.png")
    else:
        notes.append(f"no ground-truth verdicts for accepted triplets ({GROUND_TRUTH_FILE} absent or empty): "
                     "filter precision by edit type skipped (world runs made by `cirsynth demo` have them)")
    result = {"plots": plots, "notes": notes}
    atomic_write_bytes(out_dir / "plots.json", json.dumps(result, indent=1).encode())
    return result
