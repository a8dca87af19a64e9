"""Synthesis settings: given > recipe > the stage configs' own defaults."""

import pytest

from cirsynth.cli import main
from cirsynth.synth import CandidateConfig, FilterConfig, SynthConfig
from cirsynth.synth.settings import resolve_synth_config


def test_unset_settings_take_the_dataclass_defaults():
    cfg = resolve_synth_config({"images": "i", "out": "o", "editor": "e", "num_steps": None, "min_clip_dir": None})
    assert cfg.num_steps == SynthConfig.__dataclass_fields__["num_steps"].default
    assert cfg.filters == FilterConfig() and cfg.candidates == CandidateConfig()


def test_given_beats_recipe_beats_default_and_a_recipe_can_turn_a_rule_off():
    recipe = {"editor": "world-dir", "num_steps": 20, "guidance_scale": 3.0, "candidates": 8, "min_clip_dir": None,
              "min_caption_margin": 0.05, "rank_by": "caption_margin", "self_replace_choices": [0.2, 0.4]}
    cfg = resolve_synth_config({"images": "i", "out": "o", "editor": None, "num_steps": 5, "min_clip_i2i": 0.5,
                                "min_clip_dir": None}, recipe)
    assert cfg.editor == "world-dir" and cfg.num_steps == 5 and cfg.guidance_scale == 3.0
    assert cfg.candidates.n == 8 and cfg.candidates.self_replace_choices == (0.2, 0.4)
    assert cfg.filters.min_clip_dir is None  # the recipe turned the rule off
    assert cfg.filters.min_caption_margin == 0.05 and cfg.filters.min_clip_i2i == 0.5 and cfg.filters.rank_by == "caption_margin"
    assert resolve_synth_config({"images": "i", "out": "o", "editor": "e", "min_clip_dir": 0.3}, recipe).filters.min_clip_dir == 0.3
    with pytest.raises(ValueError, match="unknown settings"):
        resolve_synth_config({"images": "i", "nonsense": 1})


def test_world_recipe_settings_name_the_bundled_models():
    from cirsynth.world.assets import model_path
    from cirsynth.world.recipe import load_recipe, synth_settings

    s = synth_settings()
    cfg = resolve_synth_config({"images": "i", "out": "o"}, s)
    r = load_recipe()
    assert cfg.editor == str(model_path("diffusion")) and cfg.clip == str(model_path("clip")) and cfg.vocabulary == "world"
    assert cfg.num_steps == r.num_steps and cfg.candidates == r.candidates and cfg.inversion == r.inversion
    assert cfg.filters.min_caption_margin == r.filter.min_caption_margin and cfg.filters.rank_by == r.filter.rank_by
    assert cfg.filters.recaptioner == str(model_path("captioner"))  # the recaption rules read with the world captioner
    assert cfg.filters.min_recaption_margin == r.filter.min_recaption_margin
    assert cfg.candidates.by_edit_type == r.candidates.by_edit_type
    assert cfg.paste == r.paste  # what fills the pixels outside the edit mask, as world evaluate measured it
    assert cfg.kept_background == r.kept_background


def test_paste_setting_reaches_the_editor_and_is_checked(tiny_models, tmp_path):
    from cirsynth.synth import Synthesizer
    from cirsynth.synth.pipeline import RUNTIME_FIELDS

    assert resolve_synth_config({"images": "i", "out": "o", "editor": "e"}).paste == "none"
    cfg = resolve_synth_config({"images": "i", "out": str(tmp_path / "o"), "editor": tiny_models["sd"]},
                               {"paste": "reference"})
    assert cfg.paste == "reference" and "paste" not in RUNTIME_FIELDS  # a resume with another paste is refused
    assert Synthesizer(cfg).editor().config.paste == "reference"
    with pytest.raises(ValueError, match="paste must be one of"):
        resolve_synth_config({"images": "i", "out": "o", "editor": "e", "paste": "pixels"})
    cfg = resolve_synth_config({"images": "i", "out": str(tmp_path / "o"), "editor": tiny_models["sd"],
                                "kept_background": 0.02}, {"paste": "reference"})
    assert Synthesizer(cfg).editor().config.kept_background == 0.02 and "kept_background" not in RUNTIME_FIELDS
    with pytest.raises(ValueError, match="kept_background must be in"):
        resolve_synth_config({"images": "i", "out": "o", "editor": "e", "kept_background": 1.5})


def test_unknown_recipe_is_a_clear_error(tmp_path, capsys):
    assert main(["synthesize", "--images", str(tmp_path), "--out", str(tmp_path / "o"), "--recipe", "wrld"]) == 2
    assert "the one recipe is 'world'" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()
