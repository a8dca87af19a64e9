import pytest

from cirsynth.cir import CIRQuery, CIRSplit, build_training_set, fashioniq_text_variants, from_triplet_dataset
from cirsynth.cir import load_split, sample_fraction


def split(n, name="s", prefix="q"):
    qs = [CIRQuery(f"{prefix}{i:03d}", f"r{i}", [f"text {i}"], f"t{i}") for i in range(n)]
    images = {k: k for q in qs for k in (q.reference, q.target)}
    return CIRSplit(name, name, qs, images)


def ids(qs):
    return {q.id for q in qs}


def test_fraction_sampling_is_seeded_nested_and_order_free():
    qs = split(200).queries
    s10, s30, s50, s100 = (sample_fraction(qs, f, seed=3) for f in (0.1, 0.3, 0.5, 1.0))
    assert [len(s) for s in (s10, s30, s50, s100)] == [20, 60, 100, 200]
    assert ids(s10) < ids(s30) < ids(s50) < ids(s100)
    assert ids(sample_fraction(list(reversed(qs)), 0.3, seed=3)) == ids(s30)
    assert ids(sample_fraction(qs, 0.3, seed=3)) == ids(s30)
    assert ids(sample_fraction(qs, 0.3, seed=4)) != ids(s30)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        sample_fraction(qs, 1.5, seed=0)


def test_training_set_mixes_synthetic_at_ratio():
    real, syn_a, syn_b = split(100, "real"), split(30, "a", "a"), split(30, "b", "b")
    parts = build_training_set(real, 0.2, [syn_a, syn_b], synthetic_ratio=1.5, seed=0)
    assert not parts[0].synthetic and len(parts[0].queries) == 20
    assert sum(len(p.queries) for p in parts if p.synthetic) == 30
    assert all(p.split in (syn_a, syn_b) for p in parts[1:])
    again = build_training_set(real, 0.2, [syn_a, syn_b], synthetic_ratio=1.5, seed=0)
    assert [ids(p.queries) for p in again] == [ids(p.queries) for p in parts]
    everything = build_training_set(real, 0.2, [syn_a, syn_b], synthetic_ratio=None, seed=0)
    assert sum(len(p.queries) for p in everything if p.synthetic) == 60
    assert len(build_training_set(real, 0.5, [], seed=0)) == 1
    with pytest.raises(ValueError, match="only 60 exist"):
        build_training_set(real, 1.0, [syn_a, syn_b], synthetic_ratio=1.0, seed=0)


def test_split_rejects_missing_images_and_empty_texts():
    with pytest.raises(ValueError, match="no file"):
        CIRSplit("x", "x", [CIRQuery("1", "r", ["t"], "missing")], {"r": "r"})
    with pytest.raises(ValueError, match="non-empty"):
        CIRQuery("1", "r", [" "], "t")


def test_fashioniq_variants():
    v = fashioniq_text_variants(["is red.", "has long sleeves"])
    assert v == ["Is red and has long sleeves", "Has long sleeves and is red", "Is red", "Has long sleeves"]
    with pytest.raises(ValueError, match="two captions"):
        fashioniq_text_variants(["only one"])


def test_triplet_dataset_adapter(real_ds):
    train = from_triplet_dataset(real_ds.root, "train")
    assert len(train.queries) == 24 and train.kind == "generic"
    q = train.queries[0]
    assert q.texts[0].startswith("make it ") and q.texts[1].startswith("change it to ")
    assert train.open_image(q.target).size == (32, 32)
    assert len(load_split(f"triplets:{real_ds.root}:test").queries) == 24
    assert len(load_split(str(real_ds.root)).queries) == 48
    with pytest.raises(ValueError, match="no accepted triplets"):
        from_triplet_dataset(real_ds.root, "val")
