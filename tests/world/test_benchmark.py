import numpy as np
import pytest

from cirsynth.data.cirr import image_name, read_cirr
from cirsynth.data.dataset import TripletDataset
from cirsynth.world.benchmark import BenchmarkConfig, build_benchmark, write_benchmark
from cirsynth.world.scene import Scene, scene_combos, scene_diff


@pytest.fixture(scope="module")
def bench():
    return build_benchmark(BenchmarkConfig(num_train=24, num_val=8, num_test=16, seed=3))


def _scenes_of(bench, split):
    return [bench.scenes[sid] for t in bench.triplets if t.split == split for sid in t.group]


def test_sizes_ids_and_determinism(bench):
    counts = {s: sum(t.split == s for t in bench.triplets) for s in ("train", "val", "test")}
    assert counts == {"train": 24, "val": 8, "test": 16}
    assert len({t.id for t in bench.triplets}) == len(bench.triplets)
    again = build_benchmark(BenchmarkConfig(num_train=24, num_val=8, num_test=16, seed=3))
    assert [t.to_row() for t in again.triplets] == [t.to_row() for t in bench.triplets]


def test_splits_share_no_scene(bench):
    keys = {s: {sc.key() for sc in _scenes_of(bench, s)} for s in ("train", "val", "test")}
    assert not keys["train"] & keys["val"]
    assert not keys["train"] & keys["test"]
    assert not keys["val"] & keys["test"]


def test_held_out_combinations_only_in_test(bench):
    assert len(bench.held_out_combos) == 4
    for split in ("train", "val"):
        for sc in _scenes_of(bench, split):
            assert not scene_combos(sc) & bench.held_out_combos
    test_refs = [bench.scenes[t.reference] for t in bench.triplets if t.split == "test"]
    assert sum(bool(scene_combos(s) & bench.held_out_combos) for s in test_refs) >= 3


def test_groups_are_six_similar_images_with_reference_and_target(bench):
    for t in bench.triplets:
        assert len(t.group) == 6 == len(set(t.group))
        assert t.group[0] == t.reference and t.group[1] == t.target
        ref = bench.scenes[t.reference]
        for sid in t.group[1:]:
            assert 1 <= len(scene_diff(ref, bench.scenes[sid])) <= 5  # one edit away (count moves a whole slot)
            assert bench.scenes[sid].seed == ref.seed


def test_ground_truth_target_is_the_edited_scene(bench):
    for t in bench.triplets:
        ref = Scene.from_dict(t.provenance["reference_scene"])
        tgt = Scene.from_dict(t.provenance["target_scene"])
        assert bench.scenes[t.reference] == ref and bench.scenes[t.target] == tgt
        diff = scene_diff(ref, tgt)
        if t.edit_type == "count":
            assert {k.split(".")[0] for k in diff} and len(diff) == 5
        else:
            assert diff == {t.provenance["attribute"]: (t.provenance["old"], t.provenance["new"])}


def test_written_with_the_dataset_and_read_back_as_cirr(tmp_path, bench):
    small = build_benchmark(BenchmarkConfig(num_train=6, num_val=3, num_test=4, seed=1))
    ds = write_benchmark(small, tmp_path / "ds")
    back = sorted(TripletDataset(tmp_path / "ds").triplets(), key=lambda t: t.id)
    assert [t.id for t in back] == sorted(t.id for t in small.triplets)
    by_id = {t.id: t for t in small.triplets}
    for t in back:
        orig = by_id[t.id]
        assert t.modification_text == orig.modification_text and t.split == orig.split
        assert len(t.group) == 6 and t.group[0] == t.reference and t.group[1] == t.target
        ref_px = np.asarray(ds.open_image(t.reference))
        assert np.array_equal(ref_px, np.asarray(small.image(orig.reference)))
        assert not np.array_equal(ref_px, np.asarray(ds.open_image(t.target)))

    from cirsynth.data.cirr import export_cirr

    counts = export_cirr(ds, tmp_path / "cirr")
    assert counts == {"train": 6, "val": 3, "test1": 4}
    for cirr_split, split in (("train", "train"), ("val", "val"), ("test1", "test")):
        queries = read_cirr(tmp_path / "cirr", cirr_split).queries
        mine = sorted((t for t in back if t.split == split), key=lambda t: t.id)
        assert sorted(q.caption for q in queries) == sorted(t.modification_text for t in mine)
        for q in queries:
            t = next(t for t in mine if image_name(t.reference) == q.reference and t.modification_text == q.caption)
            assert q.target == image_name(t.target)
            assert q.members == [image_name(g) for g in t.group]


def test_bad_config_is_refused():
    with pytest.raises(ValueError, match="edit types"):
        BenchmarkConfig(edit_types=("weather",))
    with pytest.raises(ValueError, match="group_size"):
        BenchmarkConfig(group_size=1)
