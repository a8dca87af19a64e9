import json

import pytest
import torch

from cirsynth.cir import (
    TrainConfig, build_training_set, evaluate_model, extract_image_features, from_triplet_dataset, load_cir_model,
    train_cir,
)
from cirsynth.models.clip import load_clip


def small_config(clip, out, **kw):
    base = dict(epochs=30, batch_size=8, lr=3e-3, projection_dim=32, hidden_dim=64, dropout=0.1, cpu=True)
    return TrainConfig(clip=str(clip), out_dir=str(out), **{**base, **kw})


def test_load_clip_errors_and_dtype(tiny_clip_dir, tmp_path):
    model, processor = load_clip(tiny_clip_dir, device="cpu", dtype="bfloat16")
    assert model.dtype == torch.bfloat16 and processor.tokenizer("make it red").input_ids[0] == 0
    with pytest.raises(OSError, match="cannot load a CLIP"):
        load_clip(tmp_path / "nothing", device="cpu")
    with pytest.raises(ValueError, match="unknown dtype"):
        load_clip(tiny_clip_dir, device="cpu", dtype="float13")


def test_feature_cache_is_keyed_on_weights(tiny_clip_dir, real_ds, tmp_path):
    split = from_triplet_dataset(real_ds.root, "train")
    model = load_cir_model(tiny_clip_dir, device="cpu")
    keys = split.gallery_keys[:5]
    a = extract_image_features(model, keys, split.open_image, source=split.source, cache_dir=tmp_path)
    assert a.shape == (5, 16) and len(list(tmp_path.iterdir())) == 1
    calls = []
    b = extract_image_features(model, keys, lambda k: calls.append(k), source=split.source, cache_dir=tmp_path)
    assert calls == [] and torch.equal(a, b)  # served from the cache
    with torch.no_grad():
        model.clip.visual_projection.weight.mul_(2)
    c = extract_image_features(model, keys, split.open_image, source=split.source, cache_dir=tmp_path)
    assert len(list(tmp_path.iterdir())) == 2 and torch.allclose(c, 2 * a, atol=1e-5)


def test_combiner_loss_falls_and_checkpoint_round_trips(tiny_clip_dir, real_ds, tmp_path):
    split = from_triplet_dataset(real_ds.root, "train")
    parts = build_training_set(split, 1.0, seed=0)
    result = train_cir(parts, small_config(tiny_clip_dir, tmp_path / "run"))
    losses = result.epoch_losses
    assert len(losses) == 30 and losses[-1] < 0.5 * losses[0]
    log = json.loads((tmp_path / "run" / "train_log.json").read_text())
    assert log["n_real"] == 24 and log["n_synthetic"] == 0 and log["epoch_losses"] == losses

    loaded = load_cir_model(result.model_dir, device="cpu")
    assert loaded.kind == "clip-combiner" and not (result.model_dir / "clip").exists()  # refers to the CLIP
    train_metrics = evaluate_model(loaded, split)
    zero_shot = evaluate_model(tiny_clip_dir, split, device="cpu")
    assert set(train_metrics) == {"R@1", "R@5", "R@10", "R@50", "queries"} and train_metrics["queries"] == 24
    assert train_metrics["R@1"] > zero_shot["R@1"]  # it learned the training triplets


def test_stage1_finetunes_clip_and_stage2_builds_on_it(tiny_clip_dir, real_ds, tmp_path):
    parts = build_training_set(from_triplet_dataset(real_ds.root, "train"), 1.0, seed=0)
    s1 = train_cir(parts, small_config(tiny_clip_dir, tmp_path / "s1", stage="clip", epochs=4, lr=1e-3))
    assert s1.epoch_losses[-1] < s1.epoch_losses[0]
    assert (s1.model_dir / "clip" / "config.json").exists()
    before = load_clip(tiny_clip_dir, device="cpu").model.visual_projection.weight
    after = load_cir_model(s1.model_dir, device="cpu")
    assert after.kind == "clip-sum" and not torch.equal(before, after.clip.visual_projection.weight)
    s2 = train_cir(parts, small_config(s1.model_dir, tmp_path / "s2", epochs=2))
    both = load_cir_model(s2.model_dir, device="cpu")
    assert both.kind == "clip-combiner"
    assert torch.equal(both.clip.visual_projection.weight, after.clip.visual_projection.weight)


def test_training_needs_negatives(tiny_clip_dir, real_ds, tmp_path):
    parts = build_training_set(from_triplet_dataset(real_ds.root, "train"), 1.0, seed=0)
    with pytest.raises(ValueError, match="batch_size >= 2"):
        train_cir(parts, small_config(tiny_clip_dir, tmp_path, batch_size=1))


def _protocol_split(real_ds, kind, name, with_targets=True):
    from cirsynth.cir import CIRQuery, CIRSplit

    base = from_triplet_dataset(real_ds.root, "test")
    keys = base.gallery_keys
    queries = [CIRQuery(str(i), q.reference, q.texts[:1] if kind == "cirr" else [q.texts[0]] * 1,
                        q.target if with_targets else None,
                        group=[q.reference, q.target] + [k for k in keys if k not in (q.reference, q.target)][:4])
               for i, q in enumerate(base.queries)]
    return CIRSplit(name, base.source, queries, base.images, kind=kind, opener=base.opener)


def test_evaluate_cirr_and_fashioniq_protocols(tiny_clip_dir, real_ds, tmp_path):
    model = load_cir_model(tiny_clip_dir, device="cpu")
    cirr = evaluate_model(model, _protocol_split(real_ds, "cirr", "cirr/val"))
    assert {"R@1", "Rsubset@1", "(R@5+Rsubset@1)/2"} <= set(cirr)
    assert cirr["(R@5+Rsubset@1)/2"] == (cirr["R@5"] + cirr["Rsubset@1"]) / 2
    assert evaluate_model(model, _protocol_split(real_ds, "cirr", "cirr/test1", False), out_dir=tmp_path) == {
        "queries": 24.0}
    sub = json.loads((tmp_path / "recall_subset_submission_test1.json").read_text())
    assert sub["metric"] == "recall_subset" and len(sub["0"]) == 3
    fiq = evaluate_model(model, [_protocol_split(real_ds, "fashioniq", "fashioniq-dress/val"),
                                 _protocol_split(real_ds, "fashioniq", "fashioniq-shirt/val")])
    assert fiq["dress/R@10"] == fiq["shirt/R@10"] == fiq["avg/R@10"]  # same data in both categories
    with pytest.raises(ValueError, match="different kinds"):
        evaluate_model(model, [_protocol_split(real_ds, "cirr", "c"), _protocol_split(real_ds, "fashioniq", "f")])
