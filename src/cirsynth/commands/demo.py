from __future__ import annotations

import json
from typing import Literal, Optional


def demo(
    out: str = "demo_out",
    n: int = 8,
    seed: int = 0,
    edits_per_image: int = 1,
    inversion: Optional[Literal["null-text", "negative-prompt", "direct", "ddim", "ddpm"]] = None,
    num_steps: Optional[int] = None,
    candidates: Optional[int] = None,
    perturber: Literal["lexical", "llm"] = "lexical",
    captioner: bool = True,
    progress: bool = True,
) -> int:
    """The whole method on the mini world, scored against ground truth (what `make demo` runs).

    Renders reference scenes, runs the synthesis pipeline with the bundled world models
    (caption -> perturb -> invert -> edit -> filter -> write), judges each generated target against
    the ground-truth scene with the bundled attribute classifier, writes OUT/grid.png
    (reference | modification text | generated | ground truth) and, when at least three triplets are accepted
    (CIRR's img_set needs 6 distinct images), a CIRR export. It ends by listing what it wrote and what it skipped
    and why.

    Args:
        out: output folder.
        n: number of reference scenes.
        seed: seed for scenes and edits.
        edits_per_image: caption edits per scene.
        inversion: null-text | negative-prompt | direct | ddim | ddpm (default: the world recipe's).
        num_steps: DDIM steps (default: the world recipe's).
        candidates: candidates per edit, settings drawn from the recipe's grids (default: the recipe's); 0: a fixed
            sweep of three.
        perturber: lexical (world vocabulary) or llm (SmolLM2 + the bundled world LoRA adapter; slow on a CPU).
        captioner: caption references with the bundled world captioner (false: their true grammar captions).
        progress: progress bars.
    """
    from cirsynth.config import save_resolved_config
    from cirsynth.console import quiet_loading_bars
    from cirsynth.world.demo import DemoConfig, run_demo

    quiet_loading_bars()  # the models are small local folders; the stage bars show the progress

    cfg = DemoConfig(out=out, n=n, seed=seed, edits_per_image=edits_per_image, inversion=inversion,
                     num_steps=num_steps, candidates=candidates, perturber=perturber, captioner=captioner, progress=progress)
    result = run_demo(cfg)
    save_resolved_config(out, "demo", cfg.__dict__)
    print(json.dumps({k: result[k] for k in ("synthesis", "ground_truth", "grid")}, indent=2))
    return 0
