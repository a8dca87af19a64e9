"""Finding swappable nouns in a caption and what can replace them (closed word groups, or WordNet).

A noun unit is one noun or a compound kept whole ("fire truck", "teddy bear", "clock tower", "hot dog"): a run
of noun-like words ending in a concrete noun, or words WordNet lists as one compound. WordNet swaps take the sense
that fits the caption (the MiniLM ``ContextScorer`` compares the caption with each sense's gloss, weighed against
the sense's frequency), stay inside one visual, depictable category (``VISUAL_ROOTS``: animal, vehicle, furniture,
food, clothing, plant, building, ...), use only words whose most frequent sense is the one meant (so "counter"
never stands for a game piece), prefer common words (``wordfreq`` Zipf frequency), put no mass noun where a count
noun was ("a beef"), and keep a compound a kind of its head ("school bus" -> another bus). People swap only within
the closed ``vocab.noun_groups`` (man <-> woman, ...): WordNet's person siblings are roles ("character",
"fellow") that a picture cannot show.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from cirsynth.captions.text import DETERMINERS, STOPWORDS, Token
from cirsynth.captions.vocab import Vocabulary

# Lexicographer files of concrete, depictable things; other senses ("riding": noun.act) are not nouns we swap.
CONCRETE_LEXNAMES = frozenset(
    {"noun.animal", "noun.person", "noun.artifact", "noun.food", "noun.plant", "noun.object", "noun.body"}
)
# Visual categories by WordNet subtree root; a swap stays under the deepest root its source sense has.
VISUAL_ROOTS: dict[str, str] = {
    "animal.n.01": "animal", "bird.n.01": "animal", "dog.n.01": "animal", "fish.n.01": "animal",
    "vehicle.n.01": "vehicle", "conveyance.n.03": "vehicle", "public_transport.n.01": "vehicle", "aircraft.n.01": "vehicle", "vessel.n.02": "vehicle",
    "furniture.n.01": "furniture",
    "food.n.02": "food", "food.n.01": "food", "dish.n.02": "food", "beverage.n.01": "food",
    "edible_fruit.n.01": "food", "vegetable.n.01": "food", "baked_goods.n.01": "food",
    "clothing.n.01": "clothing", "footwear.n.02": "clothing", "headdress.n.01": "clothing",
    "bag.n.04": "clothing",
    "flower.n.01": "plant", "tree.n.01": "plant", "shrub.n.01": "plant", "woody_plant.n.01": "plant",
    "building.n.01": "building", "tower.n.01": "building", "bridge.n.01": "building",
    "room.n.01": "room",
    "container.n.01": "container", "crockery.n.01": "container", "flatware.n.01": "container", "vessel.n.03": "container",
    "home_appliance.n.01": "appliance", "electronic_device.n.01": "device", "computer.n.01": "device",
    "telephone.n.01": "device", "timepiece.n.01": "device", "lamp.n.01": "device",
    "musical_instrument.n.01": "instrument", "sports_equipment.n.01": "sports", "ball.n.01": "sports",
    "toy.n.01": "toy", "plaything.n.01": "toy", "kitchen_utensil.n.01": "utensil", "cutlery.n.02": "utensil", "tool.n.01": "tool",
    "geological_formation.n.01": "terrain", "body_of_water.n.01": "terrain", "road.n.01": "road",
    "signboard.n.01": "sign", "umbrella.n.01": "umbrella", "book.n.02": "book", "bed.n.01": "furniture",
}
_IRREGULAR_PLURAL = ("man", "child", "person", "foot", "tooth", "mouse", "goose", "sheep", "deer", "fish", "ox")
NUMBER_WORDS = frozenset("one two three four five six seven eight nine ten several many".split())
MAX_MODIFIERS = 5  # words allowed between a determiner and its noun ("a large orange plain glass circle")
MIN_ZIPF = 3.3
COMMON_ZIPF = 4.3  # between MIN_ZIPF and this, a word also needs SemCor uses of the sense  # wordfreq Zipf frequency below which a replacement is too rare ("sloop" 2.8, "beaker" 2.8)
MIN_CONTEXT_SIM = 0.6  # MiniLM cosine of edited vs source caption below which a swap reads as a different scene
MIN_KIND_SIM = 0.55  # MiniLM cosine of "a photo of a OLD" vs "... NEW" below which it is another kind of thing
MAX_CANDIDATES = 8
MIN_COMPOUND_USES = 2  # SemCor uses a compound replacement needs ("dining room" 6; "laundry truck" 1)
SENSE_RANK_PRIOR = 0.03  # MiniLM similarity a sense loses per place down WordNet's sense order
SENSE_COUNT_PRIOR = 0.04  # ... and gains per log(1 + SemCor uses)
MIN_PLURAL_ZIPF_GAP = -1.8  # Zipf(plural) - Zipf(word) below which a noun is a mass noun ("beef" -1.9, "cake" -0.7)
MIN_SIBLINGS = 3  # climb one more hypernym level only while fewer near siblings than this were found  # replacements kept per noun (best context fit first)


@lru_cache(maxsize=1)
def _irregular_plurals(wn: Any) -> dict[str, str]:
    """Base form -> irregular plural, from WordNet's noun exception list ("wolf" -> "wolves"), where it is written
    more often than the regular form (wordfreq; "busses" is listed too, "buses" is more common)."""
    forms: dict[str, list[str]] = {}
    for form, bases in wn._exception_map["n"].items():
        for b in bases:
            if b != form and form.isalpha():
                forms.setdefault(b, []).append(form)
    out = {}
    for b, fs in forms.items():
        best = max([*fs, _regular_plural(b)], key=lambda f: _zipf(f) or 0.0)
        if best != _regular_plural(b):
            out[b] = best
    return out


def pluralize(word: str, wordnet: Any = None) -> str:
    """English plural: WordNet's irregular form where it lists one ("wolves"), else the regular rules."""
    if wordnet is not None:
        *head, last = word.split(" ")
        irregular = _irregular_plurals(wordnet).get(last)
        if irregular:
            return " ".join([*head, irregular])
    return _regular_plural(word)


