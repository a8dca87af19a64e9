"""The ground-truth judge: a small CNN that reads every scene label off a rendered picture.

``world evaluate`` uses it to check generated images: did the edited attribute take the right value,
and did every other attribute stay? It is trained on renders only, so its accuracy on held-out
renders is reported with it (a judge that is often wrong cannot measure anything).
"""

from __future__ import annotations

import json
import math
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from PIL import Image
from torch import nn

from cirsynth.world.render import render_array
from cirsynth.world.scene import LABEL_KEYS, LABEL_VALUES, random_scene, scene_labels

WEIGHTS_NAME = "model.safetensors"
CONFIG_NAME = "config.json"


@dataclass
class ClassifierConfig:
    """Shape of the attribute classifier."""

    image_size: int = 64  # input side in pixels (renders are resized to this)
    channels: tuple[int, ...] = (24, 48, 96, 128)  # conv widths; each stage halves the resolution
    hidden: int = 256  # width of the shared layer feeding every head
    labels: dict[str, list[str]] = field(default_factory=lambda: {k: list(v) for k, v in LABEL_VALUES.items()})


def _to_tensor(images: list[Image.Image] | np.ndarray, size: int) -> torch.Tensor:
    """PIL images or a float array (N, H, W, 3) in [0, 1] -> (N, 3, size, size) in [-1, 1]."""
    if isinstance(images, np.ndarray):
        arr = images
    else:
        arr = np.stack(
            [np.asarray(im.convert("RGB").resize((size, size), Image.BILINEAR), dtype=np.float32) / 255 for im in images]
        )
    t = torch.from_numpy(np.ascontiguousarray(arr, dtype=np.float32)).permute(0, 3, 1, 2)
    return t * 2 - 1


class AttributeClassifier(nn.Module):
    """Conv trunk + one linear head per label key (``"left.color"``, ..., ``"light"``)."""

    def __init__(self, config: ClassifierConfig | None = None):
        super().__init__()
        self.config = config = config or ClassifierConfig()
        layers: list[nn.Module] = []
        c_in = 3
        for c in config.channels:
            layers += [
                nn.Conv2d(c_in, c, 3, padding=1),
                nn.BatchNorm2d(c),
                nn.ReLU(inplace=True),
                nn.Conv2d(c, c, 3, padding=1),
                nn.BatchNorm2d(c),
                nn.ReLU(inplace=True),
                nn.MaxPool2d(2),
            ]
            c_in = c
        self.trunk = nn.Sequential(*layers)
        side = config.image_size // 2 ** len(config.channels)
        # Flattening (not pooling) keeps where things are: slots are positions.
        self.shared = nn.Sequential(nn.Flatten(), nn.Linear(c_in * side * side, config.hidden), nn.ReLU(inplace=True))
        self.heads = nn.ModuleDict({k.replace(".", "__"): nn.Linear(config.hidden, len(v)) for k, v in config.labels.items()})

    def forward(self, pixels: torch.Tensor) -> dict[str, torch.Tensor]:
        """Args: pixels (B, 3, S, S) in [-1, 1]. Returns: label key -> logits (B, num_values)."""
        h = self.shared(self.trunk(pixels))  # (B, hidden)
        return {k.replace("__", "."): head(h) for k, head in self.heads.items()}

    @torch.no_grad()
    def predict(self, images: list[Image.Image] | np.ndarray, batch_size: int = 128) -> list[dict[str, str]]:
        """Label dicts (keys as :func:`scene_labels`) for PIL images or a (N, H, W, 3) array in [0, 1]."""
        self.eval()
        out: list[dict[str, str]] = []
        for i in range(0, len(images), batch_size):
            x = _to_tensor(images[i : i + batch_size], self.config.image_size)
            logits = self(x)
            idx = {k: v.argmax(-1).tolist() for k, v in logits.items()}
            for j in range(x.shape[0]):
                out.append({k: self.config.labels[k][idx[k][j]] for k in self.config.labels})
        return out

    def save_pretrained(self, folder: str | os.PathLike, card: dict[str, Any] | None = None) -> Path:
        """Save fp16 safetensors + config (+ optional ``card.json`` of metrics/provenance)."""
        from safetensors.torch import save_file

        from cirsynth.config import atomic_write_json

        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        state = {k: v.detach().to(torch.float16 if v.is_floating_point() else v.dtype).contiguous() for k, v in self.state_dict().items()}
        save_file(state, str(folder / WEIGHTS_NAME))
        atomic_write_json(folder / CONFIG_NAME, asdict(self.config), indent=1)
        if card is not None:
            atomic_write_json(folder / "card.json", card, indent=1)
        return folder

    @classmethod
    def from_pretrained(cls, folder: str | os.PathLike) -> "AttributeClassifier":
        from safetensors.torch import load_file

        folder = Path(folder)
        if not (folder / CONFIG_NAME).is_file() or not (folder / WEIGHTS_NAME).is_file():
            raise FileNotFoundError(f"{folder}: expected {CONFIG_NAME} and {WEIGHTS_NAME} of an AttributeClassifier")
        cfg = json.loads((folder / CONFIG_NAME).read_text())
        cfg["channels"] = tuple(cfg["channels"])
        model = cls(ClassifierConfig(**cfg))
        state = {k: v.float() if v.is_floating_point() else v for k, v in load_file(str(folder / WEIGHTS_NAME)).items()}
        model.load_state_dict(state)
        return model.eval()


