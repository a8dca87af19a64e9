"""A BLIP-based composed image retrieval model: the modification text reads the reference image.

BLIP (Li et al., "BLIP: Bootstrapping Language-Image Pre-training", ICML 2022) has an
image-grounded text encoder: a BERT whose layers add cross-attention to the ViT's patch tokens.
Here that encoder composes the query, and the same ViT embeds the targets:

    q = normalize(W_q  TextEnc(text | ViT(ref))[:, 0])     (first token of the fused sequence)
    t = normalize(W_t  ViT(tgt)[:, 0])                     (target's [CLS] token)

Training is InfoNCE over the batch (van den Oord et al., "Representation Learning with
Contrastive Predictive Coding", 2018, eq. 4): logits = q t^T / tau with a learned log-tau, each
query's own target the positive and the other targets in the batch the negatives.

``cirsynth.cir.train_cir`` trains it with ``TrainConfig(model="blip")``. Its checkpoint folder
(``save_pretrained`` writes it, ``from_pretrained`` and ``cirsynth.cir.load_cir_model`` read it)::

    cir_model.json       kind "blip", the BlipConfig, the head config (BlipCIRConfig), padding, base model
    model.safetensors    every weight: ViT, text encoder, projections, log-temperature
    processor/           the BlipProcessor (tokenizer + image processor), when the model has one
"""

from __future__ import annotations

import copy
import dataclasses
import json
import math
import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn
from transformers import BlipConfig, BlipTextModel, BlipVisionModel

from cirsynth.cir.checkpoint import CHECKPOINT_FILE, weights_fingerprint
from cirsynth.cir.preprocess import PadMode, pad_image
from cirsynth.config import atomic_write_json

