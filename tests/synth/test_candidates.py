"""Oversampling: candidate settings drawn per edit, batched candidate edits, the caption-margin rule, cut captions."""

import dataclasses
import hashlib
import itertools
import json

import numpy as np
import pytest
from PIL import Image

from cirsynth.cli import main
from cirsynth.data import CaptionEdit, TripletDataset
from cirsynth.synth import CandidateConfig, CandidateSetting, draw_settings
from cirsynth.synth.candidates import edit_candidates, hard_negative_captions
from tests.synth.conftest import _photo


def test_draw_settings_seeded_per_edit_distinct_and_capped():
    cfg = CandidateConfig(n=5)
    a = draw_settings(cfg, "img1:0", seed=0)
    assert a == draw_settings(cfg, "img1:0", seed=0)  # a rerun draws the same candidates
    assert len(a) == 5 and len(set(a)) == 5
    grid = {(c, s, r) for c in cfg.cross_replace_choices for s in cfg.self_replace_choices for r in cfg.reweight_choices}
    assert all((x.cross_replace_steps, x.self_replace_steps, x.reweight) in grid for x in a)
    others = [draw_settings(cfg, f"img{i}:0", seed=0) for i in range(2, 8)] + [draw_settings(cfg, "img1:0", seed=1)]
    assert any(o != a for o in others)  # other edits / seeds draw other settings
    small = CandidateConfig(n=10, cross_replace_choices=(0.4,), self_replace_choices=(0.2, 0.6), reweight_choices=(1.0,))
    assert len(draw_settings(small, "k", 0)) == 2  # never more than the grid holds
    with pytest.raises(ValueError, match="replace fractions"):
        draw_settings(CandidateConfig(n=1, cross_replace_choices=(1.5,)), "k", 0)


def test_batched_candidates_equal_single_edits(tiny_models):
    from cirsynth.editing import CounterfactualEditor

    editor = CounterfactualEditor.from_pretrained(tiny_models["sd"])
    ims = editor.prepare([_photo(1), _photo(2)])
    invs = editor.invert(ims, ["a red car on a street", "a blue bird on a tree"], method="negative-prompt", num_steps=3)
    targets = ["a green car on a street", "a blue bird on a house"]
    blends = [(["red"], ["green"]), (["tree"], ["house"])]
    words = [["green"], ["house"]]
    settings = [[CandidateSetting(0.4, 0.2), CandidateSetting(0.6, 0.6, 2.0)], [CandidateSetting(0.4, 0.2, 1.5)]]
    got = edit_candidates(editor, invs, targets, blends, words, settings)
    assert [len(g) for g in got] == [2, 1]
    for p, cands in enumerate(got):
        for c, s in zip(cands, settings[p]):
            assert c.setting == s
            one = editor.edit([invs[p]], [targets[p]], cross_replace_steps=s.cross_replace_steps,
                              self_replace_steps=s.self_replace_steps, blend_words=[blends[p]],
                              reweight=[{words[p][0]: s.reweight} if s.reweight != 1 else None], return_details=True)[0]
            diff = np.abs(np.asarray(one.images[0], dtype=float) - np.asarray(c.image, dtype=float))
            assert diff.max() <= 2, diff.max()  # same pixels (up to batching round-off)
            assert (one.masks[0] == c.mask).mean() > 0.99
    # reweighting changes the picture: the two settings that differ only in the scale differ
    rw = edit_candidates(editor, invs[:1], targets[:1], blends[:1], words[:1],
                         [[CandidateSetting(0.4, 0.2, 1.0), CandidateSetting(0.4, 0.2, 3.0)]])[0]
    assert np.abs(np.asarray(rw[0].image, dtype=float) - np.asarray(rw[1].image, dtype=float)).max() > 0


