"""Import: files -> measurements -> observations + verdicts -> store.

Records are decoded and judged in batches; a record that cannot be a
measurement is written, whole, to the run's quarantine file with its reason and
the batch goes on. A measurement already in the store is recognised by its uid
before analysis, so re-importing costs a decode and a lookup, nothing more.

One thread judges; everything else runs beside it, because judging holds the
GIL and is what limits an import. Records are read and their envelopes decoded
a batch at a time (enough for the uids); the uid lookup for batch N+1 runs on a
lookup thread while batch N is judged, so the judging thread never waits on
the database. Each measurement's test keys are decoded right before it is
judged and dropped right after, so they never pile up for a whole batch, and
are not decoded at all for tests analysis does not read. Judged batches go to
two store threads: one prepares batch N+1 (zstd compression and NDJSON
encoding) while the other has the store write batch N (DuckDB's JSON reader,
insert and commit run without the GIL). Each queue holds one batch, so memory
stays bounded at a few batches of raw records and envelopes.
"""

from __future__ import annotations

import base64
import gc
import queue
import sys
import threading
import time
import uuid
from collections import Counter
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Container, Iterable, Iterator

import orjson

from netvigil.analysis import ANALYSED_TESTS, FingerprintDB, analyze
from netvigil.codec import BadRecord, BadRecordReason, decode_measurement, decode_test_keys
from netvigil.model.measurement import Measurement, SourceRef
from netvigil.store import Store, StoreBatch, WriteResult
from netvigil.tasks.reader import RawRecord, iter_input_files, iter_records

__all__ = ["MakeImportParams", "ImportSummary", "make_import", "import_tuning", "Quarantine", "iter_decoded"]

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
    *,
    test_keys_for: Container[str] | None = None,
) -> Iterator[tuple[RawRecord, Measurement]]:
    """Decoded measurements from the inputs; bad records go to ``on_bad`` with a reason.

    ``test_keys_for`` is passed to ``decode_measurement``: callers that only
    analyse need not decode the test keys of tests analysis does not read.
    """
    for path in iter_input_files(paths):
        if on_file is not None:
            on_file(path)
        for record in iter_records(path):
            if record.error is not None:
                reason = BadRecordReason.TOO_LARGE if record.error == "too_large" else BadRecordReason.UNREADABLE
                on_bad(record, reason.value, record.error)
                continue
            try:
                m = decode_measurement(record.data, SourceRef(record.path, record.line), test_keys_for=test_keys_for)
            except BadRecord as exc:
                on_bad(record, exc.reason.value, exc.detail)
                continue
            yield record, m


class _BatchWriter:
    """Two threads that hand batches, in order, to the store's bulk writer.

    The first runs ``prepare`` (compression and encoding, mostly without the
    GIL) on batch N+1 while the second runs ``add`` (the database) on batch N:
    one thread doing both made the analysis thread wait for it. Each queue
    holds one batch. A failure is kept and re-raised in the importing thread at
    its next call.
    """

    def __init__(self, store: Store) -> None:
        self._bulk = store.bulk_writer()
        self._to_prepare: queue.Queue[StoreBatch | None] = queue.Queue(maxsize=1)
        self._to_add: queue.Queue[StoreBatch | None] = queue.Queue(maxsize=1)
        self._error: BaseException | None = None
        self.totals: WriteResult | None = None
        self._threads = [
            threading.Thread(target=self._prepare, name="netvigil-import-prepare", daemon=True),
            threading.Thread(target=self._add, name="netvigil-import-writer", daemon=True),
        ]
        for thread in self._threads:
            thread.start()

    def _prepare(self) -> None:
        while True:
            batch = self._to_prepare.get()
            if batch is None:
                break
            if self._error is not None:
                continue  # drain: nothing more is written after a failure
            try:
                self._to_add.put(self._bulk.prepare(batch))
            except BaseException as exc:  # re-raised in the importing thread
                self._error = exc
        self._to_add.put(None)

    def _add(self) -> None:
        while True:
            batch = self._to_add.get()
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
        self._to_prepare.put(batch)

    def close(self) -> WriteResult:
        """Wait until everything queued is written and committed; re-raise a writer failure."""
        self._to_prepare.put(None)
        for thread in self._threads:
            thread.join()
        self._raise_if_failed()
        assert self.totals is not None
        return self.totals

    def _raise_if_failed(self) -> None:
        if self._error is not None:
            raise self._error


