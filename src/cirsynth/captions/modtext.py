"""Modification texts: relative captions in the style of CIRR / FashionIQ, from an edit's changed span.

Each edit type has several paraphrase families (a contrastive "is X instead of Y", an imperative "make the
car X", a change request "change the colour from Y to X", a terse "X rather than Y", ...). One phrasing is
drawn as the modification text; the others become ``CaptionEdit.paraphrases``.
"""

from __future__ import annotations

import random

from cirsynth.captions.text import STOPWORDS, Token, article_for

_ATTRIBUTE = [
    "is {t} instead of {s}",
    "make the {noun} {t}",
    "change the {kind} of the {noun} from {s} to {t}",
    "the {noun} should be {t}, not {s}",
    "{t} rather than {s}",
    "same {noun} but {t}",
]
_COUNT = [
    "has {t} {noun} instead of {s}",
    "show {t} {noun} rather than {s}",
    "change the number of {noun} to {t}",
    "{t} instead of {s}",
]
_NOUN = [
    "replace the {s} with {a_t}",
    "has {a_t} instead of {a_s}",
    "change the {s} into {a_t}",
    "{a_t} instead of {a_s}",
    "swap the {s} for {a_t}",
]
_SCENE_SWAP = {
    "background": [
        "change the background to {t_bare}",
        "move it {t}",
        "is {t} instead of {s}",
        "same scene but {t}",
        "set it {t} rather than {s}",
    ],
    "weather": [
        "change the weather: {t} instead of {s}",
        "show it {t}",
        "is {t} rather than {s}",
        "same scene but {t}",
    ],
    "lighting": [
        "change the lighting: {t} instead of {s}",
        "show it {t}",
        "photographed {t} rather than {s}",
        "same scene but {t}",
    ],
}
_SCENE_ADD = {
    "background": ["change the background to {t_bare}", "put it {t}", "place it {t}", "same scene but {t}"],
    "weather": ["show it {t}", "add weather: {t}", "same scene but {t}", "now {t}"],
    "lighting": ["show it {t}", "change the lighting: {t}", "photographed {t}", "same scene but {t}"],
}
_KIND = {"color": "colour", "material": "material", "size": "size", "pattern": "pattern"}


def _head_noun(tokens: list[Token], start: int, end: int) -> str:
    """The first content word after the span (the noun an attribute modifies), else before it, else 'it'."""
    for t in tokens[end:]:
        if t.text.isalpha() and t.lower not in STOPWORDS:
            return t.text
    for t in reversed(tokens[:start]):
        if t.text.isalpha() and t.lower not in STOPWORDS:
            return t.text
    return "object"


def _plural(noun: str) -> bool:
    """A rough plural test for swapped nouns: ends in s but not ss ("cats", not "glass", "cross")."""
    return noun.endswith("s") and not noun.endswith("ss")


def _strip_preposition(phrase: str, prepositions: set[str]) -> str:
    words = phrase.split()
    return " ".join(words[1:]) if len(words) > 1 and words[0].lower() in prepositions else phrase


def modification_texts(
    edit_type: str,
    source_words: list[str],
    target_words: list[str],
    target_tokens: list[Token],
    target_start: int,
    target_end: int,
    rng: random.Random,
    prepositions: set[str] | None = None,
    noun: str | None = None,
) -> tuple[str, list[str]]:
    """A modification text and its paraphrases for one edit.

    Args:
        edit_type: one of ``EDIT_TYPES``.
        source_words / target_words: the changed span on each side (source empty for an insertion).
        target_tokens, target_start, target_end: the edited caption's tokens and the span in them (for the noun).
        rng: picks which phrasing is the main one.
        prepositions: words a background phrase starts with (dropped for "change the background to ...").
        noun: the noun the changed attribute describes (``nouns.head_noun_span``); None: the first content
            word after the span (or before it), a guess that can land on another attribute.

    Returns:
        ``(modification_text, paraphrases)``; paraphrases never repeat the main text.
    """
    s = " ".join(source_words)
    t = " ".join(target_words)
    strip = (lambda x: x[len(x.split(" ")[0]) + 1:] if x.split(" ")[0].lower() in {"a", "an", "the"} else x)
    noun = noun or _head_noun(target_tokens, target_start, target_end)
    if edit_type in _KIND:
        templates = _ATTRIBUTE
    elif edit_type == "count":
        templates = _COUNT
    elif edit_type in ("subject", "object"):
        templates = _NOUN
    elif edit_type in _SCENE_SWAP:
        templates = _SCENE_SWAP[edit_type] if source_words else _SCENE_ADD[edit_type]
    else:
        raise ValueError(f"unknown edit type {edit_type!r}")
    s_bare, t_bare = strip(s), strip(t)
    values = {
        "s": s, "t": t, "noun": noun, "kind": _KIND.get(edit_type, edit_type),
        "a_s": f"{article_for(s_bare)} {s_bare}" if s_bare else s,
        "a_t": f"{article_for(t_bare)} {t_bare}" if t_bare else t,
        "t_bare": _strip_preposition(t, prepositions or set()),
    }
    if edit_type in ("subject", "object"):
        values["s"], values["t"] = s_bare, t_bare
        if _plural(s_bare) and _plural(t_bare):  # "has lions instead of cats", not "a lions"
            values["a_s"], values["a_t"] = s_bare, t_bare
    texts = list(dict.fromkeys(tpl.format(**values) for tpl in templates))
    main = rng.choice(texts)
    return main, [x for x in texts if x != main]
