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
import inspect
import os
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np

from cirsynth.metrics import psnr
from cirsynth.synth.candidates import CandidateConfig
from cirsynth.synth.filters import RULES, FilterConfig
from cirsynth.world.language import WORLD_EDIT_TYPES, apply_edit
from cirsynth.world.render import render
from cirsynth.world.scene import measurement_rng, random_scene, scene_diff, scene_labels


# rows beyond the editor's inversion methods: a method under another editor setting (row name -> method, settings)
METHOD_VARIANTS: dict[str, tuple[str, dict[str, Any]]] = {
    "direct-source-only": ("direct", {"direct_add_target": False}),  # PnP Inversion's default: offset on source only
}


@dataclasses.dataclass
class WorldEvalConfig:
    editor: str  # diffusion pipeline folder or id (the bundled world model by default in the command)
    classifier: str  # attribute classifier folder (the judge)
    clip: str | None = None  # CLIP folder for the filter; None: filter precision/recall not measured
    methods: tuple[str, ...] = ("null-text", "negative-prompt", "direct", "ddim")  # inversion methods compared (any
    # of editing.METHODS, ddpm with its own noise seed per candidate, or a METHOD_VARIANTS row)
    n: int = 16  # reference scenes (each gets one edit, edit types in turn)
    num_steps: int = 20  # DDIM steps
    guidance_scale: float = 7.5  # classifier-free guidance
    cross_replace_steps: float = 0.8  # P2P: fraction of steps with the source's cross-attention
    self_replace_steps: tuple[float, ...] = (0.6,)  # several: a sweep; the filter picks each edit's best candidate
    local_blend: bool = True  # LocalBlend on the changed words
    paste: str = "none"  # EditorConfig.paste: what fills the pixels outside the LocalBlend mask
    kept_background: float = 0.0  # EditorConfig.kept_background (background edits: kept cells lose the old background)
    seed: int = 0  # scenes and edits
    candidates: CandidateConfig = dataclasses.field(default_factory=CandidateConfig)  # n > 0: oversample per edit
    filter: FilterConfig = dataclasses.field(default_factory=FilterConfig)  # thresholds, negatives, rank_by

    def __post_init__(self) -> None:
        from cirsynth.editing.inversion import METHODS

        bad = [m for m in self.methods if m not in METHODS and m not in METHOD_VARIANTS]
        if bad:
            raise ValueError(f"unknown method(s) {bad}; expected any of {[*METHODS, *METHOD_VARIANTS]}")


def judge_edit(pred: dict[str, str], reference_scene, target_scene) -> tuple[bool, bool]:
    """(target attribute(s) right, everything else preserved) for one classifier reading."""
    changed = scene_diff(reference_scene, target_scene)
    target_ok = all(pred[k] == new for k, (_, new) in changed.items())
    preserved = all(pred[k] == v for k, v in scene_labels(reference_scene).items() if k not in changed)
    return target_ok, preserved


def broken_labels(pred: dict[str, str], reference_scene, target_scene) -> list[str]:
    """The labels the edit does not name that read differently from the reference scene, as "same object.<attribute>"
    (the edited object's other attributes), "other object.<attribute>", "background" or "light": where preservation
    fails."""
    changed = scene_diff(reference_scene, target_scene)
    edited_slots = {k.split(".")[0] for k in changed if "." in k}
    out = []
    for k, v in scene_labels(reference_scene).items():
        if k in changed or pred[k] == v:
            continue
        if "." in k:
            slot, attr = k.split(".")
            out.append(f"{'same' if slot in edited_slots else 'other'} object.{attr}")
        else:
            out.append(k)
    return out


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


