"""A mechanical rubric for caption edits on real photo captions, and the bundled test captions.

The judgement lists (``data/rubric.json``) are written by hand, independent of WordNet and of the perturber's
vocabulary, so the rubric can catch the perturber's mistakes. Each edit gets a list of problems, each
``"contradictory: ..."`` or ``"implausible: ..."``:

contradictory
    * a second weather mention or a second light/time mention where the source had one ("a sunny field" +
      "in the fog", "a bright room" + "in the moonlight"); a mention is a run of rubric words of that kind
      with at most two other tokens between them;
    * day and night words together that the source did not have together ("at night" + "on a rainy day");
    * a weather word added to a caption labelled indoor.
implausible
    * a subject/object swap whose new noun is not in the hand lexicon, or shares no category with the old
      one (person -> role word, ball -> counter);
    * an edit that changes part of a known compound noun ("fire truck" -> "fire train", "same fire but blue");
    * a colour or material a thing of that category does not have (rubric ``colors`` / ``materials``), a
      pattern on a person/animal/food/plant;
    * a modification text that names an attribute word as the object ("same plain but orange").
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from typing import Any, Iterable

from cirsynth.captions.text import tokenize

_ARTICLES = {"a", "an", "the"}
_ATTRIBUTE_WORDS = frozenset(
    "red blue green yellow orange purple pink brown black white gray grey silver gold beige turquoise "
    "wooden metal metallic glass plastic leather stone brick marble ceramic cotton wool woolen denim paper "
    "concrete steel velvet matte small large big tiny huge little giant tall short medium striped checkered "
    "plaid floral spotted patterned plain dotted camouflage".split())


@dataclass(frozen=True)
class RealCaption:
    caption: str
    scene: str  # "indoor" | "outdoor" | "any"


def real_captions() -> list[RealCaption]:
    """The bundled real-style captions (``data/real_captions.tsv``) with their scene labels."""
    text = resources.files("cirsynth.captions").joinpath("data/real_captions.tsv").read_text("utf-8")
    out = []
    for n, line in enumerate(text.splitlines(), 1):
        if not line.strip() or line.startswith("#"):
            continue
        scene, _, cap = line.partition("\t")
        if scene not in ("indoor", "outdoor", "any") or not cap.strip():
            raise ValueError(f"real_captions.tsv line {n}: expected 'indoor|outdoor|any<TAB>caption', got {line!r}")
        out.append(RealCaption(cap.strip(), scene))
    return out


def real_caption_split() -> dict[str, list[RealCaption]]:
    """The bundled captions in two parts: ``"tune"`` (two of every three lines, the part the lexical perturber's
    rules and thresholds were tuned on) and ``"heldout"`` (every third line, from the first: the part its
    figures are reported on)."""
    caps = real_captions()
    return {"tune": [c for i, c in enumerate(caps) if i % 3], "heldout": caps[::3]}


@lru_cache(maxsize=1)
def rubric_lists() -> dict[str, Any]:
    """The hand-written judgement lists (``data/rubric.json``)."""
    return json.loads(resources.files("cirsynth.captions").joinpath("data/rubric.json").read_text("utf-8"))


def _words(text: str) -> list[str]:
    return [t.lower for t in tokenize(text) if t.is_word]


def _mentions(words: list[str], kind: set[str]) -> int:
    hits = [i for i, w in enumerate(words) if w in kind]
    return sum(1 for k, i in enumerate(hits) if k == 0 or i - hits[k - 1] > 3)


def _categories(phrase: str) -> set[str]:
    nouns = rubric_lists()["nouns"]
    return {c for c, ws in nouns.items() if phrase in ws}


def _head_after(words: list[str], end: int) -> str | None:
    """The lexicon noun (maybe a compound) that follows an attribute span within three words."""
    for k in range(end, min(end + 4, len(words))):
        for n in (2, 1):
            phrase = " ".join(words[k:k + n])
            if len(words[k:k + n]) == n and _categories(phrase):
                return phrase
    return None


def judge(edit: Any, scene: str = "any") -> list[str]:
    """The rubric problems of one ``CaptionEdit`` of a caption labelled ``scene``; empty when it passes."""
    lists = rubric_lists()
    src, tgt = _words(edit.source_caption), _words(edit.target_caption)
    problems = []
    for kind in ("weather_words", "light_words"):
        ks = set(lists[kind])
        if _mentions(tgt, ks) >= 2 and _mentions(tgt, ks) > _mentions(src, ks):
            problems.append(f"contradictory: a second {kind.split('_')[0]} mention is stacked on the caption")
    day, night = set(lists["day_words"]), set(lists["night_words"])
    if set(tgt) & day and set(tgt) & night and not (set(src) & day and set(src) & night):
        problems.append("contradictory: day and night words together")
    if scene == "indoor" and set(tgt) & set(lists["weather_words"]) - set(src):
        problems.append("contradictory: weather on an indoor scene")
    old = [w.lower() for w in edit.source_words if w.lower() not in _ARTICLES]
    new = [w.lower() for w in edit.target_words if w.lower() not in _ARTICLES]
    # the changed span in source word positions (insertions have none)
    start = next((i for i, (a, b) in enumerate(zip(src, tgt)) if a != b), min(len(src), len(tgt)))
    end = start + len(old)
    for comp in lists["compounds"]:
        cw = comp.split()
        for i in range(len(src) - len(cw) + 1):
            if src[i:i + len(cw)] == cw and start < i + len(cw) and i < end and not (start <= i and i + len(cw) <= end):
                # the whole compound replaced by another lexicon noun ("clock tower" -> "bell tower") is fine
                whole = " ".join(tgt[min(i, start): max(i + len(cw), end) + len(new) - len(old)])
                if edit.edit_type in ("subject", "object") and _categories(whole):
                    old, new = cw, whole.split()
                    continue
                problems.append(f"implausible: changes part of the compound {comp!r}")
    if edit.edit_type in ("subject", "object"):
        o, n = " ".join(old), " ".join(new)
        if not _categories(n):
            problems.append(f"implausible: {n!r} is not an everyday depictable noun (not in the rubric lexicon)")
        elif _categories(o) and not _categories(o) & _categories(n):
            problems.append(f"implausible: {o!r} -> {n!r} crosses categories "
                            f"({sorted(_categories(o))} -> {sorted(_categories(n))})")
    if edit.edit_type in ("color", "material", "pattern"):
        head = _head_after(tgt, start + len(new))
        cats = _categories(head) if head else set()
        allowed = lists["colors"] if edit.edit_type == "color" else lists["materials"]
        for c in cats:
            if edit.edit_type == "pattern" and c in ("person", "animal", "food", "plant"):
                problems.append(f"implausible: a pattern on a {c} ({head!r})")
            elif edit.edit_type != "pattern" and c in allowed and not set(new) <= set(allowed[c]):
                problems.append(f"implausible: {' '.join(new)!r} is not a {edit.edit_type} a {c} ({head!r}) has")
    for text in [edit.modification_text, *edit.paraphrases]:
        for m in re.finditer(r"\b(?:same|make the|the)\s+(\w+)\s+(?:but|should|is|from|\w+$)", text.lower()):
            if m.group(1) in _ATTRIBUTE_WORDS:
                problems.append(f"implausible: the modification text {text!r} names {m.group(1)!r} as the object")
                break
    return list(dict.fromkeys(problems))


def rubric_report(results: Iterable[Any], scenes: list[str]) -> dict[str, Any]:
    """Rates over ``PerturbResult``s (one per caption, scene labels in the same order).

    Returns:
        captions, captions_with_edit (coverage), edits, contradictory / implausible / bad (either) counts and
        rates over accepted edits, edit types used, and up to 10 bad examples.
    """
    results = list(results)
    n_edit = n_con = n_imp = n_bad = 0
    types: dict[str, int] = {}
    bad_examples, reasons = [], {}
    for r, scene in zip(results, scenes):
        for e in r.edits:
            n_edit += 1
            types[e.edit_type] = types.get(e.edit_type, 0) + 1
            p = judge(e, scene)
            n_con += any(x.startswith("contradictory") for x in p)
            n_imp += any(x.startswith("implausible") for x in p)
            n_bad += bool(p)
            for x in p:
                key = x.split(":")[0] + ": " + re.sub(r"'[^']*'", "'…'", x.split(": ", 1)[1])[:60]
                reasons[key] = reasons.get(key, 0) + 1
            if p and len(bad_examples) < 10:
                bad_examples.append({"source": e.source_caption, "target": e.target_caption,
                                     "text": e.modification_text, "problems": p})
        if not r.edits:
            key = "rejected: " + (r.reason or "")[:70]
            reasons[key] = reasons.get(key, 0) + 1
    covered = sum(1 for r in results if r.edits)
    return {
        "captions": len(results), "captions_with_edit": covered, "coverage": round(covered / max(1, len(results)), 3),
        "edits": n_edit, "contradictory": n_con, "implausible": n_imp, "bad": n_bad,
        "contradictory_rate": round(n_con / max(1, n_edit), 3), "implausible_rate": round(n_imp / max(1, n_edit), 3),
        "bad_rate": round(n_bad / max(1, n_edit), 3), "valid_rate": round(1 - n_bad / max(1, n_edit), 3),
        "edit_types": dict(sorted(types.items())),
        "top_problems": dict(sorted(reasons.items(), key=lambda kv: -kv[1])[:12]), "bad_examples": bad_examples,
    }
