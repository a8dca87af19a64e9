"""The editor over a tiny random SDXL pipeline (same diffusers/transformers classes as SDXL)."""

import numpy as np
import pytest
import torch

from cirsynth.editing import CounterfactualEditor, EditorConfig, TextCond

from .conftest import PROMPTS, TINY_NULL_TEXT, photos, psnr

XL_STEPS = 5  # fewer steps than the SD tests: the properties below do not depend on T


@pytest.fixture(scope="module")
def xl_pipe():
    from cirsynth.testing.tiny_sd import tiny_sdxl_pipeline

    return tiny_sdxl_pipeline(seed=0)


@pytest.fixture(scope="module")
def xl(xl_pipe):
    return CounterfactualEditor(xl_pipe, EditorConfig(null_text=TINY_NULL_TEXT))


def test_sdxl_text_and_added_conditioning(xl, monkeypatch):
    assert xl.is_xl and xl.tokenizer_2 is not None
    cond = xl.encode_text(["a photo of a cat", ""])
    assert cond.seq.shape == (2, 16, 64) and cond.pooled.shape == (2, 32)  # both encoders: 32 + 32; pooled 32
    assert cond.seq[1].abs().max() == 0 and cond.pooled[1].abs().max() == 0  # force_zeros_for_empty_prompt
    seen = []
    forward = xl.unet.forward
    monkeypatch.setattr(xl.unet, "forward", lambda *a, **k: seen.append(k["added_cond_kwargs"]) or forward(*a, **k))
    xl.invert(photos()[:1], PROMPTS[:1], method="ddpm", num_steps=2)
    assert seen and all(k["time_ids"].shape == (2, 6) and k["text_embeds"].shape == (2, 32) for k in seen)  # CFG rows
    assert seen[0]["time_ids"][0].tolist() == [64, 64, 0, 0, 64, 64]  # original size, crop (0, 0), target size


@pytest.mark.parametrize("method", ["ddpm", "direct", "negative-prompt"])
def test_sdxl_fast_methods_reconstruct_and_identity_edit(xl, method):
    inv = xl.invert(photos()[:1], PROMPTS[:1], method=method, num_steps=XL_STEPS)
    rec = xl.reconstruct(inv)[0]
    best = xl.decode_latents(xl.encode_images(xl.prepare(photos()[:1])))
    best_img = ((best[0].permute(1, 2, 0) + 1) * 127.5).round().clamp(0, 255).numpy()
    if method in ("ddpm", "direct"):
        assert psnr(rec, best_img) > 50.0  # exact up to float rounding
    assert psnr(xl.edit(inv, PROMPTS[:1])[0], rec) > 50.0  # P2P on SDXL's attention layers: identity edit
    assert psnr(xl.edit(inv, ["a photo of a dog"], blend_words=[(["cat"], ["dog"])])[0], rec) < 50.0


def test_sdxl_null_text_optimises_the_sequence_only(xl, monkeypatch):
    """Null-text on SDXL optimises the per-step null *sequence*; the pooled null stays SDXL's unconditional (zeros)."""
    imgs = photos()[:1]
    pooled_in_grad_calls = []
    unet = xl._unet

    def spy(latents, t, cond: TextCond):
        if torch.is_grad_enabled() and cond.seq.requires_grad:
            pooled_in_grad_calls.append(cond.pooled.detach().clone())
        return unet(latents, t, cond)

    monkeypatch.setattr(xl, "_unet", spy)
    inv = xl.invert(imgs, PROMPTS[:1], method="null-text", num_steps=XL_STEPS)
    monkeypatch.undo()
    assert pooled_in_grad_calls and all(p.abs().max() == 0 for p in pooled_in_grad_calls)
    assert inv[0].null_embeddings.shape == (XL_STEPS, 16, 64)
    assert inv[0].null_embeddings.abs().max() > 0  # moved away from the zero null
    ddim = xl.reconstruct(xl.invert(imgs, PROMPTS[:1], method="ddim", num_steps=XL_STEPS))[0]
    best = xl.decode_latents(xl.encode_images(xl.prepare(imgs)))
    best_img = ((best[0].permute(1, 2, 0) + 1) * 127.5).round().clamp(0, 255).numpy()
    # null-text reconstructs better than plain DDIM inversion (measured on this tiny pipeline: 24.3 against 22.3 dB)
    assert psnr(xl.reconstruct(inv)[0], best_img) > psnr(ddim, best_img) + 1.0


def test_sdxl_folder_detected_and_vae_upcast(tmp_path):
    from diffusers import StableDiffusionXLPipeline

    from cirsynth.models.diffusion import is_sdxl_folder, load_sd_pipeline
    from cirsynth.testing.tiny_sd import save_tiny_sd, save_tiny_sdxl

    folder = save_tiny_sdxl(tmp_path / "xl")
    assert is_sdxl_folder(folder) and not is_sdxl_folder(save_tiny_sd(tmp_path / "sd"))
    pipe = load_sd_pipeline(folder, device="cpu", dtype="bf16")
    assert isinstance(pipe, StableDiffusionXLPipeline)
    assert pipe.unet.dtype == torch.bfloat16 and pipe.vae.dtype == torch.float32  # force_upcast
    ed = CounterfactualEditor.from_pretrained(folder, device="cpu")
    assert ed.is_xl and ed.model_id == str(folder)
    out = ed.edit(ed.invert(photos()[:1], PROMPTS[:1], method="ddpm", num_steps=2), ["a photo of a dog"])
    assert out[0].size == (64, 64) and np.asarray(out[0]).std() > 0
    half = load_sd_pipeline(folder, device="cpu")
    half.vae.to(torch.float16)
    assert CounterfactualEditor(half).vae.dtype == torch.float32  # an fp16 SDXL VAE overflows: the editor upcasts it
