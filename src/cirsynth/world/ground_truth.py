"""Ground truth for any caption edit of a world scene: which one-attribute change it names.

A perturber (lexical, LLM) only sees the caption. Given the scene and the caption variant it was
rendered with, every possible one-attribute change is enumerated; the one whose target caption
equals the perturber's is the ground truth, and its target scene is what a perfect editor renders.
"""

from __future__ import annotations

from cirsynth.world.language import VOCABULARY, WORLD_EDIT_TYPES, WorldEdit, apply_edit
from cirsynth.world.scene import Scene


def possible_edits(scene: Scene, variant: int):
    """Every deterministic one-attribute change of ``scene`` (object additions excluded: their new object is random)."""
    for edit_type in WORLD_EDIT_TYPES:
        per_object = edit_type in ("color", "material", "size", "pattern", "object", "count")
        for index in range(len(scene.objects)) if per_object else [0]:
            values = ["remove"] if edit_type == "count" else VOCABULARY[edit_type]
            for value in values:
                try:
                    yield apply_edit(scene, edit_type, 0, object_index=index, new_value=value, variant=variant)
                except ValueError:  # no change, or impossible in this scene
                    continue


def ground_truth(scene: Scene, variant: int, target_caption: str) -> WorldEdit | None:
    """The change of ``scene`` whose target caption (same paraphrase ``variant``) is ``target_caption``; None if no
    single-attribute change produces it (then the caption edit has no ground truth in the world)."""
    wanted = " ".join(target_caption.lower().split())
    for edit in possible_edits(scene, variant):
        if " ".join(edit.caption_edit.target_caption.lower().split()) == wanted:
            return edit
    return None
