"""The probe's durable spool: every measurement lands on disk before anything else.

During a shutdown nothing can be uploaded, so a measurement is only worth
something if it survives until the network comes back (and a crash or a power
cut in between). Layout of the spool directory (see docs/probe-spool.md):

    <uid>.json         one pending measurement (the exact bytes the runner produced)
    .tmp-<uid>.*       a write in progress; never listed, removed once older than a minute
    delivered.jsonl    one line per acknowledged measurement: what left, when, under which report
    bad/               files that are not a JSON object (plus bad/bad.jsonl: why)
    rejected/          measurements the collector (or our privacy check) refused (plus rejected/rejected.jsonl)

Claiming: a process that wants to deliver an entry takes ``fcntl.flock(LOCK_EX |
LOCK_NB)`` on the entry file itself and keeps it until the entry is acked,
rejected or released. The kernel drops the lock when its process dies, so a
crashed uploader needs no recovery step; the lock moves with the inode on a
rename, and a claimant re-checks that the path still names the inode it locked,
so an entry acked by someone else is never claimed again.
"""

from __future__ import annotations

import errno
import fcntl
import os
import re
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import cached_property
from pathlib import Path
from types import TracebackType
from typing import Any

import msgspec
import orjson

__all__ = [
    "BAD_DIR",
    "Claim",
    "DELIVERED_LOG",
    "DeliveredLine",
    "REJECTED_DIR",
    "STALE_TEMP_SECONDS",
    "Spool",
    "SpoolEntry",
    "check_uid",
]

UID_PATTERN = re.compile(r"[A-Za-z0-9_-]{1,200}")
TEMP_PREFIX = ".tmp-"
ENTRY_SUFFIX = ".json"
STALE_TEMP_SECONDS = 60.0
DELIVERED_LOG = "delivered.jsonl"
BAD_DIR = "bad"
REJECTED_DIR = "rejected"


def check_uid(uid: str) -> str:
    """A uid becomes a file name: only a safe token may (no '/', no '..', no dot files)."""
    if not isinstance(uid, str) or not UID_PATTERN.fullmatch(uid):
        raise ValueError(f"invalid spool uid {uid!r}: expected 1-200 characters of [A-Za-z0-9_-]")
    return uid


