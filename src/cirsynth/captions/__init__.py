"""Captions and counterfactual caption edits: captioners, the lexical and LLM perturbers, edit validation.

Perturbers share one batch API (``cirsynth.captions.base``)::

    results = perturber.perturb(captions, edit_types=None, n=1, seed=0)   # -> list[PerturbResult]

Heavy libraries (torch, transformers, peft) are imported only by the LLM and captioner modules.
"""

from cirsynth.captions.base import EditChecks, PerturbResult, Perturber, build_edit, validate_edit
from cirsynth.captions.lexical import LexicalConfig, LexicalPerturber
from cirsynth.captions.text import CaptionLimits, check_caption, diff_span, tokenize
from cirsynth.captions.vocab import Vocabulary
from cirsynth.captions.wordnet import WordNetUnavailable, load_wordnet

__all__ = [
    "CaptionLimits", "EditChecks", "LexicalConfig", "LexicalPerturber", "PerturbResult", "Perturber",
    "Vocabulary", "WordNetUnavailable", "build_edit", "check_caption", "diff_span", "load_wordnet",
    "tokenize", "validate_edit",
]
