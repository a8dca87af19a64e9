"""The one CIR trainer, for every dataset (CIRR, FashionIQ, the mini world, any TripletDataset) and both
model families.

What learns is set by ``TrainConfig.model`` and ``TrainConfig.stage``:
  * ``model="combiner"``, ``stage="combiner"`` (CLIP4Cir stage 2) trains a ``Combiner`` on frozen CLIP features,
    which are extracted once and cached on disk (keyed on the CLIP's weights, the padding and the image list);
  * ``model="combiner"``, ``stage="clip"`` (CLIP4Cir stage 1) fine-tunes CLIP's encoders with the element-wise-sum
    fusion (query = normalize(i + t)), images through the encoders at every step;
  * ``model="blip"`` fine-tunes a ``BlipCIR`` (``cirsynth.cir.blip``; ``TrainConfig.clip`` then names a BLIP),
    images through the encoders at every step.
All take the same input, a list of ``TrainingPart`` (see ``cirsynth.cir.data.build_training_set``), share one
epoch loop, and run under ``accelerate`` (device placement, mixed precision, multi-GPU data parallelism).

Checkpoints and resume: every ``save_every`` epochs ``<out_dir>/checkpoints/epoch-N`` gets a model folder that
``load_cir_model`` reads, plus ``train_state.json`` (epoch, losses, config, data key) and ``accelerate/``
(``Accelerator.save_state``: weights, optimiser, LR scheduler, gradient scaler, the global RNG states) and
``loop_state.safetensors`` (the loop's own generators). It is written as ``checkpoints/.epoch-N.tmp`` and renamed
once whole, so a crash never leaves a half-written checkpoint. With ``resume=True`` a run restarts after the newest
one and ends with the weights an uninterrupted run with the same config and data would have.

Resuming runs no pickled code: the loop state is safetensors + JSON (not an accelerate custom state, which
accelerate unpickles with ``weights_only=False``), accelerate loads its own files with ``weights_only=True``, and a
checkpoint folder holding any other pickle-format file is refused.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import shutil
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Literal, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset

from cirsynth.cir.combiner import Combiner, CombinerConfig, batch_classification_loss, sum_combine
from cirsynth.cir.data import TrainingPart
from cirsynth.cir.model import CHECKPOINT_FILE, ClipCIR, extract_image_features, extract_text_features, load_cir_model
from cirsynth.config import atomic_write_json, changed_settings
from cirsynth.data.records import config_hash
from cirsynth.models.clip import image_features, text_features

TRAIN_STATE_FILE = "train_state.json"
LOOP_STATE_FILE = "loop_state.safetensors"  # the loop's RNG states: tensors only, no pickle
# Files accelerate's save_state writes and load_state reads with ``torch.load(weights_only=True)``.
_ACCELERATE_FILES = re.compile(r"(model(_\d+)?\.safetensors|(optimizer|scheduler|sampler|dl_state_dict)(_\d+)?\.bin"
                               r"|random_states_\d+\.pkl|scaler\.pt)")
_PICKLE_SUFFIXES = (".pkl", ".pickle", ".bin", ".pt", ".pth", ".ckpt", ".npy", ".joblib")
# Config fields a resumed run may change: none of them alters the weights. ``epochs`` may change too when
# the LR schedule does not depend on it (``lr_schedule="constant"``).
_RESUME_FREE = ("out_dir", "resume", "save_every", "num_workers", "feature_batch_size", "cache_dir", "cpu")


@dataclass
class TrainConfig:
    """How to train; the data comes separately as ``TrainingPart`` s."""

    clip: str  # base model: a CLIP hub id / folder or stage-1 checkpoint (model "combiner"); a BLIP one (model "blip")
    out_dir: str  # run folder: model/, checkpoints/, train_log.json
    stage: Literal["combiner", "clip"] = "combiner"  # model "combiner": CLIP4Cir stage 2 (Combiner) or 1 (CLIP)
    epochs: int = 10  # passes over the training queries
    batch_size: int = 128  # queries per step; the other targets in the batch are the negatives
    lr: float = 2e-5  # AdamW learning rate (CLIP4Cir: 2e-5 Combiner, 2e-6 CLIP)
    weight_decay: float = 0.0  # AdamW weight decay
    seed: int = 0  # seeds shuffling, text-variant choice, dropout and the Combiner's init
    projection_dim: int | None = None  # Combiner projection width; None = 4x CLIP's feature size (CLIP4Cir)
    hidden_dim: int | None = None  # Combiner hidden width; None = 8x CLIP's feature size (CLIP4Cir)
    dropout: float = 0.5  # Combiner dropout
    logit_scale: float = 100.0  # temperature of the batch classification loss (model "combiner")
    finetune: Literal["both", "image", "text"] = "both"  # stage "clip" / model "blip": which encoders learn
    pad_mode: Literal["targetpad", "squarepad", "none"] = "targetpad"  # image padding before the processor
    pad_ratio: float = 1.25  # target-pad aspect ratio (CLIP4Cir: 1.25)
    mixed_precision: Literal["no", "fp16", "bf16"] = "no"  # accelerate's autocast mode
    cpu: bool = False  # force CPU even when a GPU is present
    feature_batch_size: int = 64  # images per CLIP call when extracting features
    cache_dir: str | None = None  # frozen-feature cache; None = <out_dir>/feature_cache
    save_every: int = 0  # also write (resumable) checkpoints/epoch-N every N epochs; 0 = only the final model
    num_workers: int = 0  # data-loader workers for image loading (stage "clip", model "blip")
    model: Literal["combiner", "blip"] = "combiner"  # CLIP4Cir (CLIP + Combiner or sum) or BlipCIR
    embed_dim: int = 256  # model "blip": joint retrieval space (BLIP's image_text_hidden_size is 256)
    temperature: float = 0.07  # model "blip": initial InfoNCE temperature, learned from there (BLIP ITC: 0.07)
    lr_schedule: Literal["constant", "cosine"] = "constant"  # per-step LR schedule (CLIP4Cir: constant)
    warmup_steps: int = 0  # linear LR warm-up steps before the schedule
    resume: bool = False  # continue after the newest checkpoints/epoch-N; starts afresh (with a warning) if none


@dataclass
class TrainResult:
    """What a run produced."""

    model_dir: Path  # final checkpoint folder (load with ``load_cir_model``)
    epoch_losses: list[float]  # mean training loss per epoch, restored ones included
    n_real: int  # real training queries used
    n_synthetic: int  # synthetic training queries used
    seconds: float  # wall time of this call's training (a resumed run counts only its own part)
    resumed_from: int = 0  # epochs restored from a checkpoint; 0 = trained from the start


def _counts(parts: Sequence[TrainingPart]) -> tuple[int, int]:
    return (sum(len(p.queries) for p in parts if not p.synthetic), sum(len(p.queries) for p in parts if p.synthetic))


def _data_key(parts: Sequence[TrainingPart]) -> str:
    """Hash of which queries of which splits a run trains on; a resumed run must train on the same."""
    return config_hash([{"split": p.split.name, "source": p.split.source, "synthetic": p.synthetic,
                         "queries": [q.id for q in p.queries]} for p in parts])


def train_cir(parts: Sequence[TrainingPart], config: TrainConfig) -> TrainResult:
    """Train a CIR model on ``parts``; writes ``<out_dir>/model`` and ``<out_dir>/train_log.json``.

    Args:
        parts: training queries per source split (real and synthetic), e.g. from ``build_training_set``.
        config: the run's settings.

    Returns:
        ``TrainResult`` with the model folder and per-epoch losses.

    Raises:
        ValueError: no queries, a bad setting, or (``resume``) a checkpoint made with other settings or data.
    """
    from accelerate import Accelerator
    from accelerate.utils import set_seed

    _check(parts, config)
    out = Path(config.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    accelerator = Accelerator(mixed_precision=config.mixed_precision, cpu=config.cpu)
    set_seed(config.seed)
    # 1. the model and what of it learns
    if config.model == "blip":
        job = _blip_job(parts, config)
        start = time.perf_counter()
    else:
        base, from_ckpt = _load_base(config, accelerator.device)
        start = time.perf_counter()
        make = _combiner_job if config.stage == "combiner" else _clip_job
        job = make(parts, base, from_ckpt, config, accelerator)
    # 2. the epochs (after the newest checkpoint when resuming)
    loop = _fit(job, parts, config, accelerator)
    model = job.finish()
    seconds = time.perf_counter() - start
    # 3. the final model and the log
    n_real, n_syn = _counts(parts)
    model_dir = out / "model"
    if accelerator.is_main_process:
        tmp = out / ".model.tmp"
        shutil.rmtree(tmp, ignore_errors=True)
        job.export(tmp)
        _publish(tmp, model_dir)
        atomic_write_json(out / "train_log.json", {
            "config": dataclasses.asdict(config), "model_kind": model.kind, "epoch_losses": loop.losses,
            "resumed_from": loop.resumed_from, "n_real": n_real, "n_synthetic": n_syn,
            "parts": [{"split": p.split.name, "synthetic": p.synthetic, "queries": len(p.queries)} for p in parts],
            "seconds": seconds,
        }, indent=2)
    accelerator.wait_for_everyone()
    return TrainResult(model_dir, loop.losses, n_real, n_syn, seconds, loop.resumed_from)


def _check(parts: Sequence[TrainingPart], config: TrainConfig) -> None:
    if not parts or not any(p.queries for p in parts):
        raise ValueError("train_cir: no training queries")
    if config.epochs < 1 or config.batch_size < 2:
        raise ValueError("train_cir: epochs must be >= 1 and batch_size >= 2 (the loss needs in-batch negatives)")
    if config.model not in ("combiner", "blip"):
        raise ValueError(f"train_cir: unknown model {config.model!r}; use 'combiner' or 'blip'")
    if config.stage not in ("combiner", "clip"):
        raise ValueError(f"train_cir: unknown stage {config.stage!r}; use 'combiner' or 'clip'")
    if config.model == "blip" and config.stage != "combiner":
        raise ValueError("train_cir: stage applies to model 'combiner' only; model 'blip' always trains end to end")
    if config.save_every < 0 or config.warmup_steps < 0:
        raise ValueError("train_cir: save_every and warmup_steps must be >= 0")


# --- the shared epoch loop, checkpoints and resume ------------------------------------------------


@dataclass
class _Job:
    """One kind of run, as the shared epoch loop sees it."""

    module: torch.nn.Module  # what accelerate prepares (and checkpoints); ``loss`` calls it
    params: list[torch.nn.Parameter]  # what the optimiser updates
    loader: DataLoader  # one epoch of batches
    loss: Callable[[torch.nn.Module, Any], torch.Tensor]  # (prepared module, batch) -> 0-d loss
    export: Callable[[Path], Any]  # writes a ``load_cir_model`` folder of the current weights
    finish: Callable[[], Any]  # the trained model after the last epoch, in eval mode
    generators: dict[str, torch.Generator] = field(default_factory=dict)  # loop RNGs, restored on resume
    start_epoch: Callable[[int], None] = lambda epoch: None  # called before each epoch with its index


class _LoopState:
    """The epoch loop's own resumable state, saved beside accelerate's (``LOOP_STATE_FILE`` + train_state.json)."""

    def __init__(self, generators: dict[str, torch.Generator], check_rng: bool):
        self.epoch = 0  # epochs finished
        self.losses: list[float] = []  # mean loss of each finished epoch
        self.resumed_from = 0  # epochs restored from a checkpoint
        self.generators = generators
        self.check_rng = check_rng  # main process: verify accelerate restored the global torch RNG

    def save(self, path: Path) -> None:
        """The RNG states as uint8 tensors in a safetensors file (epoch and losses go to train_state.json)."""
        from safetensors.torch import save_file

        tensors = {"torch_rng": torch.get_rng_state()}
        tensors.update({f"generator.{name}": g.get_state() for name, g in self.generators.items()})
        save_file(tensors, str(path))

    def load(self, path: Path, train_state: dict) -> None:
        """Restore from ``save``'s file and the checkpoint's train_state.json (call after accelerate's load_state)."""
        from safetensors.torch import load_file

        if not path.is_file():
            raise ValueError(f"resume: {path.parent} has no {path.name} (an older cirsynth wrote it): it cannot be resumed")
        state = load_file(str(path))
        names = sorted(k.removeprefix("generator.") for k in state if k.startswith("generator."))
        if names != sorted(self.generators):
            raise ValueError(f"resume: checkpoint has generators {names}, this run {sorted(self.generators)}")
        self.epoch, self.losses = int(train_state["epoch"]), [float(x) for x in train_state["losses"]]
        for name, g in self.generators.items():
            g.set_state(state[f"generator.{name}"])
        # accelerate's load_state logs and goes on when it cannot restore the RNGs; a resumed run would then
        # silently differ from an uninterrupted one.
        if self.check_rng and not torch.equal(torch.get_rng_state(), state["torch_rng"]):
            raise RuntimeError("resume: accelerate did not restore the global torch RNG state")


def _lr_scheduler(config: TrainConfig, optimizer: torch.optim.Optimizer, steps_per_epoch: int):
    """transformers' schedule named by ``lr_schedule`` (with ``warmup_steps``), stepped once per optimiser step."""
    from transformers import get_scheduler

    name = config.lr_schedule
    if name == "constant" and config.warmup_steps:
        name = "constant_with_warmup"
    elif name not in ("constant", "cosine"):
        raise ValueError(f"train_cir: unknown lr_schedule {name!r}; use 'constant' or 'cosine'")
    return get_scheduler(name, optimizer, num_warmup_steps=config.warmup_steps,
                         num_training_steps=config.epochs * steps_per_epoch)


def _fit(job: _Job, parts: Sequence[TrainingPart], config: TrainConfig, accelerator) -> _LoopState:
    """Run the epochs of ``job``: AdamW, the LR schedule, per-epoch mean losses, checkpoints, resume."""
    optimizer = torch.optim.AdamW(job.params, lr=config.lr, weight_decay=config.weight_decay)
    scheduler = _lr_scheduler(config, optimizer, len(job.loader))  # steps of one process with all the data
    module, optimizer, loader, scheduler = accelerator.prepare(job.module, optimizer, job.loader, scheduler)
    loop = _LoopState(job.generators, check_rng=accelerator.is_main_process)
    data_key = _data_key(parts)
    if config.resume:
        _resume(accelerator, loop, config, data_key)
    for epoch in range(loop.epoch, config.epochs):
        job.start_epoch(epoch)
        module.train()
        total, steps = 0.0, 0
        for batch in loader:
            with accelerator.autocast():
                loss = job.loss(module, batch)
            optimizer.zero_grad(set_to_none=True)
            accelerator.backward(loss)
            optimizer.step()
            scheduler.step()
            total, steps = total + float(loss.detach()), steps + 1
        loop.losses.append(float(accelerator.reduce(torch.tensor(total / max(steps, 1), device=accelerator.device),
                                                    "mean")))
        loop.epoch = epoch + 1
        if config.save_every and loop.epoch % config.save_every == 0:
            _save_checkpoint(accelerator, job.export, loop, config, data_key)
    return loop


def latest_checkpoint(out_dir: str | os.PathLike) -> Path | None:
    """The newest ``<out_dir>/checkpoints/epoch-N`` folder, or None when there is none.

    Raises:
        ValueError: the newest one lacks ``train_state.json`` (written before checkpoints were resumable).
    """
    found = []
    for path in (Path(out_dir) / "checkpoints").glob("epoch-*"):
        m = re.fullmatch(r"epoch-(\d+)", path.name)
        if m and path.is_dir():
            found.append((int(m.group(1)), path))
    if not found:
        return None
    newest = max(found)[1]
    if not (newest / TRAIN_STATE_FILE).exists():
        raise ValueError(f"{newest} has no {TRAIN_STATE_FILE} (an older cirsynth wrote it): it cannot be resumed")
    return newest


def _resume(accelerator, loop: _LoopState, config: TrainConfig, data_key: str) -> None:
    ckpt = latest_checkpoint(config.out_dir)
    if ckpt is None:
        warnings.warn(f"resume: no checkpoint in {Path(config.out_dir) / 'checkpoints'}; training from the start",
                      stacklevel=3)
        return
    state = json.loads((ckpt / TRAIN_STATE_FILE).read_text())
    free = set(_RESUME_FREE) | ({"epochs"} if config.lr_schedule == "constant" else set())
    changed = changed_settings(state["config"], dataclasses.asdict(config), ignore=free)
    if changed:
        raise ValueError(f"resume: {ckpt} was trained with other settings ({'; '.join(changed)}); "
                         "use the same ones or another out_dir")
    if state["data"] != data_key:
        raise ValueError(f"resume: {ckpt} was trained on other queries (data key {state['data']} != {data_key}); "
                         "give the same datasets, real_fraction, synthetic_ratio and seed")
    if state["epoch"] > config.epochs:
        raise ValueError(f"resume: {ckpt} is past epochs={config.epochs}")
    check_checkpoint_files(ckpt)
    accelerator.load_state(str(ckpt / "accelerate"))  # its own files, with weights_only=True
    loop.load(ckpt / LOOP_STATE_FILE, state)
    loop.resumed_from = loop.epoch


def check_checkpoint_files(ckpt: Path) -> None:
    """Refuse a checkpoint folder holding a pickle-format file that resuming would not load safely.

    Allowed: accelerate's own files under ``accelerate/`` (loaded with ``weights_only=True``); anything else
    with a pickle suffix, or whose bytes start like a pickle or a ``torch.save`` zip, is refused.

    Raises:
        ValueError: naming the offending files.
    """
    bad = []
    for path in sorted(ckpt.rglob("*")):
        if not path.is_file() or (path.parent == ckpt / "accelerate" and _ACCELERATE_FILES.fullmatch(path.name)):
            continue
        with open(path, "rb") as f:
            head = f.read(2)
        looks_pickled = path.suffix != ".safetensors" and (head == b"PK" or head[:1] == b"\x80" and head[1:] in (b"\x02", b"\x03", b"\x04", b"\x05"))
        if path.suffix.lower() in _PICKLE_SUFFIXES or looks_pickled:
            bad.append(str(path.relative_to(ckpt)))
    if bad:
        raise ValueError(f"resume: {ckpt} holds files that would be unpickled ({', '.join(bad)}); cirsynth does not "
                         "load them (pickles can run code). Resume only from checkpoints this version wrote.")


def _save_checkpoint(accelerator, export: Callable[[Path], Any], loop: _LoopState, config: TrainConfig,
                     data_key: str) -> Path:
    """Write ``checkpoints/epoch-<loop.epoch>`` through a temp folder (every process must call this)."""
    root = Path(config.out_dir) / "checkpoints"
    final, tmp = root / f"epoch-{loop.epoch}", root / f".epoch-{loop.epoch}.tmp"
    if accelerator.is_main_process:
        shutil.rmtree(tmp, ignore_errors=True)  # left by a crash
        tmp.mkdir(parents=True)
    accelerator.wait_for_everyone()
    accelerator.save_state(str(tmp / "accelerate"))  # each process writes its own RNG states
    if accelerator.is_main_process:
        export(tmp)
        loop.save(tmp / LOOP_STATE_FILE)
        atomic_write_json(tmp / TRAIN_STATE_FILE, {"epoch": loop.epoch, "losses": loop.losses,
                                                   "config": dataclasses.asdict(config), "data": data_key}, indent=2)
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        _publish(tmp, final)
    accelerator.wait_for_everyone()
    return final


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _publish(tmp: Path, final: Path) -> None:
    """Make the finished folder ``tmp`` appear as ``final`` in one rename, replacing an older ``final``.

    Its files are flushed to disk first, so after the rename ``final`` is whole even across a power loss.
    """
    for path in sorted(tmp.rglob("*")):
        if path.is_file():
            _fsync(path)
    old = final.with_name(f".{final.name}.old")
    shutil.rmtree(old, ignore_errors=True)
    if final.exists():
        os.replace(final, old)
    os.replace(tmp, final)
    shutil.rmtree(old, ignore_errors=True)
    if os.name == "posix":
        _fsync(final.parent)


# --- model "combiner", stage "combiner": Combiner on cached features -----------------------------


def _load_base(config: TrainConfig, device: torch.device) -> tuple[ClipCIR, bool]:
    """The CLIP to train on and whether it came from a cirsynth checkpoint (then it is copied on save)."""
    is_ckpt = (Path(config.clip) / CHECKPOINT_FILE).exists()
    model = load_cir_model(config.clip, device=device)
    if model.kind == "blip":
        raise ValueError(f"{config.clip} is a BLIP checkpoint; train it with model 'blip'")
    if is_ckpt and model.combiner is not None and config.stage == "clip":
        raise ValueError(f"{config.clip}: stage 'clip' starts from a CLIP, not from a Combiner checkpoint")
    model.combiner = None
    model.pad_mode, model.pad_ratio = config.pad_mode, config.pad_ratio
    if not is_ckpt and Path(config.clip).is_dir():
        model.clip_source = str(Path(config.clip).resolve())
    return model, is_ckpt


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


def _combiner_job(parts, base: ClipCIR, from_ckpt: bool, config: TrainConfig, accelerator) -> _Job:
    table = _gather_features(parts, base, config)
    dev = accelerator.device
    ref, tgt, txt = table.reference.to(dev), table.target.to(dev), table.texts.to(dev)
    start, count = table.text_start.to(dev), table.text_count.to(dev)
    d = base.feature_dim
    combiner = Combiner(CombinerConfig(
        feature_dim=d, projection_dim=config.projection_dim or 4 * d, hidden_dim=config.hidden_dim or 8 * d,
        dropout=config.dropout, logit_scale=config.logit_scale,
    ))
    base.combiner = combiner  # trained in place; export and finish read it
    n = ref.shape[0]
    shuffle = torch.Generator().manual_seed(config.seed)
    loader = DataLoader(torch.arange(n), batch_size=config.batch_size, shuffle=True,
                        drop_last=n > config.batch_size, generator=shuffle)
    variants = torch.Generator(device="cpu").manual_seed(config.seed + 1)

    def loss(module: torch.nn.Module, idx: torch.Tensor) -> torch.Tensor:
        idx = idx.to(dev)  # (B,)
        pick = (torch.rand(idx.shape[0], generator=variants).to(dev) * count[idx]).long()  # (B,) variant per query
        logits = module(ref[idx], txt[start[idx] + pick], tgt[idx])  # (B, B)
        return F.cross_entropy(logits.float(), torch.arange(idx.shape[0], device=dev))

    def finish() -> ClipCIR:
        combiner.eval()
        return base

    return _Job(combiner, list(combiner.parameters()), loader, loss,
                export=lambda folder: base.save(folder, save_clip=from_ckpt), finish=finish,
                generators={"shuffle": shuffle, "variants": variants})


# --- image-level runs: stage "clip" and model "blip" ----------------------------------------------


class _TripletImages(Dataset):
    """(reference PIL, one text variant, target PIL) for every training query.

    The variant is drawn from (seed, epoch, query index) alone, so it does not depend on data-loader
    workers or on where a run was resumed; set ``epoch`` before each pass.
    """

    def __init__(self, parts: Sequence[TrainingPart], seed: int):
        self.items = [(p.split, q) for p in parts for q in p.queries]
        self.seed = seed
        self.epoch = 0

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int):
        split, q = self.items[i]
        if q.target is None:
            raise ValueError(f"{split.name}: query {q.id} has no target image")
        pick = int(np.random.default_rng([self.seed, self.epoch, i]).integers(len(q.texts))) if len(q.texts) > 1 else 0
        return split.open_image(q.reference), q.texts[pick], split.open_image(q.target)


