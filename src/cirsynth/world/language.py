"""Captions from a small grammar, and one-attribute edits with their ground truth.

Captions are built as word lists (punctuation as its own token) from paraphrase templates; an edit
re-captions the changed scene with the *same* templates, so the two captions differ in exactly one
contiguous span, which :func:`changed_span` recovers. The ground-truth target of an edit is the
changed scene, rendered with the same seed.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace

import numpy as np

from cirsynth.data.records import EDIT_TYPES, CaptionEdit
from cirsynth.world.scene import (
    BACKGROUNDS,
    COLORS,
    LIGHTS,
    MATERIALS,
    MAX_OBJECTS,
    PATTERNS,
    POSITIONS,
    SHAPES,
    SIZES,
    Scene,
    WorldObject,
    random_object,
)

# The world's edit types, all members of cirsynth's EDIT_TYPES.
WORLD_EDIT_TYPES: tuple[str, ...] = (
    "color",
    "material",
    "size",
    "pattern",
    "object",
    "count",
    "background",
    "lighting",
)
assert set(WORLD_EDIT_TYPES) <= set(EDIT_TYPES)

# Per edit type, the words a caption uses for that attribute (one word per value). A lexical
# perturber swapping one of these for another of the same list yields a valid world caption.
# "count" edits add or remove a whole object phrase, so they have no word list.
VOCABULARY: dict[str, tuple[str, ...]] = {
    "color": tuple(COLORS),
    "material": MATERIALS,
    "size": tuple(SIZES),
    "pattern": PATTERNS,
    "object": SHAPES,
    "background": BACKGROUNDS,
    "lighting": LIGHTS,
}

# How a caption names each slot; every object phrase ends with it.
POSITION_PHRASE = {"left": "on the left", "middle": "in the middle", "right": "on the right"}
_PATTERN_NOUN = {"plain": "no pattern", "striped": "stripes", "dotted": "dots", "checkered": "checks"}

# Object phrase paraphrases; each names every attribute with its single vocabulary word.
_OBJECT_TEMPLATES: tuple[str, ...] = (
    "a {size} {color} {pattern} {material} {shape}",
    "a {size} {pattern} {color} {shape} with a {material} finish",
    "a {material} {shape} , {size} , {color} and {pattern}",
)
# Scene paraphrases: {objects} = object phrases (each with its position) joined by "and".
_SCENE_TEMPLATES: tuple[str, ...] = (
    "{objects} , on {background} , at {light}",
    "at {light} , {objects} on {background}",
    "a picture of {objects} on {background} at {light}",
)
NUM_CAPTION_VARIANTS = len(_OBJECT_TEMPLATES) * len(_SCENE_TEMPLATES)

_TOKEN = re.compile(r"[\w']+|[^\w\s]")


def tokenize(text: str) -> list[str]:
    """Split a caption into words and punctuation tokens (the unit of :func:`changed_span`)."""
    return _TOKEN.findall(text)


def detokenize(tokens: list[str]) -> str:
    """Join tokens with spaces, except before punctuation."""
    out = ""
    for t in tokens:
        out += t if (not out or re.fullmatch(r"[^\w\s]", t)) else " " + t
    return out


def _object_phrase(obj: WorldObject, template: int) -> str:
    return _OBJECT_TEMPLATES[template].format(**vars(obj)) + " " + POSITION_PHRASE[obj.position]


def caption(scene: Scene, variant: int = 0) -> str:
    """Caption a scene with paraphrase ``variant`` in ``[0, NUM_CAPTION_VARIANTS)``.

    Objects are described in ``scene.objects`` order, each with all its attributes and its slot.
    """
    if not 0 <= variant < NUM_CAPTION_VARIANTS:
        raise ValueError(f"variant must be in [0, {NUM_CAPTION_VARIANTS}), got {variant}")
    obj_t, scene_t = divmod(variant, len(_SCENE_TEMPLATES))
    objects = " and ".join(_object_phrase(o, obj_t) for o in scene.objects)
    text = _SCENE_TEMPLATES[scene_t].format(objects=objects, background=scene.background, light=scene.light)
    return detokenize(tokenize(text))


def caption_variants(scene: Scene) -> list[str]:
    """Every paraphrase of a scene's caption, variant order."""
    return [caption(scene, v) for v in range(NUM_CAPTION_VARIANTS)]


def changed_span(source: str, target: str) -> tuple[int, list[str], list[str]]:
    """The one contiguous token span in which two captions differ.

    Returns:
        (start token index, source span tokens, target span tokens): stripping the longest common
        prefix and suffix, ``source == prefix + source_span + suffix`` and likewise for target.
    """
    a, b = tokenize(source), tokenize(target)
    p = 0
    while p < min(len(a), len(b)) and a[p] == b[p]:
        p += 1
    s = 0
    while s < min(len(a), len(b)) - p and a[len(a) - 1 - s] == b[len(b) - 1 - s]:
        s += 1
    return p, a[p : len(a) - s], b[p : len(b) - s]


