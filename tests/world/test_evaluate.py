import json

import numpy as np

from cirsynth.cli import main
from cirsynth.world import apply_edit, random_scene, scene_labels
from cirsynth.world.evaluate import judge_edit, kept_as_reconstructed, text_to_image_reading
from cirsynth.world.language import WORLD_EDIT_TYPES


def test_judge_edit_against_ground_truth_labels():
    scene = random_scene(np.random.default_rng(5))
    edit = apply_edit(scene, "color", 1)
    assert judge_edit(scene_labels(edit.target), scene, edit.target) == (True, True)  # a perfect edit
    assert judge_edit(scene_labels(scene), scene, edit.target) == (False, True)  # nothing changed
    wrong = dict(scene_labels(edit.target), background="not-a-background")
    assert judge_edit(wrong, scene, edit.target) == (True, False)  # right change, something else broke


def test_kept_as_reconstructed_compares_with_the_reconstruction_reading():
    scene = random_scene(np.random.default_rng(5))
    edit = apply_edit(scene, "background", 1)
    truth = scene_labels(scene)
    recon = dict(truth, light="night" if truth["light"] != "night" else "midday")  # the autoencoder lost the light
    edited = dict(recon, background=scene_labels(edit.target)["background"])  # ... and the edit kept it as lost
    assert kept_as_reconstructed(edited, recon, scene, edit.target)
    assert judge_edit(edited, scene, edit.target) == (True, False)  # against ground truth it is not preserved
    assert not kept_as_reconstructed(dict(edited, light=truth["light"]), recon, scene, edit.target)
    # the named attribute may differ from the reconstruction: that is the edit
    assert kept_as_reconstructed(edited, dict(recon, background="not-a-background"), scene, edit.target)


def test_text_to_image_reading_scores_the_named_attribute_per_edit_type():
    rng = np.random.default_rng(3)
    edits = [apply_edit(random_scene(rng), kind, rng) for kind in ("color", "background", "color")]
    perfect = text_to_image_reading([scene_labels(e.target) for e in edits], edits)
    assert perfect["edit_attribute"] == {"color": 100.0, "background": 100.0, "all": 100.0}
    assert perfect["label_accuracy"]["all_labels"] == 100.0
    # drawn as the reference: the named attribute is wrong everywhere, the rest right
    as_reference = text_to_image_reading([scene_labels(e.reference) for e in edits], edits)
    assert as_reference["edit_attribute"]["all"] == 0.0 and as_reference["label_accuracy"]["all_labels"] == 0.0
    mixed = text_to_image_reading([scene_labels(edits[0].target), scene_labels(edits[1].reference),
                                   scene_labels(edits[2].reference)], edits)
    assert mixed["edit_attribute"] == {"color": 50.0, "background": 0.0, "all": 33.3}


def test_label_accuracy_per_attribute_kind():
    from cirsynth.world.evaluate import label_accuracy

    scene = random_scene(np.random.default_rng(5))
    edit = apply_edit(scene, "color", 1)
    acc = label_accuracy([scene_labels(scene), scene_labels(edit.target)], [scene, scene])
    assert acc["all_labels"] == 50.0 and acc["background"] == 100.0 and acc["light"] == 100.0
    n_obj = len(scene.objects)
    assert acc["color"] == round(100.0 * (2 * n_obj - 1) / (2 * n_obj), 1)  # one of 2 * n_obj colours read wrong
    assert acc["shape"] == 100.0


