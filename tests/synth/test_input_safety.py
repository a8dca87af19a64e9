"""Issue 18, items 1-5: no lost rows on Ctrl-C, no crash on a bad field, no silent drop, no half-made
output after a failed model load, no decompression bomb."""

import json
import os
import struct
import zlib

import pytest
from PIL import Image

from cirsynth.cli import main
from cirsynth.data import TripletDataset
from cirsynth.data.dataset import TripletWriter
from cirsynth.synth import LoadPolicy, SynthConfig, Synthesizer, discover, load_rgb
from tests.synth.conftest import _photo

FAST = ["--inversion", "negative-prompt", "--num_steps", "3", "--progress", "false"]
CAPTION = "a red car on a street"


def _list_file(root, n, start=300):
    root.mkdir(parents=True, exist_ok=True)
    rows = []
    for i in range(n):
        _photo(start + i).save(root / f"im{i}.png")
        rows.append({"image": f"im{i}.png", "caption": CAPTION})
    p = root / "list.jsonl"
    p.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return p


def _cfg(tiny_models, images, out, **kw):
    return SynthConfig(images=str(images), out=str(out), editor=tiny_models["sd"], no_filter=True, inversion="negative-prompt",
                       num_steps=3, progress=False, edits_per_image=2, **kw)


def test_ctrl_c_mid_batch_loses_no_rows(tmp_path, tiny_models, monkeypatch):
    """A shard is all of a batch or nothing: Ctrl-C after part of a batch was buffered writes none of it."""
    images = _list_file(tmp_path / "imgs", 4)
    out = tmp_path / "out"
    real_add, calls = TripletWriter.add, []

    def add(self, *a, **kw):
        calls.append(1)
        if len(calls) == 6:  # the 2nd row of the 2nd batch (4 rows each): its 1st row is buffered
            raise KeyboardInterrupt
        return real_add(self, *a, **kw)

    monkeypatch.setattr(TripletWriter, "add", add)
    with pytest.raises(KeyboardInterrupt):
        Synthesizer(_cfg(tiny_models, images, out, batch_size=2)).run()
    monkeypatch.setattr(TripletWriter, "add", real_add)
    ds = TripletDataset(out)
    per_input = {}
    for t in ds.triplets():
        per_input.setdefault(t.provenance["input"], []).append(t)
    assert sorted(per_input) == ["im0.png", "im1.png"] and all(len(v) == 2 for v in per_input.values())
    summary = Synthesizer(_cfg(tiny_models, images, out, batch_size=2)).run()  # resume
    rows = list(TripletDataset(out).triplets())
    assert len(rows) == 8 and summary.skipped_done == 2
    assert {t.id for t in rows} == {f"{k}:{j}" for k in {x.key for x in discover(images)} for j in (0, 1)}


def test_bad_fields_and_odd_entries_become_rows_or_counted_warnings(tmp_path, tiny_models, capsys):
    imgs = tmp_path / "imgs"
    imgs.mkdir()
    for name in ("good.png", "intcap.png", "conflict.png", "same.png"):
        _photo(len(name)).save(imgs / name)
    (imgs / "loop.png").symlink_to(imgs / "loop.png")
    (imgs / "dangling.png").symlink_to(imgs / "nowhere.png")
    (imgs / "folder.png").mkdir()
    caps = tmp_path / "caps.jsonl"
    caps.write_text("".join(json.dumps(r) + "\n" for r in [
        {"image": "good.png", "caption": CAPTION},
        {"image": "intcap.png", "caption": 12345},
        {"image": "conflict.png", "caption": CAPTION},
        {"image": "conflict.png", "caption": "a blue car on a street"},
        {"image": "same.png", "caption": CAPTION},
        {"image": "same.png", "caption": CAPTION},  # a repeat that agrees is harmless
        {"image": "missing.png", "caption": CAPTION},
        {"image": ["x"], "caption": CAPTION},
    ]))
    out = tmp_path / "out"
    argv = ["synthesize", "--images", str(imgs), "--out", str(out), "--editor", tiny_models["sd"], "--captions", str(caps),
            "--no-filter", *FAST]
    assert main(argv) == 0
    summary = json.loads(capsys.readouterr().out)
    rows = {t.provenance["input"]: t for t in TripletDataset(out).triplets()}
    want = {"intcap.png": "input: captions row 2: caption is not a string but int",
            "conflict.png": "input: captions rows 3 and 4 give different captions",
            "loop.png": "input: symlink loop", "dangling.png": "input: dangling symlink",
            "folder.png": "input: a folder, not an image file"}
    for name, reason in want.items():
        assert rows[name].status == "failed" and rows[name].reason.startswith(reason), (name, rows[name].reason)
    assert rows["good.png"].status == "accepted" and rows["same.png"].status == "accepted"
    assert summary["inputs"] == 7
    assert summary["warnings"] == {"captions file: row names an image that is not an input": 1,
                                   "captions file: row without a usable image name": 1}


