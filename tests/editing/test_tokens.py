import pytest
import torch

from cirsynth.editing import AttentionRefine, AttentionReplace, AttentionReweight, LocalBlend, word_token_indices
from cirsynth.editing.attention import cross_attention_edit, tokenize


@pytest.fixture(scope="module")
def tok(pipe):
    return pipe.tokenizer


def test_refine_aligns_added_word(tok):
    # [CLS] a cat [SEP] pad...  ->  [CLS] a big cat [SEP] pad...
    edit = AttentionRefine.from_prompts(tok, "a cat", "a big cat")
    L = tok.model_max_length
    assert edit.alpha[:5].tolist() == [1, 1, 0, 1, 1]  # "big" is new: keeps its own attention
    assert [edit.mapper[p].item() for p in (0, 1, 3, 4)] == [0, 1, 2, 3]
    # padding aligns end to end: target pad p takes source position p - 1
    assert edit.mapper[5:].tolist() == [min(p - 1, L - 1) for p in range(5, L)]
    assert edit.alpha[5:].eq(1).all()


def test_refine_removed_word(tok):
    edit = AttentionRefine.from_prompts(tok, "a big cat", "a cat")
    assert edit.mapper[:4].tolist() == [0, 1, 3, 4]
    assert edit.alpha[:4].tolist() == [1, 1, 1, 1]


def test_word_swap_replace_and_refine(tok):
    rep = AttentionReplace.from_prompts(tok, "a red car", "a blue car")
    assert torch.equal(rep.mapper, torch.arange(tok.model_max_length)) and rep.alpha.eq(1).all()
    ref = AttentionRefine.from_prompts(tok, "a red car", "a blue car")
    assert [ref.mapper[p].item() for p in (0, 1, 3, 4)] == [0, 1, 3, 4]
    assert ref.alpha[:5].tolist() == [1, 1, 0, 1, 1]  # "blue" has no counterpart
    assert cross_attention_edit(tok, "a red car", "a blue car").name == "replace"
    assert cross_attention_edit(tok, "a cat", "a big cat").name == "refine"


def test_replace_rejects_different_lengths(tok):
    with pytest.raises(ValueError, match="equal token counts"):
        AttentionReplace.from_prompts(tok, "a cat", "a big cat")


def test_word_indices_multi_token_and_missing(tok):
    ids, n = tokenize(tok, "a photo of a cat")
    assert word_token_indices(tok, "a photo of a cat", "cat") == [n - 2]
    assert word_token_indices(tok, "a photo of a cat", "a") == [1, 4]  # every occurrence
    assert word_token_indices(tok, "a photo of a cat", "a cat") == [4, 5]
    with pytest.raises(ValueError, match="does not occur"):
        word_token_indices(tok, "a photo of a cat", "dog")


def test_reweight_and_blend_weights(tok):
    rw = AttentionReweight.from_words(tok, "a red car", {"red": 2.0})
    assert rw.equalizer[:5].tolist() == [1, 1, 2, 1, 1]
    lb = LocalBlend.from_words(tok, "a red car", "a blue car", ["red"], ["blue"])
    assert lb.source_tokens[:5].tolist() == [0, 0, 1, 0, 0] and lb.target_tokens[:5].tolist() == [0, 0, 1, 0, 0]
    with pytest.raises(ValueError, match="at least one"):
        LocalBlend.from_words(tok, "a red car", "a blue car", [], [])


def test_blend_and_reweight_take_the_edited_occurrence_of_a_repeated_word(tok):
    src, tgt = "a red cube and a red ball", "a blue cube and a red ball"
    ids, n = tokenize(tok, src)
    second_red = word_token_indices(tok, src, "red")[1]
    lb = LocalBlend.from_words(tok, src, tgt, ["red"], ["blue"])
    assert lb.source_tokens.nonzero().flatten().tolist() == [2]  # the changed "red", not the ball's
    assert lb.source_tokens[second_red] == 0
    rw = AttentionReweight.from_words(tok, "a large cube and a large ball", {"large": 2.0},
                                      source="a small cube and a large ball")
    assert rw.equalizer.ne(1).nonzero().flatten().tolist() == [2]
    # a word outside the changed span (user-chosen) still selects every occurrence
    assert AttentionReweight.from_words(tok, tgt, {"a": 2.0}, source=src).equalizer.ne(1).sum() == 2


def test_local_blend_keep_words(tok):
    src, tgt = "a cube on grass", "a cube on sand"
    lb = LocalBlend.from_words(tok, src, tgt, ["grass"], ["sand"], keep_words=["cube"])
    assert lb.keep_tokens.nonzero().flatten().tolist() == [2] and lb.source_tokens.nonzero().flatten().tolist() == [4]
    keep_only = LocalBlend.from_words(tok, src, tgt, [], [], keep_words=["cube"])  # "everything but the cube"
    assert keep_only.source_tokens.sum() == 0 and keep_only.keep_tokens.sum() == 1
    with pytest.raises(ValueError, match="both changed and kept"):
        LocalBlend.from_words(tok, src, tgt, ["grass"], ["sand"], keep_words=["grass"])
