from pathlib import Path
import json

from cirsynth.cli import main
from cirsynth.data.dataset import TripletDataset
from cirsynth.world.assets import bundled_models, command_line, model_path

import pytest


def test_world_models_lists_bundled_models(capsys):
    assert main(["world", "models"]) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    names = {line["name"] for line in lines}
    assert names == (set(bundled_models()) or {None})


def test_model_path_names_what_exists(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "card.json").write_text("{}")
    (tmp_path / "not-a-model").mkdir()
    assert bundled_models(tmp_path) == {"a": tmp_path / "a"}
    with pytest.raises(FileNotFoundError, match=r"bundled: \['a'\]"):
        model_path("b", tmp_path)


def test_command_line_reproduces_arguments():
    assert command_line("world train x", {"out": "d", "seed": 3, "flag": True, "none": None}) == "cirsynth world train x d --seed 3 --flag true"
    assert command_line("world train x", {"out": "d", "init": ""}) == "cirsynth world train x d --init ''"  # still runs


def test_world_benchmark_command(tmp_path, capsys):
    rc = main(["world", "benchmark", str(tmp_path / "bench"), "--num_train", "4", "--num_val", "2", "--num_test", "3",
               "--cirr", str(tmp_path / "cirr"), "--synth_inputs", str(tmp_path / "inputs.jsonl")])
    assert rc == 0
    out = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert out["triplets"] == 9 and out["cirr"] == {"train": 4, "val": 2, "test1": 3}
    ds = TripletDataset(tmp_path / "bench")
    # the synthesize input list: each distinct train reference once, with its caption, loadable as an image
    rows = [json.loads(l) for l in (tmp_path / "inputs.jsonl").read_text().splitlines()]
    train = [t for t in ds.triplets(split="train")]
    assert out["synth_inputs"] == len(rows) == len({t.reference for t in train})
    assert {r["caption"] for r in rows} == {t.reference_caption for t in train}
    assert all(Path(r["image"]).is_file() for r in rows)
    assert {t.split for t in ds.triplets()} == {"train", "val", "test"}
    assert (tmp_path / "bench" / "cirsynth.world-benchmark.yaml").is_file()


def test_train_classifier_command_writes_weights_card_and_config(tmp_path, capsys):
    import inspect

    import yaml

    from cirsynth.commands.world import train_classifier
    from cirsynth.world.classifier import AttributeClassifier

    out = tmp_path / "clf"
    assert main(["world", "train", "classifier", str(out), "--num_train", "32", "--num_eval", "8", "--epochs", "1"]) == 0
    printed = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    card = json.loads((out / "card.json").read_text())
    assert card["command"] == f"cirsynth world train classifier {out} --num_train 32 --num_eval 8 --epochs 1 --batch_size 64 --lr 0.002 --seed 0 --threads 1 --blur_max 0.0"
    assert card["quality"]["held_out_accuracy"]["mean"] == printed["accuracy_mean"]
    saved = yaml.safe_load((out / "cirsynth.world-train-classifier.yaml").read_text())
    assert set(saved) == set(inspect.signature(train_classifier).parameters)
    AttributeClassifier.from_pretrained(out)
