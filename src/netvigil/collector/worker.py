"""The collector's worker: log -> decode -> judge -> store, resumable from a durable offset.

It reads the log in order from the position in ``state/worker.json``, decodes each record with
``netvigil.codec``, judges it with ``netvigil.analysis.analyze`` and writes the batch to the store in
one transaction; only then is the new position written (temp file, fsync, rename, fsync). A crash in
between re-processes the batch, and the store's ``write_batch`` skips uids it already has: nothing is
stored twice and nothing acknowledged is skipped. A record that does not decode goes, whole, to
``quarantine/records.jsonl`` with its reason before the position moves past it: never dropped.

One worker per data directory (``state/worker.lock``): a thread of ``collector serve`` by default, or
``collector worker`` as a process of its own.
"""

from __future__ import annotations

import base64
import fcntl
import logging
import os
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import msgspec
import orjson

from netvigil.analysis import FingerprintDB, analyze
from netvigil.codec import BadRecord, decode_measurement
from netvigil.collector.log import (
    KIND_MEASUREMENT,
    KIND_REDACTED,
    KIND_TOMBSTONE,
    SEGMENT_MAGIC,
    LogReader,
    LogRecord,
    Position,
)
from netvigil.model.measurement import SourceRef
from netvigil.store import Store, StoreBatch

__all__ = ["Worker", "WorkerBusy", "WorkerState", "delete_from_store", "read_state"]

log = logging.getLogger(__name__)

STATE_FILE = "worker.json"
IMPORT_RUN_ID = "collector"


class WorkerBusy(Exception):
    """Another worker holds this data directory."""


class WorkerState(msgspec.Struct, kw_only=True):
    """Where the worker is in the log and what it has done (cumulative over its life)."""

    segment: int = 1
    offset: int = len(SEGMENT_MAGIC)
    records: int = 0  # log records processed, of every kind (the log counts the same way)
    stored: int = 0  # measurements newly written to the store
    skipped: int = 0  # measurements the store already had (re-processing after a crash)
    quarantined: int = 0
    deleted: int = 0
    analysis_errors: int = 0

    @property
    def position(self) -> Position:
        return Position(self.segment, self.offset)


_STATE = msgspec.json.Decoder(WorkerState)


def read_state(data_dir: Path) -> WorkerState:
    try:
        return _STATE.decode((data_dir / "state" / STATE_FILE).read_bytes())
    except FileNotFoundError:
        return WorkerState()


def _write_state(data_dir: Path, state: WorkerState) -> None:
    directory = data_dir / "state"
    tmp = directory / f".{STATE_FILE}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.write(fd, msgspec.json.encode(state))
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, directory / STATE_FILE)
    dfd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(dfd)
    finally:
        os.close(dfd)


def delete_from_store(store: Store, uids: Sequence[str]) -> int:
    """Remove measurements with their observations and verdicts; returns how many measurements went."""
    return store.delete_measurements(list(uids))


