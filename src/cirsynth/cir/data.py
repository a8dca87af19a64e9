"""The one dataset shape the CIR trainer and evaluator read, and thin adapters onto it.

Every source (a synthetic ``TripletDataset``, the mini world, CIRR, FashionIQ) becomes a
``CIRSplit``: queries ``(reference image key, text variants, target image key)`` plus a table of
images by key and the gallery searched at evaluation. Source-specific habits live only in the
adapters: FashionIQ's two captions become CLIP4Cir's four joined variants, CIRR keeps its
``img_set`` members for Recall_subset, a ``TripletDataset`` offers its paraphrases as extra variants.

Real-data scarcity is modelled here too: ``sample_fraction`` takes a seeded, *nested* subset
(the 10% subset is contained in the 30% subset of the same seed), and ``build_training_set``
mixes it with synthetic queries at a given ratio.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Literal, Sequence

import numpy as np
from PIL import Image

SplitKind = Literal["generic", "cirr", "fashioniq"]


@dataclass
class CIRQuery:
    """One composed query. ``texts[0]`` is the evaluation text; all variants are training texts."""

    id: str  # unique within its split (CIRR pairid, triplet id, ...)
    reference: str  # key of the reference image in the split's image table
    texts: list[str]  # modification text variants, at least one
    target: str | None  # key of the target image; None for unlabelled test queries (CIRR test1)
    group: list[str] = field(default_factory=list)  # CIRR img_set members, for Recall_subset

    def __post_init__(self) -> None:
        if not self.texts or not all(isinstance(t, str) and t.strip() for t in self.texts):
            raise ValueError(f"CIRQuery {self.id}: needs at least one non-empty modification text, got {self.texts!r}")


def _open_path(path: str | os.PathLike) -> Image.Image:
    with Image.open(path) as im:
        return im.convert("RGB")


@dataclass
class CIRSplit:
    """Queries and images of one split of one source."""

    name: str  # e.g. "cirr/val", "fashioniq-dress/val", "triplets/train"
    source: str  # identity of the data on disk (absolute root); part of feature-cache keys
    queries: list[CIRQuery]
    images: dict[str, str | Path]  # image key -> whatever ``opener`` takes (a path by default)
    kind: SplitKind = "generic"  # which metrics apply: CIRR's, FashionIQ's or plain Recall@K
    gallery: list[str] | None = None  # keys searched at evaluation; None = every image
    opener: Callable[[str | Path], Image.Image] = _open_path  # loads an ``images`` value as RGB PIL

    def __post_init__(self) -> None:
        missing = sorted(
            {k for q in self.queries for k in (q.reference, q.target) if k is not None and k not in self.images}
        )
        if missing:
            raise ValueError(f"CIRSplit {self.name}: {len(missing)} query images have no file, e.g. {missing[:5]}")
        ids = [q.id for q in self.queries]
        if len(set(ids)) != len(ids):
            raise ValueError(f"CIRSplit {self.name}: query ids are not unique")

    def open_image(self, key: str) -> Image.Image:
        return self.opener(self.images[key])

    @property
    def gallery_keys(self) -> list[str]:
        return list(self.gallery) if self.gallery is not None else sorted(self.images)

    def subset(self, queries: Sequence[CIRQuery], name: str | None = None) -> "CIRSplit":
        """The same images and gallery with only ``queries``."""
        return CIRSplit(name or self.name, self.source, list(queries), self.images, self.kind, self.gallery, self.opener)


# --- real-data fraction and synthetic mixing ------------------------------------------------------


def sample_fraction(queries: Sequence[CIRQuery], fraction: float, seed: int) -> list[CIRQuery]:
    """A seeded subset of ``ceil(fraction * n)`` queries, nested across fractions for one seed.

    Queries are put in id order, permuted once by ``seed``, and the first ``k`` of the permutation
    kept, so the subset for a smaller fraction is a prefix of (hence inside) a larger one and the
    result does not depend on the input order. The subset comes back in id order.
    """
    if not 0.0 <= fraction <= 1.0:
        raise ValueError(f"sample_fraction: fraction must be in [0, 1], got {fraction}")
    ordered = sorted(queries, key=lambda q: q.id)
    k = math.ceil(round(fraction * len(ordered), 9))
    perm = np.random.default_rng(seed).permutation(len(ordered))
    return [ordered[i] for i in sorted(perm[:k].tolist())]


@dataclass
class TrainingPart:
    """Queries drawn from one split for training."""

    split: CIRSplit
    queries: list[CIRQuery]
    synthetic: bool  # True for generated triplets


def build_training_set(
    real: CIRSplit | None,
    real_fraction: float,
    synthetic: Sequence[CIRSplit] = (),
    synthetic_ratio: float | None = None,
    seed: int = 0,
) -> list[TrainingPart]:
    """Real queries at a seeded nested fraction plus synthetic queries at a mixing ratio.

    Args:
        real: the real training split, or None for synthetic-only training.
        real_fraction: fraction of the real queries to keep (see ``sample_fraction``).
        synthetic: synthetic splits (e.g. several ``TripletDataset`` s); their queries are pooled.
        synthetic_ratio: synthetic queries per kept real query (1.0 = as many synthetic as real);
            None uses every synthetic query. Ignored (all used) when no real query is kept.
        seed: seed of both draws.

    Returns:
        Non-empty parts, real first.
    """
    parts: list[TrainingPart] = []
    n_real = 0
    if real is not None:
        kept = sample_fraction(real.queries, real_fraction, seed)
        n_real = len(kept)
        if kept:
            parts.append(TrainingPart(real, kept, synthetic=False))
    pool = [(i, q) for i, s in enumerate(synthetic) for q in sorted(s.queries, key=lambda q: q.id)]
    if pool:
        if synthetic_ratio is None or n_real == 0:
            chosen = pool
        else:
            if synthetic_ratio < 0:
                raise ValueError(f"build_training_set: synthetic_ratio must be >= 0, got {synthetic_ratio}")
            want = int(round(synthetic_ratio * n_real))
            if want > len(pool):
                raise ValueError(
                    f"build_training_set: synthetic_ratio={synthetic_ratio} asks for {want} synthetic triplets "
                    f"but only {len(pool)} exist; lower the ratio or pass synthetic_ratio=None to use all"
                )
            idx = np.random.default_rng([seed, 1]).permutation(len(pool))[:want]
            chosen = [pool[i] for i in sorted(idx.tolist())]
        for i, s in enumerate(synthetic):
            qs = [q for j, q in chosen if j == i]
            if qs:
                parts.append(TrainingPart(s, qs, synthetic=True))
    if not parts:
        raise ValueError("build_training_set: no training queries (empty real fraction and no synthetic data)")
    return parts


# --- adapters -----------------------------------------------------------------------------------


def fashioniq_text_variants(captions: Sequence[str]) -> list[str]:
    """FashionIQ's two relative captions as CLIP4Cir's four training texts; the first is the eval text.

    Both orders joined with "and" (``cirsynth.data.join_captions``, the test-time joining), then
    each caption alone.
    """
    from cirsynth.data import join_captions

    if len(captions) != 2:
        raise ValueError(f"FashionIQ queries have exactly two captions, got {len(captions)}: {captions!r}")
    a, b = captions
    return [join_captions([a, b]), join_captions([b, a]), join_captions([a]), join_captions([b])]


def from_triplet_dataset(root: str | os.PathLike, split: str | None = None, name: str | None = None) -> CIRSplit:
    """Accepted triplets of a ``cirsynth.data.TripletDataset`` (synthetic data or the mini world).

    The gallery is every reference, target and ``group`` member (CIRR img_set) of the split: the gallery the
    CIRR export of the same triplets has, so ``triplets:`` and ``cirr:`` views of one benchmark score alike.

    Args:
        root: dataset folder.
        split: keep only triplets whose ``split`` field equals this; None keeps all.
        name: split name for logs and caches (default ``"<folder name>/<split or all>"``).
    """
    from cirsynth.data import TripletDataset

    root = Path(root).resolve()
    ds = TripletDataset(root)
    queries: list[CIRQuery] = []
    images: dict[str, str] = {}
    for t in ds.triplets(status="accepted", split=split):
        texts = [t.modification_text] + [p for p in t.paraphrases if p and p != t.modification_text]
        queries.append(CIRQuery(t.id, t.reference, texts, t.target, list(t.group)))
        images[t.reference] = t.reference
        images[t.target] = t.target
        for g in t.group:  # the hard negatives are part of the gallery, as in the CIRR export of the same data
            images[g] = g
    if not queries:
        raise ValueError(f"from_triplet_dataset: no accepted triplets{f' in split {split!r}' if split else ''} under {root}")
    return CIRSplit(name or f"{root.name}/{split or 'all'}", f"triplets:{root}", queries, images,
                    kind="generic", opener=ds.open_image)


def from_cirr(root: str | os.PathLike, split: str) -> CIRSplit:
    """A CIRR split (``train``, ``val``, ``test1``) read by ``cirsynth.data.cirr.read_cirr``."""
    from cirsynth.data.cirr import read_cirr

    data = read_cirr(root, split)
    images = {name: path for name, path in data.images.items()}
    queries = [
        CIRQuery(str(q.pairid), q.reference, [q.caption], q.target, list(q.members)) for q in data.queries
    ]
    return CIRSplit(f"cirr/{split}", f"cirr:{Path(root).resolve()}", queries, images, kind="cirr")


def from_fashioniq(root: str | os.PathLike, category: str, split: str) -> CIRSplit:
    """One FashionIQ category (``dress``, ``shirt``, ``toptee``) read by ``cirsynth.data.fashioniq``."""
    from cirsynth.data.fashioniq import read_fashioniq

    data = read_fashioniq(root, category, split)
    queries = [
        CIRQuery(str(q.index), q.candidate, fashioniq_text_variants(q.captions), q.target) for q in data.queries
    ]
    return CIRSplit(f"fashioniq-{category}/{split}", f"fashioniq:{Path(root).resolve()}", queries,
                    dict(data.images), kind="fashioniq")


def load_split(spec: str) -> CIRSplit:
    """Parse a dataset spec from the command line.

    ``triplets:<root>[:<split>]`` (a TripletDataset, the world's included), ``cirr:<root>:<split>``,
    ``fashioniq:<root>:<category>:<split>``. A bare path is ``triplets:<path>``.
    """
    kind, sep, rest = spec.partition(":")
    if not sep or kind not in ("triplets", "cirr", "fashioniq"):
        return from_triplet_dataset(spec)
    parts = rest.rsplit(":", 2 if kind == "fashioniq" else 1)
    if kind == "triplets":
        if len(parts) == 2 and not Path(rest).exists():
            return from_triplet_dataset(parts[0], parts[1])
        return from_triplet_dataset(rest)
    if kind == "cirr":
        if len(parts) != 2:
            raise ValueError(f"dataset spec {spec!r}: expected cirr:<root>:<split>")
        return from_cirr(parts[0], parts[1])
    if len(parts) != 3:
        raise ValueError(f"dataset spec {spec!r}: expected fashioniq:<root>:<category>:<split>")
    return from_fashioniq(*parts)
