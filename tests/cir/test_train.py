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
    s2 = train_cir(parts, small_config(s1.model_dir, tmp_path / "s2", epochs=2, save_every=1))
    both = load_cir_model(s2.model_dir, device="cpu")
    assert both.kind == "clip-combiner"
    assert torch.equal(both.clip.visual_projection.weight, after.clip.visual_projection.weight)
    mid = load_cir_model(tmp_path / "s2" / "checkpoints" / "epoch-1", device="cpu")  # carries the fine-tuned CLIP too
    assert mid.kind == "clip-combiner" and torch.equal(mid.clip.visual_projection.weight, after.clip.visual_projection.weight)


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


class _Crash(Exception):
    """Stands in for a kill in the middle of writing a checkpoint."""


def _crash_while_publishing(monkeypatch, checkpoint_name):
    """Make the rename that publishes ``checkpoints/<checkpoint_name>`` raise, as if the process died there."""
    from cirsynth.cir import train as train_module

    publish = train_module._publish

    def crashing(tmp, final):
        if final.name == checkpoint_name:
            raise _Crash(checkpoint_name)
        publish(tmp, final)

    monkeypatch.setattr(train_module, "_publish", crashing)


def _weights(folder, name):
    from safetensors.torch import load_file

    return load_file(str(folder / name))


def test_resume_after_a_crash_ends_with_the_uninterrupted_weights(tiny_clip_dir, real_ds, tmp_path, monkeypatch):
    from cirsynth.cir import latest_checkpoint

    parts = build_training_set(from_triplet_dataset(real_ds.root, "train"), 1.0, seed=0)
    # dropout, two text variants per query, shuffling and a warm-up + cosine schedule: every piece of state counts
    kw = dict(epochs=6, save_every=1, lr_schedule="cosine", warmup_steps=3, dropout=0.3, seed=5,
              cache_dir=str(tmp_path / "cache"))
    full = train_cir(parts, small_config(tiny_clip_dir, tmp_path / "full", **kw))

    _crash_while_publishing(monkeypatch, "epoch-4")
    with pytest.raises(_Crash):
        train_cir(parts, small_config(tiny_clip_dir, tmp_path / "cut", **kw))
    monkeypatch.undo()
    ckpts = tmp_path / "cut" / "checkpoints"
    # epoch 4 was written in full under its temp name but never appeared: the newest checkpoint is epoch 3
    assert sorted(p.name for p in ckpts.iterdir()) == [".epoch-4.tmp", "epoch-1", "epoch-2", "epoch-3"]
    assert latest_checkpoint(tmp_path / "cut") == ckpts / "epoch-3" and not (tmp_path / "cut" / "model").exists()
    assert load_cir_model(ckpts / "epoch-3", device="cpu").kind == "clip-combiner"  # a checkpoint is a model folder

    resumed = train_cir(parts, small_config(tiny_clip_dir, tmp_path / "cut", resume=True, **kw))
    assert resumed.resumed_from == 3 and full.resumed_from == 0
    assert resumed.epoch_losses == pytest.approx(full.epoch_losses, rel=1e-6)
    a, b = _weights(full.model_dir, "combiner.safetensors"), _weights(resumed.model_dir, "combiner.safetensors")
    assert a.keys() == b.keys()
    for k in a:
        torch.testing.assert_close(b[k], a[k], rtol=1e-6, atol=1e-7)
    assert sorted(p.name for p in ckpts.iterdir()) == [f"epoch-{i}" for i in range(1, 7)]  # the leftover is gone
    assert json.loads((tmp_path / "cut" / "train_log.json").read_text())["resumed_from"] == 3

    # a run with other settings or other data does not continue from these checkpoints
    with pytest.raises(ValueError, match="other settings.*lr"):
        train_cir(parts, small_config(tiny_clip_dir, tmp_path / "cut", resume=True, **{**kw, "lr": 1e-3}))
    with pytest.raises(ValueError, match="other settings.*epochs"):  # the cosine schedule depends on the length
        train_cir(parts, small_config(tiny_clip_dir, tmp_path / "cut", resume=True, **{**kw, "epochs": 8}))
    fewer = build_training_set(from_triplet_dataset(real_ds.root, "train"), 0.5, seed=0)
    with pytest.raises(ValueError, match="other queries"):
        train_cir(fewer, small_config(tiny_clip_dir, tmp_path / "cut", resume=True, **kw))
    # accelerate only logs when it cannot restore the RNGs; the trainer refuses to go on
    (ckpts / "epoch-6" / "accelerate" / "random_states_0.pkl").unlink()
    with pytest.raises(RuntimeError, match="RNG"):
        train_cir(parts, small_config(tiny_clip_dir, tmp_path / "cut", resume=True, **kw))


