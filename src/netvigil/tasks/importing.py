"""Import: files -> measurements -> observations + verdicts -> store.

Records are decoded and judged in batches; a record that cannot be a
measurement is written, whole, to the run's quarantine file with its reason and
the batch goes on. A measurement already in the store is recognised by its uid
before analysis, so re-importing costs a decode and a lookup, nothing more.
"""

from __future__ import annotations

import base64
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Iterator

import orjson

from netvigil.analysis import FingerprintDB, analyze
from netvigil.codec import BadRecord, BadRecordReason, decode_measurement
from netvigil.model.measurement import Measurement, SourceRef
from netvigil.store import Store, StoreBatch
from netvigil.tasks.reader import RawRecord, iter_input_files, iter_records

__all__ = ["MakeImportParams", "ImportSummary", "make_import", "Quarantine", "iter_decoded"]

BATCH_SIZE = 2000


@dataclass(slots=True)
class MakeImportParams:
    paths: list[Path]
    store: Store
    fingerprints: FingerprintDB
    quarantine_dir: Path
    batch_size: int = BATCH_SIZE
    on_progress: Callable[[int, int], None] | None = None  # (records seen, bytes read)


@dataclass(slots=True)
class ImportSummary:
    run_id: str
    files: int = 0
    records: int = 0
    imported: int = 0
    duplicates: int = 0
    quarantined: int = 0
    quarantine_reasons: Counter[str] = field(default_factory=Counter)
    observations: int = 0
    verdicts: int = 0
    outcomes: Counter[str] = field(default_factory=Counter)
    bytes_read: int = 0
    seconds: float = 0.0
    quarantine_file: str | None = None

    def as_dict(self) -> dict:
        return {
            "run_id": self.run_id, "files": self.files, "records": self.records,
            "imported": self.imported, "duplicates": self.duplicates, "quarantined": self.quarantined,
            "quarantine_reasons": dict(self.quarantine_reasons), "observations": self.observations,
            "verdicts": self.verdicts, "outcomes": dict(self.outcomes), "bytes_read": self.bytes_read,
            "seconds": round(self.seconds, 3),
            "measurements_per_second": round(self.records / self.seconds, 1) if self.seconds else None,
            "quarantine_file": self.quarantine_file,
        }


class Quarantine:
    """Append-only JSONL of rejected records: source, line, reason, and the bytes themselves."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fh = None

    def add(self, record: RawRecord, reason: str, detail: str) -> None:
        if self._fh is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._fh = self.path.open("ab")
        try:
            text, encoding = record.data.decode("utf-8"), "utf-8"
        except UnicodeDecodeError:
            text, encoding = base64.b64encode(record.data).decode("ascii"), "base64"
        self._fh.write(orjson.dumps({
            "source": record.path, "line": record.line, "reason": reason, "detail": detail[:500],
            "encoding": encoding, "data": text,
        }) + b"\n")

    def close(self) -> None:
        if self._fh is not None:
            self._fh.close()
            self._fh = None

    @property
    def used(self) -> bool:
        return self.path.exists()


def iter_decoded(
    paths: Iterable[Path],
    on_bad: Callable[[RawRecord, str, str], None],
    on_file: Callable[[Path], None] | None = None,
) -> Iterator[tuple[RawRecord, Measurement]]:
    """Decoded measurements from the inputs; bad records go to ``on_bad`` with a reason."""
    for path in iter_input_files(paths):
        if on_file is not None:
            on_file(path)
        for record in iter_records(path):
            if record.error is not None:
                reason = BadRecordReason.TOO_LARGE if record.error == "too_large" else BadRecordReason.UNREADABLE
                on_bad(record, reason.value, record.error)
                continue
            try:
                m = decode_measurement(record.data, SourceRef(record.path, record.line))
            except BadRecord as exc:
                on_bad(record, exc.reason.value, exc.detail)
                continue
            yield record, m


def make_import(params: MakeImportParams) -> ImportSummary:
    run_id = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime()) + "-" + uuid.uuid4().hex[:8]
    summary = ImportSummary(run_id=run_id)
    quarantine = Quarantine(params.quarantine_dir / f"{run_id}.jsonl")
    started = time.perf_counter()

    def on_bad(record: RawRecord, reason: str, detail: str) -> None:
        summary.records += 1
        summary.bytes_read += len(record.data)
        summary.quarantined += 1
        summary.quarantine_reasons[reason] += 1
        quarantine.add(record, reason, detail)

    def on_file(_path: Path) -> None:
        summary.files += 1

    batch: list[Measurement] = []
    try:
        for record, m in iter_decoded(params.paths, on_bad, on_file):
            summary.records += 1
            summary.bytes_read += len(record.data)
            batch.append(m)
            if len(batch) >= params.batch_size:
                _flush(params, batch, summary, run_id)
                batch = []
        if batch:
            _flush(params, batch, summary, run_id)
    finally:
        quarantine.close()
        summary.seconds = time.perf_counter() - started
    if quarantine.used:
        summary.quarantine_file = str(quarantine.path)
    return summary


def _flush(params: MakeImportParams, batch: list[Measurement], summary: ImportSummary, run_id: str) -> None:
    known = params.store.known_uids([m.uid for m in batch])
    fresh: dict[str, Measurement] = {}
    for m in batch:
        if m.uid in known or m.uid in fresh:
            summary.duplicates += 1
        else:
            fresh[m.uid] = m
    out = StoreBatch(import_run_id=run_id)
    for m in fresh.values():
        observations, verdicts = analyze(m, params.fingerprints)
        out.measurements.append(m)
        out.observations.extend(observations)
        out.verdicts.extend(verdicts)
        for v in verdicts:
            summary.outcomes[v.outcome] += 1
    result = params.store.write_batch(out)
    summary.imported += result.new
    summary.duplicates += result.skipped
    summary.observations += result.observations
    summary.verdicts += result.verdicts
    if params.on_progress is not None:
        params.on_progress(summary.records, summary.bytes_read)