def world_setup(cfg: WorldEvalConfig, edit_types: Any = None) -> tuple[list, Any, Any, list]:
    """What every world measurement starts from: ``cfg``'s ground-truth edits (only those of ``edit_types`` when
    given), the editor (with ``cfg.paste`` and ``cfg.kept_background``), the attribute classifier, and the reference
    scenes prepared for the editor.

    Returns:
        ``(edits, editor, classifier, prepared references)``.
    """
    from cirsynth.editing import CounterfactualEditor, EditorConfig
    from cirsynth.world.classifier import AttributeClassifier

    if isinstance(edit_types, str):
        raise TypeError(f"edit_types is a collection of edit types, not the string {edit_types!r}")
    keep = None if edit_types is None else set(edit_types)
    edits = [e for e in evaluation_edits(cfg) if keep is None or e.edit_type in keep]
    editor = CounterfactualEditor.from_pretrained(cfg.editor, config=EditorConfig(paste=cfg.paste,
                                                                                  kept_background=cfg.kept_background))
    clf = AttributeClassifier.from_pretrained(cfg.classifier)
    return edits, editor, clf, editor.prepare([render(e.reference) for e in edits])


def evaluate_world(cfg: WorldEvalConfig, log=print, keep_images: dict | None = None,
                   cache: str | os.PathLike | None = None) -> dict[str, Any]:
    """Run every inversion method on the same ground-truth edits (see the module docstring).

    Args:
        keep_images: if given, filled with method -> the generated image of each edit (the filter's pick).
        cache: folder keeping each method's generated candidates (``cached_candidates``).
    """
    from cirsynth.world.assets import model_label
    from cirsynth.world.diffusion import object_word_attention_share

    edits, editor, clf, refs = world_setup(cfg)
    out: dict[str, Any] = {"edits": len(edits), "editor": model_label(cfg.editor), "methods": {},
                           "candidates": cfg.candidates.n or len(cfg.self_replace_steps),
                           "filter_config": None if cfg.clip is None else _labelled_models(dataclasses.asdict(cfg.filter))}
    # how well the UNet's object words attend to their objects: what LocalBlend's masks are made of
    share = object_word_attention_share(editor.pipe)
    out["object_word_attention_inside"] = None if share is None else round(100.0 * share, 1)
    t2i_images = text_to_image(editor.pipe, [e.caption_edit.target_caption for e in edits], cfg)
    out["text_to_image"] = text_to_image_reading(clf.predict(t2i_images), edits)
    log(f"text-to-image from the target captions: the edited attribute right {out['text_to_image']['edit_attribute']['all']}%, "
        f"every label right {out['text_to_image']['label_accuracy']['all_labels']}%")
    for method in cfg.methods:
        table = candidate_table(cfg, method_editor(editor, method), clf, edits, refs,
                                METHOD_VARIANTS.get(method, (method,))[0], cache=cache)
        row = method_report(table, edits, cfg)
        row["candidate_table"] = candidate_rows(table, edits)
        if keep_images is not None:
            keep_images[method] = [c[i]["image"] for c, i in zip(table["candidates"], row.pop("_kept"))]
        else:
            row.pop("_kept")
        out["methods"][method] = row
        log(f"{method}: {row['reconstruction_psnr_db']} dB, labels read on reconstructions "
            f"{row['reconstruction_label_accuracy']['all_labels']}%, success {row['edit']['all']['success']}%"
            + (f"; filter accepts {row['filter']['accepted']}, precision {row['filter']['precision']}%, accepted and "
               f"right {row['filter']['accepted_success']}%" if "filter" in row else ""))
    if keep_images is not None:
        keep_images["text-to-image"] = t2i_images
    return out


def _labelled_models(filter_config: dict[str, Any]) -> dict[str, Any]:
    """A filter config as results record it: its model folders (CLIP, recaptioner) named by ``model_label``."""
    from cirsynth.world.assets import model_label

    return {k: model_label(v) if k in ("clip", "recaptioner") and v else v for k, v in filter_config.items()}


def method_editor(editor: Any, row: str) -> Any:
    """The editor for one row: ``editor`` itself, or for a ``METHOD_VARIANTS`` row one over the same modules with
    that row's settings."""
    if row not in METHOD_VARIANTS:
        return editor
    return type(editor)(editor.pipe, dataclasses.replace(editor.config, **METHOD_VARIANTS[row][1]), model_id=editor.model_id)


