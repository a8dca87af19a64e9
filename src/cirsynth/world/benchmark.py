"""The world's CIR benchmark: ground-truth triplets in CIRR form, with splits that test generalisation.

Each triplet is a reference scene, one ground-truth edit (relative caption) and the edited scene.
Its CIRR ``img_set`` holds 6 similar images: the reference, the target and 4 other one-edit
variants of the reference (hard negatives). Splits share no scene (scenes compared by their labels,
render seed ignored), and a few (shape, colour) combinations appear only in test.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field
from itertools import product
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image

from cirsynth.data.records import Triplet, config_hash
from cirsynth.world.language import WORLD_EDIT_TYPES, WorldEdit, apply_edit
from cirsynth.world.render import render
from cirsynth.world.scene import COLORS, SHAPES, Scene, random_scene, scene_combos

if TYPE_CHECKING:  # pragma: no cover
    from cirsynth.data.dataset import TripletDataset

SPLITS: tuple[str, ...] = ("train", "val", "test")


@dataclass
class BenchmarkConfig:
    """How many triplets, how they are grouped, what is held out."""

    num_train: int = 2000  # triplets in the train split
    num_val: int = 200  # triplets in the val split
    num_test: int = 500  # triplets in the test split
    group_size: int = 6  # CIRR img_set size, reference and target included
    num_held_out_combos: int = 4  # (shape, colour) pairs that occur only in test
    held_out_fraction: float = 0.5  # share of test references built around a held-out pair
    edit_types: tuple[str, ...] = WORLD_EDIT_TYPES  # edit types drawn uniformly
    seed: int = 0  # everything below is a function of this seed

    def __post_init__(self) -> None:
        if self.group_size < 2:
            raise ValueError(f"group_size must be >= 2 (reference and target), got {self.group_size}")
        bad = set(self.edit_types) - set(WORLD_EDIT_TYPES)
        if bad:
            raise ValueError(f"unknown edit types {sorted(bad)}; the world has {WORLD_EDIT_TYPES}")
        if not 0 <= self.held_out_fraction <= 1:
            raise ValueError(f"held_out_fraction must be in [0, 1], got {self.held_out_fraction}")
        if not 0 <= self.num_held_out_combos < len(SHAPES) * len(COLORS):
            raise ValueError(f"num_held_out_combos out of range: {self.num_held_out_combos}")


@dataclass
class WorldBenchmark:
    """In-memory benchmark: triplets whose image fields are scene ids, and the scenes themselves.

    ``Triplet.reference`` / ``target`` / ``group`` hold ids of ``scenes`` until
    :func:`write_benchmark` renders them and replaces ids with dataset paths.
    """

    config: BenchmarkConfig
    triplets: list[Triplet]
    scenes: dict[str, Scene]  # scene id -> scene
    held_out_combos: frozenset[tuple[str, str]]
    edits: dict[str, WorldEdit] = field(default_factory=dict)  # triplet id -> its ground-truth edit

    def image(self, scene_id: str, size: int = 64) -> Image.Image:
        return render(self.scenes[scene_id], size=size)


def scene_id(scene: Scene) -> str:
    return f"scene-{scene.key(with_seed=True)}"


def _pick_held_out(rng: np.random.Generator, k: int) -> frozenset[tuple[str, str]]:
    combos = list(product(SHAPES, COLORS))
    idx = rng.choice(len(combos), size=k, replace=False)
    return frozenset(combos[i] for i in idx)


def _reference(rng: np.random.Generator, held_out: frozenset, force_held_out: bool) -> Scene:
    """A reference scene free of held-out pairs, or (``force_held_out``) whose first object has one."""
    scene = random_scene(rng, exclude_combos=held_out)
    if not force_held_out:
        return scene
    combos = sorted(held_out)
    for _ in range(100):
        shape, color = combos[rng.integers(len(combos))]
        if shape not in {o.shape for o in scene.objects[1:]}:
            return scene.replace_object(0, shape=shape, color=color)
    raise RuntimeError("could not place a held-out combination")  # pragma: no cover


def build_benchmark(config: BenchmarkConfig | None = None) -> WorldBenchmark:
    """Generate the benchmark in memory (deterministic in ``config.seed``).

    Returns:
        a :class:`WorldBenchmark` with ``num_train + num_val + num_test`` triplets.
    """
    config = config or BenchmarkConfig()
    rng = np.random.default_rng(config.seed)
    held_out = _pick_held_out(rng, config.num_held_out_combos)
    owner: dict[str, str] = {}  # scene label key -> the split that uses it
    scenes: dict[str, Scene] = {}
    triplets: list[Triplet] = []
    edits: dict[str, WorldEdit] = {}
    chash = config_hash(config)
    for split, count in zip(SPLITS, (config.num_train, config.num_val, config.num_test)):
        exclude = frozenset() if split == "test" else held_out
        made = 0
        while made < count:
            force = split == "test" and rng.random() < config.held_out_fraction
            ref = _reference(rng, held_out, force)
            etype = config.edit_types[rng.integers(len(config.edit_types))]
            try:
                edit = apply_edit(ref, etype, rng, exclude_combos=exclude)
                group = [ref, edit.target]
                for _ in range(20 * config.group_size):  # hard negatives: other edits of the reference
                    if len(group) == config.group_size:
                        break
                    other = config.edit_types[rng.integers(len(config.edit_types))]
                    cand = apply_edit(ref, other, rng, exclude_combos=exclude).target
                    if all(cand.key() != g.key() for g in group):
                        group.append(cand)
            except ValueError:  # edit impossible in this scene (e.g. no shape left): draw again
                continue
            if len(group) < config.group_size:
                continue
            if any(owner.get(g.key(), split) != split for g in group):
                continue  # a scene of another split: keep splits disjoint
            if split != "test" and any(scene_combos(g) & held_out for g in group):
                continue  # pragma: no cover - exclusion above already prevents it
            for g in group:
                owner[g.key()] = split
                scenes[scene_id(g)] = g
            tid = f"world-{split}-{made:05d}"
            ids = [scene_id(g) for g in group]
            triplets.append(
                Triplet.from_edit(
                    tid,
                    ids[0],
                    edit.caption_edit,
                    target=ids[1],
                    split=split,
                    group=ids,
                    provenance={
                        "source": "cirsynth.world",
                        "config_hash": chash,
                        "reference_scene": ref.to_dict(),
                        "target_scene": edit.target.to_dict(),
                        "attribute": edit.attribute,
                        "old": edit.old,
                        "new": edit.new,
                        "held_out_combo": bool(scene_combos(ref) & held_out or scene_combos(edit.target) & held_out),
                    },
                )
            )
            edits[tid] = edit
            made += 1
    return WorldBenchmark(config, triplets, scenes, held_out, edits)


def write_benchmark(
    bench: WorldBenchmark, root: str | os.PathLike, size: int = 64, exist_ok: bool = False
) -> "TripletDataset":
    """Render every scene and write the benchmark as a ``TripletDataset`` at ``root``.

    Args:
        bench: from :func:`build_benchmark`.
        root: dataset folder (created).
        size: render size in pixels.
        exist_ok: allow writing into an existing dataset (ids must still be new).

    Returns:
        the ``cirsynth.data.TripletDataset``.
    """
    from cirsynth.data.dataset import TripletDataset

    meta = {
        "source": "cirsynth.world benchmark",
        "config": asdict(bench.config),
        "held_out_combos": sorted(list(c) for c in bench.held_out_combos),
        "image_size": size,
    }
    ds = TripletDataset.create(root, meta=meta, exist_ok=exist_ok)
    paths: dict[str, str] = {}
    with ds.writer() as w:
        for t in bench.triplets:
            for sid in t.group:
                if sid not in paths:
                    paths[sid] = w.save_reference(bench.image(sid, size=size))
            fields = {f: getattr(t, f) for f in t.__dataclass_fields__}
            fields.update(
                reference=paths[t.reference], target=paths[t.target], group=[paths[s] for s in t.group]
            )
            fields["provenance"] = {**t.provenance, "scene_ids": list(t.group)}
            w.add(Triplet(**fields))
    return ds
