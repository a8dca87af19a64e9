"""``cirsynth world evaluate``: the editing engine and the filter measured against ground truth.

For each inversion method, on rendered reference scenes and ground-truth one-attribute edits
(``apply_edit``, every world edit type in turn):
- reconstruction PSNR (dB) of the reconstructed reference against the rendered one, and the attribute
  classifier's accuracy on the reconstruction (the ceiling of "preserved");
- the classifier's attribute accuracy on the generated images against the ground-truth target scene;
- edit success by the attribute classifier: every attribute the edit names reads as its new
  value on the generated image ("target") AND every other attribute reads as on the reference
  ("preserved"); per edit type and overall;
- the editing step alone, beside it: every other attribute reads as on the method's plain
  reconstruction ("kept_as_reconstructed"), and "success_vs_reconstruction" = target AND that;
- the CLIP filter's precision and recall against ground-truth success (what it accepts that
  truly succeeded, and what truly succeeded that it accepts);
- the share of each object word's cross-attention that falls inside its object (LocalBlend's raw material);
- the generator's own ceiling: plain text-to-image from each target caption (no reference, no inversion), read by
  the classifier against the target scene. An edit can hardly draw an attribute the model cannot draw from text.
"""

from __future__ import annotations

import dataclasses
from collections import Counter
from typing import Any

import numpy as np

from cirsynth.metrics import psnr
from cirsynth.world.language import WORLD_EDIT_TYPES, apply_edit
from cirsynth.world.render import render
from cirsynth.world.scene import random_scene, scene_diff, scene_labels


@dataclasses.dataclass
class WorldEvalConfig:
    editor: str  # diffusion pipeline folder or id (the bundled world model by default in the command)
    classifier: str  # attribute classifier folder (the judge)
    clip: str | None = None  # CLIP folder for the filter; None: filter precision/recall not measured
    methods: tuple[str, ...] = ("null-text", "negative-prompt", "direct", "ddim")  # inversion methods compared
    n: int = 16  # reference scenes (each gets one edit, edit types in turn)
    num_steps: int = 20  # DDIM steps
    guidance_scale: float = 7.5  # classifier-free guidance
    cross_replace_steps: float = 0.8  # P2P: fraction of steps with the source's cross-attention
    self_replace_steps: tuple[float, ...] = (0.6,)  # several: a sweep; the filter picks each edit's best candidate
    local_blend: bool = True  # LocalBlend on the changed words
    seed: int = 0  # scenes and edits


def judge_edit(pred: dict[str, str], reference_scene, target_scene) -> tuple[bool, bool]:
    """(target attribute(s) right, everything else preserved) for one classifier reading."""
    changed = scene_diff(reference_scene, target_scene)
    target_ok = all(pred[k] == new for k, (_, new) in changed.items())
    preserved = all(pred[k] == v for k, v in scene_labels(reference_scene).items() if k not in changed)
    return target_ok, preserved


def kept_as_reconstructed(pred: dict[str, str], recon_pred: dict[str, str], reference_scene, target_scene) -> bool:
    """Every attribute the edit does not name reads the same on the edited image as on the plain reconstruction.

    This isolates the editing step from the autoencoder: an attribute the autoencoder already lost counts as kept
    if the edit leaves it as the reconstruction shows it. Reported beside, never instead of, :func:`judge_edit`."""
    changed = scene_diff(reference_scene, target_scene)
    return all(pred[k] == recon_pred[k] for k in scene_labels(reference_scene) if k not in changed)


def label_accuracy(preds: list[dict[str, str]], scenes: list) -> dict[str, float | None]:
    """Classifier readings against true scenes: per attribute kind (shape, color, ..., background, light; object
    attributes over the slots that hold an object) and the share of images with every label right."""
    kinds: dict[str, list[bool]] = {}
    whole = []
    for pred, scene in zip(preds, scenes, strict=True):
        truth = scene_labels(scene)
        whole.append(all(pred[k] == v for k, v in truth.items()))
        for k, v in truth.items():
            if v != "none" or "." not in k:
                kinds.setdefault(k.split(".")[-1], []).append(pred[k] == v)
    return {k: _pct(v) for k, v in sorted(kinds.items())} | {"all_labels": _pct(whole)}


def _pct(flags: list[bool]) -> float | None:
    return round(100.0 * float(np.mean(flags)), 1) if flags else None


