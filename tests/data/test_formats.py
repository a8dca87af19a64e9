import json
import tarfile
from pathlib import Path

import pytest
from PIL import Image

from cirsynth.data import DataError, export_cirr, export_fashioniq, export_webdataset, join_captions, read_cirr, read_fashioniq
from tests.data.helpers import make_dataset


def clip4cir_style_cirr_read(base: Path, split: str):
    """Reads a CIRR folder the way CLIP4Cir's CIRRDataset does: only its fields, only its logic."""
    triplets = json.loads((base / "cirr_dataset" / "cirr" / "captions" / f"cap.rc2.{split}.json").read_text())
    name_to_relpath = json.loads((base / "cirr_dataset" / "cirr" / "image_splits" / f"split.rc2.{split}.json").read_text())
    found = []
    for t in triplets:  # 'relative' mode
        members = t["img_set"]["members"]
        ref, caption = t["reference"], t["caption"]
        tgt = t["target_hard"]
        ref_img = Image.open(base / "cirr_dataset" / name_to_relpath[ref])
        tgt_img = Image.open(base / "cirr_dataset" / name_to_relpath[tgt])
        ref_img.load(), tgt_img.load()
        found.append((t["pairid"], ref, tgt, caption, members))
    for name in list(name_to_relpath.keys()):  # 'classic' mode: the gallery
        Image.open(base / "cirr_dataset" / name_to_relpath[name]).load()
    return found, name_to_relpath


def test_cirr_export_reads_in_clip4cir_loader_logic(tmp_path):
    ds = make_dataset(tmp_path / "ds")
    counts = export_cirr(ds, tmp_path / "out" / "cirr_dataset")
    assert counts == {"train": 8, "val": 6, "test1": 6}
    for split, ds_split in (("train", "train"), ("val", "val"), ("test1", "test")):
        found, gallery = clip4cir_style_cirr_read(tmp_path / "out", split)
        expected = {t.modification_text + "|" + t.id for t in ds.triplets(status="accepted", split=ds_split)}
        entries = json.loads((tmp_path / "out/cirr_dataset/cirr/captions" / f"cap.rc2.{split}.json").read_text())
        assert {e["caption"] + "|" + e["cirsynth_id"] for e in entries} == expected  # every pair, none extra
        for pairid, ref, tgt, caption, members in found:
            assert len(members) == 6 and len(set(members)) == 6
            assert ref in members and tgt in members  # CIRR groups hold reference and target
            assert all(m in gallery for m in members)
        assert len({p for p, *_ in found}) == len(found)  # unique pair ids


def test_cirr_export_is_read_back_by_importer(tmp_path):
    ds = make_dataset(tmp_path / "ds")
    export_cirr(ds, tmp_path / "cirr_dataset")
    val = read_cirr(tmp_path / "cirr_dataset", "val")
    assert len(val.queries) == 6 and not val.rejections
    by_id = {t.id: t for t in ds.triplets(status="accepted", split="val")}
    entries = json.loads((tmp_path / "cirr_dataset/cirr/captions/cap.rc2.val.json").read_text())
    for q, e in zip(val.queries, entries):
        t = by_id[e["cirsynth_id"]]
        assert q.caption == t.modification_text
        assert Image.open(val.images[q.target]).tobytes() == ds.open_image(t.target).tobytes()
    # the inner cirr folder is accepted too
    assert len(read_cirr(tmp_path / "cirr_dataset" / "cirr", "val").queries) == 6


def test_cirr_export_refuses_to_overwrite(tmp_path):
    ds = make_dataset(tmp_path / "ds", per_split={"train": 6}, rejected=0)
    export_cirr(ds, tmp_path / "c")
    with pytest.raises(FileExistsError):
        export_cirr(ds, tmp_path / "c")
    export_cirr(ds, tmp_path / "c", overwrite=True)


def test_staged_folder_keeps_a_folder_another_process_finished_first(tmp_path):
    from cirsynth.data.io_utils import staged_output_dir

    dst = tmp_path / "cache" / "model"
    with staged_output_dir(dst, keep_existing=True) as tmp:
        (tmp / "weights").write_text("mine")
        dst.mkdir()  # another process's folder lands while this one is being written
        (dst / "weights").write_text("theirs")
    assert (dst / "weights").read_text() == "theirs" and sorted(p.name for p in dst.parent.iterdir()) == ["model"]
    other = tmp_path / "cache" / "other"
    with staged_output_dir(other, keep_existing=True) as tmp:
        (tmp / "weights").write_text("mine")
    assert (other / "weights").read_text() == "mine" and sorted(p.name for p in other.parent.iterdir()) == ["model", "other"]
    with pytest.raises(RuntimeError), staged_output_dir(tmp_path / "cache" / "failed", keep_existing=True) as tmp:
        (tmp / "weights").write_text("half")
        raise RuntimeError("crash")
    assert sorted(p.name for p in other.parent.iterdir()) == ["model", "other"]  # nothing half-written left


