"""Scenes of the mini world: 1-3 objects in fixed slots on a textured background under a light.

A :class:`Scene` is plain, hashable data. Everything measurable about it (what a classifier should
recover from its picture) is :func:`scene_labels`: one value per slot attribute plus background and
light, with ``"none"`` for empty slots. Two scenes differ by exactly the keys of :func:`scene_diff`.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, replace
from typing import Any

import numpy as np

# --- the vocabulary: every attribute value is one caption word ---------------------------------
SHAPES: tuple[str, ...] = ("circle", "square", "triangle", "star", "diamond", "cross")
COLORS: dict[str, tuple[float, float, float]] = {  # name -> base RGB in [0, 1]
    "red": (0.86, 0.12, 0.12),
    "orange": (0.97, 0.55, 0.06),
    "yellow": (0.96, 0.88, 0.14),
    "green": (0.16, 0.74, 0.22),
    "blue": (0.14, 0.34, 0.90),
    "purple": (0.55, 0.20, 0.80),
    "pink": (0.98, 0.50, 0.78),
}
SIZES: dict[str, float] = {"small": 0.09, "medium": 0.12, "large": 0.15}  # radius / image width
MATERIALS: tuple[str, ...] = ("matte", "metal", "glass")
PATTERNS: tuple[str, ...] = ("plain", "striped", "dotted", "checkered")
BACKGROUNDS: tuple[str, ...] = ("grass", "sand", "snow", "water", "bricks", "wood")
LIGHTS: tuple[str, ...] = ("midday", "sunset", "night")
POSITIONS: tuple[str, ...] = ("left", "middle", "right")  # slot names, left to right
POSITION_X: dict[str, float] = {"left": 0.2, "middle": 0.5, "right": 0.8}  # slot centre / width
MAX_OBJECTS = len(POSITIONS)

OBJECT_ATTRIBUTES: tuple[str, ...] = ("shape", "color", "size", "material", "pattern")
SCENE_ATTRIBUTES: tuple[str, ...] = ("background", "light")
NONE = "none"  # label of every attribute of an empty slot

# Label space of the attribute classifier / the ground-truth judge: key -> allowed values.
LABEL_VALUES: dict[str, tuple[str, ...]] = {
    **{
        f"{pos}.{attr}": (NONE, *vals)
        for pos in POSITIONS
        for attr, vals in (
            ("shape", SHAPES),
            ("color", tuple(COLORS)),
            ("size", tuple(SIZES)),
            ("material", MATERIALS),
            ("pattern", PATTERNS),
        )
    },
    "background": BACKGROUNDS,
    "light": LIGHTS,
}
LABEL_KEYS: tuple[str, ...] = tuple(LABEL_VALUES)


@dataclass(frozen=True)
class WorldObject:
    """One object; every field is a vocabulary word."""

    shape: str
    color: str
    size: str
    material: str
    pattern: str
    position: str  # slot: left / middle / right

    def __post_init__(self) -> None:
        for name, allowed in (
            ("shape", SHAPES),
            ("color", tuple(COLORS)),
            ("size", tuple(SIZES)),
            ("material", MATERIALS),
            ("pattern", PATTERNS),
            ("position", POSITIONS),
        ):
            value = getattr(self, name)
            if value not in allowed:
                raise ValueError(f"WorldObject.{name}={value!r} is not one of {allowed}")


@dataclass(frozen=True)
class Scene:
    """A scene: objects (caption order), background, light and a render seed.

    ``seed`` fixes only the rendering nuisances (texture noise, sub-slot jitter), so a scene and its
    one-attribute counterfactual share it and differ in pixels only where the attribute shows.
    """

    objects: tuple[WorldObject, ...]
    background: str
    light: str
    seed: int = 0

    def __post_init__(self) -> None:
        if not 1 <= len(self.objects) <= MAX_OBJECTS:
            raise ValueError(f"a scene has 1..{MAX_OBJECTS} objects, got {len(self.objects)}")
        positions = [o.position for o in self.objects]
        if len(set(positions)) != len(positions):
            raise ValueError(f"two objects share a slot: {positions}")
        shapes = [o.shape for o in self.objects]
        if len(set(shapes)) != len(shapes):
            raise ValueError(f"object shapes must be distinct (they name the objects): {shapes}")
        if self.background not in BACKGROUNDS:
            raise ValueError(f"background={self.background!r} is not one of {BACKGROUNDS}")
        if self.light not in LIGHTS:
            raise ValueError(f"light={self.light!r} is not one of {LIGHTS}")

    # --- identity and (de)serialisation ---
    def key(self, with_seed: bool = False) -> str:
        """Short content hash; scenes with equal labels (and seed, if asked) share it."""
        payload: dict[str, Any] = {"labels": scene_labels(self)}
        if with_seed:
            payload["seed"] = self.seed
        blob = json.dumps(payload, sort_keys=True).encode()
        return hashlib.sha256(blob).hexdigest()[:16]

    def to_dict(self) -> dict[str, Any]:
        return {
            "objects": [asdict(o) for o in self.objects],
            "background": self.background,
            "light": self.light,
            "seed": self.seed,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "Scene":
        return cls(
            objects=tuple(WorldObject(**o) for o in d["objects"]),
            background=d["background"],
            light=d["light"],
            seed=int(d.get("seed", 0)),
        )

    def object_at(self, position: str) -> WorldObject | None:
        return next((o for o in self.objects if o.position == position), None)

    def replace_object(self, index: int, **changes: str) -> "Scene":
        objs = list(self.objects)
        objs[index] = replace(objs[index], **changes)
        return replace(self, objects=tuple(objs))


def scene_labels(scene: Scene) -> dict[str, str]:
    """Flat ground-truth labels, keys :data:`LABEL_KEYS` (``"left.color"``, ..., ``"light"``)."""
    labels: dict[str, str] = {}
    for pos in POSITIONS:
        obj = scene.object_at(pos)
        for attr in OBJECT_ATTRIBUTES:
            labels[f"{pos}.{attr}"] = getattr(obj, attr) if obj is not None else NONE
    labels["background"] = scene.background
    labels["light"] = scene.light
    return labels


def scene_diff(a: Scene, b: Scene) -> dict[str, tuple[str, str]]:
    """Label keys whose value differs between two scenes: ``{key: (value_in_a, value_in_b)}``."""
    la, lb = scene_labels(a), scene_labels(b)
    return {k: (la[k], lb[k]) for k in LABEL_KEYS if la[k] != lb[k]}


def random_object(
    rng: np.random.Generator,
    position: str,
    *,
    avoid_shapes: tuple[str, ...] = (),
    exclude_combos: frozenset[tuple[str, str]] = frozenset(),
) -> WorldObject:
    """Draw one object uniformly over the vocabulary, avoiding given shapes and (shape, colour) pairs."""
    shapes = [s for s in SHAPES if s not in avoid_shapes]
    if not shapes:
        raise ValueError("no shape left to draw: every shape is already used")
    for _ in range(1000):
        shape = shapes[rng.integers(len(shapes))]
        color = list(COLORS)[rng.integers(len(COLORS))]
        if (shape, color) not in exclude_combos:
            break
    else:  # pragma: no cover - only with absurd exclusion sets
        raise ValueError("exclude_combos rules out every object")
    return WorldObject(
        shape=shape,
        color=color,
        size=list(SIZES)[rng.integers(len(SIZES))],
        material=MATERIALS[rng.integers(len(MATERIALS))],
        pattern=PATTERNS[rng.integers(len(PATTERNS))],
        position=position,
    )


# The world's trainers draw their renders from ``default_rng(2 * seed + 1)`` (held-out renders ``2 * seed + 2``); an
# evaluation drawing from ``default_rng(seed)`` shared those streams (evaluate --seed 1 began with the same scenes as
# every seed-0 model's training renders). Measurement streams are keyed by a purpose as well, which no trainer uses.
MEASUREMENT_STREAMS = {"evaluate": 0x5EED_E7A1, "demo": 0x5EED_DE30, "attention": 0x5EED_A77E}


def measurement_rng(seed: int, purpose: str) -> np.random.Generator:
    """The random stream of a measurement (``purpose``: a :data:`MEASUREMENT_STREAMS` key) at ``seed``: independent
    of every trainer's ``default_rng(int)`` stream, so no measured scene is drawn from what a model was trained on."""
    if purpose not in MEASUREMENT_STREAMS:
        raise ValueError(f"unknown measurement stream {purpose!r}; expected one of {sorted(MEASUREMENT_STREAMS)}")
    return np.random.default_rng([int(seed), MEASUREMENT_STREAMS[purpose]])