def test_caption_margin_rule_against_hand_computed_cosines(tiny_models):
    import torch

    from cirsynth.synth import EditFilter, FilterConfig

    filt = EditFilter(FilterConfig(clip=tiny_models["clip"], min_caption_margin=0.0))
    ref, edi = _photo(3, (32, 32)), _photo(4, (32, 32))
    negs = ["a red car", "a green bus", "a green car at night"]
    v = filt.score([ref], [edi], ["a red car"], ["a green car"], [["red"]], [["green"]], [None], negatives=[negs])[0]
    e = filt._embed_images([edi])[0]
    t = filt._embed_texts(["a green car"])[0]
    n = filt._embed_texts(negs)
    want = float(e @ t) - float((n @ e).max())
    assert v.scores["caption_margin"] == pytest.approx(want, abs=1e-5)
    assert v.passed == (want >= 0) or any(not r.startswith("caption_margin") for r in v.failed)
    assert any(r.startswith("caption_margin") for r in v.failed) == (want < 0)
    off = EditFilter(FilterConfig(clip=tiny_models["clip"], min_caption_margin=None))
    v2 = off.score([ref], [edi], ["a red car"], ["a green car"], [["red"]], [["green"]], [None], negatives=[negs])[0]
    assert not any(r.startswith("caption_margin") for r in v2.failed)  # None disables the rule
    assert "caption_margin" not in filt.score([ref], [edi], ["a"], ["b"], [["a"]], [["b"]], [None])[0].scores
    assert torch.isfinite(torch.tensor(v.scores["caption_margin"]))


def test_a_configured_rule_without_its_score_rejects_with_what_the_score_needs(tiny_models):
    from cirsynth.synth import EditFilter, FilterConfig

    ref, edi = _photo(3, (32, 32)), _photo(4, (32, 32))
    filt = EditFilter(FilterConfig(clip=tiny_models["clip"], min_clip_i2i=None, min_clip_src_text=None,
                                   min_clip_tgt_text=None, min_clip_dir=None, min_words_margin=None,
                                   min_psnr_outside=None, min_caption_margin=-2.0, min_recaption_diff=0.0))
    v = filt.score([ref], [edi], ["a red car"], ["a green car"], [["red"]], [["green"]], [None])[0]
    assert "caption_margin" not in v.scores and not v.passed  # no negatives: not scored, so not passed
    assert any(r.startswith("caption_margin: not scored") and "hard-negative captions" in r for r in v.failed)
    assert any(r.startswith("recaption_diff: not scored") and "FilterConfig.recaptioner" in r for r in v.failed)
    assert filt.judge({**v.scores, "caption_margin": 0.1, "recaption_diff": 0.5}).passed  # with the scores it passes
    learned_only = EditFilter(FilterConfig(clip=None, min_psnr_outside=None, min_learned=0.5))
    assert learned_only.judge({}).failed == ["learned: not scored, so its rule (>= 0.5) cannot pass (needs "
                                             "FilterConfig.learned)"]
    # a filter without CLIP has no CLIP rules (the defaults' CLIP thresholds stay off) and still judges PSNR
    no_clip = EditFilter(FilterConfig(clip=None, min_psnr_outside=18.0))
    assert no_clip.judge({"psnr_outside": 30.0}).passed and not no_clip.judge({"psnr_outside": 10.0}).passed


def test_hard_negatives_are_source_and_variants_of_the_target():
    from cirsynth.captions import LexicalConfig, LexicalPerturber
    from cirsynth.world.language import lexical_vocabulary

    pert = LexicalPerturber(LexicalConfig(vocab=lexical_vocabulary()), wordnet=False)
    src, tgt = "a small red plain metal circle on the left, on grass, at midday", "a small blue plain metal circle on the left, on grass, at midday"
    negs = hard_negative_captions(pert, [tgt], [src], k=4, seed=0)[0]
    assert negs[0] == src and tgt not in negs and len(negs) == len(set(negs)) >= 3
    assert all(n != tgt for n in negs)
    assert hard_negative_captions(None, [tgt], [src], k=0, seed=0) == [[src]]


def _two_red_cars(tmp_path, seed: int):
    """An input folder of two photos and a captions file calling both "a red car on a street"."""
    imgs = tmp_path / "imgs"
    imgs.mkdir()
    for i in range(2):
        _photo(seed + i).save(imgs / f"p{i}.png")
    caps = tmp_path / "c.jsonl"
    caps.write_text("".join(json.dumps({"image": f"p{i}.png", "caption": "a red car on a street"}) + "\n" for i in range(2)))
    return imgs, caps


