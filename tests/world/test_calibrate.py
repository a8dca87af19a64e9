"""The filter calibration: thresholds searched against ground truth, and the recipe that carries them."""

import dataclasses

import numpy as np
import pytest

from cirsynth.synth.filters import EditFilter, FilterConfig, pick_best
from cirsynth.world.calibrate import filter_outcome, search_filter
from cirsynth.world.recipe import WorldRecipe, load_recipe, save_recipe


def _candidates(seed=0, E=60, K=4):
    """Edits whose candidates are right exactly when a hidden 'caption_margin' is above 0.1; the other scores are noise."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(E):
        cands = []
        for _ in range(K):
            m = float(rng.normal(0, 0.2))
            cands.append({"scores": {"caption_margin": m, "clip_dir": float(rng.normal()), "clip_i2i": float(rng.uniform(0.5, 1)),
                                     "psnr_outside": float(rng.uniform(10, 30))}, "right": m > 0.1})
        out.append(cands)
    return out


def test_search_finds_the_separating_rule_and_meets_the_precision_target():
    cands = _candidates()
    th, rank, fit = search_filter(cands, target_precision=0.9)
    assert th["caption_margin"] is not None and 0.0 <= th["caption_margin"] <= 0.25
    assert fit["precision"] >= 90.0
    # edits with some right candidate: the filter should accept most of them
    reachable = sum(any(c["right"] for c in cs) for cs in cands)
    assert fit["accepted_success"] >= 0.8 * 100 * reachable / len(cands)


def test_filter_outcome_keeps_what_pick_best_keeps():
    cands = _candidates(seed=3, E=30)
    th = {"caption_margin": 0.0, "clip_i2i": 0.6, "clip_dir": None, "psnr_outside": None}
    names = list(th)
    E, K = len(cands), len(cands[0])
    scores = {n: np.array([[c["scores"][n] for c in cs] for cs in cands]) for n in names}
    right = np.array([[c["right"] for c in cs] for cs in cands])
    prec, succ, n_acc = filter_outcome(scores, np.ones((E, K), bool), right, th, "clip_dir")
    judge = EditFilter(FilterConfig(min_clip_i2i=0.6, min_clip_src_text=None, min_clip_tgt_text=None, min_clip_dir=None,
                                    min_words_margin=None, min_psnr_outside=None, min_caption_margin=0.0))
    acc = ok = 0
    for cs in cands:
        verdicts = [judge.judge(c["scores"]) for c in cs]
        b = pick_best(verdicts, "clip_dir")
        if verdicts[b].passed:
            acc += 1
            ok += cs[b]["right"]
    assert n_acc == acc and succ == pytest.approx(ok / E) and prec == pytest.approx(ok / acc)


def test_recipe_round_trip_and_bad_file(tmp_path):
    r = WorldRecipe()
    r.filter = dataclasses.replace(r.filter, min_caption_margin=0.05, min_clip_dir=None)
    r.calibration = {"seed": 0, "n": 96}
    r.kept_background = 0.02
    path = save_recipe(r, tmp_path / "recipe.json")
    back = load_recipe(path)
    assert back.filter.min_caption_margin == 0.05 and back.filter.min_clip_dir is None
    assert back.kept_background == 0.02
    from cirsynth.world.recipe import world_eval_config

    assert world_eval_config(path).kept_background == 0.02  # world evaluate's editor takes it from the recipe
    assert world_eval_config(path, kept_background=0.0).kept_background == 0.0  # ... unless the command sets it
    assert back.candidates == r.candidates and back.self_replace_steps == r.self_replace_steps
    assert back.calibration == {"seed": 0, "n": 96}
    (tmp_path / "bad.json").write_text('{"inversion": "ddim"}')
    with pytest.raises(ValueError, match="not a world recipe"):
        load_recipe(tmp_path / "bad.json")
    assert load_recipe(tmp_path / "none.json") == WorldRecipe()  # no file: the defaults


def test_min_accepted_floor_keeps_the_search_off_a_handful_of_lucky_edits():
    rng = np.random.default_rng(7)
    cands = []
    for i in range(50):  # scores carry no information, except two edits whose 'clip_dir' is huge and right
        lucky = i < 2
        cands.append([{"scores": {"clip_dir": 9.0 if lucky and k == 0 else float(rng.normal()), "clip_i2i": float(rng.uniform())},
                       "right": (lucky and k == 0) or bool(rng.uniform() < 0.2)} for k in range(3)])
    _, _, loose = search_filter(cands, target_precision=0.9, min_accepted=0.0, rank_options=("clip_dir",))
    assert loose["accepted"] < 15  # unguarded: a handful of edits, chosen for their luck
    _, _, fit = search_filter(cands, target_precision=0.9, min_accepted=0.3, rank_options=("clip_dir",))
    assert fit["accepted"] >= 15  # at least 30% of the 50 edits


def test_score_auc_matches_the_pairwise_definition():
    from cirsynth.world.evaluate import score_auc

    rng = np.random.default_rng(0)
    cands = [{"scores": {"a": float(np.round(rng.normal(), 1)), "b": 1.0}, "right": bool(rng.uniform() < 0.3)} for _ in range(80)]
    got = score_auc(cands)
    pos = np.array([c["scores"]["a"] for c in cands if c["right"]])
    neg = np.array([c["scores"]["a"] for c in cands if not c["right"]])
    want = (pos[:, None] > neg[None, :]).mean() + 0.5 * (pos[:, None] == neg[None, :]).mean()
    assert got["a"] == pytest.approx(want, abs=1e-3) and got["b"] == 0.5


def test_candidates_by_edit_inverts_candidate_rows_and_names_missing_edits():
    from cirsynth.world.evaluate import candidates_by_edit

    # rows as a calibration table stores them, shuffled: edits 0..2, three candidates each
    rows = [{"edit": e, "candidate": k, "right": (e + k) % 2 == 0} for e in range(3) for k in range(3)]
    shuffled = [rows[i] for i in np.random.default_rng(0).permutation(len(rows))]
    got = candidates_by_edit(shuffled)
    assert [[(r["edit"], r["candidate"]) for r in cs] for cs in got] == [[(e, k) for k in range(3)] for e in range(3)]
    assert [[r["edit"] for r in cs] for cs in candidates_by_edit(shuffled, 2)] == [[0, 0, 0], [1, 1, 1]]
    with pytest.raises(ValueError, match=r"no rows for edits \[1\]"):
        candidates_by_edit([r for r in rows if r["edit"] != 1], 3)
    with pytest.raises(ValueError, match=r"no rows for edits \[3\]"):
        candidates_by_edit(rows, 4)


def test_calibrate_filter_command_keeps_its_candidates_in_the_cache(tmp_path, monkeypatch, capsys):
    """A second calibration with the same generation settings loads the images instead of running the diffusion
    model, and finds the same table; the recipe carries the calibration's figures, the candidate table lies beside it."""
    import json

    from cirsynth.cli import main
    from cirsynth.testing.tiny_sd import save_tiny_sd
    from cirsynth.world import evaluate

    sd = save_tiny_sd(tmp_path / "sd", text_encoder="minilm", max_length=64)
    start = WorldRecipe(num_steps=2)
    save_recipe(start, tmp_path / "start.json")
    args = ["world", "calibrate-filter", "--editor", str(sd), "--n", "3", "--candidates", "2", "--recipe",
            str(tmp_path / "start.json"), "--cache", str(tmp_path / "cache")]
    assert main([*args, "--out", str(tmp_path / "a.json")]) == 0
    assert len(list((tmp_path / "cache").glob("candidates-*.npz"))) == 1

    def no_diffusion(*a, **k):
        raise AssertionError("the cached candidates should have been used")

    monkeypatch.setattr(evaluate, "generate_candidates", no_diffusion)
    assert main([*args, "--out", str(tmp_path / "b.json")]) == 0
    table_a = json.loads((tmp_path / "a_candidates.json").read_text())
    assert len(table_a) == 3 * 2 and table_a == json.loads((tmp_path / "b_candidates.json").read_text())
    assert all("recaption_diff" in r["scores"] for r in table_a)
    recipe = json.loads((tmp_path / "a.json").read_text())
    assert "candidate_table" not in recipe["calibration"] and recipe["calibration"]["n"] == 3
    assert "--cache" not in recipe["calibration"]["command"]
    # other generation settings (here the seed) are another cache entry, never a stale hit
    monkeypatch.undo()
    assert main([*args[:-2], "--seed", "2", "--cache", str(tmp_path / "cache"), "--out", str(tmp_path / "c.json")]) == 0
    assert len(list((tmp_path / "cache").glob("candidates-*.npz"))) == 2


