"""Every model and word list a synthesis run names, checked in one place before any input is read or any model loads.

``check_references`` is what ``Synthesizer.run`` calls first; ``vocabulary_ref`` reads a ``--vocabulary`` value the
same way in ``synthesize`` and ``perturb``.
"""

from __future__ import annotations

import difflib
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

from cirsynth.models.refs import ModelRefError, check_model_ref

if TYPE_CHECKING:  # pragma: no cover
    from cirsynth.synth.pipeline import SynthConfig

WORLD_VOCABULARY = "world"  # the keyword naming the mini world's closed word lists
# Those lists as data, so this layer reads them without importing the world (which sits above it); a test checks the
# file equals cirsynth.world.language.lexical_vocabulary_dict().
WORLD_VOCABULARY_FILE = Path(__file__).resolve().parent.parent / "assets" / "world" / "vocabulary.json"


def check_vocabulary(option: str, value: str | None) -> None:
    """Refuse a ``--vocabulary`` that is neither the keyword ``world`` nor an existing JSON file.

    Raises:
        ModelRefError: the message says that ``world`` is the keyword (and suggests it for a near miss like ``wrld``).
    """
    if value is None or value == WORLD_VOCABULARY or Path(value).is_file():
        return
    near = difflib.get_close_matches(value.lower(), [WORLD_VOCABULARY], n=1, cutoff=0.6)
    hint = f" (did you mean {option} {WORLD_VOCABULARY}?)" if near else ""
    raise ModelRefError(f"{option} {value}: no such file{hint}; pass {option} {WORLD_VOCABULARY} (the keyword for "
                        f"the mini world's word lists), a vocabulary JSON file, or leave it unset (built-in lists "
                        f"+ WordNet)")


class VocabularyRef(NamedTuple):
    vocab: Any  # a Vocabulary, or None for the built-in lists
    wordnet: bool | None  # LexicalPerturber's wordnet argument: False for the world (closed lists), else None
    world: bool  # the mini world's lists (its captions run long: the LLM perturber gets more new tokens)


def vocabulary_ref(value: str | None) -> VocabularyRef:
    """What a ``--vocabulary`` value names: None -> the built-in lists (WordNet when installed); ``world`` -> the
    mini world's lists, no WordNet; a path -> that JSON file (WordNet when installed).

    Raises:
        ModelRefError: neither the keyword nor an existing file (see ``check_vocabulary``).
    """
    if value is None:
        return VocabularyRef(None, None, False)
    from cirsynth.captions import Vocabulary

    if value == WORLD_VOCABULARY:
        return VocabularyRef(Vocabulary.from_json(WORLD_VOCABULARY_FILE), False, True)
    check_vocabulary("--vocabulary", value)
    return VocabularyRef(Vocabulary.from_json(value), None, False)


def model_refs(cfg: "SynthConfig") -> list[tuple[str, str, str, bool]]:
    """``(option, value, kind, takes world)`` of every model the run will load (``world``: the option's shorthand
    for the bundled world model, see the synthesize command)."""
    refs = [("--editor", cfg.editor, "pipeline", True)]
    if cfg.captioner:
        refs.append(("--captioner", cfg.captioner, "captioner", True))
    if cfg.clip and not cfg.no_filter:
        refs.append(("--clip", cfg.clip, "clip", True))
    if cfg.filters.recaptioner and not cfg.no_filter:
        refs.append(("--recaptioner", cfg.filters.recaptioner, "captioner", True))
    if cfg.perturber == "llm":
        if cfg.perturber_model:
            refs.append(("--perturber_model", cfg.perturber_model, "causal-lm", False))
        if cfg.adapter:
            refs.append(("--adapter", cfg.adapter, "adapter", False))
    return refs


def check_references(cfg: "SynthConfig") -> None:
    """Check every model id / folder, the vocabulary and the captions file of a run, before anything loads.

    Raises:
        ModelRefError: the first bad reference, naming its option and what to pass instead.
    """
    if cfg.perturber == "llm" and not cfg.perturber_model and not cfg.adapter:
        raise ModelRefError("--perturber llm needs --perturber_model ID_OR_DIR (or an --adapter that records its "
                            "base model)")
    if cfg.captions and not Path(cfg.captions).is_file():
        raise ModelRefError(f"--captions {cfg.captions}: no such file; pass a CSV, JSONL or Parquet file with "
                            f"columns image, caption")
    check_vocabulary("--vocabulary", cfg.vocabulary)
    for option, value, kind, world in model_refs(cfg):
        check_model_ref(option, value, kind, world=world)
