"""A BLIP-based composed image retrieval model: the modification text reads the reference image.

BLIP (Li et al., "BLIP: Bootstrapping Language-Image Pre-training", ICML 2022) has an
image-grounded text encoder: a BERT whose layers add cross-attention to the ViT's patch tokens.
Here that encoder composes the query, and the same ViT embeds the targets:

    q = normalize(W_q  TextEnc(text | ViT(ref))[:, 0])     (first token of the fused sequence)
    t = normalize(W_t  ViT(tgt)[:, 0])                     (target's [CLS] token)

Training is InfoNCE over the batch (van den Oord et al., "Representation Learning with
Contrastive Predictive Coding", 2018, eq. 4): logits = q t^T / tau with a learned log-tau, each
query's own target the positive and the other targets in the batch the negatives.
"""

from __future__ import annotations

import copy
import math
import warnings
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from transformers import BlipConfig, BlipTextModel, BlipVisionModel

# Checkpoint classes whose text encoder we can take, and the attribute that holds it.
_TEXT_ENCODER_ATTR = {"BlipForImageTextRetrieval": "text_encoder", "BlipModel": "text_model"}


@dataclass
class BlipCIRConfig:
    """Head and loss settings of ``BlipCIR``; the backbone sizes come from the ``BlipConfig``."""

    embed_dim: int = 256  # joint retrieval space (BLIP's image_text_hidden_size is 256)
    temperature: float = 0.07  # initial InfoNCE temperature tau (CLIP / BLIP ITC start at 0.07)
    learn_temperature: bool = True  # learn log-tau with the rest; False keeps it fixed at `temperature`
    min_temperature: float = 0.001  # lower clamp on tau so logits cannot blow up (BLIP clamps to [0.001, 0.5])
    max_temperature: float = 0.5  # upper clamp on tau


