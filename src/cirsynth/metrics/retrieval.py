"""Recall@K for composed image retrieval, exact and fast.

Scores are dot products ``query · gallery`` (pass L2-normalised features for cosine similarity).

Exactness: ranks are those of the float64 dot products. For speed, a first pass scores the whole
gallery with a bfloat16 matrix multiply (several times faster than float32 on CPUs with bf16
units) and a proven bound on its error: an item whose fast score is clearly above or below the
target's exact score is counted as such; only items inside the error band are re-scored in float64.

Tie-breaking: items with equal score are ordered by gallery index (lower index ranks first), i.e.
the order of a stable descending sort. An excluded item (CIRR excludes the reference image) is
removed from the ranking; excluding the target itself is an error.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

# Unit roundoff of each screening dtype: bfloat16 has 8 significant bits, float32 24. float32 is the choice on
# CPUs without bf16 units, where a bf16 matmul is emulated and slower than float32.
_UNIT_ROUNDOFF = {torch.bfloat16: 2.0**-8, torch.float32: 2.0**-24}


def _screen_dtype(name: str) -> torch.dtype:
    dtype = {"bfloat16": torch.bfloat16, "float32": torch.float32}.get(name)
    if dtype is None:
        raise ValueError(f"screen_dtype must be 'bfloat16' or 'float32', got {name!r}")
    return dtype


def _as_tensor(x, name: str) -> torch.Tensor:
    t = torch.as_tensor(np.asarray(x) if not isinstance(x, torch.Tensor) else x)
    if t.ndim != 2:
        raise ValueError(f"{name} must be 2-D (N, D), got shape {tuple(t.shape)}")
    t = t.detach().to("cpu", torch.float32)
    if not torch.isfinite(t).all():
        raise ValueError(f"{name} holds NaN or infinite values")
    return t


def _check_index(x, n_queries: int, n_gallery: int, name: str, allow_missing: bool = False) -> torch.Tensor:
    t = torch.as_tensor(np.asarray(x), dtype=torch.long).reshape(-1)
    if t.numel() != n_queries:
        raise ValueError(f"{name} has {t.numel()} entries for {n_queries} queries")
    lo = -1 if allow_missing else 0
    bad = (t < lo) | (t >= n_gallery)
    if bad.any():
        i = int(bad.nonzero()[0])
        raise ValueError(f"{name}[{i}] = {int(t[i])} is not a gallery index (gallery has {n_gallery} items)")
    return t


def _error_bound(q: torch.Tensor, g_max_norm: float, dim: int, dtype: torch.dtype = torch.bfloat16) -> torch.Tensor:
    """Bound on |screen score - exact score| for every gallery item, per query: (Q, 1).

    With S = sum_k |q_k g_k| <= |q|_2 |g|_2 (Cauchy-Schwarz): rounding the inputs to bf16 costs
    (2u + u^2) S (their products are exact in fp32), fp32 accumulation at most gamma_D (1+u)^2 S
    with gamma_D ~ D 2^-24, and rounding the output to bf16 u (1+u)^2 (1+gamma_D) S. Their sum is
    below (3.1 u + 2 D 2^-24) S; |g|_2 is replaced by the largest gallery norm. For a float32 screen
    u = 2^-24 and the same sum bounds it.
    """
    c = 3.1 * _UNIT_ROUNDOFF[dtype] + 2.0 * dim * 2.0**-24
    return c * q.norm(dim=1, keepdim=True) * g_max_norm  # (Q, 1)


_SCREEN = 256  # gallery items per query kept by the fast screen before exact re-scoring


def _count_exact_above(qc, g, idx, band, t_exact, tc) -> torch.Tensor:
    """Per query, how many band items outrank the target by exact float64 score (ties: lower index)."""
    qi, col = band.nonzero(as_tuple=True)
    gj = idx[qi, col]
    exact = (qc[qi].double() * g[gj].double()).sum(1)  # (P,)
    t_q = t_exact[qi]
    above = (exact > t_q) | ((exact == t_q) & (gj < tc[qi]))
    return torch.zeros(qc.shape[0], dtype=torch.long).index_add(0, qi, above.long())


def _full_row_ranks(fast, qc, g, t_exact, tc, bound) -> torch.Tensor:
    """Exact ranks from whole rows of fast scores (B, G); excluded items must hold -inf."""
    rows = torch.arange(fast.shape[0])
    diff = fast - t_exact.float()[:, None]  # (B, G)
    sure = diff > bound
    sure[rows, tc] = False
    band = diff.abs_() <= bound
    band[rows, tc] = False
    idx = torch.arange(fast.shape[1]).expand(fast.shape[0], -1)
    return sure.sum(1) + _count_exact_above(qc, g, idx, band, t_exact, tc)


def target_ranks(
    query_feats,
    gallery_feats,
    targets,
    exclude=None,
    max_rank: int | None = None,
    chunk_size: int = 1024,
    screen_dtype: str = "bfloat16",
) -> np.ndarray:
    """0-based rank of each query's target in the gallery (see the module doc for ties/exclusion).

    Args:
        query_feats: (Q, D) query features.
        gallery_feats: (G, D) gallery features.
        targets: (Q,) gallery index of each query's target.
        exclude: optional (Q,) gallery index to remove from each query's ranking (-1: none).
        max_rank: ranks >= max_rank are reported as max_rank (they need no exact count); None: exact.
        chunk_size: queries per block; memory is O(chunk_size * G).
        screen_dtype: "bfloat16" (fast on CPUs with bf16 units) or "float32"; ranks are exact either way.

    Returns:
        (Q,) int64 ranks.
    """
    q, g = _as_tensor(query_feats, "query_feats"), _as_tensor(gallery_feats, "gallery_feats")
    if q.shape[1] != g.shape[1]:
        raise ValueError(f"feature sizes differ: queries {q.shape[1]}, gallery {g.shape[1]}")
    n_q, n_g = q.shape[0], g.shape[0]
    tgt = _check_index(targets, n_q, n_g, "targets")
    exc = _check_index(exclude if exclude is not None else np.full(n_q, -1), n_q, n_g, "exclude", allow_missing=True)
    if (exc == tgt).any():
        i = int((exc == tgt).nonzero()[0])
        raise ValueError(f"query {i}: the excluded item is its target ({int(tgt[i])})")
    cap = n_g if max_rank is None else max_rank
    sd = _screen_dtype(screen_dtype)
    g_bf, g_max = g.to(sd), float(g.norm(dim=1).max()) if n_g else 0.0
    m = min(n_g, max(cap, _SCREEN))
    ranks = torch.empty(n_q, dtype=torch.long)
    for s in range(0, n_q, chunk_size):
        qc = q[s : s + chunk_size]  # (B, D)
        tc, ec = tgt[s : s + chunk_size], exc[s : s + chunk_size]
        rows = torch.arange(qc.shape[0])
        t_exact = (qc.double() * g[tc].double()).sum(1)  # (B,) exact target scores
        t32 = t_exact.float()[:, None]  # (B, 1)
        bound = _error_bound(qc, g_max, q.shape[1], sd)  # (B, 1)
        fast = qc.to(sd) @ g_bf.T  # (B, G) screening scores
        has = ec >= 0
        fast[rows[has], ec[has]] = float("-inf")  # excluded items take no part
        vals, idx = fast.topk(m, dim=1)  # (B, M) best fast scores and their gallery indices
        vals = vals.float()
        not_target = idx != tc[:, None]
        # Every item outside the top M scores at most vals[:, -1]; if that is surely below the
        # target, the top M hold every item that can outrank it.
        complete = vals[:, -1] < (t32 - bound).squeeze(1)
        if m == n_g:
            complete[:] = True  # the screen kept the whole gallery
        # cap items surely above the target: rank >= cap whatever the rest.
        decided = (vals[:, min(cap, m) - 1 : min(cap, m)] > t32 + bound).squeeze(1) & (cap <= m)
        r = torch.full((qc.shape[0],), cap, dtype=torch.long)
        todo = complete & ~decided
        if todo.any():
            v, ix, nt = vals[todo], idx[todo], not_target[todo]
            sure = ((v > t32[todo] + bound[todo]) & nt).sum(1)
            band = ((v - t32[todo]).abs() <= bound[todo]) & nt
            r[todo] = sure + _count_exact_above(qc[todo], g, ix, band, t_exact[todo], tc[todo])
        rest = ~complete & ~decided  # rare: many near-ties around the target; rank over the full row
        if rest.any():
            r[rest] = _full_row_ranks(fast[rest].float(), qc[rest], g, t_exact[rest], tc[rest], bound[rest])
        ranks[s : s + chunk_size] = r.clamp(max=cap)
    return ranks.numpy()


def percent(hits) -> float:
    """The share of True in ``hits`` in percent, as ``100 * count / n`` (the closest float to the exact share:
    14 of 25 gives 56.0, where ``mean() * 100`` gives 56.00000000000001)."""
    hits = np.asarray(hits if not isinstance(hits, torch.Tensor) else hits.cpu().numpy())
    return 100.0 * int(hits.sum()) / hits.size


def recall_at_k(
    query_feats,
    gallery_feats,
    targets,
    ks: Sequence[int] = (1, 5, 10, 50),
    exclude=None,
    chunk_size: int = 1024,
    screen_dtype: str = "bfloat16",
) -> dict[str, float]:
    """Recall@K in percent: the share of queries whose target ranks in the top K.

    Args:
        query_feats: (Q, D); gallery_feats: (G, D); targets: (Q,) gallery indices.
        ks: cut-offs.
        exclude: optional (Q,) gallery index removed from each query's ranking (-1: none).
        chunk_size: queries per block, so a 100k gallery x 10k queries fits in memory.
        screen_dtype: "bfloat16" or "float32" for the fast screen (see ``target_ranks``).

    Returns:
        ``{"R@1": ..., "R@5": ...}`` in percent (0-100), as papers report them.
    """
    ks = sorted({int(k) for k in ks})
    if not ks or ks[0] < 1:
        raise ValueError(f"ks must be positive integers, got {ks}")
    ranks = target_ranks(query_feats, gallery_feats, targets, exclude, max_rank=ks[-1], chunk_size=chunk_size,
                         screen_dtype=screen_dtype)
    if len(ranks) == 0:
        raise ValueError("no queries")
    return {f"R@{k}": percent(ranks < k) for k in ks}


def recall_at_k_naive(query_feats, gallery_feats, targets, ks=(1, 5, 10, 50), exclude=None) -> dict[str, float]:
    """Reference implementation: the full float64 score matrix and a stable sort. For tests."""
    q = np.asarray(query_feats, dtype=np.float64)
    g = np.asarray(gallery_feats, dtype=np.float64)
    scores = q @ g.T
    out = {}
    ranks = []
    for i in range(len(q)):
        order = np.argsort(-scores[i], kind="stable")
        if exclude is not None and exclude[i] >= 0:
            order = order[order != exclude[i]]
        ranks.append(int(np.nonzero(order == targets[i])[0][0]))
    ranks = np.asarray(ranks)
    for k in sorted(ks):
        out[f"R@{k}"] = percent(ranks < k)
    return out


def topk_exact(
    query_feats, gallery_feats, k: int, exclude=None, chunk_size: int = 1024, screen_dtype: str = "bfloat16"
) -> np.ndarray:
    """Indices of each query's top ``k`` gallery items, best first, by exact (float64) score.

    Same tie-breaking and exclusion rules as ``target_ranks``. Uses the bf16 screen: every item
    whose fast score is within twice the error bound of the k-th fast score is re-scored exactly.

    Returns:
        (Q, k) int64.
    """
    q, g = _as_tensor(query_feats, "query_feats"), _as_tensor(gallery_feats, "gallery_feats")
    n_q, n_g = q.shape[0], g.shape[0]
    exc = _check_index(exclude if exclude is not None else np.full(n_q, -1), n_q, n_g, "exclude", allow_missing=True)
    avail = n_g - 1 if (exc >= 0).any() else n_g
    if not 1 <= k <= avail:
        raise ValueError(f"k={k} but only {avail} gallery items can be ranked")
    sd = _screen_dtype(screen_dtype)
    g_bf, g_max = g.to(sd), float(g.norm(dim=1).max())
    out = np.empty((n_q, k), dtype=np.int64)
    for s in range(0, n_q, chunk_size):
        qc, ec = q[s : s + chunk_size], exc[s : s + chunk_size]
        fast = (qc.to(sd) @ g_bf.T).float()  # (B, G)
        has = ec >= 0
        rows = torch.arange(qc.shape[0])
        fast[rows[has], ec[has]] = float("-inf")
        kth = fast.topk(k, dim=1).values[:, -1:]  # (B, 1)
        cand = fast >= kth - 2 * _error_bound(qc, g_max, q.shape[1], sd)  # (B, G)
        for b in range(qc.shape[0]):
            idx = cand[b].nonzero().squeeze(1)
            exact = (g[idx].double() @ qc[b].double()).numpy()
            order = np.lexsort((idx.numpy(), -exact))[:k]  # by score desc, then index asc
            out[s + b] = idx.numpy()[order]
    return out
