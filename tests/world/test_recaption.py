"""The filter's recaption rules: the bundled world captioner re-reads each edited image; the rules compare its
caption's words with the target and the source caption."""

import numpy as np
import pytest

from cirsynth.synth.filters import EditFilter, FilterConfig, caption_words, word_overlap
from cirsynth.world.assets import bundled_models
from cirsynth.world.evaluate import WorldEvalConfig, evaluation_edits
from cirsynth.world.render import render


def test_word_overlap_is_order_free_and_ignores_stop_words():
    assert caption_words("A red cube on the left, and a RED ball") == {"red": 2, "cube": 1, "ball": 1}
    assert word_overlap("a red cube and a blue ball", "a blue ball and a red cube") == 1.0
    assert word_overlap("a red cube", "a blue cube") == pytest.approx(1 / 3)
    assert word_overlap("", "the") == 0.0


def test_recaption_margin_tells_true_targets_from_unedited_references():
    bundled = bundled_models()
    if "captioner" not in bundled:
        pytest.skip("no bundled world captioner")
    edits = evaluation_edits(WorldEvalConfig(editor="", classifier="", n=16, seed=5))
    ces = [e.caption_edit for e in edits]
    refs = [render(e.reference) for e in edits]
    filt = EditFilter(FilterConfig(clip=None, recaptioner=str(bundled["captioner"]), min_recaption_margin=0.0))

    def score(images):
        return filt.score(refs, images, [c.source_caption for c in ces], [c.target_caption for c in ces],
                          [c.source_words for c in ces], [c.target_words for c in ces], [None] * len(ces))

    right = score([render(e.target) for e in edits])  # the ground-truth target: the edit done right
    unedited = score(refs)  # the edit did not happen
    assert all(0.0 <= v.scores["recaption_target"] <= 1.0 for v in right + unedited)
    assert np.mean([v.scores["recaption_margin"] > 0 for v in right]) >= 0.75
    assert np.mean([v.scores["recaption_margin"] > 0 for v in unedited]) <= 0.1
    assert sum(v.passed for v in right) > sum(v.passed for v in unedited)
    assert any("recaption_margin" in r for v in unedited for r in v.failed)
