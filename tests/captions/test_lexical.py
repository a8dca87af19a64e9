"""Lexical perturber, edit validation and input checks (no model weights; WordNet from Debian)."""

import pytest

from cirsynth.captions import (
    LexicalConfig, LexicalPerturber, Vocabulary, WordNetUnavailable, diff_span, load_wordnet, validate_edit,
)
from cirsynth.captions.text import tokenize
from cirsynth.data.records import EDIT_TYPES

CAPTIONS = [
    "a man riding a horse on a beach",
    "two dogs playing with a red ball in a park",
    "A wooden table with a glass vase of flowers.",
    "a woman in a striped dress holding an umbrella",
    "a small kitchen with white cabinets",
    "a cat sleeping on a couch",
    "a bus driving down a street at night",
    "an elephant standing near a tree",
    "three men playing frisbee",
    "a plastic chair in the snow",
]
needs_wordnet = pytest.mark.skipif(load_wordnet(required=False) is None, reason="WordNet (wordnet-base) not installed")


@pytest.fixture(scope="module")
def lex():
    return LexicalPerturber()


@needs_wordnet
def test_edits_are_single_span_valid_and_typed(lex):
    results = lex.perturb(CAPTIONS, n=4, seed=3)
    assert [r.caption for r in results] == CAPTIONS
    types_seen = set()
    for r in results:
        assert not r.rejected and r.reason is None, r.reason
        assert len(r.edits) == 4 and len({e.target_caption for e in r.edits}) == 4
        for e in r.edits:
            span = diff_span(e.source_caption, e.target_caption)
            assert not isinstance(span, str), span
            assert list(span.source_words) == e.source_words and list(span.target_words) == e.target_words
            assert not isinstance(validate_edit(e.source_caption, e.target_caption, e.edit_type, lex.vocab,
                                                lex.wordnet), str)
            assert e.modification_text and e.modification_text not in e.paraphrases and e.paraphrases
            assert e.provenance["perturber"] == "lexical" and e.provenance["seed"] == 3
            types_seen.add(e.edit_type)
    assert len(types_seen) >= 7


@needs_wordnet
def test_each_type_does_what_it_says(lex):
    v = lex.vocab
    [color] = lex.perturb(["two dogs playing with a red ball"], edit_types=["color"])[0].edits
    assert color.source_words == ["red"] and color.target_words[0] in v.color and color.target_words != ["red"]
    [count] = lex.perturb(["two dogs playing with a red ball"], edit_types=["count"])[0].edits
    assert count.source_words == ["two"] and count.target_words[0] in v.count
    [subj] = lex.perturb(["an elephant standing near a tree"], edit_types=["subject"])[0].edits
    assert "elephant" in subj.source_words and subj.target_caption.endswith("standing near a tree")
    [obj] = lex.perturb(["an elephant standing near a tree"], edit_types=["object"])[0].edits
    assert obj.source_words == ["tree"] and obj.target_caption.startswith("an elephant standing near a")
    [light] = lex.perturb(["a bus driving down a street at night"], edit_types=["lighting"])[0].edits
    assert "night" in light.source_words and "night" not in light.target_caption
    [weather] = lex.perturb(["a dog sleeping in a field"], edit_types=["weather"])[0].edits
    assert weather.source_words == [] and weather.target_caption.startswith("a dog sleeping in a field ")
    [bg] = lex.perturb(["two dogs playing in a park"], edit_types=["background"], seed=1)[0].edits
    assert bg.source_words == ["park"] and bg.target_caption.startswith("two dogs playing ")
    assert "park" not in bg.target_caption and " in a park" in bg.modification_text + " ".join(bg.paraphrases)


def test_article_agrees_and_capital_kept():
    vocab = Vocabulary(color=["red", "orange"], subject_groups=[["apple", "pear"]])
    lex = LexicalPerturber(LexicalConfig(vocab=vocab), wordnet=False)
    [e] = lex.perturb(["A red apple on a plate"], edit_types=["color"])[0].edits
    assert e.target_caption == "An orange apple on a plate"
    assert e.source_words == ["A", "red"] and e.target_words == ["An", "orange"]


def test_injected_vocabulary_without_wordnet():
    """The mini world's closed vocabulary works with WordNet switched off."""
    vocab = Vocabulary(color=["red", "green", "blue"], material=["metal", "rubber"], size=["small", "large"],
                       subject_groups=[["cube", "sphere", "cylinder"]], background=["on a grey floor", "on sand"],
                       lighting=["in warm light", "in cold light"], locative_prepositions=["on", "in"],
                       lighting_keywords=["light"])
    lex = LexicalPerturber(LexicalConfig(vocab=vocab), wordnet=False)
    res = lex.perturb(["a small red metal cube on a grey floor"], n=20, seed=0)[0]
    targets = {e.target_caption for e in res.edits}
    # every possible single swap: size 1 + color 2 + material 1 + subject 2 + background 1 + lighting 2
    assert len(res.edits) == 9 and res.reason == "only 9 distinct edit(s) possible of 20 asked"
    assert "a large red metal cube on a grey floor" in targets
    assert "a small red metal sphere on a grey floor" in targets
    assert "a small red metal cube on sand" in targets
    assert "a small red metal cube on a grey floor in cold light" in targets


