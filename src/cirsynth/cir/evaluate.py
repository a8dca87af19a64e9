"""Evaluate a CIR model on any ``CIRSplit`` with the protocol its source defines.

* ``generic`` (TripletDataset, the mini world): Recall@{1,5,10,50} over every image of the split,
  the reference removed from each query's ranking (as CIRR does);
* ``cirr``: ``cirsynth.metrics.cirr_recall`` (R@K and Rsubset@K); on ``test1`` (no targets) the two
  test-server JSON files are written instead;
* ``fashioniq``: ``cirsynth.metrics.fashioniq_recall`` over the given categories (R@10, R@50, averages).

Features come from the model's kind: a ``ClipCIR`` embeds images and texts apart and fuses the
features; a ``BlipCIR`` (kind "blip") embeds each (reference, text) pair jointly and the gallery with
its target encoder. Either way they are cached on the model's weights and the data.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

import torch
import torch.nn.functional as F

from cirsynth.cir.data import CIRSplit
from cirsynth.cir.model import ClipCIR, _cached, extract_image_features, extract_text_features, load_cir_model
from cirsynth.config import atomic_write_json

if TYPE_CHECKING:
    from cirsynth.cir.blip import BlipCIR

GENERIC_KS = (1, 5, 10, 50)


def split_features(
    model: "ClipCIR | BlipCIR", split: CIRSplit, *, batch_size: int = 64, cache_dir: str | os.PathLike | None = None
) -> tuple[torch.Tensor, torch.Tensor, list[str]]:
    """Query and gallery features of ``split``, by the model's kind (see the module docstring).

    Returns:
        ``(query_feats (Q, D), gallery_feats (G, D), gallery_keys)``, both L2-normalised, on CPU.
    """
    if model.kind == "blip":
        return _blip_split_features(model, split, batch_size=batch_size, cache_dir=cache_dir)
    gallery = split.gallery_keys
    extra = sorted({q.reference for q in split.queries} - set(gallery))
    keys = gallery + extra
    feats = extract_image_features(model, keys, split.open_image, source=split.source,
                                   batch_size=batch_size, cache_dir=cache_dir)  # (G + E, D)
    row = {k: i for i, k in enumerate(keys)}
    text = extract_text_features(model, [q.texts[0] for q in split.queries], cache_dir=cache_dir)  # (Q, D)
    ref = feats[[row[q.reference] for q in split.queries]]  # (Q, D)
    with torch.no_grad():
        query = model.compose(ref.to(model.device), text.to(model.device)).float().cpu()  # (Q, D)
    return query, F.normalize(feats[: len(gallery)], dim=-1), gallery


def _blip_split_features(
    model: "BlipCIR", split: CIRSplit, *, batch_size: int, cache_dir: str | os.PathLike | None
) -> tuple[torch.Tensor, torch.Tensor, list[str]]:
    """``split_features`` of a ``BlipCIR``: targets through the ViT, each query through the fused encoder."""
    gallery = split.gallery_keys
    pairs = [(q.reference, q.texts[0]) for q in split.queries]
    fingerprint = model.fingerprint()

    def gallery_feats() -> torch.Tensor:
        out = [model.encode_images([split.open_image(k) for k in gallery[i:i + batch_size]])
               for i in range(0, len(gallery), batch_size)]
        return torch.cat(out) if out else torch.zeros(0, model.config.embed_dim)

    def query_feats() -> torch.Tensor:
        out = [model.encode_queries([split.open_image(r) for r, _ in pairs[i:i + batch_size]],
                                    [t for _, t in pairs[i:i + batch_size]])
               for i in range(0, len(pairs), batch_size)]
        return torch.cat(out) if out else torch.zeros(0, model.config.embed_dim)

    g = _cached(cache_dir, {"what": "blip-target", "model": fingerprint, "source": split.source, "keys": gallery},
                gallery_feats)  # (G, D)
    q = _cached(cache_dir, {"what": "blip-query", "model": fingerprint, "source": split.source, "pairs": pairs},
                query_feats)  # (Q, D)
    return q, g, gallery


def evaluate_model(
    model: "ClipCIR | BlipCIR | str | os.PathLike",
    splits: CIRSplit | Sequence[CIRSplit],
    *,
    batch_size: int = 64,
    cache_dir: str | os.PathLike | None = None,
    out_dir: str | os.PathLike | None = None,
    device: str | None = None,
) -> dict[str, float]:
    """Metrics of ``model`` (a ``ClipCIR``, a ``BlipCIR``, or a checkpoint folder / CLIP id) on ``splits``.

    Args:
        model: the model, or what ``load_cir_model`` takes (it dispatches on the saved model kind).
        splits: one split, or several FashionIQ categories (evaluated together); all of one kind.
        batch_size: images (or queries) per model call.
        cache_dir: feature cache folder (None: no caching).
        out_dir: where CIRR test-server files go (required for an unlabelled CIRR split).
        device: device for a model loaded here.

    Returns:
        Named metrics in percent (see the module docstring), plus ``"queries"``.
    """
    if not isinstance(model, torch.nn.Module):
        model = load_cir_model(model, device=device)
    model.eval()
    splits = [splits] if isinstance(splits, CIRSplit) else list(splits)
    kinds = {s.kind for s in splits}
    if len(kinds) != 1:
        raise ValueError(f"evaluate_model: splits of different kinds {sorted(kinds)}; evaluate them separately")
    kind = kinds.pop()
    if kind != "fashioniq" and len(splits) != 1:
        raise ValueError(f"evaluate_model: several {kind} splits given; only FashionIQ categories are evaluated together")
    from cirsynth import metrics

    n_queries = float(sum(len(s.queries) for s in splits))
    if kind == "fashioniq":
        per_cat = {}
        for s in splits:
            if any(q.target is None for q in s.queries):
                raise ValueError(f"{s.name}: FashionIQ queries without targets cannot be scored")
            q, g, keys = split_features(model, s, batch_size=batch_size, cache_dir=cache_dir)
            row = {k: i for i, k in enumerate(keys)}
            category = s.name.split("/")[0].removeprefix("fashioniq-")
            per_cat[category] = (q.numpy(), g.numpy(), [row[x.target] for x in s.queries])
        return {**metrics.fashioniq_recall(per_cat), "queries": n_queries}

    split = splits[0]
    q, g, keys = split_features(model, split, batch_size=batch_size, cache_dir=cache_dir)
    labelled = all(x.target is not None for x in split.queries)
    if kind == "cirr":
        refs, members = [x.reference for x in split.queries], [x.group for x in split.queries]
        if labelled:
            out = metrics.cirr_recall(q.numpy(), g.numpy(), keys, refs, [x.target for x in split.queries], members)
            return {**out, "queries": n_queries}
        if out_dir is None:
            raise ValueError(f"{split.name} has no targets: pass out_dir to write the CIRR test-server files")
        recall, subset = metrics.cirr_submission(q.numpy(), g.numpy(), keys, [int(x.id) for x in split.queries],
                                                 refs, members)
        atomic_write_json(Path(out_dir) / "recall_submission_test1.json", recall)
        atomic_write_json(Path(out_dir) / "recall_subset_submission_test1.json", subset)
        return {"queries": n_queries}
    if not labelled:
        raise ValueError(f"{split.name}: queries without targets cannot be scored")
    row = {k: i for i, k in enumerate(keys)}
    targets = [row[x.target] for x in split.queries]
    exclude = [row.get(x.reference, -1) for x in split.queries]
    if any(t == e for t, e in zip(targets, exclude)):
        raise ValueError(f"{split.name}: a query's reference image is its target")
    return {**metrics.recall_at_k(q.numpy(), g.numpy(), targets, GENERIC_KS, exclude=exclude), "queries": n_queries}
