"""The mini world: procedural scenes with ground truth, its CIR benchmark and its small models.

Light imports only here (numpy, PIL); the torch/diffusers parts load from their modules:
``cirsynth.world.classifier`` (the attribute judge) and ``cirsynth.world.diffusion`` (the latent
diffusion model trainer).
"""

from cirsynth.world.benchmark import BenchmarkConfig, WorldBenchmark, build_benchmark, write_benchmark
from cirsynth.world.language import (
    NUM_CAPTION_VARIANTS,
    VOCABULARY,
    WORLD_EDIT_TYPES,
    WorldEdit,
    apply_edit,
    caption,
    caption_variants,
    changed_span,
)
from cirsynth.world.render import render, render_array
from cirsynth.world.scene import (
    BACKGROUNDS,
    COLORS,
    LABEL_KEYS,
    LABEL_VALUES,
    LIGHTS,
    MATERIALS,
    PATTERNS,
    POSITIONS,
    SHAPES,
    SIZES,
    Scene,
    WorldObject,
    random_scene,
    scene_diff,
    scene_labels,
)

__all__ = [
    "BACKGROUNDS",
    "BenchmarkConfig",
    "COLORS",
    "LABEL_KEYS",
    "LABEL_VALUES",
    "LIGHTS",
    "MATERIALS",
    "NUM_CAPTION_VARIANTS",
    "PATTERNS",
    "POSITIONS",
    "SHAPES",
    "SIZES",
    "Scene",
    "VOCABULARY",
    "WORLD_EDIT_TYPES",
    "WorldBenchmark",
    "WorldEdit",
    "WorldObject",
    "apply_edit",
    "build_benchmark",
    "caption",
    "caption_variants",
    "changed_span",
    "random_scene",
    "render",
    "render_array",
    "scene_diff",
    "scene_labels",
    "write_benchmark",
]
