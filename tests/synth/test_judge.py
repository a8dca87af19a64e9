"""The diffusion judge's primitive: ``caption_errors`` on a tiny random SD pipeline (its behaviour on a trained model is
checked with the bundled world model in tests/world/test_diffusion_judge.py)."""

import numpy as np
import pytest
import torch

from cirsynth.editing import CounterfactualEditor, EditorConfig
from cirsynth.synth.judge import caption_errors
from cirsynth.testing.tiny_sd import tiny_sd_pipeline
from tests.editing.conftest import PROMPTS, photos


@pytest.fixture(scope="module")
def editor():
    return CounterfactualEditor(tiny_sd_pipeline("clip", seed=0), EditorConfig())


def test_caption_errors_are_the_noise_prediction_error_with_shared_noise(editor):
    """``caption_errors`` is the UNet's mean squared noise-prediction error over the timesteps, with one noise draw per
    timestep shared by every image and caption; batching does not change it; bad arguments are refused."""
    ims = editor.prepare(photos()[:2])
    caps = [[PROMPTS[0], PROMPTS[1], PROMPTS[2]], [PROMPTS[1]]]
    steps = (50, 400, 900)
    errs = caption_errors(editor, ims, caps, steps, seed=3, batch_size=64)
    assert [e.shape for e in errs] == [(3,), (1,)]
    again = caption_errors(editor, ims, caps, steps, seed=3, batch_size=1)
    for a, b in zip(errs, again):
        np.testing.assert_allclose(a, b, rtol=1e-4)
    # by hand: image 1 under prompt 1
    z0 = editor.encode_images(ims[1:])
    eps = torch.randn((3,) + tuple(z0.shape[1:]), generator=torch.Generator().manual_seed(3))
    abar = editor.scheduler.alphas_cumprod[list(steps)].view(-1, 1, 1, 1)
    x = abar.sqrt() * z0 + (1 - abar).sqrt() * eps
    with torch.no_grad():
        pred = editor._unet(x, torch.tensor(steps), editor.encode_text([PROMPTS[1]]).expand(3))
    assert errs[1][0] == pytest.approx(float(((pred - eps) ** 2).mean()), rel=1e-4)
    # shared noise: the same image and caption score the same wherever they stand
    assert errs[0][1] == pytest.approx(caption_errors(editor, ims[:1], [[PROMPTS[1]]], steps, seed=3)[0][0], rel=1e-4)
    assert caption_errors(editor, ims[:1], [[PROMPTS[1]]], steps, seed=4)[0][0] != pytest.approx(errs[0][1], rel=1e-6)
    assert [len(e) for e in caption_errors(editor, ims, [[], []], steps)] == [0, 0]
    with pytest.raises(ValueError, match="2 images but 1 caption lists"):
        caption_errors(editor, ims, caps[:1])
    with pytest.raises(ValueError, match="timesteps"):
        caption_errors(editor, ims, caps, (0, 1000))
    with pytest.raises(ValueError, match="timesteps"):
        caption_errors(editor, ims, caps, ())


def test_caption_errors_compare_with_the_velocity_for_v_prediction_models():
    from diffusers import DDIMScheduler

    ed = CounterfactualEditor(tiny_sd_pipeline("clip", seed=0), EditorConfig())
    ed.scheduler = DDIMScheduler.from_config(ed.scheduler.config, prediction_type="v_prediction")
    ims = ed.prepare(photos()[:1])
    err = caption_errors(ed, ims, [[PROMPTS[0]]], (300,), seed=1)[0][0]
    z0 = ed.encode_images(ims)
    eps = torch.randn((1,) + tuple(z0.shape[1:]), generator=torch.Generator().manual_seed(1))
    a = ed.scheduler.alphas_cumprod[300]
    with torch.no_grad():
        pred = ed._unet(a.sqrt() * z0 + (1 - a).sqrt() * eps, torch.tensor([300]), ed.encode_text([PROMPTS[0]]))
    v = a.sqrt() * eps - (1 - a).sqrt() * z0
    assert err == pytest.approx(float(((pred - v) ** 2).mean()), rel=1e-4)
    assert err != pytest.approx(float(((pred - eps) ** 2).mean()), rel=1e-3)
    ed.scheduler = DDIMScheduler.from_config(ed.scheduler.config, prediction_type="epsilon")
    ed.scheduler.register_to_config(prediction_type="flow")
    with pytest.raises(ValueError, match="unsupported prediction_type 'flow'"):
        caption_errors(ed, ims, [[PROMPTS[0]]])
