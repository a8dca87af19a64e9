"""Counterfactual image editing (SD-1.x/2.x and SDXL): inversion (null-text, negative-prompt, direct, DDIM, edit-friendly
DDPM) + prompt-to-prompt.

No file I/O here except ``Inversion.save/load`` and ``InversionCache``.
"""

from cirsynth.editing.attention import (
    AttentionRefine,
    AttentionReplace,
    AttentionReweight,
    LocalBlend,
    P2PAttnProcessor,
    P2PController,
    PairEdit,
    align_tokens,
    cross_attention_edit,
    p2p_attention,
    word_token_indices,
)
from cirsynth.editing.editor import CounterfactualEditor, EditorConfig, EditResult, NullTextConfig, TextCond
from cirsynth.editing.images import fit_image, image_hash, model_image_size
from cirsynth.editing.inversion import METHODS, Inversion, InversionCache, inversion_key

__all__ = [
    "METHODS",
    "AttentionRefine",
    "AttentionReplace",
    "AttentionReweight",
    "CounterfactualEditor",
    "EditResult",
    "EditorConfig",
    "Inversion",
    "InversionCache",
    "LocalBlend",
    "NullTextConfig",
    "P2PAttnProcessor",
    "P2PController",
    "PairEdit",
    "TextCond",
    "align_tokens",
    "cross_attention_edit",
    "fit_image",
    "image_hash",
    "inversion_key",
    "model_image_size",
    "p2p_attention",
    "word_token_indices",
]
