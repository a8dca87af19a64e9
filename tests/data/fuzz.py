"""Random JSON-able values of every type, for the input-reader fuzz tests (seeded, no extra dependency)."""

from __future__ import annotations

import random

ATOMS = [None, True, False, 0, -1, 7, 2**70, 1.5, -0.0, float("nan"), float("inf"), "", " ", "a", "x.png",
         "../x.png", "../../etc/passwd", "/etc/hostname", "nul\x00byte", "é" * 3, "a" * 300, "\n", "C:\\x.png"]


def value(rng: random.Random, depth: int = 0):
    """A random value: an atom, a list or an object, nested up to 3 deep."""
    r = rng.random()
    if depth < 3 and r < 0.15:
        return [value(rng, depth + 1) for _ in range(rng.randint(0, 3))]
    if depth < 3 and r < 0.3:
        return {rng.choice(["image", "caption", "path", "members", "x", ""]): value(rng, depth + 1) for _ in range(rng.randint(0, 3))}
    return rng.choice(ATOMS)


def mutate(rng: random.Random, record: dict, keys: list[str]) -> dict:
    """``record`` with some fields replaced by random values, some deleted, some added."""
    out = dict(record)
    for k in keys:
        r = rng.random()
        if r < 0.25:
            out[k] = value(rng)
        elif r < 0.35:
            out.pop(k, None)
    if rng.random() < 0.1:
        out[rng.choice(["extra", "", "pairid"])] = value(rng)
    return out
