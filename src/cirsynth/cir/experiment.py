"""The data-scarcity experiment: how much do synthetic triplets help when real ones are few?

For each real fraction × {real only, real + synthetic} × seed, train a CIR model with the one
trainer and evaluate it on the same test split; write every run to a CSV, the mean ± std to a
Markdown table and a plot of the chosen metric against the real fraction (the paper's figure).
"""

from __future__ import annotations

import csv
import dataclasses
import io
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from cirsynth.cir.data import CIRSplit, build_training_set
from cirsynth.cir.evaluate import evaluate_model
from cirsynth.cir.train import TrainConfig, train_cir
from cirsynth.config import atomic_write_bytes, atomic_write_text

SETTINGS = ("real", "real+synthetic")
DEFAULT_METRIC = {"generic": "R@1", "cirr": "(R@5+Rsubset@1)/2", "fashioniq": "avg"}


@dataclass
class ScarcityReport:
    """Files the experiment wrote and the per-run rows."""

    csv_path: Path  # one row per (fraction, setting, seed)
    markdown_path: Path  # mean ± std per (fraction, setting)
    plot_path: Path  # metric against real fraction, one line per setting
    rows: list[dict]  # the CSV's rows
    metric: str  # the metric in the table headline and the plot


def run_data_scarcity(
    real: CIRSplit,
    synthetic: Sequence[CIRSplit],
    test: CIRSplit,
    train: TrainConfig,
    fractions: Sequence[float] = (0.1, 0.3, 0.5, 1.0),
    seeds: Sequence[int] = (0, 1, 2),
    synthetic_ratio: float | None = None,
    metric: str | None = None,
) -> ScarcityReport:
    """Run the grid and write ``data_scarcity.{csv,md,png}`` into ``train.out_dir``.

    Args:
        real: real training split; synthetic: synthetic splits mixed in for the "real+synthetic" runs.
        test: evaluation split (the same for every run).
        train: trainer settings shared by every run; ``out_dir`` is the experiment folder (each run
            gets ``runs/<fraction>-<setting>-seed<seed>``) and ``seed`` is replaced per run.
        fractions: real-data fractions; seeds: seeds (the real subsets are nested per seed).
        synthetic_ratio: synthetic per real query (None: all synthetic queries).
        metric: metric for the table headline and the plot (default: per test kind, see DEFAULT_METRIC).
    """
    if not synthetic:
        raise ValueError("run_data_scarcity: needs at least one synthetic split for the real+synthetic runs")
    out = Path(train.out_dir)
    cache = train.cache_dir or str(out / "feature_cache")  # one cache: every run shares the frozen features
    metric = metric or DEFAULT_METRIC[test.kind]
    rows: list[dict] = []
    for fraction in fractions:
        for setting in SETTINGS:
            for seed in seeds:
                parts = build_training_set(real, fraction, synthetic if setting != "real" else (),
                                           synthetic_ratio, seed)
                run_dir = out / "runs" / f"{fraction:g}-{setting.replace('+', '_')}-seed{seed}"
                cfg = dataclasses.replace(train, out_dir=str(run_dir), seed=seed, cache_dir=cache)
                result = train_cir(parts, cfg)
                scores = evaluate_model(result.model_dir, test, cache_dir=cache)
                if metric not in scores:
                    raise ValueError(f"metric {metric!r} not among the evaluation's {sorted(scores)}")
                rows.append({"real_fraction": fraction, "setting": setting, "seed": seed, "n_real": result.n_real,
                             "n_synthetic": result.n_synthetic, "final_loss": result.epoch_losses[-1], **scores})
    return write_report(rows, out, metric)


def _summary(rows: list[dict], metric: str) -> list[tuple[float, str, float, float, int]]:
    """(fraction, setting, mean, std, runs) for every cell, std over seeds (ddof=1; 0 for one run)."""
    cells = []
    for fraction in sorted({r["real_fraction"] for r in rows}):
        for setting in SETTINGS:
            vals = np.array([r[metric] for r in rows if r["real_fraction"] == fraction and r["setting"] == setting])
            if len(vals):
                std = float(vals.std(ddof=1)) if len(vals) > 1 else 0.0
                cells.append((fraction, setting, float(vals.mean()), std, len(vals)))
    return cells


def write_report(rows: list[dict], out_dir: str | Path, metric: str) -> ScarcityReport:
    """Write the CSV, the Markdown table and the PNG plot for ``rows``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out = Path(out_dir)
    fields = list(dict.fromkeys(k for r in rows for k in r))
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=fields)
    writer.writeheader()
    writer.writerows(rows)
    csv_path = out / "data_scarcity.csv"
    atomic_write_text(csv_path, buf.getvalue())

    cells = _summary(rows, metric)
    lines = [f"# Data scarcity: {metric} (mean ± std over seeds)", "",
             "| real fraction | " + " | ".join(SETTINGS) + " |", "|---|" + "---|" * len(SETTINGS)]
    for fraction in sorted({c[0] for c in cells}):
        by = {c[1]: c for c in cells if c[0] == fraction}
        vals = [f"{by[s][2]:.2f} ± {by[s][3]:.2f} (n={by[s][4]})" if s in by else "—" for s in SETTINGS]
        lines.append(f"| {fraction:g} | " + " | ".join(vals) + " |")
    md_path = out / "data_scarcity.md"
    atomic_write_text(md_path, "\n".join(lines) + "\n")

    fig, ax = plt.subplots(figsize=(5, 3.5))
    for setting in SETTINGS:
        pts = [c for c in cells if c[1] == setting]
        if pts:
            x, m, s = (np.array([p[i] for p in pts]) for i in (0, 2, 3))
            ax.plot(x * 100, m, marker="o", label=setting)
            ax.fill_between(x * 100, m - s, m + s, alpha=0.2)
    ax.set_xlabel("real training triplets (%)")
    ax.set_ylabel(f"{metric} (%)")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    png = io.BytesIO()
    fig.savefig(png, format="png", dpi=120)
    plt.close(fig)
    plot_path = out / "data_scarcity.png"
    atomic_write_bytes(plot_path, png.getvalue())
    return ScarcityReport(csv_path, md_path, plot_path, rows, metric)