def candidate_table(cfg: WorldEvalConfig, editor: Any, clf: Any, edits: list, refs: list, method: str,
                    cache: str | os.PathLike | None = None) -> dict[str, Any]:
    """Invert, reconstruct and make every edit's candidates with ``method``; score each candidate with the filter's
    scores (no thresholds applied) and judge it against ground truth.

    Args:
        cache: a folder keeping the generated images (``generate_candidates``): a second call with the same
            generation settings re-scores and re-judges them without running the diffusion model again.

    Returns:
        ``{"psnr": [...], "recon_preds": [...], "candidates": per edit, a list of dicts with image, setting, scores,
        target (attribute right), preserved, kept (as reconstructed), right (target and preserved)}``.
    """
    from cirsynth.synth.candidates import hard_negative_captions
    from cirsynth.synth.filters import EditFilter

    ces = [e.caption_edit for e in edits]
    gen = cached_candidates(cache, cfg, editor, edits, refs, method)
    owner, flat = gen["owner"], gen["candidates"]
    scores: list[dict[str, float]] = [{} for _ in flat]
    if cfg.clip is not None:
        # every score, no threshold, and not the recipe's own learned model (calibration fits a new one on the scores)
        unthresholded = dataclasses.replace(cfg.filter, clip=cfg.clip, learned=None, **{a: None for _, a in RULES})
        filt = EditFilter(unthresholded, editor=editor)
        negs = hard_negative_captions(_world_perturber() if cfg.filter.hard_negatives else None,
                                      [c.target_caption for c in ces], [c.source_caption for c in ces],
                                      cfg.filter.hard_negatives, cfg.seed)
        verdicts = filt.score([refs[i] for i in owner], [c.image for c in flat], [ces[i].source_caption for i in owner],
                              [ces[i].target_caption for i in owner], [ces[i].source_words for i in owner],
                              [ces[i].target_words for i in owner], [c.mask for c in flat],
                              negatives=[negs[i] for i in owner], edit_types=[ces[i].edit_type for i in owner])
        scores = [v.scores for v in verdicts]
    rec_preds = clf.predict(gen["recon"])  # the preservation ceiling: what the judge still reads off the reconstruction
    preds = clf.predict([c.image for c in flat])
    table: list[list[dict[str, Any]]] = [[] for _ in edits]
    for c, i, sc, pred in zip(flat, owner, scores, preds):
        e = edits[i]
        target_ok, preserved = judge_edit(pred, e.reference, e.target)
        table[i].append({"image": c.image, "edit_type": e.edit_type, "setting": c.setting.as_dict(), "scores": sc,
                         "pred": pred, "target": target_ok, "preserved": preserved, "right": target_ok and preserved,
                         "broken": broken_labels(pred, e.reference, e.target),
                         "kept": kept_as_reconstructed(pred, rec_preds[i], e.reference, e.target)})
    return {"psnr": gen["psnr"], "recon_preds": rec_preds, "candidates": table}


def generate_candidates(cfg: WorldEvalConfig, editor: Any, edits: list, refs: list, method: str,
                        first: int = 0) -> dict[str, Any]:
    """The diffusion part of ``candidate_table``: invert and reconstruct the references, make every edit's candidates.
    ``edits`` are the evaluation's edits from index ``first`` on (each edit's settings are drawn from its index).

    Returns:
        ``{"psnr": reconstruction PSNR per edit, "recon": reconstructions, "candidates": every candidate, flat,
        "owner": each candidate's edit index}``.
    """
    from cirsynth.synth.candidates import candidate_noise_seed, draw_settings, edit_candidates, fixed_settings

    ces = [e.caption_edit for e in edits]
    inv = editor.invert(refs, [c.source_caption for c in ces], method=method, num_steps=cfg.num_steps,
                        guidance_scale=cfg.guidance_scale, seed=candidate_noise_seed(cfg.seed, 0))  # as synthesize
    recon = editor.reconstruct(inv)
    rec_psnr = [min(psnr(np.asarray(r), np.asarray(x)), 99.0) for r, x in zip(refs, recon)]
    settings = [draw_settings(cfg.candidates.for_edit_type(e.edit_type), f"world-edit-{i}", cfg.seed,
                              noise_seeds=method == "ddpm")
                if cfg.candidates.n else fixed_settings(cfg.cross_replace_steps, cfg.self_replace_steps)
                for i, e in enumerate(edits, start=first)]
    blend_words, blend_pin = cfg.candidates.blends(ces, cfg.local_blend)
    cands = edit_candidates(editor, inv, [c.target_caption for c in ces], blend_words, [c.target_words for c in ces],
                            settings, images=refs, blend_pin=blend_pin)
    return {"psnr": rec_psnr, "recon": recon, "owner": [i for i, cs in enumerate(cands) for _ in cs],
            "candidates": [c for cs in cands for c in cs]}


