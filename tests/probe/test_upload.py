"""The uploader against a real collector process on loopback: exactly once, whatever fails."""

from __future__ import annotations

import asyncio
import json
import selectors
import signal
import socket
import subprocess
import sys
import textwrap
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import pytest

from netvigil.probe.netx import TLSConfig
from netvigil.probe.spool import Spool
from netvigil.probe.upload import UploadEvent, UploadResult, upload_spool

COLLECTOR = Path(__file__).with_name("collector_server.py")
FAST = {"max_attempts": 3, "timeout": 5.0, "backoff_base": 0.01, "backoff_cap": 0.05}


@dataclass
class Collector:
    proc: subprocess.Popen[str]
    url: str
    out: Path
    stats_path: Path

    def stored(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.out.read_text().splitlines() if line.strip()]

    def stats(self) -> dict[str, Any]:
        return json.loads(self.stats_path.read_text())

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            _, err = self.proc.communicate(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.communicate(timeout=10)
            raise
        assert self.proc.returncode == 0, err
        return self.proc.returncode


@pytest.fixture
def collectors(tmp_path: Path):
    """Start collector_server.py processes; each must exit 0 on SIGTERM at teardown."""
    started: list[Collector] = []

    def start(*extra: str, scheme: str = "http") -> Collector:
        n = len(started)
        out, stats = tmp_path / f"collector{n}.jsonl", tmp_path / f"collector{n}-stats.json"
        proc = subprocess.Popen(
            [sys.executable, str(COLLECTOR), "--host", "127.0.0.1", "--port", "0", "--out", str(out),
             "--stats", str(stats), *extra],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )
        assert proc.stdout is not None
        with selectors.DefaultSelector() as sel:
            sel.register(proc.stdout, selectors.EVENT_READ)
            ready = sel.select(timeout=15)
        line = proc.stdout.readline().split() if ready else []
        if not line or line[0] != "READY":
            proc.kill()
            _, err = proc.communicate(timeout=10)
            pytest.fail(f"collector did not start: {err}")
        collector = Collector(proc, f"{scheme}://{line[1]}", out, stats)
        started.append(collector)
        return collector

    yield start
    for collector in started:
        assert collector.stop() == 0


def measurement(i: int, *, test_name: str = "web_connectivity", **override: Any) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "annotations": {"engine_name": "netvigil", "platform": "linux"},
        "data_format_version": "0.2.0",
        "id": f"00000000-0000-4000-8000-{i:012d}",
        "input": f"https://site{i}.example/",
        "measurement_start_time": f"2024-03-01 10:00:{i % 60:02d}",
        "probe_asn": "AS64496",
        "probe_cc": "ZZ",
        "probe_ip": "127.0.0.1",
        "probe_network_name": "Lab network",
        "report_id": "",
        "resolver_ip": "198.51.100.53",
        "software_name": "netvigil",
        "software_version": "0.1.0",
        "test_keys": {"accessible": True, "blocking": False, "ratio": 0.1 + 0.2, "note": "é ✓ 漢",
                      "requests": [{"t": 0.123456, "failure": None}]},
        "test_name": test_name,
        "test_runtime": 1.000001,
        "test_start_time": "2024-03-01 10:00:00",
        "test_version": "0.4.3",
    }
    doc.update(override)
    return doc


def fill(spool: Spool, docs: dict[str, dict[str, Any]]) -> None:
    for uid, doc in docs.items():
        spool.put(orjson.dumps(doc), uid)


def upload(spool: Spool, url: str, events: list[UploadEvent] | None = None, **kw: Any) -> UploadResult:
    params = {**FAST, **kw}
    tls = params.pop("tls", TLSConfig())
    return asyncio.run(upload_spool(spool, url, tls=tls, on_progress=events.append if events is not None else None,
                                    **params))


