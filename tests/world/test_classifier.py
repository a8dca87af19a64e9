import numpy as np
import pytest
import torch

from cirsynth.world.assets import bundled_models
from cirsynth.world.classifier import (
    AttributeClassifier,
    ClassifierConfig,
    ClassifierTrainConfig,
    accuracy,
    render_dataset,
    train_classifier,
)
from cirsynth.world.render import render
from cirsynth.world.scene import LABEL_KEYS, LABEL_VALUES, random_scene, scene_labels

SMALL = ClassifierConfig(channels=(8, 8, 16, 16), hidden=32)


def test_heads_cover_every_label():
    model = AttributeClassifier(SMALL)
    logits = model(torch.zeros(2, 3, 64, 64))
    assert set(logits) == set(LABEL_KEYS)
    assert all(logits[k].shape == (2, len(LABEL_VALUES[k])) for k in LABEL_KEYS)
    preds = model.predict([render(random_scene(0)), render(random_scene(1), size=128)])  # resized to 64
    assert len(preds) == 2 and all(p[k] in LABEL_VALUES[k] for p in preds for k in LABEL_KEYS)


def test_save_and_load_round_trip(tmp_path):
    torch.manual_seed(0)
    model = AttributeClassifier(SMALL).eval()
    model.save_pretrained(tmp_path / "clf")
    back = AttributeClassifier.from_pretrained(tmp_path / "clf")
    x = torch.randn(3, 3, 64, 64)
    with torch.no_grad():
        a, b = model(x), back(x)
    assert back.config == model.config
    for k in a:  # weights are stored in fp16
        torch.testing.assert_close(a[k], b[k], atol=2e-2, rtol=2e-2)
    with pytest.raises(FileNotFoundError, match="AttributeClassifier"):
        AttributeClassifier.from_pretrained(tmp_path)


def test_training_loop_reduces_the_loss():
    model, report = train_classifier(
        ClassifierTrainConfig(num_train=64, num_eval=16, epochs=3, batch_size=16, lr=3e-3, model=SMALL), log=lambda s: None
    )
    losses = [h["loss"] for h in report["history"]]
    assert losses[-1] < losses[0]
    assert set(report["accuracy"]) == set(LABEL_KEYS) | {"all", "mean"}


def test_accuracy_counts_exact_matches():
    images, labels = render_dataset(4, seed=0)
    model = AttributeClassifier(SMALL)
    preds = model.predict(images)
    acc = accuracy(model, images, labels)
    for k in LABEL_KEYS:
        expected = np.mean([preds[i][k] == LABEL_VALUES[k][labels[k][i]] for i in range(4)])
        assert acc[k] == pytest.approx(expected)


@pytest.mark.skipif("classifier" not in bundled_models(), reason="bundled classifier not trained in this checkout yet")
def test_bundled_classifier_is_a_trustworthy_judge():
    model = AttributeClassifier.from_pretrained(bundled_models()["classifier"])
    scenes = [random_scene(np.random.default_rng([777, i])) for i in range(300)]  # seeds unlike training's
    preds = model.predict([render(s) for s in scenes])
    truth = [scene_labels(s) for s in scenes]
    per_key = {k: np.mean([p[k] == t[k] for p, t in zip(preds, truth)]) for k in LABEL_KEYS}
    assert min(per_key.values()) >= 0.9, per_key
    assert np.mean(list(per_key.values())) >= 0.95, per_key


def test_gaussian_blur_keeps_mean_and_removes_detail():
    from cirsynth.world.classifier import gaussian_blur

    x = torch.from_numpy(render_dataset(2, seed=0)[0]).permute(0, 3, 1, 2)  # (2, 3, 64, 64)
    assert torch.equal(gaussian_blur(x, 0.0), x)
    y = gaussian_blur(x, 1.0)
    assert y.shape == x.shape
    torch.testing.assert_close(y.mean(), x.mean(), atol=2e-3, rtol=0)
    detail = lambda t: (t[..., 1:] - t[..., :-1]).abs().mean()  # noqa: E731
    assert detail(y) < 0.7 * detail(x)
