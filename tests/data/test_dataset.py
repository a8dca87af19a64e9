import json
import os

import pyarrow.parquet as pq
import pytest
from PIL import Image

from cirsynth.data import DataError, Triplet, TripletDataset
from tests.data.helpers import make_dataset, solid


def test_roundtrip_shards_and_views(tmp_path):
    ds = make_dataset(tmp_path / "ds", shard_size=4)
    all_rows = list(ds.triplets())
    assert len(all_rows) == len(ds) == 26
    assert len(ds.shard_paths()) == 7  # 26 rows in shards of 4
    accepted = list(ds.triplets(status="accepted"))
    assert len(accepted) == 20 and all(t.status == "accepted" for t in accepted)
    rejected = list(ds.triplets(status="rejected"))
    assert {t.reason for t in rejected} == {"clip_dir < 0.2"}
    t = next(ds.triplets(split="val"))
    assert t.scores == {"clip_i2i": 0.8} and t.provenance == {"seed": 0}
    assert t.source_words == ["red"] and t.paraphrases
    im = ds.open_image(t.target)
    assert im.size == (16, 16) and im.mode == "RGB"
    assert ds.open_image(t.reference).tobytes() == solid(0, 0 + 1000 * 3).tobytes()


def test_reference_images_are_deduplicated_by_content(tmp_path):
    ds = TripletDataset.create(tmp_path / "ds")
    img = solid(1, 1)
    with ds.writer() as w:
        a = w.add(Triplet(id="a", reference="", modification_text="x", status="failed", reason="boom"), reference_image=img)
        b = w.add(Triplet(id="b", reference="", modification_text="y", status="failed", reason="boom"), reference_image=img)
    assert a.reference == b.reference
    assert len(list((ds.root / "images" / "ref").iterdir())) == 1


def test_loads_with_hf_datasets_parquet_loader(tmp_path):
    from datasets import load_dataset

    ds = make_dataset(tmp_path / "ds")
    hf = load_dataset("parquet", data_files=str(ds.root / "manifest" / "*.parquet"), split="train")
    assert hf.num_rows == len(ds)
    row = hf[0]
    assert row["id"] == "train-0" and row["source_words"] == ["red"]
    assert json.loads(row["scores"]) == {"clip_i2i": 0.8}


def test_duplicate_id_is_refused_at_write_and_read(tmp_path):
    ds = make_dataset(tmp_path / "ds", per_split={"train": 2}, rejected=0)
    with ds.writer() as w:
        with pytest.raises(DataError, match="duplicated triplet id"):
            w.add(Triplet(id="train-0", reference="", modification_text="x", status="failed", reason="r"), reference_image=solid(0, 0))
    # a foreign shard repeating an id is caught on read, naming the shard and the id
    shard = ds.shard_paths()[0]
    pq.write_table(pq.read_table(shard), ds.root / "manifest" / "part-000099.parquet")
    with pytest.raises(DataError, match=r"part-000099\.parquet \[entry train-0\]: duplicated"):
        list(ds.triplets())


def test_truncated_shard_names_the_file(tmp_path):
    ds = make_dataset(tmp_path / "ds", per_split={"train": 3}, rejected=0, shard_size=2)
    shard = ds.shard_paths()[0]
    shard.write_bytes(shard.read_bytes()[:40])
    with pytest.raises(DataError, match="part-000000.parquet"):
        list(ds.triplets())
    with pytest.raises(DataError, match="unreadable Parquet"):
        ds.table()


def test_missing_image_is_an_error_not_a_silent_drop(tmp_path):
    ds = TripletDataset.create(tmp_path / "ds")
    with ds.writer() as w:
        with pytest.raises(DataError, match="image file missing"):
            w.add(Triplet(id="x", reference="images/ref/nope.png", modification_text="m", target="images/tgt/x.png"))
    with pytest.raises(DataError, match="image file missing"):
        ds.open_image("images/ref/nope.png")