def test_max_rules_and_cross_validation():
    from cirsynth.world.calibrate import choose_max_rules, cross_validate

    cands = _candidates(seed=1, E=80)
    th, _, _ = search_filter(cands, target_precision=0.9, max_rules=1)
    assert sum(v is not None for v in th.values()) == 1 and th["caption_margin"] is not None
    cv = cross_validate(cands, folds=4, target_precision=0.9)
    assert cv["precision"] >= 85.0 and cv["accepted"] >= 20  # the separating rule holds on unseen edits
    # noise only: what the search fits does not hold on the held-out folds
    rng = np.random.default_rng(2)
    noise = [[{"scores": {"clip_dir": float(rng.normal()), "clip_i2i": float(rng.normal()),
                          "caption_margin": float(rng.normal())}, "right": bool(rng.uniform() < 0.3)} for _ in range(4)]
             for _ in range(80)]
    fit = search_filter(noise, target_precision=0.9)[2]
    assert cross_validate(noise, folds=4, target_precision=0.9)["precision"] < fit["precision"] - 20
    choice, figs = choose_max_rules(cands, target_precision=0.9)
    assert set(figs) == {"1", "2", "3", "None"} and figs[str(choice)]["precision"] >= 85.0


def test_learned_filter_combines_weak_scores_and_holds_on_unseen_edits():
    """Two scores, each a noisy view of rightness: neither alone separates, their sum does; the learned model finds
    that, the filter reads it back, and a threshold is chosen for the precision target."""
    from cirsynth.synth.filters import learned_score
    from cirsynth.world.calibrate import cross_validate_learned, fit_learned, learned_threshold

    rng = np.random.default_rng(4)
    cands = []
    for _ in range(120):
        cs = []
        for _ in range(4):
            right = bool(rng.uniform() < 0.3)
            z = 1.5 * right
            cs.append({"scores": {"clip_dir": float(z + rng.normal()), "caption_margin": float(z + rng.normal()),
                                  "clip_i2i": float(rng.normal())}, "right": right})
        cands.append(cs)
    model = fit_learned(cands)
    assert model["features"] == ["clip_i2i", "clip_dir", "caption_margin"]  # RULES order, scores present everywhere
    coef = dict(zip(model["features"], model["coef"]))
    assert coef["clip_dir"] > 0.5 and coef["caption_margin"] > 0.5 and abs(coef["clip_i2i"]) < 0.3
    hi = learned_score(model, {"clip_dir": 3.0, "caption_margin": 3.0, "clip_i2i": 0.0})
    lo = learned_score(model, {"clip_dir": -1.0, "caption_margin": -1.0, "clip_i2i": 0.0})
    assert 0.0 < lo < 0.2 < 0.8 < hi < 1.0
    assert learned_score(model, {"clip_dir": 3.0}) is None  # a missing feature: no score, never a guess
    # clipped to the fitted range: an absurd value reads as the range's end
    assert learned_score(model, {"clip_dir": 1e6, "caption_margin": 3.0, "clip_i2i": 0.0}) == pytest.approx(
        learned_score(model, {"clip_dir": model["hi"][1], "caption_margin": 3.0, "clip_i2i": 0.0}))
    thr, cv = cross_validate_learned(cands, target_precision=0.8, min_accepted=0.1)
    assert cv["precision"] >= 80.0 and cv["accepted"] >= 12 and 0 < thr < 1
    # the filter itself: the rule reads the model's probability, and rank_by "learned" orders by it
    judge = EditFilter(FilterConfig(min_clip_i2i=None, min_clip_src_text=None, min_clip_tgt_text=None,
                                    min_clip_dir=None, min_words_margin=None, min_psnr_outside=None,
                                    learned=model, min_learned=thr))
    verdicts = [judge.judge(c["scores"]) for c in cands[0]]
    assert all(v.passed == (learned_score(model, v.scores) >= thr) for v in verdicts)
    assert "learned" in verdicts[pick_best(verdicts, "learned")].scores
    assert not judge.judge({"clip_dir": 1.0}).passed  # features missing: rejected with a reason
    # threshold choice: the lowest that keeps the target precision above the acceptance floor
    p = np.array([0.9, 0.8, 0.7, 0.6, 0.5, 0.4])
    right = np.array([True, True, True, False, True, False])
    assert learned_threshold(p, right, 0.75, 0.0) == (0.5, {"precision": 80.0, "accepted_success": 66.7, "accepted": 5})
    assert learned_threshold(p, right, 1.0, 0.0)[0] == 0.7
    assert learned_threshold(p, right, 1.0, 0.9)[1]["accepted"] == 6  # no threshold reaches it above the floor


