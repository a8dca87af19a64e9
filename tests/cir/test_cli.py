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


def test_train_cir_cli_blip_trains_and_evaluates(tiny_blip_dir, real_ds, synthetic_ds, tmp_path):
    out = tmp_path / "blip"
    rc = main(["train-cir", str(tiny_blip_dir), str(out), "--model", "blip", "--real", f"triplets:{real_ds.root}:train",
               "--synthetic", f"[triplets:{synthetic_ds.root}]", "--real_fraction", "0.5", "--synthetic_ratio", "1.0",
               "--val", f"triplets:{real_ds.root}:test", "--epochs", "10", "--batch_size", "8", "--lr", "0.0005",
               "--embed_dim", "16", "--save_every", "5", "--cpu", "true"])
    assert rc == 0
    log = json.loads((out / "train_log.json").read_text())
    losses = log["epoch_losses"]
    assert log["model_kind"] == "blip" and log["n_real"] == 12 and log["n_synthetic"] == 12
    assert len(losses) == 10 and losses[-1] < 0.8 * losses[0]
    meta = json.loads((out / "model" / "cir_model.json").read_text())
    assert meta["kind"] == "blip" and meta["head"]["embed_dim"] == 16
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["queries"] == 24 and 0 <= metrics["R@1"] <= metrics["R@5"] <= metrics["R@10"] <= 100

    # `cirsynth evaluate --model` reads the kind from the checkpoint and gives the numbers reported after training
    ev = tmp_path / "eval"
    assert main(["evaluate", "--model", str(out / "model"), "--dataset", f"triplets:{real_ds.root}:test",
                 "--out", str(ev), "--device", "cpu"]) == 0
    assert json.loads((ev / "metrics.json").read_text())["metrics"] == metrics
    # the epoch-5 checkpoint is a model folder too
    mid = tmp_path / "eval-mid"
    assert main(["evaluate", "--model", str(out / "checkpoints" / "epoch-5"), "--dataset",
                 f"triplets:{real_ds.root}:test", "--out", str(mid), "--device", "cpu"]) == 0
    assert json.loads((mid / "metrics.json").read_text())["metrics"]["queries"] == 24


def test_train_cir_cli_resumes(tiny_clip_dir, real_ds, tmp_path):
    out = tmp_path / "run"
    args = ["train-cir", str(tiny_clip_dir), str(out), "--real", f"triplets:{real_ds.root}:train", "--batch_size", "8",
            "--projection_dim", "16", "--hidden_dim", "32", "--save_every", "1", "--cpu", "true"]
    assert main(args + ["--epochs", "2"]) == 0
    assert main(args + ["--epochs", "3", "--resume"]) == 0  # a bare --resume is --resume true
    log = json.loads((out / "train_log.json").read_text())
    assert log["resumed_from"] == 2 and len(log["epoch_losses"]) == 3 and log["config"]["resume"] is True
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == ["epoch-1", "epoch-2", "epoch-3"]


def test_data_scarcity_experiment_trains_the_chosen_model_kind(tiny_blip_dir, real_ds, synthetic_ds, tmp_path):
    out = tmp_path / "exp"
    rc = main(["experiment", "data-scarcity", str(tiny_blip_dir), f"triplets:{real_ds.root}:train",
               f"triplets:{real_ds.root}:test", str(out), "--model", "blip", "--synthetic", f"[{synthetic_ds.root}]",
               "--fractions", "[0.5]", "--seeds", "[0]", "--epochs", "1", "--batch_size", "8", "--lr", "0.0005",
               "--cpu", "true"])
    assert rc == 0
    rows = list(csv.DictReader((out / "data_scarcity.csv").open()))
    assert [(r["setting"], r["n_real"], r["n_synthetic"]) for r in rows] == [("real", "12", "0"),
                                                                            ("real+synthetic", "12", "24")]
    runs = sorted((out / "runs").iterdir())
    assert [json.loads((r / "train_log.json").read_text())["model_kind"] for r in runs] == ["blip", "blip"]