@dataclass
class ClassifierTrainConfig:
    """How the judge is trained; renders are drawn fresh from ``seed``."""

    num_train: int = 8000  # training renders
    num_eval: int = 1000  # held-out renders (other seeds) for the reported accuracy
    epochs: int = 8  # passes over the training renders
    batch_size: int = 64  # images per step
    lr: float = 2e-3  # AdamW peak learning rate (cosine decay)
    noise_std: float = 0.03  # Gaussian pixel noise added in training, so generated images are judged robustly
    blur_max: float = 0.0  # per-batch Gaussian blur sigma drawn in [0, blur_max] px (robustness to soft VAE output)
    seed: int = 0  # scenes, init and order
    model: ClassifierConfig = field(default_factory=ClassifierConfig)


def gaussian_blur(x: torch.Tensor, sigma: float) -> torch.Tensor:
    """Separable Gaussian blur of (B, C, H, W) images with reflect padding; ``sigma`` in pixels (<= 0: identity)."""
    if sigma <= 0:
        return x
    r = max(1, int(math.ceil(3 * sigma)))
    t = torch.arange(-r, r + 1, dtype=x.dtype)
    k = torch.exp(-(t**2) / (2 * sigma**2))
    k = k / k.sum()  # (2r + 1,)
    c = x.shape[1]
    x = nn.functional.pad(x, (r, r, r, r), mode="reflect")
    x = nn.functional.conv2d(x, k.view(1, 1, 1, -1).repeat(c, 1, 1, 1), groups=c)  # along W
    return nn.functional.conv2d(x, k.view(1, 1, -1, 1).repeat(c, 1, 1, 1), groups=c)  # along H


def render_dataset(n: int, seed: int, size: int = 64) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Render ``n`` random scenes. Returns (images (n, size, size, 3) float32, label key -> index array (n,))."""
    rng = np.random.default_rng(seed)
    images = np.empty((n, size, size, 3), dtype=np.float32)
    labels = {k: np.empty(n, dtype=np.int64) for k in LABEL_KEYS}
    for i in range(n):
        scene = random_scene(rng)
        images[i] = render_array(scene, size=size)
        for k, v in scene_labels(scene).items():
            labels[k][i] = LABEL_VALUES[k].index(v)
    return images, labels


def accuracy(model: AttributeClassifier, images: np.ndarray, labels: dict[str, np.ndarray]) -> dict[str, float]:
    """Per-key accuracy, plus ``"all"`` (every label of an image right) and ``"mean"`` over keys."""
    preds = model.predict(images)
    hits = {k: np.array([model.config.labels[k].index(p[k]) for p in preds]) == labels[k] for k in labels}
    acc = {k: float(h.mean()) for k, h in hits.items()}
    acc["all"] = float(np.all(np.stack(list(hits.values())), axis=0).mean())
    acc["mean"] = float(np.mean([acc[k] for k in labels]))
    return acc


def train_classifier(
    config: ClassifierTrainConfig, log: Callable[[str], None] = print
) -> tuple[AttributeClassifier, dict[str, Any]]:
    """Train the judge on fresh renders and measure it on held-out renders.

    Returns:
        (model in eval mode, report dict with ``accuracy`` per key, timings and the config).
    """
    t0 = time.time()
    torch.manual_seed(config.seed)
    size = config.model.image_size
    x_train, y_train = render_dataset(config.num_train, seed=config.seed * 2 + 1, size=size)
    x_eval, y_eval = render_dataset(config.num_eval, seed=config.seed * 2 + 2, size=size)
    t_render = time.time() - t0
    log(f"rendered {config.num_train}+{config.num_eval} scenes in {t_render:.0f}s")

    model = AttributeClassifier(config.model)
    opt = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=1e-4)
    steps_per_epoch = -(-config.num_train // config.batch_size)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, config.lr, total_steps=config.epochs * steps_per_epoch)
    gen = torch.Generator().manual_seed(config.seed)
    x_all = _to_tensor(x_train, size)  # (N, 3, S, S)
    y_all = {k: torch.from_numpy(v) for k, v in y_train.items()}
    history = []
    for epoch in range(config.epochs):
        model.train()
        perm = torch.randperm(config.num_train, generator=gen)
        total = 0.0
        for i in range(0, config.num_train, config.batch_size):
            idx = perm[i : i + config.batch_size]
            x = x_all[idx]
            if config.blur_max > 0:
                x = gaussian_blur(x, float(torch.rand((), generator=gen)) * config.blur_max)
            x = x + config.noise_std * 2 * torch.randn(x.shape, generator=gen)
            logits = model(x)
            loss = sum(nn.functional.cross_entropy(logits[k], y_all[k][idx]) for k in logits) / len(logits)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            total += loss.item() * len(idx)
        acc = accuracy(model, x_eval, y_eval)
        history.append({"epoch": epoch + 1, "loss": total / config.num_train, "eval_mean": acc["mean"], "eval_all": acc["all"]})
        log(f"epoch {epoch + 1}/{config.epochs} loss {total / config.num_train:.4f} eval mean acc {acc['mean']:.4f} all-correct {acc['all']:.4f} ({time.time() - t0:.0f}s)")
    acc = accuracy(model, x_eval, y_eval)
    report = {
        "accuracy": acc,
        "history": history,
        "seconds_total": time.time() - t0,
        "seconds_render": t_render,
        "threads": torch.get_num_threads(),
        "config": asdict(config),
    }
    return model.eval(), report
