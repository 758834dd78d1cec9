"""The measurement log alone: group commit, idempotency index, torn tails, corruption, deletion, failures."""

from __future__ import annotations

import asyncio
import errno
import os
import shutil
from pathlib import Path

import pytest

from netvigil.collector import log as logmod
from netvigil.collector.log import (
    KIND_MEASUREMENT,
    KIND_REDACTED,
    KIND_TOMBSTONE,
    SEGMENT_MAGIC,
    LogError,
    LogReader,
    LogUnavailable,
    MeasurementLog,
    Position,
    Receipt,
    segment_path,
    segments,
)


def key(i: int) -> bytes:
    return i.to_bytes(16, "little")


def payload(i: int, size: int = 300) -> bytes:
    return (f'{{"n":{i},"pad":"'.encode() + b"x" * size + b'"}')


async def fill(log: MeasurementLog, n: int, start: int = 0) -> list[Receipt]:
    async def one(i: int) -> Receipt:
        receipt, replayed = await log.submit(key(i), lambda: (f"uid-{i}", f"report-{i % 3}", payload(i)))
        assert not replayed
        return receipt

    return list(await asyncio.gather(*(one(i) for i in range(start, start + n))))


def run(coro):
    return asyncio.run(coro)


async def opened(directory: Path, **kw) -> MeasurementLog:
    log = MeasurementLog.open(directory, **kw)
    await log.start()
    return log


def records(directory: Path) -> list:
    return list(LogReader(directory, Position(1, len(SEGMENT_MAGIC))))


def test_concurrent_submissions_share_fsyncs(tmp_path: Path) -> None:
    async def main() -> None:
        log = await opened(tmp_path)
        receipts = await fill(log, 500)
        assert len({r.measurement_uid for r in receipts}) == 500
        assert log.stats.records == 500
        assert 1 <= log.stats.commits <= 50, log.stats.commits  # group commit: far fewer fsyncs than records
        await log.close()

    run(main())
    got = records(tmp_path)
    assert [r.uid for r in got] == [f"uid-{i}" for i in range(500)]
    assert all(r.kind == KIND_MEASUREMENT and r.data == payload(int(r.uid[4:])) for r in got)


def test_a_key_is_stored_once_concurrently_and_after_reopen(tmp_path: Path) -> None:
    built: list[int] = []

    def build(n: int):
        def make() -> tuple[str, str, bytes]:
            built.append(n)
            return f"uid-{n}", "report", payload(n)
        return make

    async def first() -> None:
        log = await opened(tmp_path)
        (a, ra), (b, rb) = await asyncio.gather(log.submit(key(7), build(1)), log.submit(key(7), build(2)))
        assert a == b == Receipt("uid-1", "report")
        assert (ra, rb) == (False, True)
        assert await log.submit(key(7), build(3)) == (a, True)
        await log.close()

    async def second() -> None:
        log = await opened(tmp_path)
        assert log.lookup(key(7)) == Receipt("uid-1", "report")
        assert await log.submit(key(7), build(4)) == (Receipt("uid-1", "report"), True)
        assert log.stats.records == 1
        await log.close()

    run(first())
    run(second())
    assert built == [1]  # the replays never made a uid or a record
    assert len(records(tmp_path)) == 1


def test_torn_tail_is_cut_at_every_possible_point(tmp_path: Path) -> None:
    async def main() -> None:
        log = await opened(tmp_path / "orig")
        await fill(log, 3)
        await log.close()

    run(main())
    orig = segment_path(tmp_path / "orig", 1).read_bytes()
    last = records(tmp_path / "orig")[-1]
    start, end = last.position.offset, last.end
    assert end == len(orig)
    for cut in range(start + 1, end):
        d = tmp_path / f"cut{cut}"
        d.mkdir()
        segment_path(d, 1).write_bytes(orig[:cut])

        async def reopen(d: Path = d, cut: int = cut) -> None:
            log = await opened(d)
            assert log.stats.truncated_bytes == cut - start
            assert log.lookup(key(2)) is None and log.lookup(key(1)) == Receipt("uid-1", "report-1")
            _, replayed = await log.submit(key(2), lambda: ("again", "r", b"{}"))
            assert not replayed and log.end.offset > start
            await log.close()

        run(reopen())
        assert segment_path(d, 1).stat().st_size == start + logmod.HEAD_SIZE + logmod._FIXED.size + 5 + 1 + 2
        assert [r.uid for r in records(d)] == ["uid-0", "uid-1", "again"]
        shutil.rmtree(d)


