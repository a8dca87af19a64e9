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


def judged_row(prediction, edit, **fields):
    """One candidate's verdicts (the judge's reading ``prediction`` of it against ``edit``'s ground truth), after
    ``fields``: ``target`` (the named attribute right), ``preserved`` (the rest kept), ``right`` (both), ``broken``."""
    t, pr = judge_edit(prediction, edit.reference, edit.target)
    return {**fields, "target": t, "preserved": pr, "right": t and pr,
            "broken": broken_labels(prediction, edit.reference, edit.target)}


def print_tally(rows, keys, edits_with_right=True):
    """Print right / target / preserved counts of ``rows`` per ``keys(row)`` (one key or a tuple of keys, each row
    counted under every one), and how many distinct edits have a right candidate under that key."""
    agg = defaultdict(lambda: [0, 0, 0, 0, set()])
    for r in rows:
        ks = keys(r)
        for k in (ks if isinstance(ks, list) else [ks]):
            a = agg[k]
            a[0] += r["right"]; a[1] += r["target"]; a[2] += r["preserved"]; a[3] += 1
            if r["right"]:
                a[4].add(r["edit"])
    for k in sorted(agg, key=str):
        a = agg[k]
        line = "right %d target %d preserved %d of %d" % tuple(a[:4])
        print(k, line + ("; edits with a right candidate %d" % len(a[4]) if edits_with_right else ""))