# Checkpoint classes whose text encoder we can take, and the attribute that holds it.
_TEXT_ENCODER_ATTR = {"BlipForImageTextRetrieval": "text_encoder", "BlipModel": "text_model"}
# from_pretrained keyword arguments that also apply to the processor.
_PROCESSOR_KWARGS = ("cache_dir", "revision", "local_files_only", "token")


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
        processor: a transformers ``BlipProcessor`` (tokenizer + image processor) for ``pixel_values``,
            ``tokens`` and the ``encode_*`` helpers; the tensor-level methods do not need it.
        pad_mode: padding before the image processor (``cirsynth.cir.preprocess.pad_image``).
        pad_ratio: target-pad aspect ratio.
        source: hub id or folder the backbone came from (recorded in checkpoints).
    """

    kind = "blip"  # checkpoint kind in cir_model.json; evaluation dispatches on it

    def __init__(self, blip_config: BlipConfig, cfg: BlipCIRConfig | None = None, *, processor=None,
                 pad_mode: PadMode = "targetpad", pad_ratio: float = 1.25, source: str = ""):
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
        self.processor = processor
        self.pad_mode = pad_mode
        self.pad_ratio = pad_ratio
        self.source = source
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
    def from_pretrained(cls, name_or_path: str | os.PathLike, cfg: BlipCIRConfig | None = None,
                        **hf_kwargs) -> "BlipCIR":
        """Load a ``BlipCIR`` checkpoint folder, or start from a transformers BLIP checkpoint.

        A folder written by ``save_pretrained`` (its ``cir_model.json`` has kind "blip") comes back whole:
        every weight, the head config (unless ``cfg`` replaces it), the processor and the padding.

        Otherwise ``name_or_path`` is a ``BlipForImageTextRetrieval`` or ``BlipModel`` checkpoint: its ViT and
        text encoder are taken, its ``BlipProcessor`` too when it has one; the projections and the
        temperature start fresh. A ``BlipModel`` checkpoint's text encoder was trained without its
        cross-attention, which then starts untrained (a warning says so).

        Args:
            name_or_path: a ``BlipCIR`` folder, a Hugging Face id (e.g. ``Salesforce/blip-itm-base-coco``)
                or a local transformers folder.
            cfg: head and loss settings.
            **hf_kwargs: passed to transformers' ``from_pretrained`` (``revision``, ``cache_dir``, ...).

        Returns:
            The model, in train mode, on the CPU.

        Raises:
            ValueError: the checkpoint is of another class (e.g. captioning, which has no text encoder),
                or weights of the vision model or text encoder are missing from it.
        """
        from transformers import BlipForImageTextRetrieval, BlipModel, BlipProcessor

        if (Path(name_or_path) / CHECKPOINT_FILE).exists():
            return cls._load_checkpoint(Path(name_or_path), cfg)

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
        try:
            model.processor = BlipProcessor.from_pretrained(
                name_or_path, **{k: v for k, v in hf_kwargs.items() if k in _PROCESSOR_KWARGS})
        except OSError:
            model.processor = None  # tensor-level use still works; pixel_values / tokens say what is missing
        model.source = str(Path(name_or_path).resolve()) if Path(name_or_path).is_dir() else str(name_or_path)
        return model

    @classmethod
    def _load_checkpoint(cls, folder: Path, cfg: BlipCIRConfig | None) -> "BlipCIR":
        """The model ``save_pretrained`` wrote to ``folder`` (strict: every weight must be there)."""
        from safetensors.torch import load_file
        from transformers import BlipProcessor

        meta = json.loads((folder / CHECKPOINT_FILE).read_text())
        if meta.get("kind") != cls.kind:
            raise ValueError(f"{folder / CHECKPOINT_FILE}: kind {meta.get('kind')!r} is not a BlipCIR checkpoint")
        processor = BlipProcessor.from_pretrained(folder / "processor") if (folder / "processor").is_dir() else None
        model = cls(BlipConfig.from_dict(meta["blip_config"]), cfg or BlipCIRConfig(**meta["head"]),
                    processor=processor, pad_mode=meta["pad_mode"], pad_ratio=meta["pad_ratio"], source=meta["base"])
        model.load_state_dict(load_file(str(folder / "model.safetensors")))
        return model

    def save_pretrained(self, folder: str | os.PathLike) -> Path:
        """Write the checkpoint folder (layout in the module docstring) that ``from_pretrained`` reads back.

        ``cir_model.json`` is written last, so a folder without it is incomplete.
        """
        from safetensors.torch import save_file

        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        state = {k: v.detach().cpu().contiguous() for k, v in self.state_dict().items()}
        save_file(state, str(folder / "model.safetensors"))
        if self.processor is not None:
            self.processor.save_pretrained(folder / "processor")
        atomic_write_json(folder / CHECKPOINT_FILE, {
            "kind": self.kind, "base": self.source, "pad_mode": self.pad_mode, "pad_ratio": self.pad_ratio,
            "head": dataclasses.asdict(self.config), "blip_config": self.blip_config.to_dict(),
        }, indent=2)
        return folder

    @property
    def device(self) -> torch.device:
        return self.log_temperature.device

    def fingerprint(self) -> str:
        """Hash of the configs, the padding and a sample of every weight; keys evaluation feature caches."""
        header = [self.blip_config.to_dict(), dataclasses.asdict(self.config), self.pad_mode, self.pad_ratio]
        return weights_fingerprint(header, self.state_dict())

    # -- inputs --
    def _need_processor(self):
        if self.processor is None:
            raise ValueError("BlipCIR has no processor: load it with from_pretrained from a folder or hub id that "
                             "has one, or set model.processor = BlipProcessor(...)")
        return self.processor

    def pixel_values(self, images: Sequence[Image.Image]) -> torch.Tensor:
        """Padded, resized, normalised pixels: list of PIL -> (B, 3, H, W) float32 on CPU."""
        padded = [pad_image(im, self.pad_mode, self.pad_ratio) for im in images]
        return self._need_processor().image_processor(images=padded, return_tensors="pt")["pixel_values"]

    def tokens(self, texts: Sequence[str]) -> dict[str, torch.Tensor]:
        """Token ids and attention mask, padded and truncated to the text encoder's positions: (B, L) each."""
        out = self._need_processor().tokenizer(
            list(texts), padding=True, truncation=True,
            max_length=self.blip_config.text_config.max_position_embeddings, return_tensors="pt",
        )
        return {"input_ids": out["input_ids"], "attention_mask": out["attention_mask"]}

    @torch.no_grad()
    def encode_images(self, images: Sequence[Image.Image]) -> torch.Tensor:
        """Target (gallery) features of PIL images: (B, embed_dim), L2-normalised, float32 on CPU."""
        pixels = self.pixel_values(images).to(self.device, self.log_temperature.dtype)  # (B, 3, H, W)
        return self.encode_target(pixels).float().cpu()

    @torch.no_grad()
    def encode_queries(self, images: Sequence[Image.Image], texts: Sequence[str]) -> torch.Tensor:
        """Query features of (reference PIL, modification text) pairs: (B, embed_dim), L2-normalised, on CPU."""
        if len(images) != len(texts):
            raise ValueError(f"encode_queries: {len(images)} images but {len(texts)} texts")
        pixels = self.pixel_values(images).to(self.device, self.log_temperature.dtype)  # (B, 3, H, W)
        tok = {k: v.to(self.device) for k, v in self.tokens(texts).items()}  # (B, L) each
        return self.compose(pixels, tok["input_ids"], tok["attention_mask"]).float().cpu()

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
