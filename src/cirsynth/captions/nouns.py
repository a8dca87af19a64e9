"""Finding swappable nouns in a caption and their co-hyponyms (closed word groups, or WordNet)."""

from __future__ import annotations

from functools import lru_cache
from typing import Any

from cirsynth.captions.text import DETERMINERS, STOPWORDS, Token
from cirsynth.captions.vocab import Vocabulary

# Lexicographer files of concrete, depictable things; other senses ("riding": noun.act) are not nouns we swap.
CONCRETE_LEXNAMES = frozenset(
    {"noun.animal", "noun.person", "noun.artifact", "noun.food", "noun.plant", "noun.object", "noun.body"}
)
_IRREGULAR_PLURAL = ("man", "child", "person", "foot", "tooth", "mouse", "goose", "sheep", "deer", "fish", "ox")
NUMBER_WORDS = frozenset("one two three four five six seven eight nine ten several many".split())


def pluralize(word: str) -> str:
    """English plural by the regular rules (enough for swapped co-hyponyms; irregulars are skipped upstream)."""
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


MAX_MODIFIERS = 5  # words allowed between a determiner and its noun ("a large orange plain glass circle")


def noun_positions(tokens: list[Token], vocab: Vocabulary, wordnet: Any = None) -> list[int]:
    """Indices of tokens that head a noun phrase we could swap.

    A noun is a word of a closed group in ``vocab`` or, with WordNet, a word whose most frequent noun sense
    is concrete (an animal, person, artifact, food, plant, natural object); it must open the caption or
    follow a determiner/number, maybe with attribute words between (this keeps verbs like "stands" out).
    """
    groups = {w for g in vocab.subject_groups + vocab.object_groups for w in g}
    blocked = STOPWORDS | vocab.attribute_words()
    out = []
    for i, t in enumerate(tokens):
        w = t.lower
        if not t.text.isalpha() or w in blocked:
            continue
        is_noun = w in groups or (wordnet is not None and _concrete_lemma(wordnet, w) is not None)
        if not is_noun:
            continue
        j = i - 1  # walk back over adjectives / attribute words to a determiner
        while j >= 0 and tokens[j].lower not in DETERMINERS | NUMBER_WORDS and i - j <= MAX_MODIFIERS + 1:
            if tokens[j].lower in STOPWORDS or not tokens[j].text.isalpha():
                break
            j -= 1
        if i == 0 or (j >= 0 and i - j <= MAX_MODIFIERS + 1 and tokens[j].lower in DETERMINERS | NUMBER_WORDS):
            out.append(i)
    return out


def swap_candidates(word: str, vocab: Vocabulary, role: str, wordnet: Any = None) -> list[str]:
    """Nouns that can replace ``word`` (same number), sorted; empty when there is none.

    Args:
        word: the noun as written (maybe plural).
        vocab: closed groups (``subject_groups`` / ``object_groups`` by ``role``) win over WordNet.
        role: ``"subject"`` or ``"object"``.
        wordnet: nltk WordNet reader, used when ``vocab`` has no groups for ``role``.
    """
    groups = vocab.subject_groups if role == "subject" else vocab.object_groups
    w = word.lower()
    if groups:
        return sorted({x for g in groups if w in g for x in g if x != w})
    if wordnet is None:
        return []
    return list(_wordnet_siblings(wordnet, w))


@lru_cache(maxsize=4096)
def _wordnet_siblings(wn: Any, word: str, max_siblings: int = 10) -> tuple[str, ...]:
    lemma = _concrete_lemma(wn, word)
    if lemma is None:
        return ()
    plural = lemma != word
    synset = wn.synsets(lemma, "n")[0]
    own = {l.name().lower() for l in synset.lemmas()}
    counts: dict[str, int] = {}
    for hyper in synset.hypernyms():
        for sib in hyper.hyponyms():
            if sib == synset:
                continue
            for l in sib.lemmas():
                name = l.name()
                if not name.isalpha() or not name.islower() or name in own or len(name) < 3:
                    continue  # multi-word, proper noun, or a synonym of the source
                counts[name] = max(counts.get(name, 0), l.count())
    # the most frequent siblings (SemCor counts) are the everyday words; rare ones ("moderate") read oddly
    ranked = sorted(counts, key=lambda n: (-counts[n], n))
    names = {n for n in ranked[:max_siblings] if counts[n] > 0} or set(ranked[:max_siblings])
    if plural:  # regular plurals only: "mans", "childs" would be wrong
        names = {pluralize(n) for n in names if not n.endswith(_IRREGULAR_PLURAL)}
    return tuple(sorted(names - {word}))
