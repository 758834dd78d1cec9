"""Privacy: after a session of every kind of request from one client address, that address is nowhere.

The client connects from a distinctive loopback address (127.77.0.9) and some of its measurements even
carry that address (as probe_ip, in test keys), as a careless probe's would. Afterwards the log
segments, worker state, quarantine, the store (every table exported, every raw measurement read back)
and the collector's stdout/stderr are searched for it.
"""

from __future__ import annotations

import socket
from pathlib import Path

import orjson
from collector_harness import CLIENT_ADDRESS, TOKEN, CollectorProc, files_containing, request, vary

from netvigil.store import EXPORT_TABLES, open_store


def test_the_client_address_is_stored_and_logged_nowhere(tmp_path: Path, bases) -> None:
    c = CollectorProc(tmp_path / "c", ["--rate-per-report", "30"])
    (tmp_path / "c").mkdir()
    c.start()
    needle = CLIENT_ADDRESS.encode()
    rid = c.open_report(bases[0])
    receipts: list[str] = []

    def leaky(i: int, report: str) -> dict:
        doc = vary(bases[0], i, report)
        doc["probe_ip"] = CLIENT_ADDRESS
        doc["test_keys"] = {**doc["test_keys"], "client_resolver": CLIENT_ADDRESS,
                            "x_whoami": [f"{CLIENT_ADDRESS}:5353", f"[{CLIENT_ADDRESS}]"]}
        return doc

    for i in range(4):
        answer = c.post(f"/report/{rid}", {"format": "json", "content": leaky(i, rid)},
                        {"X-Idempotency-Key": f"p{i}"} if i % 2 else None)
        assert answer.status == 200
        receipts.append(answer.json()["measurement_uid"])
    batch = c.post("/measurements", [leaky(10, ""), {"format": "json", "content": leaky(11, "")}, {"bad": 1}])
    receipts += [r["measurement_uid"] for r in batch.json()["results"] if r["status"] == 200]
    single = c.post("/measurement", {"format": "json", "content": leaky(12, "")})
    receipts.append(single.json()["measurement_uid"])
    assert len(receipts) == 7

    # refusals of every kind, from the same address
    assert request(c.port, "POST", f"/report/{rid}", b"{not json").status == 400
    forged = rid[:-1] + ("1" if rid[-1] == "0" else "0")  # one signature digit changed (never the same id)
    assert c.post("/report/" + forged, {"format": "json", "content": leaky(20, rid)}).status in (404, 400)
    assert request(c.port, "POST", f"/report/{rid}", b"{}", {"Content-Encoding": "gzip"}).status == 415
    assert request(c.port, "GET", "/nowhere").status == 404
    assert c.get("/api/v1/stats", token="wrong").status == 403
    statuses = []
    for i in range(12):
        answer = c.post(f"/report/{rid}", {"format": "json", "content": leaky(30 + i, rid)})
        statuses.append(answer.status)
        if answer.status == 200:
            receipts.append(answer.json()["measurement_uid"])
    assert 429 in statuses  # the report's burst (10) was used up
    with socket.create_connection(("127.0.0.1", c.port), timeout=10, source_address=(CLIENT_ADDRESS, 0)) as s:
        s.sendall(b"NOT HTTP AT ALL\r\n\r\n")  # uvicorn's own 400 for a malformed request
        assert s.recv(1000).startswith(b"HTTP/1.1 400")
    deleted = request(c.port, "DELETE", f"/api/v1/measurements/{receipts[0]}",
                      headers={"Authorization": f"Bearer {TOKEN}"})
    assert deleted.status == 200
    stats = c.wait_drained()
    stored_uids = set(receipts[1:])
    assert stats["store"]["tables"]["measurements"] == len(stored_uids)
    assert c.stop() == 0

    exports = tmp_path / "exports"
    raws = []
    with open_store(c.store_path, read_only=True) as st:
        for table in EXPORT_TABLES:
            st.export(table, exports / f"{table}.csv", "csv")
        for uid in sorted(stored_uids):
            raw = st.get_raw(uid)
            assert raw is not None
            raws.append(raw)
        assert st.get_raw(receipts[0]) is None  # deleted
    for raw in raws:
        doc = orjson.loads(raw)
        assert doc["probe_ip"] == "127.0.0.1" and needle not in raw
        assert doc["test_keys"]["client_resolver"] == "[scrubbed]"
        assert doc["test_keys"]["x_whoami"] == ["[scrubbed]:5353", "[[scrubbed]]"]
    outputs = [p for p in c.outputs if p.exists()]
    searched = [c.data_dir, c.store_path, *c.store_path.parent.glob("store.duckdb*"), exports, *outputs]
    assert files_containing(searched, needle) == []
    # the search itself works: the same bytes are found where we put them
    (tmp_path / "canary").write_bytes(b"x" + needle + b"x")
    assert files_containing([tmp_path / "canary"], needle) == [tmp_path / "canary"]