def _regular_plural(word: str) -> str:
    if word.endswith(("s", "x", "z", "ch", "sh")):
        return word + "es"
    if word.endswith("y") and word[-2:-1] not in tuple("aeiou"):
        return word[:-1] + "ies"
    return word + "s"


def _concrete_lemma(wn: Any, word: str) -> str | None:
    # every base form ("men" is itself a WordNet noun, a group; its base form "man" is a person)
    for lemma in dict.fromkeys(wn._morphy(word, "n")):
        synsets = wn.synsets(lemma, "n")
        if synsets and synsets[0].lexname() in CONCRETE_LEXNAMES:
            return lemma
    return None


@lru_cache(maxsize=8192)
def _noun_like(wn: Any, word: str, verb_ratio: float = 1.0) -> bool:
    """A word that can modify a head noun as a noun ("fire", "school", "clock"), not an adjective ("young"):
    used as a noun at least as often as an adjective, and at least ``1 / verb_ratio`` times as often as a verb."""
    nouns = wn.synsets(word, "n")
    if not nouns:
        return False
    count = (lambda ss: sum(l.count() for s in ss for l in s.lemmas() if l.name().lower() == word))
    return count(nouns) >= count(wn.synsets(word, "a") + wn.synsets(word, "s")) and count(nouns) * verb_ratio >= count(
        wn.synsets(word, "v"))


def _is_noun(t: Token, groups: set[str], closed: bool, wordnet: Any) -> bool:
    if t.lower in groups:
        return True
    return not closed and wordnet is not None and _concrete_lemma(wordnet, t.lower) is not None


