"""Human decisions on triplets: ``ROOT/decisions.json``, written by the gallery, applied by ``cirsynth curate``.

File format (one JSON object, written atomically: temp name + rename)::

    {"format": "cirsynth-decisions", "version": 1,
     "decisions": {"<triplet id>": {"decision": "accept" | "reject" | "flag", "time": "2026-12-01T23:50:00Z"}}}

``accept`` and ``reject`` override the filter's status; ``flag`` marks a triplet for a second look and keeps the
filter's status. A triplet without an entry keeps the filter's status.
"""

from __future__ import annotations

import datetime as _dt
import threading
from pathlib import Path
from typing import Any

from cirsynth.config import atomic_write_json
from cirsynth.data.errors import DataError
from cirsynth.data.io_utils import load_json

DECISIONS_FILE = "decisions.json"
FORMAT = "cirsynth-decisions"
VERSION = 1
DECISIONS: tuple[str, ...] = ("accept", "reject", "flag")


def now_utc() -> str:
    """The current time as an ISO 8601 UTC string with seconds, e.g. ``2026-12-01T23:50:00Z``."""
    return _dt.datetime.now(_dt.timezone.utc).replace(microsecond=0).strftime("%Y-%m-%dT%H:%M:%SZ")


def _check_time(s: Any) -> bool:
    if not isinstance(s, str):
        return False
    try:
        _dt.datetime.strptime(s, "%Y-%m-%dT%H:%M:%SZ")
    except ValueError:
        return False
    return True


def read_decisions(root: str | Path) -> dict[str, dict[str, str]]:
    """The decisions recorded under ``root`` (empty when there is no file).

    Raises:
        DataError: the file is not JSON, or not in the format above (the message names the entry and the problem).
    """
    path = Path(root) / DECISIONS_FILE
    if not path.exists():
        return {}
    data = load_json(path)
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise DataError(f"not a decisions file: expected a JSON object with \"format\": \"{FORMAT}\"", file=str(path))
    if data.get("version") != VERSION:
        raise DataError(f"unsupported decisions version {data.get('version')!r} (expected {VERSION})", file=str(path))
    decisions = data.get("decisions")
    if not isinstance(decisions, dict):
        raise DataError("\"decisions\" must be a JSON object: triplet id -> {decision, time}", file=str(path))
    out: dict[str, dict[str, str]] = {}
    for tid, d in decisions.items():
        if not isinstance(d, dict) or set(d) != {"decision", "time"}:
            raise DataError("an entry must be an object with exactly the keys decision and time", file=str(path), entry=tid)
        if d["decision"] not in DECISIONS:
            raise DataError(f"decision must be one of {DECISIONS}, got {d['decision']!r}", file=str(path), entry=tid)
        if not _check_time(d["time"]):
            raise DataError(f"time must be an ISO 8601 UTC string like 2026-12-01T23:50:00Z, got {d['time']!r}",
                            file=str(path), entry=tid)
        out[tid] = {"decision": d["decision"], "time": d["time"]}
    return out


def write_decisions(root: str | Path, decisions: dict[str, dict[str, str]]) -> Path:
    """Write all ``decisions`` to ``root/decisions.json`` atomically (temp name + rename); returns the path."""
    path = Path(root) / DECISIONS_FILE
    atomic_write_json(path, {"format": FORMAT, "version": VERSION, "decisions": dict(sorted(decisions.items()))}, indent=1)
    return path


class DecisionStore:
    """The decisions of one dataset, held in memory and saved on every change (thread-safe: the server is threaded)."""

    def __init__(self, root: str | Path):
        self.root = Path(root)
        self._lock = threading.Lock()
        self.decisions = read_decisions(self.root)  # a malformed file raises here, before anything is served

    def set(self, tid: str, decision: str | None) -> dict[str, Any]:
        """Record ``decision`` for ``tid`` (``None`` clears it) and save. Returns the entry written."""
        if decision is not None and decision not in DECISIONS:
            raise ValueError(f"decision must be one of {DECISIONS} or null, got {decision!r}")
        with self._lock:
            new = dict(self.decisions)
            if decision is None:
                new.pop(tid, None)
                entry: dict[str, Any] = {"id": tid, "decision": None, "time": None}
            else:
                new[tid] = {"decision": decision, "time": now_utc()}
                entry = {"id": tid, **new[tid]}
            write_decisions(self.root, new)
            self.decisions = new
        return entry

    def get(self, tid: str) -> dict[str, str] | None:
        return self.decisions.get(tid)
