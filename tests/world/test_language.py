import numpy as np
import pytest

from cirsynth.data.records import EDIT_TYPES
from cirsynth.world.language import (
    NUM_CAPTION_VARIANTS,
    VOCABULARY,
    WORLD_EDIT_TYPES,
    apply_edit,
    caption,
    caption_variants,
    changed_span,
    tokenize,
)
from cirsynth.world.render import render_array
from cirsynth.world.scene import OBJECT_ATTRIBUTES, POSITIONS, Scene, WorldObject, random_scene, scene_diff

SCENES = [random_scene(s) for s in range(12)]


def test_edit_types_are_cirsynth_edit_types_and_vocabulary_is_data():
    assert set(WORLD_EDIT_TYPES) <= set(EDIT_TYPES)
    assert set(VOCABULARY) == set(WORLD_EDIT_TYPES) - {"count"}
    for words in VOCABULARY.values():
        assert len(words) == len(set(words)) >= 3 and all(" " not in w for w in words)


def test_captions_name_every_attribute_with_its_vocabulary_word():
    for scene in SCENES:
        for text in caption_variants(scene):
            tokens = tokenize(text)
            for obj in scene.objects:
                for attr in OBJECT_ATTRIBUTES:
                    assert getattr(obj, attr) in tokens
            assert scene.background in tokens and scene.light in tokens
    assert len(set(caption_variants(SCENES[0]))) == NUM_CAPTION_VARIANTS  # real paraphrases
    with pytest.raises(ValueError, match="variant"):
        caption(SCENES[0], NUM_CAPTION_VARIANTS)


def test_changed_span_is_the_single_differing_span():
    start, src, tgt = changed_span("a red circle on grass, at night", "a blue circle on grass, at night")
    assert (start, src, tgt) == (1, ["red"], ["blue"])
    assert changed_span("a b c", "a b c") == (3, [], [])
    assert changed_span("x and y , z", "x , z") == (1, ["and", "y"], [])


@pytest.mark.parametrize("edit_type", WORLD_EDIT_TYPES)
def test_every_edit_changes_exactly_the_named_attribute(edit_type):
    for i, scene in enumerate(SCENES):
        edit = apply_edit(scene, edit_type, rng=i)
        diff = scene_diff(scene, edit.target)
        assert edit.target.seed == scene.seed  # same nuisances: the ground truth is a re-render
        if edit_type == "count":
            # exactly one slot appears or disappears, nothing else changes
            slots = {k.split(".")[0] for k in diff}
            assert len(slots) == 1 and slots <= set(POSITIONS)
            assert len(diff) == len(OBJECT_ATTRIBUTES)
            assert abs(len(edit.target.objects) - len(scene.objects)) == 1
            assert all(("none" in pair) for pair in diff.values())
        else:
            assert diff == {edit.attribute: (edit.old, edit.new)}
            assert edit.old != edit.new
        assert not np.array_equal(render_array(scene), render_array(edit.target))


@pytest.mark.parametrize("edit_type", WORLD_EDIT_TYPES)
def test_caption_edit_is_single_span_with_the_right_words(edit_type):
    for i, scene in enumerate(SCENES):
        for variant in range(NUM_CAPTION_VARIANTS):
            edit = apply_edit(scene, edit_type, rng=100 + i, variant=variant)
            ce = edit.caption_edit
            assert ce.edit_type == edit_type
            assert ce.source_caption == caption(scene, variant) and ce.target_caption == caption(edit.target, variant)
            a, b = tokenize(ce.source_caption), tokenize(ce.target_caption)
            start = changed_span(ce.source_caption, ce.target_caption)[0]
            assert a == a[:start] + ce.source_words + a[start + len(ce.source_words) :]
            assert a[:start] == b[:start]
            assert a[start + len(ce.source_words) :] == b[start + len(ce.target_words) :]
            if edit_type == "count":
                if int(edit.new) < int(edit.old):  # removal: a deleted span naming the removed shape
                    removed = {o.shape for o in scene.objects} - {o.shape for o in edit.target.objects}
                    assert ce.target_words == [] and removed <= set(ce.source_words)
                else:
                    assert ce.source_words == [] and edit.target.objects[-1].shape in ce.target_words
            else:
                assert (ce.source_words, ce.target_words) == ([edit.old], [edit.new])
            assert ce.modification_text and len(ce.paraphrases) >= 2
            assert ce.modification_text not in ce.paraphrases