_GENERATE_SOURCE = inspect.getsource(generate_candidates)  # part of the cache key (taken before any patching)


def generation_key(cfg: WorldEvalConfig, editor: Any, edits: list, method: str, first: int = 0) -> dict[str, Any]:
    """Everything ``generate_candidates``' images depend on: the editor and its settings, the method, the sampling and
    candidate settings, and the edits themselves (not the filter, the judge or the CLIP)."""
    import hashlib

    import cirsynth
    from cirsynth.world.assets import model_label

    pkg = Path(cirsynth.__file__).parent
    code = _files_digest(sorted([*(pkg / "editing").glob("*.py"), pkg / "synth" / "candidates.py"]), pkg)
    code = hashlib.sha256((code + _GENERATE_SOURCE).encode()).hexdigest()
    return {"editor": model_label(editor.model_id or cfg.editor), "weights": weights_fingerprint(cfg.editor),
            "code": code,  # a change to the editing code is a new cache entry too
            "editor_config": dataclasses.asdict(editor.config),
            "method": method, "num_steps": cfg.num_steps, "guidance_scale": cfg.guidance_scale,
            "cross_replace_steps": cfg.cross_replace_steps, "self_replace_steps": list(cfg.self_replace_steps),
            "local_blend": cfg.local_blend, "seed": cfg.seed, "candidates": dataclasses.asdict(cfg.candidates),
            "first": first,
            "edits": [[e.edit_type, e.caption_edit.source_caption, e.caption_edit.target_caption] for e in edits]}


def weights_fingerprint(folder: str | os.PathLike) -> str | None:
    """sha256 over a local model folder's weight and config files (names and bytes), so a retrained model never
    reuses another's cached images; None for a hub id.

    Only what the images depend on counts: the components' folders (unet/, vae/, ...) and ``model_index.json``. The
    reports beside them (``card.json``, ``training_report.json``) are left out: ``world evaluate --update_card`` and a
    model's installation rewrite them, and a changed report must not make every cached block miss."""
    root = Path(folder)
    if not root.is_dir():
        return None
    return _files_digest([f for f in sorted(root.rglob("*")) if f.suffix in (".safetensors", ".bin", ".json")
                          and (f.parent != root or f.name == "model_index.json") and f.is_file()], root)


def _files_digest(files: list[Path], root: Path) -> str:
    import hashlib

    h = hashlib.sha256()
    for f in files:
        h.update(f.relative_to(root).as_posix().encode())
        h.update(f.read_bytes())
    return h.hexdigest()


CACHE_BLOCK = 96  # edits generated and cached together: a longer run reuses a shorter one's blocks, resumes after one


def cached_candidates(cache: str | os.PathLike | None, cfg: WorldEvalConfig, editor: Any, edits: list, refs: list,
                      method: str) -> dict[str, Any]:
    """``generate_candidates``, kept in ``cache`` (a folder; None: no cache) in blocks of ``CACHE_BLOCK`` edits, each
    under a name derived from its ``generation_key``: a block found there is loaded instead of made again. Written
    atomically, block by block, so an interrupted run resumes after its last block. Without a cache the blocks are
    made the same way (so a run's images never depend on whether it was cached)."""
    out: dict[str, Any] = {"psnr": [], "recon": [], "owner": [], "candidates": []}
    for first in range(0, len(edits), CACHE_BLOCK):
        block = _cached_block(None if cache is None else Path(cache), cfg, editor, edits[first:first + CACHE_BLOCK],
                              refs[first:first + CACHE_BLOCK], method, first)
        for k in ("psnr", "recon", "candidates"):
            out[k].extend(block[k])
        out["owner"].extend(first + i for i in block["owner"])
    return out