def test_world_evaluate_command_reports_every_method(tmp_path, capsys):
    from cirsynth.testing.tiny_sd import save_tiny_sd

    from cirsynth.world.assets import write_card

    sd = save_tiny_sd(tmp_path / "sd", text_encoder="minilm", max_length=64)
    write_card(sd, "tiny", "a tiny random SD", {"command": "made by a test", "quality": {"vae_eval_psnr_db": 1.0}})
    capsys.readouterr()
    out = tmp_path / "eval.json"
    rc = main(["world", "evaluate", "--editor", str(sd), "--n", "3", "--num_steps", "2",
               "--methods", "[negative-prompt, direct]", "--self_replace_steps", "[0.4, 0.8]", "--candidates", "0", "--seed", "0", "--json",
               "--json_out", str(out), "--grid", str(tmp_path / "grid.png"), "--update_card"])
    assert rc == 0
    from PIL import Image

    assert Image.open(tmp_path / "grid.png").size == (96 * 6, 16 + 96 * 3)  # ref, text, 2 methods, text-to-image, truth
    result = json.loads(out.read_text())
    card = json.loads((sd / "card.json").read_text())
    assert card["quality"]["vae_eval_psnr_db"] == 1.0  # kept
    measured = card["quality"]["world_evaluate"]
    tables = {m: row.pop("candidate_table") for m, row in result["methods"].items()}  # in --json_out only
    assert measured["methods"] == result["methods"]
    for rows in tables.values():  # every candidate of every edit, with its scores and verdicts
        assert len(rows) == 3 * 2 and all({"scores", "right", "broken", "self_replace_steps"} <= set(r) for r in rows)
    assert measured["command"] == f"cirsynth world evaluate --editor {sd} --methods [\"negative-prompt\", \"direct\"] --n 3 " \
        "--num_steps 2 --guidance_scale 3.0 --cross_replace_steps 0.4 --self_replace_steps [0.4, 0.8] --candidates 0 " \
        "--local_blend true --paste reference --kept_background 0.0 --seed 0"
    assert "world_evaluate" in (sd / "README.md").read_text()
    assert result["edits"] == 3 and set(result["methods"]) == {"negative-prompt", "direct"}
    assert result["filter_config"]["recaptioner"] in (None, "bundled:captioner")  # not this machine's path
    t2i = result["text_to_image"]  # the generator's ceiling, read against the target scenes
    assert set(t2i["label_accuracy"]) >= {"all_labels", "color", "light"} and t2i["edit_attribute"]["all"] is not None
    assert set(t2i["edit_attribute"]) - {"all"} <= set(WORLD_EDIT_TYPES)
    share = result["object_word_attention_inside"]  # the tiny UNet's cross-attention at 8x8 latents is measured
    assert share is not None and 0.0 < share < 100.0
    for row in result["methods"].values():
        assert row["edit"]["all"]["n"] == 3
        assert 0.0 <= row["edit"]["all"]["success"] <= min(row["edit"]["all"]["target"], row["edit"]["all"]["preserved"])
        assert row["edit"]["all"]["success_vs_reconstruction"] <= min(row["edit"]["all"]["target"],
                                                                     row["edit"]["all"]["kept_as_reconstructed"])
        assert "precision" in row["filter"]  # the bundled world CLIP filters
        assert 0 <= row["filter"]["accepted"] <= 3
        assert all(isinstance(k, str) and 0 < v <= 3 for k, v in row["filter"]["failed_rules"].items())
        for rule in row["filter"]["rules"].values():  # each rule alone, over all 6 candidates, against ground truth
            assert rule["threshold"] is not None and 0 <= rule["passes"] <= 100
        assert row["edit"]["all"]["success"] <= row["edit"]["all"]["any_candidate_right"]
        assert np.isfinite(row["reconstruction_psnr_db"])
        assert set(row["reconstruction_label_accuracy"]) == set(row["generated_label_accuracy"]) >= {"all_labels", "color", "light"}


def test_broken_labels_say_where_preservation_failed():
    from cirsynth.world.evaluate import broken_labels
    from cirsynth.world.language import apply_edit
    from cirsynth.world.scene import random_scene, scene_labels

    rng = np.random.default_rng(4)
    scene = next(s for s in (random_scene(rng) for _ in range(50)) if len(s.objects) >= 2)
    edit = apply_edit(scene, "color", rng, object_index=0)
    pred = dict(scene_labels(edit.target))
    assert broken_labels(pred, scene, edit.target) == []  # the perfect edit breaks nothing
    slot = next(k.split(".")[0] for k in scene_labels(scene) if k.endswith(".color") and pred[k] != scene_labels(scene)[k])
    other = next(k.split(".")[0] for k, v in scene_labels(scene).items() if k.endswith(".shape") and v != "none"
                 and not k.startswith(slot))
    pred[f"{slot}.pattern"] = "wrong"
    pred[f"{other}.size"] = "wrong"
    pred["light"] = "wrong"
    assert sorted(broken_labels(pred, scene, edit.target)) == ["light", "other object.size", "same object.pattern"]


