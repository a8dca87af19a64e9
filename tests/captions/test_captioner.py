"""Captioner interface on a tiny random BLIP, and caption files."""

import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image

from cirsynth.captions.captioner import Captioner, CaptionerConfig, read_caption_file, read_captions
from cirsynth.testing.tiny_text import make_tiny_captioner


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory):
    return make_tiny_captioner(tmp_path_factory.mktemp("tiny_blip"))


def _images(k):
    rng = np.random.default_rng(0)
    return [Image.fromarray(rng.integers(0, 255, (20 + 7 * i, 30, 3), dtype=np.uint8)) for i in range(k)]


def test_tiny_captioner_batches_match_single(tiny_dir):
    ims = _images(5)
    cap = Captioner.from_pretrained(tiny_dir, CaptionerConfig(prompt="a photo of", batch_size=2, max_new_tokens=6),
                                    device="cpu")
    batched = cap.caption(ims)
    assert len(batched) == 5 and all(c.startswith("a photo of") and len(c) > len("a photo of") for c in batched)
    cap.config.batch_size = 1
    assert cap.caption(ims) == batched  # batching does not change the result
    cap.config.prompt = None
    plain = cap.caption(ims[:2] + [ims[0].convert("L")])  # grey image converted to RGB
    assert len(plain) == 3 and plain[2] == plain[0] and all(plain)


def test_caption_command(tiny_dir, tmp_path):
    from cirsynth.cli import main

    for i, im in enumerate(_images(3)):
        im.save(tmp_path / f"im{i}.png")
    out = tmp_path / "out" / "captions.jsonl"
    assert main(["caption", str(tmp_path), str(out), "--model", str(tiny_dir), "--batch_size", "2",
                 "--max_new_tokens", "5"]) == 0
    rows = [json.loads(l) for l in out.read_text().splitlines()]
    assert [r["image"] for r in rows] == [str(tmp_path / f"im{i}.png") for i in range(3)]
    assert all(r["caption"] for r in rows) and (out.parent / "cirsynth.caption.yaml").is_file()
    assert read_captions(out)[1] == {"caption": rows[1]["caption"], "image": rows[1]["image"]}


def test_caption_files(tmp_path):
    rows = [{"image": "a.jpg", "caption": "a red car"}, {"image": "b.jpg", "caption": "a dog"}]
    (tmp_path / "c.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (tmp_path / "c.csv").write_text("image,caption\na.jpg,a red car\nb.jpg,a dog\n")
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "c.parquet")
    for ext in ("jsonl", "csv", "parquet"):
        assert read_caption_file(tmp_path / f"c.{ext}") == rows
    (tmp_path / "bad.csv").write_text("img,text\na.jpg,x\n")
    with pytest.raises(ValueError, match=r"bad.csv \[row 0\]: missing column"):
        read_caption_file(tmp_path / "bad.csv")
    (tmp_path / "bad.jsonl").write_text('{"image": "a"}\nnot json\n')
    with pytest.raises(ValueError, match="bad.jsonl:2: not JSON"):
        read_caption_file(tmp_path / "bad.jsonl")
    with pytest.raises(ValueError, match="must be"):
        read_caption_file(tmp_path / "c.txt")
    (tmp_path / "c.txt").write_text("a red car\n\na dog\n")
    assert read_captions(tmp_path / "c.txt") == [{"caption": "a red car"}, {"caption": ""}, {"caption": "a dog"}]