class BlipCIR(nn.Module):
    """Compose (reference image, modification text) with BLIP's image-grounded text encoder.

    Args:
        blip_config: a transformers ``BlipConfig``; its text config must build cross-attention layers
            (``is_decoder=True`` in transformers' BLIP, which only decides whether the layers exist; the
            encoder is run bidirectionally here).
        cfg: head and loss settings.
    """

    def __init__(self, blip_config: BlipConfig, cfg: BlipCIRConfig | None = None):
        super().__init__()
        cfg = cfg or BlipCIRConfig()
        if not 0 < cfg.min_temperature <= cfg.temperature <= cfg.max_temperature:
            raise ValueError(f"need 0 < min_temperature <= temperature <= max_temperature, got {cfg}")
        text_config = blip_config.text_config
        if text_config.encoder_hidden_size != blip_config.vision_config.hidden_size:
            raise ValueError(
                f"text encoder_hidden_size ({text_config.encoder_hidden_size}) must equal the vision hidden_size "
                f"({blip_config.vision_config.hidden_size}) for cross-attention to the patch tokens"
            )
        if not text_config.is_decoder:
            # transformers' BlipTextLayer creates its cross-attention only when is_decoder is set;
            # we never run it causally (forward passes is_decoder=False).
            text_config = copy.deepcopy(text_config)
            text_config.is_decoder = True
        self.config = cfg
        self.blip_config = blip_config
        self.vision_model = BlipVisionModel(blip_config.vision_config)
        self.text_encoder = BlipTextModel(text_config, add_pooling_layer=False)
        self.query_proj = nn.Linear(text_config.hidden_size, cfg.embed_dim)
        self.target_proj = nn.Linear(blip_config.vision_config.hidden_size, cfg.embed_dim)
        self.log_temperature = nn.Parameter(
            torch.tensor(math.log(cfg.temperature)), requires_grad=cfg.learn_temperature
        )

    @classmethod
    def from_blip_config(cls, blip_config: BlipConfig, cfg: BlipCIRConfig | None = None) -> "BlipCIR":
        """A randomly initialised model of the sizes in ``blip_config``.

        Note that ``BlipVisionConfig.initializer_range`` defaults to 1e-10 (BLIP is meant to be loaded, not
        trained from scratch): such a ViT maps every image to almost the same tokens. Set it (e.g. 0.02) to
        train from a random start.
        """
        return cls(blip_config, cfg)

    @classmethod
    def from_pretrained(cls, name_or_path: str, cfg: BlipCIRConfig | None = None, **hf_kwargs) -> "BlipCIR":
        """Take the ViT and the text encoder of a ``BlipForImageTextRetrieval`` or ``BlipModel`` checkpoint.

        The projections and the temperature start fresh. A ``BlipModel`` checkpoint's text encoder was
        trained without its cross-attention, which then starts untrained (a warning says so).

        Args:
            name_or_path: Hugging Face id (e.g. ``Salesforce/blip-itm-base-coco``) or local folder.
            cfg: head and loss settings.
            **hf_kwargs: passed to transformers' ``from_pretrained`` (``revision``, ``cache_dir``, ...).

        Returns:
            The model, in train mode.

        Raises:
            ValueError: the checkpoint is of another class (e.g. captioning, which has no text encoder),
                or weights of the vision model or text encoder are missing from it.
        """
        from transformers import BlipForImageTextRetrieval, BlipModel

        blip_config = BlipConfig.from_pretrained(name_or_path, **hf_kwargs)
        arch = next((a for a in (blip_config.architectures or []) if a in _TEXT_ENCODER_ATTR), None)
        if arch is None:
            raise ValueError(
                f"{name_or_path}: architectures {blip_config.architectures} hold no BLIP text encoder; "
                f"use one of {sorted(_TEXT_ENCODER_ATTR)}"
            )
        hf_cls = BlipForImageTextRetrieval if arch == "BlipForImageTextRetrieval" else BlipModel
        hf_model = hf_cls.from_pretrained(name_or_path, config=blip_config, **hf_kwargs)
        model = cls(blip_config, cfg)
        model.vision_model.load_state_dict(hf_model.vision_model.state_dict())  # strict: every ViT weight
        source = getattr(hf_model, _TEXT_ENCODER_ATTR[arch]).state_dict()
        source = {k: v for k, v in source.items() if not k.startswith("pooler.")}  # we keep no pooler
        missing, unexpected = model.text_encoder.load_state_dict(source, strict=False)
        not_cross = [k for k in missing if ".crossattention." not in k]
        if not_cross or unexpected:
            raise ValueError(f"{name_or_path}: text encoder weights missing {not_cross}, unexpected {unexpected}")
        if missing or arch == "BlipModel":
            warnings.warn(
                f"{name_or_path} ({arch}): the text encoder's cross-attention was not trained for image "
                "grounding; it needs fine-tuning",
                stacklevel=2,
            )
        return model

    @property
    def temperature(self) -> torch.Tensor:
        """tau = exp(log_temperature), clamped to [min_temperature, max_temperature]: a 0-d tensor."""
        return self.log_temperature.exp().clamp(self.config.min_temperature, self.config.max_temperature)

    def compose(self, ref_pixels: torch.Tensor, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """Query features: the text encoded with cross-attention to the reference image's ViT tokens.

        Args:
            ref_pixels: (B, 3, H, W) normalised reference images.
            input_ids: (B, L) token ids of the modification texts (BLIP puts [CLS]/[ENC] first).
            attention_mask: (B, L) 1 for real tokens, 0 for padding.

        Returns:
            (B, embed_dim) L2-normalised query features.
        """
        image_tokens = self.vision_model(pixel_values=ref_pixels).last_hidden_state  # (B, 1 + N, Dv)
        image_mask = torch.ones(image_tokens.shape[:2], dtype=torch.long, device=image_tokens.device)  # (B, 1 + N)
        fused = self.text_encoder(
            input_ids=input_ids,
            attention_mask=attention_mask,
            encoder_hidden_states=image_tokens,
            encoder_attention_mask=image_mask,
            is_decoder=False,  # bidirectional self-attention, as BLIP's image-grounded encoder
        ).last_hidden_state  # (B, L, Dt)
        return F.normalize(self.query_proj(fused[:, 0]), dim=-1)  # (B, D)

    def encode_target(self, pixels: torch.Tensor) -> torch.Tensor:
        """Target features: the ViT [CLS] token, projected.

        Args:
            pixels: (B, 3, H, W) normalised target (gallery) images.

        Returns:
            (B, embed_dim) L2-normalised target features.
        """
        cls_token = self.vision_model(pixel_values=pixels).last_hidden_state[:, 0]  # (B, Dv)
        return F.normalize(self.target_proj(cls_token), dim=-1)  # (B, D)

    def logits(self, queries: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """Scaled similarities ``queries @ targets.T / tau``: (B, D), (G, D) -> (B, G)."""
        return queries @ targets.T / self.temperature  # (B, G)

    def forward(
        self,
        ref_pixels: torch.Tensor,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        tgt_pixels: torch.Tensor,
    ) -> torch.Tensor:
        """InfoNCE loss over the batch, query i's positive being target i (query-to-target direction only).

        Args:
            ref_pixels: (B, 3, H, W) reference images.
            input_ids: (B, L) modification-text token ids.
            attention_mask: (B, L) text padding mask.
            tgt_pixels: (B, 3, H, W) target images, row-aligned with the queries.

        Returns:
            0-d mean cross-entropy loss.
        """
        q = self.compose(ref_pixels, input_ids, attention_mask)  # (B, D)
        t = self.encode_target(tgt_pixels)  # (B, D)
        logits = self.logits(q, t)  # (B, B)
        labels = torch.arange(logits.shape[0], device=logits.device)  # (B,)
        return F.cross_entropy(logits, labels)
