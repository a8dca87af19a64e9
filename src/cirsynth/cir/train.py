"""The one CIR trainer, for every dataset (CIRR, FashionIQ, the mini world, any TripletDataset).

Two stages, as in CLIP4Cir:
  * ``stage="clip"`` fine-tunes CLIP's encoders with the element-wise-sum fusion
    (query = normalize(i + t)), images through the encoders at every step;
  * ``stage="combiner"`` trains a ``Combiner`` on frozen CLIP features, which are extracted once
    and cached on disk (keyed on the CLIP's weights, the padding and the image list).
Both take the same input, a list of ``TrainingPart`` (see ``cirsynth.cir.data.build_training_set``),
and run under ``accelerate`` (device placement, mixed precision, multi-GPU data parallelism).
"""

from __future__ import annotations

import dataclasses
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Sequence

import torch
from torch.utils.data import DataLoader, Dataset

from cirsynth.cir.combiner import Combiner, CombinerConfig, batch_classification_loss, sum_combine
from cirsynth.cir.data import TrainingPart
from cirsynth.cir.model import CHECKPOINT_FILE, ClipCIR, extract_image_features, extract_text_features, load_cir_model
from cirsynth.config import atomic_write_json
from cirsynth.models.clip import image_features, text_features


@dataclass
class TrainConfig:
    """How to train; the data comes separately as ``TrainingPart`` s."""

    clip: str  # CLIP hub id or folder, or a stage-1 checkpoint folder (its fine-tuned CLIP is used)
    out_dir: str  # run folder: model/, checkpoints/, train_log.json
    stage: Literal["combiner", "clip"] = "combiner"  # CLIP4Cir stage 2 (Combiner) or stage 1 (CLIP fine-tune)
    epochs: int = 10  # passes over the training queries
    batch_size: int = 128  # queries per step; the other targets in the batch are the negatives
    lr: float = 2e-5  # AdamW learning rate (CLIP4Cir: 2e-5 Combiner, 2e-6 CLIP)
    weight_decay: float = 0.0  # AdamW weight decay
    seed: int = 0  # seeds shuffling, text-variant choice, dropout and the Combiner's init
    projection_dim: int | None = None  # Combiner projection width; None = 4x CLIP's feature size (CLIP4Cir)
    hidden_dim: int | None = None  # Combiner hidden width; None = 8x CLIP's feature size (CLIP4Cir)
    dropout: float = 0.5  # Combiner dropout
    logit_scale: float = 100.0  # temperature of the batch classification loss
    finetune: Literal["both", "image", "text"] = "both"  # stage "clip": which encoders learn
    pad_mode: Literal["targetpad", "squarepad", "none"] = "targetpad"  # image padding before CLIP's processor
    pad_ratio: float = 1.25  # target-pad aspect ratio (CLIP4Cir: 1.25)
    mixed_precision: Literal["no", "fp16", "bf16"] = "no"  # accelerate's autocast mode
    cpu: bool = False  # force CPU even when a GPU is present
    feature_batch_size: int = 64  # images per CLIP call when extracting features
    cache_dir: str | None = None  # frozen-feature cache; None = <out_dir>/feature_cache
    save_every: int = 0  # also write checkpoints/epoch-N every N epochs; 0 = only the final model
    num_workers: int = 0  # data-loader workers for stage "clip" image loading


@dataclass
class TrainResult:
    """What a run produced."""

    model_dir: Path  # final checkpoint folder (load with ``load_cir_model``)
    epoch_losses: list[float]  # mean training loss per epoch
    n_real: int  # real training queries used
    n_synthetic: int  # synthetic training queries used
    seconds: float  # wall time of the training loop


def _load_base(config: TrainConfig, device: torch.device) -> tuple[ClipCIR, bool]:
    """The CLIP to train on and whether it came from a cirsynth checkpoint (then it is copied on save)."""
    is_ckpt = (Path(config.clip) / CHECKPOINT_FILE).exists()
    model = load_cir_model(config.clip, device=device)
    if is_ckpt and model.combiner is not None and config.stage == "clip":
        raise ValueError(f"{config.clip}: stage 'clip' starts from a CLIP, not from a Combiner checkpoint")
    model.combiner = None
    model.pad_mode, model.pad_ratio = config.pad_mode, config.pad_ratio
    if not is_ckpt and Path(config.clip).is_dir():
        model.clip_source = str(Path(config.clip).resolve())
    return model, is_ckpt


def _counts(parts: Sequence[TrainingPart]) -> tuple[int, int]:
    return (sum(len(p.queries) for p in parts if not p.synthetic), sum(len(p.queries) for p in parts if p.synthetic))