def test_learned_filter_with_per_type_offsets_learns_which_types_come_out_right():
    """Edits of one type are right far more often than another's at the same scores: with ``by_type`` the model
    fits an offset per type that says so, the filter applies it only when told the edit's type, and it holds on unseen
    edits better than the model without offsets."""
    from cirsynth.synth.filters import learned_score
    from cirsynth.world.calibrate import cross_validate_learned, fit_learned

    rng = np.random.default_rng(5)
    cands = []
    for i in range(160):
        t = ("color", "lighting")[i % 2]
        cs = []
        for _ in range(4):
            right = bool(rng.uniform() < (0.6 if t == "color" else 0.05))
            cs.append({"edit_type": t, "scores": {"clip_dir": float(right + rng.normal()),
                                                  "clip_i2i": float(rng.normal())}, "right": right})
        cands.append(cs)
    plain, typed = fit_learned(cands), fit_learned(cands, by_type=True)
    assert "type_offset" not in plain and set(typed["type_offset"]) == {"color", "lighting"}
    assert typed["type_offset"]["color"] - typed["type_offset"]["lighting"] > 1.5
    s = {"clip_dir": 1.0, "clip_i2i": 0.0}
    assert learned_score(typed, s, "color") > learned_score(typed, s) > learned_score(typed, s, "lighting")
    assert learned_score(typed, s, "count") == learned_score(typed, s)  # a type it never saw: no offset
    assert learned_score(plain, s, "color") == learned_score(plain, s)  # a model without offsets ignores the type
    # the filter passes the type through, from score() and judge()
    judge = EditFilter(FilterConfig(min_clip_i2i=None, min_clip_src_text=None, min_clip_tgt_text=None,
                                    min_clip_dir=None, min_words_margin=None, min_psnr_outside=None,
                                    learned=typed, min_learned=0.5))
    assert judge.judge(s, "color").passed and not judge.judge(s, "lighting").passed
    _, cv_plain = cross_validate_learned(cands, target_precision=0.8, min_accepted=0.1)
    _, cv_typed = cross_validate_learned(cands, target_precision=0.8, min_accepted=0.1, by_type=True)
    assert cv_typed["accepted_success"] > cv_plain["accepted_success"] and cv_typed["precision"] >= 80.0
    with pytest.raises(ValueError, match="edit_type"):
        fit_learned([[{k: v for k, v in c.items() if k != "edit_type"} for c in cs] for cs in cands], by_type=True)