def evaluate_world(cfg: WorldEvalConfig, log=print, keep_images: dict | None = None) -> dict[str, Any]:
    """Run every inversion method on the same ground-truth edits (see the module docstring).

    Args:
        keep_images: if given, filled with method -> the generated image of each edit (the filter's pick).
    """
    from cirsynth.editing import CounterfactualEditor
    from cirsynth.synth.filters import EditFilter, FilterConfig, pick_best
    from cirsynth.world.classifier import AttributeClassifier
    from cirsynth.world.diffusion import object_word_attention_share

    edits = evaluation_edits(cfg)
    editor = CounterfactualEditor.from_pretrained(cfg.editor)
    clf = AttributeClassifier.from_pretrained(cfg.classifier)
    filt = EditFilter(FilterConfig(clip=cfg.clip)) if cfg.clip else None
    refs = editor.prepare([render(e.reference) for e in edits])
    out: dict[str, Any] = {"edits": len(edits), "editor": cfg.editor, "methods": {}}
    # how well the UNet's object words attend to their objects: what LocalBlend's masks are made of
    share = object_word_attention_share(editor.pipe)
    out["object_word_attention_inside"] = None if share is None else round(100.0 * share, 1)
    t2i_images = text_to_image(editor.pipe, [e.caption_edit.target_caption for e in edits], cfg)
    out["text_to_image"] = text_to_image_reading(clf.predict(t2i_images), edits)
    log(f"text-to-image from the target captions: the edited attribute right {out['text_to_image']['edit_attribute']['all']}%, "
        f"every label right {out['text_to_image']['label_accuracy']['all_labels']}%")
    for method in cfg.methods:
        inv = editor.invert(refs, [e.caption_edit.source_caption for e in edits], method=method,
                            num_steps=cfg.num_steps, guidance_scale=cfg.guidance_scale)
        recon = editor.reconstruct(inv)
        rec_psnr = [min(psnr(np.asarray(r), np.asarray(x)), 99.0) for r, x in zip(refs, recon)]
        # the preservation ceiling: how much of the reference the judge still reads off its reconstruction
        rec_preds = clf.predict(recon)
        rec_labels = label_accuracy(rec_preds, [e.reference for e in edits])
        sweep = len(cfg.self_replace_steps) > 1
        results = editor.edit(inv, [e.caption_edit.target_caption for e in edits],
                              cross_replace_steps=cfg.cross_replace_steps,
                              self_replace_steps=list(cfg.self_replace_steps) if sweep else cfg.self_replace_steps[0],
                              blend_words=[(e.caption_edit.source_words, e.caption_edit.target_words)
                                           if cfg.local_blend and e.caption_edit.source_words and e.caption_edit.target_words
                                           else None for e in edits], return_details=True)
        verdicts = None
        if filt is not None:  # score every candidate; keep each edit's best (pick_best, as synthesize does)
            owner = [i for i, r in enumerate(results) for _ in r.images]  # candidate -> its edit, in one batch
            ces = [edits[i].caption_edit for i in owner]
            flat = filt.score([refs[i] for i in owner], [im for r in results for im in r.images],
                              [c.source_caption for c in ces], [c.target_caption for c in ces],
                              [c.source_words for c in ces], [c.target_words for c in ces],
                              [m for r in results for m in r.masks])
            verdicts = [[v for v, i in zip(flat, owner) if i == j] for j in range(len(results))]
            best = [pick_best(v) for v in verdicts]
        else:
            best = [0] * len(results)
        generated = [r.images[b] for r, b in zip(results, best)]
        preds = clf.predict(generated)
        per_type: dict[str, dict[str, list[bool]]] = {}
        success = []
        for e, pred, rp in zip(edits, preds, rec_preds):
            target_ok, preserved = judge_edit(pred, e.reference, e.target)
            kept = kept_as_reconstructed(pred, rp, e.reference, e.target)
            success.append(target_ok and preserved)
            for key in (e.edit_type, "all"):
                d = per_type.setdefault(key, {"target": [], "preserved": [], "success": [],
                                              "kept_as_reconstructed": [], "success_vs_reconstruction": []})
                d["target"].append(target_ok)
                d["preserved"].append(preserved)
                d["success"].append(target_ok and preserved)
                d["kept_as_reconstructed"].append(kept)
                d["success_vs_reconstruction"].append(target_ok and kept)
        row: dict[str, Any] = {
            "reconstruction_psnr_db": round(float(np.mean(rec_psnr)), 2),
            "reconstruction_label_accuracy": rec_labels,
            "generated_label_accuracy": label_accuracy(preds, [e.target for e in edits]),
            "edit": {k: {m: _pct(v) for m, v in d.items()} | {"n": len(d["success"])} for k, d in per_type.items()},
        }
        if verdicts is not None:
            accepted = [v[b].passed for v, b in zip(verdicts, best)]
            tp = sum(a and s for a, s in zip(accepted, success))
            row["filter"] = {
                "accepted": sum(accepted),
                "precision": round(100.0 * tp / sum(accepted), 1) if sum(accepted) else None,
                "recall": round(100.0 * tp / sum(success), 1) if sum(success) else None,
                "success_after_filter": _pct([s for a, s in zip(accepted, success) if a]),
                "preserved_after_filter": _pct([p for a, p in zip(accepted, per_type["all"]["preserved"]) if a]),
                "failed_rules": dict(Counter(r.split()[0] for v, b in zip(verdicts, best) for r in v[b].failed)),
            }
        if keep_images is not None:
            keep_images[method] = generated
        out["methods"][method] = row
        log(f"{method}: {row['reconstruction_psnr_db']} dB, labels read on reconstructions {rec_labels['all_labels']}%, "
            f"success {row['edit']['all']['success']}%")
    if keep_images is not None:
        keep_images["text-to-image"] = t2i_images
    return out


