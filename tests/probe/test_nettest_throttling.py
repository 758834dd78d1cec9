"""The throttling and speedtest nettests against real servers on loopback.

A small TLS server stands in for a CDN front end that a censor polices by SNI: it sends the same bytes to every
client, paced to ~130 kbit/s when the client's SNI is the throttled name and to a few Mbit/s otherwise (pacing at
the sender in 1400-byte TLS records, as a policer in the path would deliver them). The speed test runs against the
real control helper app (uvicorn, in a thread) with its /speed endpoints.
"""

from __future__ import annotations

import asyncio
import socket
import threading
import time

import msgspec
import pytest

from netvigil.analysis import analyze
from netvigil.codec import decode_measurement
from netvigil.lab.servers.ca import make_ca
from netvigil.lab.servers.tls import make_sni_context, requested_server_name
from netvigil.model.throughput import SpeedtestTestKeys, ThrottlingTestKeys
from netvigil.probe.nettests import speedtest, throttling

THROTTLED = "abs.twimg.test"
OPEN = "open.test"
SLOW_BPS = 130_000
FAST_BPS = 6_000_000


def _pace_plan(sni: str | None) -> tuple[int, float]:
    """(bytes per write, seconds between writes) for a client that sent `sni`."""
    if sni == THROTTLED:
        return 1400, 1400 * 8 / SLOW_BPS
    return 15000, 15000 * 8 / FAST_BPS