def fill_cache_block(cfg: WorldEvalConfig, cache: str | os.PathLike, block: int,
                     methods: list[str] | None = None) -> dict[str, Any]:
    """Make (or find) one ``CACHE_BLOCK`` of ``cfg``'s candidates in ``cache`` and stop: edits ``block * CACHE_BLOCK``
    onwards, for each of ``methods`` (default ``cfg.methods``). Blocks are independent, so one process per core can
    fill them side by side; ``evaluate_world`` or ``calibrate`` with the same settings then loads every block.

    Returns:
        What was filled: block, its edit range [first, end), methods, whether each block was already there.
    """
    import time

    if cache is None:
        raise ValueError("fill_cache_block: needs a cache folder to fill")
    edits = evaluation_edits(cfg)
    blocks = -(-len(edits) // CACHE_BLOCK)
    if not 0 <= block < blocks:
        raise ValueError(f"block {block} does not exist: {len(edits)} edits make blocks 0..{blocks - 1} "
                         f"of {CACHE_BLOCK} edits")
    t0 = time.time()
    first, end = block * CACHE_BLOCK, min((block + 1) * CACHE_BLOCK, len(edits))
    before = set(Path(cache).glob("candidates-*.npz"))
    edits, editor, _, refs = world_setup(cfg)
    for method in methods or cfg.methods:
        _cached_block(Path(cache), cfg, method_editor(editor, method), edits[first:end], refs[first:end],
                      METHOD_VARIANTS.get(method, (method,))[0], first)
    made = sorted(str(p) for p in set(Path(cache).glob("candidates-*.npz")) - before)
    return {"block": block, "edits": [first, end], "methods": list(methods or cfg.methods), "made": made,
            "seconds": round(time.time() - t0, 1)}


def _cached_block(cache: Path | None, cfg: WorldEvalConfig, editor: Any, edits: list, refs: list, method: str,
                  first: int) -> dict[str, Any]:
    import hashlib
    import io
    import json

    from PIL import Image

    from cirsynth.config import atomic_write_bytes
    from cirsynth.synth.candidates import Candidate, CandidateSetting

    if cache is None:
        return generate_candidates(cfg, editor, edits, refs, method, first)
    text = json.dumps(generation_key(cfg, editor, edits, method, first), sort_keys=True, default=str)
    path = cache / f"candidates-{method}-{hashlib.sha256(text.encode()).hexdigest()[:16]}.npz"
    if path.exists():
        z = np.load(path, allow_pickle=False)
        if str(z["key"]) != text:
            raise ValueError(f"{path}: the cached generation settings differ from this run's (hash collision?)")
        settings = json.loads(str(z["settings"]))
        masks = [None if not h else m for h, m in zip(z["has_mask"], z["masks"])]
        return {"psnr": z["psnr"].tolist(), "recon": [Image.fromarray(a) for a in z["recon"]],
                "owner": z["owner"].tolist(),
                "candidates": [Candidate(Image.fromarray(a), m, CandidateSetting(**s))
                               for a, m, s in zip(z["images"], masks, settings)]}
    gen = generate_candidates(cfg, editor, edits, refs, method, first)
    flat = gen["candidates"]
    shape = np.asarray(flat[0].image).shape[:2] if flat else (0, 0)
    buf = io.BytesIO()
    np.savez_compressed(
        buf, key=np.array(text), psnr=np.array(gen["psnr"]), owner=np.array(gen["owner"], dtype=np.int64),
        recon=np.stack([np.asarray(r.convert("RGB")) for r in gen["recon"]]),
        images=np.stack([np.asarray(c.image.convert("RGB")) for c in flat]) if flat else np.zeros((0, 1, 1, 3), np.uint8),
        has_mask=np.array([c.mask is not None for c in flat], dtype=bool),
        masks=np.stack([np.zeros(shape, bool) if c.mask is None else np.asarray(c.mask, bool) for c in flat])
        if flat else np.zeros((0, 1, 1), bool),
        settings=np.array(json.dumps([dataclasses.asdict(c.setting) for c in flat])))
    cache.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(path, buf.getvalue())
    return gen


def _world_perturber():
    from cirsynth.captions import LexicalConfig, LexicalPerturber
    from cirsynth.world.language import lexical_vocabulary

    return LexicalPerturber(LexicalConfig(vocab=lexical_vocabulary()), wordnet=False)


def keep_candidate(judge: Any, cands: list[dict[str, Any]], rank_by: str | None) -> tuple[list, int]:
    """One edit's candidates (rows with stored ``scores`` and ``edit_type``) as the filter takes them: each one's
    verdict from ``judge`` (an ``EditFilter``; None: scores only, every candidate passes) and the index of the one
    ``pick_best`` keeps, ranked by ``rank_by``. The edit is accepted when that candidate's verdict passed."""
    from cirsynth.synth.filters import FilterVerdict, pick_best

    verdicts = [judge.judge(c["scores"], c.get("edit_type")) if judge else FilterVerdict(c["scores"]) for c in cands]
    return verdicts, pick_best(verdicts, rank_by)


def method_report(table: dict[str, Any], edits: list, cfg: WorldEvalConfig) -> dict[str, Any]:
    """One method's figures from its ``candidate_table``: the kept candidate per edit (``pick_best`` under the
    configured filter), its ground-truth success per edit type, and the filter's precision and recall, rule by rule
    (over all candidates) and as a whole (over edits)."""
    from cirsynth.synth.filters import EditFilter

    # judges stored scores only: no CLIP, no recaptioner to load
    judge = EditFilter(dataclasses.replace(cfg.filter, clip=None, recaptioner=None,
                                           diffusion_judge=None)) if cfg.clip is not None else None
    kept, kept_verdicts, all_scored = [], [], []
    for cands in table["candidates"]:
        verdicts, b = keep_candidate(judge, cands, cfg.filter.rank_by)
        # with the verdict's scores (the learned model's probability among them, when the filter has one)
        all_scored.extend({**c, "scores": v.scores} for c, v in zip(cands, verdicts))
        kept.append(b)
        kept_verdicts.append(verdicts[b])
    accepted = [v.passed for v in kept_verdicts]
    chosen = [cands[b] for cands, b in zip(table["candidates"], kept)]
    per_type: dict[str, dict[str, list[bool]]] = {}
    for e, c in zip(edits, chosen):
        for key in (e.edit_type, "all"):
            d = per_type.setdefault(key, {"target": [], "preserved": [], "success": [], "kept_as_reconstructed": [],
                                          "success_vs_reconstruction": [], "any_candidate_right": []})
            d["target"].append(c["target"])
            d["preserved"].append(c["preserved"])
            d["success"].append(c["right"])
            d["kept_as_reconstructed"].append(c["kept"])
            d["success_vs_reconstruction"].append(c["target"] and c["kept"])
    for e, cands in zip(edits, table["candidates"]):
        for key in (e.edit_type, "all"):
            per_type[key]["any_candidate_right"].append(any(c["right"] for c in cands))
    recon_broken = Counter(b for e, rp in zip(edits, table["recon_preds"]) for b in broken_labels(rp, e.reference, e.target))
    row: dict[str, Any] = {
        # where preservation fails, counted over the kept candidates, beside the same count on the reconstructions
        "broken_labels": {"edits": dict(Counter(b for c in chosen for b in c["broken"]).most_common()),
                          "reconstructions": dict(recon_broken.most_common())},
        "reconstruction_psnr_db": round(float(np.mean(table["psnr"])), 2),
        "reconstruction_label_accuracy": label_accuracy(table["recon_preds"], [e.reference for e in edits]),
        "generated_label_accuracy": label_accuracy([c["pred"] for c in chosen], [e.target for e in edits]),
        "edit": {k: {m: _pct(v) for m, v in d.items()} | {"n": len(d["success"])} for k, d in per_type.items()},
        "_kept": kept,
    }
    if judge is not None:
        success = [c["right"] for c in chosen]
        reachable = [any(c["right"] for c in cands) for cands in table["candidates"]]
        tp = sum(a and s for a, s in zip(accepted, success))
        by_type: dict[str, list[bool]] = {}
        for e, a, s in zip(edits, accepted, success):
            if a:
                by_type.setdefault(e.edit_type, []).append(s)
        row["filter"] = {
            "accepted": sum(accepted),
            "precision": round(100.0 * tp / sum(accepted), 1) if sum(accepted) else None,
            "recall": round(100.0 * tp / sum(reachable), 1) if sum(reachable) else None,
            "accepted_success": _pct([a and s for a, s in zip(accepted, success)]),
            "preserved_after_filter": _pct([c["preserved"] for a, c in zip(accepted, chosen) if a]),
            "precision_by_edit_type": {k: _pct(v) for k, v in sorted(by_type.items())},
            "failed_rules": dict(Counter(r.split()[0].rstrip(":") for v in kept_verdicts for r in v.failed)),
            "rules": rule_report(all_scored, cfg.filter),
            "score_auc": score_auc(all_scored),
        }
    return row


def candidate_rows(table: dict[str, Any], edits: list) -> list[dict[str, Any]]:
    """Every candidate without its image: edit index and type, settings, filter scores and ground-truth verdicts (for
    one's own analysis of the filter)."""
    return [{"edit": i, "edit_type": e.edit_type, "candidate": k, **c["setting"], "scores": c["scores"],
             "target": c["target"], "preserved": c["preserved"], "right": c["right"], "broken": c["broken"]}
            for i, (e, cands) in enumerate(zip(edits, table["candidates"])) for k, c in enumerate(cands)]


def candidates_by_edit(rows: list[dict[str, Any]], n: int | None = None) -> list[list[dict[str, Any]]]:
    """``candidate_rows``' rows (e.g. a calibration's ``*_candidates.json``) back into one list per edit, in candidate
    order: edits 0..n-1 (``n``: all the rows' edits; a table made on more edits is cut to its first ``n``, which are
    the same edits). Raises ``ValueError`` when an edit in that range has no rows."""
    by_edit: dict[int, list[dict[str, Any]]] = {}
    for row in rows:
        by_edit.setdefault(int(row["edit"]), []).append(row)
    n = len(by_edit) if n is None else n
    missing = [i for i in range(n) if i not in by_edit]
    if missing:
        raise ValueError(f"candidates_by_edit: no rows for edits {missing[:5]}{' ...' if len(missing) > 5 else ''} "
                         f"(the table holds {len(by_edit)} edits)")
    return [sorted(by_edit[i], key=lambda r: r["candidate"]) for i in range(n)]


def score_auc(candidates: list[dict[str, Any]]) -> dict[str, float | None]:
    """Per filter score, over every candidate: the probability that a right candidate scores above a wrong one (ROC
    AUC; 0.5 = the score cannot tell them apart). How much any threshold on that score can do."""
    right = np.array([c["right"] for c in candidates], dtype=bool)
    out: dict[str, float | None] = {}
    for name in sorted({k for c in candidates for k in c["scores"]}):
        v = np.array([c["scores"].get(name, np.nan) for c in candidates], dtype=float)
        pos, neg = v[right & ~np.isnan(v)], v[~right & ~np.isnan(v)]
        if not len(pos) or not len(neg):
            out[name] = None
            continue
        ranks = np.argsort(np.argsort(np.concatenate([pos, neg]), kind="stable"), kind="stable") + 1.0
        both = np.concatenate([pos, neg])
        for val in np.unique(both):  # mid-ranks for ties (Mann-Whitney U)
            tie = both == val
            ranks[tie] = ranks[tie].mean()
        out[name] = round(float((ranks[: len(pos)].sum() - len(pos) * (len(pos) + 1) / 2) / (len(pos) * len(neg))), 3)
    return out


def rule_report(candidates: list[dict[str, Any]], fcfg: Any) -> dict[str, dict[str, Any]]:
    """Each enabled rule alone, over every candidate: its threshold, the share of candidates it passes, and its
    precision (right among passed) and recall (passed among right), against ground truth."""
    out = {}
    right = np.array([c["right"] for c in candidates], dtype=bool)
    for name, attr in RULES:
        thr = getattr(fcfg, attr)
        vals = [c["scores"].get(name) for c in candidates]
        if thr is None or any(v is None for v in vals):
            continue
        passed = np.array(vals, dtype=float) >= thr
        out[name] = {"threshold": thr, "passes": _pct(list(passed)),
                     "precision": _pct(list(right[passed])), "recall": _pct(list(passed[right]))}
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
    rng = measurement_rng(cfg.seed, "evaluate")
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

    from cirsynth.world.pictures import wrap_words

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
