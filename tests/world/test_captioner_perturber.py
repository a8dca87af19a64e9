import json

import numpy as np
import pytest
from PIL import Image

from cirsynth.world.captioner import WorldCaptionerConfig, build_processor, caption_scores, world_words
from cirsynth.world.language import caption_variants, tokenize
from cirsynth.world.perturber import evaluate_perturber, grounded_lexical_edits, scenes_and_captions
from cirsynth.world.scene import random_scene


def test_captioner_vocabulary_covers_every_paraphrase_of_new_scenes():
    tok = build_processor(WorldCaptionerConfig()).tokenizer
    rng = np.random.default_rng(99)  # other scenes than the vocabulary was collected from
    for _ in range(50):
        for text in caption_variants(random_scene(rng)):
            ids = tok(text)["input_ids"]
            assert tok.unk_token_id not in ids, text
            assert tok.decode(ids, skip_special_tokens=True).split() == text.lower().split()
    assert "circle" in world_words() and "," in world_words()


def test_caption_scores():
    s = caption_scores(["a red circle", "a red circle , on grass"], ["a red circle", "a blue circle , on grass"])
    assert s["exact_match"] == 0.5
    assert s["word_accuracy"] == pytest.approx((3 + 5) / (3 + 6))


def test_train_captioner_command_writes_a_captioner_that_loads_through_the_real_path(tmp_path, capsys):
    from cirsynth.captions.captioner import Captioner
    from cirsynth.cli import main

    out = tmp_path / "captioner"
    args = ["world", "train", "captioner", str(out), "--steps", "40", "--num_scenes", "64", "--num_eval", "4",
            "--hidden_size", "32", "--vision_layers", "1", "--text_layers", "1", "--batch_size", "16", "--log_every", "10"]
    assert main(args) == 0
    assert "captioner step 40/40" in capsys.readouterr().out
    report = json.loads((out / "training_report.json").read_text())
    assert report["loss_last50"] < report["loss_first"]  # it learns the caption grammar
    card = json.loads((out / "card.json").read_text())
    assert card["command"].startswith(f"cirsynth world train captioner {out} --steps 40")
    assert set(card["quality"]["held_out"]) == {"exact_match", "word_accuracy", "n"}
    cap = Captioner.from_pretrained(out)
    assert type(cap.model).__name__ == "BlipForConditionalGeneration"
    texts = cap.caption([Image.new("RGB", (64, 64), (200, 30, 30))] * 2)
    assert len(texts) == 2 and all(isinstance(t, str) for t in texts)
    words = set(world_words())
    assert all(w in words for t in texts for w in tokenize(t))  # only world words come out


def test_grounded_lexical_edits_all_map_to_one_attribute_changes():
    from cirsynth.world.ground_truth import ground_truth

    scenes, captions = scenes_and_captions(40, seed=3)
    edits, dropped = grounded_lexical_edits(scenes, captions, 2, seed=0, edit_types=["color", "size", "subject"])
    assert len(edits) >= 40
    by_caption = {c: s for s, c in zip(scenes, captions)}
    for e in edits:
        change = ground_truth(by_caption[e.source_caption], 0, e.target_caption)
        assert change is not None and len(change.caption_edit.source_words) >= 1
    assert sum(dropped.values()) >= 0 and all(isinstance(k, str) for k in dropped)


def test_evaluate_perturber_counts_valid_and_grounded_edits():
    from cirsynth.captions.lexical import LexicalConfig, LexicalPerturber
    from cirsynth.world.language import lexical_vocabulary

    scenes, captions = scenes_and_captions(30, seed=4)
    lexical = LexicalPerturber(LexicalConfig(vocab=lexical_vocabulary()))
    report = evaluate_perturber(lexical, scenes, captions, ["color", "material", "lighting"], seed=0)
    assert report["requests"] == 30 and report["valid"] == 30  # lexical always finds these
    assert report["grounded"] == 30  # colour/material/lighting swaps always name one scene change
    assert sum(t["valid"] for t in report["per_edit_type"].values()) == 30
    # a caption of a different scene cannot be grounded in this one
    wrong = evaluate_perturber(lexical, scenes[1:] + scenes[:1], captions, ["color"], seed=0)
    assert wrong["valid"] == 30 and wrong["grounded"] < 5


def test_a_trained_captioner_trains_further_from_init_and_refuses_another_architecture(tmp_path):
    from cirsynth.cli import main
    from cirsynth.world.captioner import load_for_training

    first, second = tmp_path / "first", tmp_path / "second"
    small = ["--hidden_size", "32", "--vision_layers", "1", "--text_layers", "1", "--batch_size", "16",
             "--num_scenes", "48", "--num_eval", "4", "--log_every", "10"]
    assert main(["world", "train", "captioner", str(first), "--steps", "60", *small]) == 0
    assert main(["world", "train", "captioner", str(second), "--steps", "10", "--lr", "0.0003", "--init", str(first),
                 *small]) == 0
    report = json.loads((second / "training_report.json").read_text())
    before = json.loads((first / "training_report.json").read_text())
    assert report["init"]["command"].startswith(f"cirsynth world train captioner {first} --steps 60")
    assert report["init"]["held_out"] == before["eval"]
    assert json.loads((second / "card.json").read_text())["init"] == report["init"]
    # it went on from the trained weights: its first loss is near the first run's end (~2.9), not a fresh start (~3.9)
    assert report["loss_first"] < before["loss_first"] - 0.5
    with pytest.raises(ValueError, match="hidden_size: 32 in .*, 64 asked"):
        load_for_training(WorldCaptionerConfig(hidden_size=64, vision_layers=1, text_layers=1, init=str(first)))
    with pytest.raises(FileNotFoundError, match="not a trained captioner folder"):
        load_for_training(WorldCaptionerConfig(init=str(tmp_path / "nothing")))