class Worker:
    """Processes the log of ``data_dir`` into ``store``. Use from one thread; ``state`` may be read anywhere."""

    def __init__(self, data_dir: Path, store: Store, fingerprints: FingerprintDB, *,
                 store_lock: threading.Lock | None = None, batch_size: int = 500, batch_bytes: int = 16 << 20) -> None:
        self.data_dir = data_dir
        self.store = store
        self.fingerprints = fingerprints
        self.store_lock = store_lock or threading.Lock()
        self.batch_size = batch_size
        self.batch_bytes = batch_bytes
        (data_dir / "state").mkdir(parents=True, exist_ok=True)
        self._lock_fd = os.open(data_dir / "state" / "worker.lock", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(self._lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(self._lock_fd)
            raise WorkerBusy(f"another worker is processing {data_dir}") from None
        self.state = read_state(data_dir)
        self.reader = LogReader(data_dir / "log", self.state.position)
        self.progress = threading.Condition()
        self._quarantine = data_dir / "quarantine" / "records.jsonl"

    def step(self) -> int:
        """Process what the log has (up to one batch); returns the number of records processed."""
        try:
            return self._step()
        except BaseException:
            self.reader.position = self.state.position  # the batch is done again from its start
            raise

    def _step(self) -> int:
        records = self.reader.read(self.batch_size, self.batch_bytes)
        if not records:
            return 0
        state = msgspec.structs.replace(self.state)
        batch = StoreBatch(import_run_id=IMPORT_RUN_ID)
        bad: list[dict[str, Any]] = []
        for rec in records:
            if rec.kind == KIND_MEASUREMENT:
                self._judge(rec, batch, bad, state)
            elif rec.kind == KIND_TOMBSTONE:
                self._write(batch, bad, state)  # in log order: what came before the tombstone is stored first
                batch = StoreBatch(import_run_id=IMPORT_RUN_ID)
                with self.store_lock:
                    state.deleted += delete_from_store(self.store, [rec.uid])
            elif rec.kind != KIND_REDACTED:  # kind 0: corruption in a sealed segment
                bad.append(_quarantine_line(rec, "corrupt_log", "checksum or framing error in a sealed segment"))
            state.records += 1
        self._write(batch, bad, state)
        last = records[-1]
        state.segment, state.offset = last.position.segment, last.end
        _write_state(self.data_dir, state)
        with self.progress:
            self.state = state
            self.progress.notify_all()
        return len(records)

    def _judge(self, rec: LogRecord, batch: StoreBatch, bad: list[dict[str, Any]], state: WorkerState) -> None:
        source = SourceRef(f"collector:{rec.position.segment:010d}.seg", rec.position.offset)
        try:
            m = decode_measurement(rec.data, source)
        except BadRecord as exc:
            bad.append(_quarantine_line(rec, exc.reason.value, exc.detail))
            return
        if m.uid != rec.uid:
            bad.append(_quarantine_line(rec, "uid_mismatch", f"decoded uid {m.uid!r}"))
            return
        try:
            observations, verdicts = analyze(m, self.fingerprints)
        except Exception as exc:  # noqa: BLE001 - a judging bug must not lose the measurement
            state.analysis_errors += 1
            log.error("analysis of %s failed: %s: %s", rec.uid, type(exc).__name__, exc)
            observations, verdicts = [], []
        batch.measurements.append(m)
        batch.observations.extend(observations)
        batch.verdicts.extend(verdicts)

    def _write(self, batch: StoreBatch, bad: list[dict[str, Any]], state: WorkerState) -> None:
        if bad:
            self._quarantine.parent.mkdir(parents=True, exist_ok=True)
            with self._quarantine.open("ab") as fh:
                fh.write(b"".join(orjson.dumps(line) + b"\n" for line in bad))
                fh.flush()
                os.fsync(fh.fileno())
            state.quarantined += len(bad)
            bad.clear()
        if batch.measurements:
            with self.store_lock:
                result = self.store.write_batch(batch)
            state.stored += result.new
            state.skipped += result.skipped

    def drain(self) -> int:
        """Process until the log has nothing more; returns the number of records processed."""
        total = 0
        while n := self.step():
            total += n
        return total

    def run(self, stop: threading.Event, wake: threading.Event | None = None, poll: float = 0.25,
            busy: Callable[[], bool] | None = None, duty: float = 0.3) -> None:
        """Process until ``stop``; sleep on ``wake`` (set by the log after each commit) or ``poll`` seconds.

        ``busy``: in the serving process the worker shares one GIL with the HTTP event loop, and judging
        is CPU-bound. While ``busy()`` (submissions are arriving) the worker takes small batches and then
        sleeps so that it holds the interpreter for at most ``duty`` of the time: acknowledgements stay
        fast, the backlog waits safely in the log and is worked off at full speed when traffic ebbs.
        A failing step (the store unavailable, a full disk) is logged and retried after a pause; the log
        keeps everything meanwhile.
        """
        wake = wake or threading.Event()
        full = self.batch_size
        while not stop.is_set():
            yielding = busy is not None and busy()
            self.batch_size = min(full, 50) if yielding else full
            started = time.monotonic()
            try:
                n = self.step()
            except Exception as exc:  # noqa: BLE001 - keep going; the log holds the records
                log.error("worker step failed (will retry): %s: %s", type(exc).__name__, exc)
                stop.wait(2.0)
                continue
            finally:
                self.batch_size = full
            if n == 0:
                wake.wait(poll)
                wake.clear()
            elif yielding:
                stop.wait((time.monotonic() - started) * (1 - duty) / duty)

    def wait_past(self, position: Position, timeout: float) -> bool:
        """Whether the worker has processed the record at ``position`` (waits up to ``timeout`` s)."""
        deadline = time.monotonic() + timeout
        with self.progress:
            while self.state.position <= position:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self.progress.wait(left)
        return True

    def close(self) -> None:
        if self._lock_fd >= 0:
            os.close(self._lock_fd)
            self._lock_fd = -1


def _quarantine_line(rec: LogRecord, reason: str, detail: str) -> dict[str, Any]:
    try:
        data, encoding = rec.data.decode("utf-8"), "utf-8"
    except UnicodeDecodeError:
        data, encoding = base64.b64encode(rec.data).decode("ascii"), "base64"
    return {"segment": rec.position.segment, "offset": rec.position.offset, "uid": rec.uid, "reason": reason,
            "detail": detail[:500], "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "encoding": encoding, "data": data}