def test_synthesize_candidates_recorded_and_best_kept(tmp_path, tiny_models, capsys):
    imgs, caps = _two_red_cars(tmp_path, 10)
    out = tmp_path / "out"
    argv = ["synthesize", "--images", str(imgs), "--out", str(out), "--editor", tiny_models["sd"], "--captions", str(caps),
            "--clip", tiny_models["clip"], "--inversion", "negative-prompt", "--num_steps", "5", "--progress", "false",
            "--edit_types", "[color]", "--candidates", "3", "--hard_negatives", "2", "--min_caption_margin", "-1.5", "--rank_by", "caption_margin"]
    assert main(argv) == 0
    rows = [t for t in TripletDataset(out).triplets() if t.status != "failed"]
    assert len(rows) == 2
    for t in rows:
        cands = t.provenance["candidate_scores"]
        assert t.provenance["candidates"] == len(cands) == 3
        assert len({(c["cross_replace_steps"], c["self_replace_steps"], c["reweight"]) for c in cands}) == 3
        assert "caption_margin" in t.scores
        passing = [c for c in cands if c["passed"]]
        if passing:  # the kept one is the passing candidate with the best rank_by score
            assert t.status == "accepted" and t.scores["caption_margin"] == max(c["caption_margin"] for c in passing)
        assert t.provenance["candidates_passed"] == len(passing)
        # the kept candidate's LocalBlend mask is stored beside the target and named by the row (the gallery shows it)
        assert t.source_words and t.target_words  # a replacement: LocalBlend ran
        mask = Image.open(out / t.provenance["mask"])
        assert mask.size == Image.open(out / t.target).size and set(np.unique(np.asarray(mask))) <= {0, 255}


def test_cut_caption_is_a_failed_row_and_the_world_captioner_uses_its_own_length(tmp_path, capsys):
    from cirsynth.captions.captioner import Captioner, CaptionerConfig
    from cirsynth.world.assets import bundled_models
    from cirsynth.world.render import render
    from cirsynth.world.scene import random_scene

    cap_dir = bundled_models()["captioner"]
    rng = np.random.default_rng(5)
    scenes = [s for s in (random_scene(rng) for _ in range(40)) if len(s.objects) == 3][:2]
    ims = [render(s) for s in scenes]
    full, cut = Captioner.from_pretrained(cap_dir).caption(ims, return_cut=True)
    assert cut == [False, False] and all(", at " in c for c in full)  # the light phrase ends the caption: not cut
    short, cut = Captioner.from_pretrained(cap_dir, CaptionerConfig(max_new_tokens=8)).caption(ims, return_cut=True)
    assert cut == [True, True] and all(len(s) < len(f) for s, f in zip(short, full))

    imgs = tmp_path / "imgs"
    imgs.mkdir()
    for i, im in enumerate(ims):
        im.save(imgs / f"s{i}.png")
    out = tmp_path / "out"
    assert main(["synthesize", "--images", str(imgs), "--out", str(out), "--editor", str(bundled_models()["diffusion"]),
                 "--captioner", str(cap_dir), "--captioner_max_new_tokens", "8", "--vocabulary", "world", "--no-filter",
                 "--num_steps", "2", "--progress", "false"]) == 0
    rows = list(TripletDataset(out).triplets())
    assert len(rows) == 2 and all(t.status == "failed" and "cut off" in t.reason and t.reason.startswith("caption: ")
                                  for t in rows)


def test_ddpm_noise_seeds_drawn_per_candidate_distinct_and_seeded():
    from cirsynth.synth.candidates import candidate_noise_seed

    cfg = CandidateConfig(n=4)
    plain = draw_settings(cfg, "img1:0", seed=0)
    seeded = draw_settings(cfg, "img1:0", seed=0, noise_seeds=True)
    assert seeded == draw_settings(cfg, "img1:0", seed=0, noise_seeds=True)  # a rerun draws the same seeds
    assert [dataclasses.replace(s, noise_seed=None) for s in seeded] == plain  # same prompt-to-prompt settings
    pool = {candidate_noise_seed(0, j) for j in range(4)}
    assert {s.noise_seed for s in seeded} == pool and len(pool) == 4  # every candidate its own seed, index 0 among them
    assert all(s.as_dict()["noise_seed"] == s.noise_seed for s in seeded) and "noise_seed" not in plain[0].as_dict()
    orders = {tuple(s.noise_seed for s in draw_settings(cfg, f"img{i}:0", 0, noise_seeds=True)) for i in range(8)}
    assert len(orders) > 1  # the seed order is drawn per edit
    assert {s.noise_seed for s in draw_settings(cfg, "img1:0", 1, noise_seeds=True)}.isdisjoint(pool)  # per run seed
    # beyond the grid's size the noise seeds still make distinct candidates
    small = CandidateConfig(n=5, cross_replace_choices=(0.4,), self_replace_choices=(0.2, 0.6), reweight_choices=(1.0,))
    many = draw_settings(small, "k", 0, noise_seeds=True)
    assert len(many) == 5 and len(set(many)) == 5 and len({s.noise_seed for s in many}) == 5


