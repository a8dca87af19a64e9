"""Small helpers for the world's picture grids (demo, evaluate)."""

from __future__ import annotations


def wrap_words(text: str, width: int) -> list[str]:
    """Greedy line breaks for a picture grid's text cell: a word starts a new line when the line would pass ``width``."""
    lines = [""]
    for w in text.split():
        if len(lines[-1]) + len(w) > width:
            lines.append("")
        lines[-1] = f"{lines[-1]} {w}".strip()
    return lines
