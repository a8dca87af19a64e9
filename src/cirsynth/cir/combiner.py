"""The Combiner of CLIP4Cir (Baldrati et al., "Effective conditioned and composed image retrieval
combining CLIP-based features", CVPR 2022 / TOMM 2023) and the batch-based classification loss.

The Combiner fuses a reference-image embedding and a modification-text embedding into a query
embedding that lives in CLIP's image space:

    t' = relu(W_t t), i' = relu(W_i i)                      (projections, with dropout)
    h  = relu(W_c [t'; i'])                                  (combining MLP, with dropout)
    λ  = sigmoid(MLP_λ([t'; i']))                            (learned dynamic mixing scalar)
    q  = normalize(W_o h + λ t + (1 - λ) i)

Retrieval scores are ``logit_scale * q · normalize(target)``; training is cross-entropy over the
batch, each query's own target the positive and the other targets the negatives.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn


@dataclass
class CombinerConfig:
    """Sizes of the Combiner; CLIP4Cir's RN50x4 setting is feature_dim=640, projection_dim=2560, hidden_dim=5120."""

    feature_dim: int = 512  # CLIP joint embedding size (model.config.projection_dim)
    projection_dim: int = 2048  # width of the text/image projections (CLIP4Cir: 4x feature_dim)
    hidden_dim: int = 4096  # width of the combining MLP and of the mixing-scalar MLP (CLIP4Cir: 8x)
    dropout: float = 0.5  # after each projection and the combining layer (CLIP4Cir: 0.5)
    mix_dropout: float = 0.1  # inside the mixing-scalar MLP
    logit_scale: float = 100.0  # temperature of the batch classification loss (CLIP's learned value ≈ 100)

    @classmethod
    def scaled(cls, feature_dim: int, **kw) -> "CombinerConfig":
        """CLIP4Cir's proportions (projection 4x, hidden 8x the feature size) for any CLIP."""
        return cls(feature_dim=feature_dim, projection_dim=4 * feature_dim, hidden_dim=8 * feature_dim, **kw)


class Combiner(nn.Module):
    """Fuse (reference image, text) CLIP features into an L2-normalised query feature."""

    def __init__(self, config: CombinerConfig):
        super().__init__()
        self.config = config
        d, p, h = config.feature_dim, config.projection_dim, config.hidden_dim
        self.text_proj = nn.Sequential(nn.Linear(d, p), nn.ReLU(), nn.Dropout(config.dropout))
        self.image_proj = nn.Sequential(nn.Linear(d, p), nn.ReLU(), nn.Dropout(config.dropout))
        self.combine_mlp = nn.Sequential(nn.Linear(2 * p, h), nn.ReLU(), nn.Dropout(config.dropout))
        self.output = nn.Linear(h, d)
        self.mix = nn.Sequential(
            nn.Linear(2 * p, h), nn.ReLU(), nn.Dropout(config.mix_dropout), nn.Linear(h, 1), nn.Sigmoid()
        )

    def mixing_scalar(self, image_feats: torch.Tensor, text_feats: torch.Tensor) -> torch.Tensor:
        """λ in (0, 1), the weight of the text feature in the residual mix: (B, D), (B, D) -> (B, 1)."""
        joint = torch.cat([self.text_proj(text_feats), self.image_proj(image_feats)], dim=-1)  # (B, 2P)
        return self.mix(joint)  # (B, 1)

    def combine(self, image_feats: torch.Tensor, text_feats: torch.Tensor) -> torch.Tensor:
        """Query features from reference-image and text features.

        Args:
            image_feats: (B, D) CLIP image embeddings of the reference images (normalised or not).
            text_feats: (B, D) CLIP text embeddings of the modification texts.

        Returns:
            (B, D) L2-normalised query features.
        """
        if image_feats.shape != text_feats.shape or image_feats.shape[-1] != self.config.feature_dim:
            raise ValueError(
                f"Combiner expects image and text features of shape (B, {self.config.feature_dim}), "
                f"got {tuple(image_feats.shape)} and {tuple(text_feats.shape)}"
            )
        joint = torch.cat([self.text_proj(text_feats), self.image_proj(image_feats)], dim=-1)  # (B, 2P)
        lam = self.mix(joint)  # (B, 1)
        residual = lam * text_feats + (1 - lam) * image_feats  # (B, D)
        return F.normalize(self.output(self.combine_mlp(joint)) + residual, dim=-1)  # (B, D)

    def forward(
        self, image_feats: torch.Tensor, text_feats: torch.Tensor, target_feats: torch.Tensor
    ) -> torch.Tensor:
        """Logits of every query against every target in the batch: (B, D) x3 -> (B, B)."""
        query = self.combine(image_feats, text_feats)  # (B, D)
        return self.config.logit_scale * query @ F.normalize(target_feats, dim=-1).T  # (B, B)


def sum_combine(image_feats: torch.Tensor, text_feats: torch.Tensor) -> torch.Tensor:
    """CLIP4Cir's stage-1 / zero-shot fusion: normalize(normalize(i) + normalize(t)); (B, D) -> (B, D)."""
    return F.normalize(F.normalize(image_feats, dim=-1) + F.normalize(text_feats, dim=-1), dim=-1)


def batch_classification_loss(
    query_feats: torch.Tensor, target_feats: torch.Tensor, logit_scale: float
) -> torch.Tensor:
    """Cross-entropy where query ``b``'s positive is target ``b`` and the other targets are negatives.

    Args:
        query_feats: (B, D) L2-normalised query features.
        target_feats: (B, D) target image features (normalised here).
        logit_scale: multiplier of the cosine similarities.

    Returns:
        Scalar mean loss.
    """
    logits = logit_scale * query_feats @ F.normalize(target_feats, dim=-1).T  # (B, B)
    labels = torch.arange(logits.shape[0], device=logits.device)  # (B,)
    return F.cross_entropy(logits, labels)
