"""Retrieval metrics (exact Recall@K, CIRR and FashionIQ protocols) and image-structure metrics."""

from cirsynth.metrics.image import psnr
from cirsynth.metrics.protocols import cirr_recall, cirr_submission, fashioniq_recall
from cirsynth.metrics.retrieval import recall_at_k, recall_at_k_naive, target_ranks, topk_exact

__all__ = [
    "cirr_recall",
    "cirr_submission",
    "fashioniq_recall",
    "psnr",
    "recall_at_k",
    "recall_at_k_naive",
    "target_ranks",
    "topk_exact",
]
