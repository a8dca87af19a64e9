"""Edit-friendly DDPM inversion and direct inversion's add-target variant: exactness and identity edits."""

import numpy as np
import pytest
import torch

from cirsynth.editing import CounterfactualEditor, EditorConfig, Inversion, InversionCache, PairEdit
from cirsynth.editing.attention import cross_attention_edit

from .conftest import PROMPTS, STEPS, photos, psnr

DOG = ["a photo of a dog", "a photo of a dog"]


@pytest.fixture(scope="module")
def ddpm_inversions(editor):
    return editor.invert(photos()[:2], PROMPTS[:2], method="ddpm", num_steps=STEPS, seed=0)


def test_ddpm_reconstructs_exactly(editor, ddpm_inversions):
    z0 = editor.encode_images(editor.prepare(photos()[:2]))  # (2, C, h, w)
    x0 = editor._sample(ddpm_inversions)[0]
    torch.testing.assert_close(x0, z0, atol=1e-4, rtol=0)  # no optimisation, yet the trajectory is hit exactly
    best = editor.decode_latents(z0)
    for r, b in zip(editor.reconstruct(ddpm_inversions), editor.decode_latents(x0)):
        assert psnr(r, ((b.permute(1, 2, 0) + 1) * 127.5).round().clamp(0, 255).numpy()) > 60.0
    assert ddpm_inversions[0].noise.shape == (STEPS, *z0.shape[1:]) and best.shape[0] == 2


def test_ddpm_identity_edit_is_the_reconstruction(editor, ddpm_inversions):
    rec = editor.reconstruct(ddpm_inversions)
    for same, r in zip(editor.edit(ddpm_inversions, PROMPTS[:2]), rec):
        assert psnr(same, r) > 60.0
    for edited, r in zip(editor.edit(ddpm_inversions, DOG), rec):
        assert psnr(edited, r) < 50.0  # and a real edit changes the image


def test_ddpm_seeds_give_distinct_candidates(editor, ddpm_inversions):
    imgs = photos()[:2]
    again = editor.invert(imgs, PROMPTS[:2], method="ddpm", num_steps=STEPS, seed=0)
    other = editor.invert(imgs, PROMPTS[:2], method="ddpm", num_steps=STEPS, seed=[1, 2])
    for a, b, c in zip(ddpm_inversions, again, other):
        assert torch.equal(a.x_T, b.x_T) and torch.equal(a.noise, b.noise)  # same seed: same inversion
        assert not torch.allclose(a.noise, c.noise) and c.settings["seed"] != a.settings["seed"]
    # an image's noise does not depend on its batch (only the VAE's batch-size rounding, ~1e-6, remains)
    alone = editor.invert(imgs[1:], PROMPTS[1:2], method="ddpm", num_steps=STEPS, seed=0)[0]
    torch.testing.assert_close(alone.x_T, ddpm_inversions[1].x_T, atol=1e-4, rtol=0)
    same_edit, edit_a, edit_c = (editor.edit(invs, DOG) for invs in (again, ddpm_inversions, other))
    for s, a, c, rc, ra in zip(same_edit, edit_a, edit_c, editor.reconstruct(other), editor.reconstruct(ddpm_inversions)):
        assert np.array_equal(np.asarray(s), np.asarray(a))
        assert psnr(a, c) < 50.0  # different noise maps: a different candidate of the same edit ...
        assert psnr(rc, ra) > 50.0  # ... while both reconstruct the image
    with pytest.raises(ValueError, match="seeds"):
        editor.invert(imgs, PROMPTS[:2], method="ddpm", num_steps=STEPS, seed=[1])


def test_ddpm_save_load_and_seed_in_cache_key(editor, ddpm_inversions, tmp_path):
    inv = ddpm_inversions[0]
    inv.save(tmp_path / "a.safetensors")
    back = Inversion.load(tmp_path / "a.safetensors")
    assert torch.equal(back.noise, inv.noise) and back.settings == inv.settings
    with pytest.raises(ValueError, match="noise maps"):
        Inversion(**{**inv.__dict__, "noise": None})
    cache = InversionCache(tmp_path / "cache")
    for seed in (0, 0, 1):
        editor.invert(photos()[:1], PROMPTS[:1], method="ddpm", num_steps=STEPS, seed=seed, cache=cache)
    assert len(list((tmp_path / "cache").iterdir())) == 2


def test_direct_add_target_identity_edit_is_the_reconstruction(pipe):
    """The add-target offset (default) makes an identity edit exact; source-only leaves it off."""
    errors = {}
    for add in (True, False):
        ed = CounterfactualEditor(pipe, EditorConfig(direct_add_target=add))
        inv = ed.invert(photos()[:1], PROMPTS[:1], method="direct", num_steps=STEPS)
        rec, same = ed.reconstruct(inv)[0], ed.edit(inv, PROMPTS[:1])[0]
        errors[add] = np.abs(np.asarray(same, float) - np.asarray(rec, float)).mean() / 255
        assert psnr(ed.edit(inv, DOG[:1])[0], rec) < 50.0
    assert errors[True] < 1e-3 and errors[False] > 0.01
    assert EditorConfig().direct_add_target


def test_skip_steps_follow_the_source_then_edit(editor, ddpm_inversions):
    """skip_steps (edit-friendly DDPM's T_skip): the target branch is the reconstruction for its first steps, so the more
    it skips the closer the edit stays to the input; pairs with different skips share one batch exactly."""
    rec = editor.reconstruct(ddpm_inversions)
    by_skip = {s: editor.edit(ddpm_inversions, DOG, cross_replace_steps=0.0, self_replace_steps=0.0, skip_steps=s)
               for s in (0.0, 0.3, 0.7)}
    for k in range(2):
        closeness = [psnr(by_skip[s][k], rec[k]) for s in (0.0, 0.3, 0.7)]
        assert closeness[0] < closeness[1] < closeness[2] < 60.0, closeness  # nearer the input, still edited
    # one _sample call with two skips equals each alone
    cross = cross_attention_edit(editor.tokenizer, ddpm_inversions[0].prompt, DOG[0], "auto")
    edits = [PairEdit(0, cross, skip_steps=3), PairEdit(0, cross, skip_steps=7)]
    _, both, _, _ = editor._sample(ddpm_inversions[:1], DOG, edits)
    for j, e in enumerate(edits):
        _, alone, _, _ = editor._sample(ddpm_inversions[:1], DOG[:1], [e])
        torch.testing.assert_close(both[j], alone[0], atol=1e-4, rtol=0)
    with pytest.raises(ValueError, match="skip_steps is a fraction"):
        editor.edit(ddpm_inversions[:1], DOG[:1], skip_steps=1.0)
    with pytest.raises(ValueError, match="cannot have both"):
        editor.edit(ddpm_inversions[:1], DOG[:1], skip_steps=0.2, start_noise=[3])
