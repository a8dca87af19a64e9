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
