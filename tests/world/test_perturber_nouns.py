"""World modification texts name the object by its shape, never by an attribute or the background (issue 17)."""

import re

import numpy as np

from cirsynth.captions import LexicalConfig, LexicalPerturber
from cirsynth.world.language import NUM_CAPTION_VARIANTS, caption, lexical_vocabulary
from cirsynth.world.scene import BACKGROUNDS, COLORS, LIGHTS, MATERIALS, PATTERNS, SIZES, random_scene

_NOT_NOUNS = set(COLORS) | set(MATERIALS) | set(SIZES) | set(PATTERNS) | set(BACKGROUNDS) | set(LIGHTS)
_NOUN_SLOT = re.compile(r"\b(?:same|make the|the|of the)\s+(\w+)\s+(?:but|should|is|from|\w+$)")


def test_attribute_edit_texts_name_a_shape_on_every_caption_variant():
    rng = np.random.default_rng(0)
    scenes = [random_scene(rng) for _ in range(12)]
    captions = [caption(s, v) for s in scenes for v in range(NUM_CAPTION_VARIANTS)]
    lex = LexicalPerturber(LexicalConfig(vocab=lexical_vocabulary()))
    checked = 0
    for res in lex.perturb(captions, edit_types=["color", "material", "size", "pattern"], n=4, seed=0):
        for e in res.edits:
            for text in [e.modification_text, *e.paraphrases]:
                for m in _NOUN_SLOT.finditer(text):
                    assert m.group(1) not in _NOT_NOUNS, (e.source_caption, text)
                    checked += 1
    assert checked > 300


def test_attributes_after_the_noun():
    src = "a metal diamond, large, blue and dotted on the left on wood at night"
    lex = LexicalPerturber(LexicalConfig(vocab=lexical_vocabulary()))
    res = lex.perturb([src], edit_types=["color", "pattern", "size"], n=12, seed=0)[0]
    assert len(res.edits) >= 6
    for e in res.edits:
        texts = " | ".join([e.modification_text, *e.paraphrases])
        assert "diamond" in texts, texts
        assert not re.search(r"\b(same|the) (wood|large|blue|dotted|plain|striped|metal)\b", texts), texts


def test_no_edit_type_names_an_attribute_or_background_as_the_object():
    """Every edit type, with and without WordNet: subject/object/background/lighting texts too."""
    rng = np.random.default_rng(1)
    scenes = [random_scene(rng) for _ in range(12)]
    captions = [caption(s, v) for s in scenes for v in range(NUM_CAPTION_VARIANTS)]
    for wordnet in (False, None):
        lex = LexicalPerturber(LexicalConfig(vocab=lexical_vocabulary()), wordnet=wordnet)
        checked, types = 0, set()
        for res in lex.perturb(captions, n=6, seed=0):
            for e in res.edits:
                types.add(e.edit_type)
                for text in [e.modification_text, *e.paraphrases]:
                    for m in _NOUN_SLOT.finditer(text):
                        assert m.group(1) not in _NOT_NOUNS, (e.edit_type, e.source_caption, text)
                        checked += 1
        assert checked > 500 and {"subject", "object", "background", "lighting"} <= types, (checked, types)