def noun_spans(tokens: list[Token], vocab: Vocabulary, wordnet: Any = None) -> list[tuple[int, int]]:
    """Token spans ``[i, j)`` of noun units we could swap (a noun, or a compound kept whole), in order.

    A unit ends in a noun: a word of a closed group in ``vocab`` or, with WordNet and no closed subject/object
    groups (a closed vocabulary names every noun), a word whose most frequent noun sense is concrete. Noun-like
    words right before it join it ("fire truck"). The unit must open the caption or follow a determiner/number,
    maybe with attribute words between (this keeps verbs like "stands" out).
    """
    groups = {w for g in vocab.subject_groups + vocab.object_groups + vocab.noun_groups for w in g}
    closed = bool(vocab.subject_groups or vocab.object_groups)
    blocked = STOPWORDS | vocab.attribute_words()
    heads = []
    for i, t in enumerate(tokens):
        if not t.text.isalpha() or t.lower in blocked or not _is_noun(t, groups, closed, wordnet):
            continue
        j = i - 1  # walk back over adjectives / attribute words to a determiner
        while j >= 0 and tokens[j].lower not in DETERMINERS | NUMBER_WORDS and i - j <= MAX_MODIFIERS + 1:
            if tokens[j].lower in STOPWORDS or not tokens[j].text.isalpha():
                break
            j -= 1
        if i == 0 or (j >= 0 and i - j <= MAX_MODIFIERS + 1 and tokens[j].lower in DETERMINERS | NUMBER_WORDS):
            heads.append(i)
    spans: list[tuple[int, int]] = []
    for i in heads:
        if spans and spans[-1][1] == i:  # "fire" then "truck": one unit
            spans[-1] = (spans[-1][0], i + 1)
            continue
        k = i
        while (not closed and wordnet is not None and k > 0 and tokens[k - 1].text.isalpha()
               and tokens[k - 1].lower not in blocked and (not spans or spans[-1][1] <= k - 1)
               and (_noun_like(wordnet, tokens[k - 1].lower)  # "fire truck"; and a WordNet compound: "hot dog"
                    or wordnet.synsets("_".join(t.lower for t in tokens[k - 1:i + 1]), "n"))):
            k -= 1
        spans.append((k, i + 1))
    return spans


def noun_positions(tokens: list[Token], vocab: Vocabulary, wordnet: Any = None) -> list[int]:
    """Indices of the head tokens (last word) of the noun units of ``noun_spans``."""
    return [j - 1 for _, j in noun_spans(tokens, vocab, wordnet)]


@dataclass(frozen=True)
class NounSwaps:
    """Replacements for one noun unit, or why there are none."""

    candidates: tuple[str, ...]  # best first
    reason: str | None = None
    category: str | None = None  # visual category of the sense taken ("animal", "person", ...)


def _category(synset: Any) -> tuple[str, Any] | None:
    """(category, root synset) of the deepest ``VISUAL_ROOTS`` root above or at ``synset``."""
    best = None
    for path in synset.hypernym_paths():
        for depth, s in enumerate(path):
            if s.name() in VISUAL_ROOTS and (best is None or depth > best[0]):
                best = (depth, s)
    return (VISUAL_ROOTS[best[1].name()], best[1]) if best else None


def _zipf(word: str) -> float | None:
    try:
        from wordfreq import zipf_frequency
    except ImportError:
        return None
    return zipf_frequency(word, "en")


def _common_lemmas(wn: Any, h: Any, compounds: bool) -> list[str]:
    """The lemmas of synset ``h`` that are common, everyday words for it (lower case, ``_`` for spaces)."""
    out = []
    for l in h.lemmas():
        name = l.name().lower()
        if not name.replace("_", "").isalpha() or name != l.name() or len(name) < 3:
            continue  # a proper noun or a non-word
        if name.count("_") > int(compounds):
            continue
        dominant = wn.synsets(name, "n")
        if not dominant or dominant[0] != h:
            continue  # the word mostly means something else ("counter": a table, not a game piece)
        if "_" not in name and not _noun_like(wn, name, verb_ratio=2.0):
            continue  # mostly a verb or an adjective ("poke", "simple"; "train" is a noun often enough)
        if "_" in name and l.count() < MIN_COMPOUND_USES:
            continue  # wordfreq guesses a phrase's frequency from its words: a compound needs SemCor uses
        z = _zipf(name.replace("_", " "))
        if z is not None and (z < MIN_ZIPF or z < COMMON_ZIPF and not sum(x.count() for x in h.lemmas())):
            continue  # rare, or only a name-frequency word with no SemCor use ("das")
        uses = l.count()
        if any(x.name()[:1].isupper() and x.count() >= uses for y in dominant for x in y.lemmas()
               if x.name().lower() == name):
            continue  # a proper noun at least as often as this noun ("john"; not "wolf", "bush")
        if z is None and sum(x.count() for x in h.lemmas()) == 0:
            continue
        out.append(name)
    return out


