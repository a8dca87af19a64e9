import csv
import json

from PIL import Image

from cirsynth.cli import main


def test_train_cir_cli_trains_and_evaluates(tiny_clip_dir, real_ds, synthetic_ds, tmp_path):
    out = tmp_path / "run"
    rc = main(["train-cir", str(tiny_clip_dir), str(out), "--real", f"triplets:{real_ds.root}:train",
               "--synthetic", f"[triplets:{synthetic_ds.root}]", "--real_fraction", "0.5", "--synthetic_ratio", "1.0",
               "--val", f"triplets:{real_ds.root}:test", "--epochs", "3", "--batch_size", "8",
               "--projection_dim", "32", "--hidden_dim", "64", "--cpu", "true"])
    assert rc == 0
    log = json.loads((out / "train_log.json").read_text())
    assert log["n_real"] == 12 and log["n_synthetic"] == 12
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["queries"] == 24 and 0 <= metrics["R@1"] <= metrics["R@5"] <= metrics["R@10"] <= 100
    assert (out / "cirsynth.train-cir.yaml").exists() and (out / "model" / "combiner.safetensors").exists()

    # the trained model evaluates through `cirsynth evaluate --model`, with the same numbers as after training
    ev = tmp_path / "eval"
    assert main(["evaluate", "--model", str(out / "model"), "--dataset", f"triplets:{real_ds.root}:test", "--out", str(ev)]) == 0
    again = json.loads((ev / "metrics.json").read_text())["metrics"]
    assert again == metrics


def test_train_cir_cli_without_data_fails(tiny_clip_dir, tmp_path):
    assert main(["train-cir", str(tiny_clip_dir), str(tmp_path / "x")]) != 0


def test_data_scarcity_experiment_end_to_end(tiny_clip_dir, real_ds, synthetic_ds, tmp_path):
    out = tmp_path / "exp"
    rc = main(["experiment", "data-scarcity", str(tiny_clip_dir), f"triplets:{real_ds.root}:train",
               f"triplets:{real_ds.root}:test", str(out), "--synthetic", f"[{synthetic_ds.root}]",
               "--fractions", "[0.25, 1.0]", "--seeds", "[0, 1]", "--epochs", "4", "--batch_size", "6", "--lr", "0.003",
               "--projection_dim", "16", "--hidden_dim", "32", "--cpu", "true"])
    assert rc == 0
    rows = list(csv.DictReader((out / "data_scarcity.csv").open()))
    assert len(rows) == 2 * 2 * 2
    got = {(r["real_fraction"], r["setting"], r["seed"]): r for r in rows}
    assert got[("0.25", "real", "0")]["n_real"] == "6" and got[("0.25", "real", "0")]["n_synthetic"] == "0"
    assert got[("0.25", "real+synthetic", "1")]["n_synthetic"] == "24"
    md = (out / "data_scarcity.md").read_text()
    assert "| 0.25 |" in md and "| 1 |" in md and "(n=2)" in md and "R@1" in md
    full_real = [float(r["R@1"]) for r in rows if r["real_fraction"] == "1.0" and r["setting"] == "real"]
    assert f"| 1 | {sum(full_real) / 2:.2f} ± " in md  # the table's mean is the CSV's mean
    with Image.open(out / "data_scarcity.png") as im:
        assert im.size[0] > 100
    assert len(list((out / "runs").iterdir())) == 8
