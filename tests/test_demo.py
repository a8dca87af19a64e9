import json

from PIL import Image

from cirsynth.cli import main
from cirsynth.data import TripletDataset


def test_demo_runs_the_whole_flow_and_scores_against_ground_truth(tmp_path, capsys):
    out = tmp_path / "demo"
    assert main(["demo", "--out", str(out), "--n", "3", "--num_steps", "3", "--candidates", "2", "--progress", "false"]) == 0
    result = json.loads((out / "demo_result.json").read_text())
    ds = TripletDataset(out / "dataset")
    rows = list(ds.triplets())
    assert {r.provenance["input"] for r in rows} == {f"references/scene{i:03d}.png" for i in range(3)}
    syn = result["synthesis"]
    assert syn["accepted"] + syn["rejected"] + syn["failed"] == len(rows)
    if result["models"]["captioner"]:  # the recipe's filter reads the re-captions: every candidate has their scores
        scored = [s for r in rows for s in r.provenance.get("candidate_scores", [])]
        assert scored and all("recaption_diff" in s and "likelihood_kept" in s for s in scored)
    gt = result["ground_truth"]
    assert gt["edits"] == syn["accepted"] + syn["rejected"]
    assert 0 <= gt["with_ground_truth"] <= gt["edits"]
    if "all" in gt:  # judged by the bundled attribute classifier
        assert gt["all"]["n"] == gt["with_ground_truth"]
        verdicts = [json.loads(line) for line in (out / "dataset" / "ground_truth.jsonl").read_text().splitlines()]
        assert len(verdicts) == gt["all"]["n"] and {v["id"] for v in verdicts} <= {r.id for r in rows}
        assert round(100.0 * sum(v["success"] for v in verdicts) / len(verdicts), 1) == gt["all"]["success"]
        assert 0.0 <= gt["all"]["success"] <= min(gt["all"]["target"], gt["all"]["preserved"])
    if result["models"]["captioner"]:  # captions come from the bundled world captioner, scored against the truth
        assert all(r.provenance.get("captioner") or r.reference_caption for r in rows)
        assert 0.0 <= gt["caption_exact"] <= 100.0
    # rows without ground truth say why; the console lists what was written and what was skipped, and why
    missing = gt["edits"] - gt["with_ground_truth"]
    assert sum(gt.get("no_ground_truth", {}).values()) == missing
    assert all(why for why in gt.get("no_ground_truth", {}))
    cirr = result["cirr_export"]
    printed = capsys.readouterr().out
    assert "4. wrote:" in printed and str(out / "grid.png") in printed
    if "written" in cirr:
        assert (out / "cirr_dataset" / "cirr" / "captions").is_dir() and str(out / "cirr_dataset") in printed
    else:
        assert cirr["skipped"] and f"skipped the CIRR export: {cirr['skipped']}" in printed
        assert not (out / "cirr_dataset").exists()
    grid = Image.open(out / "grid.png")
    assert grid.size[0] == 4 * 128 and grid.size[1] >= 128
    assert (out / "cirsynth.demo.yaml").is_file()
    # the demo synthesizes with the world recipe's every setting (as `synthesize --recipe world`), but what this test
    # sets (--num_steps, --candidates); the demo once left the recipe's paste out and edited with "none"
    from cirsynth.synth.settings import NESTED
    from cirsynth.world.recipe import recipe_settings

    run = json.loads((out / "dataset" / "dataset.json").read_text())["run_config"]
    for key, value in recipe_settings().items():
        if key not in ("num_steps", "candidates"):
            got = run[NESTED[key][0]][NESTED[key][1]] if key in NESTED else run[key]
            assert got == json.loads(json.dumps(value)), key


def test_wrap_words_breaks_before_a_word_that_would_pass_the_width():
    from cirsynth.world.pictures import wrap_words

    assert wrap_words("make the circle green", 10) == ["make the", "circle", "green"]
    assert wrap_words("", 10) == [""]
