"""The official evaluation protocols of CIRR and FashionIQ, on top of exact Recall@K."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from cirsynth.metrics.retrieval import percent, recall_at_k, target_ranks, topk_exact

CIRR_KS = (1, 5, 10, 50)
CIRR_SUBSET_KS = (1, 2, 3)
FASHIONIQ_KS = (10, 50)


def _index(names: Sequence[str]) -> dict[str, int]:
    idx = {}
    for i, n in enumerate(names):
        if n in idx:
            raise ValueError(f"gallery name {n!r} appears twice (positions {idx[n]} and {i})")
        idx[n] = i
    return idx


def _lookup(idx: dict[str, int], names: Sequence[str], role: str) -> np.ndarray:
    out = np.empty(len(names), dtype=np.int64)
    for i, n in enumerate(names):
        if n not in idx:
            raise ValueError(f"query {i}: {role} {n!r} is not in the gallery")
        out[i] = idx[n]
    return out


def _subset_ranks(q: np.ndarray, g: np.ndarray, idx: dict[str, int], ref: np.ndarray, tgt: np.ndarray, members) -> np.ndarray:
    """Rank of the target among the query's img_set members, the reference removed (exact, float64)."""
    ranks = np.empty(len(q), dtype=np.int64)
    for i, mem in enumerate(members):
        cand = np.array(sorted({idx[m] for m in mem if m in idx} - {int(ref[i])}), dtype=np.int64)
        if tgt[i] not in cand:
            raise ValueError(f"query {i}: the target is not among its img_set members")
        scores = g[cand].astype(np.float64) @ q[i].astype(np.float64)
        t = scores[cand == tgt[i]][0]
        ranks[i] = int(((scores > t) | ((scores == t) & (cand < tgt[i]))).sum())
    return ranks


def cirr_recall(
    query_feats,
    gallery_feats,
    gallery_names: Sequence[str],
    reference_names: Sequence[str],
    target_names: Sequence[str],
    members: Sequence[Sequence[str]],
) -> dict[str, float]:
    """CIRR validation metrics (Liu et al. 2021), in percent.

    R@K ranks the whole gallery with each query's reference image removed; Rsubset@K ranks the
    target among the query's ``img_set`` members, the reference removed (5 candidates).

    Args:
        query_feats: (Q, D) composed query features; gallery_feats: (G, D).
        gallery_names: (G,) image names; reference_names/target_names: (Q,) names.
        members: per query, the img_set member names.

    Returns:
        ``{"R@1", "R@5", "R@10", "R@50", "Rsubset@1", "Rsubset@2", "Rsubset@3", "(R@5+Rsubset@1)/2"}``.
    """
    q, g = np.asarray(query_feats, np.float32), np.asarray(gallery_feats, np.float32)
    idx = _index(gallery_names)
    ref, tgt = _lookup(idx, reference_names, "reference"), _lookup(idx, target_names, "target")
    if len(members) != len(q):
        raise ValueError(f"members has {len(members)} entries for {len(q)} queries")
    out = recall_at_k(q, g, tgt, CIRR_KS, exclude=ref)
    sub = _subset_ranks(q, g, idx, ref, tgt, members)
    out.update({f"Rsubset@{k}": percent(sub < k) for k in CIRR_SUBSET_KS})
    out["(R@5+Rsubset@1)/2"] = (out["R@5"] + out["Rsubset@1"]) / 2.0
    return out


def cirr_submission(
    query_feats,
    gallery_feats,
    gallery_names: Sequence[str],
    pairids: Sequence[int],
    reference_names: Sequence[str],
    members: Sequence[Sequence[str]],
) -> tuple[dict, dict]:
    """The two CIRR test-server files: top-50 over the gallery and top-3 within the img_set.

    Both exclude the reference image. Returns ``(recall, recall_subset)`` dicts ready for
    ``json.dump``: ``{"version": "rc2", "metric": "recall", "<pairid>": [50 names]}`` and
    ``{"version": "rc2", "metric": "recall_subset", "<pairid>": [3 names]}``.
    """
    q, g = np.asarray(query_feats, np.float32), np.asarray(gallery_feats, np.float32)
    idx = _index(gallery_names)
    ref = _lookup(idx, reference_names, "reference")
    if not (len(pairids) == len(members) == len(q)):
        raise ValueError("pairids, members and query_feats must have one entry per query")
    top = topk_exact(q, g, min(50, len(gallery_names) - 1), exclude=ref)
    recall = {"version": "rc2", "metric": "recall"}
    subset = {"version": "rc2", "metric": "recall_subset"}
    names = list(gallery_names)
    for i, pid in enumerate(pairids):
        recall[str(pid)] = [names[j] for j in top[i]]
        cand = np.array(sorted({idx[m] for m in members[i] if m in idx} - {int(ref[i])}), dtype=np.int64)
        scores = g[cand].astype(np.float64) @ q[i].astype(np.float64)
        order = np.lexsort((cand, -scores))[:3]
        subset[str(pid)] = [names[j] for j in cand[order]]
    return recall, subset


def fashioniq_recall(per_category: Mapping[str, tuple]) -> dict[str, float]:
    """FashionIQ metrics (Wu et al. 2021): per category R@10 and R@50, and their averages, in percent.

    Args:
        per_category: category -> ``(query_feats (Q, D), gallery_feats (G, D), targets (Q,))``,
            the gallery being that category's split images. The reference is not excluded, as in
            the common protocol.

    Returns:
        ``{"dress/R@10", "dress/R@50", ..., "avg/R@10", "avg/R@50", "avg"}``.
    """
    if not per_category:
        raise ValueError("no categories given")
    out: dict[str, float] = {}
    for cat, (q, g, t) in per_category.items():
        for name, v in recall_at_k(q, g, t, FASHIONIQ_KS).items():
            out[f"{cat}/{name}"] = v
    for k in FASHIONIQ_KS:
        out[f"avg/R@{k}"] = float(np.mean([out[f"{c}/R@{k}"] for c in per_category]))
    out["avg"] = (out["avg/R@10"] + out["avg/R@50"]) / 2.0
    return out


__all__ = ["cirr_recall", "cirr_submission", "fashioniq_recall", "target_ranks"]
