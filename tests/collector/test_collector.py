"""The collector as a process on loopback: the probe's own uploader, restarts, tokens, metrics, the API."""

from __future__ import annotations

import asyncio
import re
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import orjson
from collector_harness import TOKEN, CollectorProc, group_of, open_body, request, vary

from netvigil.analysis import analyze
from netvigil.codec import decode_measurement
from netvigil.collector.log import KIND_MEASUREMENT, LogReader, Position, encode_record, segment_path, segments
from netvigil.probe.netx import TLSConfig
from netvigil.probe.spool import Spool
from netvigil.probe.upload import upload_spool
from netvigil.store import open_store

FAST = {"max_attempts": 3, "timeout": 10.0, "backoff_base": 0.01, "backoff_cap": 0.05}


def reports_for(c: CollectorProc, docs: list[dict[str, Any]]) -> dict[tuple[str, ...], str]:
    out: dict[tuple[str, ...], str] = {}
    for d in docs:
        if group_of(d) not in out:
            out[group_of(d)] = c.open_report(d)
    return out


def submit(c: CollectorProc, doc: dict[str, Any], key: str | None = None) -> Any:
    headers = {"X-Idempotency-Key": key} if key else {}
    return c.post(f"/report/{doc['report_id']}", {"format": "json", "content": doc}, headers)


def test_the_probe_uploader_delivers_exactly_once_and_verdicts_are_queryable(
        tmp_path: Path, collector, bases, fingerprints_dir: Path, fingerprints) -> None:
    c = collector("--fingerprints", str(fingerprints_dir))
    spool = Spool(tmp_path / "spool")
    docs = {f"u{i:03d}": {**vary(bases[i * 3 % len(bases)], i, ""), "report_id": ""} for i in range(30)}
    for uid, d in docs.items():
        spool.put(orjson.dumps(d), uid)

    result = asyncio.run(upload_spool(spool, f"http://127.0.0.1:{c.port}", tls=TLSConfig(), **FAST))
    assert (result.delivered, result.already_delivered, result.rejected, result.bad, result.failed_transient) == (
        30, 0, 0, 0, 0), result.errors
    receipts = {line.uid: line for line in spool.delivered()}
    assert sorted(receipts) == sorted(docs)

    # acknowledgements lost: the probe sends the same entries again; the collector replays, stores nothing new
    for uid in ("u000", "u007", "u029"):
        spool.put(orjson.dumps(docs[uid]), uid)
    again = asyncio.run(upload_spool(spool, f"http://127.0.0.1:{c.port}", tls=TLSConfig(), **FAST))
    assert (again.delivered, again.already_delivered) == (0, 3)
    replays = [line for line in spool.delivered() if line.uid in ("u000", "u007", "u029")]
    for uid in ("u000", "u007", "u029"):
        assert {r.measurement_uid for r in replays if r.uid == uid} == {receipts[uid].measurement_uid}

    stats = c.wait_drained()
    assert stats["store"]["tables"]["measurements"] == 30 and stats["worker"]["quarantined"] == 0
    answer = c.get("/api/v1/query?by=test_name,outcome")
    assert answer.status == 200
    got = {(row[0], row[1]): row[2] for row in answer.json()["rows"]}
    expected: Counter[tuple[str, str]] = Counter()
    for d in docs.values():  # the same judgement, made here from the spooled bytes
        _, verdicts = analyze(decode_measurement(orjson.dumps(d)), fingerprints)
        expected.update((v.test_name, str(v.outcome)) for v in verdicts)
    assert got == dict(expected)
    c.stop()

    with open_store(c.store_path, read_only=True) as st:
        for uid, line in receipts.items():
            stored = orjson.loads(st.get_raw(line.measurement_uid))
            assert stored["measurement_uid"] == line.measurement_uid and stored["report_id"] == line.report_id
            assert stored["probe_ip"] == "127.0.0.1"
            assert {k: v for k, v in stored.items() if k not in ("report_id", "measurement_uid")} == {
                k: v for k, v in docs[uid].items() if k not in ("report_id", "measurement_uid")}