def test_render_batch_is_the_same_for_any_number_of_workers():
    from cirsynth.world.render import render_array, render_batch

    rng = np.random.default_rng(4)
    scenes = [random_scene(rng) for _ in range(5)]
    one, masks = render_batch(scenes, 32, workers=1, masks=True)
    two, masks2 = render_batch(scenes, 32, workers=2, masks=True)
    assert one.shape == (5, 32, 32, 3) and masks.shape == (5, 1, 32, 32)
    np.testing.assert_array_equal(one, two)
    np.testing.assert_array_equal(masks, masks2)
    np.testing.assert_allclose(one[3], render_array(scenes[3], 32), atol=1e-6)
    assert render_batch(scenes, 32)[1] is None and render_batch([], 32)[0].shape == (0, 32, 32, 3)
    with pytest.raises(ValueError, match="workers must be >= 1"):
        render_batch(scenes, 32, workers=0)


def test_autoencoder_round_trip_gives_back_the_render_through_the_bundled_vae(tmp_path):
    from cirsynth.world.captioner import _renders, autoencoder_round_trip
    from cirsynth.world.recipe import bundled_model

    images, _ = _renders(4, 3, 64)
    back = autoencoder_round_trip(bundled_model("editor"), images)
    assert back.shape == images.shape and back.dtype == np.float32 and 0 <= back.min() and back.max() <= 1
    mse = float(((back - images) ** 2).mean())
    assert 0 < mse and -10 * np.log10(mse) > 25  # close to the render, yet not the render itself
    with pytest.raises(FileNotFoundError, match="no AutoencoderKL there"):
        autoencoder_round_trip(tmp_path, images)


def test_captioner_batches_show_the_autoencoder_round_trip_and_are_blurred(tmp_path, monkeypatch):
    import torch

    import cirsynth.world.captioner as wc
    from cirsynth.world.recipe import bundled_model

    seen, sigmas = [], []

    def blur(x, sigma):  # records the batch the model is about to see (after the round-trip choice) and its sigma
        seen.append(x.clone())
        sigmas.append(sigma)
        return x + 1.0  # what the model is given instead: the blurred batch, not the one before it

    monkeypatch.setattr(wc, "gaussian_blur", blur)
    # a stand-in round trip that turns every render grey: a batch that shows it is constant per channel
    monkeypatch.setattr(wc, "autoencoder_round_trip", lambda folder, images: np.full_like(images, 0.5))
    small = dict(hidden_size=32, vision_layers=1, text_layers=1, batch_size=8, num_scenes=16, num_eval=2, steps=2,
                 log_every=1, blur_max=1.0, autoencoder=bundled_model("editor"))
    report = wc.train_world_captioner(WorldCaptionerConfig(**small, autoencoder_share=1.0), tmp_path / "a", log=lambda s: None)
    assert len(seen) == 2 and all(torch.allclose(x, x[:, :, :1, :1].expand_as(x)) for x in seen)
    assert all(0 <= s <= 1.0 for s in sigmas) and len(set(sigmas)) == 2  # a sigma drawn per batch in [0, blur_max]
    assert set(report["eval_autoencoded"]) == {"exact_match", "word_accuracy", "n"}
    seen.clear()
    wc.train_world_captioner(WorldCaptionerConfig(**small, autoencoder_share=0.0), tmp_path / "b", log=lambda s: None)
    assert len(seen) == 2 and not any(torch.allclose(x, x[:, :, :1, :1].expand_as(x)) for x in seen)  # the renders

    def no_rendering(*args, **kwargs):
        raise AssertionError("rendered before the settings were checked")

    monkeypatch.setattr(wc, "_renders", no_rendering)
    bad = [({"autoencoder": ""}, 0.5, "needs an autoencoder"), ({}, 1.5, r"must lie in \[0, 1\]"),
           ({"blur_max": -1.0}, 0.0, "blur_max must be >= 0"), ({"blur_max": 30.0}, 0.0, "narrower than the 64-px"),
           ({"autoencoder": str(tmp_path)}, 0.5, "no AutoencoderKL there")]
    for change, share, why in bad:
        with pytest.raises((ValueError, FileNotFoundError), match=why):
            wc.train_world_captioner(WorldCaptionerConfig(**{**small, **change}, autoencoder_share=share), tmp_path / "c")


def test_train_captioner_command_records_the_autoencoder_it_round_tripped_through(tmp_path):
    from cirsynth.cli import main

    out = tmp_path / "captioner"
    assert main(["world", "train", "captioner", str(out), "--steps", "2", "--num_scenes", "16", "--num_eval", "2",
                 "--hidden_size", "32", "--vision_layers", "1", "--text_layers", "1", "--batch_size", "8",
                 "--autoencoder", "bundled", "--autoencoder_share", "0.5", "--blur_max", "0.5"]) == 0
    card = json.loads((out / "card.json").read_text())
    assert card["autoencoder"]["folder"] == "bundled:diffusion" and len(card["autoencoder"]["weights"]) == 64
    assert "--autoencoder bundled --autoencoder_share 0.5 --blur_max 0.5" in card["command"]
    assert "--init '' " in card["command"]  # an empty option is written so that the line runs
    assert set(card["quality"]["held_out_autoencoded"]) == {"exact_match", "word_accuracy", "n"}