def test_color_edit_is_local_in_pixels_and_text():
    scene = Scene(
        (
            WorldObject("circle", "red", "medium", "matte", "plain", "left"),
            WorldObject("square", "blue", "large", "metal", "striped", "right"),
        ),
        "grass",
        "midday",
        seed=3,
    )
    edit = apply_edit(scene, "color", rng=0, object_index=0, new_value="yellow")
    assert edit.attribute == "left.color" and (edit.old, edit.new) == ("red", "yellow")
    texts = [edit.caption_edit.modification_text, *edit.caption_edit.paraphrases]
    assert all("yellow" in t and "circle" in t for t in texts)
    changed = np.abs(render_array(edit.target) - render_array(scene)).sum(-1) > 1e-6
    assert changed.any() and not changed[:, 32:].any()  # the right half (the square) is untouched


def test_impossible_or_malformed_edits_fail_clearly():
    one = Scene((WorldObject("circle", "red", "medium", "matte", "plain", "left"),), "grass", "midday")
    full = random_scene(0, num_objects=3)
    with pytest.raises(ValueError, match="edit_type"):
        apply_edit(one, "weather", rng=0)
    with pytest.raises(ValueError, match="changes nothing"):
        apply_edit(one, "color", rng=0, new_value="red")
    with pytest.raises(ValueError, match="not one of"):
        apply_edit(one, "material", rng=0, new_value="wood")
    with pytest.raises(ValueError, match="only object"):
        apply_edit(one, "count", rng=0, new_value="remove")
    with pytest.raises(ValueError, match="every slot"):
        apply_edit(full, "count", rng=0, new_value="add")
    with pytest.raises(ValueError, match="out of range"):
        apply_edit(one, "size", rng=0, object_index=2)
    # a shape swap never duplicates a shape of the scene
    for i in range(20):
        target = apply_edit(full, "object", rng=i).target
        assert len({o.shape for o in target.objects}) == 3


def test_held_out_pairs_are_never_created_by_edits():
    banned = frozenset({("circle", c) for c in ("red", "orange", "yellow", "green", "blue", "purple")})
    scene = Scene((WorldObject("square", "pink", "medium", "matte", "plain", "left"),), "grass", "midday")
    for i in range(30):
        target = apply_edit(scene, "object", rng=i, exclude_combos=banned).target
        assert (target.objects[0].shape, target.objects[0].color) not in banned


def test_world_vocabulary_configures_the_lexical_perturber():
    from cirsynth.captions.lexical import LexicalConfig, LexicalPerturber
    from cirsynth.world.language import lexical_vocabulary

    perturber = LexicalPerturber(LexicalConfig(vocab=lexical_vocabulary()), wordnet=False)
    captions = [caption(s, i % NUM_CAPTION_VARIANTS) for i, s in enumerate(SCENES[:4])]
    for edit_type in ("color", "material", "size", "pattern", "background", "lighting"):
        words = set(VOCABULARY[edit_type])
        for result in perturber.perturb(captions, edit_types=[edit_type], n=1, seed=0):
            assert result.edits, result.reason
            e = result.edits[0]
            # a swap inside the world's own word list: the target caption describes a world scene
            assert set(e.source_words[-1:]) <= words and set(e.target_words[-1:]) <= words
            assert e.source_words != e.target_words


def test_modification_texts_use_an_before_a_vowel():
    import re

    texts = []
    for s in range(60):
        scene = random_scene(s)
        adds = [apply_edit(scene, "count", rng=s, new_value="add")] if len(scene.objects) < 3 else []
        for e in [*adds, apply_edit(scene, "object", rng=s), apply_edit(scene, "material", rng=s)]:
            texts += [e.caption_edit.modification_text, *e.caption_edit.paraphrases]
    assert any(re.search(r"\ban orange\b", t) for t in texts)  # the case that used to read "a orange"
    assert not [t for t in texts if re.search(r"\ba [aeiou]", t)]
    assert any(re.search(r"\ba [^aeiou]", t) for t in texts)


def test_world_vocabulary_file_is_the_grammars_word_lists():
    """``--vocabulary world`` reads a committed file (the synthesis layer may not import the world); it must be the
    grammar's own lists. After changing the grammar, rewrite it:
    python -c "import json; from cirsynth.world.language import lexical_vocabulary_dict as d;
    print(json.dumps(d(), indent=1))" > src/cirsynth/assets/world/vocabulary.json"""
    import json

    from cirsynth.synth.refs import WORLD_VOCABULARY_FILE, vocabulary_ref
    from cirsynth.world.language import lexical_vocabulary, lexical_vocabulary_dict

    assert json.loads(WORLD_VOCABULARY_FILE.read_text()) == lexical_vocabulary_dict()
    ref = vocabulary_ref("world")
    assert ref.vocab == lexical_vocabulary() and ref.wordnet is False and ref.world
