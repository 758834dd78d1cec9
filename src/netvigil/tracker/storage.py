"""The tracker directory: normalised records as JSON lines, keyed by stable ids.

``stop.jsonl`` holds StopRecords, ``outages.jsonl`` OutageEvents (IODA's investigated list; the id is in
``detail["record_id"]``), ``quarantine.jsonl`` the rows set aside with their reasons. Importing a source replaces
everything earlier imports took from the same source (file name, and sheet for a workbook) and upserts by id, and
each file is written sorted and whole (to a temporary file, then renamed): importing the same file again leaves the
directory byte for byte the same.
"""

from __future__ import annotations

import os
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, TypeVar

import msgspec

from netvigil.model.signal import OutageEvent
from netvigil.tracker.readers import ReadResult, SourceSummary
from netvigil.tracker.stop import Rejected, StopRecord

__all__ = ["OUTAGES_FILE", "QUARANTINE_FILE", "STOP_FILE", "ImportSummary", "load_outages", "load_quarantine",
           "load_stop", "save_import"]

STOP_FILE = "stop.jsonl"
OUTAGES_FILE = "outages.jsonl"
QUARANTINE_FILE = "quarantine.jsonl"

T = TypeVar("T")


def _load(path: Path, kind: type[T]) -> list[T]:
    if not path.exists():
        return []
    decoder = msgspec.json.Decoder(kind)
    with path.open("rb") as fh:
        return [decoder.decode(line) for line in fh if line.strip()]


def load_stop(directory: Path) -> list[StopRecord]:
    return _load(directory / STOP_FILE, StopRecord)


def load_outages(directory: Path) -> list[OutageEvent]:
    return _load(directory / OUTAGES_FILE, OutageEvent)


def load_quarantine(directory: Path) -> list[Rejected]:
    return _load(directory / QUARANTINE_FILE, Rejected)


def _write(path: Path, items: list) -> None:
    encoder = msgspec.json.Encoder()
    tmp = path.with_name(path.name + ".tmp")
    with tmp.open("wb") as fh:
        for item in items:
            fh.write(encoder.encode(item) + b"\n")
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


@dataclass
class ImportSummary:
    directory: str
    sources: list[SourceSummary]
    skipped_sheets: list[tuple[str, str]]
    added: int = 0
    updated: int = 0
    unchanged: int = 0
    removed: int = 0
    quarantined: int = 0
    quarantine_reasons: Counter[str] = field(default_factory=Counter)
    cell_issues: Counter[str] = field(default_factory=Counter)
    stop_total: int = 0
    outages_total: int = 0

    def as_dict(self) -> dict:
        return {
            "directory": self.directory,
            "sources": [vars(s) for s in self.sources],
            "skipped_sheets": [{"sheet": s, "why": w} for s, w in self.skipped_sheets],
            "added": self.added, "updated": self.updated, "unchanged": self.unchanged, "removed": self.removed,
            "quarantined": self.quarantined, "quarantine_reasons": dict(self.quarantine_reasons),
            "cell_issues": dict(self.cell_issues),
            "stop_records_in_tracker": self.stop_total, "outage_events_in_tracker": self.outages_total,
        }


def _merge(existing: list[T], new: list[T], sources: set[str], source_of: Callable[[T], str],
           id_of: Callable[[T], str], summary: ImportSummary) -> list[T]:
    enc = msgspec.json.encode
    before = {id_of(x): enc(x) for x in existing}
    kept = {id_of(x): x for x in existing if source_of(x) not in sources}
    for x in new:
        key = id_of(x)
        kept[key] = x
        if key not in before:
            summary.added += 1
        elif before[key] == enc(x):
            summary.unchanged += 1
        else:
            summary.updated += 1
    summary.removed += sum(1 for key in before if key not in kept)
    return list(kept.values())


def save_import(directory: Path, result: ReadResult) -> ImportSummary:
    """Merge what was read into the tracker directory (created if needed)."""
    directory.mkdir(parents=True, exist_ok=True)
    sources = {s.source for s in result.sources}
    summary = ImportSummary(directory=str(directory), sources=result.sources, skipped_sheets=result.skipped_sheets,
                            quarantined=len(result.rejected), quarantine_reasons=result.reasons(),
                            cell_issues=result.issue_kinds())
    stop = _merge(load_stop(directory), result.stop, sources, lambda r: r.source, lambda r: r.record_id, summary)
    stop.sort(key=lambda r: (r.year, r.start_date, r.source, r.row, r.record_id))
    outages = _merge(load_outages(directory), result.outages, sources, lambda e: e.detail.get("source_file", ""),
                     lambda e: e.detail.get("record_id", ""), summary)
    outages.sort(key=lambda e: (e.start, e.detail.get("record_id", "")))
    quarantine = [q for q in load_quarantine(directory) if q.source not in sources] + result.rejected
    quarantine.sort(key=lambda q: (q.source, q.row))
    _write(directory / STOP_FILE, stop)
    _write(directory / OUTAGES_FILE, outages)
    _write(directory / QUARANTINE_FILE, quarantine)
    summary.stop_total, summary.outages_total = len(stop), len(outages)
    return summary
