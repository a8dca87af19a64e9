import dataclasses

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from cirsynth.editing import CounterfactualEditor, EditorConfig, P2PAttnProcessor, P2PController, PairEdit
from cirsynth.editing.attention import AttentionReplace, p2p_attention

from .conftest import PROMPTS, STEPS, TINY_NULL_TEXT, photos, psnr


def test_identity_edit_reproduces_reconstruction(editor, null_inversions):
    rec = editor.reconstruct(null_inversions)
    same = editor.edit(null_inversions, [inv.prompt for inv in null_inversions])
    for a, b in zip(same, rec):
        assert psnr(a, b) > 60.0
    neg = editor.invert(photos()[:1], PROMPTS[:1], method="negative-prompt", num_steps=STEPS)
    assert psnr(editor.edit(neg, PROMPTS[:1])[0], editor.reconstruct(neg)[0]) > 60.0


def test_edit_changes_image_and_batched_equals_single(editor, null_inversions):
    targets = ["a photo of a dog", "a photo of a big astronaut"]
    rec = editor.reconstruct(null_inversions)
    batched = editor.edit(null_inversions, targets, return_details=True)
    assert [r.mode for r in batched] == ["replace", "refine"]
    for r, src in zip(batched, rec):
        assert psnr(r.images[0], src) < 45.0  # the edit did something
        assert psnr(r.source, src) > 60.0  # the source branch is the reconstruction
    for inv, tgt, r in zip(null_inversions, targets, batched):
        single = editor.edit([inv], [tgt])[0]
        assert psnr(single, r.images[0]) > 60.0


def test_cross_attention_control_is_used(editor, null_inversions):
    """The processor multiplies the controller's returned tensor: reweighting a word changes the edit."""
    inv = null_inversions[:1]
    plain = editor.edit(inv, ["a photo of a dog"], cross_replace_steps=1.0)[0]
    muted = editor.edit(inv, ["a photo of a dog"], cross_replace_steps=1.0, reweight=[{"dog": 0.0}])[0]
    assert psnr(plain, muted) < 50.0


def test_sweep_returns_candidates(editor, null_inversions):
    out = editor.edit(null_inversions, ["a photo of a dog", "a photo of a man"], self_replace_steps=[0.2, 0.6, 1.0])
    assert len(out) == 2 and all(len(c) == 3 for c in out)
    single = editor.edit(null_inversions[:1], ["a photo of a dog"], self_replace_steps=0.6)[0]
    assert psnr(out[0][1], single) > 60.0
    assert psnr(out[0][0], out[0][2]) < 60.0


def far_outside(m: np.ndarray, cell: int) -> np.ndarray:
    """Pixels more than ``cell`` pixels from every True pixel of ``m`` (beyond the bilinear feather's reach)."""
    grown = F.max_pool2d(torch.from_numpy(m)[None, None].float(), 2 * cell + 1, stride=1, padding=cell)
    return ~grown[0, 0].bool().numpy()


def partial_blend(pipe, inv, tgt: str, pin: bool = True):
    """A random model's word maps are nearly flat, so find the threshold that gives a partial cat->dog mask (16x16
    grid); returns ``(threshold, editor, edit, x_src, x_tgt, mask)`` of that sample."""
    from cirsynth.editing.attention import LocalBlend, cross_attention_edit

    for threshold in (0.9, 0.95, 0.98, 0.99, 0.995, 0.998):
        editor = CounterfactualEditor(pipe, EditorConfig(blend_threshold=threshold, blend_grid_divisor=1))
        blend = LocalBlend.from_words(editor.tokenizer, inv.prompt, tgt, ["cat"], ["dog"], threshold=threshold, pin=pin)
        edit = PairEdit(0, cross_attention_edit(editor.tokenizer, inv.prompt, tgt), None, blend, 8, 6)
        x_src, x_tgt, mask, _ = editor._sample([inv], [tgt], [edit])
        if 0 < mask.float().mean() < 1:
            return threshold, editor, edit, x_src, x_tgt, mask
    raise AssertionError("no threshold gave a partial mask")


@pytest.fixture(scope="module")
def cat_dog(pipe, null_inversions):
    """The first photo's cat -> dog edit with a partial pinning LocalBlend: ``partial_blend``'s tuple."""
    return partial_blend(pipe, null_inversions[0], "a photo of a dog")