@lru_cache(maxsize=8192)
def _siblings(wn: Any, synset_name: str, within: str | None = None) -> tuple[str, ...]:
    """Common words for other things of the same visual category, nearest in WordNet first.

    Co-hyponyms up to three hypernym levels up, never above the category root. A sense that is a category root
    itself climbs to the root above it ("dog" -> animal: "cat", "horse"); a root with no root above ("building",
    "room") is swapped for its own kinds ("house", "church"; "kitchen", "bedroom"), since its parents ("structure",
    "area") span things no one would call by the same name. ``within``: a synset to stay under instead (a
    compound's head: a "school bus" is swapped for another kind of bus, not for a train).
    """
    s = wn.synset(synset_name)
    cat = _category(s)
    if cat is None:
        return ()
    _, root = cat
    own = {l.name().lower() for l in s.lemmas()}
    compounds = "_" in synset_name.split(".")[0]
    out: dict[str, None] = {}

    def add(synsets: list[Any]) -> None:
        for h in synsets:
            for name in _common_lemmas(wn, h, compounds):
                if name not in own:
                    out.setdefault(name.replace("_", " "), None)

    tops = {wn.synset(within)} if within else {root}
    if root == s and not within:
        tops = {c[1] for c in (_category(h) for h in s.hypernyms()) if c}
        if not tops:  # its own kinds
            add([*s.hyponyms(), *[g for c in s.hyponyms() for g in c.hyponyms()]])
            return tuple(out)
    near = set(s.closure(lambda x: x.hypernyms())) | set(s.closure(lambda x: x.hyponyms())) | {s}
    level = [s]
    for _ in range(3):  # climb at most three hypernym levels, never above the category root
        level = [a for x in level for a in x.hypernyms() if a in tops or tops & set(a.closure(lambda y: y.hypernyms()))]
        for a in level:
            add([h for h in [a, *a.hyponyms(), *[g for c in a.hyponyms() for g in c.hyponyms()]] if h not in near])
        if len(out) >= MIN_SIBLINGS or not level or tops & set(level):
            break
    return tuple(out)


def _sense_count(synset: Any, lemma: str) -> int:
    return sum(l.count() for l in synset.lemmas() if l.name().lower() == lemma)


def _sense(wn: Any, lemma: str, context: str, scorer: Any) -> Any | None:
    """The visual noun sense of ``lemma`` that fits ``context`` best (the most frequent one without a scorer).

    A person sense is a candidate only when the word's first sense is a person ("dog" never means a man, however
    many people the caption mentions). The MiniLM similarity of the caption to each gloss is weighed against a
    prior for frequent senses (WordNet's order and SemCor counts), so a gloss sharing a word with the caption
    ("couch": a psychiatrist's couch) does not outvote the everyday sense.
    """
    all_senses = wn.synsets(lemma, "n")[:5]
    concrete = [s for s in all_senses if s.lexname() in CONCRETE_LEXNAMES | {"noun.Tops"}]  # Tops: "plant", flora
    # a person sense only where it is the word's first and most used concrete sense ("chef", not "tiger")
    person_ok = bool(concrete) and all_senses[0].lexname() == "noun.person" and all(
        _sense_count(all_senses[0], lemma) > _sense_count(s, lemma) for s in concrete[1:])
    senses = [s for s in concrete if s.lexname() != "noun.person" or person_ok and s == all_senses[0]]
    if len(senses) <= 1 or scorer is None:
        return senses[0] if senses else None
    glosses = [f"{lemma.replace('_', ' ')}: {s.definition()}" for s in senses]
    sims = scorer.similarities(context, glosses)
    rank = {s: k for k, s in enumerate(all_senses)}
    score = [sim - SENSE_RANK_PRIOR * rank[s] + SENSE_COUNT_PRIOR * math.log1p(_sense_count(s, lemma))
             for s, sim in zip(senses, sims)]
    return senses[max(range(len(senses)), key=score.__getitem__)]


@lru_cache(maxsize=8192)
def _plural_zipf(wn: Any, word: str) -> float:
    forms = {pluralize(word), pluralize(word, wn)}
    return max(_zipf(f) or 0.0 for f in forms)


def countable(wn: Any, word: str) -> bool:
    """Is ``word`` a count noun ("a cow")? False for mass and collective nouns ("beef", "livestock", "baggage"),
    judged by how often its plural is written compared with the word (wordfreq); True without wordfreq."""
    head = word.split("_")[-1].split()[-1]
    z = _zipf(head)
    if z is None or head.endswith(_IRREGULAR_PLURAL):
        return True
    return _plural_zipf(wn, head) - z >= MIN_PLURAL_ZIPF_GAP


