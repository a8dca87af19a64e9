"""Captions for images: from any HF image-to-text model (batched, device-aware), or from a file.

``Captioner.from_pretrained("Salesforce/blip2-opt-2.7b", prompt="a photo of")`` is the paper's setting;
BLIP, GIT, VisionEncoderDecoder and the tiny test captioner load the same way. Users who already have
captions pass a CSV / JSONL / Parquet file of ``image, caption`` rows to ``read_caption_file``.
"""

from __future__ import annotations

import csv
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable

from cirsynth.data.io_utils import read_jsonl

if TYPE_CHECKING:
    from PIL import Image

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp", ".bmp")
DEFAULT_MAX_NEW_TOKENS = 30  # BLIP-2-style captions are one short sentence


@dataclass
class CaptionerConfig:
    """Generation settings of a captioner."""

    prompt: str | None = None  # text prefix the caption continues ("a photo of"); kept in the returned caption
    batch_size: int = 8  # images per generate() call
    # caption length cap in tokens; None: the model's own cap (``generation_config.max_new_tokens``, which the world
    # captioner sets to its training length), else DEFAULT_MAX_NEW_TOKENS. A caption that reaches the cap without its
    # end token is reported as cut off (``caption(..., return_cut=True)``), never passed on silently.
    max_new_tokens: int | None = None
    num_beams: int = 1  # beam search width (1: greedy)


class Captioner:
    """Batched image captioning with a transformers image-to-text model."""

    def __init__(self, model: Any, processor: Any, config: CaptionerConfig | None = None):
        self.model, self.processor = model, processor
        self.config = config or CaptionerConfig()

    @classmethod
    def from_pretrained(cls, name_or_path: str | os.PathLike, config: CaptionerConfig | None = None,
                        device: str | None = None, dtype: str | None = None) -> "Captioner":
        """Load model + processor by hub id or folder (``cirsynth.models.text.load_image_to_text``)."""
        from cirsynth.models.text import load_image_to_text

        return cls(*load_image_to_text(name_or_path, device=device, dtype=dtype), config=config)

    @property
    def max_new_tokens(self) -> int:
        """The length cap in effect (see ``CaptionerConfig.max_new_tokens``)."""
        if self.config.max_new_tokens is not None:
            return self.config.max_new_tokens
        own = getattr(getattr(self.model, "generation_config", None), "max_new_tokens", None)
        return int(own) if own else DEFAULT_MAX_NEW_TOKENS

    def caption(self, images: "list[Image.Image]", return_cut: bool = False) -> list[str] | tuple[list[str], list[bool]]:
        """One caption per image, in order.

        Args:
            images: PIL images (any size and mode; converted to RGB).
            return_cut: also return, per caption, whether generation stopped at the length cap before its end token
                (the caption is probably cut off).

        Returns:
            Captions, whitespace-normalised; with a prompt, the caption starts with it. With ``return_cut``:
            ``(captions, cut)``.
        """
        import torch

        cfg = self.config
        device = next(self.model.parameters()).device
        dtype = next(self.model.parameters()).dtype
        cap = self.max_new_tokens
        eos = getattr(getattr(self.model, "generation_config", None), "eos_token_id", None)
        eos = set(eos if isinstance(eos, (list, tuple)) else [] if eos is None else [eos])
        out: list[str] = []
        cut: list[bool] = []
        for b in range(0, len(images), cfg.batch_size):
            batch = [im.convert("RGB") for im in images[b:b + cfg.batch_size]]
            kw: dict[str, Any] = {"images": batch, "return_tensors": "pt"}
            if cfg.prompt:
                kw["text"] = [cfg.prompt] * len(batch)
            enc = self.processor(**kw).to(device)
            if "pixel_values" in enc:
                enc["pixel_values"] = enc["pixel_values"].to(dtype)
            with torch.inference_mode():
                gen = self.model.generate(**enc, max_new_tokens=cap, num_beams=cfg.num_beams)
            # decoder-only models return the prompt too: count only the new tokens
            start = enc["input_ids"].shape[1] if "input_ids" in enc and self._returns_prompt(gen, enc) else 0
            for row in gen[:, start:].tolist():
                ends = [j for j, tok in enumerate(row) if tok in eos]
                cut.append(not ends and len(row) >= cap)
            texts = self.processor.batch_decode(gen, skip_special_tokens=True)
            for t in texts:
                t = " ".join(t.split())
                if cfg.prompt and not t.lower().startswith(cfg.prompt.lower()):
                    t = f"{cfg.prompt} {t}"  # decoder-only captioners return only the continuation
                out.append(t)
        return (out, cut) if return_cut else out

    def log_likelihood(self, images: "list[Image.Image]", captions: "list[list[str]]") -> "list[list[float]]":
        """How likely the model finds each of an image's captions: the summed log-probability of every caption token
        (its end token included) given the image, the way it was trained to caption.

        Used as a reader rather than a writer: a captioner that cannot write a perfect caption can still tell which
        of two captions that differ in one word fits the image better (the filter's ``likelihood_edit`` and
        ``likelihood_kept``).

        Args:
            images: N images.
            captions: per image, the captions to score (any number, may differ per image).

        Returns:
            Per image, one log-likelihood (nats, <= 0) per caption, in order.
        """
        if len(images) != len(captions):
            raise ValueError(f"log_likelihood: {len(images)} images but {len(captions)} caption lists")
        if getattr(self.model.config, "model_type", None) == "blip":
            return self._blip_log_likelihood(images, captions)
        return [[self._generic_log_likelihood(im, c) for c in caps] for im, caps in zip(images, captions)]

    def _blip_log_likelihood(self, images: "list[Image.Image]", captions: "list[list[str]]") -> "list[list[float]]":
        """BLIP: the vision encoder runs once per image, the text decoder once per (image, caption) pair."""
        import torch

        device = next(self.model.parameters()).device
        dtype = next(self.model.parameters()).dtype
        tok = self.processor.tokenizer
        bos = getattr(self.model.config.text_config, "bos_token_id", None)
        out: list[list[float]] = []
        for b in range(0, len(images), self.config.batch_size):
            batch = [im.convert("RGB") for im in images[b:b + self.config.batch_size]]
            caps = captions[b:b + self.config.batch_size]
            pairs = [(i, c) for i, cs in enumerate(caps) for c in cs]
            if not pairs:
                out.extend([] for _ in caps)
                continue
            px = self.processor(images=batch, return_tensors="pt")["pixel_values"].to(device, dtype)
            enc = tok([c for _, c in pairs], padding=True, return_tensors="pt").to(device)
            ids = enc["input_ids"].clone()
            if bos is not None:
                ids[:, 0] = bos  # BLIP's decoder starts from its [DEC] token, as generate() and training do
            with torch.inference_mode():
                embeds = self.model.vision_model(pixel_values=px).last_hidden_state
                owner = torch.tensor([i for i, _ in pairs], device=device)
                logits = self.model.text_decoder(input_ids=ids, attention_mask=enc["attention_mask"],
                                                 encoder_hidden_states=embeds[owner]).logits
            logp = torch.log_softmax(logits[:, :-1].float(), dim=-1).gather(-1, ids[:, 1:, None])[..., 0]
            total = (logp * enc["attention_mask"][:, 1:]).sum(1).tolist()
            j = 0
            for cs in caps:
                out.append(total[j:j + len(cs)])
                j += len(cs)
        return out

    def _generic_log_likelihood(self, image: "Image.Image", caption: str) -> float:
        """Any model that takes ``labels``: minus its mean token loss times the number of scored tokens (one pair
        per forward; slower than the BLIP path)."""
        import torch

        device = next(self.model.parameters()).device
        dtype = next(self.model.parameters()).dtype
        enc = self.processor(images=[image.convert("RGB")], text=[caption], return_tensors="pt").to(device)
        if "pixel_values" in enc:
            enc["pixel_values"] = enc["pixel_values"].to(dtype)
        labels = enc["input_ids"].masked_fill(enc.get("attention_mask", torch.ones_like(enc["input_ids"])) == 0, -100)
        with torch.inference_mode():
            loss = self.model(**enc, labels=labels).loss
        return -float(loss) * max(int((labels[:, 1:] != -100).sum()), 1)

    @staticmethod
    def _returns_prompt(gen: Any, enc: Any) -> bool:
        """Whether ``generate`` output starts with the prompt tokens (decoder-only models)."""
        ids = enc["input_ids"]
        return gen.shape[1] >= ids.shape[1] and bool((gen[:, : ids.shape[1]] == ids.to(gen.device)).all())


