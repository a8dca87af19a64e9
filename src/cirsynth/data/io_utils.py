"""Small I/O helpers shared by the benchmark importers and exporters."""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from cirsynth.data.errors import DataError

_WORD = re.compile(r"[a-z0-9]+")


def load_json(path: str | os.PathLike) -> Any:
    """Read a JSON file; a missing, truncated or malformed file raises ``DataError`` with the position."""
    path = Path(path)
    if not path.is_file():
        raise DataError("file not found", file=str(path))
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise DataError(f"malformed or truncated JSON at line {e.lineno} column {e.colno}: {e.msg}", file=str(path)) from e
    except UnicodeDecodeError as e:
        raise DataError(f"not UTF-8 text: {e}", file=str(path)) from e


def load_json_of(path: str | os.PathLike, kind: type, collector: Any, what: str) -> Any:
    """``load_json`` that expects a top-level ``kind`` (list or dict); otherwise the problem goes to
    ``collector`` (a ``Collector``: raise when strict, record a rejection when lenient) and an empty one is returned."""
    data = load_json(path)
    if not isinstance(data, kind):
        collector.reject(str(path), "<root>", f"expected a JSON {what}")
        return kind()
    return data


def read_jsonl(path: str | os.PathLike) -> list[Any]:
    """Records of a JSON-lines file (blank lines skipped); a bad line raises ``ValueError`` naming file and line."""
    path = Path(path)
    rows = []
    for k, line in enumerate(path.read_text("utf-8").splitlines(), 1):
        if line.strip():
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError as e:
                raise ValueError(f"{path}:{k}: not JSON ({e.msg})") from e
    return rows


def copy_or_link(src: Path, dst: Path, link: bool = False) -> None:
    """Copy ``src`` to ``dst``; with ``link``, hard-link it instead where the file system allows.

    A hard link shares the file: editing the copy then edits the original, so it is never the default.
    """
    dst.parent.mkdir(parents=True, exist_ok=True)
    if link:
        try:
            os.link(src, dst)
            return
        except OSError:
            pass
    shutil.copyfile(src, dst)


def is_file(path: Path) -> bool:
    """``path.is_file()``, False also for a name the OS refuses (too long, a NUL byte)."""
    try:
        return path.is_file()
    except (OSError, ValueError):
        return False


def resolve_inside(root: str | os.PathLike, rel: object) -> tuple[Path | None, str | None]:
    """``root / rel`` with symlinks resolved, when it stays inside ``root``.

    Returns:
        ``(path, None)``, or ``(None, reason)`` for a reference that is not a path string, is absolute or
        climbs out with ``..``, or is a symlink leading outside ``root``.
    """
    if not isinstance(rel, str) or not rel:
        return None, f"image reference is not a path but {type(rel).__name__}"
    try:
        base = Path(root).resolve()
        path = (base / rel).resolve()
    except (ValueError, OSError, RuntimeError) as e:  # a NUL byte, a symlink loop
        return None, f"unusable image path {rel!r}: {e}"
    if not path.is_relative_to(base):
        return None, f"image path {rel!r} resolves outside the dataset root (to {path})"
    return path, None


@contextmanager
def staged_output_dir(dst: str | os.PathLike, overwrite: bool = False, keep_existing: bool = False) -> Iterator[Path]:
    """Yield a temp folder beside ``dst`` that becomes ``dst`` only when the block succeeds.

    A crash or an exception leaves no half-written export at ``dst``. With ``keep_existing``, a ``dst`` that another
    process finished while the block ran stays as it is and this block's folder is dropped (for a cache that several
    processes may fill at once with the same content, none of them losing the folder it reads).
    """
    dst = Path(dst)
    if dst.exists() and not overwrite:
        raise FileExistsError(f"{dst} already exists (pass overwrite=True / --overwrite true to replace it)")
    dst.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{dst.name}.", suffix=".tmp", dir=dst.parent))
    try:
        yield tmp
        if keep_existing:
            try:
                tmp.rename(dst)
            except OSError:  # refused: another process's dst is there, keep it
                if not dst.exists():
                    raise
                shutil.rmtree(tmp, ignore_errors=True)
        elif dst.exists():
            old = dst.with_name(f".{dst.name}.old")
            shutil.rmtree(old, ignore_errors=True)
            dst.rename(old)
            tmp.rename(dst)
            shutil.rmtree(old, ignore_errors=True)
        else:
            tmp.rename(dst)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def caption_tokens(text: str | None) -> frozenset[str]:
    return frozenset(_WORD.findall((text or "").lower()))
