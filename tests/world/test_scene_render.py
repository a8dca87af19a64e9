import numpy as np
import pytest

from cirsynth.world.render import render, render_array
from cirsynth.world.scene import (
    LABEL_KEYS,
    LABEL_VALUES,
    NONE,
    POSITION_X,
    Scene,
    WorldObject,
    random_scene,
    scene_diff,
    scene_labels,
)


def test_random_scene_is_a_function_of_the_seed():
    assert random_scene(7) == random_scene(7)
    assert [random_scene(s) for s in range(20)] != [random_scene(s + 100) for s in range(20)]


def test_render_is_deterministic_and_sized():
    scene = random_scene(3)
    a, b = np.asarray(render(scene)), np.asarray(render(scene))
    assert a.shape == (64, 64, 3) and a.dtype == np.uint8
    assert np.array_equal(a, b)
    assert render(scene, size=160).size == (160, 160)
    # the render seed alone changes the texture, not the content
    other_seed = Scene(scene.objects, scene.background, scene.light, seed=scene.seed + 1)
    assert not np.array_equal(a, np.asarray(render(other_seed)))
    assert scene_diff(scene, other_seed) == {}


def test_viewing_render_shows_the_same_scene():
    scene = random_scene(11)
    small = render_array(scene, 64)
    big = render_array(scene, 256)  # box-filter it down to 64: same picture up to antialiasing
    down = big.reshape(64, 4, 64, 4, 3).mean(axis=(1, 3))
    assert np.abs(down - small).mean() < 0.02


def test_labels_cover_every_key_and_mark_empty_slots():
    scene = Scene((WorldObject("star", "red", "large", "glass", "dotted", "right"),), "snow", "night", seed=1)
    labels = scene_labels(scene)
    assert tuple(labels) == LABEL_KEYS
    assert all(labels[k] in LABEL_VALUES[k] for k in LABEL_KEYS)
    assert labels["right.shape"] == "star" and labels["right.pattern"] == "dotted"
    assert labels["left.color"] == NONE and labels["middle.shape"] == NONE
    assert labels["background"] == "snow" and labels["light"] == "night"
    assert Scene.from_dict(scene.to_dict()) == scene


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(objects=()), "1..3 objects"),
        (dict(background="moon"), "background"),
        (dict(light="dusk"), "light"),
        (
            dict(objects=(WorldObject("star", "red", "large", "glass", "dotted", "left"),) * 2),
            "share a slot",
        ),
        (
            dict(
                objects=(
                    WorldObject("star", "red", "large", "glass", "dotted", "left"),
                    WorldObject("star", "blue", "small", "metal", "plain", "right"),
                )
            ),
            "distinct",
        ),
    ],
)
def test_invalid_scenes_are_refused(kwargs, match):
    base = dict(objects=(WorldObject("star", "red", "large", "glass", "dotted", "left"),), background="sand", light="midday")
    with pytest.raises(ValueError, match=match):
        Scene(**{**base, **kwargs})


def test_invalid_object_value_is_refused():
    with pytest.raises(ValueError, match="color='teal'"):
        WorldObject("star", "teal", "large", "glass", "dotted", "left")


def test_objects_are_drawn_in_their_slot():
    # an object on a plain scene changes pixels only around its slot centre
    empty_ish = Scene((WorldObject("circle", "red", "small", "matte", "plain", "left"),), "snow", "midday", seed=5)
    with_right = Scene((*empty_ish.objects, WorldObject("square", "blue", "large", "metal", "striped", "right")), "snow", "midday", seed=5)
    diff = np.abs(render_array(with_right) - render_array(empty_ish)).sum(-1) > 1e-6  # (64, 64)
    cols = np.nonzero(diff.any(0))[0] / 64
    assert diff.any()
    assert cols.min() > POSITION_X["middle"] and cols.max() < 1.0
