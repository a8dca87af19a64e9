import numpy as np
import pytest
import torch
from PIL import Image

from cirsynth.editing import CounterfactualEditor, EditorConfig, Inversion, InversionCache, fit_image
from cirsynth.editing.images import image_hash
from cirsynth.testing.tiny_sd import tiny_sd_pipeline

from .conftest import PROMPTS, STEPS, TINY_NULL_TEXT, photos, psnr


def vae_roundtrip(editor, images):
    """The best any inversion can do: the VAE's own reconstruction of the fitted image."""
    from cirsynth.editing.images import tensor_to_images

    return tensor_to_images(editor.decode_latents(editor.encode_images(editor.prepare(images))))


def test_fit_image_any_size(editor):
    assert editor.image_size == (64, 64)
    wide = Image.new("L", (300, 100), 128)
    out = fit_image(wide, editor.image_size)
    assert out.size == (64, 64) and out.mode == "RGB"
    tall = Image.fromarray(np.arange(40 * 10 * 3, dtype=np.uint8).reshape(40, 10, 3))
    assert fit_image(tall, (64, 32)).size == (32, 64)


def test_null_text_beats_ddim_at_guidance(editor, null_inversions):
    imgs = photos()[:2]
    best = vae_roundtrip(editor, imgs)
    ddim = editor.reconstruct(editor.invert(imgs, PROMPTS[:2], method="ddim", num_steps=STEPS))
    null = editor.reconstruct(null_inversions)
    for d, n, b in zip(ddim, null, best):
        assert psnr(n, b) > psnr(d, b) + 6.0  # at least 4x lower MSE
        assert psnr(n, b) > 25.0
    # the optimiser's record: per-step inner iterations within the budget
    assert all(1 <= k <= TINY_NULL_TEXT.inner_steps for k in null_inversions[0].stats["inner_steps"])


def test_direct_reconstructs_exactly(editor):
    imgs = photos()[:2]
    inv = editor.invert(imgs, PROMPTS[:2], method="direct", num_steps=STEPS)
    for r, b in zip(editor.reconstruct(inv), vae_roundtrip(editor, imgs)):
        assert np.array_equal(np.asarray(r), np.asarray(b))


def test_negative_prompt_reconstructs_without_optimisation(editor):
    imgs = photos()[:2]
    best = vae_roundtrip(editor, imgs)
    neg = editor.reconstruct(editor.invert(imgs, PROMPTS[:2], method="negative-prompt", num_steps=STEPS))
    ddim = editor.reconstruct(editor.invert(imgs, PROMPTS[:2], method="ddim", num_steps=STEPS))
    for n, d, b in zip(neg, ddim, best):
        assert psnr(n, b) > psnr(d, b) + 3.0


def test_null_text_batched_equals_single(editor, null_inversions):
    single = [editor.invert([im], [p], method="null-text", num_steps=STEPS)[0] for im, p in zip(photos()[:2], PROMPTS[:2])]
    for a, b in zip(null_inversions, single):
        assert a.stats["inner_steps"] == b.stats["inner_steps"]
        torch.testing.assert_close(a.x_T, b.x_T, atol=1e-4, rtol=1e-4)
        # Batch-size-dependent float rounding (~1e-7) is amplified by Adam along flat directions of later steps'
        # embeddings, but the first step and everything the embeddings are for agree.
        torch.testing.assert_close(a.null_embeddings[0], b.null_embeddings[0], atol=1e-3, rtol=0)
        # The last loss is a ~5e-4 residual at the final step, where that rounding shows at the 1e-3 level (0.15% on
        # one machine); a batch that leaked between images (shared loss, shared early stop) moves it by far more.
        assert a.stats["last_loss"] == pytest.approx(b.stats["last_loss"], rel=1e-2)
    for ra, rb in zip(editor.reconstruct(null_inversions), editor.reconstruct(single)):
        assert psnr(ra, rb) > 60.0