async def _serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
        path = head.split(b" ", 2)[1].decode()
        size = int(path.strip("/")) if path.strip("/").isdigit() else 10_000_000
        if path.startswith("/missing"):
            writer.write(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
            await writer.drain()
            return
        writer.write(f"HTTP/1.1 200 OK\r\nContent-Length: {size}\r\nConnection: close\r\n\r\n".encode())
        piece, gap = _pace_plan(requested_server_name(writer.get_extra_info("ssl_object")))
        block = b"\xa5" * piece
        start, sent = time.monotonic(), 0
        while sent < size:
            n = min(piece, size - sent)
            writer.write(block[:n])
            await writer.drain()
            sent += n
            ahead = start + (sent / piece) * gap - time.monotonic()
            if ahead > 0:
                await asyncio.sleep(ahead)
    except (OSError, asyncio.IncompleteReadError, asyncio.TimeoutError, asyncio.CancelledError):
        pass  # the client hung up (it stops reading when its time is up), or the test is over
    finally:
        writer.close()


@pytest.fixture(scope="module")
def tls_context(tmp_path_factory: pytest.TempPathFactory):
    root = tmp_path_factory.mktemp("thr")
    ca = make_ca(root / "ca")
    return make_sni_context(ca, [OPEN, THROTTLED], root / "certs")


async def _with_server(ctx, coro_factory):
    server = await asyncio.start_server(_serve, "127.0.0.1", 0, ssl=ctx)
    port = server.sockets[0].getsockname()[1]
    try:
        return await coro_factory(port)
    finally:
        server.close()
        await server.wait_closed()


def _opts(port: int, **kw) -> throttling.ThrottlingOptions:
    base = dict(address="127.0.0.1", port=port, path="/50000000", target_seconds=1.25, control_seconds=0.75)
    base.update(kw)
    return throttling.ThrottlingOptions(**base)


def _as_measurement(test_name: str, input: str | None, keys: msgspec.Struct, runtime: float):
    doc = {"test_name": test_name, "input": input, "measurement_start_time": "2021-03-10 08:00:00",
           "probe_asn": "AS64548", "probe_cc": "RU", "report_id": "20210310T080000Z_throttling_RU_64548_n1_x",
           "test_runtime": runtime, "test_keys": msgspec.to_builtins(keys)}
    return decode_measurement(msgspec.json.encode(doc))


def test_tcp_info_counts_what_arrives():
    """TCP_INFO's byte counters (the offsets parsed by hand) match what crossed a loopback connection."""
    srv = socket.create_server(("127.0.0.1", 0))
    payload = b"x" * 300_000

    def serve() -> None:
        c, _ = srv.accept()
        c.sendall(payload)
        c.recv(100)
        c.close()

    t = threading.Thread(target=serve)
    t.start()
    s = socket.create_connection(srv.getsockname())
    got = 0
    while got < len(payload):
        got += len(s.recv(65536))
    s.sendall(b"y" * 10)
    time.sleep(0.05)
    info = throttling.tcp_info(s)
    s.close()
    t.join()
    srv.close()
    if info is None:
        pytest.skip("no TCP_INFO on this platform")
    assert info.bytes_received in (len(payload), len(payload) + 1)   # + the peer's FIN, if it came first
    assert info.bytes_acked in (10, 11)          # Linux counts the SYN as one acknowledged byte
    assert info.rtt is not None and info.min_rtt is not None and info.min_rtt <= info.rtt + 1


def test_throttled_sni_is_detected_and_confirmed(tls_context):
    async def run(port: int):
        t0 = time.monotonic()
        keys = await throttling.measure(THROTTLED, _opts(port))
        return keys, time.monotonic() - t0

    keys, seconds = asyncio.run(_with_server(tls_context, run))
    assert seconds <= 10.0
    assert keys.summary.result == "throttled", keys.rounds
    assert [r.differentiation for r in keys.rounds] == ["yes", "yes"]
    assert keys.summary.kind == "policer"
    assert abs(keys.summary.plateau_bps - SLOW_BPS) <= 0.2 * SLOW_BPS
    # Three variants per round, all to the same address, SNIs as planned.
    variants = [(d.round, d.variant, d.server_name) for d in keys.downloads]
    assert [v[:2] for v in variants] == [(1, "target_sni"), (1, "random_sni"), (1, "no_sni"),
                                         (2, "target_sni"), (2, "random_sni"), (2, "no_sni")]
    assert {d.address for d in keys.downloads} == {keys.target_address}
    assert variants[0][2] == THROTTLED and variants[2][2] is None and variants[1][2] == keys.random_sni
    assert {h.server_name for h in keys.tls_handshakes} == {THROTTLED, keys.random_sni, None}
    assert all(h.no_tls_verify for h in keys.tls_handshakes)
    # Every download: a 200 stopped by time (not a failure), samples every 0.25 s with TCP counters.
    for d in keys.downloads:
        assert d.failure is None and d.status_code == 200 and d.eof is False
        assert len(d.samples) >= 4
        assert all(s.tcp_info is not None and s.tcp_info.bytes_received is not None for s in d.samples)
        gaps = [b.app_info.elapsed_time - a.app_info.elapsed_time for a, b in zip(d.samples, d.samples[1:])]
        assert all(150_000 <= g <= 400_000 for g in gaps[:-1]), gaps
    # Read events are capped per download; the requests are df-001 records with the Host header of the target.
    assert all(r.request.headers["Host"] == THROTTLED for r in keys.requests)
    # The keys decode and the analysis agrees.
    m = _as_measurement("throttling", THROTTLED, keys, seconds)
    observations, verdicts = analyze(m)
    (v,) = verdicts
    assert (v.outcome, v.method) == ("throttled", "bandwidth")
    assert v.rule_ids[0] == "throttling.confirmed" and "throttling.extreme" in v.rule_ids
    assert "plateau" in v.detail and "kbit/s" in v.detail and "policer" in v.detail
    assert {o.kind for o in observations} >= {"tcp", "tls", "http"}
    http = [o for o in observations if o.kind == "http"]
    assert len(http) == 6 and all(o.http_bytes_read and o.http_read_seconds for o in http)


def test_open_sni_is_not_throttled(tls_context):
    async def run(port: int):
        return await throttling.measure(OPEN, _opts(port))

    keys = asyncio.run(_with_server(tls_context, run))
    assert keys.summary.result == "ok", keys.rounds
    assert len(keys.rounds) == 1 and keys.rounds[0].differentiation in ("no", "small")
    m = _as_measurement("throttling", OPEN, keys, 3.0)
    (v,) = analyze(m)[1]
    assert v.outcome == "ok"


def test_failures_are_recorded_not_raised(tls_context):
    async def run(port: int):
        refused = await throttling.measure(THROTTLED, _opts(1, rerun=False))     # nothing listens on port 1
        short = await throttling.measure(THROTTLED, _opts(port, path="/2000"))  # the file ends at once
        missing = await throttling.measure("no-such-name.invalid", throttling.ThrottlingOptions(budget=3))
        return refused, short, missing

    refused, short, missing = asyncio.run(_with_server(tls_context, run))
    assert all(d.failure == "connection_refused" for d in refused.downloads)
    assert refused.summary.result == "inconclusive" and refused.summary.reason == "failed"
    assert short.summary.result == "inconclusive" and short.summary.reason == "too_short"
    assert all(d.eof for d in short.downloads)
    assert missing.failure is not None and missing.failure.startswith("dns_") and not missing.downloads
    for keys, reason in ((refused, "throttling.failed"), (short, "throttling.too_short"),
                         (missing, "throttling.no_data")):
        (v,) = analyze(_as_measurement("throttling", keys.target_host, keys, 1.0))[1]
        assert (v.outcome, v.rule_ids[0]) == ("inconclusive", reason)


def test_the_budget_bounds_the_decision(tls_context):
    """No room left for a confirmation round: the decision stays within its budget and says so."""
    async def run(port: int):
        t0 = time.monotonic()
        keys = await throttling.measure(THROTTLED, _opts(port, budget=4.5))
        return keys, time.monotonic() - t0

    keys, seconds = asyncio.run(_with_server(tls_context, run))
    assert seconds <= 4.5 + 0.3
    assert [r.differentiation for r in keys.rounds] == ["yes"]
    assert (keys.summary.result, keys.summary.reason) == ("inconclusive", "unconfirmed")


def test_keys_round_trip_through_the_model(tls_context):
    async def run(port: int):
        return await throttling.measure(f"https://{THROTTLED}/300000", _opts(port, rerun=False))

    keys = asyncio.run(_with_server(tls_context, run))
    assert keys.target_path == "/300000"
    raw = msgspec.json.encode(keys)
    again = msgspec.json.decode(raw, type=ThrottlingTestKeys)
    assert msgspec.json.encode(again) == raw
    sample = msgspec.to_builtins(keys.downloads[0].samples[1])
    assert set(sample) == {"AppInfo", "Origin", "Test", "TCPInfo"}
    assert {"BytesReceived", "ElapsedTime", "RTT", "MinRTT"} <= set(sample["TCPInfo"])


def test_random_names_avoid_substring_rules():
    names = {throttling.random_server_name() for _ in range(200)}
    assert len(names) == 200
    assert all(n.endswith(".net") and "t.co" not in n and n[:-4].isalpha() for n in names)


# -- speedtest -----------------------------------------------------------------------------------------------------------

class _Helper:
    """The control helper app served by uvicorn on a loopback port, in a thread."""

    def __init__(self, speed) -> None:
        import uvicorn

        from netvigil.control.policy import Policy
        from netvigil.control.server import make_app

        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        config = uvicorn.Config(make_app(Policy(), speed=speed), http="h11", ws="none", lifespan="off",
                                log_level="warning", access_log=False)
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.sock]}, daemon=True)
        self.thread.start()
        deadline = time.monotonic() + 10
        while not self.server.started and time.monotonic() < deadline:
            time.sleep(0.02)
        assert self.server.started

    def close(self) -> None:
        self.server.should_exit = True
        self.thread.join(10)
        self.sock.close()


