"""The filter's diffusion judge with the bundled world diffusion model: the generator, read as a classifier of
captions, tells a scene drawn right from one where the edit did not happen or changed something else (on renders; on
its own generated candidates it tells them apart much less well: README, "Editing measured against ground truth")."""

import numpy as np
import pytest

from cirsynth.synth.candidates import hard_negative_captions
from cirsynth.world.evaluate import _world_perturber
from cirsynth.world.render import render
from tests.world.test_recaption import _wrong_edit_renders, world_filter_setup


def test_diffusion_judge_prefers_right_edits_to_unedited_and_wrong_ones():
    edits, refs, score = world_filter_setup("diffusion", 8, diffusion_judge="bundled",
                                            diffusion_timesteps=(100, 400, 700), min_diffusion_margin=0.0)
    ces = [e.caption_edit for e in edits]
    negs = hard_negative_captions(_world_perturber(), [c.target_caption for c in ces], [c.source_caption for c in ces],
                                  8, 5)
    right = score([render(e.target) for e in edits], negs)
    unedited = score(refs, negs)
    wrong = score(_wrong_edit_renders(edits), negs)
    # the unedited scene is its own reference: no move at all, and the source caption explains it at least as well
    assert all(v.scores["diffusion_edit"] == pytest.approx(0.0, abs=1e-9) for v in unedited)
    assert all(v.scores["diffusion_margin"] <= 0 for v in unedited)
    assert np.mean([v.scores["diffusion_edit"] > 0 for v in right]) >= 0.75
    assert np.mean([v.scores["diffusion_margin"] > 0 for v in right]) > np.mean([v.scores["diffusion_margin"] > 0
                                                                               for v in wrong])
    assert np.mean([v.scores["diffusion_kept"] for v in right]) > np.mean([v.scores["diffusion_kept"] for v in wrong])
    assert sum(v.passed for v in right) > sum(v.passed for v in wrong) + sum(v.passed for v in unedited)
