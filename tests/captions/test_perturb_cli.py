"""`cirsynth perturb` end to end with the lexical perturber."""

import json

from cirsynth.cli import main


def test_perturb_command_writes_edits_and_rejections(tmp_path):
    src = tmp_path / "caps.jsonl"
    rows = [{"image": "a.jpg", "caption": "two dogs playing with a red ball"}, {"image": "b.jpg", "caption": ""},
            {"image": "c.jpg", "caption": "a dog in a park"}]
    src.write_text("".join(json.dumps(r) + "\n" for r in rows))
    out = tmp_path / "out" / "edits.jsonl"
    assert main(["perturb", str(src), str(out), "--edit_types", '["color", "count"]',
                 "--edits_per_caption", "2", "--seed", "1"]) == 0
    lines = [json.loads(l) for l in out.read_text().splitlines()]
    edits = [l for l in lines if not l.get("rejected")]
    rejected = [l for l in lines if l.get("rejected")]
    assert [e["caption_index"] for e in edits] == [0, 0] and {e["edit_type"] for e in edits} == {"color", "count"}
    for e in edits:
        assert e["image"] == "a.jpg" and e["source_caption"] == rows[0]["caption"]
        for key in ("target_caption", "modification_text", "source_words", "target_words"):
            assert e[key]
    assert [(r["caption_index"], r["image"]) for r in rejected] == [(1, "b.jpg"), (2, "c.jpg")]
    assert rejected[0]["reason"] == "empty caption"
    assert rejected[1]["reason"].startswith("nothing to perturb: color: no color word")
    assert (out.parent / "cirsynth.perturb.yaml").is_file()
