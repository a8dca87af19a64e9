"""``cirsynth demo``: the whole method on the mini world, checked against ground truth.

1. render reference scenes and their captions;
2. run the synthesis pipeline (perturb with the world vocabulary -> invert -> edit -> filter -> write),
   with the bundled world models where they exist;
3. find each edit's ground-truth target scene and judge the generated image with the bundled
   attribute classifier: target attribute changed right, everything else preserved;
4. write a picture grid (reference | modification text | generated | ground truth), export CIRR.
"""

from __future__ import annotations

import dataclasses
import json
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageDraw

from cirsynth.config import atomic_write_text
from cirsynth.world.assets import bundled_models
from cirsynth.world.pictures import wrap_words
from cirsynth.world.evaluate import judge_edit
from cirsynth.world.ground_truth import ground_truth
from cirsynth.world.language import NUM_CAPTION_VARIANTS, caption, caption_variants
from cirsynth.world.render import render
from cirsynth.world.scene import measurement_rng, random_scene


GROUND_TRUTH_FILE = "ground_truth.jsonl"  # per-row verdicts in the dataset root (read by cirsynth.report.plots)


@dataclasses.dataclass
class DemoConfig:
    out: str = "demo_out"  # output folder (overwritten)
    n: int = 8  # reference scenes
    seed: int = 0  # scenes and perturbations
    edits_per_image: int = 1  # caption edits per scene
    # None: the world recipe's setting (``cirsynth.world.recipe``: chosen on seed-0 edits, filter calibrated there)
    inversion: str | None = None  # inversion method
    num_steps: int | None = None  # DDIM steps
    candidates: int | None = None  # candidates per edit (settings drawn from the recipe's grids); 0: the fixed sweep
    perturber: str = "lexical"  # lexical (world vocabulary) or llm (SmolLM2 + the bundled world LoRA adapter)
    captioner: bool = True  # caption with the bundled world captioner (False: the grammar's true captions)
    progress: bool = True  # progress bars


def _models(out: Path, log) -> dict[str, Any]:
    """The bundled world models, with an honest fallback for the ones not bundled yet."""
    bundled = bundled_models()
    models: dict[str, Any] = {"bundled": sorted(bundled)}
    if "diffusion" in bundled:
        models["editor"] = str(bundled["diffusion"])
    else:
        from cirsynth.testing.tiny_sd import save_tiny_sd

        log("NOTE: no trained world diffusion model is bundled yet: the editing stage runs with a RANDOM tiny "
            "Stable Diffusion pipeline. Every stage runs for real, but the generated pictures are noise and the "
            "ground-truth scores below measure that.")
        models["editor"] = str(save_tiny_sd(out / "models" / "tiny-sd-random", text_encoder="minilm", max_length=64))
    models["clip"] = str(bundled["clip"]) if "clip" in bundled else None
    if models["clip"] is None:
        log("NOTE: no world CLIP is bundled yet: filtering by CLIP is off (--no-filter); structure scores are still recorded.")
    models["classifier"] = str(bundled["classifier"]) if "classifier" in bundled else None
    models["captioner"] = str(bundled["captioner"]) if "captioner" in bundled else None
    models["perturber"] = str(bundled["perturber"]) if "perturber" in bundled else None
    return models