@dataclass(frozen=True)
class WorldEdit:
    """A one-attribute change of a scene, with its ground truth.

    ``reference``/``target`` are the scenes before and after; ``caption_edit`` carries the captions,
    the changed span and the modification texts (first one chosen, the rest as paraphrases).
    """

    reference: Scene
    target: Scene
    edit_type: str  # one of WORLD_EDIT_TYPES
    attribute: str  # label key changed ("middle.color", "background", "count", ...)
    old: str  # old value ("red"; for count: the number of objects before)
    new: str  # new value
    caption_edit: CaptionEdit


def _other(values: tuple[str, ...] | list[str], old: str, rng: np.random.Generator) -> str:
    choices = [v for v in values if v != old]
    return choices[rng.integers(len(choices))]


def _a(word: str) -> str:
    """``word`` with its indefinite article: "an orange", "a red"."""
    return f"{'an' if word[0] in 'aeiou' else 'a'} {word}"


def _mod_texts(edit_type: str, scene: Scene, obj: WorldObject | None, old: str, new: str) -> list[str]:
    """Relative captions (CIRR style) for an edit, several phrasings."""
    shape = obj.shape if obj is not None else ""
    if edit_type == "color":
        return [
            f"make the {shape} {new}",
            f"the {shape} is {new} instead of {old}",
            f"change the {old} {shape} to {new}",
        ]
    if edit_type == "material":
        return [
            f"make the {shape} {new} instead of {old}",
            f"change the material of the {shape} from {old} to {new}",
            f"the {shape} should have {_a(new)} finish",
        ]
    if edit_type == "size":
        bigger = list(SIZES).index(new) > list(SIZES).index(old)
        return [
            f"make the {shape} {'bigger' if bigger else 'smaller'}",
            f"the {shape} is {new} instead of {old}",
            f"change the size of the {shape} to {new}",
        ]
    if edit_type == "pattern":
        return [
            f"give the {shape} {_PATTERN_NOUN[new]} instead of {_PATTERN_NOUN[old]}",
            f"the {shape} is {new} instead of {old}",
            f"make the {old} {shape} {new}",
        ]
    if edit_type == "object":
        return [
            f"replace the {old} with {_a(new)}",
            f"{_a(new)} instead of the {old}",
            f"turn the {old} into {_a(new)}",
        ]
    if edit_type == "count":
        if int(new) > int(old):
            added = scene  # the target scene; the added object is its last
            o = added.objects[-1]
            return [
                f"add {_a(o.color)} {o.shape} {POSITION_PHRASE[o.position]}",
                f"there is also {_a(o.size)} {o.color} {o.shape} {POSITION_PHRASE[o.position]}",
                f"include {_a(o.color)} {o.material} {o.shape} {POSITION_PHRASE[o.position]}",
            ]
        return [f"remove the {shape}", f"take away the {obj.color} {shape}", f"the same without the {shape}"]
    if edit_type == "background":
        return [
            f"change the background to {new}",
            f"on {new} instead of {old}",
            f"put everything on {new}",
        ]
    if edit_type == "lighting":
        return [
            f"make it {new} instead of {old}",
            f"show the same scene at {new}",
            f"change the time of day to {new}",
        ]
    raise ValueError(f"unknown edit type {edit_type!r}")


