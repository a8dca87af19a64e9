from __future__ import annotations

import json
from typing import Literal, Optional


def data_scarcity(
    base: str,
    real: str,
    test: str,
    out_dir: str,
    synthetic: list[str] = [],
    oracle: list[str] = [],
    wrong_edit: list[str] = [],
    steps: Optional[int] = None,
    fractions: list[float] = [0.1, 0.3, 0.5, 1.0],
    seeds: list[int] = [0, 1, 2],
    synthetic_ratio: Optional[float] = None,
    metric: Optional[str] = None,
    stage: Literal["combiner", "clip"] = "combiner",
    epochs: int = 10,
    batch_size: int = 128,
    lr: float = 2e-5,
    projection_dim: Optional[int] = None,
    hidden_dim: Optional[int] = None,
    mixed_precision: Literal["no", "fp16", "bf16"] = "no",
    cpu: bool = False,
    model: Literal["combiner", "blip"] = "combiner",
) -> int:
    """Train CIR models on a real-data fraction x {real only, real + synthetic, reference arms} x seeds grid.

    Writes a CSV, a Markdown table (with paired differences to real-only and their 95% intervals) and a PNG plot.

    Dataset specs as in ``train-cir`` (``triplets:<root>[:<split>]``, ``cirr:<root>:<split>``,
    ``fashioniq:<root>:<category>:<split>``).

    Args:
        base: the model every run starts from: a CLIP hub id or folder (--model combiner), or a BLIP one
            (--model blip).
        real: real training dataset spec.
        test: evaluation dataset spec.
        out_dir: experiment folder (data_scarcity.csv/.md/.png, runs/, feature_cache/).
        synthetic: synthetic dataset specs mixed in for the real+synthetic runs.
        oracle: reference arm "real+oracle": the ground-truth targets of the same references and edits as
            --synthetic (in the mini world: `cirsynth world controls`).
        wrong_edit: reference arm "real+wrong-edit": the same references and texts with another valid edit's target.
        steps: optimisation steps per run, the same for every arm (epochs = ceil(steps / steps per epoch));
            unset: --epochs for every run (arms with more triplets then train longer).
        fractions: real-data fractions.
        seeds: seeds per cell (>= 3 for a std).
        synthetic_ratio: synthetic triplets per real one; unset = all.
        metric: metric to tabulate and plot (default: R@1, CIRR's (R@5+Rsubset@1)/2, FashionIQ's avg).
        stage: trainer stage for every run.
        epochs: epochs per run.
        batch_size: triplets per step.
        lr: learning rate.
        projection_dim: Combiner projection width (default 4x feature size).
        hidden_dim: Combiner hidden width (default 8x feature size).
        mixed_precision: accelerate mixed precision.
        cpu: force CPU.
        model: "combiner" (CLIP4Cir) or "blip" (BlipCIR), as in train-cir.
    """
    from cirsynth.cir import TrainConfig, load_split, run_data_scarcity
    from cirsynth.config import save_resolved_config

    params = dict(locals())
    if not synthetic:
        raise SystemExit("experiment data-scarcity: give at least one --synthetic dataset")
    config = TrainConfig(clip=base, out_dir=out_dir, model=model, stage=stage, epochs=epochs, batch_size=batch_size,
                         lr=lr, projection_dim=projection_dim, hidden_dim=hidden_dim, mixed_precision=mixed_precision,
                         cpu=cpu)
    save_resolved_config(out_dir, "experiment-data-scarcity", params)
    report = run_data_scarcity(load_split(real), [load_split(s) for s in synthetic], load_split(test), config,
                               fractions, seeds, synthetic_ratio, metric,
                               references={name: [load_split(x) for x in specs] for name, specs in
                                           (("oracle", oracle), ("wrong-edit", wrong_edit)) if specs},
                               steps=steps)
    print(report.markdown_path.read_text())
    print(json.dumps({"csv": str(report.csv_path), "markdown": str(report.markdown_path),
                      "plot": str(report.plot_path)}))
    return 0
