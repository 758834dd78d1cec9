"""The collector's durable, append-only measurement log: what it acknowledges is here first.

A submission is acknowledged only after its record is on disk (``fdatasync``). Records go into
numbered segment files (``<n>.seg``, rotated at ``segment_bytes``); each record is

    header  "NVR1" | u32 body length | u32 crc32(body)
    body    u8 kind | 16-byte idempotency key | u64 received (ms) | u8 len(uid) | u8 len(report id)
            | uid | report id | data (the scrubbed measurement bytes; a tombstone's target position)

**Group commit.** Submissions do not write; they queue their encoded record and await a future. One
writer task takes everything that queued while the previous write was on disk, writes it with one
``write`` and one ``fdatasync`` on a thread of its own, then resolves all those futures. So the number of
fsyncs per second stays at what the disk allows while the records per fsync grow with the load.

**Recovery.** Only the last segment is ever appended to, so only its tail can be torn by a crash: on
open it is read in full and cut at the first record that is short or fails its checksum (such a record
was never acknowledged). Sealed segments are walked header by header to rebuild the idempotency index
(key -> position), so deduplication survives restarts; a receipt is read back from its record.

**Deletion.** A tombstone record names a measurement and where it is; the segment holding it is rewritten
(new file, fsync, rename) with that record's data zeroed (kind ``REDACTED``, same length, so no position
moves), keeping key, uid and report id so a re-submission still gets its old receipt and stores nothing.
A crash between the tombstone and the rewrite is repaired on the next open.
"""

from __future__ import annotations

import asyncio
import fcntl
import hashlib
import logging
import os
import re
import struct
import time
import zlib
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import msgspec

__all__ = [
    "KIND_MEASUREMENT",
    "KIND_REDACTED",
    "KIND_TOMBSTONE",
    "LogBusy",
    "LogError",
    "LogReader",
    "LogRecord",
    "LogUnavailable",
    "MeasurementLog",
    "Position",
    "Receipt",
    "encode_record",
    "segment_path",
    "segments",
]

log = logging.getLogger(__name__)

SEGMENT_MAGIC = b"NVCLOG1\n"  # the first 8 bytes of every segment
RECORD_MAGIC = b"NVR1"
_HEAD = struct.Struct("<4sII")  # magic, body length, crc32(body)
_FIXED = struct.Struct("<B16sQBB")  # kind, key, received_ms, len(uid), len(report_id)
_TARGET = struct.Struct("<IQ")  # a tombstone's data: segment, offset of the record it deletes
HEAD_SIZE = _HEAD.size
KEY_SIZE = 16

KIND_MEASUREMENT = 1
KIND_TOMBSTONE = 2
KIND_REDACTED = 3
_KINDS = (KIND_MEASUREMENT, KIND_TOMBSTONE, KIND_REDACTED)

SEGMENT_BYTES = 64 << 20
MAX_BODY = 64 << 20  # a length above this is corruption, not a record
MAX_QUEUED_BYTES = 256 << 20  # beyond this, submissions get 503 until the disk catches up
_SEGMENT_NAME = re.compile(r"([0-9]{10})\.seg")


class LogError(Exception):
    """The log cannot be opened or used (locked by another process, unreadable)."""


class LogUnavailable(LogError):
    """A write failed; nothing queued with it was acknowledged. Clients should retry later (503)."""


class LogBusy(LogError):
    """Too much is waiting for the disk; refuse new work instead of growing memory (503)."""


class Position(NamedTuple):
    segment: int
    offset: int


class Receipt(msgspec.Struct, frozen=True):
    """What a submission gets back, the first time and on every replay."""

    measurement_uid: str
    report_id: str


class LogRecord(msgspec.Struct, gc=False):
    kind: int
    key: bytes
    received_ms: int
    uid: str
    report_id: str
    data: bytes
    position: Position
    end: int  # offset just past this record in its segment


def segment_path(directory: Path, segment: int) -> Path:
    return directory / f"{segment:010d}.seg"


def segments(directory: Path) -> list[int]:
    """Segment numbers present, in order."""
    found = []
    for entry in os.scandir(directory):
        m = _SEGMENT_NAME.fullmatch(entry.name)
        if m:
            found.append(int(m.group(1)))
    return sorted(found)