def by_id(stored: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    counts = Counter(doc["id"] for doc in stored)
    assert all(n == 1 for n in counts.values()), f"stored more than once: {counts}"
    return {doc["id"]: doc for doc in stored}


def assert_stored_as_spooled(stored: dict[str, Any], spooled: dict[str, Any]) -> None:
    """Everything equal (values and key order) except the collector-assigned report_id."""
    assert stored["report_id"] and stored["report_id"] != spooled["report_id"]
    assert list(stored) == list(spooled)
    assert {**stored, "report_id": ""} == {**spooled, "report_id": ""}


def test_delivers_every_entry_exactly_once(tmp_path: Path, collectors) -> None:
    collector = collectors()
    spool = Spool(tmp_path / "spool")
    docs = {f"m{i:03d}": measurement(i) for i in range(4)}
    docs |= {f"t{i:03d}": measurement(10 + i, test_name="telegram", test_version="0.3.0") for i in range(2)}
    fill(spool, docs)
    events: list[UploadEvent] = []

    result = upload(spool, collector.url, events)

    assert (result.delivered, result.already_delivered, result.failed_transient, result.rejected, result.bad) == (
        6, 0, 0, 0, 0)
    assert result.errors == []
    stored = by_id(collector.stored())
    assert len(stored) == 6
    for uid, doc in docs.items():
        assert_stored_as_spooled(stored[doc["id"]], doc)
    # one report per group, measurements of a group share it
    web = {stored[docs[u]["id"]]["report_id"] for u in docs if u.startswith("m")}
    tg = {stored[docs[u]["id"]]["report_id"] for u in docs if u.startswith("t")}
    assert len(web) == 1 and len(tg) == 1 and web != tg
    stats = collector.stats()
    assert stats["requests"] == {"open": 2, "submit": 6, "close": 2}
    assert stats["stored"] == 6 and stats["duplicates"] == 0
    # the spool is empty and the audit log says what left, under which report
    assert spool.count() == 0 and spool.bytes() == 0
    audit = {d.uid: d for d in spool.delivered()}
    assert sorted(audit) == sorted(docs)
    for uid, doc in docs.items():
        assert audit[uid].report_id == stored[doc["id"]]["report_id"]
        assert audit[uid].measurement_uid
    kinds = Counter(e.kind for e in events)
    assert kinds["delivered"] == 6 and kinds["report_opened"] == 2 and kinds["report_closed"] == 2

    # a second run has nothing to do and sends nothing
    again = upload(spool, collector.url)
    assert again == UploadResult()
    assert collector.stats()["requests"] == {"open": 2, "submit": 6, "close": 2}


def _refused_port() -> tuple[socket.socket, int]:
    """A loopback port that is bound but not listening: connecting is refused, and nobody else can take it."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    return sock, sock.getsockname()[1]


def test_unreachable_collector_leaves_entries_for_later(tmp_path: Path, collectors) -> None:
    spool = Spool(tmp_path / "spool")
    docs = {f"m{i:03d}": measurement(i) for i in range(3)}
    fill(spool, docs)
    sock, port = _refused_port()
    try:
        events: list[UploadEvent] = []
        result = upload(spool, f"http://127.0.0.1:{port}", events)
    finally:
        sock.close()
    assert result.failed_transient == 3
    assert (result.delivered, result.already_delivered, result.rejected, result.bad) == (0, 0, 0, 0)
    assert result.errors and "connection_refused" in result.errors[0]
    # retried with backoff before giving up, then no more traffic for the other entries
    assert sum(e.kind == "retry" for e in events) == FAST["max_attempts"] - 1
    assert sorted(e.uid for e in spool.pending()) == sorted(docs)
    assert not (spool.path / "delivered.jsonl").exists()

    collector = collectors()
    later = upload(spool, collector.url)
    assert later.delivered == 3 and later.failed_transient == 0
    assert sorted(by_id(collector.stored())) == sorted(d["id"] for d in docs.values())
    assert spool.count() == 0


def test_lost_ack_is_retried_and_stored_once(tmp_path: Path, collectors) -> None:
    collector = collectors("--drop-first-ack", "1")
    spool = Spool(tmp_path / "spool")
    docs = {f"m{i:03d}": measurement(i) for i in range(3)}
    fill(spool, docs)

    result = upload(spool, collector.url)

    assert result.delivered + result.already_delivered == 3
    assert result.already_delivered == 1  # the retry of the lost ack got the first receipt back
    assert result.failed_transient == 0 and result.rejected == 0
    stored = by_id(collector.stored())  # each uid once
    assert len(stored) == 3
    stats = collector.stats()
    assert stats["dropped_acks"] == 1 and stats["duplicates"] == 1 and stats["stored"] == 3
    audit = {d.uid: d for d in spool.delivered()}
    assert sorted(audit) == sorted(docs)
    for uid, doc in docs.items():  # the replayed receipt names the report the copy really is in
        assert audit[uid].report_id == stored[doc["id"]]["report_id"]


def test_lost_ack_in_one_run_is_settled_by_the_next(tmp_path: Path, collectors) -> None:
    """The collector stored it but we never heard back (as after a crash before ack): no second copy."""
    collector = collectors("--drop-first-ack", "1")
    spool = Spool(tmp_path / "spool")
    docs = {"m000": measurement(0), "m001": measurement(1)}
    fill(spool, docs)

    first = upload(spool, collector.url, max_attempts=1)
    assert first.failed_transient == 2 and first.delivered == 0  # gave up on m000; m001 not tried
    assert [e.uid for e in spool.pending()] == ["m000", "m001"]
    assert len(collector.stored()) == 1

    second = upload(spool, collector.url)
    assert second.already_delivered == 1 and second.delivered == 1
    stored = by_id(collector.stored())
    assert len(stored) == 2
    audit = {d.uid: d.report_id for d in spool.delivered()}
    # m000 was filed under the first run's report; its receipt says so although we re-sent it under another
    assert audit["m000"] == stored[docs["m000"]["id"]]["report_id"]
    assert audit["m000"] != audit["m001"]


def test_transient_5xx_is_retried(tmp_path: Path, collectors) -> None:
    collector = collectors("--fail-first", "2")
    spool = Spool(tmp_path / "spool")
    fill(spool, {"m000": measurement(0)})
    events: list[UploadEvent] = []
    result = upload(spool, collector.url, events)
    assert result.delivered == 1 and result.failed_transient == 0
    assert [e.detail.split(";")[0] for e in events if e.kind == "retry"] == [
        f"POST /report/{collector.stored()[0]['report_id']}: HTTP 503"] * 2
    assert collector.stats()["unavailable"] == 2


def test_refused_submission_goes_to_rejected(tmp_path: Path, collectors) -> None:
    collector = collectors()
    spool = Spool(tmp_path / "spool")
    good = measurement(1)
    refused = measurement(2, measurement_start_time="yesterday")  # the collector MUST 4xx this
    fill(spool, {"good": good, "refused": refused})

    result = upload(spool, collector.url)

    assert result.delivered == 1 and result.rejected == 1 and result.failed_transient == 0
    assert [d["id"] for d in collector.stored()] == [good["id"]]
    assert spool.count() == 0 and spool.rejected_count() == 1
    kept = spool.path / "rejected" / "refused.json"
    assert orjson.loads(kept.read_bytes()) == refused  # kept exactly as spooled
    (why,) = [json.loads(x) for x in (spool.path / "rejected" / "rejected.jsonl").read_text().splitlines()]
    assert why["uid"] == "refused" and why["status"] == 400 and "measurement_start_time" in why["answer"]


def test_refused_report_rejects_its_group_with_one_request(tmp_path: Path, collectors) -> None:
    collector = collectors()
    spool = Spool(tmp_path / "spool")
    fill(spool, {"a": measurement(1, probe_asn="64496"), "b": measurement(2, probe_asn="64496"),
                 "ok": measurement(3)})  # bk-003: probe_asn MUST match ^AS[0-9]{1,10}$

    result = upload(spool, collector.url)

    assert result.rejected == 2 and result.delivered == 1
    assert collector.stats()["requests"]["open"] == 2  # one refused, one for the good group; no retry of the refusal
    assert sorted(p.name for p in (spool.path / "rejected").glob("*.json")) == ["a.json", "b.json"]


def test_stale_report_is_reopened(tmp_path: Path, collectors, monkeypatch: pytest.MonkeyPatch) -> None:
    """bk-003 3.2: a 4xx on a report opened long ago means: open a new one, re-file the measurement there."""
    import netvigil.probe.upload as upload_module

    monkeypatch.setattr(upload_module, "REOPEN_AFTER", 0.2)
    collector = collectors("--report-ttl", "0.3", "--fail-first", "1")
    spool = Spool(tmp_path / "spool")
    fill(spool, {"m000": measurement(0)})
    events: list[UploadEvent] = []

    # the 503 makes the retry come 0.4-0.8 s after the open: the report has expired by then
    result = upload(spool, collector.url, events, backoff_base=0.8, backoff_cap=0.8)

    assert result.delivered == 1 and result.rejected == 0 and result.errors == []
    opened = [e.report_id for e in events if e.kind == "report_opened"]
    assert len(opened) == 2
    assert collector.stored()[0]["report_id"] == opened[1]
    assert spool.delivered()[0].report_id == opened[1]


def test_unscrubbed_probe_ip_is_never_sent(tmp_path: Path, collectors) -> None:
    collector = collectors()
    spool = Spool(tmp_path / "spool")
    fill(spool, {"leaky": measurement(1, probe_ip="203.0.113.7"), "no-ip": measurement(2, probe_ip=None)})

    result = upload(spool, collector.url)

    assert result.rejected == 2 and result.delivered == 0
    assert collector.stats()["requests"] == {"open": 0, "submit": 0, "close": 0}  # not even a report opened
    assert collector.stored() == []
    assert spool.rejected_count() == 2
    reasons = [json.loads(x)["reason"] for x in (spool.path / "rejected" / "rejected.jsonl").read_text().splitlines()]
    assert all("probe_ip" in r for r in reasons)
    assert all("203.0.113.7" not in r for r in reasons)


def test_malformed_entry_goes_to_bad(tmp_path: Path, collectors) -> None:
    collector = collectors()
    spool = Spool(tmp_path / "spool")
    fill(spool, {"good": measurement(1)})
    spool.put(b'{"truncated": ', "broken")
    spool.put(b"[1, 2, 3]", "a-list")
    (spool.path / "copied by hand.json").write_bytes(orjson.dumps(measurement(9)))  # not a spool uid

    result = upload(spool, collector.url)

    assert result.bad == 3 and result.delivered == 1
    assert spool.bad_count() == 3 and spool.count() == 0
    assert (spool.path / "bad" / "broken.json").read_bytes() == b'{"truncated": '
    assert len(collector.stored()) == 1


def test_two_uploaders_at_once_deliver_each_entry_once(tmp_path: Path, collectors) -> None:
    collector = collectors()
    spool = Spool(tmp_path / "spool")
    docs = {f"m{i:03d}": measurement(i) for i in range(24)}
    fill(spool, docs)
    code = textwrap.dedent("""
        import asyncio, sys
        import msgspec
        from netvigil.probe.netx import TLSConfig
        from netvigil.probe.spool import Spool
        from netvigil.probe.upload import upload_spool
        result = asyncio.run(upload_spool(Spool(sys.argv[1]), sys.argv[2], tls=TLSConfig(), batch_size=4,
                                          max_attempts=3, timeout=5.0, backoff_base=0.01, backoff_cap=0.05))
        print(msgspec.json.encode(result).decode())
    """)
    procs = [subprocess.Popen([sys.executable, "-c", code, str(spool.path), collector.url],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    results = []
    for proc in procs:
        out, err = proc.communicate(timeout=60)
        assert proc.returncode == 0, err
        results.append(json.loads(out))
    assert sum(r["delivered"] for r in results) == 24
    assert all(r["already_delivered"] == 0 and r["failed_transient"] == 0 for r in results)
    assert collector.stats()["duplicates"] == 0  # nobody even tried to send an entry the other one had
    assert sorted(by_id(collector.stored())) == sorted(d["id"] for d in docs.values())
    assert sorted(d.uid for d in spool.delivered()) == sorted(docs)


def test_upload_over_https(tmp_path: Path, collectors) -> None:
    from netvigil.lab.servers.ca import issue_leaf, make_ca

    ca = make_ca(tmp_path / "ca")
    leaf = issue_leaf(ca, ["127.0.0.1"], tmp_path / "ca" / "leaves")
    collector = collectors("--tls-cert", str(leaf.cert), "--tls-key", str(leaf.key), scheme="https")
    spool = Spool(tmp_path / "spool")
    fill(spool, {"m000": measurement(0)})

    untrusted = upload(spool, collector.url, tls=TLSConfig(), max_attempts=1)  # system store: not our CA
    assert untrusted.failed_transient == 1 and "ssl_unknown_authority" in untrusted.errors[0]
    assert collector.stored() == []

    result = upload(spool, collector.url, tls=TLSConfig(ca_file=str(ca.cert)))
    assert result.delivered == 1
    assert_stored_as_spooled(collector.stored()[0], measurement(0))


@pytest.mark.parametrize("url", ["ftp://127.0.0.1/", "127.0.0.1:8080", "http://", "http://127.0.0.1:99999/"])
def test_bad_collector_url_is_refused(tmp_path: Path, url: str) -> None:
    with pytest.raises(ValueError, match="invalid collector URL"):
        upload(Spool(tmp_path), url)
