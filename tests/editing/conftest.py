"""Shared tiny models, photos and inversions for the editing tests (CPU, seconds)."""

import numpy as np
import pytest
import torch
from PIL import Image

from cirsynth.editing import CounterfactualEditor, EditorConfig, NullTextConfig
from cirsynth.testing.tiny_sd import tiny_sd_pipeline

STEPS = 10  # DDIM steps in tests

# The reference null-text lr (1e-2) is calibrated for SD-1.5's embedding scale; the tiny random text encoder
# needs a larger step to converge within 10 inner steps (measured: 18 dB at 1e-2, 33 dB at 1e-1 latent SNR).
TINY_NULL_TEXT = NullTextConfig(lr=0.1)


def photos() -> list[Image.Image]:
    from skimage import data

    return [Image.fromarray(data.chelsea()), Image.fromarray(data.astronaut()), Image.fromarray(data.coffee())]


PROMPTS = ["a photo of a cat", "a photo of an astronaut", "a cup of coffee"]


def psnr(a, b) -> float:
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    mse = ((a - b) ** 2).mean()
    return float("inf") if mse == 0 else float(10 * np.log10(255.0**2 / mse))


@pytest.fixture(scope="session", autouse=True)
def _threads():
    torch.set_num_threads(2)


@pytest.fixture(scope="session")
def pipe():
    return tiny_sd_pipeline("clip", seed=0)


@pytest.fixture(scope="session")
def editor(pipe):
    return CounterfactualEditor(pipe, EditorConfig(null_text=TINY_NULL_TEXT))


@pytest.fixture(scope="session")
def null_inversions(editor):
    return editor.invert(photos()[:2], PROMPTS[:2], method="null-text", num_steps=STEPS)
