"""The diffusion judge: a filter's reading of an edited image by the diffusion model itself.

Kept in the synthesis layer, beside the filter that uses it, rather than on ``CounterfactualEditor``: it uses only the
editor's primitives (its VAE encoder, text encoder, UNet call and scheduler) and changes nothing the editor draws.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import torch
from PIL import Image

from cirsynth.editing.editor import TextCond


@torch.no_grad()
def caption_errors(
    editor: Any,
    images: Sequence[Image.Image],
    captions: Sequence[Sequence[str]],
    timesteps: Sequence[int] = (100, 250, 400, 550, 700),
    seed: int = 0,
    batch_size: int = 64,
) -> list[np.ndarray]:
    """A ``CounterfactualEditor``'s diffusion model read as a judge of captions (the diffusion classifier of Li et
    al. 2023, "Your Diffusion Model is Secretly a Zero-Shot Classifier"): each image's latent is noised at every one
    of ``timesteps`` and the UNet, conditioned on a caption, predicts what it was trained to predict (the noise; the
    velocity for v-prediction models; the clean latent for sample-prediction ones). A caption's error is the mean
    squared prediction error over the timesteps: the lower, the better the caption explains the image.

    Every image and caption sees the same noise, drawn from ``seed`` once per timestep, so errors compare
    pairwise (two captions of one image; one caption on two images of the same size) without the noise's own
    variance. No guidance, no attention control.

    Args:
        editor: the ``CounterfactualEditor`` whose model judges.
        images: N images, fitted to the model size (``editor.prepare``).
        captions: per image, the captions to score it under (each distinct caption is encoded once).
        timesteps: training timesteps, each in ``[0, num_train_timesteps)``.
        seed: the noise's seed.
        batch_size: UNet rows per call.

    Returns:
        per image, a float64 array of its captions' errors, aligned with ``captions[i]``.

    Cost: ``sum(len(c) for c in captions) * len(timesteps)`` UNet rows (conditional only), one VAE encode per
    image.
    """
    if len(images) != len(captions):
        raise ValueError(f"caption_errors: {len(images)} images but {len(captions)} caption lists")
    steps = [int(t) for t in timesteps]
    n_train = int(editor.scheduler.config.num_train_timesteps)
    if not steps or any(not 0 <= t < n_train for t in steps):
        raise ValueError(f"caption_errors: timesteps must be a non-empty list in [0, {n_train}), got {list(timesteps)}")
    if batch_size < 1:
        raise ValueError(f"caption_errors: batch_size must be >= 1, got {batch_size}")
    kind = editor.scheduler.config.prediction_type
    if kind not in ("epsilon", "v_prediction", "sample"):
        raise ValueError(f"caption_errors: unsupported prediction_type {kind!r}")
    out = [np.zeros(len(c)) for c in captions]
    rows = [(i, j, k) for i, caps in enumerate(captions) for j in range(len(caps)) for k in range(len(steps))]
    if not rows:
        return out
    z0 = torch.cat([editor.encode_images(images[b:b + editor.config.batch_size])
                    for b in range(0, len(images), editor.config.batch_size)])  # (N, C, h, w)
    gen = torch.Generator().manual_seed(int(seed))
    eps = torch.randn((len(steps),) + tuple(z0.shape[1:]), generator=gen).to(z0.device)  # (T, C, h, w)
    abar = editor.scheduler.alphas_cumprod.to(z0.device, torch.float32)[torch.tensor(steps)]  # (T,)
    unique = list(dict.fromkeys(c for caps in captions for c in caps))
    index = {c: u for u, c in enumerate(unique)}
    cond = TextCond.cat([editor.encode_text(unique[b:b + 256]) for b in range(0, len(unique), 256)])
    for b in range(0, len(rows), batch_size):
        chunk = rows[b:b + batch_size]
        i = torch.tensor([r[0] for r in chunk], device=z0.device)
        k = torch.tensor([r[2] for r in chunk], device=z0.device)
        a = abar[k].view(-1, 1, 1, 1)
        x0, e = z0[i], eps[k]
        noisy = a.sqrt() * x0 + (1 - a).sqrt() * e
        target = {"epsilon": e, "v_prediction": a.sqrt() * e - (1 - a).sqrt() * x0, "sample": x0}[kind]
        c = cond[torch.tensor([index[captions[r[0]][r[1]]] for r in chunk], device=cond.seq.device)]
        pred = editor._unet(  # the editor's own UNet call: its dtype, SDXL's added conditioning
            noisy, torch.tensor(steps, device=z0.device)[k], c)
        err = ((pred - target) ** 2).mean(dim=(1, 2, 3)).double().cpu().numpy()
        for (ii, jj, _), v in zip(chunk, err):
            out[ii][jj] += v / len(steps)
    return out