def encode_record(kind: int, key: bytes, received_ms: int, uid: str, report_id: str, data: bytes) -> bytes:
    u, r = uid.encode(), report_id.encode()
    if len(key) != KEY_SIZE or len(u) > 255 or len(r) > 255:
        raise ValueError("key must be 16 bytes, uid and report id at most 255 bytes")
    body = _FIXED.pack(kind, key, received_ms, len(u), len(r)) + u + r + data
    return _HEAD.pack(RECORD_MAGIC, len(body), zlib.crc32(body)) + body


def _decode_body(body: bytes, position: Position, end: int) -> LogRecord | None:
    if len(body) < _FIXED.size:
        return None
    kind, key, received_ms, ulen, rlen = _FIXED.unpack_from(body)
    start = _FIXED.size
    if kind not in _KINDS or start + ulen + rlen > len(body):
        return None
    try:
        uid = body[start:start + ulen].decode()
        report_id = body[start + ulen:start + ulen + rlen].decode()
    except UnicodeDecodeError:
        return None
    return LogRecord(kind, key, received_ms, uid, report_id, body[start + ulen + rlen:], position, end)


def _read_record(fh, segment: int, offset: int) -> LogRecord | None:
    """The complete, checksummed record at ``offset``, or None (end, torn, or not a record)."""
    fh.seek(offset)
    head = fh.read(HEAD_SIZE)
    if len(head) < HEAD_SIZE:
        return None
    magic, length, crc = _HEAD.unpack(head)
    if magic != RECORD_MAGIC or length > MAX_BODY:
        return None
    body = fh.read(length)
    if len(body) < length or zlib.crc32(body) != crc:
        return None
    return _decode_body(body, Position(segment, offset), offset + HEAD_SIZE + length)


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        n = os.write(fd, view)
        view = view[n:]


def _pack(pos: Position) -> int:
    return (pos.segment << 40) | pos.offset


def _unpack(value: int) -> Position:
    return Position(value >> 40, value & ((1 << 40) - 1))


@dataclass(slots=True)
class _Queued:
    kind: int
    key: bytes
    uid: str
    report_id: str
    encoded: bytes
    future: asyncio.Future[Position]


@dataclass(slots=True)
class LogStats:
    segments: int = 0
    bytes: int = 0
    records: int = 0  # records of every kind since the log began (the worker counts the same way)
    commits: int = 0  # fsyncs since this process opened the log
    truncated_bytes: int = 0  # torn tail cut at open