def test_save_load_and_cache(editor, null_inversions, tmp_path, monkeypatch):
    inv = null_inversions[0]
    inv.save(tmp_path / "a.safetensors")
    back = Inversion.load(tmp_path / "a.safetensors")
    assert (back.prompt, back.method, back.num_steps, back.image_hash, back.stats) == (
        inv.prompt, inv.method, inv.num_steps, inv.image_hash, inv.stats
    )  # fmt: skip
    assert torch.equal(back.x_T, inv.x_T) and torch.equal(back.null_embeddings, inv.null_embeddings)
    # the fitted input image travels with the inversion (paste="reference" composites it) and is what was hashed
    assert back.image.dtype == torch.uint8 and torch.equal(back.image, inv.image)
    fitted = editor.prepare(photos()[:1])[0]
    assert torch.equal(inv.image, torch.from_numpy(np.array(fitted)).permute(2, 0, 1))
    assert image_hash(Image.fromarray(inv.image.permute(1, 2, 0).numpy())) == inv.image_hash

    cache = InversionCache(tmp_path / "cache")
    imgs = photos()[:1]
    first = editor.invert(imgs, PROMPTS[:1], method="negative-prompt", num_steps=STEPS, cache=cache)
    assert len(list((tmp_path / "cache").iterdir())) == 1
    calls = []
    monkeypatch.setattr(editor, "_invert_batch", lambda *a, **k: calls.append(a) or [])
    again = editor.invert(imgs, PROMPTS[:1], method="negative-prompt", num_steps=STEPS, cache=cache)
    assert calls == [] and torch.equal(again[0].x_T, first[0].x_T)
    # every determinant is in the key: a different prompt / step count / guidance misses
    monkeypatch.undo()
    editor.invert(imgs, ["a photo of a dog"], method="negative-prompt", num_steps=STEPS, cache=cache)
    editor.invert(imgs, PROMPTS[:1], method="negative-prompt", num_steps=STEPS, guidance_scale=5.0, cache=cache)
    assert len(list((tmp_path / "cache").iterdir())) == 3


def test_bad_input(editor, null_inversions):
    with pytest.raises(ValueError, match="unknown inversion method"):
        editor.invert(photos()[:1], PROMPTS[:1], method="magic")
    with pytest.raises(ValueError, match="prompts"):
        editor.invert(photos()[:2], PROMPTS[:1])
    with pytest.raises(TypeError, match="PIL"):
        editor.invert([np.zeros((8, 8, 3))], PROMPTS[:1])
    other = CounterfactualEditor(tiny_sd_pipeline("clip", seed=1))
    with pytest.raises(ValueError, match="belongs to model"):
        other.reconstruct(null_inversions)


def test_bert_text_encoder_folder(tmp_path):
    from cirsynth.testing.tiny_sd import save_tiny_sd

    folder = save_tiny_sd(tmp_path / "sd", text_encoder="bert", seed=0)
    editor = CounterfactualEditor.from_pretrained(folder, device="cpu", config=EditorConfig(null_text=TINY_NULL_TEXT))
    assert type(editor.pipe.text_encoder).__name__ == "BertModel"
    inv = editor.invert(photos()[:1], PROMPTS[:1], method="negative-prompt", num_steps=STEPS)
    assert inv[0].model_id == str(folder)
    out = editor.edit(inv, ["a photo of a dog"], blend_words=[(["cat"], ["dog"])])
    assert out[0].size == (64, 64)


def test_bf16_unet_with_fp32_null_embeddings(editor, null_inversions):
    """The reduced-precision path: bf16 UNet/text encoder, fp32 master embeddings and latents."""
    pipe = tiny_sd_pipeline("clip", seed=0)
    pipe.unet.to(torch.bfloat16)
    pipe.text_encoder.to(torch.bfloat16)
    low = CounterfactualEditor(pipe, EditorConfig(null_text=TINY_NULL_TEXT))
    imgs = photos()[:1]  # one photo: bf16 matmuls are slow on a CPU, and the property is per image
    inv = low.invert(imgs, PROMPTS[:1], method="null-text", num_steps=STEPS)
    assert inv[0].null_embeddings.dtype == torch.float32 and inv[0].settings["dtype"] == "bfloat16"
    best = vae_roundtrip(editor, imgs)
    for lo, hi, b in zip(low.reconstruct(inv), editor.reconstruct(null_inversions[:1]), best, strict=True):
        assert psnr(lo, b) > psnr(hi, b) - 4.0  # measured: -1.8 dB on this tiny model (-2.3 on the second photo)
