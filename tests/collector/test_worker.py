"""The worker alone: log -> store exactly once, quarantine, deletion in log order, one worker per directory."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import orjson
import pytest
from collector_harness import vary

from netvigil.analysis import FingerprintDB
from netvigil.collector.log import MeasurementLog
from netvigil.collector.worker import Worker, WorkerBusy, read_state
from netvigil.store import open_store


def stored_bytes(doc: dict[str, Any], uid: str) -> bytes:
    return orjson.dumps({**doc, "measurement_uid": uid})


def write_log(data_dir: Path, records: list[tuple[str, bytes]], delete: list[str] = ()) -> None:
    async def main() -> None:
        log = MeasurementLog.open(data_dir / "log")
        await log.start()
        for i, (uid, data) in enumerate(records):
            await log.submit(i.to_bytes(16, "little"), lambda uid=uid, data=data: (uid, "report", data))
        for uid in delete:
            assert await log.delete(uid) is not None
        await log.close()

    asyncio.run(main())


def test_the_worker_stores_each_measurement_once_and_quarantines_the_rest(tmp_path: Path, bases) -> None:
    good = [(f"uid-{i}", stored_bytes(vary(bases[i], i, "r"), f"uid-{i}")) for i in range(5)]
    bad = [("uid-yaml", b"---\nreport: yes\n"), ("uid-notjson", b"\xff\xfe garbage"),
           ("uid-other", stored_bytes(vary(bases[0], 9, "r"), "someone-else"))]
    write_log(tmp_path, good[:3] + bad + good[3:])
    with open_store(tmp_path / "store.duckdb") as st:
        worker = Worker(tmp_path, st, FingerprintDB(), batch_size=4)
        with pytest.raises(WorkerBusy):
            Worker(tmp_path, st, FingerprintDB())
        assert worker.drain() == 8
        assert st.known_uids([u for u, _ in good]) == {u for u, _ in good}
        assert st.stats()["tables"]["measurements"] == 5 and st.stats()["tables"]["verdicts"] >= 5
        worker.close()
    state = read_state(tmp_path)
    assert (state.records, state.stored, state.quarantined, state.skipped) == (8, 5, 3, 0)
    lines = [orjson.loads(x) for x in (tmp_path / "quarantine" / "records.jsonl").read_bytes().splitlines()]
    assert {(x["uid"], x["reason"]) for x in lines} == {("uid-yaml", "legacy_yaml"), ("uid-notjson", "invalid_json"),
                                                        ("uid-other", "uid_mismatch")}
    notjson = next(x for x in lines if x["uid"] == "uid-notjson")
    assert notjson["encoding"] == "base64"  # kept whole, even when it is not text

    # a crash after the store commit but before the offset was written: everything is processed again
    (tmp_path / "state" / "worker.json").unlink()
    with open_store(tmp_path / "store.duckdb") as st:
        worker = Worker(tmp_path, st, FingerprintDB())
        assert worker.drain() == 8
        assert st.stats()["tables"]["measurements"] == 5  # nothing twice
        worker.close()
    assert read_state(tmp_path).skipped == 5


def test_tombstones_delete_in_log_order(tmp_path: Path, bases) -> None:
    docs = [(f"uid-{i}", stored_bytes(vary(bases[i], i, "r"), f"uid-{i}")) for i in range(3)]
    write_log(tmp_path, docs, delete=["uid-1"])
    with open_store(tmp_path / "store.duckdb") as st:
        worker = Worker(tmp_path, st, FingerprintDB())
        assert worker.drain() == 4  # three measurements (one redacted) and the tombstone
        assert st.known_uids(["uid-0", "uid-1", "uid-2"]) == {"uid-0", "uid-2"}
        assert worker.wait_past(worker.state.position._replace(offset=0), 0.1)
        worker.close()
    assert read_state(tmp_path).deleted == 0  # the redacted record was never stored, so nothing to delete


def test_a_tombstone_after_the_measurement_was_stored(tmp_path: Path, bases) -> None:
    docs = [(f"uid-{i}", stored_bytes(vary(bases[i], i, "r"), f"uid-{i}")) for i in range(2)]
    write_log(tmp_path, docs)
    with open_store(tmp_path / "store.duckdb") as st:
        worker = Worker(tmp_path, st, FingerprintDB())
        worker.drain()
        assert st.known_uids(["uid-0"]) == {"uid-0"}
        before = st.stats()["tables"]
        worker.close()
    write_log(tmp_path, [], delete=["uid-0"])
    with open_store(tmp_path / "store.duckdb") as st:
        worker = Worker(tmp_path, st, FingerprintDB())
        assert worker.drain() == 1
        assert st.known_uids(["uid-0", "uid-1"]) == {"uid-1"}
        after = st.stats()["tables"]
        assert after["measurements"] == 1 and after["verdicts"] < before["verdicts"]
        assert after["observations"] < before["observations"]  # with its observations and verdicts
        worker.close()
    assert read_state(tmp_path).deleted == 1