class MeasurementLog:
    """The writer side; one per data directory (an exclusive lock), used from one event loop.

    ``open`` (blocking: it scans the segments) then ``start`` in the serving loop; ``submit`` and
    ``delete``; ``close`` drains what is queued. ``on_commit`` callbacks run in the loop after each
    fsync with the number of records and seconds it took (metrics, waking the worker).
    """

    def __init__(self, directory: Path, *, segment_bytes: int = SEGMENT_BYTES) -> None:
        self.directory = directory
        self.segment_bytes = segment_bytes
        self.stats = LogStats()
        self.on_commit: list[Callable[[int, float], None]] = []
        self.last_commit = 0.0  # time.monotonic() of the last fsync
        self._index: dict[bytes, int] = {}
        self._pending: dict[bytes, _Queued] = {}
        self._queue: list[_Queued] = []
        self._queued_bytes = 0
        self._segment = 0
        self._size = 0
        self._fd = -1
        self._lock_fd = -1
        self._failed: str | None = None
        self._closing = False
        self._wake: asyncio.Event | None = None
        self._writer: asyncio.Task[None] | None = None
        # One thread does every write, fsync, rotation and rewrite: they never interleave.
        self._disk = ThreadPoolExecutor(max_workers=1, thread_name_prefix="netvigil-collector-log")

    # -- opening: lock, scan, repair -----------------------------------------------------------

    @classmethod
    def open(cls, directory: Path, *, segment_bytes: int = SEGMENT_BYTES) -> MeasurementLog:
        """Lock the directory, cut a torn tail, rebuild the index, finish interrupted deletions."""
        self = cls(directory, segment_bytes=segment_bytes)
        directory.mkdir(parents=True, exist_ok=True)
        self._lock_fd = os.open(directory / "LOCK", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(self._lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(self._lock_fd)
            raise LogError(f"another collector is serving {directory}") from None
        try:
            self._recover()
        except BaseException:
            self._release()
            raise
        return self

    def _recover(self) -> None:
        for stale in self.directory.glob("*.seg.rewrite"):
            stale.unlink()  # a rewrite that died before its rename: the original is intact
        numbers = segments(self.directory)
        if numbers and SEGMENT_MAGIC.startswith(segment_path(self.directory, numbers[-1]).read_bytes()):
            # a crash while a new segment was being created: it holds nothing (not even its header)
            segment_path(self.directory, numbers[-1]).unlink()
            _fsync_dir(self.directory)
            log.warning("log: removed segment %d, cut short while it was being created", numbers.pop())
        if not numbers:
            self._create_segment(1)
            return
        tombstones: list[LogRecord] = []
        redacted: set[int] = set()
        for i, n in enumerate(numbers):
            last = i == len(numbers) - 1
            end = self._scan_segment(n, verify=last, tombstones=tombstones, redacted=redacted)
            size = segment_path(self.directory, n).stat().st_size
            if end < size:
                self._cut(n, end, size, torn=last)
            self.stats.bytes += end
        self.stats.segments = len(numbers)
        self._segment = numbers[-1]
        self._fd = os.open(segment_path(self.directory, self._segment), os.O_WRONLY | os.O_APPEND)
        self._size = os.fstat(self._fd).st_size
        for t in tombstones:
            target = Position(*_TARGET.unpack(t.data))
            if _pack(target) not in redacted:
                log.warning("finishing an interrupted deletion of %s", t.uid)
                self._redact(target, t.uid)

    def _scan_segment(self, n: int, *, verify: bool, tombstones: list[LogRecord], redacted: set[int]) -> int:
        """Index one segment; returns the offset where its valid records end."""
        path = segment_path(self.directory, n)
        with path.open("rb") as fh:
            if fh.read(len(SEGMENT_MAGIC)) != SEGMENT_MAGIC:
                raise LogError(f"{path} is not a collector log segment")
            offset = len(SEGMENT_MAGIC)
            size = os.fstat(fh.fileno()).st_size
            while True:
                rec = _read_record(fh, n, offset) if verify else self._read_header(fh, n, offset, size)
                if rec is None:
                    return offset
                if rec.kind == KIND_TOMBSTONE:
                    tombstones.append(rec)
                else:
                    self._index[rec.key] = _pack(rec.position)
                    if rec.kind == KIND_REDACTED:
                        redacted.add(_pack(rec.position))
                self.stats.records += 1
                offset = rec.end

    @staticmethod
    def _read_header(fh, segment: int, offset: int, size: int) -> LogRecord | None:
        """Key, uid and report id of the record at ``offset`` without reading (or checking) its data.

        Sealed segments were complete and fsynced before the next one was created; the worker checks
        every checksum when it reads the data.
        """
        fh.seek(offset)
        head = fh.read(HEAD_SIZE + _FIXED.size + 510)
        if len(head) < HEAD_SIZE + _FIXED.size:
            return None
        magic, length, _crc = _HEAD.unpack_from(head)
        if magic != RECORD_MAGIC or length > MAX_BODY:
            return None
        end = offset + HEAD_SIZE + length
        if size < end:
            return None
        kind, _key, _received, ulen, rlen = _FIXED.unpack_from(head, HEAD_SIZE)
        rec = _decode_body(head[HEAD_SIZE:HEAD_SIZE + _FIXED.size + ulen + rlen], Position(segment, offset), end)
        if rec is None:
            return None
        if kind == KIND_TOMBSTONE:  # tombstones are small: keep their data (the target)
            fh.seek(offset + HEAD_SIZE)
            rec = _decode_body(fh.read(length), Position(segment, offset), end)
        return rec

    def _cut(self, n: int, end: int, size: int, *, torn: bool) -> None:
        """Drop what follows the last valid record: a torn tail, or (in a sealed segment) corruption."""
        path = segment_path(self.directory, n)
        if torn:
            log.warning("log segment %s: cutting a torn tail of %d bytes (never acknowledged)", path.name,
                        size - end)
        else:
            keep = self.directory.parent / "quarantine" / f"{path.name}.corrupt-at-{end}"
            keep.parent.mkdir(parents=True, exist_ok=True)
            with path.open("rb") as src, keep.open("wb") as dst:
                src.seek(end)
                dst.write(src.read())
                dst.flush()
                os.fsync(dst.fileno())
            log.error("log segment %s is corrupt at offset %d: %d bytes kept in %s", path.name, end,
                      size - end, keep)
        fd = os.open(path, os.O_WRONLY)
        try:
            os.ftruncate(fd, end)
            os.fsync(fd)
        finally:
            os.close(fd)
        self.stats.truncated_bytes += size - end

    def _create_segment(self, n: int) -> None:
        path = segment_path(self.directory, n)
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            _write_all(fd, SEGMENT_MAGIC)
            os.fsync(fd)
        except BaseException:
            os.close(fd)
            raise
        _fsync_dir(self.directory)
        if self._fd >= 0:
            os.close(self._fd)
        self._fd, self._segment, self._size = fd, n, len(SEGMENT_MAGIC)
        self.stats.segments += 1
        self.stats.bytes += len(SEGMENT_MAGIC)

    # -- serving -------------------------------------------------------------------------------

    async def start(self) -> None:
        self._wake = asyncio.Event()
        self._writer = asyncio.create_task(self._write_loop(), name="netvigil-collector-log-writer")

    def lookup(self, key: bytes) -> Receipt | None:
        """The receipt already given for ``key`` (durable), or None."""
        packed = self._index.get(key)
        return None if packed is None else self.receipt_at(_unpack(packed))

    def receipt_at(self, pos: Position) -> Receipt:
        with segment_path(self.directory, pos.segment).open("rb") as fh:
            rec = self._read_header(fh, pos.segment, pos.offset, os.fstat(fh.fileno()).st_size)
        if rec is None:
            raise LogError(f"no record at {pos}")
        return Receipt(rec.uid, rec.report_id)

    async def submit(self, key: bytes, build: Callable[[], tuple[str, str, bytes]]) -> tuple[Receipt, bool]:
        """Make a measurement durable once per key: (receipt, replayed).

        ``build`` makes (uid, report id, data) and runs only when the key is new, so a replay costs
        neither a uid nor a serialization. Check, register and queue happen without an ``await`` in
        between, so two concurrent submissions of one key make one record.
        """
        self._check_usable()
        receipt = self.lookup(key)
        if receipt is not None:
            return receipt, True
        queued = self._pending.get(key)
        if queued is not None:
            await asyncio.shield(queued.future)
            return Receipt(queued.uid, queued.report_id), True
        uid, report_id, data = build()
        entry = self._enqueue(KIND_MEASUREMENT, key, uid, report_id, data)
        self._pending[key] = entry
        await asyncio.shield(entry.future)
        return Receipt(uid, report_id), False

    async def delete(self, uid: str) -> Position | None:
        """Tombstone a measurement and zero its data in the log; returns the tombstone's position.

        None if no measurement with this uid is in the log. Already deleted: the old tombstone stands,
        and the position of the redacted record is returned.
        """
        self._check_usable()
        loop = asyncio.get_running_loop()
        found = await loop.run_in_executor(None, self.find, uid)
        if found is None:
            return None
        if found.kind == KIND_REDACTED:
            return found.position
        key = hashlib.blake2b(b"tombstone\0" + uid.encode(), digest_size=KEY_SIZE).digest()
        entry = self._enqueue(KIND_TOMBSTONE, key, uid, found.report_id, _TARGET.pack(*found.position))
        position = await asyncio.shield(entry.future)
        await loop.run_in_executor(self._disk, self._redact, found.position, uid)
        return position

    def find(self, uid: str) -> LogRecord | None:
        """The measurement (or redacted) record with this uid: a walk over every record's header."""
        for n in segments(self.directory):
            with segment_path(self.directory, n).open("rb") as fh:
                offset = len(SEGMENT_MAGIC)
                size = os.fstat(fh.fileno()).st_size
                while (rec := self._read_header(fh, n, offset, size)) is not None:
                    if rec.uid == uid and rec.kind in (KIND_MEASUREMENT, KIND_REDACTED):
                        return rec
                    offset = rec.end
        return None

    def _enqueue(self, kind: int, key: bytes, uid: str, report_id: str, data: bytes) -> _Queued:
        if self._queued_bytes > MAX_QUEUED_BYTES:
            raise LogBusy("too many submissions waiting for the disk")
        encoded = encode_record(kind, key, int(time.time() * 1000), uid, report_id, data)
        future: asyncio.Future[Position] = asyncio.get_running_loop().create_future()
        future.add_done_callback(_consume_exception)
        entry = _Queued(kind, key, uid, report_id, encoded, future)
        self._queue.append(entry)
        self._queued_bytes += len(encoded)
        assert self._wake is not None, "start() the log before submitting"
        self._wake.set()
        return entry

    def _check_usable(self) -> None:
        if self._failed is not None:
            raise LogUnavailable(self._failed)
        if self._closing or self._wake is None:
            raise LogUnavailable("the collector is shutting down")

    async def _write_loop(self) -> None:
        assert self._wake is not None
        loop = asyncio.get_running_loop()
        while True:
            if not self._queue:
                if self._closing:
                    return
                await self._wake.wait()
                self._wake.clear()
                continue
            batch, self._queue = self._queue, []
            self._queued_bytes -= sum(len(e.encoded) for e in batch)
            started = loop.time()
            try:
                positions = await loop.run_in_executor(self._disk, self._append, [e.encoded for e in batch])
            except OSError as exc:
                for e in batch:
                    self._pending.pop(e.key, None)
                    e.future.set_exception(LogUnavailable(f"log write failed: {exc.strerror or exc}"))
                continue
            for e, pos in zip(batch, positions, strict=True):
                if e.kind == KIND_MEASUREMENT:
                    self._index[e.key] = _pack(pos)
                    self._pending.pop(e.key, None)
                e.future.set_result(pos)
            self.stats.records += len(batch)
            self.stats.commits += 1
            self.last_commit = time.monotonic()
            elapsed = loop.time() - started
            for callback in self.on_commit:
                callback(len(batch), elapsed)

    def _append(self, encoded: list[bytes]) -> list[Position]:
        """On the disk thread: one write and one fdatasync for the whole group."""
        if self._failed is not None:
            raise OSError(self._failed)
        if self._size >= self.segment_bytes:
            self._create_segment(self._segment + 1)
        positions, offset = [], self._size
        for chunk in encoded:
            positions.append(Position(self._segment, offset))
            offset += len(chunk)
        data = b"".join(encoded)
        try:
            _write_all(self._fd, data)
        except OSError as exc:  # e.g. ENOSPC: undo the partial write, then later writes may succeed
            self._undo(exc)
            raise
        try:
            os.fdatasync(self._fd)
        except OSError as exc:  # after a failed fsync the page cache cannot be trusted: stop writing
            self._failed = f"fsync failed ({exc.strerror or exc}); restart the collector"
            log.error("log: %s", self._failed)
            raise
        self._size = offset
        self.stats.bytes += len(data)
        return positions

    def _undo(self, exc: OSError) -> None:
        try:
            os.ftruncate(self._fd, self._size)
            os.fdatasync(self._fd)
        except OSError:
            self._failed = f"write failed ({exc.strerror or exc}) and could not be undone; restart the collector"
            log.error("log: %s", self._failed)

    def _redact(self, target: Position, uid: str) -> None:
        """On the disk thread (or at open): rewrite the target's segment with its data zeroed."""
        path = segment_path(self.directory, target.segment)
        raw = bytearray(path.read_bytes())
        with path.open("rb") as fh:
            rec = _read_record(fh, target.segment, target.offset)
        if rec is None or rec.uid != uid or rec.kind == KIND_TOMBSTONE:
            log.error("deletion of %s: no such record at %s:%d", uid, path.name, target.offset)
            return
        if rec.kind == KIND_REDACTED:
            return
        replacement = encode_record(KIND_REDACTED, rec.key, rec.received_ms, rec.uid, rec.report_id,
                                    bytes(len(rec.data)))
        assert len(replacement) == rec.end - target.offset
        raw[target.offset:rec.end] = replacement
        tmp = path.with_name(path.name + ".rewrite")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            _write_all(fd, bytes(raw))
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
        _fsync_dir(self.directory)
        if target.segment == self._segment and self._fd >= 0:  # keep appending to the new file
            os.close(self._fd)
            self._fd = os.open(path, os.O_WRONLY | os.O_APPEND)

    async def close(self) -> None:
        """Write what is queued, stop the writer, release the lock."""
        self._closing = True
        if self._writer is not None and self._wake is not None:
            self._wake.set()
            try:
                async with asyncio.timeout(30):
                    await self._writer
            except TimeoutError:
                log.error("log: the disk did not finish the last writes within 30 s")
        self._disk.shutdown(wait=True)
        self._release()

    def close_sync(self) -> None:
        """Release without an event loop (tests, tools that only opened the log)."""
        self._closing = True
        self._disk.shutdown(wait=True)
        self._release()

    def _release(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1
        if self._lock_fd >= 0:
            os.close(self._lock_fd)
            self._lock_fd = -1

    @property
    def failure(self) -> str | None:
        """Why the log refuses writes until a restart (a failed fsync), or None."""
        return self._failed

    @property
    def end(self) -> Position:
        """Where the next record will go (every record before it is durable)."""
        return Position(self._segment, self._size)

    def __len__(self) -> int:
        return len(self._index)


def _consume_exception(future: asyncio.Future) -> None:
    """A client may have gone away before its write failed: nobody else retrieves the error."""
    if not future.cancelled():
        future.exception()


class LogReader:
    """Reads records in order from a position; used by the worker (in-process or not).

    Only complete, checksummed records are returned. At the end of the last segment a short or bad
    record is a write in progress (or a torn tail the collector will cut when it restarts): the reader
    waits there. In a sealed segment (a later one exists) a bad record is corruption: it is returned as
    a record of kind 0 with the rest of the segment as data, and reading goes on in the next segment.
    Before returning records the reader fdatasyncs their segment, so nothing is processed that a power
    cut could still take back from the log.
    """

    def __init__(self, directory: Path, position: Position) -> None:
        self.directory = directory
        self.position = position

    def read(self, max_records: int = 500, max_bytes: int = 16 << 20) -> list[LogRecord]:
        out: list[LogRecord] = []
        size = 0
        while len(out) < max_records and size < max_bytes:
            seg, offset = self.position
            path = segment_path(self.directory, seg)
            try:
                fh = path.open("rb")
            except FileNotFoundError:
                nxt = self._next_segment(seg)
                if nxt is None:
                    break
                self.position = Position(nxt, len(SEGMENT_MAGIC))
                continue
            with fh:
                got = self._read_from(fh, seg, offset, max_records - len(out), max_bytes - size)
                if got:
                    os.fdatasync(fh.fileno())
            out.extend(got)
            size += sum(len(r.data) for r in got)
            if got:
                self.position = Position(seg, got[-1].end)
                continue
            nxt = self._next_segment(seg)
            if nxt is None:
                break
            with segment_path(self.directory, seg).open("rb") as fh:
                if _read_record(fh, seg, offset) is None and fh.seek(0, os.SEEK_END) > offset:
                    fh.seek(offset)
                    rest = fh.read()
                    out.append(LogRecord(0, b"", 0, "", "", rest, Position(seg, offset), offset + len(rest)))
            self.position = Position(nxt, len(SEGMENT_MAGIC))
        return out

    @staticmethod
    def _read_from(fh, seg: int, offset: int, max_records: int, max_bytes: int) -> list[LogRecord]:
        got: list[LogRecord] = []
        size = 0
        offset = max(offset, len(SEGMENT_MAGIC))
        while len(got) < max_records and size < max_bytes:
            rec = _read_record(fh, seg, offset)
            if rec is None:
                break
            got.append(rec)
            size += len(rec.data)
            offset = rec.end
        return got

    def _next_segment(self, seg: int) -> int | None:
        later = [n for n in segments(self.directory) if n > seg]
        return later[0] if later else None

    def __iter__(self) -> Iterator[LogRecord]:
        """Every record from the position to the current end (tests and tools)."""
        while batch := self.read():
            yield from batch
