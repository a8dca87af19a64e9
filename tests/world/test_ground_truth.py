import numpy as np

from cirsynth.captions import LexicalConfig, LexicalPerturber
from cirsynth.world import caption, random_scene, scene_diff
from cirsynth.world.ground_truth import ground_truth
from cirsynth.world.language import lexical_vocabulary


def test_lexical_world_edits_map_to_one_attribute_ground_truth():
    p = LexicalPerturber(LexicalConfig(vocab=lexical_vocabulary()), wordnet=False)
    rng = np.random.default_rng(0)
    seen_types, mapped, total = set(), 0, 0
    for i in range(40):
        scene, variant = random_scene(rng), i % 9
        result = p.perturb([caption(scene, variant)], n=2, seed=i)[0]
        assert result.edits, result.reason  # every world caption has something to perturb, WordNet or not
        for e in result.edits:
            total += 1
            seen_types.add(e.edit_type)
            gt = ground_truth(scene, variant, e.target_caption)
            if gt is None:
                continue  # e.g. a shape swap to a shape another object already has: no such world scene
            mapped += 1
            assert gt.caption_edit.target_caption == e.target_caption
            diff = scene_diff(scene, gt.target)
            assert len(diff) == 1 or gt.edit_type == "count"  # exactly one attribute changed
    assert {"subject", "object", "color", "background", "lighting"} <= seen_types
    assert mapped >= 0.9 * total


def test_no_ground_truth_for_a_caption_the_world_cannot_make():
    scene = random_scene(np.random.default_rng(3))
    assert ground_truth(scene, 0, "a completely different sentence") is None
