"""Fuzz: input lists and captions files with random field types and values. Every record becomes an input
(usable, or with the problem its failed row will carry) or the reader raises DataError; and a whole
synthesize run over such inputs ends with a row for every input, never a crash."""

import csv
import json
import random

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from cirsynth.cli import main
from cirsynth.data import DataError, TripletDataset
from cirsynth.synth import discover
from cirsynth.synth.inputs import read_captions_table
from tests.data.fuzz import mutate, value
from tests.synth.conftest import _photo

GOOD = {"image": "im0.png", "caption": "a red car on a street"}


def _records(rng, n):
    return [mutate(rng, {**GOOD, "image": f"im{i % 4}.png"}, ["image", "caption"]) if rng.random() < 0.8 else value(rng)
            for i in range(n)]


def _typed_column(rng, n):
    """One Parquet column of a random type (Parquet columns are typed, so fuzz the type per column)."""
    kind = rng.choice(["str", "int", "float", "bool", "list", "struct", "null"])
    make = {"str": lambda: rng.choice(["im0.png", "", "../x.png", "/etc/hostname", "a b"]), "int": lambda: rng.randint(-5, 5),
            "float": lambda: rng.random(), "bool": lambda: rng.random() < 0.5, "list": lambda: ["a", "b"][: rng.randint(0, 2)],
            "struct": lambda: {"a": rng.randint(0, 3)}, "null": lambda: None}[kind]
    return pa.array([make() if rng.random() < 0.9 else None for _ in range(n)]) if kind != "null" else pa.nulls(n)


def test_input_list_fuzz(tmp_path):
    rng = random.Random(18)
    for trial in range(150):
        recs = _records(rng, rng.randint(0, 8))
        if trial % 3 == 0:
            p = tmp_path / f"l{trial}.parquet"
            n = rng.randint(1, 6)
            pq.write_table(pa.table({"image": _typed_column(rng, n), "caption": _typed_column(rng, n)}), p)
            recs = [None] * n
        else:
            p = tmp_path / f"l{trial}.jsonl"
            p.write_text("".join(json.dumps(r) + "\n" for r in recs))
        try:
            items = discover(p)
        except DataError:
            continue
        assert len(items) == len(recs) and len({x.key for x in items}) == len(items)
        for x in items:
            assert x.problem is not None or (isinstance(x.rel, str) and (x.caption is None or isinstance(x.caption, str)))


@pytest.mark.parametrize("fmt", ["jsonl", "csv", "parquet"])
def test_captions_file_fuzz(tmp_path, fmt):
    rng = random.Random(18)
    for trial in range(100):
        n = rng.randint(0, 8)
        p = tmp_path / f"c{trial}.{fmt}"
        if fmt == "jsonl":
            p.write_text("".join(json.dumps(r) + "\n" for r in _records(rng, n)))
        elif fmt == "csv":
            with open(p, "w", newline="") as f:
                w = csv.writer(f)
                w.writerow(rng.choice([["image", "caption"], ["image"], ["caption", "image", "x"]]))
                for _ in range(n):
                    w.writerow([str(value(rng)) for _ in range(rng.randint(0, 3))])
        else:
            pq.write_table(pa.table({"image": _typed_column(rng, n), "caption": _typed_column(rng, n)}), p)
        try:
            table = read_captions_table(p)
        except DataError:
            continue
        assert all(isinstance(k, str) and isinstance(v, str) and v for k, v in table.by_image.items())
        assert all(isinstance(k, str) and isinstance(v, str) for k, v in table.conflicts.items())


def test_synthesize_over_fuzzed_inputs_never_crashes(tmp_path, tiny_models, capsys):
    rng = random.Random(7)
    for i in range(4):
        _photo(400 + i).save(tmp_path / f"im{i}.png")
    recs = [GOOD] + _records(rng, 14)
    lst = tmp_path / "list.jsonl"
    lst.write_text("".join(json.dumps(r) + "\n" for r in recs))
    caps = tmp_path / "caps.jsonl"
    # rows that are not objects with both columns make the whole file a clear error (test_captions_file_fuzz);
    # here every row has both columns, with random values
    cap_rows = [{"image": rng.choice([f"im{i % 4}.png", value(rng)]), "caption": rng.choice([GOOD["caption"], value(rng)])}
                for i in range(10)]
    caps.write_text("".join(json.dumps(r) + "\n" for r in cap_rows))
    out = tmp_path / "out"
    argv = ["synthesize", "--images", str(lst), "--out", str(out), "--editor", tiny_models["sd"], "--captions", str(caps),
            "--no-filter", "--batch_size", "16", "--inversion", "negative-prompt", "--num_steps", "2", "--progress", "false"]
    assert main(argv) == 0
    summary = json.loads(capsys.readouterr().out)
    rows = list(TripletDataset(out).triplets())
    assert summary["inputs"] == len(recs) == len({t.id.split(":")[0] for t in rows})  # a row for every record
    assert {t.provenance["input"] for t in rows} == {x.rel for x in discover(lst)}
    assert any(t.status == "accepted" for t in rows)