def noun_swaps(words: list[str], context: str, vocab: Vocabulary, role: str, wordnet: Any = None,
               scorer: Any = None) -> NounSwaps:
    """What can replace the noun unit ``words`` (same number) in a caption reading ``context``.

    Args:
        words: the unit as written ("fire", "truck"), maybe plural.
        context: the whole caption (for the sense choice).
        vocab: closed groups: ``subject_groups`` / ``object_groups`` by ``role`` (a closed vocabulary), else
            ``noun_groups`` tried before WordNet.
        role: ``"subject"`` or ``"object"``.
        wordnet: nltk WordNet reader.
        scorer: a ``ContextScorer`` for the sense choice (None: most frequent sense).
    """
    phrase = " ".join(w.lower() for w in words)
    closed = vocab.subject_groups if role == "subject" else vocab.object_groups
    if closed:
        return NounSwaps(tuple(sorted({x for g in closed if phrase in g for x in g if x != phrase})))
    group = sorted({x for g in vocab.noun_groups if phrase in g for x in g if x != phrase})
    if group:
        return NounSwaps(tuple(group), category="group")
    if wordnet is None:
        return NounSwaps((), "needs WordNet")
    key = "_".join(w.lower() for w in words)
    lemma = _concrete_lemma(wordnet, key) if "_" not in key else (
        key if wordnet.synsets(key, "n") else next(iter(wordnet._morphy(key, "n")), None))
    if lemma is None or not wordnet.synsets(lemma, "n"):
        return NounSwaps((), f"compound {phrase!r} is not a WordNet noun: kept whole, not swapped")
    sense = _sense(wordnet, lemma, context, scorer)
    if sense is None:
        return NounSwaps((), f"{phrase!r} has no sense in a visual category we swap within")
    if sense.lexname() == "noun.person":
        return NounSwaps((), f"{phrase!r} is a person word with no visual counterpart in vocab.noun_groups",
                         "person")
    cat = _category(sense)
    if cat is None:
        return NounSwaps((), f"{phrase!r} ({sense.name()}) is in no visual category we swap within")
    head = _concrete_lemma(wordnet, key.split("_")[-1]) if "_" in key else None
    head_sense = wordnet.synsets(head, "n")[0] if head else None
    if head_sense is not None and head_sense in sense.closure(lambda x: x.hypernyms()):
        names = _siblings(wordnet, sense.name(), head_sense.name())  # a compound is one kind of its head noun
    else:
        names = _siblings(wordnet, sense.name())
    if countable(wordnet, lemma):  # "a cow" -> "a sheep", never "a beef"
        names = tuple(n for n in names if countable(wordnet, n))
    if lemma != key:  # plural: regular plurals only ("mans", "childs" would be wrong)
        names = tuple(pluralize(n, wordnet) for n in names if not n.endswith(_IRREGULAR_PLURAL))
    names = tuple(n for n in names if n != phrase)
    if not names:
        return NounSwaps((), f"no common word of the same {cat[0]} kind as {phrase!r}", cat[0])
    return NounSwaps(names, category=cat[0])


def noun_category(words: list[str], context: str, vocab: Vocabulary, wordnet: Any = None,
                  scorer: Any = None) -> str | None:
    """The visual category of a noun unit ("person", "animal", "food", "clothing", ...), None when unknown."""
    if wordnet is None:
        return None
    key = "_".join(w.lower() for w in words)
    lemma = key if wordnet.synsets(key, "n") else _concrete_lemma(wordnet, words[-1].lower())
    if lemma is None:
        return None
    sense = _sense(wordnet, lemma, context, scorer)
    if sense is None:
        return None
    if sense.lexname() == "noun.person":
        return "person"
    cat = _category(sense)
    return cat[0] if cat else None


_PHRASE_BREAKS = frozenset(", ; and or with of on in at by near under over from into onto behind beside".split())


def head_noun_span(tokens: list[Token], start: int, end: int, vocab: Vocabulary, wordnet: Any = None
                   ) -> tuple[int, int] | None:
    """The noun unit an attribute span ``[start, end)`` describes: the first unit after it in the same phrase
    ("a red [fire truck]"), else the nearest one before it ("a metal [diamond], large, blue and dotted").

    Returns:
        The unit's token span, or None when the caption has no noun unit near the span.
    """
    spans = noun_spans(tokens, vocab, wordnet)
    for i, j in spans:
        if i >= end:
            if all(t.lower not in _PHRASE_BREAKS for t in tokens[end:i]):
                return (i, j)
            break
        if i < end and j > start:  # the span is inside a unit (a compound's modifier)
            return (i, j)
    before = [(i, j) for i, j in spans if j <= start and start - j <= 8]
    return before[-1] if before else None
