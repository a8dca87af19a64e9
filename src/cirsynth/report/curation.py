"""``cirsynth curate ROOT``: write the human decisions of ``ROOT/decisions.json`` into the manifest.

Every row stays, with all its scores. Each row gains the columns of ``CURATION_FIELDS``: ``filter_status`` and
``filter_reason`` (what the filter said, kept from the first curation on), ``human_decision`` and ``decided_at``;
``status`` and ``reason`` become the curated ones, so every reader of the manifest (exports, training, the accepted
view ``TripletDataset.triplets(status="accepted")``) reads the curated status without knowing about curation.

The curated status is a function of the filter's status and the decision file only, so applying twice changes
nothing (a shard whose rows would not change is not rewritten). Everything is checked before the first shard is
written; each shard is replaced atomically (temp name + rename), so a crash leaves every shard either as it was or
curated, and rerunning `curate` finishes the job.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from cirsynth.config import atomic_write_bytes
from cirsynth.data import TripletDataset
from cirsynth.data.errors import DataError
from cirsynth.report.decisions import read_decisions
from cirsynth.report.manifest import CURATION_FIELDS, read_shard

HUMAN_REJECT_REASON = "human: rejected in the gallery"


@dataclass
class CurationSummary:
    decisions: int = 0
    shards_rewritten: int = 0
    status_changed: dict[str, int] = field(default_factory=dict)  # "rejected->accepted": count, vs the filter
    flagged: int = 0

    def as_dict(self) -> dict[str, Any]:
        return {"decisions": self.decisions, "shards_rewritten": self.shards_rewritten,
                "status_changed_from_filter": dict(sorted(self.status_changed.items())), "flagged": self.flagged}


def curated_schema(schema: pa.Schema) -> pa.Schema:
    """A shard's own schema (every column it has, kept) plus the curation columns it lacks."""
    for name, typ in CURATION_FIELDS:
        if name not in schema.names:
            schema = schema.append(pa.field(name, typ))
    return schema


def curated_row(row: dict[str, Any], decision: dict[str, str] | None) -> dict[str, Any]:
    """``row`` with the curation columns set from ``decision`` (``None``: the filter's status back)."""
    out = dict(row)
    fstatus = row.get("filter_status") or row["status"]
    freason = row.get("filter_reason") if row.get("filter_status") else row.get("reason")
    out["filter_status"], out["filter_reason"] = fstatus, freason
    out["human_decision"] = decision["decision"] if decision else None
    out["decided_at"] = decision["time"] if decision else None
    d = decision["decision"] if decision else None
    if d == "accept":
        if not row.get("target"):
            raise DataError(f"cannot accept a {fstatus} triplet without a target image", entry=row["id"])
        out["status"], out["reason"] = "accepted", None
    elif d == "reject":
        out["status"], out["reason"] = "rejected", HUMAN_REJECT_REASON + (f" (filter: {freason})" if freason else "")
    else:  # flag, or no decision: the filter's verdict
        out["status"], out["reason"] = fstatus, freason
    return out


def apply_decisions(root: str | Path) -> CurationSummary:
    """Apply ``ROOT/decisions.json`` to the manifest of ``ROOT`` (see the module docstring).

    Raises:
        DataError: a malformed decisions file, a decision for an id the manifest lacks, or an accept of a
            triplet without a target image. Nothing is written then.
    """
    ds = TripletDataset(root)
    decisions = read_decisions(ds.root)
    summary = CurationSummary(decisions=len(decisions))
    # 1. read and check everything
    plans: list[tuple[Path, pa.Table, bool]] = []
    seen: set[str] = set()
    for path in ds.shard_paths():
        table = read_shard(path)
        rows = table.to_pylist()
        new_rows = [curated_row({**{n: None for n, _ in CURATION_FIELDS}, **r}, decisions.get(r["id"])) for r in rows]
        seen.update(r["id"] for r in rows)
        for r in new_rows:
            if r["status"] != r["filter_status"]:
                key = f"{r['filter_status']}->{r['status']}"
                summary.status_changed[key] = summary.status_changed.get(key, 0) + 1
            summary.flagged += r["human_decision"] == "flag"
        schema = curated_schema(table.schema)
        new = pa.Table.from_pylist(new_rows, schema=schema)
        unchanged = table.schema.equals(schema) and table.equals(new)
        plans.append((path, new, not unchanged))
    unknown = sorted(set(decisions) - seen)
    if unknown:
        raise DataError(f"{len(unknown)} decisions name triplets the manifest does not hold, e.g. {unknown[:3]}",
                        file=str(ds.root / "decisions.json"))
    # 2. write the shards that change
    for path, table, changed in plans:
        if changed:
            buf = pa.BufferOutputStream()
            pq.write_table(table, buf)
            atomic_write_bytes(path, buf.getvalue().to_pybytes())
            summary.shards_rewritten += 1
    return summary