def _image_loader(parts, model, config: TrainConfig) -> tuple[DataLoader, _TripletImages, torch.Generator]:
    """Batches ``(ref pixels (B, 3, H, W), input_ids (B, L), attention_mask (B, L), tgt pixels (B, 3, H, W))``.

    ``model`` supplies the preprocessing (``pixel_values``, ``tokens``): a ``ClipCIR`` or a ``BlipCIR``.
    """

    def collate(batch):
        refs, texts, tgts = zip(*batch)
        tokens = model.tokens(texts)
        return model.pixel_values(refs), tokens["input_ids"], tokens["attention_mask"], model.pixel_values(tgts)

    data = _TripletImages(parts, config.seed)
    shuffle = torch.Generator().manual_seed(config.seed)
    loader = DataLoader(data, batch_size=config.batch_size, shuffle=True, collate_fn=collate,
                        num_workers=config.num_workers, drop_last=len(data) > config.batch_size, generator=shuffle)
    return loader, data, shuffle


def _set_trainable(module: torch.nn.Module, prefixes: Sequence[str]) -> Callable[[], None]:
    """Freeze every parameter outside the top-level children ``prefixes``; returns a function that undoes it."""
    before = {name: p.requires_grad for name, p in module.named_parameters()}
    for name, p in module.named_parameters():
        p.requires_grad_(before[name] and name.split(".")[0] in prefixes)

    def restore() -> None:
        for name, p in module.named_parameters():
            p.requires_grad_(before[name])

    return restore


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


