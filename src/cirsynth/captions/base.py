"""The perturber batch API, and edit validation shared by every perturber.

Every perturber has::

    perturb(captions: list[str], edit_types: Sequence[str] | None = None, n: int = 1, seed: int = 0)
        -> list[PerturbResult]

one ``PerturbResult`` per input caption, in order: ``edits`` holds up to ``n`` distinct ``CaptionEdit``s; when
it holds fewer than ``n`` (``rejected`` when none), ``reason`` says why. Nothing is dropped silently. Results
depend only on ``(caption, edit_types, n, seed)``, not on the batch a caption arrives in.
"""

from __future__ import annotations

import hashlib
import random
from dataclasses import dataclass, field
from typing import Any, Protocol, Sequence

from cirsynth.captions.modtext import modification_texts
from cirsynth.captions.nouns import head_noun_span, noun_spans
from cirsynth.captions.text import Span, diff_span, tokenize
from cirsynth.captions.vocab import Vocabulary
from cirsynth.data.records import EDIT_TYPES, CaptionEdit


@dataclass
class PerturbResult:
    """What a perturber made of one input caption."""

    caption: str  # the input, as given
    edits: list[CaptionEdit] = field(default_factory=list)  # distinct edits, at most the n asked for
    reason: str | None = None  # why there are fewer edits than asked (all of them when rejected); None otherwise

    @property
    def rejected(self) -> bool:
        """True when the caption got no edit at all."""
        return not self.edits


class Perturber(Protocol):
    def perturb(
        self, captions: list[str], edit_types: Sequence[str] | None = None, n: int = 1, seed: int = 0
    ) -> list[PerturbResult]: ...


def check_edit_types(edit_types: Sequence[str] | None) -> list[str]:
    """``edit_types`` validated against ``EDIT_TYPES`` (all of them when None)."""
    if edit_types is None:
        return list(EDIT_TYPES)
    if isinstance(edit_types, str):
        edit_types = [edit_types]
    unknown = [t for t in edit_types if t not in EDIT_TYPES]
    if unknown or not edit_types:
        raise ValueError(f"unknown edit types {unknown} (known: {list(EDIT_TYPES)})" if unknown
                         else "edit_types is empty")
    return list(dict.fromkeys(edit_types))


def caption_rng(seed: int, caption: str, *salt: object) -> random.Random:
    """A random generator determined by the seed, the caption and ``salt`` only (not by batch position)."""
    key = "\x1f".join([str(seed), caption, *map(str, salt)])
    return random.Random(int.from_bytes(hashlib.sha256(key.encode()).digest()[:8], "big"))


def _contains(words: list[str], entries: list[tuple[str, ...]]) -> bool:
    return any(tuple(words[i:i + len(e)]) == e for e in entries for i in range(len(words) - len(e) + 1))


@dataclass(frozen=True)
class EditChecks:
    """How strictly an edit is validated."""

    max_span_words: int = 6  # a longer changed span is a rewrite, not one attribute


def validate_edit(
    source: str,
    target: str,
    edit_type: str,
    vocab: Vocabulary,
    wordnet: Any = None,
    checks: EditChecks = EditChecks(),
) -> Span | str:
    """Check that ``target`` is a valid ``edit_type`` edit of ``source``.

    Always checked: non-empty, not a no-op, exactly one contiguous changed span that keeps some of the
    source, at most
    ``checks.max_span_words`` words on each side. Type checks: color/material/size/pattern — both sides of the
    span hold a word of that vocabulary list; count — the new side holds a count word; weather/lighting — the
    new side holds a weather/lighting keyword; background — the span sits in a locative phrase (a preposition
    at or before it) and holds no attribute word; subject/object — the old side holds the caption's first noun
    (subject) or another noun (object), the new side no attribute word; this needs WordNet or closed noun
    groups in ``vocab`` and is skipped without them.

    Returns:
        The changed ``Span``, or a reason string.
    """
    if not target.strip():
        return "empty edited caption"
    span = diff_span(source, target)
    if isinstance(span, str):
        return span
    if span.source_start == 0 and span.source_end == len(tokenize(source)):
        return "rewrites the whole caption, nothing of the source is kept"
    old = [w.lower() for w in span.source_words]
    new = [w.lower() for w in span.target_words]
    if max(len(old), len(new)) > checks.max_span_words:
        return f"changed span too long ({max(len(old), len(new))} words > {checks.max_span_words})"
    if not any(w[0].isalnum() for w in new):
        return "the new span has no word (a deletion or punctuation change)"
    attrs = vocab.attribute_words()
    if edit_type in ("color", "material", "size", "pattern"):
        entries = vocab.words(edit_type)
        if not _contains(old, entries):
            return f"not a {edit_type} edit: changed words {span.source_words} hold no {edit_type} word"
        if not _contains(new, entries):
            return f"not a {edit_type} edit: new words {span.target_words} hold no {edit_type} word"
    elif edit_type == "count":
        if not _contains(new, vocab.words("count")):
            return f"not a count edit: new words {span.target_words} hold no count word"
    elif edit_type in ("weather", "lighting"):
        keys = set(getattr(vocab, f"{edit_type}_keywords"))
        if not keys & set(new) and not _contains(new, vocab.words(edit_type)):
            return f"not a {edit_type} edit: new words {span.target_words} hold no {edit_type} word"
    elif edit_type == "background":
        preps = set(vocab.locative_prepositions)
        target_tokens = [t.lower for t in tokenize(target)]
        if not preps & set(target_tokens[: span.target_start + 1]):
            return "not a background edit: the change is not in a locative phrase (in/on/at ...)"
        if attrs & set(new):
            return f"not a background edit: new words {span.target_words} change an attribute"
    elif edit_type in ("subject", "object"):
        units = noun_spans(tokenize(source), vocab, wordnet)
        if units:
            nouns = [j - 1 for _, j in units]
            inside = [j - 1 for i, j in units if i < span.source_end and span.source_start < j]  # units touched
            if edit_type == "subject" and nouns[0] not in inside:
                return f"not a subject edit: the caption's subject {tokenize(source)[nouns[0]].text!r} is unchanged"
            if edit_type == "object" and not [i for i in inside if i != nouns[0]]:
                return f"not an object edit: the changed words {span.source_words} hold no object noun"
            if attrs & set(new):
                return f"not a {edit_type} edit: new words {span.target_words} change an attribute"
    else:
        raise ValueError(f"unknown edit type {edit_type!r} (known: {list(EDIT_TYPES)})")
    return span


