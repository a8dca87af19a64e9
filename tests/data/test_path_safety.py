"""Issue 18 items 7-8: every image reference resolves inside the dataset root (after symlinks), exports copy by
default, and a malformed target_soft is a rejection, not a TypeError."""

import json
import os
import tarfile

import pytest

from cirsynth.data import DataError, Triplet, export_cirr, export_fashioniq, export_webdataset, read_cirr, read_fashioniq
from tests.data.helpers import make_dataset, solid


@pytest.fixture
def secret(tmp_path):
    """A readable image outside every dataset root of the test."""
    p = tmp_path / "secret.png"
    solid(5, 5, size=24).save(p)
    return p


def _cirr(tmp_path):
    ds = make_dataset(tmp_path / "ds", per_split={"val": 6}, rejected=0)
    export_cirr(ds, tmp_path / "c")
    return tmp_path / "c"


def test_cirr_import_rejects_image_paths_outside_the_root(tmp_path, secret):
    root = _cirr(tmp_path)
    splits = root / "cirr/image_splits/split.rc2.val.json"
    names = json.loads(splits.read_text())
    a, b, c = sorted(names)[:3]
    (root / "val" / "link.png").symlink_to(secret)
    names.update({a: "../secret.png", b: str(secret), c: "./val/link.png"})
    splits.write_text(json.dumps(names))
    with pytest.raises(DataError, match="resolves outside the dataset root"):
        read_cirr(root, "val")
    got = read_cirr(root, "val", strict=False)
    outside = {r.entry for r in got.rejections if "resolves outside the dataset root" in r.reason}
    assert outside == {a, b, c} and not {a, b, c} & set(got.images)
    assert all(str(p).startswith(str(root.resolve())) for p in got.images.values())
    used = {a, b, c}
    assert not any({q.reference, q.target, *q.members} & used for q in got.queries)  # their queries are rejected too


def test_cirr_target_soft_of_wrong_type_is_a_rejection(tmp_path):
    root = _cirr(tmp_path)
    cap = root / "cirr/captions/cap.rc2.val.json"
    entries = json.loads(cap.read_text())
    entries[0]["target_soft"] = ["a", "b"]
    entries[1]["target_soft"] = {"x": "high"}
    cap.write_text(json.dumps(entries))
    got = read_cirr(root, "val", strict=False)
    assert [r.reason for r in got.rejections] == ["field 'target_soft' is not an object of image name -> number"] * 2
    assert len(got.queries) == 4
    with pytest.raises(DataError, match="target_soft"):
        read_cirr(root, "val")


def test_fashioniq_import_rejects_names_outside_the_root(tmp_path, secret):
    ds = make_dataset(tmp_path / "ds", per_split={"val": 4}, rejected=0)
    root = tmp_path / "fiq"
    export_fashioniq(ds, root, category="dress")
    secret.with_suffix(".jpg").write_bytes(secret.read_bytes())
    (root / "images" / "link.jpg").symlink_to(secret.with_suffix(".jpg"))
    split_file = root / "image_splits/split.dress.val.json"
    names = json.loads(split_file.read_text())
    bad = ["../../secret", str(secret.with_suffix("")), "link"]
    split_file.write_text(json.dumps(names + bad))
    got = read_fashioniq(root, "dress", "val", strict=False)
    assert not set(bad) & set(got.images) and len(got.rejections) == 3
    assert all(p.resolve().is_relative_to(root.resolve()) for p in got.images.values())
    with pytest.raises(DataError):
        read_fashioniq(root, "dress", "val")


def _hostile_dataset(tmp_path, secret):
    """A dataset with 3 good accepted triplets and 3 whose reference lies outside its root."""
    ds = make_dataset(tmp_path / "ds", per_split={"train": 3}, rejected=0)
    (ds.root / "images" / "ref" / "link.png").symlink_to(secret)
    good = next(iter(ds.triplets()))
    with ds.writer() as w:
        for i, ref in enumerate(["../secret.png", str(secret), "images/ref/link.png"]):
            w.add(Triplet(id=f"evil-{i}", reference=ref, target=good.target, modification_text="make it so", split="train"))
    return ds


def _inodes(folder):
    return {os.stat(p).st_ino for p in folder.rglob("*") if p.is_file()}


def test_exports_never_read_outside_the_dataset_and_copy_by_default(tmp_path, secret):
    ds = _hostile_dataset(tmp_path, secret)
    data = secret.read_bytes()
    counts = export_cirr(ds, tmp_path / "cirr")
    assert counts == {"train": 3, "rejected": 3}
    rej = json.loads((tmp_path / "cirr" / "cirsynth_rejections.json").read_text())
    assert sorted(r["id"] for r in rej) == ["evil-0", "evil-1", "evil-2"]
    assert all("outside the dataset root" in r["reason"] for r in rej)
    exported = [p for p in (tmp_path / "cirr").rglob("*.png")]
    assert exported and not any(p.read_bytes() == data for p in exported)
    assert os.stat(secret).st_ino not in _inodes(tmp_path / "cirr")
    assert not _inodes(tmp_path / "cirr") & _inodes(ds.root / "images")  # copies, not hard links
    export_cirr(ds, tmp_path / "linked", link=True)
    assert _inodes(tmp_path / "linked" / "train") <= _inodes(ds.root / "images")  # linking only when asked

    counts = export_webdataset(ds, tmp_path / "wds")
    assert counts["samples"] == 3 and counts["rejected"] == 3
    with tarfile.open(tmp_path / "wds" / "shard-000000.tar") as tar:
        assert not any(tar.extractfile(m).read() == data for m in tar.getmembers())

    counts = export_fashioniq(ds, tmp_path / "fiq", category="dress")
    assert counts == {"train": 3, "rejected": 3}
    with pytest.raises(DataError, match="outside the dataset root"):
        ds.open_image("../secret.png")
