"""Recall@K speed on a 100k gallery x 10k queries x 512-d (JSON out).

Features are L2-normalised; each query is its target plus noise, with the noise level spread so
that target ranks cover the whole range (from top-1 to beyond 50), like a half-trained model.
Also reports the float32 full-matrix time for comparison and checks the fast result against
exact float64 ranks on a subsample.

Usage: python benchmarks/recall.py [--gallery 100000] [--queries 10000] [--dim 512]
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import time

import numpy as np
import torch

from cirsynth.metrics import recall_at_k, recall_at_k_naive


def make_data(n_g: int, n_q: int, dim: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    g = rng.standard_normal((n_g, dim), dtype=np.float32)
    g /= np.linalg.norm(g, axis=1, keepdims=True)
    targets = rng.integers(0, n_g, size=n_q)
    noise = rng.uniform(1.0, 10.0, size=(n_q, 1)).astype(np.float32)
    q = g[targets] + noise * rng.standard_normal((n_q, dim), dtype=np.float32) / np.sqrt(dim)
    q = (q / np.linalg.norm(q, axis=1, keepdims=True)).astype(np.float32)
    exclude = (targets + 1) % n_g  # like CIRR's reference image
    return q, g, targets, exclude


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--gallery", type=int, default=100_000)
    ap.add_argument("--queries", type=int, default=10_000)
    ap.add_argument("--dim", type=int, default=512)
    ap.add_argument("--chunk-size", type=int, default=1024)
    ap.add_argument("--screen-dtype", default="bfloat16", choices=["bfloat16", "float32"])
    args = ap.parse_args()
    q, g, t, ex = make_data(args.gallery, args.queries, args.dim)

    start = time.perf_counter()
    fast = recall_at_k(q, g, t, (1, 5, 10, 50), exclude=ex, chunk_size=args.chunk_size, screen_dtype=args.screen_dtype)
    fast_s = time.perf_counter() - start

    # float32 full-score baseline (the usual approach: score matrix + comparison), same chunking
    start = time.perf_counter()
    qt, gt = torch.from_numpy(q), torch.from_numpy(g)
    for s in range(0, len(q), args.chunk_size):
        scores = qt[s : s + args.chunk_size] @ gt.T
        tsc = scores[torch.arange(scores.shape[0]), torch.from_numpy(t[s : s + args.chunk_size])]
        (scores > tsc[:, None]).sum(1)
    fp32_s = time.perf_counter() - start

    sub = np.arange(0, len(q), max(1, len(q) // 500))
    naive = recall_at_k_naive(q[sub], g, t[sub], (1, 5, 10, 50), exclude=ex[sub])
    check = recall_at_k(q[sub], g, t[sub], (1, 5, 10, 50), exclude=ex[sub])
    print(
        json.dumps(
            {
                "benchmark": "recall_at_k",
                "gallery": args.gallery,
                "queries": args.queries,
                "dim": args.dim,
                "screen_dtype": args.screen_dtype,
                "seconds": round(fast_s, 3),
                "fp32_full_matrix_seconds": round(fp32_s, 3),
                "recall": fast,
                "matches_naive_on_subsample": naive == check,
                "peak_rss_gb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20, 2),
                "threads": torch.get_num_threads(),
                "machine": f"{platform.machine()} {platform.processor() or ''}".strip(),
                "torch": torch.__version__,
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
