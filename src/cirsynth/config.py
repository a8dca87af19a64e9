"""Resolved-config saving and atomic file helpers shared by every command."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

import yaml


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temp file in the same folder and a rename.

    A crash leaves either the old file or the new one, never a half-written file.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | os.PathLike, obj: Any, indent: int | None = None) -> None:
    atomic_write_text(path, json.dumps(obj, indent=indent, ensure_ascii=False, default=str))


def save_resolved_config(out_dir: str | os.PathLike, command: str, params: dict[str, Any]) -> Path:
    """Save the fully resolved arguments of ``command`` as YAML beside its outputs.

    Returns the path written (``<out_dir>/cirsynth.<command>.yaml``); the file can be passed back
    with ``--config`` to rerun the same command.
    """
    clean = json.loads(json.dumps(params, default=str))
    path = Path(out_dir) / f"cirsynth.{command.replace(' ', '-')}.yaml"
    atomic_write_text(path, yaml.safe_dump(clean, sort_keys=False))
    return path


def changed_settings(old: dict[str, Any], new: dict[str, Any], ignore: Any = ()) -> list[str]:
    """``"name: old -> new"`` for every setting that differs between two resolved configs, sorted by name.

    Nested dicts are compared key by key (``filters.min_clip_i2i``); values are compared as JSON (a tuple equals
    the list it is saved as). Top-level names in ``ignore`` are skipped.
    """

    def flat(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
        out: dict[str, Any] = {}
        for k, v in d.items():
            if isinstance(v, dict):
                out.update(flat(v, f"{prefix}{k}."))
            else:
                out[f"{prefix}{k}"] = v
        return out

    o = flat(json.loads(json.dumps(old, default=str)))
    n = flat(json.loads(json.dumps(new, default=str)))
    return [f"{k}: {o.get(k)!r} -> {n.get(k)!r}" for k in sorted(set(o) | set(n))
            if k.split(".")[0] not in set(ignore) and o.get(k) != n.get(k)]
