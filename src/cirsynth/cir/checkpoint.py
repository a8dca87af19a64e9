"""What every saved CIR model folder shares, whatever its kind: the metadata file name and the weight fingerprint.

A module of its own so that each model kind (``model.ClipCIR``, ``blip.BlipCIR``) can use them without importing
the other.
"""

from __future__ import annotations

import hashlib
import json

import torch

CHECKPOINT_FILE = "cir_model.json"  # kind, base model and settings of a saved CIR model folder


def weights_fingerprint(header: object, state: dict[str, torch.Tensor]) -> str:
    """Hash of a JSON-able ``header`` and a strided sample (<= 256 values) of every tensor in ``state``.

    Cheap enough to key feature caches on a model's exact weights: any training step moves the samples.
    """
    h = hashlib.sha256()
    h.update(json.dumps(header, sort_keys=True, default=str).encode())
    for name, t in state.items():
        flat = t.detach().flatten()
        sample = flat[:: max(1, flat.numel() // 256)][:256].float().cpu()
        h.update(name.encode() + str(tuple(t.shape)).encode() + sample.numpy().tobytes())
    return h.hexdigest()[:16]