def test_cache_blocks_filled_one_process_each_are_what_the_full_run_reads(tmp_path, monkeypatch, capsys):
    """`--block K` makes only block K of the cache (so blocks can be filled side by side); the command without
    --block then runs no diffusion at all. A block past the last, or --block without --cache, is a clear error."""
    import json

    from cirsynth.cli import main
    from cirsynth.testing.tiny_sd import save_tiny_sd
    from cirsynth.world import evaluate

    monkeypatch.setattr(evaluate, "CACHE_BLOCK", 2)  # 3 edits: blocks 0 (edits 0-1) and 1 (edit 2)
    sd = save_tiny_sd(tmp_path / "sd", text_encoder="minilm", max_length=64)
    save_recipe(WorldRecipe(num_steps=2), tmp_path / "start.json")
    cache = tmp_path / "cache"
    args = ["world", "calibrate-filter", "--editor", str(sd), "--n", "3", "--candidates", "2", "--recipe",
            str(tmp_path / "start.json"), "--cache", str(cache)]
    capsys.readouterr()
    assert main([*args, "--block", "1"]) == 0
    filled = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert filled["block"] == 1 and filled["edits"] == [2, 3] and len(filled["made"]) == 1
    assert not (tmp_path / "start_candidates.json").exists()  # it calibrated nothing
    assert main([*args, "--block", "0"]) == 0
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1])["edits"] == [0, 2]
    assert len(list(cache.glob("candidates-*.npz"))) == 2
    assert main([*args, "--block", "0"]) == 0  # already there: found, not made again
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1])["made"] == []

    def no_diffusion(*a, **k):
        raise AssertionError("every block was cached")

    monkeypatch.setattr(evaluate, "generate_candidates", no_diffusion)
    assert main([*args, "--out", str(tmp_path / "a.json")]) == 0
    assert len(json.loads((tmp_path / "a_candidates.json").read_text())) == 3 * 2
    # world evaluate with the same generation settings (seed 0) reads the same blocks
    assert main(["world", "evaluate", "--editor", str(sd), "--n", "3", "--candidates", "2", "--recipe",
                 str(tmp_path / "start.json"), "--seed", "0", "--cache", str(cache), "--json"]) == 0
    capsys.readouterr()
    assert main([*args, "--block", "2"]) != 0
    assert "block 2 does not exist: 3 edits make blocks 0..1" in capsys.readouterr().err
    assert main([*args[:-2], "--block", "0"]) != 0
    assert "give --cache DIR" in capsys.readouterr().err