def random_scene(
    rng: np.random.Generator | int,
    *,
    num_objects: int | None = None,
    exclude_combos: frozenset[tuple[str, str]] = frozenset(),
) -> Scene:
    """Draw a scene: 1-3 objects (uniform unless ``num_objects``) in random distinct slots.

    Args:
        rng: a numpy Generator or an int seed (same seed -> same scene).
        num_objects: fix the object count instead of drawing it.
        exclude_combos: (shape, colour) pairs no object may have (held-out combinations).
    """
    rng = np.random.default_rng(rng) if not isinstance(rng, np.random.Generator) else rng
    n = int(rng.integers(1, MAX_OBJECTS + 1)) if num_objects is None else num_objects
    if not 1 <= n <= MAX_OBJECTS:
        raise ValueError(f"num_objects must be in 1..{MAX_OBJECTS}, got {n}")
    slots = sorted(rng.choice(len(POSITIONS), size=n, replace=False).tolist())
    objects: list[WorldObject] = []
    for s in slots:
        objects.append(
            random_object(
                rng, POSITIONS[s], avoid_shapes=tuple(o.shape for o in objects), exclude_combos=exclude_combos
            )
        )
    return Scene(
        objects=tuple(objects),
        background=BACKGROUNDS[rng.integers(len(BACKGROUNDS))],
        light=LIGHTS[rng.integers(len(LIGHTS))],
        seed=int(rng.integers(2**31 - 1)),
    )


def scene_combos(scene: Scene) -> set[tuple[str, str]]:
    """The (shape, colour) pairs present in a scene."""
    return {(o.shape, o.color) for o in scene.objects}
