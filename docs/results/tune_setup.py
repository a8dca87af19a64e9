"""What the seed-0 tuning scripts in this folder share (run them from the repo root with PYTHONPATH=src): the world
edits of some types, the recipe's editor and judge, and one inversion of every reference scene."""
from collections import defaultdict

import torch

from cirsynth.synth.candidates import candidate_noise_seed
from cirsynth.world.evaluate import broken_labels, judge_edit, world_setup
from cirsynth.world.recipe import world_eval_config


def tuning_inputs(types, n, paste):
    """Seed 0's evaluation edits of ``types`` among the first ``n``, with the editor pasting ``paste``.

    Returns:
        ``(cfg, edits, editor, classifier, prepared references, caption edits, inversions)``.
    """
    torch.set_num_threads(2)
    cfg = world_eval_config(n=n, seed=0, paste=paste)  # the recipe's settings, seed 0 (tuning) edits only
    edits, editor, clf, refs = world_setup(cfg, types)
    print(len(edits), "edits", flush=True)
    ces = [e.caption_edit for e in edits]
    inv = editor.invert(refs, [c.source_caption for c in ces], method=cfg.methods[0], num_steps=cfg.num_steps,
                        guidance_scale=cfg.guidance_scale, seed=candidate_noise_seed(0, 0))
    return cfg, edits, editor, clf, refs, ces, inv


def judged_row(prediction, edit, /, **fields):
    """One candidate's verdicts (the judge's reading ``prediction`` of it against ``edit``'s ground truth), after
    ``fields``: ``target`` (the named attribute right), ``preserved`` (the rest kept), ``right`` (both), ``broken``."""
    t, pr = judge_edit(prediction, edit.reference, edit.target)
    return {**fields, "target": t, "preserved": pr, "right": t and pr,
            "broken": broken_labels(prediction, edit.reference, edit.target)}


def tally(rows, keys):
    """Per key of ``keys(row)`` (one key, or a list of keys the row counts under each): the distinct edits, those with
    a right candidate, and the candidates, right, named attribute right (target) and rest preserved among the rows
    (``judged_row``'s, with an ``edit`` field)."""
    agg = defaultdict(lambda: {"edits": set(), "edits_with_right": set(), "candidates": 0, "right": 0, "target": 0,
                               "preserved": 0})
    for r in rows:
        ks = keys(r)
        for k in (ks if isinstance(ks, list) else [ks]):
            a = agg[k]
            a["edits"].add(r["edit"]); a["candidates"] += 1
            a["right"] += r["right"]; a["target"] += r["target"]; a["preserved"] += r["preserved"]
            if r["right"]:
                a["edits_with_right"].add(r["edit"])
    return {k: {**a, "edits": len(a["edits"]), "edits_with_right": len(a["edits_with_right"])} for k, a in agg.items()}


def print_tally(rows, keys, edits_with_right=True):
    """Print right / target / preserved counts of ``rows`` per ``keys(row)`` (as ``tally``), and how many distinct
    edits have a right candidate under that key."""
    table = tally(rows, keys)
    for k in sorted(table, key=str):
        a = table[k]
        line = "right %d target %d preserved %d of %d" % (a["right"], a["target"], a["preserved"], a["candidates"])
        print(k, line + ("; edits with a right candidate %d" % a["edits_with_right"] if edits_with_right else ""))


def cached_blocks(cache, seed, n):
    """The candidates that ``world evaluate --seed SEED --block B --cache CACHE`` (or calibrate-filter) keeps in the
    folder ``cache`` for edits 0..n-1, in edit order: ``images`` (uint8), ``masks``, ``has_mask``, ``owner`` (each
    candidate's edit), ``candidate`` (its index within its edit) and ``psnr`` (the reconstruction's, per edit). Exits
    naming the folder unless its blocks cover those edits exactly once (two blocks of the same edits, say from two
    code versions, would count every candidate twice)."""
    import glob
    import json
    import sys

    import numpy as np

    blocks = {}
    for f in sorted(glob.glob(f"{cache}/candidates-*.npz")):
        z = np.load(f)
        key = json.loads(str(z["key"]))
        if key["seed"] != seed or key["first"] >= n:
            continue
        if key["first"] in blocks:
            sys.exit(f"{cache}: two blocks of seed {seed} start at edit {key['first']} ({blocks[key['first']][0]}, {f})")
        blocks[key["first"]] = (f, z)
    out = {k: [] for k in ("images", "masks", "has_mask", "owner", "candidate", "psnr")}
    for first in sorted(blocks):
        z = blocks[first][1]
        owner = [first + int(o) for o in z["owner"]]
        out["images"].extend(z["images"]); out["masks"].extend(z["masks"]); out["has_mask"].extend(z["has_mask"])
        out["owner"].extend(owner)
        out["candidate"].extend(owner[:k].count(e) for k, e in enumerate(owner))
        out["psnr"].extend(float(p) for p in z["psnr"])
    if sorted(set(out["owner"])) != list(range(n)) or len(out["psnr"]) != n:
        sys.exit(f"{cache}: its seed-{seed} blocks cover {len(set(out['owner']))} of edits 0..{n - 1}")
    return out