def list_images(folder: str | os.PathLike) -> list[Path]:
    """Image files under ``folder`` (recursive, sorted)."""
    files = sorted(p for p in Path(folder).rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise ValueError(f"no images ({', '.join(IMAGE_SUFFIXES)}) under {folder}")
    return files


def read_caption_file(path: str | os.PathLike, image_column: str = "image",
                      caption_column: str = "caption") -> list[dict[str, Any]]:
    """Rows ``{"image": ..., "caption": ...}`` from a CSV, JSONL or Parquet file, in file order.

    Raises:
        ValueError: naming the file (and line) for an unknown format, a missing column or a bad line.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix == ".parquet":
        import pyarrow.parquet as pq

        rows = pq.read_table(path).to_pylist()
    elif suffix == ".csv":
        with open(path, newline="", encoding="utf-8") as f:
            rows = list(csv.DictReader(f))
    elif suffix in (".jsonl", ".json"):
        rows = read_jsonl(path)
    else:
        raise ValueError(f"{path}: caption files must be .csv, .jsonl or .parquet")
    for k, row in enumerate(rows):
        missing = [c for c in (image_column, caption_column) if not isinstance(row, dict) or c not in row]
        if missing:
            raise ValueError(f"{path} [row {k}]: missing column(s) {missing}")
    return [{"image": r[image_column], "caption": r[caption_column]} for r in rows]


def read_captions(path: str | os.PathLike, caption_column: str = "caption") -> list[dict[str, Any]]:
    """Captions to perturb, as rows with ``caption`` and (when the file has one) ``image``.

    ``.txt``: one caption per line (blank lines are kept: they become rejections, not silent gaps);
    ``.jsonl``: JSON strings or objects with ``caption_column``; ``.csv`` / ``.parquet``: a ``caption_column``.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix == ".txt":
        return [{"caption": line} for line in path.read_text("utf-8").splitlines()]
    rows: Iterable[Any]
    if suffix in (".jsonl", ".json"):
        rows = read_jsonl(path)
    elif suffix == ".parquet":
        import pyarrow.parquet as pq

        rows = pq.read_table(path).to_pylist()
    elif suffix == ".csv":
        with open(path, newline="", encoding="utf-8") as f:
            rows = list(csv.DictReader(f))
    else:
        raise ValueError(f"{path}: caption inputs must be .txt, .jsonl, .csv or .parquet")
    out = []
    for k, r in enumerate(rows):
        if isinstance(r, str):
            out.append({"caption": r})
        elif isinstance(r, dict) and caption_column in r:
            out.append({"caption": r[caption_column], **({"image": r["image"]} if "image" in r else {})})
        else:
            raise ValueError(f"{path} [row {k}]: expected a string or an object with {caption_column!r}")
    return out