def run_demo(cfg: DemoConfig, log=print) -> dict[str, Any]:
    from cirsynth.data import TripletDataset
    from cirsynth.synth import Synthesizer

    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    models = _models(out, log)
    captioner = models["captioner"] if cfg.captioner else None
    if cfg.captioner and captioner is None:
        log("NOTE: no world captioner is bundled: the references keep their true grammar captions.")
    if cfg.perturber == "llm" and models["perturber"] is None:
        raise ValueError("demo --perturber llm needs the bundled world LoRA adapter (assets/world/perturber)")

    # 1. render reference scenes and captions
    rng = measurement_rng(cfg.seed, "demo")
    ref_dir = out / "references"
    ref_dir.mkdir(exist_ok=True)
    scenes = {}
    with open(out / "references.jsonl", "w") as f:
        for i in range(cfg.n):
            scene, variant = random_scene(rng), int(rng.integers(NUM_CAPTION_VARIANTS))
            if captioner:
                variant = 0  # the world captioner writes the canonical paraphrase
            name = f"scene{i:03d}.png"
            render(scene).save(ref_dir / name)
            scenes[name] = (scene, variant)
            row = {"image": f"references/{name}"} | ({} if captioner else {"caption": caption(scene, variant)})
            f.write(json.dumps(row) + "\n")
    log(f"1. rendered {cfg.n} reference scenes -> {ref_dir}")

    # 2. synthesize with the world models and the world recipe
    from cirsynth.synth.settings import resolve_synth_config
    from cirsynth.world.recipe import recipe_settings

    # every editing and filter setting from the recipe, as `synthesize --recipe world` takes them (None: the recipe's)
    synth_cfg = resolve_synth_config(dict(
        images=str(out / "references.jsonl"), out=str(out / "dataset"), editor=models["editor"], captioner=captioner,
        perturber=cfg.perturber, adapter=models["perturber"] if cfg.perturber == "llm" else None,
        edits_per_image=cfg.edits_per_image, inversion=cfg.inversion, num_steps=cfg.num_steps, candidates=cfg.candidates,
        # the recipe's filter reads the bundled captioner's re-captions too (recipe.json leaves the model out)
        recaptioner=models["captioner"], clip=models["clip"], no_filter=models["clip"] is None, split="train",
        seed=cfg.seed, progress=cfg.progress, batch_size=4,
    ), recipe_settings())
    summary = Synthesizer(synth_cfg).run(force_new=True)
    log(f"2. synthesized {summary.inputs} scenes in {summary.seconds:.0f} s: {summary.accepted} accepted, "
        f"{summary.rejected} rejected by the filter, {summary.failed} failed")

    # 3. ground truth and judging
    ds = TripletDataset(out / "dataset")
    rows, no_truth = [], Counter()
    for t in ds.triplets():
        if t.status == "failed":
            continue
        scene, variant = scenes[Path(t.provenance["input"]).name]
        gt = ground_truth(scene, variant, t.target_caption)
        why = None if gt is not None else no_ground_truth_reason(scene, t.reference_caption)
        if why:
            no_truth[why] += 1
        rows.append((t, scene, gt, why))
    scores = judge([r[:3] for r in rows], ds, models["classifier"])
    if no_truth:
        scores["no_ground_truth"] = dict(no_truth)
    if captioner:  # how often the captioner wrote the scene's exact caption (a wrong caption has no ground truth)
        scores["caption_exact"] = round(100.0 * float(np.mean([t.reference_caption == caption(s, 0) for t, s, *_ in rows])), 1) if rows else None
    log(f"3. judged {scores.get('all', {}).get('n', 0)} of {len(rows)} edits against ground truth"
        + "".join(f"; no ground truth for {k}: {why}" for why, k in no_truth.items()))

    # 4. picture grid and CIRR export
    grid = picture_grid([(ds.open_image(t.reference), t.modification_text, ds.open_image(t.target),
                          render(gt.target) if gt is not None else None, t.status, why) for t, _, gt, why in rows])
    grid.save(out / "grid.png")
    cirr = cirr_export(ds, out / "cirr_dataset", summary.accepted)
    result = {"models": models, "synthesis": summary.as_dict(), "ground_truth": scores,
              "grid": str(out / "grid.png"), "cirr_export": cirr}
    atomic_write_text(out / "demo_result.json", json.dumps(result, indent=2))
    log("4. wrote:")
    for what in written(out, ds, scores, cirr):
        log(f"   {what}")
    return result


def no_ground_truth_reason(scene, reference_caption: str | None) -> str:
    """Why an edit has no ground-truth target scene (``ground_truth`` found none)."""
    own = {" ".join(c.lower().split()) for c in caption_variants(scene)}
    if reference_caption is not None and " ".join(reference_caption.lower().split()) not in own:
        return "the captioner's caption is not the scene's"  # so the edit describes another scene
    return "no one-attribute change gives the target"  # e.g. an added object, whose look is random


def cirr_export(ds, dst: Path, accepted: int) -> dict[str, Any]:
    """Export the accepted triplets as CIRR, or say why not: ``{"written": pairs per split}`` or ``{"skipped": why}``."""
    from cirsynth.data import export_cirr
    from cirsynth.data.cirr import GROUP_SIZE

    if accepted == 0:
        return {"skipped": "no accepted triplets to export"}
    try:
        return {"written": export_cirr(ds, dst, overwrite=True)}
    except ValueError as e:  # too few accepted images for CIRR's groups of 6
        return {"skipped": f"{e}: CIRR's img_set needs {GROUP_SIZE} distinct images, each accepted triplet gives 2 "
                           f"({accepted} accepted); run with a larger --n"}


