"""Caption text helpers: tokens with character offsets, input checks, and the changed-span diff."""

from __future__ import annotations

import difflib
import re
import unicodedata
from dataclasses import dataclass

_TOKEN = re.compile(r"\w+(?:['’\-]\w+)*|[^\w\s]")

# Function words: never perturbed, and counted as English by the language check.
STOPWORDS = frozenset(
    "a an the of on in at to by with and or for from into onto over under near next beside behind "
    "is are was were be been being it its this that these those his her their our my your some "
    "while up down out off as there here front top side bottom left right other another each".split()
)
DETERMINERS = frozenset("a an the his her their its our my your some this that these those".split())


@dataclass(frozen=True)
class Token:
    """A word or punctuation mark of a caption with its character span ``[start, end)``."""

    text: str
    start: int
    end: int

    @property
    def lower(self) -> str:
        return self.text.lower()

    @property
    def is_word(self) -> bool:
        return self.text[0].isalnum()


def tokenize(text: str) -> list[Token]:
    """Split ``text`` into word and punctuation tokens, keeping offsets so edits preserve spacing."""
    return [Token(m.group(), m.start(), m.end()) for m in _TOKEN.finditer(text)]


def article_for(word: str) -> str:
    """``"an"`` before a vowel sound (approximated by the first letter), else ``"a"``."""
    return "an" if word[:1].lower() in "aeiou" else "a"


@dataclass(frozen=True)
class CaptionLimits:
    """What counts as a caption we can perturb."""

    max_chars: int = 300  # longer text is a paragraph, not a caption; SD's text encoder sees 77 tokens anyway
    max_words: int = 50  # ditto, in words
    min_words: int = 2  # one word ("dog") leaves no context to keep fixed
    max_non_ascii_letters: float = 0.2  # share of letters outside ASCII above which we call it non-English
    max_symbols: float = 0.25  # share of non-space characters that are neither letters, digits nor punctuation
    min_english_words: float = 0.6  # share of words WordNet or the stopword list knows (checked when WordNet is present)


def check_caption(caption: object, limits: CaptionLimits = CaptionLimits(), wordnet: object = None) -> str | None:
    """Why ``caption`` cannot be perturbed, or None if it is fine.

    Args:
        caption: the input item (anything; non-strings are rejected).
        limits: thresholds.
        wordnet: an nltk WordNet reader for the English-words check (skipped when None).

    Returns:
        A reason string, or None.
    """
    if not isinstance(caption, str):
        return f"caption is not a string but {type(caption).__name__}"
    text = caption.strip()
    if not text:
        return "empty caption"
    if len(text) > limits.max_chars:
        return f"caption too long: {len(text)} characters > {limits.max_chars}"
    words = [t for t in tokenize(text) if t.is_word]
    if len(words) > limits.max_words:
        return f"caption too long: {len(words)} words > {limits.max_words}"
    letters = [c for c in text if c.isalpha()]
    if not letters:
        return "caption has no letters"
    visible = [c for c in text if not c.isspace()]
    symbols = sum(1 for c in visible if not c.isalnum() and not unicodedata.category(c).startswith("P"))
    if symbols / len(visible) > limits.max_symbols:
        return f"unicode-heavy caption: {symbols} of {len(visible)} characters are symbols"
    non_ascii = sum(1 for c in letters if not c.isascii())
    if non_ascii / len(letters) > limits.max_non_ascii_letters:
        return f"caption looks non-English: {non_ascii} of {len(letters)} letters are not ASCII"
    if len(words) < limits.min_words:
        return f"caption too short: {len(words)} word(s) < {limits.min_words}"
    if wordnet is not None:
        alpha = [w.lower for w in words if w.text.isalpha()]
        known = sum(1 for w in alpha if w in STOPWORDS or wordnet.morphy(w) is not None)
        if alpha and known / len(alpha) < limits.min_english_words:
            return f"caption looks non-English: only {known} of {len(alpha)} words are English words"
    return None


@dataclass(frozen=True)
class Span:
    """The changed span of an edit, in token indices of each side (``[start, end)``)."""

    source_start: int
    source_end: int
    target_start: int
    target_end: int
    source_words: tuple[str, ...]
    target_words: tuple[str, ...]


def diff_span(source: str, target: str) -> Span | str:
    """The single contiguous span where ``target`` differs from ``source`` (case-insensitive, by token).

    Returns:
        A ``Span``, or a reason string: ``"no-op: ..."`` when nothing changed, or the number of separate
        changed spans when there is more than one.
    """
    a, b = tokenize(source), tokenize(target)
    ops = [op for op in difflib.SequenceMatcher(None, [t.lower for t in a], [t.lower for t in b], autojunk=False)
           .get_opcodes() if op[0] != "equal"]
    if not ops:
        return "no-op: the edited caption equals the source caption"
    # difflib never emits two adjacent non-equal opcodes without an equal block between them, so every
    # further opcode is a separate span.
    if len(ops) > 1:
        return f"changes {len(ops)} separate spans, expected exactly one"
    _, i1, i2, j1, j2 = ops[0]
    return Span(i1, i2, j1, j2, tuple(t.text for t in a[i1:i2]), tuple(t.text for t in b[j1:j2]))