def test_idempotency_survives_a_kill_and_a_torn_tail_is_cut(tmp_path: Path, collector, bases) -> None:
    c = collector()
    rids = reports_for(c, bases[:4])
    docs = [vary(bases[i], i, rids[group_of(bases[i])]) for i in range(4)] + \
           [vary(bases[i], 100 + i, rids[group_of(bases[i])]) for i in range(3)]
    keys = ["k0", "k1", "k2", "k3", None, None, None]  # the last three rely on the content hash
    first = []
    for d, k in zip(docs, keys, strict=True):
        answer = submit(c, d, k)
        assert answer.status == 200 and "idempotent-replayed" not in answer.headers
        first.append(answer.json()["measurement_uid"])
    c.kill()
    last = segments(c.data_dir / "log")[-1]
    half = encode_record(KIND_MEASUREMENT, b"\x01" * 16, 0, "torn", "torn", b"{" + b"x" * 4000 + b"}")
    with segment_path(c.data_dir / "log", last).open("ab") as fh:
        fh.write(half[: len(half) // 2])  # a crash in the middle of a write

    c.start()
    assert "cutting a torn tail" in c.stderr()
    for d, k, uid in zip(docs, keys, first, strict=True):
        answer = submit(c, d, k)
        assert answer.status == 200 and answer.headers.get("idempotent-replayed") == "true"
        assert answer.json()["measurement_uid"] == uid
    fresh = submit(c, vary(bases[0], 999, rids[group_of(bases[0])]), "k-new")
    assert fresh.status == 200 and "idempotent-replayed" not in fresh.headers
    stats = c.wait_drained()
    assert stats["store"]["tables"]["measurements"] == 8
    assert stats["log"]["measurements"] == 8 and stats["log"]["truncated_bytes"] == len(half) // 2
    kinds = [r.kind for r in LogReader(c.data_dir / "log", Position(1, 0))]
    assert kinds == [KIND_MEASUREMENT] * 8


def test_tokens_guard_the_read_and_admin_endpoints(collector) -> None:
    c = collector()
    for path in ("/api/v1/query", "/api/v1/stats"):
        assert c.get(path, token=None).status == 401
        assert c.get(path, token="wrong").status == 403
        assert c.get(path, token=TOKEN[:-1]).status == 403
        assert request(c.port, "GET", path, headers={"Authorization": f"Basic {TOKEN}"}).status == 403
        answer = c.get(path)
        assert answer.status == 200, answer.body
    denied = request(c.port, "DELETE", "/api/v1/measurements/x", headers={"Authorization": "Bearer nope"})
    assert denied.status == 403 and denied.json() == {"error": "invalid token"}
    assert c.get("/health", token=None).json()["status"] == "ok"
    assert c.get("/metrics", token=None).status == 200
    assert c.get("/api/v1/query?by=nonsense").status == 400


def test_without_a_token_the_api_is_closed(tmp_path: Path) -> None:
    c = CollectorProc(tmp_path, [], token=None).start()
    try:
        answer = c.get("/api/v1/stats")
        assert answer.status == 403 and "no token is configured" in answer.json()["error"]
        assert "no token" in c.stderr()
    finally:
        assert c.stop() == 0
    proc = subprocess.run([sys.executable, "-m", "netvigil.collector", "serve", "--port", "0", "--data-dir",
                           str(tmp_path / "d2"), "--token-file", str(tmp_path / "missing")],
                          capture_output=True, text=True, check=False, timeout=60)
    assert proc.returncode == 2 and "missing" in proc.stderr and "Traceback" not in proc.stderr


def _metric(text: str, name: str, labels: str = "") -> float:
    pattern = re.compile(rf"^{re.escape(name)}{re.escape(labels)} ([0-9.e+]+)$", re.MULTILINE)
    m = pattern.search(text)
    return float(m.group(1)) if m else -1.0


def test_metrics_count_what_happened(collector, bases) -> None:
    c = collector("--no-worker")
    rids = reports_for(c, bases[:1])
    rid = rids[group_of(bases[0])]
    for i in range(3):
        assert submit(c, vary(bases[0], i, rid), f"m{i}").status == 200
    assert submit(c, vary(bases[0], 0, rid), "m0").headers.get("idempotent-replayed") == "true"
    assert request(c.port, "POST", f"/report/{rid}", b"{nope", {"Content-Type": "application/json"}).status == 400
    future = vary(bases[0], 9, rid) | {"measurement_start_time": "2100-01-01 00:00:00"}
    assert submit(c, future).status == 400
    assert c.post("/report/20260101T000000Z_x_ZZ_0_nv1_" + "0" * 32 + "_" + "0" * 32, {}).status == 404
    text = c.get("/metrics", token=None).body.decode()
    name = bases[0]["test_name"]
    assert _metric(text, "netvigil_collector_accepted_total", f'{{test_name="{name}"}}') == 3
    assert _metric(text, "netvigil_collector_duplicates_total") == 1
    assert _metric(text, "netvigil_collector_rejected_total", '{reason="invalid_json"}') == 1
    assert _metric(text, "netvigil_collector_rejected_total", '{reason="future_time"}') == 1
    assert _metric(text, "netvigil_collector_rejected_total", '{reason="bad_report_id"}') == 1
    assert _metric(text, "netvigil_collector_queue_depth") == 3  # --no-worker: nothing processed yet
    assert _metric(text, "netvigil_collector_request_seconds_count", '{route="submit"}') == 7
    assert _metric(text, "netvigil_collector_commit_records_sum") == 3


def test_batch_and_single_measurement_endpoints(collector, bases) -> None:
    c = collector()
    a, b = vary(bases[0], 1, ""), vary(bases[1], 2, "")
    answer = c.post("/measurements", [{"format": "json", "content": a, "idempotency_key": "batch-a"}, b,
                                      {"format": "json", "content": {"test_name": 5}},
                                      {"format": "json", "content": a, "idempotency_key": "batch-a"}])
    assert answer.status == 200
    results = answer.json()["results"]
    assert [r["status"] for r in results] == [200, 200, 400, 200]
    assert [r.get("replayed") for r in results] == [False, False, None, True]
    assert results[3]["measurement_uid"] == results[0]["measurement_uid"]
    assert "test_name" in results[2]["error"]
    cc, asn = a["probe_cc"], a["probe_asn"][2:]
    assert f"_{cc}_{asn}_nv1_" in results[0]["report_id"]  # a report minted for the measurement's network
    single = c.post("/measurement", {"format": "json", "content": vary(bases[2], 3, "anything")})
    assert single.status == 200 and single.json()["report_id"] != "anything"
    assert c.post("/measurements", {"not": "an array"}).status == 400
    assert c.post("/measurements", []).status == 400
    assert c.wait_drained()["store"]["tables"]["measurements"] == 3


def test_delete_removes_a_measurement_from_the_store_and_the_log(collector, bases) -> None:
    c = collector()
    rid = reports_for(c, bases[:1])[group_of(bases[0])]
    marker = "delete-me-7c1d"
    victim = vary(bases[0], 1, rid) | {"annotations": {"note": marker}}
    uid = submit(c, victim, "d1").json()["measurement_uid"]
    keep = submit(c, vary(bases[0], 2, rid), "d2").json()["measurement_uid"]
    assert c.wait_drained()["store"]["tables"]["measurements"] == 2
    answer = request(c.port, "DELETE", f"/api/v1/measurements/{uid}", headers={"Authorization": f"Bearer {TOKEN}"})
    assert answer.status == 200 and answer.json() == {"measurement_uid": uid, "status": "deleted"}
    assert all(marker.encode() not in p.read_bytes() for p in (c.data_dir / "log").glob("*.seg"))
    assert submit(c, victim, "d1").headers.get("idempotent-replayed") == "true"  # still known, still deleted
    gone = request(c.port, "DELETE", "/api/v1/measurements/no-such-uid", headers={"Authorization": f"Bearer {TOKEN}"})
    assert gone.status == 404
    stats = c.wait_drained()
    assert stats["store"]["tables"]["measurements"] == 1 and stats["worker"]["deleted"] == 1
    c.stop()
    with open_store(c.store_path, read_only=True) as st:
        assert st.known_uids([uid, keep]) == {keep}


def test_rate_limits_per_report_and_per_client(collector, bases) -> None:
    c = collector("--rate-per-client", "60", "--rate-per-report", "30")  # bursts of 20 and 10, refilling slowly

    def until_limited(rid: str, tag: str) -> tuple[int, Any]:
        for n in range(40):
            answer = submit(c, vary(bases[0], hash((tag, n)) % 10**6, rid), f"{tag}{n}")
            if answer.status != 200:
                return n, answer
        raise AssertionError("never limited")

    rid_a = c.open_report(bases[0])
    accepted, limited = until_limited(rid_a, "a")
    assert 10 <= accepted <= 12  # the report's burst (and what refilled meanwhile)
    assert limited.status == 429 and int(limited.headers["retry-after"]) >= 1
    assert limited.json()["error"] == "rate limit exceeded for this report: retry later"
    rid_b = c.open_report(bases[0])
    more, limited = until_limited(rid_b, "b")
    assert limited.status == 429 and limited.json()["error"] == "rate limit exceeded for this client: retry later"
    assert 20 <= 1 + accepted + 1 + 1 + more <= 24  # every request of this client counted


def test_a_separate_worker_process(tmp_path: Path, collector, bases) -> None:
    c = collector("--no-worker")
    rid = reports_for(c, bases[:1])[group_of(bases[0])]
    for i in range(5):
        assert submit(c, vary(bases[0], i, rid), f"w{i}").status == 200
    cmd = [sys.executable, "-m", "netvigil.collector", "worker", "--data-dir", str(c.data_dir),
           "--store", str(c.store_path)]
    once = subprocess.run([*cmd, "--once"], capture_output=True, text=True, check=False, timeout=120)
    assert once.returncode == 0 and "processed 5 log records" in once.stdout, once.stderr
    stats = c.get("/api/v1/stats").json()
    assert stats["queue_depth"] == 0 and stats["store"]["tables"]["measurements"] == 5
    assert stats["worker"]["in_process"] is False

    worker = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert worker.stdout is not None and worker.stdout.readline().strip() == "READY"
        for i in range(5, 8):
            assert submit(c, vary(bases[0], i, rid), f"w{i}").status == 200
        deadline = time.monotonic() + 30
        while c.get("/metrics", token=None).body.find(b"netvigil_collector_queue_depth 0.0") < 0:
            assert time.monotonic() < deadline, "the worker process did not catch up"
            time.sleep(0.1)
        busy = c.get("/api/v1/stats")  # the worker process holds the store
        assert busy.status == 503 and "store" in busy.json()["error"]
        second = subprocess.run([sys.executable, "-m", "netvigil.collector", "serve", "--port", "0", "--data-dir",
                                 str(tmp_path / "other"), "--store", str(c.store_path)],
                                capture_output=True, text=True, check=False, timeout=60)
        assert second.returncode == 5 and "Traceback" not in second.stderr
    finally:
        worker.terminate()
        _, err = worker.communicate(timeout=30)
    assert worker.returncode == 0, err
    stats = c.get("/api/v1/stats").json()
    assert stats["store"]["tables"]["measurements"] == 8 and stats["worker"]["records"] == 8


def test_bad_flags_and_a_busy_data_dir_are_one_line_errors(tmp_path: Path, collector) -> None:
    c = collector()

    def serve(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "netvigil.collector", "serve", "--port", "0", *args],
                              capture_output=True, text=True, check=False, timeout=60)

    cases = [
        (serve("--data-dir", str(tmp_path / "x"), "--tls-cert", str(tmp_path / "c.pem")), 2, "go together"),
        (serve("--data-dir", str(tmp_path / "x"), "--report-ttl-hours", "1"), 2, "report-ttl-hours"),
        (serve("--data-dir", str(c.data_dir), "--no-worker"), 5, "another collector is serving"),
        (subprocess.run([sys.executable, "-m", "netvigil.collector", "worker", "--data-dir", str(tmp_path / "none")],
                        capture_output=True, text=True, check=False, timeout=60), 2, "no collector log"),
    ]
    for proc, code, words in cases:
        assert proc.returncode == code, proc.stderr
        assert words in proc.stderr and "Traceback" not in proc.stderr
        assert len(proc.stderr.strip().splitlines()) <= 2  # the error (and at most one warning)


def test_content_encoding_method_and_unknown_paths(collector, bases) -> None:
    c = collector("--no-worker")
    rid = c.open_report(bases[0])
    gz = request(c.port, "POST", f"/report/{rid}", b"\x1f\x8b...", {"Content-Encoding": "gzip"})
    assert gz.status == 415 and "uncompressed" in gz.json()["error"]  # bk-003: the probe retries uncompressed
    assert request(c.port, "GET", f"/report/{rid}").status == 405
    assert request(c.port, "POST", f"/report/{rid}/close").json() == {"status": "success"}
    assert request(c.port, "POST", "/report/a/b/c", b"{}").status == 404
    assert request(c.port, "GET", "/nothing-here").json() == {"error": "not found"}
    opened = c.post("/report", open_body(bases[0]) | {"format": "yaml"})
    assert opened.status == 400 and "json" in opened.json()["error"]


def test_serves_https_to_the_probe_uploader(tmp_path: Path, collector, bases) -> None:
    from netvigil.lab.servers.ca import issue_leaf, make_ca

    ca = make_ca(tmp_path / "ca")
    leaf = issue_leaf(ca, ["127.0.0.1"], tmp_path / "ca" / "leaves")
    c = collector("--tls-cert", str(leaf.cert), "--tls-key", str(leaf.key))
    spool = Spool(tmp_path / "spool")
    spool.put(orjson.dumps(vary(bases[0], 1, "")), "tls-1")
    untrusted = asyncio.run(upload_spool(spool, f"https://127.0.0.1:{c.port}", tls=TLSConfig(), **FAST | {
        "max_attempts": 1}))
    assert untrusted.failed_transient == 1 and "ssl_unknown_authority" in untrusted.errors[0]
    result = asyncio.run(upload_spool(spool, f"https://127.0.0.1:{c.port}", tls=TLSConfig(ca_file=str(ca.cert)),
                                      **FAST))
    assert result.delivered == 1 and spool.count() == 0