def _utc_now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _fsync_dir(path: Path) -> None:
    """Make a rename or unlink in ``path`` durable (the entry lives in the directory, not the file)."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _append_line(path: Path, record: dict[str, Any]) -> None:
    """Append one JSON line with a single O_APPEND write, fsynced: concurrent writers never interleave."""
    line = orjson.dumps(record) + b"\n"
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    try:
        written = os.write(fd, line)
        if written != len(line):  # a local file short-writes only when the disk is full
            raise OSError(errno.ENOSPC, f"short write appending to {path}")
        os.fsync(fd)
    finally:
        os.close(fd)


class DeliveredLine(msgspec.Struct, kw_only=True):
    """One line of ``delivered.jsonl``: enough for a user to audit what left the device."""

    uid: str
    report_id: str | None
    measurement_uid: str | None
    time: str


@dataclass(frozen=True)
class SpoolEntry:
    """A pending measurement as listed; ``raw`` reads the file on first use."""

    uid: str
    path: Path
    mtime: float
    size: int = field(default=0, compare=False)

    @cached_property
    def raw(self) -> bytes:
        return self.path.read_bytes()


class Claim:
    """An exclusive hold on one entry (flock on the entry file); released on exit or process death."""

    def __init__(self, uid: str, path: Path, fd: int) -> None:
        self.uid = uid
        self.path = path
        self._fd: int | None = fd

    @property
    def held(self) -> bool:
        return self._fd is not None

    def read(self) -> bytes:
        """The bytes of the inode we locked (not whatever the path names now)."""
        if self._fd is None:
            raise RuntimeError(f"claim on {self.uid} already released")
        size = os.fstat(self._fd).st_size
        chunks: list[bytes] = []
        offset = 0
        while True:
            chunk = os.pread(self._fd, max(size - offset, 1 << 16), offset)
            if not chunk:
                break
            chunks.append(chunk)
            offset += len(chunk)
        return b"".join(chunks)

    def release(self) -> None:
        if self._fd is not None:
            fd, self._fd = self._fd, None
            os.close(fd)  # closing the last descriptor drops the flock

    def __enter__(self) -> Claim:
        return self

    def __exit__(self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None) -> None:
        self.release()

    def __del__(self) -> None:
        self.release()


class Spool:
    """A directory of pending measurements, safe for one writer and several uploaders at once."""

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)
        self.path.mkdir(parents=True, exist_ok=True, mode=0o700)

    # -- writing ----------------------------------------------------------------------------------

    def entry_path(self, uid: str) -> Path:
        return self.path / f"{check_uid(uid)}{ENTRY_SUFFIX}"

    def put(self, raw: bytes, uid: str) -> Path:
        """Write ``<uid>.json`` durably before returning; a second put of the same uid keeps the first."""
        final = self.entry_path(uid)
        if final.exists():
            return final
        fd, tmp = tempfile.mkstemp(prefix=f"{TEMP_PREFIX}{uid}.", dir=self.path)
        try:
            view = memoryview(raw)
            while view:
                view = view[os.write(fd, view):]
            os.fsync(fd)
            os.close(fd)
            fd = -1
            os.replace(tmp, final)
        except BaseException:
            if fd >= 0:
                os.close(fd)
            try:
                os.unlink(tmp)
            except FileNotFoundError:
                pass
            raise
        _fsync_dir(self.path)
        return final

    # -- listing ----------------------------------------------------------------------------------

    def pending(self) -> Iterator[SpoolEntry]:
        """Entries oldest first. Stale temp files are removed; a ``.json`` that is no uid goes to bad/.

        The listing is a snapshot taken on the first ``next()``: an entry may be gone (delivered by
        another process) by the time it is claimed, and one written meanwhile waits for the next call.
        """
        entries, _ = self._scan()
        yield from entries

    def sweep(self) -> int:
        """Tidy up without listing: remove stale temp files, move misnamed ``.json`` files to bad/.

        Returns how many files went to bad/ (an uploader counts them with the bad entries it finds).
        """
        return self._scan()[1]

    def _scan(self) -> tuple[list[SpoolEntry], int]:
        now = time.time()
        entries: list[SpoolEntry] = []
        misnamed: list[Path] = []
        with os.scandir(self.path) as it:
            for de in it:
                name = de.name
                try:
                    if not de.is_file(follow_symlinks=False):
                        continue
                    st = de.stat(follow_symlinks=False)
                except FileNotFoundError:
                    continue
                if name.startswith(TEMP_PREFIX):
                    if now - st.st_mtime > STALE_TEMP_SECONDS:
                        _unlink_quietly(Path(de.path))
                    continue
                if not name.endswith(ENTRY_SUFFIX):
                    continue
                uid = name[: -len(ENTRY_SUFFIX)]
                if not UID_PATTERN.fullmatch(uid):
                    misnamed.append(Path(de.path))
                    continue
                entries.append(SpoolEntry(uid, Path(de.path), st.st_mtime, st.st_size))
        moved = 0
        for path in misnamed:
            try:
                self._move_out(path, BAD_DIR, {"name": path.name, "reason": "file name is not a spool uid"})
                moved += 1
            except FileNotFoundError:  # another process moved it first
                pass
        entries.sort(key=lambda e: (e.mtime, e.uid))
        return entries, moved

    def count(self) -> int:
        return sum(1 for _ in self._entry_stats())

    def bad_count(self) -> int:
        return _count_json(self.path / BAD_DIR)

    def rejected_count(self) -> int:
        return _count_json(self.path / REJECTED_DIR)

    def delivered(self) -> list[DeliveredLine]:
        """The audit log, oldest first (empty when nothing was delivered yet)."""
        log = self.path / DELIVERED_LOG
        if not log.exists():
            return []
        dec = msgspec.json.Decoder(DeliveredLine)
        return [dec.decode(line) for line in log.read_bytes().splitlines() if line.strip()]

    # -- claiming and settling --------------------------------------------------------------------

    def claim(self, uid: str) -> Claim | None:
        """Take the entry for delivery, or None when it is gone or another process holds it."""
        path = self.entry_path(uid)
        try:
            fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        except FileNotFoundError:
            return None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return None
        except BaseException:
            os.close(fd)
            raise
        # The holder before us may have acked (unlinked) or rejected (renamed) it meanwhile.
        try:
            current = os.stat(path)
        except FileNotFoundError:
            os.close(fd)
            return None
        mine = os.fstat(fd)
        if (current.st_dev, current.st_ino) != (mine.st_dev, mine.st_ino):
            os.close(fd)
            return None
        return Claim(uid, path, fd)

    def ack(self, uid: str, receipt: dict[str, Any]) -> DeliveredLine:
        """The collector has the measurement: log it in delivered.jsonl (fsynced), then remove the entry.

        The log line comes first so a crash in between leaves an entry that is re-sent under the same
        idempotency key (the collector answers with its first receipt), never a delivery without a line.
        """
        path = self.entry_path(uid)
        line = DeliveredLine(
            uid=uid,
            report_id=_str_or_none(receipt.get("report_id")),
            measurement_uid=_str_or_none(receipt.get("measurement_uid") or receipt.get("measurement_id")),
            time=_utc_now(),
        )
        _append_line(self.path / DELIVERED_LOG, msgspec.to_builtins(line))
        _unlink_quietly(path)
        _fsync_dir(self.path)
        return line

    def reject(self, uid: str, reason: str, *, status: int | None = None, answer: str | None = None) -> Path:
        """Keep a refused measurement in rejected/ with the reason and the collector's answer."""
        record: dict[str, Any] = {"uid": uid, "reason": reason}
        if status is not None:
            record["status"] = status
        if answer is not None:
            record["answer"] = answer
        return self._move_out(self.entry_path(uid), REJECTED_DIR, record)

    def quarantine(self, uid: str, reason: str) -> Path:
        """A file that is not a measurement at all: keep it in bad/ for a human, never delete it."""
        return self._move_out(self.entry_path(uid), BAD_DIR, {"name": f"{uid}{ENTRY_SUFFIX}", "reason": reason})

    def _move_out(self, path: Path, subdir: str, record: dict[str, Any]) -> Path:
        dest_dir = self.path / subdir
        dest_dir.mkdir(exist_ok=True, mode=0o700)
        dest = _free_name(dest_dir, path.name)
        record = {**record, "file": dest.name, "time": _utc_now()}
        _append_line(dest_dir / f"{subdir}.jsonl", record)
        os.rename(path, dest)
        _fsync_dir(dest_dir)
        _fsync_dir(self.path)
        return dest

    def _entry_stats(self) -> Iterator[os.stat_result]:
        with os.scandir(self.path) as it:
            for de in it:
                name = de.name
                if name.startswith(TEMP_PREFIX) or not name.endswith(ENTRY_SUFFIX):
                    continue
                if not UID_PATTERN.fullmatch(name[: -len(ENTRY_SUFFIX)]):
                    continue
                try:
                    if de.is_file(follow_symlinks=False):
                        yield de.stat(follow_symlinks=False)
                except FileNotFoundError:
                    continue

    # Defined last: inside the class body the name ``bytes`` is this method from here on.
    def bytes(self) -> int:
        """Total size of the pending entries (what an upload would have to carry)."""
        return sum(st.st_size for st in self._entry_stats())


def _str_or_none(value: object) -> str | None:
    return value if isinstance(value, str) else None


def _unlink_quietly(path: Path) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


def _count_json(directory: Path) -> int:
    if not directory.is_dir():
        return 0
    return sum(1 for p in directory.iterdir() if p.name.endswith(ENTRY_SUFFIX))


def _free_name(directory: Path, name: str) -> Path:
    """``name`` in ``directory``, or ``stem.N.json`` if taken: a second bad copy never overwrites the first."""
    dest = directory / name
    n = 1
    stem = name[: -len(ENTRY_SUFFIX)] if name.endswith(ENTRY_SUFFIX) else name
    while dest.exists():
        dest = directory / f"{stem}.{n}{ENTRY_SUFFIX}"
        n += 1
    return dest