@pytest.mark.parametrize("caption", [12345, ["a", "list"], {"a": 1}, True, 1.5])
def test_input_list_caption_of_wrong_type_is_a_failed_input(tmp_path, caption):
    (tmp_path / "a.png").write_bytes(b"")
    p = tmp_path / "l.jsonl"
    p.write_text(json.dumps({"image": "a.png", "caption": caption}) + "\n" + json.dumps({"image": "b.png", "caption": None}) + "\n")
    a, b = discover(p)
    assert a.problem == f"record 1: caption is not a string but {type(caption).__name__}" and a.caption is None
    assert b.problem is None and b.caption is None  # null: no caption given (a captioner may supply one)


def test_input_list_records_of_wrong_shape_are_failed_inputs(tmp_path):
    p = tmp_path / "l.jsonl"
    p.write_text("\n".join(json.dumps(r) for r in [{"image": 3}, [1, 2], {"caption": "x"}, {"image": "a.png"}, {"image": "a.png"}]))
    got = [x.problem for x in discover(p)]
    assert got == ["record 1: field 'image' is not a usable path but int", "record 2 is a JSON list, not an object",
                   "record 3: field 'path' is missing", None, "record 5 lists 'a.png' again (first in record 4)"]
    assert len({x.key for x in discover(p)}) == 5  # distinct ids: each gets its own failed row


def test_failed_model_load_leaves_no_output_and_the_rerun_needs_no_force(tmp_path, tiny_models, capsys):
    images = _list_file(tmp_path / "imgs", 1)
    out = tmp_path / "out"
    base = ["synthesize", "--images", str(images), "--out", str(out), "--no-filter", *FAST]
    assert main(base + ["--editor", str(tmp_path / "no-such-model")]) == 2
    assert "--editor" in capsys.readouterr().err  # one line naming the option (tests/test_cli_errors.py)
    assert not out.exists()
    assert main(base + ["--editor", tiny_models["sd"]]) == 0
    assert len(list(TripletDataset(out).triplets())) == 1


def test_no_caption_source_is_refused_before_the_output_exists(tmp_path, tiny_models, capsys):
    imgs = tmp_path / "imgs"
    imgs.mkdir()
    _photo(1).save(imgs / "a.png")
    out = tmp_path / "out"
    assert main(["synthesize", "--images", str(imgs), "--out", str(out), "--editor", tiny_models["sd"], "--no-filter", *FAST]) == 2
    assert "no captions: pass --captioner" in capsys.readouterr().err
    assert not out.exists()


def test_an_output_without_shards_is_not_a_run_to_protect(tmp_path, tiny_models):
    images = _list_file(tmp_path / "imgs", 1)
    out = tmp_path / "out"
    TripletDataset.create(out, meta={"run_config_hash": "from-other-settings"})
    Synthesizer(_cfg(tiny_models, images, out)).run()  # no ConfigChanged, no --force-new needed
    assert len(list(TripletDataset(out).triplets())) == 2
    assert not list(tmp_path.glob("out.old-*"))


def _png_bomb(path, side=20000):
    """A 1-bit side x side PNG of zeros, written row by row (about 0.1 MB; ``side**2`` pixels)."""
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    comp, row = zlib.compressobj(9), b"\x00" * (1 + (side + 7) // 8)
    body = b"".join(comp.compress(row) for _ in range(side)) + comp.flush()
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", side, side, 1, 0, 0, 0, 0))
                     + chunk(b"IDAT", body) + chunk(b"IEND", b""))


def test_decompression_bomb_fails_without_decoding_or_global_state(tmp_path, monkeypatch):
    _png_bomb(tmp_path / "bomb.png")
    assert os.path.getsize(tmp_path / "bomb.png") < 1_000_000
    assert LoadPolicy().max_pixels <= 100_000_000  # a limit that fits a workstation, not 4.5e8
    seen = []
    real_open = Image.open
    monkeypatch.setattr(Image, "open", lambda *a, **kw: (seen.append(Image.MAX_IMAGE_PIXELS), real_open(*a, **kw))[1])
    from PIL import ImageFile

    def no_full_decode(self):
        raise AssertionError(f"decoded a {self.size} image in full")

    monkeypatch.setattr(ImageFile.ImageFile, "load", no_full_decode)
    im, why = load_rgb(tmp_path / "bomb.png")
    assert im is None and "too large" in why
    assert seen and all(v == Image.MAX_IMAGE_PIXELS for v in seen)  # Pillow's process-wide limit never changed


def test_jpeg_beyond_pillows_guard_decodes_reduced(tmp_path, monkeypatch):
    _photo(1, size=(3000, 2000)).save(tmp_path / "big.jpg", quality=80)
    _photo(1, size=(3000, 2000)).save(tmp_path / "big.png")
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1_000_000)  # 6 MP is past twice this: Pillow refuses at open
    im, why = load_rgb(tmp_path / "big.jpg", LoadPolicy(draft_side=500))
    assert why is None and im.mode == "RGB" and max(im.size) <= 1000
    im, why = load_rgb(tmp_path / "big.png")
    assert im is None and "too large" in why
    assert Image.MAX_IMAGE_PIXELS == 1_000_000
