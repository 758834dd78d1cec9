"""The spool: durable writes, oldest-first listing, claims across processes, nothing ever lost silently."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from netvigil.probe.spool import STALE_TEMP_SECONDS, Spool


def _measurement(uid: str) -> bytes:
    return json.dumps({"id": uid, "test_name": "web_connectivity", "probe_ip": "127.0.0.1"}).encode()


def test_put_pending_ack_in_order(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "spool")
    now = time.time()
    for i, uid in enumerate(["c-third", "a-first", "b-second"]):
        path = spool.put(_measurement(uid), uid)
        assert path == spool.path / f"{uid}.json"
        assert path.read_bytes() == _measurement(uid)
        os.utime(path, (now - 100 + {"a-first": 0, "b-second": 10, "c-third": 20}[uid],) * 2)
        assert i + 1 == spool.count()
    entries = list(spool.pending())
    assert [e.uid for e in entries] == ["a-first", "b-second", "c-third"]
    assert [e.raw for e in entries] == [_measurement(u) for u in ("a-first", "b-second", "c-third")]
    assert spool.bytes() == sum(len(_measurement(u)) for u in ("a-first", "b-second", "c-third"))

    # idempotent: a second put of the same uid keeps the first durable copy
    assert spool.put(b"something else", "a-first") == spool.path / "a-first.json"
    assert (spool.path / "a-first.json").read_bytes() == _measurement("a-first")
    assert spool.count() == 3

    line = spool.ack("b-second", {"report_id": "R1", "measurement_uid": "M1", "other": 1})
    assert not (spool.path / "b-second.json").exists()
    assert [e.uid for e in spool.pending()] == ["a-first", "c-third"]
    audit = [json.loads(x) for x in (spool.path / "delivered.jsonl").read_text().splitlines()]
    assert len(audit) == 1
    assert {k: audit[0][k] for k in ("uid", "report_id", "measurement_uid")} == {
        "uid": "b-second", "report_id": "R1", "measurement_uid": "M1"}
    assert audit[0]["time"].endswith("Z") and line.time == audit[0]["time"]
    assert [d.uid for d in spool.delivered()] == ["b-second"]
    # nothing but entries and the audit log: no temp files left behind by put
    assert sorted(p.name for p in spool.path.iterdir()) == ["a-first.json", "c-third.json", "delivered.jsonl"]


@pytest.mark.parametrize("uid", ["", "../escape", "a/b", "with space", "dot.name", "é", "x" * 201])
def test_unsafe_uid_is_refused(tmp_path: Path, uid: str) -> None:
    spool = Spool(tmp_path)
    with pytest.raises(ValueError, match="invalid spool uid"):
        spool.put(b"{}", uid)
    assert list(tmp_path.iterdir()) == []


def test_failed_write_leaves_nothing_visible(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    spool = Spool(tmp_path)

    def boom(src: object, dst: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", boom)
    with pytest.raises(OSError):
        spool.put(_measurement("u1"), "u1")
    monkeypatch.undo()
    assert list(tmp_path.iterdir()) == []
    assert spool.count() == 0


def test_stale_temp_file_is_cleaned_and_never_listed(tmp_path: Path) -> None:
    spool = Spool(tmp_path)
    spool.put(_measurement("kept"), "kept")
    stale = tmp_path / ".tmp-crashed.abc123"  # what a crash between write and rename leaves
    stale.write_bytes(b'{"half": ')
    old = time.time() - STALE_TEMP_SECONDS - 5
    os.utime(stale, (old, old))
    fresh = tmp_path / ".tmp-writing.def456"  # a write in progress right now
    fresh.write_bytes(b'{"id": ')
    assert [e.uid for e in spool.pending()] == ["kept"]
    assert not stale.exists()
    assert fresh.exists()  # another process may still be writing it
    assert spool.count() == 1 and spool.bytes() == len(_measurement("kept"))


def test_misnamed_and_quarantined_files_go_to_bad(tmp_path: Path) -> None:
    spool = Spool(tmp_path)
    (tmp_path / "not a uid.json").write_bytes(b"garbage")
    spool.put(b"\x00\x01 not json", "broken")
    assert [e.uid for e in spool.pending()] == ["broken"]
    spool.quarantine("broken", "not JSON")
    assert spool.count() == 0
    assert spool.bad_count() == 2
    assert (tmp_path / "bad" / "not a uid.json").read_bytes() == b"garbage"
    assert (tmp_path / "bad" / "broken.json").read_bytes() == b"\x00\x01 not json"
    reasons = [json.loads(x) for x in (tmp_path / "bad" / "bad.jsonl").read_text().splitlines()]
    assert {r["file"]: r["reason"] for r in reasons} == {
        "not a uid.json": "file name is not a spool uid", "broken.json": "not JSON"}
    # the same uid broken twice keeps both copies
    spool.put(b"again", "broken")
    spool.quarantine("broken", "not JSON")
    assert spool.bad_count() == 3 and (tmp_path / "bad" / "broken.1.json").read_bytes() == b"again"


def test_reject_keeps_entry_and_answer(tmp_path: Path) -> None:
    spool = Spool(tmp_path)
    spool.put(_measurement("r1"), "r1")
    dest = spool.reject("r1", "collector refused", status=400, answer='{"error": "bad"}')
    assert dest == tmp_path / "rejected" / "r1.json" and dest.read_bytes() == _measurement("r1")
    assert spool.count() == 0 and spool.rejected_count() == 1
    (record,) = [json.loads(x) for x in (tmp_path / "rejected" / "rejected.jsonl").read_text().splitlines()]
    assert record["uid"] == "r1" and record["status"] == 400 and record["answer"] == '{"error": "bad"}'


def test_claim_is_exclusive_and_follows_the_entry(tmp_path: Path) -> None:
    spool = Spool(tmp_path)
    spool.put(_measurement("u1"), "u1")
    first = spool.claim("u1")
    assert first is not None and first.read() == _measurement("u1")
    assert spool.claim("u1") is None  # held (flock conflicts between descriptions, even in one process)
    first.release()
    with spool.claim("u1") as again:
        assert again is not None
        spool.ack("u1", {"report_id": "R"})
    assert spool.claim("u1") is None  # gone
    assert spool.claim("never-existed") is None


def _run(code: str, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-c", textwrap.dedent(code), *args],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_claim_of_a_dead_process_is_recovered(tmp_path: Path) -> None:
    spool = Spool(tmp_path)
    spool.put(_measurement("u1"), "u1")
    holder = _run("""
        import sys, time
        from netvigil.probe.spool import Spool
        claim = Spool(sys.argv[1]).claim("u1")
        print("CLAIMED" if claim else "MISSED", flush=True)
        time.sleep(30)
    """, str(tmp_path))
    try:
        assert holder.stdout is not None
        assert holder.stdout.readline().strip() == "CLAIMED"
        assert spool.claim("u1") is None
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.communicate(timeout=10)
    claim = spool.claim("u1")
    assert claim is not None and claim.read() == _measurement("u1")
    claim.release()


def test_two_processes_claim_each_entry_once(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "spool")
    uids = [f"m{i:03d}" for i in range(40)]
    for uid in uids:
        spool.put(_measurement(uid), uid)
    go = tmp_path / "go"
    worker = """
        import sys, time
        from pathlib import Path
        from netvigil.probe.spool import Spool
        spool, go = Spool(sys.argv[1]), Path(sys.argv[2])
        deadline = time.monotonic() + 10
        while not go.exists() and time.monotonic() < deadline:
            time.sleep(0.005)
        for entry in spool.pending():
            claim = spool.claim(entry.uid)
            if claim is None:
                continue  # the other process has it, or already delivered it
            with claim:
                time.sleep(0.005)  # "delivering"
                spool.ack(entry.uid, {"report_id": sys.argv[3]})
                print(entry.uid, flush=True)
    """
    procs = [_run(worker, str(spool.path), str(go), name) for name in ("A", "B")]
    go.touch()
    outs = []
    for proc in procs:
        out, err = proc.communicate(timeout=30)
        assert proc.returncode == 0, err
        outs.append(out.split())
    a, b = outs
    assert not set(a) & set(b)
    assert sorted(a + b) == uids
    audit = spool.delivered()
    assert sorted(d.uid for d in audit) == uids  # each exactly once
    assert spool.count() == 0
