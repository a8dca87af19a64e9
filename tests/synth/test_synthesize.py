import json
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from cirsynth.cli import main
from cirsynth.data import TripletDataset
from cirsynth.synth import LoadPolicy, load_rgb
from tests.synth.conftest import _photo, kill_mid_run_and_resume, make_mixed_folder, resume_argv, write_captions

FAST = ["--inversion", "negative-prompt", "--num_steps", "3", "--progress", "false"]


def _run(tmp_path, tiny_models, extra=()):
    imgs = tmp_path / "imgs"
    expect = make_mixed_folder(imgs)
    caps = write_captions(imgs, [n for n in expect if n != "nocaption.png"])
    out = tmp_path / "out"
    argv = ["synthesize", "--images", str(imgs), "--out", str(out), "--editor", tiny_models["sd"], "--captions", str(caps),
            "--clip", tiny_models["clip"], "--edits-per-image", "2", *FAST, *extra]
    return expect, out, argv


def test_end_to_end_mixed_inputs_every_input_accounted_for(tmp_path, tiny_models, capsys):
    expect, out, argv = _run(tmp_path, tiny_models, ["--self_replace_steps", "[0.2, 0.6]"])
    assert main(argv) == 0
    summary = json.loads(capsys.readouterr().out)
    ds = TripletDataset(out)
    rows = list(ds.triplets())
    by_input: dict[str, list] = {}
    for t in rows:
        by_input.setdefault(t.provenance["input"], []).append(t)
    assert set(by_input) == set(expect)  # every input has rows; .txt was not an input
    for name, what in expect.items():
        ts = by_input[name]
        if what == "ok":
            assert len(ts) == 2  # one row per requested edit, made or not
            if name != "gray.png":
                assert all(t.status != "failed" for t in ts), [(t.status, t.reason) for t in ts]
            else:  # "a photo of nothing in particular": what the perturber could not do is a row with its reason
                assert all(t.status != "failed" or t.reason.startswith("perturb: ") for t in ts)
        else:
            assert len(ts) == 1 and ts[0].status == "failed" and ts[0].reason.startswith(what), ts[0].reason
    for t in rows:
        if t.status != "accepted":
            assert t.reason
        if t.status in ("accepted", "rejected"):
            # scores recorded, images exist and open at the model size
            assert {"clip_i2i", "clip_dir", "psnr_outside", "words_margin"} <= set(t.scores)
            assert ds.open_image(t.target).size == ds.open_image(t.reference).size
            assert t.provenance["self_replace_steps"] in (0.2, 0.6) and t.provenance["candidates"] == 2
            assert t.target_caption != t.reference_caption and t.target_words  # an insertion has no source words
    n = summary["accepted"] + summary["rejected"] + summary["failed"]
    assert n == len(rows) and summary["inputs"] == len(expect)
    assert sum(summary["rejected_by_rule"].values()) >= summary["rejected"]
    assert (out / "cirsynth.synthesize.yaml").is_file()

    # rerun: nothing left to do, nothing duplicated
    assert main(argv) == 0
    again = json.loads(capsys.readouterr().out)
    assert again["skipped_already_done"] == len(expect) and again["accepted"] + again["rejected"] + again["failed"] == 0
    assert len(list(TripletDataset(out).triplets())) == len(rows)

    # a changed setting is refused
    assert main(argv + ["--min_clip_dir", "0.5"]) == 2
    assert "different settings" in capsys.readouterr().err


def test_no_filter_accepts_everything_that_was_edited(tmp_path, tiny_models, capsys):
    expect, out, argv = _run(tmp_path, tiny_models)
    argv = [a for a in argv if a not in ("--clip", tiny_models["clip"])] + ["--no-filter"]
    assert main(argv) == 0
    rows = list(TripletDataset(out).triplets())
    assert all(t.status in ("accepted", "failed") for t in rows)
    assert all("clip_i2i" not in t.scores and "psnr_outside" in t.scores for t in rows if t.status == "accepted")
    # a changed setting needs --force-new, which moves the old output aside
    assert main(argv + ["--seed", "3"]) == 2
    assert main(argv + ["--seed", "3", "--force-new"]) == 0
    assert len(list(out.parent.glob("out.old-*"))) == 1
    assert len(list(TripletDataset(out).triplets())) == len(rows)


def test_resume_after_sigkill(tmp_path, tiny_models):
    n = 10
    args, out = resume_argv(tmp_path, n, tiny_models["sd"])
    rows = kill_mid_run_and_resume([sys.executable, "-m", "cirsynth", *args], out, n)
    assert {t.provenance["input"] for t in rows} == {f"img{i:02d}.png" for i in range(n)}


