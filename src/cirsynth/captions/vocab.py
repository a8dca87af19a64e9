"""Word lists per edit type, injectable: the default one for photos, and any other (e.g. the mini world's)."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field, fields
from importlib import resources

from cirsynth.captions.text import tokenize


@dataclass
class Vocabulary:
    """What the lexical perturber may swap, and the keywords the edit validator checks types with.

    Multi-word entries are matched as token sequences; for phrase lists (background, weather, lighting)
    the articles a/an/the are interchangeable when matching.
    """

    color: list[str] = field(default_factory=list)  # colour adjectives, swapped among themselves
    material: list[str] = field(default_factory=list)  # material adjectives/nouns ("wooden", "glass")
    size: list[str] = field(default_factory=list)  # size adjectives
    pattern: list[str] = field(default_factory=list)  # surface patterns ("striped", "polka dot")
    count: list[str] = field(default_factory=list)  # plural quantities (no "one": its noun is singular)
    background: list[str] = field(default_factory=list)  # locative phrases ("on a beach")
    weather: list[str] = field(default_factory=list)  # weather phrases ("in the snow")
    lighting: list[str] = field(default_factory=list)  # light / time-of-day phrases ("at night")
    subject_groups: list[list[str]] = field(default_factory=list)  # closed sets of swappable subject nouns; empty: WordNet co-hyponyms
    object_groups: list[list[str]] = field(default_factory=list)  # closed sets of swappable object nouns; empty: WordNet co-hyponyms
    noun_groups: list[list[str]] = field(default_factory=list)  # closed groups tried before WordNet (people: man <-> woman)
    material_groups: list[list[str]] = field(default_factory=list)  # a material swaps only within its groups (fabric, rigid)
    size_groups: list[list[str]] = field(default_factory=list)  # a size swaps only within its groups (small/large, tall/short)
    category_colors: dict[str, list[str]] = field(default_factory=dict)  # colours a thing of a visual category can have
    weather_adjectives: list[str] = field(default_factory=list)  # "a sunny field" -> "a foggy field" (swapped, never stacked)
    lighting_adjectives: list[str] = field(default_factory=list)  # "a bright room" -> "a dim room"
    indoor_keywords: list[str] = field(default_factory=list)  # words that put a scene indoors (no weather there)
    outdoor_keywords: list[str] = field(default_factory=list)  # weather only on captions with one of these (empty: no check)
    day_keywords: list[str] = field(default_factory=list)  # daytime words; never combined with night_keywords
    night_keywords: list[str] = field(default_factory=list)  # night-time words
    weather_keywords: list[str] = field(default_factory=list)  # a weather edit's new words must contain one
    lighting_keywords: list[str] = field(default_factory=list)  # a lighting edit's new words must contain one
    locative_prepositions: list[str] = field(default_factory=list)  # start of a background phrase

    def __post_init__(self) -> None:
        for f in fields(self):
            v = getattr(self, f.name)
            if f.name == "category_colors":
                if not isinstance(v, dict) or not all(isinstance(x, list) for x in v.values()):
                    raise TypeError("Vocabulary.category_colors must map a category to a list of colours")
                continue
            if not isinstance(v, list):
                raise TypeError(f"Vocabulary.{f.name} must be a list, got {type(v).__name__}")
        for name in ("subject_groups", "object_groups", "noun_groups", "material_groups", "size_groups"):
            for g in getattr(self, name):
                if not isinstance(g, list) or len(g) < 2:
                    raise ValueError(f"Vocabulary.{name}: each group needs at least two words, got {g!r}")

    @classmethod
    def default(cls) -> "Vocabulary":
        """The vocabulary for photo captions that ships with cirsynth (``captions/data/vocabulary.json``)."""
        text = resources.files("cirsynth.captions").joinpath("data/vocabulary.json").read_text("utf-8")
        return cls.from_dict(json.loads(text))

    @classmethod
    def from_dict(cls, d: dict) -> "Vocabulary":
        known = {f.name for f in fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise ValueError(f"Vocabulary: unknown fields {sorted(unknown)} (known: {sorted(known)})")
        return cls(**d)

    @classmethod
    def from_json(cls, path: str | os.PathLike) -> "Vocabulary":
        """Read a vocabulary from a JSON file with the same keys as the dataclass fields."""
        return cls.from_dict(json.loads(open(path, encoding="utf-8").read()))

    def words(self, edit_type: str) -> list[tuple[str, ...]]:
        """The entries of ``edit_type`` as lower-cased token tuples (longest first, for greedy matching)."""
        entries = getattr(self, edit_type)
        toks = {tuple(t.lower for t in tokenize(e)) for e in entries}
        return sorted(toks, key=lambda t: (-len(t), t))

    def attribute_words(self) -> set[str]:
        """Every single word of the attribute lists (never treated as a noun)."""
        out: set[str] = set()
        for name in ("color", "material", "size", "pattern", "count"):
            for e in getattr(self, name):
                out.update(t.lower for t in tokenize(e))
        return out