def build_edit(
    source: str,
    target: str,
    edit_type: str,
    vocab: Vocabulary,
    rng: random.Random,
    provenance: dict[str, Any],
    wordnet: Any = None,
    checks: EditChecks = EditChecks(),
) -> CaptionEdit | str:
    """Validate ``target`` and make the ``CaptionEdit`` (span words, modification text, paraphrases).

    Returns:
        The edit, or the validation failure reason.
    """
    span = validate_edit(source, target, edit_type, vocab, wordnet, checks)
    if isinstance(span, str):
        return span
    src_tokens, tgt_tokens = tokenize(source), tokenize(target)
    old_words, new_words, t0 = list(span.source_words), list(span.target_words), span.target_start
    if edit_type in ("background", "weather", "lighting") and old_words:
        # name whole phrases ("in a park" -> "in a stadium"), not the minimal diff ("park" -> "stadium"):
        # widen both sides left to the locative preposition (the common prefix is identical on both sides)
        preps = set(vocab.locative_prepositions)
        back = next((d for d in range(0, 4) if t0 - d >= 0 and tgt_tokens[t0 - d].lower in preps), 0)
        t0 -= back
        old_words = [t.text for t in src_tokens[span.source_start - back: span.source_end]]
        new_words = [t.text for t in tgt_tokens[t0: span.target_end]]
    noun = None
    if edit_type in ("subject", "object"):  # name whole compounds ("clock tower" -> "bell tower")
        unit = next(((i, j) for i, j in noun_spans(src_tokens, vocab, wordnet)
                     if i < span.source_end and span.source_start < j), None)
        if unit and (unit[0] < span.source_start or unit[1] > span.source_end):
            a, b = min(unit[0], span.source_start), max(unit[1], span.source_end)
            old_words = [t.text for t in src_tokens[a:b]]
            new_words = [t.text for t in tgt_tokens[a - span.source_start + t0:
                                                    b - span.source_end + span.target_end]]
            t0 = a - span.source_start + t0
    if edit_type in ("color", "material", "size", "pattern", "count"):
        unit = head_noun_span(tgt_tokens, span.target_start, span.target_end, vocab, wordnet)
        closed = vocab.subject_groups or vocab.object_groups
        if unit is None and (wordnet is not None or closed):
            return f"no noun found for the {edit_type} word {' '.join(span.target_words)!r} to describe"
        noun = " ".join(t.text for t in tgt_tokens[unit[0]:unit[1]]) if unit else None
    text, paraphrases = modification_texts(
        edit_type, old_words, new_words, tgt_tokens, t0, span.target_end, rng, set(vocab.locative_prepositions),
        noun=noun,
    )
    keep: list[str] = []
    if edit_type == "background":  # a new setting around the same things: LocalBlend keeps the nouns' regions
        units = [(i, j) for i, j in noun_spans(src_tokens, vocab, wordnet)
                 if j <= span.source_start or i >= span.source_end]
        keep = list(dict.fromkeys(" ".join(t.text for t in src_tokens[i:j]) for i, j in units))
    return CaptionEdit(
        source_caption=source,
        target_caption=target,
        modification_text=text,
        edit_type=edit_type,
        source_words=list(span.source_words),
        target_words=list(span.target_words),
        paraphrases=paraphrases,
        provenance=dict(provenance),
        keep_words=keep,
    )