def train_cir(parts: Sequence[TrainingPart], config: TrainConfig) -> TrainResult:
    """Train a CIR model on ``parts``; writes ``<out_dir>/model`` and ``<out_dir>/train_log.json``.

    Args:
        parts: training queries per source split (real and synthetic), e.g. from ``build_training_set``.
        config: the run's settings.

    Returns:
        ``TrainResult`` with the model folder and per-epoch losses.
    """
    from accelerate import Accelerator
    from accelerate.utils import set_seed

    if not parts or not any(p.queries for p in parts):
        raise ValueError("train_cir: no training queries")
    if config.epochs < 1 or config.batch_size < 2:
        raise ValueError("train_cir: epochs must be >= 1 and batch_size >= 2 (the loss needs in-batch negatives)")
    out = Path(config.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    accelerator = Accelerator(mixed_precision=config.mixed_precision, cpu=config.cpu)
    set_seed(config.seed)
    base, from_ckpt = _load_base(config, accelerator.device)
    start = time.perf_counter()
    if config.stage == "combiner":
        model, losses = _train_combiner(parts, base, config, accelerator)
        save_clip = from_ckpt
    elif config.stage == "clip":
        model, losses = _train_clip(parts, base, config, accelerator)
        save_clip = True
    else:
        raise ValueError(f"train_cir: unknown stage {config.stage!r}; use 'combiner' or 'clip'")
    seconds = time.perf_counter() - start
    n_real, n_syn = _counts(parts)
    model_dir = out / "model"
    if accelerator.is_main_process:
        model.save(model_dir, save_clip=save_clip)
        atomic_write_json(out / "train_log.json", {
            "config": dataclasses.asdict(config), "epoch_losses": losses, "n_real": n_real, "n_synthetic": n_syn,
            "parts": [{"split": p.split.name, "synthetic": p.synthetic, "queries": len(p.queries)} for p in parts],
            "seconds": seconds,
        }, indent=2)
    accelerator.wait_for_everyone()
    return TrainResult(model_dir, losses, n_real, n_syn, seconds)


# --- stage 2: Combiner on cached features ---------------------------------------------------------


@dataclass
class _FeatureTable:
    """Frozen features of every training query, gathered across parts."""

    reference: torch.Tensor  # (N, D) reference image features
    target: torch.Tensor  # (N, D) target image features
    texts: torch.Tensor  # (T, D) features of every text variant of every query
    text_start: torch.Tensor  # (N,) index of the query's first variant in ``texts``
    text_count: torch.Tensor  # (N,) number of variants of the query


def _gather_features(parts: Sequence[TrainingPart], model: ClipCIR, config: TrainConfig) -> _FeatureTable:
    cache = config.cache_dir or str(Path(config.out_dir) / "feature_cache")
    refs, tgts, texts, starts, counts = [], [], [], [], []
    n_texts = 0
    for part in parts:
        split = part.split
        keys = sorted({k for q in part.queries for k in (q.reference, q.target)})
        if any(q.target is None for q in part.queries):
            raise ValueError(f"{split.name}: training queries need target images")
        feats = extract_image_features(model, keys, split.open_image, source=split.source,
                                       batch_size=config.feature_batch_size, cache_dir=cache)  # (K, D)
        row = {k: i for i, k in enumerate(keys)}
        refs.append(feats[[row[q.reference] for q in part.queries]])
        tgts.append(feats[[row[q.target] for q in part.queries]])
        variants = [t for q in part.queries for t in q.texts]
        texts.append(extract_text_features(model, variants, cache_dir=cache))  # (V, D)
        for q in part.queries:
            starts.append(n_texts)
            counts.append(len(q.texts))
            n_texts += len(q.texts)
    return _FeatureTable(torch.cat(refs), torch.cat(tgts), torch.cat(texts), torch.tensor(starts), torch.tensor(counts))


def _train_combiner(parts, base: ClipCIR, config: TrainConfig, accelerator) -> tuple[ClipCIR, list[float]]:
    table = _gather_features(parts, base, config)
    dev = accelerator.device
    ref, tgt, txt = table.reference.to(dev), table.target.to(dev), table.texts.to(dev)
    start, count = table.text_start.to(dev), table.text_count.to(dev)
    d = base.feature_dim
    combiner = Combiner(CombinerConfig(
        feature_dim=d, projection_dim=config.projection_dim or 4 * d, hidden_dim=config.hidden_dim or 8 * d,
        dropout=config.dropout, logit_scale=config.logit_scale,
    ))
    optimizer = torch.optim.AdamW(combiner.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    n = ref.shape[0]
    loader = DataLoader(torch.arange(n), batch_size=config.batch_size, shuffle=True,
                        drop_last=n > config.batch_size, generator=torch.Generator().manual_seed(config.seed))
    combiner, optimizer, loader = accelerator.prepare(combiner, optimizer, loader)
    gen = torch.Generator(device="cpu").manual_seed(config.seed + 1)
    losses: list[float] = []
    for epoch in range(config.epochs):
        combiner.train()
        total, steps = 0.0, 0
        for idx in loader:
            idx = idx.to(dev)  # (B,)
            pick = (torch.rand(idx.shape[0], generator=gen).to(dev) * count[idx]).long()  # (B,) variant per query
            text_feats = txt[start[idx] + pick]  # (B, D)
            with accelerator.autocast():
                logits = combiner(ref[idx], text_feats, tgt[idx])  # (B, B)
                loss = torch.nn.functional.cross_entropy(logits.float(), torch.arange(idx.shape[0], device=dev))
            optimizer.zero_grad(set_to_none=True)
            accelerator.backward(loss)
            optimizer.step()
            total, steps = total + float(loss.detach()), steps + 1
        losses.append(float(accelerator.reduce(torch.tensor(total / max(steps, 1), device=dev), "mean")))
        if config.save_every and (epoch + 1) % config.save_every == 0 and accelerator.is_main_process:
            base.combiner = accelerator.unwrap_model(combiner)
            base.save(Path(config.out_dir) / "checkpoints" / f"epoch-{epoch + 1}", save_clip=False)
    base.combiner = accelerator.unwrap_model(combiner).eval()
    return base, losses


# --- stage 1: CLIP fine-tuning with the element-wise sum ----------------------------------------


class _TripletImages(Dataset):
    """(reference PIL, text variants, target PIL) for every training query."""

    def __init__(self, parts: Sequence[TrainingPart]):
        self.items = [(p.split, q) for p in parts for q in p.queries]

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int):
        split, q = self.items[i]
        if q.target is None:
            raise ValueError(f"{split.name}: query {q.id} has no target image")
        return split.open_image(q.reference), q.texts, split.open_image(q.target)


class _SumFusionLoss(torch.nn.Module):
    """Stage-1 objective as one module, so ``accelerate``/DDP sees (and synchronises) a single forward."""

    def __init__(self, clip, logit_scale: float):
        super().__init__()
        self.clip = clip
        self.logit_scale = logit_scale

    def forward(self, ref_px: torch.Tensor, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                tgt_px: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W), (B, L), (B, L), (B, 3, H, W) -> scalar loss."""
        query = sum_combine(image_features(self.clip, ref_px), text_features(self.clip, input_ids, attention_mask))
        return batch_classification_loss(query.float(), image_features(self.clip, tgt_px).float(), self.logit_scale)


def _train_clip(parts, base: ClipCIR, config: TrainConfig, accelerator) -> tuple[ClipCIR, list[float]]:
    clip = base.clip
    train_parts = {"image": ("vision_model", "visual_projection"), "text": ("text_model", "text_projection"),
                   "both": ("vision_model", "visual_projection", "text_model", "text_projection")}[config.finetune]
    for name, p in clip.named_parameters():
        p.requires_grad_(name.split(".")[0] in train_parts)
    gen = torch.Generator().manual_seed(config.seed + 1)

    def collate(batch):
        refs, variants, tgts = zip(*batch)
        texts = [v[int(torch.randint(len(v), (1,), generator=gen))] for v in variants]
        tokens = base.tokens(texts)
        return base.pixel_values(refs), tokens["input_ids"], tokens["attention_mask"], base.pixel_values(tgts)

    data = _TripletImages(parts)
    loader = DataLoader(data, batch_size=config.batch_size, shuffle=True, collate_fn=collate,
                        num_workers=config.num_workers, drop_last=len(data) > config.batch_size,
                        generator=torch.Generator().manual_seed(config.seed))
    objective = _SumFusionLoss(clip, config.logit_scale)
    optimizer = torch.optim.AdamW([p for p in clip.parameters() if p.requires_grad], lr=config.lr,
                                  weight_decay=config.weight_decay)
    objective, optimizer, loader = accelerator.prepare(objective, optimizer, loader)
    losses: list[float] = []
    for epoch in range(config.epochs):
        objective.train()
        total, steps = 0.0, 0
        for ref_px, ids, mask, tgt_px in loader:
            with accelerator.autocast():
                loss = objective(ref_px, ids, mask, tgt_px)
            optimizer.zero_grad(set_to_none=True)
            accelerator.backward(loss)
            optimizer.step()
            total, steps = total + float(loss.detach()), steps + 1
        losses.append(float(accelerator.reduce(torch.tensor(total / max(steps, 1), device=accelerator.device), "mean")))
        if config.save_every and (epoch + 1) % config.save_every == 0 and accelerator.is_main_process:
            base.save(Path(config.out_dir) / "checkpoints" / f"epoch-{epoch + 1}", save_clip=True)
    base.clip = accelerator.unwrap_model(objective).clip.eval()
    for p in base.clip.parameters():
        p.requires_grad_(True)
    return base, losses
