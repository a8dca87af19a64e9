"""How well world captioners read renders, their autoencoder round trips, and the generator's candidates (seed 0 only).

The filter's re-captioner and likelihood scores come from the world captioner, which was trained on renders; the
candidates it reads are the generator's. For each captioner folder given: exact caption and words right on the 300
held-out renders of the captioner's card (seed 2), on the same renders after the bundled editor's VAE round trip,
and on the seed-0 candidates the judge calls right (the first N tuning edits, candidate images from the cache that
calibrate-filter made), against the canonical caption of the edit's target scene; on the renders and on those
candidates, the share of each kind of attribute word (shape, pattern, size, ...) read wrong, word by word in caption
order. The judge's verdicts only pick which candidates to read; they feed no model.

Usage (repo root):
    PYTHONPATH=src:docs/results .venv/bin/python docs/results/world_captioner_reading.py CACHE N TABLE CAPTIONER [CAPTIONER ...]
e.g. /tmp/cache_s21b 96 docs/results/world_calibration_seed0_n192_unet_s21b500_candidates.json src/cirsynth/assets/world/captioner
"""
import json
import sys

from PIL import Image

from tune_setup import cached_blocks

from cirsynth.captions.captioner import Captioner, CaptionerConfig
from cirsynth.world.captioner import _renders, autoencoder_round_trip, caption_scores
from cirsynth.world.render import to_pil
from cirsynth.world.evaluate import evaluation_edits
from cirsynth.world.language import VOCABULARY, caption, tokenize
from cirsynth.world.recipe import bundled_model, world_eval_config

cache, n, table, folders = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4:]
renders, texts = _renders(300, 2, 64)
trips = autoencoder_round_trip(bundled_model("editor"), renders)
blocks = cached_blocks(cache, 0, n)
right = {(r["edit"], r["candidate"]) for r in json.load(open(table)) if r["right"] and r["edit"] < n}
edits = evaluation_edits(world_eval_config(None, n=n, seed=0))
picked = [i for i, k in enumerate(zip(blocks["owner"], blocks["candidate"])) if k in right]
if len(picked) != len(right):
    sys.exit(f"{cache} holds {len(picked)} of the table's {len(right)} right candidates of edits 0..{n - 1}")
candidates = [Image.fromarray(blocks["images"][i]) for i in picked]
targets = [caption(edits[blocks["owner"][i]].target) for i in picked]


KIND = {w: kind for kind, words in VOCABULARY.items() for w in words}


def misread(predicted, truth):
    """Per kind of attribute word in the true captions: the % read as another word at the same place."""
    wrong, total = {}, {}
    for p, t in zip(predicted, truth):
        for a, b in zip(tokenize(p.lower()), tokenize(t.lower())):
            if b in KIND:
                total[KIND[b]] = total.get(KIND[b], 0) + 1
                wrong[KIND[b]] = wrong.get(KIND[b], 0) + (a != b)
    return {k: round(100 * wrong[k] / total[k], 1) for k in sorted(total)}


out = {"n_edits": n, "right_candidates": len(picked), "captioners": {}}
for folder in folders:
    cap = Captioner.from_pretrained(folder, CaptionerConfig(batch_size=64))
    read_renders, read_candidates = cap.caption(to_pil(renders)), cap.caption(candidates)
    out["captioners"][folder] = {"renders": caption_scores(read_renders, texts),
                                 "autoencoded": caption_scores(cap.caption(to_pil(trips)), texts),
                                 "right_candidates": caption_scores(read_candidates, targets),
                                 "misread_pct_renders": misread(read_renders, texts),
                                 "misread_pct_right_candidates": misread(read_candidates, targets)}
print(json.dumps(out, indent=1))