def apply_edit(
    scene: Scene,
    edit_type: str,
    rng: np.random.Generator | int,
    *,
    object_index: int | None = None,
    new_value: str | None = None,
    variant: int | None = None,
    exclude_combos: frozenset[tuple[str, str]] = frozenset(),
) -> WorldEdit:
    """Change one attribute of a scene and describe the change.

    Args:
        scene: the reference scene.
        edit_type: one of :data:`WORLD_EDIT_TYPES`.
        rng: Generator or int seed for every unspecified choice.
        object_index: which object an object-level edit (or a removal) touches; random if None.
        new_value: the attribute's new value (must differ from the old); random if None. For
            ``count``: ``"add"`` or ``"remove"``.
        variant: caption paraphrase (same for both captions); random if None.
        exclude_combos: (shape, colour) pairs the target scene must not contain.

    Returns:
        a :class:`WorldEdit` whose ``target`` differs from ``scene`` only in the named attribute.

    Raises:
        ValueError: unknown edit type or value, or an edit impossible in this scene (e.g. adding to
            a full scene, removing the only object, a shape already used by another object).
    """
    rng = np.random.default_rng(rng) if not isinstance(rng, np.random.Generator) else rng
    if edit_type not in WORLD_EDIT_TYPES:
        raise ValueError(f"edit_type must be one of {WORLD_EDIT_TYPES}, got {edit_type!r}")
    n = len(scene.objects)
    if object_index is None:
        object_index = int(rng.integers(n))
    if not 0 <= object_index < n:
        raise ValueError(f"object_index {object_index} out of range for a scene with {n} objects")
    obj: WorldObject | None = scene.objects[object_index]

    def pick(values: tuple[str, ...], old: str) -> str:
        if new_value is None:
            return _other(values, old, rng)
        if new_value not in values:
            raise ValueError(f"{edit_type} value {new_value!r} is not one of {values}")
        if new_value == old:
            raise ValueError(f"{edit_type} edit to {new_value!r} changes nothing")
        return new_value

    attr_of = {"color": "color", "material": "material", "size": "size", "pattern": "pattern", "object": "shape"}
    if edit_type in attr_of:
        attr = attr_of[edit_type]
        old = getattr(obj, attr)
        allowed: tuple[str, ...] = VOCABULARY[edit_type]
        if edit_type == "object":  # shapes name objects, so they stay distinct
            allowed = tuple(s for s in SHAPES if s == old or s not in {o.shape for o in scene.objects})
        if exclude_combos and attr in ("shape", "color"):

            def combo(v: str) -> tuple[str, str]:
                return (v, obj.color) if attr == "shape" else (obj.shape, v)

            allowed = tuple(v for v in allowed if v == old or combo(v) not in exclude_combos)
        if len(allowed) < 2:
            raise ValueError(f"no {edit_type} value left to change the {obj.shape} to")
        new = pick(allowed, old)
        target = scene.replace_object(object_index, **{attr: new})
        attribute = f"{obj.position}.{attr}"
    elif edit_type == "background":
        old, new, attribute = scene.background, pick(BACKGROUNDS, scene.background), "background"
        target, obj = replace(scene, background=new), None
    elif edit_type == "lighting":
        old, new, attribute = scene.light, pick(LIGHTS, scene.light), "light"
        target, obj = replace(scene, light=new), None
    else:  # count
        if new_value is not None:
            action = new_value
        elif n == 1 or n == MAX_OBJECTS:
            action = "add" if n == 1 else "remove"
        else:
            action = ("add", "remove")[rng.integers(2)]
        if action == "add":
            free = [p for p in POSITIONS if scene.object_at(p) is None]
            if not free:
                raise ValueError("cannot add an object: every slot is taken")
            added = random_object(
                rng,
                free[rng.integers(len(free))],
                avoid_shapes=tuple(o.shape for o in scene.objects),
                exclude_combos=exclude_combos,
            )
            target, obj = replace(scene, objects=(*scene.objects, added)), None
        elif action == "remove":
            if n == 1:
                raise ValueError("cannot remove the only object")
            target = replace(scene, objects=tuple(o for i, o in enumerate(scene.objects) if i != object_index))
        else:
            raise ValueError(f"count edits take new_value 'add' or 'remove', got {new_value!r}")
        old, new, attribute = str(n), str(len(target.objects)), "count"

    if variant is None:
        variant = int(rng.integers(NUM_CAPTION_VARIANTS))
    src, tgt = caption(scene, variant), caption(target, variant)
    _, src_words, tgt_words = changed_span(src, tgt)
    texts = _mod_texts(edit_type, target if edit_type == "count" else scene, obj, old, new)
    first = int(rng.integers(len(texts)))
    texts = texts[first:] + texts[:first]
    edit = CaptionEdit(
        source_caption=src,
        target_caption=tgt,
        modification_text=texts[0],
        edit_type=edit_type,
        source_words=src_words,
        target_words=tgt_words,
        paraphrases=texts[1:],
        keep_words=[o.shape for o in scene.objects] if edit_type == "background" else [],  # as build_edit's nouns
        provenance={
            "perturber": "world-ground-truth",
            "attribute": attribute,
            "old": old,
            "new": new,
            "caption_variant": variant,
        },
    )
    return WorldEdit(scene, target, edit_type, attribute, old, new, edit)



def lexical_vocabulary_dict() -> dict[str, list]:
    """The world's vocabulary in the fields of ``cirsynth.captions.Vocabulary`` (plain JSON-able data).

    Shapes are the nouns: one closed group for both subject (first noun) and object swaps. Background and
    lighting entries are the exact phrases the caption grammar uses. Count edits add or remove whole
    objects, which a word swap cannot express, so ``count`` is empty.
    """
    return {
        "color": list(COLORS),
        "material": list(MATERIALS),
        "size": list(SIZES),
        "pattern": list(PATTERNS),
        "count": [],
        "background": [f"on {b}" for b in BACKGROUNDS],
        "weather": [],
        "lighting": [f"at {light}" for light in LIGHTS],
        "subject_groups": [list(SHAPES)],
        "object_groups": [list(SHAPES)],
        "weather_keywords": [],
        "lighting_keywords": list(LIGHTS),
        "locative_prepositions": ["on"],
    }


def lexical_vocabulary():
    """The world's vocabulary as a ``cirsynth.captions.Vocabulary`` (for ``LexicalPerturber``)."""
    from cirsynth.captions.vocab import Vocabulary

    return Vocabulary.from_dict(lexical_vocabulary_dict())
