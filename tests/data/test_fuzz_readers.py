"""Fuzz: CIRR and FashionIQ JSON with random field types and values. Every entry becomes a query or a
rejection (lenient), or the reader raises DataError (strict); nothing else escapes."""

import json
import random

import pytest

from cirsynth.data import DataError, export_cirr, export_fashioniq, read_cirr, read_fashioniq
from tests.data.fuzz import mutate, value
from tests.data.helpers import make_dataset


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    root = tmp_path_factory.mktemp("fuzz")
    ds = make_dataset(root / "ds", per_split={"val": 6, "test": 6}, rejected=0)
    export_cirr(ds, root / "cirr")
    export_fashioniq(ds, root / "fiq", category="dress")
    return root


def _check(read, n_entries, cap_file):
    try:
        got = read(strict=True)
    except DataError:
        pass
    else:
        assert not got.rejections
    got = read(strict=False)
    if n_entries is not None:  # each caption entry is a query or exactly one rejection
        rejected = [r for r in got.rejections if r.file == str(cap_file)]
        assert len(got.queries) + len(rejected) == n_entries, got.rejections


def _fuzz(src, root, cap, img, keys, read, mutate_entry=None, trials=150):
    """Copy the exported folder ``src`` to ``root``, then write ``trials`` random variants of its caption file
    ``cap`` and image-split file ``img`` and ``_check`` each with ``read(strict)``."""
    import shutil

    shutil.copytree(src, root, symlinks=True)
    good_caps, good_imgs = json.loads(cap.read_text()), json.loads(img.read_text())
    rng = random.Random(18)
    for _ in range(trials):
        entries = [mutate(rng, e, keys) if rng.random() < 0.5 else e for e in good_caps]
        for e in entries if mutate_entry else ():
            mutate_entry(rng, e)
        if rng.random() < 0.1:
            entries = value(rng)
        if isinstance(good_imgs, dict):
            names = {k: (value(rng) if rng.random() < 0.2 else v) for k, v in good_imgs.items()}
        else:
            names = [value(rng) if rng.random() < 0.2 else n for n in good_imgs]
        cap.write_text(json.dumps(entries))
        img.write_text(json.dumps(names if rng.random() > 0.05 else value(rng)))
        _check(read, len(entries) if isinstance(entries, list) else None, cap)


def _mutate_members(rng, e):
    members = e.get("img_set", {}).get("members") if isinstance(e.get("img_set"), dict) else None
    if isinstance(members, list) and rng.random() < 0.3:
        e["img_set"] = {"members": value(rng) if rng.random() < 0.5 else [value(rng)] + members[1:]}


@pytest.mark.parametrize("split", ["val", "test1"])
def test_cirr_reader_fuzz(exported, split, tmp_path):
    root = tmp_path / "cirr"
    _fuzz(exported / "cirr", root, root / "cirr/captions" / f"cap.rc2.{split}.json",
          root / "cirr/image_splits" / f"split.rc2.{split}.json",
          ["pairid", "reference", "target_hard", "target_soft", "caption", "img_set"],
          lambda strict: read_cirr(root, split, strict=strict), _mutate_members)


@pytest.mark.parametrize("split", ["val", "test"])
def test_fashioniq_reader_fuzz(exported, split, tmp_path):
    root = tmp_path / "fiq"
    _fuzz(exported / "fiq", root, root / "captions" / f"cap.dress.{split}.json",
          root / "image_splits" / f"split.dress.{split}.json", ["candidate", "target", "captions"],
          lambda strict: read_fashioniq(root, "dress", split, strict=strict))
