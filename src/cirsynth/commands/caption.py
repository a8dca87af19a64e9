"""``cirsynth caption``: caption a folder of images with any HF image-to-text model, as JSONL."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional


def caption(
    images: Path,
    out: Path,
    model: str = "Salesforce/blip2-opt-2.7b",
    prompt: Optional[str] = None,
    batch_size: int = 8,
    max_new_tokens: int = 30,
    device: Optional[str] = None,
    dtype: Optional[str] = None,
) -> int:
    """Write {"image": path, "caption": text} lines for every image under a folder (input of `cirsynth perturb`).

    Args:
        images: folder of images (.jpg .jpeg .png .webp .bmp, searched recursively).
        out: output JSONL (written atomically); the resolved config is saved beside it.
        model: image-to-text model: hub id (default the paper's BLIP-2 OPT-2.7b; BLIP, GIT, ...) or a saved folder.
        prompt: text prefix the caption continues, e.g. "a photo of".
        batch_size: images per generate call.
        max_new_tokens: caption length cap in tokens.
        device: torch device (default CUDA when available).
        dtype: model dtype, e.g. float16 on GPU (default float32).

    Returns:
        0.
    """
    from PIL import Image

    from cirsynth.captions.captioner import Captioner, CaptionerConfig, list_images
    from cirsynth.config import atomic_write_text, save_resolved_config
    from cirsynth.models.refs import check_model_ref

    params = {k: (str(v) if isinstance(v, Path) else v) for k, v in locals().items()}
    check_model_ref("--model", model, "captioner")
    files = list_images(images)
    cap = Captioner.from_pretrained(model, CaptionerConfig(prompt=prompt, batch_size=batch_size,
                                                           max_new_tokens=max_new_tokens), device=device, dtype=dtype)
    lines = []
    for b in range(0, len(files), batch_size):
        chunk = files[b:b + batch_size]
        ims = []
        for f in chunk:
            with Image.open(f) as im:
                ims.append(im.convert("RGB"))
        lines += [{"image": str(f), "caption": c} for f, c in zip(chunk, cap.caption(ims))]
    atomic_write_text(out, "".join(json.dumps(l, ensure_ascii=False) + "\n" for l in lines))
    save_resolved_config(Path(out).parent, "caption", params)
    print(json.dumps({"images": len(files), "out": str(out)}))
    return 0