def test_garbage_and_bad_checksum_at_the_tail_are_cut(tmp_path: Path) -> None:
    async def main() -> None:
        log = await opened(tmp_path)
        await fill(log, 2)
        await log.close()

    run(main())
    path = segment_path(tmp_path, 1)
    good = path.read_bytes()
    path.write_bytes(good + b"NVR1" + os.urandom(200))  # a header-looking half record
    run(_reopen_check(tmp_path, 2, len(good)))
    corrupted = bytearray(good)
    corrupted[-5] ^= 0xFF  # one bit of the last record's data: its checksum fails
    path.write_bytes(bytes(corrupted))
    run(_reopen_check(tmp_path, 1, None))


async def _reopen_check(d: Path, expected: int, size: int | None) -> None:
    log = await opened(d)
    assert log.stats.records == expected and log.stats.truncated_bytes > 0
    if size is not None:
        assert segment_path(d, 1).stat().st_size == size
    await log.close()


def test_segments_rotate_and_the_reader_follows(tmp_path: Path) -> None:
    async def main() -> None:
        log = await opened(tmp_path, segment_bytes=4096)
        for i in range(0, 120, 10):  # several commits, so rotation happens between them
            await fill(log, 10, start=i)
        await log.close()
        log = await opened(tmp_path, segment_bytes=4096)
        assert all(log.lookup(key(i)) == Receipt(f"uid-{i}", f"report-{i % 3}") for i in range(120))
        await log.close()

    run(main())
    assert len(segments(tmp_path)) > 3
    reader = LogReader(tmp_path, Position(1, 0))
    got = []
    while batch := reader.read(max_records=7):
        got.extend(batch)
    assert [r.uid for r in got] == [f"uid-{i}" for i in range(120)]
    assert reader.read() == []  # waits at the end of the last segment


def test_corruption_in_a_sealed_segment(tmp_path: Path) -> None:
    quarantine = tmp_path / "quarantine"
    tmp_path = tmp_path / "log"  # the log's quarantine is its sibling

    async def main() -> None:
        log = await opened(tmp_path, segment_bytes=2048)
        for i in range(0, 30, 5):
            await fill(log, 5, start=i)
        await log.close()

    run(main())
    assert len(segments(tmp_path)) >= 3
    first = records(tmp_path)
    in_seg1 = [r for r in first if r.position.segment == 1]
    # (a) data corrupted: the header walk at open cannot see it; the reader hands the rest of the segment
    # over as a corrupt record (for the worker's quarantine) and goes on with the next segment.
    path = segment_path(tmp_path, 1)
    raw = bytearray(path.read_bytes())
    victim = in_seg1[1]
    raw[victim.end - 3] ^= 0x01
    path.write_bytes(bytes(raw))
    got = records(tmp_path)
    corrupt = [r for r in got if r.kind == 0]
    assert len(corrupt) == 1 and corrupt[0].position == victim.position
    assert corrupt[0].data == bytes(raw[victim.position.offset:])
    readable = [r.uid for r in first if r.position.segment > 1 or r.end <= victim.position.offset]
    assert [r.uid for r in got if r.kind] == readable
    # (b) framing corrupted: found at open, the rest of the segment is kept in quarantine and cut
    raw[victim.position.offset] = ord("X")
    path.write_bytes(bytes(raw))

    async def reopen() -> None:
        log = await opened(tmp_path, segment_bytes=2048)
        assert log.lookup(key(int(victim.uid[4:]))) is None
        await log.close()

    run(reopen())
    kept = list(quarantine.glob("0000000001.seg.corrupt-at-*"))
    assert len(kept) == 1 and kept[0].read_bytes() == bytes(raw[victim.position.offset:])
    assert path.stat().st_size == victim.position.offset


def test_delete_zeroes_the_data_keeps_the_receipt(tmp_path: Path) -> None:
    secret = b"personal data that must go"

    async def main() -> None:
        log = await opened(tmp_path)
        for i in range(3):
            await log.submit(key(i), lambda i=i: (f"uid-{i}", "report", b'{"x":"' + secret + b'","i":%d}' % i))
        assert await log.delete("nope") is None
        tomb = await log.delete("uid-1")
        assert tomb is not None and tomb.offset > 0
        assert await log.delete("uid-1") is not None  # already deleted: nothing new
        assert log.lookup(key(1)) == Receipt("uid-1", "report")
        assert await log.submit(key(1), lambda: ("uid-new", "r", b"{}")) == (Receipt("uid-1", "report"), True)
        await log.close()

    run(main())
    data = segment_path(tmp_path, 1).read_bytes()
    assert data.count(secret) == 2  # uid-0 and uid-2 only
    kinds = [(r.kind, r.uid) for r in records(tmp_path)]
    assert kinds == [(KIND_MEASUREMENT, "uid-0"), (KIND_REDACTED, "uid-1"), (KIND_MEASUREMENT, "uid-2"),
                     (KIND_TOMBSTONE, "uid-1")]

    async def reopen() -> None:
        log = await opened(tmp_path)
        assert log.lookup(key(1)) == Receipt("uid-1", "report") and log.stats.records == 4
        await log.close()

    run(reopen())