class _UidLookups:
    """Asks the store which uids it holds, on a thread of its own.

    The query runs without the GIL but can wait behind the writer's commit;
    started when a batch is decoded and collected after the previous batch is
    judged, it no longer stalls the analysis thread. One worker: the store's
    lookup cursor serves one thread at a time.
    """

    def __init__(self, store: Store) -> None:
        self._store = store
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="netvigil-import-lookup")

    def submit(self, batch: list[Measurement]) -> Future[set[str]]:
        return self._pool.submit(self._store.known_uids, [m.uid for m in batch])

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)


# How long the analysis thread may hold the GIL while another thread waits for
# it. CPython's 5 ms default made the writer thread queue that long for the GIL
# after each of its dozen or so native calls per batch (zstd, DuckDB, file
# writes), so it fell behind the analysis thread it is meant to keep up with.
_SWITCH_INTERVAL = 0.0005


@contextmanager
def import_tuning() -> Iterator[None]:
    """Interpreter settings for a long import, restored afterwards.

    Cyclic garbage is collected less often: an import allocates millions of
    short-lived lists and dicts and holds batches alive, and CPython's default
    thresholds spend ~15 % of the run rescanning live batches that contain no
    cycles. The GIL is handed over sooner (see ``_SWITCH_INTERVAL``).
    """
    old = gc.get_threshold()
    old_switch = sys.getswitchinterval()
    gc.set_threshold(max(old[0], 50_000), max(old[1], 20), max(old[2], 100))
    sys.setswitchinterval(min(old_switch, _SWITCH_INTERVAL))
    try:
        yield
    finally:
        gc.set_threshold(*old)
        sys.setswitchinterval(old_switch)


def make_import(params: MakeImportParams) -> ImportSummary:
    with import_tuning():
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
    lookups = _UidLookups(params.store)
    # The decoded batch whose uid lookup is under way; judged once the next batch is decoded.
    waiting: tuple[list[Measurement], Future[set[str]]] | None = None

    def decoded(batch: list[Measurement]) -> None:
        nonlocal waiting
        ahead = (batch, lookups.submit(batch))
        if waiting is not None:
            writer.put(_judge(params, waiting[0], waiting[1].result(), summary, run_id))
        waiting = ahead

    batch: list[Measurement] = []
    batch_bytes = 0
    try:
        try:
            # Envelopes only: test keys are decoded one measurement at a time in _judge.
            for record, m in iter_decoded(params.paths, on_bad, on_file, test_keys_for=()):
                summary.records += 1
                summary.bytes_read += len(record.data)
                batch.append(m)
                batch_bytes += len(record.data)
                if len(batch) >= params.batch_size or batch_bytes >= params.batch_bytes:
                    decoded(batch)
                    batch, batch_bytes = [], 0
            if batch:
                decoded(batch)
            if waiting is not None:
                writer.put(_judge(params, waiting[0], waiting[1].result(), summary, run_id))
                waiting = None
        except BaseException:
            # Keep what was already judged (imports are idempotent), report the first error.
            with suppress(Exception):
                writer.close()
            raise
        finally:
            lookups.close()
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


def _judge(params: MakeImportParams, batch: list[Measurement], known: set[str], summary: ImportSummary,
           run_id: str) -> StoreBatch:
    """Analyse the measurements of a batch the store does not hold yet (``known`` it does)."""
    fresh: dict[str, Measurement] = {}
    for m in batch:
        if m.uid in known or m.uid in fresh:
            summary.duplicates += 1
        else:
            fresh[m.uid] = m
    out = StoreBatch(import_run_id=run_id)
    for m in fresh.values():
        # Test keys live only while their measurement is judged: decoded here, dropped
        # right after (the store keeps the raw bytes and the envelope). Memory freed
        # this way is reused, still in cache, for the next measurement.
        if m.test_keys is None and m.test_name in ANALYSED_TESTS:
            m.test_keys = decode_test_keys(m)
        observations, verdicts = analyze(m, params.fingerprints)
        m.test_keys = None
        out.measurements.append(m)
        out.observations.extend(observations)
        out.verdicts.extend(verdicts)
        for v in verdicts:
            summary.outcomes[v.outcome] += 1
    if params.on_progress is not None:
        params.on_progress(summary.records, summary.bytes_read)
    return out