def _cirr(tmp_path) -> Path:
    ds = make_dataset(tmp_path / "ds", per_split={"val": 6}, rejected=0)
    export_cirr(ds, tmp_path / "c")
    return tmp_path / "c"


def test_cirr_bad_input_is_named(tmp_path):
    root = _cirr(tmp_path)
    cap = root / "cirr/captions/cap.rc2.val.json"
    good = cap.read_text()
    entries = json.loads(good)

    cap.write_text(good[: len(good) // 2])  # truncated
    with pytest.raises(DataError, match=r"cap\.rc2\.val\.json: malformed or truncated JSON at line"):
        read_cirr(root, "val")

    dup = entries + [dict(entries[0])]
    cap.write_text(json.dumps(dup))
    with pytest.raises(DataError, match=r"\[entry 0\]: duplicated pairid"):
        read_cirr(root, "val")
    lenient = read_cirr(root, "val", strict=False)
    assert len(lenient.queries) == 6 and [r.reason for r in lenient.rejections] == ["duplicated pairid"]

    bad = [dict(e) for e in entries]
    bad[2]["target_hard"] = "not-an-image"
    cap.write_text(json.dumps(bad))
    with pytest.raises(DataError, match=r"\[entry 2\]: target 'not-an-image' is not in the gallery"):
        read_cirr(root, "val")

    bad = [dict(e) for e in entries]
    del bad[1]["caption"]
    cap.write_text(json.dumps(bad))
    with pytest.raises(DataError, match=r"\[entry 1\]: field 'caption' missing"):
        read_cirr(root, "val")

    cap.write_text(good)
    img = root / "val" / (entries[3]["reference"] + ".png")
    img.unlink()
    with pytest.raises(DataError, match=rf"\[entry {entries[3]['reference']}\]: image file missing"):
        read_cirr(root, "val")
    lenient = read_cirr(root, "val", strict=False)
    # the missing image is rejected, and so is every query that needs it: nothing vanishes silently
    assert any("image file missing" in r.reason for r in lenient.rejections)
    assert len(lenient.queries) + sum("not in the gallery" in r.reason for r in lenient.rejections) == 6


def test_fashioniq_export_and_import(tmp_path):
    ds = make_dataset(tmp_path / "ds")
    counts = export_fashioniq(ds, tmp_path / "fashionIQ_dataset", category="toptee")
    assert counts == {"train": 8, "val": 6, "test": 6}
    root = tmp_path / "fashionIQ_dataset"
    # CLIP4Cir's logic: captions list, candidate/target names, images/<name>.jpg
    caps = json.loads((root / "captions/cap.toptee.train.json").read_text())
    names = json.loads((root / "image_splits/split.toptee.train.json").read_text())
    for e in caps:
        assert len(e["captions"]) == 2 and e["captions"][0] != e["captions"][1]
        for n in (e["candidate"], e["target"]):
            assert n in names
            Image.open(root / "images" / f"{n}.jpg").load()
    split = read_fashioniq(root, "toptee", "val")
    assert len(split.queries) == 6 and not split.rejections
    with pytest.raises(DataError, match="file not found"):
        read_fashioniq(root, "dress", "val")


def test_join_captions_is_deterministic():
    assert join_captions(["is blue.", "has long sleeves "]) == "Is blue and has long sleeves"
    assert join_captions(["", "is red"]) == "Is red"


def test_webdataset_export_reads_with_webdataset(tmp_path):
    import webdataset as wds

    ds = make_dataset(tmp_path / "ds")
    info = export_webdataset(ds, tmp_path / "wds", shard_size=7)
    assert info == {"samples": 20, "shards": 3}
    shards = sorted(str(p) for p in (tmp_path / "wds").glob("shard-*.tar"))
    with tarfile.open(shards[0]) as tar:
        names = tar.getnames()
    assert names[:3] == ["000000000.ref.png", "000000000.tgt.png", "000000000.json"]
    seen = []
    for sample in wds.WebDataset(shards, shardshuffle=False).decode("pil"):
        assert set(sample) >= {"__key__", "ref.png", "tgt.png", "json"}
        assert sample["tgt.png"].size == (16, 16)
        seen.append(sample["json"]["id"])
    assert sorted(seen) == sorted(t.id for t in ds.triplets(status="accepted"))


def test_wrong_top_level_json_type_is_named(tmp_path):
    root = _cirr(tmp_path)
    (root / "cirr/image_splits/split.rc2.val.json").write_text("[]")
    with pytest.raises(DataError, match=r"split\.rc2\.val\.json \[entry <root>\]: expected a JSON object"):
        read_cirr(root, "val")
    lenient = read_cirr(root, "val", strict=False)
    assert lenient.rejections[0].reason.startswith("expected a JSON object") and not lenient.images
