"""Settings of a synthesis run from what the user gave, a recipe's settings, and the stage configs' own defaults.

A setting the user gave wins; an unset one (None) takes the recipe's value when a recipe gives it, else the default
of the dataclass that owns it (``SynthConfig``, ``FilterConfig``, ``CandidateConfig``): one place for each default.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from cirsynth.synth.candidates import CandidateConfig
from cirsynth.synth.filters import FilterConfig
from cirsynth.synth.pipeline import SynthConfig

# command-line names that belong to a nested config: name -> (SynthConfig field, field of the nested config)
NESTED = {
    **{f.name: ("filters", f.name) for f in dataclasses.fields(FilterConfig) if f.name not in ("clip", "device")},
    "candidates": ("candidates", "n"),
    **{f.name: ("candidates", f.name) for f in dataclasses.fields(CandidateConfig) if f.name != "n"},
}


def _defaults(cls) -> dict[str, Any]:
    out = {}
    for f in dataclasses.fields(cls):
        if f.default is not dataclasses.MISSING:
            out[f.name] = f.default
        elif f.default_factory is not dataclasses.MISSING:  # type: ignore[misc]
            out[f.name] = f.default_factory()  # type: ignore[misc]
    return out


def resolve_synth_config(given: dict[str, Any], recipe: dict[str, Any] | None = None) -> SynthConfig:
    """A ``SynthConfig`` from command-line style settings (flat names, None = unset) over ``recipe`` (flat names too).

    Raises:
        ValueError: a name that is no setting.
    """
    top = {f.name for f in dataclasses.fields(SynthConfig)}
    merged = {k: v for k, v in (recipe or {}).items() if v is not None}
    merged.update({k: v for k, v in given.items() if v is not None})
    unknown = sorted(k for k in merged if k not in top and k not in NESTED)
    if unknown:
        raise ValueError(f"unknown settings {unknown}")
    nested: dict[str, dict[str, Any]] = {"filters": _defaults(FilterConfig), "candidates": _defaults(CandidateConfig)}
    # thresholds a recipe turns off (None) stay off unless the user sets them
    for k, v in (recipe or {}).items():
        if k in NESTED and v is None and given.get(k) is None:
            owner, name = NESTED[k]
            nested[owner][name] = None
    flat: dict[str, Any] = {}
    for k, v in merged.items():
        if k in NESTED:
            owner, name = NESTED[k]
            nested[owner][name] = tuple(v) if isinstance(v, list) else v
        else:
            flat[k] = list(v) if isinstance(v, tuple) else v
    missing = [k for k in ("images", "out", "editor") if k not in flat]
    for k in missing:
        flat[k] = ""  # the command reports every missing required setting at once
    return SynthConfig(**flat, filters=FilterConfig(**nested["filters"]), candidates=CandidateConfig(**nested["candidates"]))