def test_resume_extends_a_constant_lr_run_and_starts_afresh_without_checkpoints(tiny_clip_dir, real_ds, tmp_path):
    parts = build_training_set(from_triplet_dataset(real_ds.root, "train"), 1.0, seed=0)
    kw = dict(save_every=2, cache_dir=str(tmp_path / "cache"))
    full = train_cir(parts, small_config(tiny_clip_dir, tmp_path / "full", epochs=4, **kw))
    train_cir(parts, small_config(tiny_clip_dir, tmp_path / "grown", epochs=2, **kw))
    grown = train_cir(parts, small_config(tiny_clip_dir, tmp_path / "grown", epochs=4, resume=True, **kw))
    assert grown.resumed_from == 2 and grown.epoch_losses == pytest.approx(full.epoch_losses, rel=1e-6)
    with pytest.warns(UserWarning, match="no checkpoint"):
        fresh = train_cir(parts, small_config(tiny_clip_dir, tmp_path / "fresh", epochs=4, resume=True, **kw))
    assert fresh.resumed_from == 0 and fresh.epoch_losses == pytest.approx(full.epoch_losses, rel=1e-6)


def test_blip_resume_after_a_crash_ends_with_the_uninterrupted_weights(tiny_blip_dir, real_ds, tmp_path, monkeypatch):
    parts = build_training_set(from_triplet_dataset(real_ds.root, "train"), 1.0, seed=0)
    kw = dict(model="blip", epochs=3, batch_size=8, lr=5e-4, embed_dim=16, save_every=1, lr_schedule="cosine", cpu=True)
    full = train_cir(parts, TrainConfig(clip=str(tiny_blip_dir), out_dir=str(tmp_path / "full"), **kw))
    _crash_while_publishing(monkeypatch, "epoch-2")
    with pytest.raises(_Crash):
        train_cir(parts, TrainConfig(clip=str(tiny_blip_dir), out_dir=str(tmp_path / "cut"), **kw))
    monkeypatch.undo()
    resumed = train_cir(parts, TrainConfig(clip=str(tiny_blip_dir), out_dir=str(tmp_path / "cut"), resume=True, **kw))
    assert resumed.resumed_from == 1 and resumed.epoch_losses == pytest.approx(full.epoch_losses, rel=1e-6)
    a, b = _weights(full.model_dir, "model.safetensors"), _weights(resumed.model_dir, "model.safetensors")
    assert a.keys() == b.keys()
    for k in a:
        torch.testing.assert_close(b[k], a[k], rtol=1e-6, atol=1e-7)
    assert evaluate_model(resumed.model_dir, parts[0].split, device="cpu") == evaluate_model(
        full.model_dir, parts[0].split, device="cpu")


def test_resume_runs_no_pickled_code(tiny_clip_dir, real_ds, tmp_path):
    """Issue 18 item 6: a crafted pickle in a run folder must not execute on --resume."""
    parts = build_training_set(from_triplet_dataset(real_ds.root, "train"), 1.0, seed=0)
    kw = dict(epochs=2, save_every=1, cache_dir=str(tmp_path / "cache"))
    train_cir(parts, small_config(tiny_clip_dir, tmp_path / "run", epochs=1, **{k: v for k, v in kw.items() if k != "epochs"}))
    ckpt = tmp_path / "run" / "checkpoints" / "epoch-1"
    assert not list(ckpt.rglob("custom_checkpoint_*.pkl"))  # the loop state is not a pickle any more
    assert (ckpt / "loop_state.safetensors").is_file()
    marker = tmp_path / "pwned"

    class Payload:
        def __reduce__(self):
            import os

            return (os.system, (f"touch {marker}",))

    import pickle

    for name in ("accelerate/custom_checkpoint_0.pkl", "extra.pt"):
        evil = ckpt / name
        evil.write_bytes(pickle.dumps(Payload()))
        with pytest.raises(ValueError, match="would be unpickled"):
            train_cir(parts, small_config(tiny_clip_dir, tmp_path / "run", resume=True, **kw))
        assert not marker.exists()
        evil.unlink()
    resumed = train_cir(parts, small_config(tiny_clip_dir, tmp_path / "run", resume=True, **kw))
    assert resumed.resumed_from == 1 and len(resumed.epoch_losses) == 2 and not marker.exists()
