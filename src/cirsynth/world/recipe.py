"""The world recipe: the settings this project recommends for synthesizing in the mini world, in one place.

``world evaluate``, ``demo`` and ``synthesize --editor world`` read them from here, so a plain
``cirsynth world evaluate --seed S --n N`` measures what the project recommends. The filter thresholds and the
candidate settings come from ``assets/world/recipe.json``, written by ``cirsynth world calibrate-filter`` on tuning
edits (``--seed 0``); without that file the uncalibrated defaults below apply.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cirsynth.synth.candidates import CandidateConfig
from cirsynth.synth.filters import FilterConfig
from cirsynth.world.assets import ASSETS_DIR

RECIPE_FILE = ASSETS_DIR / "recipe.json"


@dataclass
class WorldRecipe:
    inversion: str = "null-text"  # best reconstruction of the four on the world model (world evaluate)
    num_steps: int = 20  # the world UNet is small; 20 DDIM steps keep edits to about a second on a CPU
    guidance_scale: float = 3.0  # chosen on seed 0 (session 3): the small UNet keeps more of the scene at low guidance
    cross_replace_steps: float = 0.4  # the fixed sweep (candidates.n == 0)
    self_replace_steps: tuple[float, ...] = (0.2, 0.4, 0.6)  # the fixed sweep (candidates.n == 0)
    paste: str = "none"  # EditorConfig.paste: what fills the pixels outside the LocalBlend mask
    kept_background: float = 0.0  # EditorConfig.kept_background: a background edit's kept cells lose the old background
    candidates: CandidateConfig = field(default_factory=lambda: CandidateConfig(n=8))  # oversample, then filter
    # every one-attribute neighbour of the target caption as a negative (the lexical world perturber makes 25-61)
    filter: FilterConfig = field(default_factory=lambda: FilterConfig(hard_negatives=64, rank_by="caption_margin"))
    calibration: dict[str, Any] | None = None  # how recipe.json was made: command, seed, n, figures; None: defaults

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def load_recipe(path: str | Path | None = None) -> WorldRecipe:
    """The recipe from ``path`` (default: the bundled ``recipe.json``), or the defaults when there is none."""
    path = Path(path) if path is not None else RECIPE_FILE
    if not path.is_file():
        return WorldRecipe()
    d = json.loads(path.read_text())
    try:
        cand = CandidateConfig(**{k: tuple(v) if isinstance(v, list) else v for k, v in d.pop("candidates").items()})
        filt = FilterConfig(**d.pop("filter"))
        d["self_replace_steps"] = tuple(d["self_replace_steps"])
        return WorldRecipe(candidates=cand, filter=filt, **d)
    except (KeyError, TypeError) as e:
        raise ValueError(f"{path}: not a world recipe ({e})") from e


def save_recipe(recipe: WorldRecipe, path: str | Path | None = None) -> Path:
    from cirsynth.config import atomic_write_json

    path = Path(path) if path is not None else RECIPE_FILE
    d = recipe.as_dict()
    d["filter"].pop("clip", None)  # the CLIP is chosen per run (the bundled world CLIP by default)
    d["filter"].pop("device", None)
    d["filter"].pop("recaptioner", None)  # chosen per run too (the bundled world captioner)
    atomic_write_json(path, d, indent=1)
    return path


def bundled_model(kind: str) -> str:
    """Folder of the bundled world model for a ``synthesize`` option (editor (diffusion), clip, captioner) or the
    judge (classifier)."""
    from cirsynth.world.assets import model_path

    name = {"editor": "diffusion", "clip": "clip", "captioner": "captioner", "recaptioner": "captioner",
            "classifier": "classifier"}[kind]
    try:
        return str(model_path(name))
    except FileNotFoundError as e:
        raise ValueError(str(e)) from e


def world_eval_config(recipe: str | Path | None = None, *, editor: str | None = None, classifier: str | None = None,
                      clip: str | None = None, methods: list[str] | None = None, n: int = 16,
                      num_steps: int | None = None, guidance_scale: float | None = None,
                      cross_replace_steps: float | None = None, self_replace_steps: list[float] | None = None,
                      candidates: int | None = None, local_blend: bool = True, seed: int = 0,
                      paste: str | None = None, kept_background: float | None = None) -> Any:
    """The ``WorldEvalConfig`` of ``world evaluate`` and ``calibrate-filter``: the bundled models and the recipe (at
    ``recipe``, default the bundled one), each setting overridden where given (not None)."""
    from cirsynth.world.assets import bundled_models
    from cirsynth.world.evaluate import WorldEvalConfig

    r = load_recipe(recipe)
    bundled = {k: str(v) for k, v in bundled_models().items()}
    editor = editor or bundled.get("diffusion")
    classifier = classifier or bundled.get("classifier")
    clip = clip or bundled.get("clip")
    if editor is None:
        raise ValueError("no world diffusion model is bundled; pass --editor FOLDER")
    if classifier is None:
        raise ValueError("no world attribute classifier is bundled; pass --classifier FOLDER")
    cand = r.candidates if candidates is None else dataclasses.replace(r.candidates, n=candidates)
    return WorldEvalConfig(
        editor=editor, classifier=classifier, clip=clip, methods=tuple(methods or [r.inversion]), n=n,
        num_steps=num_steps or r.num_steps, guidance_scale=r.guidance_scale if guidance_scale is None else guidance_scale,
        cross_replace_steps=r.cross_replace_steps if cross_replace_steps is None else cross_replace_steps,
        self_replace_steps=tuple(self_replace_steps or r.self_replace_steps), local_blend=local_blend, seed=seed,
        paste=paste or r.paste, candidates=cand,
        kept_background=r.kept_background if kept_background is None else kept_background,
        filter=dataclasses.replace(r.filter, recaptioner=bundled.get("captioner")))


def synth_settings(recipe: WorldRecipe | None = None) -> dict[str, Any]:
    """The recipe as ``synthesize`` settings (flat option names): bundled models, world vocabulary, inversion, steps,
    guidance, prompt-to-prompt settings, candidates and the calibrated filter."""
    return {"editor": bundled_model("editor"), "clip": bundled_model("clip"), "recaptioner": bundled_model("recaptioner"),
            **recipe_settings(recipe)}


def recipe_settings(recipe: WorldRecipe | None = None) -> dict[str, Any]:
    """``synth_settings`` without the models: what the recipe itself sets (the demo names its own models)."""
    r = recipe or load_recipe()
    filt = dataclasses.asdict(r.filter)
    filt.pop("clip", None)
    filt.pop("device", None)
    filt.pop("recaptioner", None)
    cand = dataclasses.asdict(r.candidates)
    return {"vocabulary": "world",
            "inversion": r.inversion, "num_steps": r.num_steps, "guidance_scale": r.guidance_scale,
            "cross_replace_steps": r.cross_replace_steps, "self_replace_steps": list(r.self_replace_steps),
            "paste": r.paste, "kept_background": r.kept_background,
            "candidates": cand.pop("n"), **cand, **filt}