def test_local_blend_keeps_outside_of_mask(pipe, null_inversions, cat_dog):
    inv, tgt = null_inversions[0], "a photo of a dog"
    threshold, _, _, x_src, x_tgt, mask = cat_dog
    outside = ~mask.expand_as(x_tgt)
    assert torch.equal(x_tgt[outside], x_src[outside])  # bit-exact outside the mask
    assert not torch.allclose(x_tgt[~outside], x_src[~outside])

    # Pasting: far outside the mask (beyond the one latent cell the bilinear feather reaches) the pixels are the
    # source branch's ("source") or the input image's ("reference"); inside, the edit's.
    plain = CounterfactualEditor(pipe, EditorConfig(blend_threshold=threshold, blend_grid_divisor=1))
    unpasted = np.asarray(plain.edit([inv], [tgt], blend_words=[(["cat"], ["dog"])])[0]).astype(int)
    reference = inv.image.permute(1, 2, 0).numpy().astype(int)  # the fitted input image the inversion kept
    for mode in ("source", "reference"):
        cfg = EditorConfig(blend_threshold=threshold, blend_grid_divisor=1, paste=mode, paste_dilate=0)
        res = CounterfactualEditor(pipe, cfg).edit([inv], [tgt], blend_words=[(["cat"], ["dog"])], return_details=True)[0]
        m, img = res.masks[0], np.asarray(res.images[0]).astype(int)
        assert m.shape == (64, 64) and 0 < m.mean() < 1
        far = far_outside(m, 64 // 16)
        assert far.any()
        want = np.asarray(res.source).astype(int) if mode == "source" else reference
        assert np.abs(img[far] - want[far]).max() <= 1  # pixels round through [-1, 1] floats
        core = far_outside(~m, 64 // 16)  # well inside the mask: the edit's own pixels
        assert core.any()
        assert np.abs(img[core] - unpasted[core]).max() <= 1
        assert not np.array_equal(img[m], want[m])
    assert not np.array_equal(reference, np.asarray(res.source))  # reference and reconstruction differ here


def test_local_blend_without_pin_measures_the_mask_only(pipe, null_inversions):
    """pin=False: the mask is measured (and pasting restores what lies outside it), the latents are not pinned."""
    inv, tgt = null_inversions[0], "a photo of a dog"
    threshold, editor, edit, x_src, x_tgt, mask = partial_blend(pipe, inv, tgt, pin=False)
    outside = ~mask.expand_as(x_tgt)
    assert not torch.allclose(x_tgt[outside], x_src[outside])  # not pinned
    no_blend = editor._sample([inv], [tgt], [dataclasses.replace(edit, blend=None)])[1]
    torch.testing.assert_close(x_tgt, no_blend)  # the latents are those of an edit without LocalBlend

    cfg = EditorConfig(blend_threshold=threshold, blend_grid_divisor=1, paste="reference", paste_dilate=0)
    ed = CounterfactualEditor(pipe, cfg)
    pinned, loose = (ed.edit([inv], [tgt], blend_words=[(["cat"], ["dog"])], blend_pin=[p], return_details=True)[0]
                     for p in (True, False))
    reference = inv.image.permute(1, 2, 0).numpy().astype(int)
    m = loose.masks[0]
    far = far_outside(m, 64 // 16)
    assert far.any() and np.abs(np.asarray(loose.images[0]).astype(int)[far] - reference[far]).max() <= 1
    assert not np.array_equal(np.asarray(loose.images[0]), np.asarray(pinned.images[0]))
    with pytest.raises(ValueError, match="blend_pin must have one entry per pair"):
        ed.edit([inv], [tgt], blend_words=[(["cat"], ["dog"])], blend_pin=[True, False])


def test_start_noise_regenerates_the_target_from_fresh_noise(editor, null_inversions, cat_dog):
    """start_noise: the target branch forgets the inversion (its noise and null embeddings) and is text-to-image from
    the seed's noise, steered by the source only through attention control and a pinning LocalBlend."""
    tgt = "a photo of a dog"
    run = lambda invs, seeds: [np.asarray(im) for im in editor.edit(  # noqa: E731
        invs, [tgt] * len(invs), cross_replace_steps=0.0, self_replace_steps=0.0, start_noise=seeds)]
    diff = lambda x, y: np.abs(x.astype(int) - y.astype(int))  # noqa: E731
    a, b, other = run([*null_inversions, null_inversions[0]], [7, 7, 8])
    # two different photos, no attention control: the seed alone decides the image (up to batch-position round-off)
    assert diff(a, b).max() <= 2, diff(a, b).max()
    assert diff(other, a).mean() > 10 * max(diff(a, b).mean(), 0.1)  # another seed, another image
    c, d = run(null_inversions, None)  # from the inversions: they differ
    assert diff(c, d).mean() > 10 * max(diff(a, b).mean(), 0.1) and diff(c, a).mean() > 10 * max(diff(a, b).mean(), 0.1)
    fresh_a, plain_d = run(null_inversions, [7, None])  # one batch, one row of each kind
    assert diff(fresh_a, a).max() <= 2 and diff(plain_d, d).max() <= 2

    inv = null_inversions[0]
    _, ed, edit, x_src, x_tgt, mask = cat_dog
    _, fresh, fresh_mask, _ = ed._sample([inv], [tgt], [dataclasses.replace(edit, start_seed=7)])
    assert 0 < fresh_mask.float().mean() < 1
    outside = ~fresh_mask.expand_as(fresh)  # its own mask: the target branch's maps feed it too
    assert torch.equal(fresh[outside], x_src[outside])  # the pinned region is still the source's
    inside = (fresh_mask & mask).expand_as(fresh)
    assert not torch.allclose(fresh[inside], x_tgt[inside])  # inside, another start gives another image
    with pytest.raises(ValueError, match="integer seeds or None, got 1.5"):
        editor.edit(null_inversions[:1], [tgt], start_noise=[1.5])
    with pytest.raises(ValueError, match="start_noise must have one entry per pair"):
        editor.edit(null_inversions, [tgt, tgt], start_noise=[1])


def test_paste_outside_feathers_and_dilates():
    from cirsynth.editing.editor import paste_outside

    mask = torch.zeros(1, 1, 8, 8, dtype=torch.bool)
    mask[..., 3:5, 3:5] = True
    edited, outside = torch.ones(1, 3, 32, 32), -torch.ones(1, 3, 32, 32)
    for dilate, inside in ((0, slice(14, 18)), (1, slice(10, 22))):
        out = paste_outside(edited, outside, mask, dilate)
        assert torch.equal(out[..., inside, inside], edited[..., inside, inside])  # the (grown) mask's core: edited
        assert torch.equal(out[..., :4, :], outside[..., :4, :])  # far away: pasted
        border = out[0, 0, 16, :16]
        assert ((border > -1) & (border < 1)).any()  # a feathered edge, not a cut along latent cells
    grown = paste_outside(edited, outside, mask, 1)
    assert (grown >= paste_outside(edited, outside, mask, 0)).all()


def test_paste_settings_checked(pipe, null_inversions):
    with pytest.raises(ValueError, match="paste must be one of"):
        EditorConfig(paste="background")
    with pytest.raises(ValueError, match="paste_dilate"):
        EditorConfig(paste_dilate=-1)
    inv = dataclasses.replace(null_inversions[0], image=None)  # as loaded from an older cache file
    editor = CounterfactualEditor(pipe, EditorConfig(paste="reference", blend_grid_divisor=1, blend_threshold=0.99))
    with pytest.raises(ValueError, match="clear the inversion cache"):
        editor.edit([inv], ["a photo of a dog"], blend_words=[(["cat"], ["dog"])])


class Boom(RuntimeError):
    pass


def test_processors_restored_after_error(editor, null_inversions, monkeypatch):
    before = dict(editor.unet.attn_processors)
    monkeypatch.setattr(P2PController, "blend", lambda *a, **k: (_ for _ in ()).throw(Boom("x")))
    with pytest.raises(Boom):
        editor.edit(null_inversions[:1], ["a photo of a dog"], blend_words=[(["cat"], ["dog"])])
    after = editor.unet.attn_processors
    assert after.keys() == before.keys() and all(after[k] is before[k] for k in before)


def test_explicit_attention_path_matches_sdpa(editor):
    """P2P's explicit softmax path equals the original processor when no edit is active."""
    unet = editor.unet
    tok = editor.tokenizer
    edit = PairEdit(0, AttentionReplace.from_prompts(tok, "a cat", "a dog"), cross_steps=0, self_steps=0)
    ctrl = P2PController([edit], 1, (16, 16), 10**9, (4, 4), torch.device("cpu"))
    x = torch.randn(2, 4, 16, 16)
    emb = editor.encode_text(["a cat", "a dog"]).seq  # (2, L, D)
    with torch.no_grad():
        ref = unet(x, 500, encoder_hidden_states=emb).sample
        with p2p_attention(unet, ctrl):
            assert all(isinstance(p, P2PAttnProcessor) for p in unet.attn_processors.values())
            ctrl.begin_step(STEPS, 0)
            calls = []
            ctrl.wants = lambda is_cross, q: calls.append(q) or True
            out = unet(x, 500, encoder_hidden_states=emb).sample
    assert len(calls) == len(unet.attn_processors)
    torch.testing.assert_close(out, ref, atol=1e-5, rtol=1e-4)


def test_fast_layers_keep_their_processor(editor, null_inversions, monkeypatch):
    """Self-attention layers above self_replace_max_tokens never take the explicit path."""
    seen = []
    real = P2PController.__call__

    def spy(self, probs, is_cross):
        seen.append((is_cross, probs.shape[2]))
        return real(self, probs, is_cross)

    monkeypatch.setattr(P2PController, "__call__", spy)
    small = CounterfactualEditor(editor.pipe, EditorConfig(null_text=TINY_NULL_TEXT, self_replace_max_tokens=8 * 8))
    small.edit(null_inversions[:1], ["a photo of a dog"], cross_replace_steps=0.5, self_replace_steps=0.5)
    self_q = {q for c, q in seen if not c}
    assert self_q == {64}  # 8x8 layers only; 16x16 self-attention stayed on SDPA
    n_cross = sum(1 for n, m in editor.unet.named_modules() if n.endswith("attn2"))
    assert len([1 for c, _ in seen if c]) == 5 * n_cross  # cross window 0.5 * 10 steps; no blend afterwards


def test_edit_argument_errors(editor, null_inversions):
    with pytest.raises(ValueError, match="target prompts"):
        editor.edit(null_inversions, ["x"])
    with pytest.raises(ValueError, match="one entry per pair"):
        editor.edit(null_inversions, ["a dog", "a man"], blend_words=[(["cat"], ["dog"])])
    with pytest.raises(ValueError, match="does not occur"):
        editor.edit(null_inversions[:1], ["a photo of a dog"], blend_words=[(["horse"], ["dog"])])
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        editor.edit(null_inversions[:1], ["a photo of a dog"], self_replace_steps=1.5)


def test_blend_grid_is_p2ps_for_sd_and_never_coarser_than_16_cells():
    from cirsynth.editing.editor import blend_grid

    assert blend_grid(64, 64, 4, 16) == (16, 16)  # SD-1.5 at 512 px: P2P's 16 x 16
    assert blend_grid(96, 64, 4, 16) == (24, 16)  # larger pictures keep the divisor
    assert blend_grid(16, 16, 4, 16) == (16, 16)  # the world model: 16 x 16, not 4 x 4 cells of 16 pixels
    assert blend_grid(8, 8, 4, 16) == (8, 8)  # never finer than the latent


def test_blend_mask_leaves_out_the_kept_words_regions():
    from cirsynth.editing.attention import LocalBlend

    L = 8

    def blend(src, keep):  # token 1 changes, token 2 is kept
        s, k = torch.zeros(L), torch.zeros(L)
        if src is not None:
            s[src] = 1.0
        if keep is not None:
            k[keep] = 1.0
        return LocalBlend(source_tokens=s, target_tokens=torch.zeros(L), threshold=0.3, keep_tokens=k)

    cross = AttentionReplace(mapper=torch.arange(L), alpha=torch.ones(L))
    edits = [PairEdit(0, cross, None, blend(1, 2)), PairEdit(0, cross, None, blend(None, 2)),
             PairEdit(0, cross, None, blend(1, None)), PairEdit(0, cross, None, None)]
    ctl = P2PController(edits, 1, (4, 4), 16, (4, 4), torch.device("cpu"))
    changed = torch.zeros(4, 4)
    changed[:, :2] = 1.0  # the changed word attends to the left half
    kept = torch.zeros(4, 4)
    kept[:2, :] = 1.0  # the kept word to the top half
    ctl.maps_src[:, 0] = changed
    ctl.maps_keep[:, 0] = kept
    x_src, x_tgt = torch.zeros(1, 2, 4, 4), torch.ones(4, 2, 4, 4)
    out, mask, _ = ctl.blend(x_src, x_tgt)
    m = mask[:, 0]
    # pooling (3x3 max) widens each region by one cell; the kept region wins over the changed one
    changed_px = torch.nn.functional.max_pool2d(changed[None, None], 3, 1, 1)[0, 0] > 0.3
    kept_px = torch.nn.functional.max_pool2d(kept[None, None], 3, 1, 1)[0, 0] > 0.3
    assert torch.equal(m[0], changed_px & ~kept_px)
    assert torch.equal(m[1], ~kept_px)  # keep words only: everything but the kept region
    assert torch.equal(m[2], changed_px)  # no keep words: as before
    assert m[3].all()  # no blend at all
    assert torch.equal(out[:, 0] == 1, m)  # the target inside the mask, the source outside


def test_kept_regions_pool_wider_and_threshold_lower_than_the_changed_words():
    from cirsynth.editing.attention import LocalBlend

    L, G = 8, 9
    s, k = torch.zeros(L), torch.zeros(L)  # no changed words (a background edit), token 2 kept
    k[2] = 1.0
    cross = AttentionReplace(mapper=torch.arange(L), alpha=torch.ones(L))
    kept_map = torch.zeros(G, G)
    kept_map[4, 4], kept_map[4, 5] = 1.0, 0.25  # an object's map: a peak and a weak shoulder
    out = {}
    for name, (thr, pool) in {"as-changed": (None, 3), "wide": (0.2, 5)}.items():
        edit = PairEdit(0, cross, None, LocalBlend(s, torch.zeros(L), threshold=0.3, keep_tokens=k, keep_threshold=thr))
        ctl = P2PController([edit], 1, (G, G), 16, (G, G), torch.device("cpu"), keep_pool=pool)
        ctl.maps_keep[0, 0] = kept_map
        _, mask, kept = ctl.blend(torch.zeros(1, 1, G, G), torch.ones(1, 1, G, G))
        assert torch.equal(mask[0, 0], ~kept[0, 0])  # no changed-word map: everything but the kept region
        out[name] = kept[0, 0]
    peak = torch.nn.functional.max_pool2d(kept_map[None, None], 3, 1, 1)[0, 0] > 0.3
    assert torch.equal(out["as-changed"], peak)  # the shoulder (0.25) falls under 0.3
    wide = torch.nn.functional.max_pool2d(kept_map[None, None], 5, 1, 2)[0, 0] > 0.2
    assert torch.equal(out["wide"], wide) and (wide & ~peak).any() and not (peak & ~wide).any()
    with pytest.raises(ValueError, match="keep_pool"):
        P2PController([edit], 1, (G, G), 16, (G, G), torch.device("cpu"), keep_pool=4)


def test_paste_margin_never_grows_into_kept_regions():
    from cirsynth.editing.editor import paste_outside

    mask = torch.zeros(1, 1, 4, 4, dtype=torch.bool)
    mask[..., :, :2] = True  # the edit acts on the left half
    kept = torch.zeros_like(mask)
    kept[..., :, 2] = True  # an object right beside it
    edited, outside = torch.ones(1, 3, 4, 4), torch.zeros(1, 3, 4, 4)
    grown = paste_outside(edited, outside, mask, 1)
    assert (grown[..., :, 2] > 0).all()  # the margin reaches the object's column ...
    guarded = paste_outside(edited, outside, mask, 1, kept)
    assert (guarded[..., :, 2] == 0).all() and (guarded[..., :, :2] == 1).all()  # ... unless it is kept


def test_kept_cells_lose_their_old_background():
    """A background edit keeps an object's latent cells whole; with kept_background the pixels of those cells that
    have the old background's colours take the edited pixels, and the object's own pixels stay pasted."""
    from cirsynth.editing.editor import old_background, paste_outside

    outside = torch.zeros(1, 3, 16, 16)
    outside[:, 2] = 0.6  # the old background: blue ...
    outside[:, 2, 1::2, :] = 0.4  # ... with a two-colour texture
    outside[:, :, 7:9, 7:9] = torch.tensor([0.9, -0.9, -0.9])[:, None, None]  # a red object inside the kept cells
    kept = torch.zeros(1, 1, 4, 4, dtype=torch.bool)
    kept[..., 1:3, 1:3] = True  # the object's cells: pixels 4..11 (alpha feathers over 4..5 and 10..11)
    mask = ~kept  # the edit replaces everything else
    edited = torch.full((1, 3, 16, 16), -0.5)
    core = (..., slice(6, 10), slice(6, 10))
    whole = paste_outside(edited, outside, mask, 0, kept)
    assert torch.equal(whole[core], outside[core])  # off: the cells' core pasted whole, old blue with the object
    fixed = paste_outside(edited, outside, mask, 0, kept, kept_background=0.02)
    assert torch.equal(fixed[..., 7:9, 7:9], outside[..., 7:9, 7:9])  # the object stays the reference's
    ring = torch.zeros(16, 16, dtype=torch.bool)
    ring[4:12, 4:12] = True
    ring[7:9, 7:9] = False
    assert torch.equal(fixed[..., ring], edited[..., ring])  # its old background takes the edit's pixels
    near = old_background(outside, mask, kept, 0.02)[0, 0]
    assert torch.equal(near.bool(), ring)  # exactly the blue pixels of the kept cells
    assert old_background(outside, mask, torch.zeros_like(kept), 0.02).sum() == 0  # nothing kept: nothing to find
    with pytest.raises(ValueError, match="kept_background"):
        EditorConfig(kept_background=1.5)