def test_ddpm_candidates_differ_by_noise_seed_and_invert_once_per_seed(tiny_models):
    from cirsynth.editing import CounterfactualEditor
    from cirsynth.synth.candidates import candidate_noise_seed

    editor = CounterfactualEditor.from_pretrained(tiny_models["sd"])
    im = editor.prepare([_photo(1)])[0]
    src = "a red car on a street"
    s0, s1, s2 = (candidate_noise_seed(0, j) for j in range(3))
    inv0 = editor.invert([im], [src], method="ddpm", num_steps=4, seed=s0)[0]
    calls = []
    invert = editor.invert
    editor.invert = lambda ims, prompts, **kw: calls.append(list(kw["seed"])) or invert(ims, prompts, **kw)
    same = CandidateSetting(0.4, 0.6)
    # two edits of one image (sharing its inversion) whose candidates name seeds s0 (that inversion's), s1 and s2
    settings = [[dataclasses.replace(same, noise_seed=s) for s in (s0, s1, s1)],
                [dataclasses.replace(same, noise_seed=s) for s in (s2, s1)]]
    got = edit_candidates(editor, [inv0, inv0], ["a green car on a street", "a red car on a house"],
                          [(["red"], ["green"]), None], [["green"], ["house"]], settings, images=[im, im])
    assert sorted(calls[0]) == sorted([s1, s2]) and len(calls) == 1  # one batched inversion per missing seed
    px = [[np.asarray(c.image, dtype=float) for c in cs] for cs in got]
    assert np.abs(px[0][0] - px[0][1]).max() > 10  # other noise, same settings: another picture
    assert np.array_equal(px[0][1], px[0][2])  # same seed, same settings: the same picture
    assert [c.setting.noise_seed for c in got[0]] == [s0, s1, s1]
    # a candidate is exactly the edit of the ddpm inversion under its seed
    inv1 = invert([im], [src], method="ddpm", num_steps=4, seed=s1)[0]
    one = editor.edit([inv1], ["a green car on a street"], cross_replace_steps=0.4, self_replace_steps=0.6,
                      blend_words=[(["red"], ["green"])])[0]
    assert np.abs(np.asarray(one, dtype=float) - px[0][1]).max() <= 2
    with pytest.raises(ValueError, match="reference images"):
        edit_candidates(editor, [inv0], ["a green car on a street"], [None], [["green"]], [settings[1]])
    neg = invert([im], [src], method="negative-prompt", num_steps=2)[0]
    with pytest.raises(ValueError, match="need a ddpm inversion"):
        edit_candidates(editor, [neg], ["a green car on a street"], [None], [["green"]], [settings[1]], images=[im])