def test_deterministic_and_batch_independent(lex):
    a = lex.perturb(CAPTIONS, n=2, seed=5)
    b = lex.perturb(CAPTIONS[::-1], n=2, seed=5)[::-1]
    assert [r.edits for r in a] == [r.edits for r in b]
    c = lex.perturb(CAPTIONS, n=2, seed=6)
    assert [r.edits for r in a] != [r.edits for r in c]


@pytest.mark.parametrize("caption, reason", [
    ("", "empty caption"),
    ("   ", "empty caption"),
    ("dog", "caption too short"),
    ("a dog " * 80, "caption too long"),
    ("猫がソファで寝ている", "non-English"),
    ("🐱🐱🐱 cat 🐱🐱🐱 🎉🎉", "unicode-heavy"),
    ("1234 5678 !!!", "no letters"),
])
def test_bad_input_rejected_with_reason(lex, caption, reason):
    [r] = lex.perturb([caption])
    assert r.rejected and reason in r.reason and r.edits == []


@needs_wordnet
def test_non_english_words_and_nothing_to_perturb(lex):
    [r] = lex.perturb(["lorem ipsum dolor sit amet consectetur"])
    assert r.rejected and "only" in r.reason and "English words" in r.reason
    [r] = lex.perturb(["a dog in a park"], edit_types=["color", "pattern"])
    assert r.rejected and r.reason == "nothing to perturb: color: no color word; pattern: no pattern word"
    [r] = lex.perturb([123])  # not a string
    assert r.rejected and "not a string" in r.reason


def test_bad_arguments_raise(lex):
    with pytest.raises(ValueError, match="unknown edit types"):
        lex.perturb(["a red car"], edit_types=["colour"])
    with pytest.raises(ValueError, match="n must be"):
        lex.perturb(["a red car"], n=0)


def test_without_wordnet_subject_object_degrade(monkeypatch):
    monkeypatch.setenv("CIRSYNTH_WORDNET_DIR", "")
    with pytest.raises(WordNetUnavailable, match="wordnet-base"):
        LexicalPerturber(wordnet=True)
    lex = LexicalPerturber()  # WordNet optional: absent -> only non-WordNet edit types work
    assert lex.wordnet is None
    [r] = lex.perturb(["a red car on a street"], edit_types=["subject", "object"])
    assert r.rejected and "need WordNet" in r.reason
    [r] = lex.perturb(["a red car on a street"], edit_types=["color"])
    assert not r.rejected and r.edits[0].source_words == ["red"]


@pytest.mark.parametrize("target, reason", [
    ("a red car on a street", "no-op"),
    ("A red car on a street", "no-op"),
    ("a blue car on a road", "2 separate spans"),
    ("", "empty edited caption"),
    ("a big car on a street", "not a color edit"),
    ("a red car on a street in a very large green open field near the sea", "too long"),
    ("a car on a street", "no word"),
    ("what can I say?", "rewrites the whole caption"),
])
def test_validator_rejections(target, reason):
    v = Vocabulary.default()
    out = validate_edit("a red car on a street", target, "color", v)
    assert isinstance(out, str) and reason in out


@needs_wordnet
@pytest.mark.parametrize("target, edit_type, reason", [
    ("a red truck on a street", "object", "not an object edit"),
    ("a red car on a road", "subject", "not a subject edit"),
    ("a red car on a street at noon", "weather", "not a weather edit"),
    ("a red car on a street in the rain", "lighting", "not a lighting edit"),
    ("a red car on a blue street", "background", "change an attribute"),
    ("a red car on a street", "count", "no-op"),
    ("a red car on a busy street", "count", "no count word"),
])
def test_validator_type_checks(target, edit_type, reason):
    out = validate_edit("a red car on a street", target, edit_type, Vocabulary.default(), load_wordnet())
    assert isinstance(out, str) and reason in out


def test_tokenize_keeps_offsets():
    text = "A dog's  red-ball, here."
    toks = tokenize(text)
    assert [t.text for t in toks] == ["A", "dog's", "red-ball", ",", "here", "."]
    assert all(text[t.start:t.end] == t.text for t in toks)


def test_vocabulary_validation():
    with pytest.raises(ValueError, match="unknown fields"):
        Vocabulary.from_dict({"colour": ["red"]})
    with pytest.raises(ValueError, match="at least two"):
        Vocabulary(subject_groups=[["cube"]])
    assert set(EDIT_TYPES) - {"subject", "object"} <= {f for f in Vocabulary.default().__dict__}