@pytest.fixture(scope="module")
def helper():
    from netvigil.control.server import SpeedLimits

    h = _Helper(SpeedLimits(max_bytes=8_000_000, max_seconds=3.0, max_transfers=2, rate_per_minute=600, burst=20))
    yield h
    h.close()


def test_speedtest_against_the_helper(helper):
    opts = speedtest.SpeedtestOptions(control_url=f"http://127.0.0.1:{helper.port}/", download_seconds=1.0,
                                      upload_seconds=0.6, download_bytes=50_000_000, upload_bytes=8_000_000,
                                      rtt_connects=3)
    keys = asyncio.run(speedtest.measure(None, opts))
    s = keys.summary
    assert keys.failure is None and keys.download_failure is None and keys.upload_failure is None, keys
    assert s.download and s.download > 1000 and s.upload and s.upload > 1000
    assert s.download_bytes >= 8_000_000                  # the helper's cap (8 MB) was all sent, TLS-free here
    assert 0 <= s.min_rtt <= s.avg_rtt <= s.max_rtt and s.ping == s.min_rtt
    assert len([c for c in keys.tcp_connect if c.status.success]) == 5     # 3 for RTT, download, upload
    assert keys.upload_server_report is None or keys.upload_server_report["received"] > 0
    assert keys.download and keys.upload and all(x.test == "download" for x in keys.download)
    assert sum(1 for e in keys.network_events if e.operation == "write") <= 2 * 64 + 8
    raw = msgspec.json.encode(keys)
    assert msgspec.json.decode(raw, type=SpeedtestTestKeys) == keys
    (v,) = analyze(_as_measurement("speedtest", None, keys, 3.0))[1]
    assert v.outcome == "ok" and "kbit/s" in v.detail and v.rule_ids[0] == "speedtest.measured"


