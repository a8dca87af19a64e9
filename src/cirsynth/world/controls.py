"""Reference arms for the data-scarcity experiment, for exactly the references and edits of a synthetic set.

For every accepted synthetic triplet made from a world benchmark reference, the world knows the truth:
- **oracle**: the same reference and modification text with the ground-truth target (the scene re-rendered with the
  named attribute changed): what a perfect editor would have made;
- **wrong-edit**: the same reference and text with the target of *another* valid one-attribute edit of the same
  scene: how a wrong edit looks to the CIR model.
Triplets whose caption edit has no ground truth (the captioner or perturber wrote a caption the scene does not
fit) are left out of both and counted.

With ``all_edits`` the arms cover every edit the run made (accepted and rejected), and ``unfiltered_out`` gets our
own edited image for each of them, kept or not: the synthetic set with the filter switched off. Read against the
oracle of the same edits, that separates what the generator gives from what the filter keeps.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import numpy as np

from cirsynth.world.ground_truth import ground_truth, possible_edits
from cirsynth.world.language import NUM_CAPTION_VARIANTS, caption
from cirsynth.world.render import render
from cirsynth.world.scene import Scene


def benchmark_scenes(benchmark_root: str | Path, split: str = "train") -> dict[str, tuple[Scene, int]]:
    """Resolved reference image path -> (scene, caption variant) for every reference of a world benchmark split."""
    from cirsynth.data import TripletDataset

    ds = TripletDataset(benchmark_root)
    out = {}
    for t in ds.triplets(split=split):
        scene = Scene.from_dict(t.provenance["reference_scene"])
        variant = next((v for v in range(NUM_CAPTION_VARIANTS) if caption(scene, v) == t.reference_caption), None)
        if variant is None:
            raise ValueError(f"{t.id}: its reference caption is none of the grammar's variants")
        out[str(ds.image_path(t.reference).resolve())] = (scene, variant)
    return out


def write_controls(synthetic_root: str | Path, benchmark_root: str | Path, oracle_out: str | Path,
                   wrong_out: str | Path, seed: int = 0, all_edits: bool = False,
                   unfiltered_out: str | Path | None = None, judge: str | Path | None = None) -> dict[str, Any]:
    """Write the oracle and wrong-edit TripletDatasets for the accepted triplets of ``synthetic_root`` (``all_edits``:
    for the rejected ones too; ``unfiltered_out``: also our own edit of each, as accepted triplets).

    Args:
        judge: an attribute classifier folder (``world.classifier``): when given, our own target image of every
            edit with a ground truth is judged against it (named attribute right and the rest preserved), so the
            experiment's arms can be read with how many of our triplets are right.

    Returns:
        Counts: synthetic triplets used (``accepted``, ``rejected``), written per arm, and those left out (no
        ground truth, reference not in the benchmark, no other valid edit); with ``judge``, ``judged``: per status
        the edits judged and how many are right (``right``), have the named attribute (``target``) and keep the rest
        (``preserved``).
    """
    from cirsynth.data import Triplet, TripletDataset

    syn = TripletDataset(synthetic_root)
    scenes = benchmark_scenes(benchmark_root)
    if unfiltered_out is not None and not all_edits:
        raise ValueError("unfiltered_out is the synthetic set without its filter: it needs all_edits")
    counts = {"accepted": 0, "rejected": 0, "oracle": 0, "wrong_edit": 0, "unfiltered": 0, "no_ground_truth": 0,
              "not_a_benchmark_reference": 0, "no_other_edit": 0}
    scope = "every edit" if all_edits else "accepted edits"
    oracle = TripletDataset.create(oracle_out, meta={"source": f"cirsynth.world controls: oracle ({scope})", "of": str(synthetic_root)})
    wrong = TripletDataset.create(wrong_out, meta={"source": f"cirsynth.world controls: wrong-edit ({scope})", "of": str(synthetic_root)})
    unfiltered = (TripletDataset.create(unfiltered_out, meta={"source": "cirsynth.world controls: ours, filter off",
                                                              "of": str(synthetic_root)})
                  if unfiltered_out is not None else None)
    import contextlib

    judged: list[tuple[str, Any, Any, Any]] = []  # (status, reference scene, true target scene, our target image)
    with oracle.writer() as wo, wrong.writer() as ww, (unfiltered.writer() if unfiltered is not None else contextlib.nullcontext()) as wu:
        for t in syn.triplets():
            if t.status not in (("accepted", "rejected") if all_edits else ("accepted",)):
                continue
            counts[t.status] += 1
            key = str(Path(t.provenance.get("input", "")).resolve())
            if key not in scenes:
                counts["not_a_benchmark_reference"] += 1
                continue
            scene, variant = scenes[key]
            gt = ground_truth(scene, variant, t.target_caption)
            if gt is None:
                counts["no_ground_truth"] += 1
                continue
            ref = syn.open_image(t.reference)
            size = ref.size[0]
            if judge is not None:
                judged.append((t.status, scene, gt.target, syn.open_image(t.target)))
            fields = dict(reference="", modification_text=t.modification_text, reference_caption=t.reference_caption,
                          target_caption=t.target_caption, edit_type=t.edit_type, source_words=t.source_words,
                          target_words=t.target_words, paraphrases=t.paraphrases, status="accepted", split=t.split)
            wo.add(Triplet(id=t.id, target="", provenance={"of": t.id, "target_scene": gt.target.to_dict()}, **fields),
                   reference_image=ref, target_image=render(gt.target, size=size))
            counts["oracle"] += 1
            if wu is not None:  # the same edits as the oracle's: left-out ones are left out of both
                wu.add(Triplet(id=t.id, target="", provenance={"of": t.id, "status_in_run": t.status}, **fields),
                       reference_image=ref, target_image=syn.open_image(t.target))
                counts["unfiltered"] += 1
            others = [e for e in possible_edits(scene, variant) if e.target.key() not in (gt.target.key(), scene.key())]
            if not others:
                counts["no_other_edit"] += 1
                continue
            rng = np.random.default_rng([seed, int(hashlib.sha256(t.id.encode()).hexdigest()[:8], 16)])
            other = others[int(rng.integers(len(others)))]
            ww.add(Triplet(id=t.id, target="", provenance={"of": t.id, "target_scene": other.target.to_dict(),
                                                            "wrong_edit": other.caption_edit.modification_text}, **fields),
                   reference_image=ref, target_image=render(other.target, size=size))
            counts["wrong_edit"] += 1
    if judge is not None:
        counts["judged"] = _judge(judge, judged)
    return counts


def _judge(classifier: str | Path, items: list[tuple[str, Any, Any, Any]]) -> dict[str, dict[str, int]]:
    from cirsynth.world.classifier import AttributeClassifier
    from cirsynth.world.evaluate import judge_edit

    clf = AttributeClassifier.from_pretrained(classifier)
    preds = clf.predict([im for *_, im in items]) if items else []
    out: dict[str, dict[str, int]] = {}
    for (status, ref, target, _), pred in zip(items, preds):
        target_ok, preserved = judge_edit(pred, ref, target)
        row = out.setdefault(status, {"edits": 0, "right": 0, "target": 0, "preserved": 0})
        row["edits"] += 1
        row["right"] += int(target_ok and preserved)
        row["target"] += int(target_ok)
        row["preserved"] += int(preserved)
    return out