def test_load_policy_large_and_odd_images(tmp_path):
    big = _photo(1, size=(3000, 2000))
    big.save(tmp_path / "big.jpg", quality=80)
    big.save(tmp_path / "big.png")
    policy = LoadPolicy(max_pixels=1_000_000, draft_side=500)
    im, why = load_rgb(tmp_path / "big.jpg", policy)
    assert why is None and im.mode == "RGB" and max(im.size) < 3000  # decoded at reduced size
    im, why = load_rgb(tmp_path / "big.png", policy)
    assert im is None and "too large" in why
    im, why = load_rgb(tmp_path / "missing.png")
    assert im is None and "file not found" in why
    f = Image.fromarray(np.linspace(0, 1, 32 * 32, dtype=np.float32).reshape(32, 32), "F")
    f.save(tmp_path / "float.tif")
    im, why = load_rgb(tmp_path / "float.tif")
    assert why is None and im.mode == "RGB" and np.asarray(im)[-1, -1, 0] == 255


def test_captioner_path_accounts_for_every_image(tmp_path, tiny_models, capsys):
    from cirsynth.testing.tiny_text import make_tiny_captioner

    cap_dir = make_tiny_captioner(tmp_path / "blip")
    imgs = tmp_path / "imgs"
    imgs.mkdir()
    for i in range(3):
        _photo(200 + i).save(imgs / f"p{i}.png")
    out = tmp_path / "out"
    argv = ["synthesize", "--images", str(imgs), "--out", str(out), "--editor", tiny_models["sd"], "--captioner", str(cap_dir),
            "--no-filter", *FAST]
    assert main(argv) == 0
    rows = list(TripletDataset(out).triplets())
    assert {t.provenance["input"] for t in rows} == {"p0.png", "p1.png", "p2.png"}
    for t in rows:  # a random captioner's text rarely perturbs: then the row says why
        assert t.status == "accepted" or t.reason.split(":")[0] in ("caption", "perturb", "edit")
        assert t.provenance["captioner"] == str(cap_dir)


def test_diffusion_judge_scores_every_candidate_with_the_editing_model(tmp_path, tiny_models):
    """--diffusion_judge editor: the editing model reads each candidate under its captions; the diffusion_* scores are
    recorded on every edited row and their rules reject with the score in the reason."""
    from cirsynth.synth.filters import EditFilter, FilterConfig

    argv, out = resume_argv(tmp_path, 2, tiny_models["sd"])
    argv = [a for a in argv if a != "--no-filter"] + ["--clip", tiny_models["clip"], "--hard_negatives", "2",
                                                        "--diffusion_judge", "editor", "--diffusion_timesteps", "[100, 500]",
                                                        "--min_diffusion_margin", "1000"]
    assert main(argv) == 0
    rows = [t for t in TripletDataset(out).triplets() if t.status != "failed"]
    assert rows and all(t.status == "rejected" for t in rows)
    for t in rows:
        assert {"diffusion_margin", "diffusion_edit", "diffusion_kept"} <= set(t.scores)
        assert "diffusion_margin " in t.reason and "< 1000" in t.reason, t.reason
    with pytest.raises(ValueError, match="pass it as EditFilter"):
        EditFilter(FilterConfig(diffusion_judge="editor"))
    with pytest.raises(ValueError, match="diffusion_negatives must be >= 0"):
        EditFilter(FilterConfig(diffusion_judge=tiny_models["sd"], diffusion_negatives=-1))
    # the judge reads the source and the first K negatives: with K = 0 the margin is the source's and nothing is kept
    photo = _photo(1, size=(32, 32))
    scored = []
    for k in (0, None):
        filt = EditFilter(FilterConfig(clip=None, diffusion_judge=tiny_models["sd"], diffusion_negatives=k))
        scored.append(filt.score([photo], [photo.rotate(90)], ["a red car"], ["a blue car"], [["red"]], [["blue"]],
                                 [None], negatives=[["a red car", "a green car", "a blue bus"]])[0].scores)
    assert scored[0]["diffusion_kept"] == 0.0
    assert scored[0]["diffusion_edit"] == pytest.approx(scored[1]["diffusion_edit"], rel=1e-3)  # T and S only, same noise
    assert scored[1]["diffusion_margin"] <= scored[0]["diffusion_margin"]
    assert scored[1]["diffusion_kept"] != 0.0
    # a rule whose score the filter cannot make says what it needs
    v = EditFilter(FilterConfig(clip=None, min_diffusion_kept=0.0)).judge({"psnr_outside": 30.0})
    assert not v.passed and "needs FilterConfig.diffusion_judge" in v.failed[-1]
