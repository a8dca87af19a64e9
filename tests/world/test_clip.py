import numpy as np
import pytest
import torch

from cirsynth.world.clip import WorldClipConfig, build_tokenizer, train_world_clip, world_words
from cirsynth.world.language import VOCABULARY, apply_edit, caption
from cirsynth.world.scene import random_scene

TINY = dict(image_size=32, patch_size=8, hidden_size=32, num_layers=1, num_heads=2, projection_dim=16,
            num_scenes=16, num_eval=8, steps=2, batch_size=8, log_every=1)


@pytest.fixture(scope="module")
def words():
    return world_words(num_scenes=60)


def test_every_world_word_is_one_token(words):
    assert {w for ws in VOCABULARY.values() for w in ws} <= set(words)
    tok = build_tokenizer(words)
    for w in words:
        assert len(tok(w, add_special_tokens=False)["input_ids"]) == 1, w
    # unseen text still tokenises (byte fallback) and round-trips
    ids = tok("zebra!", add_special_tokens=False)["input_ids"]
    assert len(ids) > 1 and tok.decode(ids).replace(" ", "") == "zebra!"


def test_captions_and_relative_captions_fit_the_context(words):
    tok = build_tokenizer(words, max_length=64)
    for s in range(40):
        scene = random_scene(s, num_objects=3)
        longest = max((caption(scene, v) for v in range(9)), key=len)
        assert len(tok(longest)["input_ids"]) <= 64
        assert len(tok(apply_edit(scene, "count", s).caption_edit.modification_text)["input_ids"]) <= 64


def test_tiny_training_saves_a_loadable_clip(tmp_path):
    from cirsynth.models.clip import load_clip

    report = train_world_clip(WorldClipConfig(**TINY), tmp_path / "clip", log=lambda s: None)
    assert np.isfinite(report["loss_last50"])
    assert set(report["eval_retrieval"]) == {"i2t_top1", "t2i_top1"}
    model, processor = load_clip(tmp_path / "clip")
    assert type(model).__name__ == "CLIPModel"
    from cirsynth.world.render import render

    batch = processor(text=["a red circle", "a blue star on grass"], images=[render(random_scene(0))] * 2,
                      return_tensors="pt", padding="max_length")
    assert batch["pixel_values"].shape == (2, 3, 32, 32)
    with torch.no_grad():
        out = model(**batch)
    assert out.logits_per_image.shape == (2, 2)


@pytest.mark.skipif("clip" not in __import__("cirsynth.world.assets", fromlist=["x"]).bundled_models(),
                    reason="bundled world CLIP not trained in this checkout yet")
def test_bundled_clip_matches_renders_to_their_captions():
    from cirsynth.models.clip import image_features, load_clip, text_features
    from cirsynth.world.assets import model_path
    from cirsynth.world.render import render

    model, processor = load_clip(model_path("clip"))
    rng = np.random.default_rng(31337)  # scenes unlike the training seeds
    scenes = [random_scene(rng) for _ in range(64)]
    batch = processor(text=[caption(s, i % 9) for i, s in enumerate(scenes)], images=[render(s) for s in scenes],
                      return_tensors="pt", padding="max_length", truncation=True)
    with torch.no_grad():
        img = torch.nn.functional.normalize(image_features(model, batch["pixel_values"]), dim=-1)
        txt = torch.nn.functional.normalize(text_features(model, batch["input_ids"], batch["attention_mask"]), dim=-1)
    top1 = ((img @ txt.T).argmax(1) == torch.arange(64)).float().mean().item()
    assert top1 >= 0.85  # chance is 1/64
