"""A read view of a TripletDataset's manifest for the gallery and the plots: filter, sort and page it fast.

The whole manifest is read once as one Arrow table (100k rows take well under a second); the columns the gallery
filters and sorts on are kept as numpy arrays, and only the rows of the page asked for become Python dicts.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from cirsynth.data import TripletDataset
from cirsynth.data.errors import DataError

# Columns `cirsynth curate` adds to every manifest row (see cirsynth.report.curation).
CURATION_FIELDS: tuple[tuple[str, pa.DataType], ...] = (
    ("filter_status", pa.string()),  # the status the filter gave (status itself becomes the curated one)
    ("filter_reason", pa.string()),  # the filter's reason for that status
    ("human_decision", pa.string()),  # accept | reject | flag | null
    ("decided_at", pa.string()),  # ISO 8601 UTC time of the human decision
)
CURATION_COLUMNS = tuple(name for name, _ in CURATION_FIELDS)


def read_shard(path: Path) -> pa.Table:
    try:
        return pq.read_table(path)
    except (pa.ArrowInvalid, OSError) as e:
        raise DataError(f"unreadable Parquet shard: {e}", file=str(path)) from e


def rules_of(status: str, reason: str | None) -> list[str]:
    """Rule names behind a filter status: ``clip_dir`` for "clip_dir 0.12 < 0.2", ``failed:<stage>`` for a failure."""
    if status == "accepted" or not reason:
        return []
    if status == "failed":
        return [f"failed:{reason.partition(':')[0].strip()}"]
    return [part.strip().split(" ")[0] for part in reason.split(";") if part.strip()]


def _json_obj(s: Any) -> dict[str, Any]:
    if isinstance(s, str) and s:
        try:
            v = json.loads(s)
        except json.JSONDecodeError:
            return {}
        return v if isinstance(v, dict) else {}
    return {}


@dataclass
class PageQuery:
    status: str | None = None  # curated status
    rule: str | None = None  # a rule name from ``rules_of``
    edit_type: str | None = None
    decision: str | None = None  # accept | reject | flag | none (no decision yet)
    sort: str | None = None  # a score name, or None for manifest order
    descending: bool = True
    offset: int = 0
    limit: int = 20


class ManifestView:
    """Every manifest row of ``root``, with filter / sort / page."""

    def __init__(self, root: str | Path):
        self.dataset = TripletDataset(root)
        self.root = self.dataset.root
        tables = [read_shard(p) for p in self.dataset.shard_paths()]
        if tables:
            self.table = pa.concat_tables(tables, promote_options="default")
        else:
            from cirsynth.data.dataset import MANIFEST_SCHEMA

            self.table = MANIFEST_SCHEMA.empty_table()
        n = self.table.num_rows
        col = self._column
        self.ids = np.array(col("id"), dtype=object)
        self.status = np.array(col("status"), dtype=object)
        reason = col("reason")
        fs, fr = col("filter_status"), col("filter_reason")
        # Before `curate` has run, the status is the filter's own.
        self.filter_status = np.array([f if f is not None else s for f, s in zip(fs, self.status)], dtype=object)
        self.filter_reason = [f if f is not None else r for f, r in zip(fr, reason)]
        self.edit_type = np.array([e or "" for e in col("edit_type")], dtype=object)
        self.rules = [rules_of(s, r) for s, r in zip(self.filter_status, self.filter_reason)]
        scores = [_json_obj(s) for s in col("scores")]
        self.score_names = sorted({k for s in scores for k, v in s.items() if isinstance(v, (int, float))})
        self.scores = {k: np.array([float(s[k]) if isinstance(s.get(k), (int, float)) else math.nan for s in scores])
                       for k in self.score_names}
        self.index_of = {tid: i for i, tid in enumerate(self.ids)}
        if len(self.index_of) != n:
            raise DataError("duplicated triplet ids in the manifest", file=str(self.root / "manifest"))

    def _column(self, name: str) -> list[Any]:
        if name in self.table.column_names:
            return self.table.column(name).to_pylist()
        return [None] * self.table.num_rows

    def __len__(self) -> int:
        return self.table.num_rows

    # -- summaries ---------------------------------------------------------------------------------
    def all_rules(self) -> list[str]:
        return sorted({r for rs in self.rules for r in rs})

    def edit_types(self) -> list[str]:
        return sorted(set(self.edit_type.tolist()))

    def thresholds(self) -> dict[str, float]:
        """Score name -> the threshold the run filtered with (from dataset.json's run config, else the defaults); a
        rule the run turned off (threshold None) has no entry."""
        from cirsynth.synth.filters import RULES, FilterConfig

        run_filters = (self.dataset.meta.get("run_config") or {}).get("filters") or {}
        defaults = FilterConfig()
        out = {}
        for name, attr in RULES:
            value = run_filters.get(attr, getattr(defaults, attr))
            if value is not None:
                out[name] = float(value)
        return out

    # -- paging ------------------------------------------------------------------------------------
    def select(self, q: PageQuery, decisions: dict[str, dict[str, str]]) -> np.ndarray:
        """Row indices matching ``q``, in its order."""
        keep = np.ones(len(self), dtype=bool)
        if q.status:
            keep &= self.curated_status(decisions) == q.status
        if q.edit_type:
            keep &= self.edit_type == q.edit_type
        if q.rule:
            keep &= np.array([q.rule in rs for rs in self.rules], dtype=bool)
        if q.decision:
            have = np.array([(decisions.get(t) or {}).get("decision", "none") for t in self.ids], dtype=object)
            keep &= have == q.decision
        idx = np.flatnonzero(keep)
        if q.sort:
            if q.sort not in self.scores:
                raise KeyError(q.sort)
            v = self.scores[q.sort][idx]
            v = np.where(np.isnan(v), -np.inf if q.descending else np.inf, v)  # rows without the score go last
            order = np.argsort(-v if q.descending else v, kind="stable")
            idx = idx[order]
        return idx

    def curated_status(self, decisions: dict[str, dict[str, str]]) -> np.ndarray:
        """The status each row gets once ``decisions`` are applied (what `curate` will write)."""
        out = self.filter_status.copy()
        for tid, d in decisions.items():
            i = self.index_of.get(tid)
            if i is not None and d["decision"] in ("accept", "reject"):
                out[i] = "accepted" if d["decision"] == "accept" else "rejected"
        return out

    def page(self, q: PageQuery, decisions: dict[str, dict[str, str]]) -> dict[str, Any]:
        idx = self.select(q, decisions)
        chosen = idx[q.offset : q.offset + q.limit]
        rows = self.table.take(pa.array(chosen, type=pa.int64())).to_pylist() if len(chosen) else []
        curated = self.curated_status(decisions) if len(chosen) else None
        return {"total": int(len(idx)), "offset": q.offset, "limit": q.limit,
                "rows": [self.present(int(i), row, decisions, curated[i]) for i, row in zip(chosen, rows)]}

    def present(self, i: int, row: dict[str, Any], decisions: dict[str, dict[str, str]], curated: str) -> dict[str, Any]:
        """One row as the page shows it: parsed scores, image URLs (None where the file is not under ROOT)."""
        prov = _json_obj(row.get("provenance"))
        tid = row["id"]
        return {
            "id": tid,
            "reference_url": self.file_url(row.get("reference")),
            "target_url": self.file_url(row.get("target")),
            "mask_url": self.file_url(prov.get("mask")) if isinstance(prov.get("mask"), str) else None,
            "modification_text": row.get("modification_text"),
            "reference_caption": row.get("reference_caption"),
            "target_caption": row.get("target_caption"),
            "edit_type": row.get("edit_type"),
            "source_words": row.get("source_words") or [],
            "target_words": row.get("target_words") or [],
            "scores": _json_obj(row.get("scores")),
            "candidates": candidates_of(prov, _json_obj(row.get("scores"))),
            "status": curated,
            "filter_status": self.filter_status[i],
            "filter_reason": self.filter_reason[i],
            "rules": self.rules[i],
            "split": row.get("split"),
            "decision": decisions.get(tid),
            "applied_decision": row.get("human_decision"),
            "provenance": {k: v for k, v in prov.items() if k in ("input", "inversion", "self_replace_steps", "seed", "editor", "clip")},
        }

    def file_url(self, rel: Any) -> str | None:
        """``/files/<rel>`` for an existing file inside ROOT, else None (an image outside ROOT is never served)."""
        if not isinstance(rel, str) or not rel:
            return None
        p = Path(rel)
        if p.is_absolute() or ".." in p.parts:
            return None
        if not (self.root / p).is_file():
            return None
        return "/files/" + p.as_posix()


def candidates_of(prov: dict[str, Any], kept_scores: dict[str, Any]) -> dict[str, Any]:
    """What the row says about its candidates: a list of per-candidate scores where the run stored one
    (provenance ``candidate_scores``), else only how many were made and the kept one's scores."""
    listed = prov.get("candidate_scores")
    if isinstance(listed, list) and all(isinstance(c, dict) for c in listed):
        return {"count": len(listed), "scores": listed, "note": None}
    n = prov.get("candidates")
    count = n if isinstance(n, int) else (1 if kept_scores else 0)
    note = (f"{count} candidates were made; this dataset stores the kept one's scores only" if count > 1 else None)
    return {"count": count, "scores": [kept_scores] if kept_scores else [], "note": note}