def text_to_image(pipe: Any, prompts: list[str], cfg: WorldEvalConfig, batch_size: int = 16) -> list:
    """Plain generation from ``prompts`` with the evaluation's steps and guidance, seeded by ``cfg.seed``."""
    import torch

    gen = torch.Generator().manual_seed(cfg.seed)
    images = []
    for i in range(0, len(prompts), batch_size):
        images += pipe(prompts[i : i + batch_size], num_inference_steps=cfg.num_steps, guidance_scale=cfg.guidance_scale,
                       generator=gen, output_type="pil").images
    return images


def text_to_image_reading(preds: list[dict[str, str]], edits: list) -> dict[str, Any]:
    """The classifier's readings of images generated from each edit's target caption, against the target scene:
    per attribute kind (``label_accuracy``) and whether the attribute(s) the edit names read right
    (``edit_attribute``, per edit type and ``all``)."""
    named: dict[str, list[bool]] = {}
    for pred, e in zip(preds, edits, strict=True):
        right = all(pred[k] == new for k, (_, new) in scene_diff(e.reference, e.target).items())
        for key in (e.edit_type, "all"):
            named.setdefault(key, []).append(right)
    return {"label_accuracy": label_accuracy(preds, [e.target for e in edits]),
            "edit_attribute": {k: _pct(v) for k, v in named.items()}}


def evaluation_edits(cfg: WorldEvalConfig) -> list:
    """The ground-truth edits ``evaluate_world`` measures (same seed, same order)."""
    rng = np.random.default_rng(cfg.seed)
    edits = []
    for i in range(cfg.n):
        scene = random_scene(rng)
        for k in range(len(WORLD_EDIT_TYPES)):  # the next edit type possible in this scene
            try:
                edits.append(apply_edit(scene, WORLD_EDIT_TYPES[(i + k) % len(WORLD_EDIT_TYPES)], rng))
                break
            except ValueError:
                continue
    return edits


def evaluation_grid(cfg: WorldEvalConfig, images: dict, cell: int = 96):
    """Rows of reference | modification text | one image per column of ``images`` (each method's edit, and
    text-to-image where kept) | ground truth."""
    from PIL import Image, ImageDraw

    from cirsynth.world.demo import wrap_words

    edits = evaluation_edits(cfg)
    methods = list(images)
    cols = ["reference", "modification", *methods, "ground truth"]
    head = 16
    grid = Image.new("RGB", (cell * len(cols), head + cell * len(edits)), "white")
    draw = ImageDraw.Draw(grid)
    for j, c in enumerate(cols):
        draw.text((j * cell + 3, 2), c, fill="black")
    for i, e in enumerate(edits):
        y = head + i * cell
        grid.paste(render(e.reference).resize((cell, cell), Image.NEAREST), (0, y))
        draw.multiline_text((cell + 3, y + 6), "\n".join(wrap_words(e.caption_edit.modification_text, 14)), fill="black")
        for j, m in enumerate(methods):
            grid.paste(images[m][i].resize((cell, cell), Image.NEAREST), ((2 + j) * cell, y))
        grid.paste(render(e.target).resize((cell, cell), Image.NEAREST), ((2 + len(methods)) * cell, y))
    return grid