def test_a_delete_interrupted_before_the_rewrite_is_finished_on_open(tmp_path: Path) -> None:
    async def main() -> None:
        log = await opened(tmp_path)
        await fill(log, 3)
        await log.close()

    run(main())
    path = segment_path(tmp_path, 1)
    before = path.read_bytes()

    async def delete() -> None:
        log = await opened(tmp_path)
        await log.delete("uid-1")
        await log.close()

    run(delete())
    after = path.read_bytes()
    tombstone = after[len(before):]
    path.write_bytes(before + tombstone)  # the crash: tombstone durable, segment not yet rewritten
    assert payload(1) in path.read_bytes()
    run(_reopen_check_records(tmp_path))
    assert payload(1) not in path.read_bytes() and path.read_bytes() == after


async def _reopen_check_records(d: Path) -> None:
    log = await opened(d)
    assert log.stats.records == 4
    await log.close()


def test_one_writer_per_directory(tmp_path: Path) -> None:
    first = MeasurementLog.open(tmp_path)
    try:
        with pytest.raises(LogError, match="another collector"):
            MeasurementLog.open(tmp_path)
    finally:
        first.close_sync()
    MeasurementLog.open(tmp_path).close_sync()


def test_a_failed_write_acknowledges_nothing_and_leaves_no_garbage(tmp_path: Path, monkeypatch) -> None:
    real = logmod._write_all
    calls = {"n": 0}

    def half_then_enospc(fd: int, data: bytes) -> None:
        calls["n"] += 1
        if calls["n"] == 2:
            os.write(fd, data[: len(data) // 2])
            raise OSError(errno.ENOSPC, "No space left on device")
        real(fd, data)

    async def main() -> None:
        log = await opened(tmp_path)
        monkeypatch.setattr(logmod, "_write_all", half_then_enospc)
        await fill(log, 1)
        with pytest.raises(LogUnavailable, match="No space left"):
            await log.submit(key(1), lambda: ("uid-1", "r", payload(1)))
        assert log.lookup(key(1)) is None
        receipt, replayed = await log.submit(key(1), lambda: ("uid-1b", "r", payload(1)))  # the disk is back
        assert receipt.measurement_uid == "uid-1b" and not replayed
        await log.close()

    run(main())
    assert [r.uid for r in records(tmp_path)] == ["uid-0", "uid-1b"]
    assert segment_path(tmp_path, 1).stat().st_size == records(tmp_path)[-1].end


def test_after_a_failed_fsync_the_log_refuses_until_restarted(tmp_path: Path, monkeypatch) -> None:
    def failing(fd: int) -> None:
        raise OSError(errno.EIO, "Input/output error")

    async def main() -> None:
        log = await opened(tmp_path)
        monkeypatch.setattr(logmod.os, "fdatasync", failing)
        with pytest.raises(LogUnavailable):
            await fill(log, 1)
        monkeypatch.undo()
        with pytest.raises(LogUnavailable, match="restart"):
            await fill(log, 1, start=5)
        await log.close()

    run(main())


def test_a_segment_cut_short_while_being_created_is_removed(tmp_path: Path) -> None:
    async def main() -> None:
        log = await opened(tmp_path, segment_bytes=1024)
        await fill(log, 5)
        await fill(log, 5, start=5)  # the second group goes to a new segment
        await log.close()

    run(main())
    last = segments(tmp_path)[-1]
    assert last == 2
    segment_path(tmp_path, 3).write_bytes(SEGMENT_MAGIC[:3])  # the crash: created, header half written

    async def reopen() -> None:
        log = await opened(tmp_path, segment_bytes=1024)
        assert log.stats.records == 10 and log.end.segment == 2
        _, replayed = await log.submit(key(10), lambda: ("uid-10", "r", payload(10)))
        assert not replayed
        await log.close()

    run(reopen())
    assert [r.uid for r in records(tmp_path)] == [f"uid-{i}" for i in range(11)]


def test_close_writes_what_is_still_queued(tmp_path: Path) -> None:
    async def main() -> None:
        log = await opened(tmp_path)
        pending = [asyncio.ensure_future(log.submit(key(i), lambda i=i: (f"uid-{i}", "r", payload(i))))
                   for i in range(20)]
        await asyncio.sleep(0)  # queued, not yet written
        async with asyncio.timeout(10):  # (it used to wait for a wake-up that never came)
            await log.close()
            results = await asyncio.gather(*pending)
        assert [r.measurement_uid for r, replayed in results] == [f"uid-{i}" for i in range(20)]

    run(main())
    assert len(records(tmp_path)) == 20