def test_readable_while_written_and_crash_leaves_no_partial_files(tmp_path, monkeypatch):
    ds = TripletDataset.create(tmp_path / "ds")
    w = ds.writer(shard_size=2)
    for i in range(3):
        w.add(Triplet(id=f"t{i}", reference="", modification_text="m", target=""), reference_image=solid(i, 0), target_image=solid(i, 1))
    # a reader opened while the writer is mid-way sees the one complete shard only
    assert [t.id for t in TripletDataset(ds.root).triplets()] == ["t0", "t1"]

    # the next shard write dies half-way (e.g. disk full / kill): no shard and no temp file remain
    import cirsynth.config as config

    real_fdopen = os.fdopen

    class Dying:
        def __init__(self, f):
            self.f = f

        def __enter__(self):
            return self

        def __exit__(self, *a):
            self.f.close()

        def write(self, data):
            self.f.write(data[: len(data) // 2])
            raise OSError("simulated crash mid-write")

        def flush(self):
            pass

        def fileno(self):
            return self.f.fileno()

    monkeypatch.setattr(config.os, "fdopen", lambda fd, mode: Dying(real_fdopen(fd, mode)))
    with pytest.raises(OSError, match="simulated crash"):
        w.flush()
    monkeypatch.undo()
    names = sorted(p.name for p in (ds.root / "manifest").iterdir())
    assert names == ["part-000000.parquet"], names
    assert [t.id for t in TripletDataset(ds.root).triplets()] == ["t0", "t1"]
    # nothing half written among images either: every file there opens
    for p in (ds.root / "images").rglob("*"):
        if p.is_file():
            assert not p.name.endswith(".tmp")
            Image.open(p).load()


def test_invalid_records_are_refused():
    with pytest.raises(ValueError, match="needs a reason"):
        Triplet(id="a", reference="r", modification_text="m", status="rejected")
    with pytest.raises(ValueError, match="status must be"):
        Triplet(id="a", reference="r", modification_text="m", target="t", status="maybe")
    with pytest.raises(ValueError, match="needs a target"):
        Triplet(id="a", reference="r", modification_text="m").validate()


def test_not_a_dataset(tmp_path):
    with pytest.raises(DataError, match="dataset.json missing"):
        TripletDataset(tmp_path)
    (tmp_path / "dataset.json").write_text("{bad")
    with pytest.raises(DataError, match="malformed JSON"):
        TripletDataset(tmp_path)


def test_keyed_shard_is_replaced_when_written_again_and_numbers_go_on(tmp_path):
    from cirsynth.data import keyed_shard_name

    ds = make_dataset(tmp_path / "ds", per_split={"train": 2}, rejected=0, shard_size=10)  # part-000000
    base = ds.next_shard_number()
    name = keyed_shard_name(base, ["a.png", "b.png"])
    assert name == keyed_shard_name(base, ["a.png", "b.png"]) != keyed_shard_name(base, ["b.png", "a.png"])
    for attempt in range(2):  # a retried batch writes the same rows again under the same name
        with ds.writer(shard_size=10**9, shard_name=name) as w:
            w.add(Triplet(id="a.png:0", reference="", modification_text=f"try {attempt}"), reference_image=solid(1, 1),
                  target_image=solid(1, 2))
    assert [p.name for p in ds.shard_paths()] == ["part-000000.parquet", name]
    assert [t.modification_text for t in ds.triplets() if t.id == "a.png:0"] == ["try 1"]  # replaced, not added
    with ds.writer(shard_size=1) as w:  # a sequential writer numbers after the keyed shard
        w.add(Triplet(id="c.png:0", reference="", modification_text="x"), reference_image=solid(2, 2), target_image=solid(2, 3))
    assert ds.shard_paths()[-1].name == f"part-{base + 1:06d}.parquet"
    with pytest.raises(ValueError, match="not a shard name"):
        ds.writer(shard_name="part-1.parquet")
