"""The data-scarcity experiment: how much do synthetic triplets help when real ones are few?

For each real fraction × arm × seed, train a CIR model with the one trainer and evaluate it on the same test split.
Arms: "real" (real only), "real+synthetic" (ours), and optional reference arms, e.g. "real+oracle" (the ground-truth
targets of the same references and edits) and "real+wrong-edit" (another valid edit's target: how our wrong edits
look). With ``steps`` every run gets the same optimisation budget (epochs = ceil(steps / steps per epoch)), so an arm
with more triplets does not win by training longer. Writes every run to a CSV, mean ± std and the paired difference
to real-only per seed (mean and 95% t-interval) to a Markdown table, and a plot of the metric against the real
fraction (the paper's figure).
"""

from __future__ import annotations

import csv
import dataclasses
import io
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from cirsynth.cir.data import CIRSplit, build_training_set
from cirsynth.cir.evaluate import evaluate_model
from cirsynth.cir.train import TrainConfig, train_cir
from cirsynth.config import atomic_write_bytes, atomic_write_text

SETTINGS = ("real", "real+synthetic")  # the two arms every experiment has; reference arms come after them
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
    references: dict[str, Sequence[CIRSplit]] | None = None,
    steps: int | None = None,
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
        references: reference arms, name -> splits mixed in like ``synthetic`` (e.g. {"oracle": [...],
            "wrong-edit": [...]}); each runs as "real+<name>".
        steps: optimisation steps per run (the same budget for every arm); None: ``train.epochs`` for all.
    """
    if not synthetic:
        raise ValueError("run_data_scarcity: needs at least one synthetic split for the real+synthetic runs")
    out = Path(train.out_dir)
    cache = train.cache_dir or str(out / "feature_cache")  # one cache: every run shares the frozen features
    metric = metric or DEFAULT_METRIC[test.kind]
    arms: dict[str, Sequence[CIRSplit]] = {"real": (), "real+synthetic": synthetic}
    for name, splits in (references or {}).items():
        if not splits:
            raise ValueError(f"run_data_scarcity: reference arm {name!r} has no splits")
        arms[f"real+{name}"] = splits
    rows: list[dict] = []
    for fraction in fractions:
        for setting, mixed in arms.items():
            for seed in seeds:
                parts = build_training_set(real, fraction, mixed, synthetic_ratio, seed)
                run_dir = out / "runs" / f"{fraction:g}-{setting.replace('+', '_')}-seed{seed}"
                epochs = train.epochs if steps is None else epochs_for_steps(parts, train.batch_size, steps)
                cfg = dataclasses.replace(train, out_dir=str(run_dir), seed=seed, cache_dir=cache, epochs=epochs)
                result = train_cir(parts, cfg)
                scores = evaluate_model(result.model_dir, test, cache_dir=cache)
                if metric not in scores:
                    raise ValueError(f"metric {metric!r} not among the evaluation's {sorted(scores)}")
                rows.append({"real_fraction": fraction, "setting": setting, "seed": seed, "n_real": result.n_real,
                             "n_synthetic": result.n_synthetic, "epochs": epochs,
                             "steps": epochs * steps_per_epoch(parts, train.batch_size),
                             "final_loss": result.epoch_losses[-1], **scores})
    return write_report(rows, out, metric)


def steps_per_epoch(parts, batch_size: int) -> int:
    """Optimiser steps of one epoch over ``parts`` (the trainer drops the last short batch when there is more than
    one batch)."""
    n = sum(len(p.queries) for p in parts)
    return n // batch_size if n > batch_size else 1


def epochs_for_steps(parts, batch_size: int, steps: int) -> int:
    """The fewest epochs that give at least ``steps`` optimiser steps."""
    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    return math.ceil(steps / steps_per_epoch(parts, batch_size))


def paired_differences(rows: list[dict], metric: str) -> list[dict]:
    """Per fraction and arm: the per-seed difference to real-only (same seed, hence the same real subset), its mean
    and 95% t-interval, and for "real+synthetic" its share of the oracle's mean gain when an oracle arm ran and its
    gain is real (95% interval above 0); a share of a gain that may be nothing, or a loss, would be noise."""
    from scipy import stats

    out = []
    for fraction in sorted({r["real_fraction"] for r in rows}):
        here = [r for r in rows if r["real_fraction"] == fraction]
        base = {r["seed"]: r[metric] for r in here if r["setting"] == "real"}
        for setting in dict.fromkeys(r["setting"] for r in here):
            if setting == "real":
                continue
            d = np.array([r[metric] - base[r["seed"]] for r in here if r["setting"] == setting and r["seed"] in base])
            if not len(d):
                continue
            half = float(stats.t.ppf(0.975, len(d) - 1) * d.std(ddof=1) / math.sqrt(len(d))) if len(d) > 1 else float("nan")
            out.append({"real_fraction": fraction, "setting": setting, "mean_diff": float(d.mean()),
                        "ci95_low": float(d.mean()) - half, "ci95_high": float(d.mean()) + half, "seeds": len(d)})
        oracle = next((r for r in out if r["real_fraction"] == fraction and r["setting"] == "real+oracle"), None)
        for r in out:
            if (r["real_fraction"] == fraction and r["setting"] == "real+synthetic" and oracle is not None
                    and oracle["ci95_low"] > 0):
                r["share_of_oracle_gain"] = r["mean_diff"] / oracle["mean_diff"]
    return out


def _settings(rows: list[dict]) -> list[str]:
    """The arms in ``rows``: the standard two first, then reference arms in order of appearance."""
    seen = list(dict.fromkeys(r["setting"] for r in rows))
    return [s for s in SETTINGS if s in seen] + [s for s in seen if s not in SETTINGS]


def _summary(rows: list[dict], metric: str) -> list[tuple[float, str, float, float, int]]:
    """(fraction, setting, mean, std, runs) for every cell, std over seeds (ddof=1; 0 for one run)."""
    cells = []
    for fraction in sorted({r["real_fraction"] for r in rows}):
        for setting in _settings(rows):
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
    settings = _settings(rows)
    lines = [f"# Data scarcity: {metric} (mean ± std over seeds)", "",
             "| real fraction | " + " | ".join(settings) + " |", "|---|" + "---|" * len(settings)]
    for fraction in sorted({c[0] for c in cells}):
        by = {c[1]: c for c in cells if c[0] == fraction}
        vals = [f"{by[s][2]:.2f} ± {by[s][3]:.2f} (n={by[s][4]})" if s in by else "—" for s in settings]
        lines.append(f"| {fraction:g} | " + " | ".join(vals) + " |")
    steps = sorted({r["steps"] for r in rows if "steps" in r})
    if steps:
        lines += ["", f"Optimisation steps per run: {steps[0]}–{steps[-1]}."]
    paired = paired_differences(rows, metric)
    if paired:
        lines += ["", f"## Paired difference to real-only ({metric}, same seed = same real subset; mean and 95% t-interval)",
                  "", "The share of the oracle's gain is given only where the oracle gains (its 95% interval above 0).", "", "| real fraction | arm | mean diff | 95% interval | seeds | share of oracle gain |",
                  "|---|---|---|---|---|---|"]
        for p in paired:
            share = f"{100 * p['share_of_oracle_gain']:.0f}%" if "share_of_oracle_gain" in p else "—"
            lines.append(f"| {p['real_fraction']:g} | {p['setting']} | {p['mean_diff']:+.2f} | "
                         f"[{p['ci95_low']:+.2f}, {p['ci95_high']:+.2f}] | {p['seeds']} | {share} |")
    md_path = out / "data_scarcity.md"
    atomic_write_text(md_path, "\n".join(lines) + "\n")

    fig, ax = plt.subplots(figsize=(5, 3.5))
    for setting in settings:
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