def test_data_scarcity_equal_steps_reference_arms_and_paired_intervals(tiny_clip_dir, real_ds, synthetic_ds, tmp_path):
    from cirsynth.cir.experiment import paired_differences

    out = tmp_path / "exp"
    rc = main(["experiment", "data-scarcity", str(tiny_clip_dir), f"triplets:{real_ds.root}:train",
               f"triplets:{real_ds.root}:test", str(out), "--synthetic", f"[{synthetic_ds.root}]",
               "--oracle", f"[{synthetic_ds.root}]", "--wrong_edit", f"[triplets:{real_ds.root}:test]", "--steps", "12",
               "--fractions", "[0.25]", "--seeds", "[0, 1, 2]", "--batch_size", "6", "--lr", "0.003",
               "--projection_dim", "16", "--hidden_dim", "32", "--cpu", "true"])
    assert rc == 0
    rows = list(csv.DictReader((out / "data_scarcity.csv").open()))
    assert {r["setting"] for r in rows} == {"real", "real+synthetic", "real+oracle", "real+wrong-edit"}
    assert len(rows) == 4 * 3
    # the same optimisation budget whatever the data: 6 real queries = 1 step/epoch -> 12 epochs; 30 queries = 5
    # steps/epoch -> 3 epochs (15 steps, the fewest whole epochs reaching 12)
    by = {(r["setting"], r["seed"]): r for r in rows}
    assert by[("real", "0")]["epochs"] == "12" and by[("real", "0")]["steps"] == "12"
    assert by[("real+synthetic", "0")]["epochs"] == "3" and by[("real+synthetic", "0")]["steps"] == "15"
    # the paired differences are per seed against the same seed's real-only run, with a t-interval around the mean
    parsed = [{**r, "real_fraction": float(r["real_fraction"]), "seed": int(r["seed"]), "R@1": float(r["R@1"])} for r in rows]
    paired = {p["setting"]: p for p in paired_differences(parsed, "R@1")}
    diffs = [float(by[("real+oracle", s)]["R@1"]) - float(by[("real", s)]["R@1"]) for s in "012"]
    assert abs(paired["real+oracle"]["mean_diff"] - sum(diffs) / 3) < 1e-9
    p = paired["real+oracle"]
    assert p["ci95_low"] <= p["mean_diff"] <= p["ci95_high"] and p["seeds"] == 3
    if p["ci95_low"] > 0:  # a share only of an oracle gain that is there
        assert abs(paired["real+synthetic"]["share_of_oracle_gain"] - paired["real+synthetic"]["mean_diff"] / p["mean_diff"]) < 1e-9
    else:
        assert "share_of_oracle_gain" not in paired["real+synthetic"]
    md = (out / "data_scarcity.md").read_text()
    assert "Paired difference" in md and "real+wrong-edit" in md and "Optimisation steps per run: 12–15" in md


def test_paired_interval_matches_a_t_interval_by_hand():
    from cirsynth.cir.experiment import paired_differences

    rows = [{"real_fraction": 0.1, "setting": s, "seed": k, "R@1": v}
            for k, (a, b) in enumerate([(50, 53), (51, 55), (49, 50), (50, 54)]) for s, v in (("real", a), ("real+oracle", b))]
    rows += [{"real_fraction": 0.1, "setting": "real+synthetic", "seed": k, "R@1": v} for k, v in enumerate([51, 52, 50, 51])]
    got = {p["setting"]: p for p in paired_differences(rows, "R@1")}
    d = [3, 4, 1, 4]
    mean = sum(d) / 4
    sd = (sum((x - mean) ** 2 for x in d) / 3) ** 0.5
    half = 3.182446305284263 * sd / 2  # t(0.975, 3) * sd / sqrt(4)
    assert abs(got["real+oracle"]["mean_diff"] - 3.0) < 1e-12
    assert abs(got["real+oracle"]["ci95_high"] - (mean + half)) < 1e-9 and abs(got["real+oracle"]["ci95_low"] - (mean - half)) < 1e-9
    assert abs(got["real+synthetic"]["share_of_oracle_gain"] - 1.0 / 3.0) < 1e-12
    # an oracle "gain" whose interval holds 0 (or a loss) has no share to give: -0.5 of -0.4 is not 125% of anything
    noisy = [{**r, "R@1": r["R@1"] + (0 if r["setting"] != "real+oracle" else [-3, -3.5, -1.5, -4][r["seed"]])} for r in rows]
    got = {p["setting"]: p for p in paired_differences(noisy, "R@1")}
    assert got["real+oracle"]["ci95_low"] < 0 and "share_of_oracle_gain" not in got["real+synthetic"]
