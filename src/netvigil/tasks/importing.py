"""Import: files -> measurements -> observations + verdicts -> store.

Records are decoded and judged in batches; a record that cannot be a
measurement is written, whole, to the run's quarantine file with its reason and
the batch goes on. A measurement already in the store is recognised by its uid
before analysis, so re-importing costs a decode and a lookup, nothing more.

Writing overlaps with judging: a writer thread hands batch N to the store's
bulk writer (which stages it compactly and commits groups of batches; zstd,
DuckDB's JSON reader and the commit run without the GIL) while this thread
decodes and judges batch N+1. The queue between them holds one batch, so
memory stays bounded at about two batches of decoded measurements.
"""

from __future__ import annotations

import base64
import gc
import queue
import threading
import time
import uuid
from collections import Counter
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Iterator

import orjson

from netvigil.analysis import FingerprintDB, analyze
from netvigil.codec import BadRecord, BadRecordReason, decode_measurement
from netvigil.model.measurement import Measurement, SourceRef
from netvigil.store import Store, StoreBatch, WriteResult
from netvigil.tasks.reader import RawRecord, iter_input_files, iter_records

__all__ = ["MakeImportParams", "ImportSummary", "make_import", "Quarantine", "iter_decoded"]

BATCH_SIZE = 500
# Memory is bounded by bytes as well as by count: a batch of 500 measurements
# with megabyte bodies would otherwise hold gigabytes.
BATCH_BYTES = 16 << 20


@dataclass(slots=True)
class MakeImportParams:
    paths: list[Path]
    store: Store
    fingerprints: FingerprintDB
    quarantine_dir: Path
    batch_size: int = BATCH_SIZE
    batch_bytes: int = BATCH_BYTES
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


class _BatchWriter:
    """One thread that hands batches, in order, to the store's bulk writer.

    A failure is kept and re-raised in the importing thread at its next call.
    """

    def __init__(self, store: Store) -> None:
        self._bulk = store.bulk_writer()
        self._queue: queue.Queue[StoreBatch | None] = queue.Queue(maxsize=1)
        self._error: BaseException | None = None
        self.totals: WriteResult | None = None
        self._thread = threading.Thread(target=self._run, name="netvigil-import-writer", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while True:
            batch = self._queue.get()
            if batch is None:
                break
            if self._error is not None:
                continue  # drain: nothing more is written after a failure
            try:
                self._bulk.add(batch)
            except BaseException as exc:  # re-raised in the importing thread
                self._error = exc
        try:
            if self._error is None:
                self.totals = self._bulk.close()
        except BaseException as exc:
            self._error = exc

    def put(self, batch: StoreBatch) -> None:
        self._raise_if_failed()
        self._queue.put(batch)

    def close(self) -> WriteResult:
        """Wait until everything queued is written and committed; re-raise a writer failure."""
        self._queue.put(None)
        self._thread.join()
        self._raise_if_failed()
        assert self.totals is not None
        return self.totals

    def _raise_if_failed(self) -> None:
        if self._error is not None:
            raise self._error


@contextmanager
def _relaxed_gc() -> Iterator[None]:
    """Collect cyclic garbage less often while importing.

    An import allocates millions of short-lived lists and dicts and holds two
    batches alive; CPython's default thresholds then spend ~15 % of the run
    rescanning live batches that contain no cycles. Restored afterwards.
    """
    old = gc.get_threshold()
    gc.set_threshold(max(old[0], 50_000), max(old[1], 20), max(old[2], 100))
    try:
        yield
    finally:
        gc.set_threshold(*old)


def make_import(params: MakeImportParams) -> ImportSummary:
    with _relaxed_gc():
        return _make_import(params)


def _make_import(params: MakeImportParams) -> ImportSummary:
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

    writer = _BatchWriter(params.store)
    batch: list[Measurement] = []
    batch_bytes = 0
    try:
        try:
            for record, m in iter_decoded(params.paths, on_bad, on_file):
                summary.records += 1
                summary.bytes_read += len(record.data)
                batch.append(m)
                batch_bytes += len(record.data)
                if len(batch) >= params.batch_size or batch_bytes >= params.batch_bytes:
                    writer.put(_judge(params, batch, summary, run_id))
                    batch, batch_bytes = [], 0
            if batch:
                writer.put(_judge(params, batch, summary, run_id))
        except BaseException:
            # Keep what was already judged (imports are idempotent), report the first error.
            with suppress(Exception):
                writer.close()
            raise
        totals = writer.close()
    finally:
        quarantine.close()
        summary.seconds = time.perf_counter() - started
    summary.imported += totals.new
    summary.duplicates += totals.skipped
    summary.observations += totals.observations
    summary.verdicts += totals.verdicts
    if quarantine.used:
        summary.quarantine_file = str(quarantine.path)
    return summary


def _judge(params: MakeImportParams, batch: list[Measurement], summary: ImportSummary, run_id: str) -> StoreBatch:
    """Analyse the measurements of a batch the store does not hold yet."""
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
    if params.on_progress is not None:
        params.on_progress(summary.records, summary.bytes_read)
    return out