def written(out: Path, ds, scores: dict[str, Any], cirr: dict[str, Any]) -> list[str]:
    """One line per output of the demo: what was written, and what was skipped and why."""
    d = scores  # the judge's counts
    lines = [f"{ds.root}: TripletDataset, {len(ds)} rows (every row kept, rejected and failed with the reason)",
             f"{out / 'grid.png'}: reference | modification | generated | ground truth, one row per edit",
             (f"{ds.root / GROUND_TRUTH_FILE}: {d['all']['n']} per-edit verdicts" if "all" in d
              else f"skipped {GROUND_TRUTH_FILE}: {d.get('note', 'no edit has ground truth')}")]
    if "written" in cirr:
        lines.append(f"{out / 'cirr_dataset'}: CIRR export, pairs per split {cirr['written']}")
    else:
        lines.append(f"skipped the CIRR export: {cirr['skipped']}")
    lines.append(f"{out / 'demo_result.json'}: every figure above")
    return lines


def judge(rows, ds, classifier_dir: str | None) -> dict[str, Any]:
    """Edit success against ground truth, by the bundled attribute classifier.

    Success = every attribute the ground-truth edit changes reads as its new value on the generated
    image AND every other attribute reads as on the reference scene (preservation).
    """
    out: dict[str, Any] = {"edits": len(rows), "with_ground_truth": sum(gt is not None for _, _, gt in rows)}
    if classifier_dir is None or not rows:
        out["note"] = "no attribute classifier bundled" if classifier_dir is None else "no edits to judge"
        return out
    from cirsynth.world.classifier import AttributeClassifier

    clf = AttributeClassifier.from_pretrained(classifier_dir)
    judged = [(t, s, gt) for t, s, gt in rows if gt is not None]
    preds = clf.predict([ds.open_image(t.target) for t, _, _ in judged]) if judged else []
    per: dict[str, dict[str, list[bool]]] = {}
    verdicts = []
    for (t, scene, gt), pred in zip(judged, preds):
        target_ok, preserved = judge_edit(pred, scene, gt.target)
        verdicts.append({"id": t.id, "success": target_ok and preserved, "target": target_ok, "preserved": preserved})
        for key in (t.status, "all"):
            d = per.setdefault(key, {"target": [], "preserved": [], "success": []})
            d["target"].append(target_ok)
            d["preserved"].append(preserved)
            d["success"].append(target_ok and preserved)
    for key, d in per.items():
        out[key] = {k: round(100.0 * float(np.mean(v)), 1) for k, v in d.items()} | {"n": len(d["success"])}
    # Each judged row's verdict beside the manifest: `cirsynth gallery` plots the filter's precision from it.
    atomic_write_text(ds.root / GROUND_TRUTH_FILE, "".join(json.dumps(v) + "\n" for v in verdicts))
    return out


def picture_grid(rows, cell: int = 128) -> Image.Image:
    """Rows of (reference | modification text | generated | ground truth); a row without ground truth says why.

    Args:
        rows: ``(reference, modification text, generated, ground-truth image or None, status, why no truth)``.
    """
    cols = ["reference", "modification", "generated", "ground truth"]
    head = 18
    grid = Image.new("RGB", (cell * 4, head + cell * max(1, len(rows))), "white")
    draw = ImageDraw.Draw(grid)
    for j, c in enumerate(cols):
        draw.text((j * cell + 4, 3), c, fill="black")
    for i, (ref, text, gen, gt, status, why) in enumerate(rows):
        y = head + i * cell
        grid.paste(ref.resize((cell, cell), Image.NEAREST), (0, y))
        draw.multiline_text((cell + 4, y + 8), "\n".join(wrap_words(text, 20) + ["", f"[{status}]"]), fill="black")
        grid.paste(gen.resize((cell, cell), Image.NEAREST), (2 * cell, y))
        if gt is not None:
            grid.paste(gt.resize((cell, cell), Image.NEAREST), (3 * cell, y))
        else:
            note = ["no ground truth:"] + wrap_words(why or "", 20)
            draw.multiline_text((3 * cell + 4, y + 8), "\n".join(note), fill="red")
    return grid