def test_synthesize_ddpm_candidates_have_own_noise_and_a_resumed_run_reproduces_them(tmp_path, tiny_models, capsys):
    imgs, caps = _two_red_cars(tmp_path, 20)

    def run(out):
        assert main(["synthesize", "--images", str(imgs), "--out", str(out), "--editor", tiny_models["sd"],
                     "--captions", str(caps), "--inversion", "ddpm", "--num_steps", "4", "--progress", "false",
                     "--edit_types", "[color]", "--candidates", "3", "--clip", tiny_models["clip"], "--batch_size", "1",
                     "--min_caption_margin", "-9", "--min_clip_i2i", "-1", "--min_clip_dir", "-1"]) == 0
        capsys.readouterr()
        return {t.id: t for t in TripletDataset(out).triplets()}

    full = run(tmp_path / "a")
    assert len(full) == 2 and all(t.status != "failed" for t in full.values())
    for t in full.values():
        cands = t.provenance["candidate_scores"]
        assert len({c["noise_seed"] for c in cands}) == 3  # each candidate its own inversion noise
        assert t.provenance["noise_seed"] in {c["noise_seed"] for c in cands}  # the kept one's, recorded
        assert len({c["clip_i2i"] for c in cands}) > 1  # and they are different pictures
    # the kept target is the editor's edit of the reference inverted under the recorded noise seed
    from cirsynth.editing import CounterfactualEditor

    editor = CounterfactualEditor.from_pretrained(tiny_models["sd"])
    ds = TripletDataset(tmp_path / "a")
    for t in full.values():
        pv = t.provenance
        inv = editor.invert([ds.open_image(t.reference)], [t.reference_caption], method="ddpm", num_steps=4,
                            seed=pv["noise_seed"])
        want = editor.edit(inv, [t.target_caption], cross_replace_steps=pv["cross_replace_steps"],
                           self_replace_steps=pv["self_replace_steps"], blend_words=[(t.source_words, t.target_words)],
                           reweight=[{w: pv["reweight"] for w in t.target_words} if pv["reweight"] != 1 else None])[0]
        diff = np.abs(np.asarray(want, dtype=float) - np.asarray(ds.open_image(t.target), dtype=float))
        assert diff.max() <= 2, diff.max()
    # a run that lost its last batch (shard and target) resumes and redraws the same candidates
    out = tmp_path / "b"
    first = run(out)
    last = TripletDataset(out).shard_paths()[-1]
    lost = {t.id for t in TripletDataset(out).triplets()} - {i for i in _ids_without(out, last)}
    assert len(lost) == 1
    for i in lost:
        (out / first[i].target).unlink()
    last.unlink()
    resumed = run(out)
    assert set(resumed) == set(full)
    for i, t in resumed.items():
        assert t.provenance["candidate_scores"] == full[i].provenance["candidate_scores"]
        a, b = Image.open(tmp_path / "a" / full[i].target), Image.open(out / t.target)
        assert np.array_equal(np.asarray(a), np.asarray(b))


def _ids_without(root, shard) -> set[str]:
    import pyarrow.parquet as pq

    return {i for p in TripletDataset(root).shard_paths() if p != shard for i in pq.read_table(p, columns=["id"])["id"].to_pylist()}


def test_blend_words_of_counts_backgrounds_and_off():
    import numpy as np

    from cirsynth.captions import LexicalConfig, LexicalPerturber
    from cirsynth.data import CaptionEdit
    from cirsynth.synth.candidates import blend_words_of
    from cirsynth.world.language import apply_edit, lexical_vocabulary
    from cirsynth.world.scene import random_scene

    swap = CaptionEdit("a red cube", "a blue cube", "make it blue", "color", ["red"], ["blue"])
    assert blend_words_of(swap) == (["red"], ["blue"]) and blend_words_of(swap, local_blend=False) is None
    assert blend_words_of(CaptionEdit("a", "b", "m", "color")) is None  # nothing named: no blend
    rng = np.random.default_rng(0)
    scene = random_scene(rng)
    while len(scene.objects) != 2:
        scene = random_scene(rng)
    added = apply_edit(scene, "count", rng, new_value="add").caption_edit
    src, tgt = blend_words_of(added)  # an added object: its whole phrase on the target side, one entry
    assert src == [] and len(tgt) == 1 and tgt[0] == " ".join(added.target_words) and tgt[0] in added.target_caption
    removed = apply_edit(scene, "count", rng, new_value="remove").caption_edit
    src, tgt = blend_words_of(removed)
    assert tgt == [] and len(src) == 1 and src[0] in removed.source_caption
    # background edits keep the objects' regions: the ground-truth edit and the world perturber name the same nouns
    bg = apply_edit(scene, "background", rng).caption_edit
    shapes = [o.shape for o in scene.objects]
    assert bg.keep_words == shapes and blend_words_of(bg)[2] == shapes
    lex = LexicalPerturber(LexicalConfig(vocab=lexical_vocabulary()), wordnet=False)
    edits = [e for e in lex.perturb([bg.source_caption], n=12, seed=0)[0].edits]
    assert any(e.edit_type == "background" for e in edits)
    for e in edits:
        assert (sorted(e.keep_words) == sorted(shapes)) if e.edit_type == "background" else e.keep_words == []


