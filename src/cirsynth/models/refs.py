"""Check a model reference (hub id or local folder) before anything loads, with an error that says what to pass.

Loading a wrong reference otherwise fails deep inside diffusers / transformers / peft, after seconds of hub retries
and a long traceback. ``check_model_ref`` answers in well under a second: a folder must exist and hold the file its
kind is read from; a hub id must be in the local cache when ``HF_HUB_OFFLINE`` is set, and otherwise reachable in one
short request (no retries) when it is not cached.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

from cirsynth.data.errors import DataError


class ModelRefError(DataError):
    """A model id or folder that cannot be loaded; the message names the option and what to pass instead."""


@dataclass(frozen=True)
class ModelKind:
    what: str  # what the option names, for messages
    marker: str  # the file a folder or hub repo of this kind holds
    example: str  # a placeholder for "pass --option EXAMPLE"


KINDS = {
    "pipeline": ModelKind("a diffusers Stable Diffusion / SDXL pipeline", "model_index.json", "DIR"),
    "clip": ModelKind("a transformers CLIP model", "config.json", "DIR"),
    "captioner": ModelKind("a transformers image-to-text model", "config.json", "DIR"),
    "causal-lm": ModelKind("a transformers causal LM", "config.json", "DIR|FILE.gguf|smollm2"),
    "adapter": ModelKind("a PEFT LoRA adapter (from `cirsynth train-perturber`)", "adapter_config.json", "DIR"),
}

_HUB_ID = re.compile(r"[A-Za-z0-9][\w.-]*(/[\w.-]+)?")
_TIMEOUT_S = 5.0  # one request, no retries: an unreachable hub answers in seconds, not after a minute of backoff


def hub_offline() -> bool:
    """Whether downloads are off (``HF_HUB_OFFLINE``, read now, not only when huggingface_hub was imported)."""
    from huggingface_hub import constants

    env = os.environ.get("HF_HUB_OFFLINE", "").strip().upper() in {"1", "ON", "YES", "TRUE"}
    return bool(constants.HF_HUB_OFFLINE) or env


def _looks_like_path(value: str) -> bool:
    return (value.startswith(("/", ".", "~")) or value.count("/") > 1 or os.sep in value.replace("/", "")
            or not _HUB_ID.fullmatch(value))


def check_model_ref(option: str, value: str | os.PathLike, kind: str, world: bool = False) -> str:
    """Check that ``value`` (given as ``--option``) can be loaded as a model of ``kind`` before any loading.

    Args:
        option: the command-line option, e.g. ``"--editor"`` (named in the message).
        value: hub id or local path.
        kind: a key of ``KINDS``: pipeline, clip, captioner, causal-lm, adapter.
        world: the option takes ``world`` for the bundled mini-world model (said in the message).

    Returns:
        "folder", "file", "cache" or "hub": where it will load from.

    Raises:
        ModelRefError: a missing folder, a folder without its kind's file, or a hub id that is not cached while
            HF_HUB_OFFLINE is set, does not exist, or cannot be reached.
    """
    k = KINDS[kind]
    value = str(value)
    alt = f"pass {option} {k.example} (a local folder of {k.what})"
    if world:
        alt += f", or {option} world (the bundled mini-world model)"
    if kind == "causal-lm" and value.lower() == "smollm2":
        return "file"
    path = Path(value).expanduser()
    if path.exists():
        if kind == "causal-lm" and path.is_file() and path.suffix == ".gguf":
            return "file"
        if not path.is_dir():
            raise ModelRefError(f"{option} {value}: is a file, not a folder of {k.what}; {alt}")
        if not (path / k.marker).is_file():
            hint = " (an adapter folder holds adapter_config.json and adapter weights)" if kind == "adapter" else ""
            raise ModelRefError(f"{option} {value}: the folder has no {k.marker}, so it is not {k.what}{hint}; {alt}")
        return "folder"
    if _looks_like_path(value) or (kind == "causal-lm" and value.endswith(".gguf")):
        raise ModelRefError(f"{option} {value}: no such folder; {alt}")
    return _check_hub(option, value, k, alt)


def _check_hub(option: str, repo: str, k: ModelKind, alt: str) -> str:
    from huggingface_hub import try_to_load_from_cache

    cached = try_to_load_from_cache(repo, k.marker)
    if isinstance(cached, str):
        return "cache"
    if hub_offline():
        raise ModelRefError(f"{option} {repo}: no such folder, and as a Hub id it is not in the local Hugging Face cache "
                            f"(HF_HUB_OFFLINE is set, so nothing is downloaded); {alt}, or unset HF_HUB_OFFLINE "
                            f"to download it")
    from huggingface_hub import hf_hub_url
    from huggingface_hub.utils import build_hf_headers, get_session

    try:
        r = get_session().head(hf_hub_url(repo, k.marker), headers=build_hf_headers(), timeout=_TIMEOUT_S,
                               follow_redirects=True)
    except Exception as e:  # noqa: BLE001 - any transport error means: the hub is not reachable from here
        raise ModelRefError(f"{option} {repo}: no such folder, and as a Hub id it is not in the local cache and the Hub "
                            f"cannot be reached "
                            f"({type(e).__name__}: {e}); {alt}, or download it where there is a network and "
                            f"copy the cache (then set HF_HUB_OFFLINE=1)") from None
    if r.status_code in (401, 403, 404):
        code = r.headers.get("X-Error-Code", "")
        if code == "EntryNotFound":
            raise ModelRefError(f"{option} {repo}: the Hub repo has no {k.marker}, so it is not {k.what}; {alt}")
        raise ModelRefError(f"{option} {repo}: no such folder, and no such model on the Hub, or it is gated / private "
                            f"(HTTP {r.status_code}; log in with `hf auth login` for gated models); {alt}")
    if r.status_code >= 400:
        raise ModelRefError(f"{option} {repo}: the Hub answered HTTP {r.status_code}; {alt}")
    return "hub"
