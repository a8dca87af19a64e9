"""Where the world's bundled (trained, committed) models live, and their model cards."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

ASSETS_DIR = Path(__file__).resolve().parent.parent / "assets" / "world"  # src/cirsynth/assets/world
CARD_JSON = "card.json"  # machine-readable card: command, seed, data, time, quality figures
CARD_MD = "README.md"  # the same card for people


def bundled_models(root: str | Path | None = None) -> dict[str, Path]:
    """Name -> folder of every bundled model (a sub-folder of ``root`` holding a ``card.json``)."""
    root = Path(root) if root is not None else ASSETS_DIR
    if not root.is_dir():
        return {}
    return {p.name: p for p in sorted(root.iterdir()) if (p / CARD_JSON).is_file()}


def model_path(name: str, root: str | Path | None = None) -> Path:
    """Folder of bundled model ``name``; a clear error lists the names that exist."""
    models = bundled_models(root)
    if name not in models:
        raise FileNotFoundError(f"no bundled world model {name!r}; bundled: {sorted(models) or 'none yet'}")
    return models[name]


def model_label(path: str | Path) -> str:
    """How results name a model: a bundled world model as ``bundled:NAME`` (the inverse of :func:`model_path`, not
    this machine's absolute path), any other id or path as given."""
    try:
        return f"bundled:{Path(path).resolve().relative_to(ASSETS_DIR.resolve()).as_posix()}"
    except (ValueError, OSError):
        return str(path)


def command_line(command: str, params: dict[str, Any], positional: tuple[str, ...] = ("out",)) -> str:
    """The exact ``cirsynth`` command line that reproduces a run with ``params``."""
    parts = ["cirsynth", command, *(str(params[k]) for k in positional if k in params)]
    for k, v in params.items():
        if v is not None and k not in positional:
            text = (json.dumps(v) if not isinstance(v, (str, Path)) else str(v)) or "''"  # '': the line still runs
            parts.append(f"--{k} {text}")
    return " ".join(parts)


def write_card(folder: str | Path, name: str, summary: str, card: dict[str, Any]) -> None:
    """Write ``card.json`` and a README.md model card; ``card`` must hold ``command`` (exact command
    line) and should hold seed, data, seconds, threads, machine and quality."""
    from cirsynth.config import atomic_write_json, atomic_write_text

    folder = Path(folder)
    if "command" not in card:
        raise ValueError("a model card needs the exact command that made the model")
    card = {"name": name, "summary": summary, **card}
    atomic_write_json(folder / CARD_JSON, card, indent=1)
    lines = [f"# {name}", "", summary, "", "## Reproduce", "", "```", card["command"], "```", ""]
    for key in ("seed", "data", "seconds_total", "threads", "machine"):
        if key in card:
            lines.append(f"- **{key}**: {card[key]}")
    for key, value in card.items():  # anything else the card holds (a note, how a part it started from was made)
        if key not in ("name", "summary", "command", "seed", "data", "seconds_total", "threads", "machine", "quality"):
            lines += ["", f"## {key}", ""] + ([value] if isinstance(value, str) else ["```json", json.dumps(value, indent=1), "```"])
    if "quality" in card:
        lines += ["", "## Quality", "", "```json", json.dumps(card["quality"], indent=1), "```"]
    atomic_write_text(folder / CARD_MD, "\n".join(lines) + "\n")


def read_card(folder: str | Path) -> dict[str, Any] | None:
    """The ``card.json`` of a model folder, or None when it has none."""
    path = Path(folder) / CARD_JSON
    return json.loads(path.read_text()) if path.is_file() else None


def add_to_card(folder: str | Path, key: str, figures: dict[str, Any]) -> None:
    """Add measured figures (e.g. ``world evaluate``'s, with the command that measured them) to a model's card
    under ``quality[key]``, rewriting card.json and README.md."""
    card = read_card(folder)
    if card is None:
        raise FileNotFoundError(f"{folder} has no {CARD_JSON}: only a model with a card (cirsynth world train ...) can be updated")
    name, summary = card.pop("name"), card.pop("summary")
    card.setdefault("quality", {})[key] = figures
    write_card(folder, name, summary, card)