def test_candidate_grids_per_edit_type():
    from cirsynth.synth.settings import resolve_synth_config

    cfg = CandidateConfig(n=4, by_edit_type={"background": {"self_replace_choices": [0.0], "cross_replace_choices": [0.2]},
                                             "lighting": {"local_blend": False}})
    bg = cfg.for_edit_type("background")
    assert bg.self_replace_choices == (0.0,) and bg.cross_replace_choices == (0.2,) and bg.by_edit_type == {}
    assert {(s.cross_replace_steps, s.self_replace_steps) for s in draw_settings(bg, "k", 0)} == {(0.2, 0.0)}
    assert cfg.for_edit_type("color") is cfg and cfg.for_edit_type("lighting") is cfg  # no grids of their own
    assert draw_settings(cfg.for_edit_type("color"), "k", 0) == draw_settings(CandidateConfig(n=4), "k", 0)
    assert not cfg.local_blend("lighting", True) and cfg.local_blend("color", True) and not cfg.local_blend("color", False)
    # "mask": LocalBlend's mask without pinning (for pasting); blends() gives the editor's words and pins per edit
    loose = CandidateConfig(by_edit_type={"size": {"local_blend": "mask"}, "lighting": {"local_blend": False}})
    assert loose.local_blend("size", True) == "mask" and loose.local_blend("size", False) == "mask"
    edits = [CaptionEdit("a small red cube", "a large red cube", "make it large", "size", ["small"], ["large"]),
             CaptionEdit("a red cube", "a blue cube", "make it blue", "color", ["red"], ["blue"]),
             CaptionEdit("a cube in sun", "a cube in shade", "shade", "lighting", ["sun"], ["shade"])]
    words, pins = loose.blends(edits, True)
    assert words == [(["small"], ["large"]), (["red"], ["blue"]), None] and pins == [False, True, False]
    for bad, match in (({"colour": {}}, "unknown edit type 'colour'"), ({"size": {"self_steps": [0.2]}}, "unknown keys"),
                       ({"size": {"local_blend": "no"}}, "true, false or"), ({"size": {"reweight_choices": []}}, "non-empty")):
        with pytest.raises(ValueError, match=match):
            CandidateConfig(by_edit_type=bad)
    # a synthesize setting like the others (command line or recipe)
    got = resolve_synth_config({"images": "i", "out": "o", "editor": "e", "by_edit_type": {"size": {"local_blend": False}}})
    assert got.candidates.by_edit_type == {"size": {"local_blend": False}}


def test_fresh_start_candidates_get_their_own_seeds_and_reach_the_editor():
    cfg = CandidateConfig(n=4, by_edit_type={"background": {"start": "noise"}})
    bg, color = cfg.for_edit_type("background"), cfg.for_edit_type("color")
    assert bg.start == "noise" and color.start == "inversion" and color is cfg
    a = draw_settings(bg, "img1:0", seed=0)
    plain = draw_settings(color, "img1:0", seed=0)
    assert all(s.start_seed is None for s in plain)
    assert [dataclasses.replace(s, start_seed=None) for s in a] == plain  # the same attention settings, plus a seed
    seeds = [s.start_seed for s in a]
    assert len(set(seeds)) == 4 and seeds == [s.start_seed for s in draw_settings(bg, "img1:0", seed=0)]
    assert not set(seeds) & {s.start_seed for s in draw_settings(bg, "img2:0", seed=0)}  # other edits: other noise
    assert a[0].as_dict()["start_seed"] == seeds[0] and "start_seed" not in plain[0].as_dict()
    for bad, match in (({"by_edit_type": {"size": {"start": "fresh"}}}, r"start must be one of \['inversion', 'noise'\]"),
                       ({"start": "zero"}, "candidates.start must be one of")):
        with pytest.raises(ValueError, match=match):
            CandidateConfig(**bad)

    class Recorder:  # what edit_candidates asks of the editor
        calls = []

        def edit(self, invs, targets, **kw):
            self.calls += list(zip(targets, kw["start_noise"]))
            return [type("R", (), {"images": [(t, s)], "masks": [None]}) for t, s in zip(targets, kw["start_noise"])]

    settings = [a[:2], plain[:1]]
    invs = [type("Inv", (), {"method": "null-text"})() for _ in range(2)]
    got = edit_candidates(Recorder(), invs, ["t0", "t1"], [None, None], [["w"], ["w"]], settings)
    assert sorted(Recorder.calls, key=str) == sorted([("t0", seeds[0]), ("t0", seeds[1]), ("t1", None)], key=str)
    assert [[c.image for c in cs] for cs in got] == [[("t0", seeds[0]), ("t0", seeds[1])], [("t1", None)]]


