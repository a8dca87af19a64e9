"""The experiment's reference arms: oracle and wrong-edit targets for exactly the accepted synthetic triplets."""

import json

import numpy as np

from cirsynth.cli import main
from cirsynth.data import Triplet, TripletDataset
from cirsynth.world.benchmark import BenchmarkConfig, build_benchmark, write_benchmark
from cirsynth.world.ground_truth import possible_edits
from cirsynth.world.render import render
from cirsynth.world.scene import Scene


def test_controls_render_the_true_and_another_edit_for_accepted_triplets(tmp_path, capsys):
    bench = write_benchmark(build_benchmark(BenchmarkConfig(num_train=6, num_val=2, num_test=2, seed=1)), tmp_path / "bench")
    refs = {}
    for t in bench.triplets(split="train"):
        refs.setdefault(t.reference, t)
    from cirsynth.world.controls import benchmark_scenes

    variants = {k: v for k, (_, v) in benchmark_scenes(bench.root).items()}
    syn = TripletDataset.create(tmp_path / "syn")
    want = {}
    with syn.writer() as w:
        for i, (ref, t) in enumerate(list(refs.items())[:4]):
            scene = Scene.from_dict(t.provenance["reference_scene"])
            variant = variants[str(bench.image_path(ref).resolve())]
            edit = next(e for e in possible_edits(scene, variant) if e.edit_type == "color")
            ce = edit.caption_edit
            # row 3: a caption that fits no scene edit (no ground truth); row 2: rejected (not a control)
            target_caption = ce.target_caption if i != 3 else "a caption the scene does not fit"
            status = "rejected" if i == 2 else "accepted"
            image = bench.open_image(ref)
            ours = render(edit.target) if i == 0 else image  # row 0: a right edit; the others: the reference unchanged
            w.add(Triplet(id=f"s{i}", reference="", target="", modification_text=ce.modification_text,
                          reference_caption=t.reference_caption, target_caption=target_caption, edit_type="color",
                          status=status, reason=None if status == "accepted" else "x",
                          provenance={"input": str(bench.image_path(ref).resolve())}),
                  reference_image=image, target_image=ours)
            want[f"s{i}"] = edit
    assert main(["world", "controls", str(syn.root), str(bench.root), str(tmp_path / "oracle"), str(tmp_path / "wrong")]) == 0
    counts = json.loads(capsys.readouterr().out)
    # our own images judged by the bundled classifier against the ground truth: row 0 right, row 1 (unchanged) not
    assert counts["judged"] == {"accepted": {"edits": 2, "right": 1, "target": 1, "preserved": 2}}
    oracle, wrong = TripletDataset(tmp_path / "oracle"), TripletDataset(tmp_path / "wrong")
    assert counts["accepted"] == 3 and counts["no_ground_truth"] == 1 and counts["oracle"] == 2
    assert counts["oracle"] == len(list(oracle.triplets())) == 3 - counts["no_ground_truth"] - counts["not_a_benchmark_reference"]
    assert counts["not_a_benchmark_reference"] == 0
    for t in oracle.triplets():
        edit = want[t.id]
        assert np.array_equal(np.asarray(oracle.open_image(t.target)), np.asarray(render(edit.target)))
        assert t.modification_text == edit.caption_edit.modification_text
    for t in wrong.triplets():
        edit = want[t.id]
        tgt = np.asarray(wrong.open_image(t.target))
        assert not np.array_equal(tgt, np.asarray(render(edit.target)))  # another edit's target, not the true one
        assert not np.array_equal(tgt, np.asarray(wrong.open_image(t.reference)))
        assert Scene.from_dict(t.provenance["target_scene"]).key() != edit.target.key()
    # every edit, rejected ones too, and ours with the filter off: the same edits as the oracle, our own images
    assert main(["world", "controls", str(syn.root), str(bench.root), str(tmp_path / "oracle_all"), str(tmp_path / "wrong_all"),
                 "--all_edits", "true", "--unfiltered_out", str(tmp_path / "ours_all")]) == 0
    counts = json.loads(capsys.readouterr().out)
    assert (counts["accepted"], counts["rejected"], counts["oracle"], counts["unfiltered"]) == (3, 1, 3, 3)
    assert counts["judged"]["rejected"] == {"edits": 1, "right": 0, "target": 0, "preserved": 1}
    ours = {t.id: t for t in TripletDataset(tmp_path / "ours_all").triplets(status="accepted")}
    assert set(ours) == {t.id for t in TripletDataset(tmp_path / "oracle_all").triplets()} == {"s0", "s1", "s2"}
    assert ours["s2"].provenance["status_in_run"] == "rejected"
    assert np.array_equal(np.asarray(TripletDataset(tmp_path / "ours_all").open_image(ours["s2"].target)),
                          np.asarray(syn.open_image(next(t for t in syn.triplets() if t.id == "s2").target)))
    assert main(["world", "controls", str(syn.root), str(bench.root), str(tmp_path / "o2"), str(tmp_path / "w2"),
                 "--judge", "false"]) == 0
    assert "judged" not in json.loads(capsys.readouterr().out)
