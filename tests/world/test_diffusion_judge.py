"""The filter's diffusion judge with the bundled world diffusion model: the generator, read as a classifier of
captions, tells a scene drawn right from one where the edit did not happen or changed something else."""

import numpy as np
import pytest

from cirsynth.synth.candidates import hard_negative_captions
from cirsynth.synth.filters import EditFilter, FilterConfig
from cirsynth.world.assets import bundled_models
from cirsynth.world.evaluate import WorldEvalConfig, _world_perturber, evaluation_edits
from cirsynth.world.render import render
from tests.world.test_recaption import _wrong_edit_renders


def test_diffusion_judge_prefers_right_edits_to_unedited_and_wrong_ones():
    bundled = bundled_models()
    if "diffusion" not in bundled:
        pytest.skip("no bundled world diffusion model")
    edits = evaluation_edits(WorldEvalConfig(editor="", classifier="", n=8, seed=5))
    ces = [e.caption_edit for e in edits]
    refs = [render(e.reference) for e in edits]
    negs = hard_negative_captions(_world_perturber(), [c.target_caption for c in ces], [c.source_caption for c in ces],
                                  8, 5)
    filt = EditFilter(FilterConfig(clip=None, diffusion_judge=str(bundled["diffusion"]),
                                   diffusion_timesteps=(100, 400, 700), min_diffusion_margin=0.0))

    def score(images):
        return filt.score(refs, images, [c.source_caption for c in ces], [c.target_caption for c in ces],
                          [c.source_words for c in ces], [c.target_words for c in ces], [None] * len(ces),
                          negatives=negs)

    right = score([render(e.target) for e in edits])
    unedited = score(refs)
    wrong = score(_wrong_edit_renders(edits))
    # the unedited scene is its own reference: no move at all, and the source caption explains it at least as well
    assert all(v.scores["diffusion_edit"] == pytest.approx(0.0, abs=1e-9) for v in unedited)
    assert all(v.scores["diffusion_margin"] <= 0 for v in unedited)
    assert np.mean([v.scores["diffusion_edit"] > 0 for v in right]) >= 0.75
    assert np.mean([v.scores["diffusion_margin"] > 0 for v in right]) > np.mean([v.scores["diffusion_margin"] > 0
                                                                               for v in wrong])
    assert np.mean([v.scores["diffusion_kept"] for v in right]) > np.mean([v.scores["diffusion_kept"] for v in wrong])
    assert sum(v.passed for v in right) > sum(v.passed for v in wrong) + sum(v.passed for v in unedited)