def test_skip_choices_are_drawn_per_candidate_and_grouped_into_editor_calls():
    cfg = CandidateConfig(n=6, skip_choices=(0.0, 0.2), by_edit_type={"background": {"start": "noise",
                                                                                      "skip_choices": [0.0]}})
    drawn = draw_settings(cfg, "img1:0", seed=0)
    assert {s.skip_steps for s in drawn} == {0.0, 0.2} and len(set(drawn)) == 6
    assert all(s.skip_steps == 0.0 for s in draw_settings(cfg.for_edit_type("background"), "img1:0", seed=0))
    skipped = next(s for s in drawn if s.skip_steps)
    assert skipped.as_dict()["skip_steps"] == 0.2 and "skip_steps" not in CandidateSetting(0.4, 0.2).as_dict()
    # the default grid (skip 0 only) draws what the three-grid draw did before skips existed (cached candidates and
    # recorded settings stay valid): the same seeded permutation of the (cross, self, reweight) product
    plain = CandidateConfig(n=5)
    grid = list(itertools.product(plain.cross_replace_choices, plain.self_replace_choices, plain.reweight_choices))
    rng = np.random.default_rng(int.from_bytes(hashlib.sha256(b"0:img1:0").digest()[:8], "little"))
    assert [(s.cross_replace_steps, s.self_replace_steps, s.reweight, s.skip_steps)
            for s in draw_settings(plain, "img1:0", seed=0)] == [(*grid[i], 0.0) for i in rng.permutation(len(grid))[:5]]
    for bad, match in (({"skip_choices": (1.0,)}, r"skip_choices are fractions of the steps in \[0, 1\)"),
                       ({"start": "noise", "skip_choices": (0.1,)}, "must be \\[0\\]"),
                       ({"skip_choices": (0.1,), "by_edit_type": {"background": {"start": "noise"}}},
                        r"by_edit_type\['background'\] starts from fresh noise")):
        with pytest.raises(ValueError, match=match):
            CandidateConfig(**bad)

    class Recorder:  # what edit_candidates asks of the editor: one call per (cross, self, skip)
        calls = []

        def edit(self, invs, targets, **kw):
            self.calls.append((kw["skip_steps"], list(targets)))
            return [type("R", (), {"images": [(t, kw["skip_steps"])], "masks": [None]}) for t in targets]

    s0, s2 = CandidateSetting(0.4, 0.2), CandidateSetting(0.4, 0.2, skip_steps=0.2)
    invs = [type("Inv", (), {"method": "null-text"})() for _ in range(2)]
    got = edit_candidates(Recorder(), invs, ["t0", "t1"], [None, None], [["w"], ["w"]], [[s0, s2], [s2]])
    assert sorted(Recorder.calls) == [(0.0, ["t0"]), (0.2, ["t0", "t1"])]
    assert [[c.image for c in cs] for cs in got] == [[("t0", 0.0), ("t0", 0.2)], [("t1", 0.2)]]


def test_score_hands_each_candidates_edit_type_to_a_learned_models_type_offset(tiny_models):
    from cirsynth.synth import EditFilter, FilterConfig
    from cirsynth.synth.filters import learned_score

    ref, edi = _photo(3, (32, 32)), _photo(4, (32, 32))
    model = {"features": ["psnr_outside"], "lo": [0.0], "hi": [99.0], "mean": [20.0], "scale": [10.0], "coef": [0.0],
             "intercept": 0.0, "type_offset": {"color": 2.0, "lighting": -2.0}}
    filt = EditFilter(FilterConfig(clip=None, min_psnr_outside=None, learned=model, min_learned=0.5))
    args = ([ref] * 3, [edi] * 3, ["a red car"] * 3, ["a green car"] * 3, [["red"]] * 3, [["green"]] * 3, [None] * 3)
    v = filt.score(*args, edit_types=["color", "lighting", None])
    assert [x.passed for x in v] == [True, False, True]  # p = sigmoid(2), sigmoid(-2), sigmoid(0) = 0.5
    assert v[0].scores["learned"] == pytest.approx(learned_score(model, v[0].scores, "color"))
    assert [x.passed for x in filt.score(*args)] == [True] * 3  # no types: no offsets
    with pytest.raises(ValueError, match="2 edit_types for 3 candidates"):
        filt.score(*args, edit_types=["color", "color"])
