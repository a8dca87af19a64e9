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
from cirsynth.captions.nouns import noun_positions, swap_candidates
from cirsynth.captions.text import CaptionLimits, Token, article_for, check_caption, tokenize
from cirsynth.captions.vocab import Vocabulary
from cirsynth.captions.wordnet import load_wordnet
from cirsynth.data.records import config_hash

_ARTICLES = {"a", "an", "the"}


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

    def __init__(self, config: LexicalConfig | None = None, wordnet: bool | None = None):
        """Args:
        config: vocabulary, input limits and edit checks.
        wordnet: True: require WordNet (raise ``WordNetUnavailable`` if absent); False: never use it;
            None: use it when installed.
        """
        self.config = config or LexicalConfig()
        self.vocab = self.config.vocab
        self.wordnet = None if wordnet is False else load_wordnet(required=bool(wordnet))
        self._provenance = {"perturber": self.name, "vocab": config_hash(self.vocab),
                            "wordnet": self.wordnet is not None}

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
        props = []
        for i, j, e in found:
            for alt in raw:
                if tuple(t.lower for t in tokenize(alt)) != e:
                    props.append(self._with_article(caption, tokens, i, j, alt))
        return props

    def _swap_nouns(self, caption: str, tokens: list[Token], role: str) -> list[_Proposal] | str:
        groups = self.vocab.subject_groups if role == "subject" else self.vocab.object_groups
        if self.wordnet is None and not groups:
            return f"{role} swaps need WordNet (Debian wordnet-base, not installed) or vocab.{role}_groups"
        nouns = noun_positions(tokens, self.vocab, self.wordnet)
        nouns = nouns[:1] if role == "subject" else nouns[1:]
        if not nouns:
            return f"no {role} noun found"
        props = []
        for i in nouns:
            for alt in swap_candidates(tokens[i].text, self.vocab, role, self.wordnet):
                props.append(self._with_article(caption, tokens, i, i + 1, alt))
        return props or f"no co-hyponym for the {role} noun(s) {[tokens[i].text for i in nouns]}"

    def _scene(self, caption: str, tokens: list[Token], edit_type: str) -> list[_Proposal] | str:
        phrases = getattr(self.vocab, edit_type)
        if not phrases:
            return f"the vocabulary has no {edit_type} phrases"
        entries = self.vocab.words(edit_type)
        found = self._matches(tokens, entries, articles_free=True)
        # insertion point: end of the caption, before closing punctuation
        k = len(tokens)
        while k > 0 and not tokens[k - 1].is_word:
            k -= 1
        end = tokens[k - 1].end if k else len(caption)
        if found:  # swap the phrase present for another one
            return [_Proposal(tokens[i].start, tokens[j - 1].end, alt)
                    for i, j, e in found for alt in phrases
                    if tuple(t.lower for t in tokenize(alt)) not in {e} and
                    self._art_free(alt) != self._art_free(" ".join(e))]
        if edit_type != "background":
            return [_Proposal(end, end, " " + alt) for alt in phrases]
        # background: a caption with no locative phrase gets one; one with a phrase not in our list keeps it
        other = [m for t in ("weather", "lighting") for m in self._matches(tokens, self.vocab.words(t), True)]
        in_other = {x for i, j, _ in other for x in range(i, j)}
        preps = set(self.vocab.locative_prepositions)
        has_loc = [i for i, t in enumerate(tokens) if t.lower in preps and i not in in_other]
        if has_loc:
            return (f"the locative phrase starting at {tokens[has_loc[-1]].text!r} is not a known background "
                    f"phrase (it could be a relation between objects)")
        if other:  # "a dog at night" -> "a dog on a beach at night"
            start = tokens[min(i for i, _, _ in other)].start
            return [_Proposal(start, start, alt + " ") for alt in phrases]
        return [_Proposal(end, end, " " + alt) for alt in phrases]

    @staticmethod
    def _art_free(phrase: str) -> tuple[str, ...]:
        return tuple("<art>" if t.lower in _ARTICLES else t.lower for t in tokenize(phrase))
