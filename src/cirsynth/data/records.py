"""Plain records that flow between stages. No torch, no I/O beyond JSON round-trips."""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass, field
from typing import Any, Literal

Status = Literal["accepted", "rejected", "failed"]
STATUSES: tuple[str, ...] = ("accepted", "rejected", "failed")

# LANCE's edit families plus the attribute sub-types the issue names.
EDIT_TYPES: tuple[str, ...] = (
    "subject",
    "object",
    "color",
    "material",
    "size",
    "pattern",
    "count",
    "background",
    "weather",
    "lighting",
)


def config_hash(obj: Any) -> str:
    """Stable short hash of a JSON-able object (dataclasses allowed), for provenance and cache keys."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        obj = dataclasses.asdict(obj)
    blob = json.dumps(obj, sort_keys=True, default=str, separators=(",", ":"))
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


@dataclass
class CaptionEdit:
    """A caption and its counterfactual: exactly one contiguous span changed.

    ``source_words``/``target_words`` are the changed span on each side (prompt-to-prompt uses them
    for local blending and reweighting); ``modification_text`` is the relative caption a CIR user
    would type ("is blue instead of red").
    """

    source_caption: str
    target_caption: str
    modification_text: str
    edit_type: str
    source_words: list[str] = field(default_factory=list)
    target_words: list[str] = field(default_factory=list)
    paraphrases: list[str] = field(default_factory=list)  # other phrasings of modification_text
    provenance: dict[str, Any] = field(default_factory=dict)  # perturber name, model id, seed, ...
    keep_words: list[str] = field(default_factory=list)  # source words (phrases) whose regions the edit leaves as
    # they are: the nouns of a background edit (LocalBlend keeps their regions from the reference)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "CaptionEdit":
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise ValueError(f"CaptionEdit: unknown fields {sorted(unknown)}")
        return cls(**d)


@dataclass
class Triplet:
    """One <reference, modification, target> triplet with everything needed to trust and reuse it.

    Image fields are paths relative to the dataset root (or absolute paths for references that
    live outside it). ``target`` is ``None`` for a failed item that never produced an image.
    """

    id: str
    reference: str
    modification_text: str
    target: str | None = None
    reference_caption: str | None = None
    target_caption: str | None = None
    edit_type: str | None = None
    source_words: list[str] = field(default_factory=list)
    target_words: list[str] = field(default_factory=list)
    paraphrases: list[str] = field(default_factory=list)
    scores: dict[str, float] = field(default_factory=dict)  # filter name -> value
    status: str = "accepted"
    reason: str | None = None  # why rejected/failed; None when accepted
    split: str = "train"
    group: list[str] = field(default_factory=list)  # CIRR-style img_set members (image ids/paths)
    provenance: dict[str, Any] = field(default_factory=dict)  # model ids, seeds, config hash

    def __post_init__(self) -> None:
        if not self.id or not isinstance(self.id, str):
            raise ValueError(f"Triplet id must be a non-empty string, got {self.id!r}")
        if self.status not in STATUSES:
            raise ValueError(f"Triplet {self.id}: status must be one of {STATUSES}, got {self.status!r}")
        if self.status != "accepted" and not self.reason:
            raise ValueError(f"Triplet {self.id}: a {self.status} triplet needs a reason")

    def validate(self) -> "Triplet":
        """Full check before the record is written: also needs a target image when accepted."""
        self.__post_init__()
        if self.status == "accepted" and not self.target:
            raise ValueError(f"Triplet {self.id}: an accepted triplet needs a target image")
        return self

    @classmethod
    def from_edit(cls, id: str, reference: str, edit: CaptionEdit, **kw: Any) -> "Triplet":
        return cls(
            id=id,
            reference=reference,
            modification_text=edit.modification_text,
            reference_caption=edit.source_caption,
            target_caption=edit.target_caption,
            edit_type=edit.edit_type,
            source_words=list(edit.source_words),
            target_words=list(edit.target_words),
            paraphrases=list(edit.paraphrases),
            **kw,
        )

    def to_row(self) -> dict[str, Any]:
        """Flat row for the Parquet manifest: dict fields are JSON strings so any reader copes."""
        row = dataclasses.asdict(self)
        row["scores"] = json.dumps(self.scores, sort_keys=True)
        row["provenance"] = json.dumps(self.provenance, sort_keys=True, default=str)
        return row

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> "Triplet":
        row = dict(row)
        for key in ("scores", "provenance"):
            v = row.get(key)
            row[key] = json.loads(v) if isinstance(v, str) and v else (v or {})
        for key in ("source_words", "target_words", "paraphrases", "group"):
            row[key] = list(row.get(key) or [])
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in row.items() if k in known}).validate()