def test_world_evaluate_rows_for_ddpm_and_both_direct_variants(tmp_path, capsys):
    import pytest

    from cirsynth.testing.tiny_sd import save_tiny_sd
    from cirsynth.world.evaluate import WorldEvalConfig

    sd = save_tiny_sd(tmp_path / "sd", text_encoder="minilm", max_length=64)
    out = tmp_path / "eval.json"
    assert main(["world", "evaluate", "--editor", str(sd), "--n", "2", "--num_steps", "3", "--candidates", "2",
                 "--methods", "[ddpm, direct, direct-source-only]", "--seed", "1", "--json", "--json_out", str(out)]) == 0
    result = json.loads(out.read_text())
    assert list(result["methods"]) == ["ddpm", "direct", "direct-source-only"]
    ddpm = result["methods"]["ddpm"]
    assert ddpm["edit"]["all"]["n"] == 2
    # both reconstruct exactly up to the (random, poor) autoencoder: the same PSNR
    assert abs(ddpm["reconstruction_psnr_db"] - result["methods"]["direct"]["reconstruction_psnr_db"]) < 0.1
    for i in range(2):  # each of an edit's candidates has its own inversion noise
        seeds = [r["noise_seed"] for r in ddpm["candidate_table"] if r["edit"] == i]
        assert len(seeds) == len(set(seeds)) == 2
    assert all("noise_seed" not in r for r in result["methods"]["direct"]["candidate_table"])
    # the add-target offset changes the edits: the two direct rows score different pictures
    scores = {m: [r["scores"] for r in result["methods"][m]["candidate_table"]] for m in ("direct", "direct-source-only")}
    assert scores["direct"] != scores["direct-source-only"]
    capsys.readouterr()
    with pytest.raises(ValueError, match="unknown method"):
        WorldEvalConfig(editor="x", classifier="y", methods=("ddpm", "null-txt"))


def test_results_name_bundled_models_without_this_machines_path(tmp_path):
    from cirsynth.world.assets import ASSETS_DIR, model_label

    assert model_label(str(ASSETS_DIR / "diffusion")) == "bundled:diffusion"
    assert model_label(str(tmp_path / "my-sd")) == str(tmp_path / "my-sd")
    assert model_label("runwayml/stable-diffusion-v1-5") == "runwayml/stable-diffusion-v1-5"


def test_weights_fingerprint_follows_weights_and_config_but_not_the_model_card(tmp_path):
    from cirsynth.world.evaluate import weights_fingerprint

    (tmp_path / "unet").mkdir()
    (tmp_path / "unet" / "model.safetensors").write_bytes(b"weights")
    (tmp_path / "unet" / "config.json").write_text("{}")
    (tmp_path / "card.json").write_text('{"quality": {}}')
    first = weights_fingerprint(tmp_path)
    (tmp_path / "card.json").write_text('{"quality": {"world_evaluate": 1}}')  # what evaluate --update_card does
    (tmp_path / "README.md").write_text("card")
    (tmp_path / "training_report.json").write_text('{"unet": {}}')  # a report beside the weights
    assert weights_fingerprint(tmp_path) == first
    (tmp_path / "model_index.json").write_text('{"_class_name": "StableDiffusionPipeline"}')  # what loads
    assert weights_fingerprint(tmp_path) != first
    (tmp_path / "model_index.json").unlink()
    (tmp_path / "unet" / "config.json").write_text('{"a": 1}')
    assert weights_fingerprint(tmp_path) != first
    (tmp_path / "unet" / "config.json").write_text("{}")
    (tmp_path / "unet" / "model.safetensors").write_bytes(b"other")
    assert weights_fingerprint(tmp_path) != first
    assert weights_fingerprint(tmp_path / "missing") is None


def test_measured_scenes_are_not_drawn_from_any_trainers_stream():
    """A seed-S model trains on ``default_rng(2S + 1)`` renders (held out: ``2S + 2``). Evaluation edits and the demo's
    scenes at any seed must come from other streams: evaluate --seed 1 once began with seed-0 models' training scenes."""
    from cirsynth.world.diffusion import world_images_and_captions
    from cirsynth.world.evaluate import WorldEvalConfig, evaluation_edits
    from cirsynth.world.perturber import scenes_and_captions
    from cirsynth.world.scene import measurement_rng

    seen = set()
    for stream in range(1, 9):  # the train and held-out streams of seed-0 to seed-3 models
        seen |= {repr(s) for s in scenes_and_captions(400, stream)[0]}  # captioner, CLIP, classifier, perturber draws
        seen |= {repr(s) for s in world_images_and_captions(40, stream, size=16)[3]}  # diffusion draws
    for seed in range(3):
        edits = evaluation_edits(WorldEvalConfig(editor="-", classifier="-", n=40, seed=seed))
        assert not {repr(e.reference) for e in edits} & seen, seed
        demo_rng = measurement_rng(seed, "demo")
        assert not {repr(random_scene(demo_rng)) for _ in range(40)} & seen, seed
    # the UNet's held-out grounding figure (object_word_attention_share, seed 7 by default) too
    for seed in (7, 0):
        drawn = world_images_and_captions(40, measurement_rng(seed, "attention"), size=16)[3]
        assert not {repr(s) for s in drawn} & seen, seed
    import pytest

    with pytest.raises(ValueError, match="unknown measurement stream 'train'"):
        measurement_rng(0, "train")