def _clip_job(parts, base: ClipCIR, from_ckpt: bool, config: TrainConfig, accelerator) -> _Job:
    clip = base.clip
    learn = {"image": ("vision_model", "visual_projection"), "text": ("text_model", "text_projection"),
             "both": ("vision_model", "visual_projection", "text_model", "text_projection")}[config.finetune]
    restore = _set_trainable(clip, learn)
    loader, data, shuffle = _image_loader(parts, base, config)

    def finish() -> ClipCIR:
        clip.eval()
        restore()
        return base

    return _Job(_SumFusionLoss(clip, config.logit_scale), [p for p in clip.parameters() if p.requires_grad],
                loader, lambda module, batch: module(*batch), export=lambda folder: base.save(folder, save_clip=True),
                finish=finish, generators={"shuffle": shuffle}, start_epoch=lambda e: setattr(data, "epoch", e))


def _blip_job(parts, config: TrainConfig) -> _Job:
    """BlipCIR end to end: InfoNCE of the fused query against the batch's targets (``BlipCIR.forward``)."""
    from cirsynth.cir.blip import BlipCIR, BlipCIRConfig

    if (Path(config.clip) / CHECKPOINT_FILE).exists():  # a BlipCIR checkpoint: keep its head
        model = BlipCIR.from_pretrained(config.clip)
        if model.config.embed_dim != config.embed_dim:
            raise ValueError(f"{config.clip}: its embed_dim is {model.config.embed_dim}, not {config.embed_dim}")
    else:
        model = BlipCIR.from_pretrained(config.clip, BlipCIRConfig(embed_dim=config.embed_dim,
                                                                   temperature=config.temperature))
    if model.processor is None:
        raise ValueError(f"{config.clip}: no BlipProcessor (tokenizer + image processor) found beside the weights")
    model.pad_mode, model.pad_ratio = config.pad_mode, config.pad_ratio
    heads = ("query_proj", "target_proj", "log_temperature")
    encoders = {"image": ("vision_model",), "text": ("text_encoder",),
                "both": ("vision_model", "text_encoder")}[config.finetune]
    restore = _set_trainable(model, heads + encoders)
    loader, data, shuffle = _image_loader(parts, model, config)

    def finish() -> BlipCIR:
        model.eval()
        restore()
        return model

    return _Job(model, [p for p in model.parameters() if p.requires_grad], loader,
                lambda module, batch: module(*batch), export=model.save_pretrained, finish=finish,
                generators={"shuffle": shuffle}, start_epoch=lambda e: setattr(data, "epoch", e))