def test_speed_endpoints_enforce_their_limits(helper):
    import http.client
    import json

    def get(path: str, method: str = "GET", body: bytes | None = None, headers: dict | None = None):
        c = http.client.HTTPConnection("127.0.0.1", helper.port, timeout=10)
        c.request(method, path, body=body, headers=headers or {})
        r = c.getresponse()
        data = r.read()
        c.close()
        return r.status, data

    status, data = get("/speed/download?bytes=123456")
    assert status == 200 and len(data) == 123456
    status, data = get("/speed/download?bytes=99999999999")
    assert status == 200 and len(data) == 8_000_000            # capped at max_bytes
    assert get("/speed/download?bytes=abc")[0] == 400
    assert get("/speed/download")[0] == 400
    status, data = get("/speed/upload", "POST", b"z" * 100_000, {"Content-Type": "application/octet-stream"})
    assert status == 200 and json.loads(data)["received"] == 100_000
    assert get("/speed/upload", "POST", b"z" * 10, {"Content-Length": "9000000"})[0] == 413


def test_speed_endpoints_rate_limit_each_client():
    import http.client

    from netvigil.control.server import SpeedLimits

    strict = _Helper(SpeedLimits(max_bytes=1000, rate_per_minute=1, burst=2))
    try:
        statuses = []
        for _ in range(3):
            c = http.client.HTTPConnection("127.0.0.1", strict.port, timeout=10)
            c.request("GET", "/speed/download?bytes=10")
            r = c.getresponse()
            r.read()
            statuses.append((r.status, r.getheader("Retry-After")))
            c.close()
    finally:
        strict.close()
    assert [s for s, _ in statuses] == [200, 200, 429] and int(statuses[2][1]) >= 1


def test_speedtest_without_a_helper_fails_cleanly():
    keys = asyncio.run(speedtest.measure(None, speedtest.SpeedtestOptions(
        control_url="http://127.0.0.1:1/", rtt_connects=2, budget=4)))
    assert keys.rtt_failure == "connection_refused" and keys.download_failure == "connection_refused"
    assert keys.failure == "connection_refused"
    (v,) = analyze(_as_measurement("speedtest", None, keys, 0.1))[1]
    assert v.outcome == "inconclusive" and v.rule_ids[0] == "speedtest.failed"
    none = asyncio.run(speedtest.measure(None, speedtest.SpeedtestOptions()))
    assert none.failure == "unknown_failure: no control helper configured"
