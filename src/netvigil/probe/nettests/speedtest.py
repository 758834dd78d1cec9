"""Speed test (netvigil's own, keys after OONI's ndt, ts-022): how fast is this whole network right now?

Against a netvigil control helper (``docs/control.md``, "Speed endpoints"): a few TCP connects for the round-trip
time, then a timed download of ``GET /speed/download?bytes=N`` and a timed upload to ``POST /speed/upload``, each
sampled every 0.25 s as ndt7 "Measurement" messages (the kernel's TCP_INFO counters beside the application's
bytes). Run on a schedule, the ``summary`` (kbit/s, milliseconds, as ndt's) shows a network throttled as a whole
(Azerbaijan 2020) as a drop over time, where the ``throttling`` test, which compares SNIs, sees nothing.

The upload speed comes from the bytes the peer acknowledged (TCP_INFO ``BytesAcked``): what the application
wrote is mostly still in the kernel's send buffer, which on a slow link holds seconds of data.
"""

from __future__ import annotations

import asyncio
import json
import statistics
import time
from dataclasses import dataclass, field
from urllib.parse import urljoin, urlsplit

import h11

from netvigil.model.archival import ArchivalHTTPResponse, ArchivalHTTPTransaction
from netvigil.model.throughput import SpeedtestServer, SpeedtestSummary, SpeedtestTestKeys, ThroughputSample
from netvigil.probe.netx import Conn, NetxError, TLSConfig, Trace, connect, endpoint, getaddrinfo, is_ip, tls_handshake
from netvigil.probe.netx.http import maybe_binary, request_headers, request_record
from netvigil.probe.nettests.throttling import USER_AGENT, Sampler

__all__ = ["TEST_NAME", "TEST_VERSION", "SpeedtestOptions", "default_inputs", "measure", "test_helpers"]

TEST_NAME = "speedtest"
TEST_VERSION = "0.1.0"
_CHUNK = 64 * 1024
_PAYLOAD = bytes(range(256)) * (_CHUNK // 256)   # the helper does not care what it gets; TLS hides it anyway


@dataclass(frozen=True, slots=True)
class SpeedtestOptions:
    control_url: str | None = None        # a netvigil control helper, e.g. https://helper.example.org/
    tls: TLSConfig = field(default_factory=TLSConfig)
    download_seconds: float = 5.0
    upload_seconds: float = 5.0
    download_bytes: int = 100 * 1024 * 1024   # asked for; the helper may send less (its cap)
    upload_bytes: int = 100 * 1024 * 1024     # sent at most: the helper refuses bodies above its cap (100 MiB)
    rtt_connects: int = 5
    budget: float = 16.0
    dns_timeout: float = 4.0
    connect_timeout: float = 3.0
    tls_timeout: float = 3.0


def test_helpers(opts: SpeedtestOptions) -> dict | None:
    if not opts.control_url:
        return None
    return {"speed": {"address": opts.control_url, "type": "https" if opts.control_url.startswith("https:") else "http"}}


def default_inputs(opts: SpeedtestOptions) -> list[str | None]:
    return [None]


class _Deadline:
    def __init__(self, budget: float) -> None:
        self.end = time.monotonic() + budget

    def left(self, cap: float = float("inf")) -> float:
        return max(0.05, min(cap, self.end - time.monotonic()))


@dataclass(slots=True)
class _Transfer:
    samples: list[ThroughputSample]
    seconds: float
    app_bytes: int
    failure: str | None = None
    report: dict | None = None


async def _open(trace: Trace, ip: str, port: int, host: str, https: bool, opts: SpeedtestOptions,
                deadline: _Deadline) -> Conn:
    conn = await connect(trace, ip, port, timeout=deadline.left(opts.connect_timeout))
    if https:
        conn = await tls_handshake(trace, conn, None if is_ip(host) else host, tls=opts.tls,
                                   timeout=deadline.left(opts.tls_timeout))
    return conn


def _transaction(trace: Trace, conn: Conn, url: str, method: str, headers: list[tuple[str, str]]
                 ) -> ArchivalHTTPTransaction:
    tx = ArchivalHTTPTransaction(request=request_record(url, method, headers, b""), network="tcp",
                                 address=conn.address, alpn=conn.alpn, t0=trace.now(),
                                 transaction_id=conn.transaction_id)
    trace.requests.append(tx)
    return tx


def _response(tx: ArchivalHTTPTransaction, event: h11.Response) -> None:
    pairs = list(event.headers.raw_items())
    tx.response = ArchivalHTTPResponse(
        body=None, body_is_truncated=True, code=event.status_code,
        headers={k.decode("latin-1"): maybe_binary(v) for k, v in reversed(pairs)},
        headers_list=[[k.decode("latin-1"), maybe_binary(v)] for k, v in pairs])


async def _download(trace: Trace, conn: Conn, url: str, seconds: float) -> _Transfer:
    target = urlsplit(url)
    headers = request_headers(url, "GET", [("User-Agent", USER_AGENT), ("Accept", "*/*"), ("Connection", "close")], b"")
    h = h11.Connection(h11.CLIENT)
    wire = h.send(h11.Request(method="GET", target=f"{target.path}?{target.query}", headers=headers))
    wire += h.send(h11.EndOfMessage())
    tx = _transaction(trace, conn, url, "GET", headers)
    sampler = Sampler(conn, "download")
    failure: str | None = None
    done = False
    status = None
    try:
        await conn.write(wire, timeout=max(seconds, 0.5))
        sampler.start()
        end = sampler.origin + seconds
        while not done:
            left = end - time.monotonic()
            if left <= 0:
                break
            try:
                async with asyncio.timeout(left):
                    data = await conn.read(65536, timeout=left + 5.0)
            except TimeoutError:
                break
            sampler.app_bytes += len(data)
            h.receive_data(data)
            while True:
                event = h.next_event()
                if event is h11.NEED_DATA or event is h11.PAUSED:
                    break
                if isinstance(event, h11.Response):
                    _response(tx, event)
                    status = event.status_code
                elif isinstance(event, (h11.EndOfMessage, h11.ConnectionClosed)):
                    done = True
                    break
            if not data and not done:
                failure = "eof_error"
                break
    except NetxError as exc:
        failure = exc.failure
    except h11.ProtocolError as exc:
        failure = f"unknown_failure: {exc}"
    seconds_taken = await sampler.stop() if sampler.origin else 0.0
    if failure is None and status is not None and status != 200:
        failure = "http_unexpected_status_code"
    tx.failure, tx.t = failure, trace.now()
    return _Transfer(sampler.samples, seconds_taken, sampler.app_bytes, failure)


async def _upload(trace: Trace, conn: Conn, url: str, seconds: float, max_bytes: int) -> _Transfer:
    """POST a chunked body for `seconds`, then end it and wait briefly for the helper's own count."""
    target = urlsplit(url)
    headers = [("Host", target.netloc), ("User-Agent", USER_AGENT), ("Content-Type", "application/octet-stream"),
               ("Transfer-Encoding", "chunked"), ("Connection", "close")]
    h = h11.Connection(h11.CLIENT)
    tx = _transaction(trace, conn, url, "POST", headers)
    sampler = Sampler(conn, "upload")
    failure: str | None = None
    report: dict | None = None
    try:
        await conn.write(h.send(h11.Request(method="POST", target=target.path, headers=headers)), timeout=2.0)
        sampler.start()
        end = sampler.origin + seconds
        chunk = h.send(h11.Data(data=_PAYLOAD))
        while time.monotonic() < end and sampler.app_bytes + _CHUNK <= max_bytes:
            try:
                async with asyncio.timeout(end - time.monotonic()):
                    await conn.write(chunk, timeout=seconds + 5.0)
            except TimeoutError:
                break
            sampler.app_bytes += _CHUNK
        # Written is not sent: wait (within the time) until the peer has acknowledged what the kernel still holds.
        while time.monotonic() < end and (sampler.acked() or 0) < sampler.app_bytes and sampler.acked() is not None:
            await asyncio.sleep(0.02)
    except NetxError as exc:
        failure = exc.failure
    seconds_taken = await sampler.stop() if sampler.origin else 0.0
    if failure is None:
        # What is still queued must drain before the helper answers; on a slow link that can take long, and the
        # speed is already known from the acknowledged bytes, so the helper's count is asked for only briefly.
        try:
            async with asyncio.timeout(1.5):
                await conn.write(h.send(h11.EndOfMessage()), timeout=2.0)
                body = b""
                while True:
                    data = await conn.read(65536, timeout=2.0)
                    h.receive_data(data)
                    event = h.next_event()
                    while event is not h11.NEED_DATA and event is not h11.PAUSED:
                        if isinstance(event, h11.Response):
                            _response(tx, event)
                        elif isinstance(event, h11.Data):
                            body += bytes(event.data)
                        elif isinstance(event, (h11.EndOfMessage, h11.ConnectionClosed)):
                            break
                        event = h.next_event()
                    if isinstance(event, (h11.EndOfMessage, h11.ConnectionClosed)) or not data:
                        break
                parsed = json.loads(body) if body else None
                report = parsed if isinstance(parsed, dict) else None
        except (TimeoutError, NetxError, h11.ProtocolError, ValueError):
            pass
    tx.failure, tx.t = failure, trace.now()
    return _Transfer(sampler.samples, seconds_taken, sampler.app_bytes, failure, report)


def _kbit(samples: list[ThroughputSample], direction: str, app_bytes: int, seconds: float) -> tuple[float | None, int]:
    """Average speed over the whole transfer (kbit/s) and the bytes it counts: TCP counters when present."""
    if seconds <= 0:
        return None, 0
    first, last = (samples[0], samples[-1]) if samples else (None, None)
    counted = app_bytes
    if first is not None and last is not None and first.tcp_info is not None and last.tcp_info is not None:
        a = first.tcp_info.bytes_received if direction == "download" else first.tcp_info.bytes_acked
        b = last.tcp_info.bytes_received if direction == "download" else last.tcp_info.bytes_acked
        if a is not None and b is not None:
            counted = max(0, b - a)
    return round(counted * 8 / seconds / 1000, 3), counted


async def measure(input: str | None, opts: SpeedtestOptions) -> SpeedtestTestKeys:
    """One speed test against `opts.control_url`; failures end up in the keys."""
    deadline = _Deadline(opts.budget)
    trace = Trace()
    keys = SpeedtestTestKeys(summary=SpeedtestSummary())
    if not opts.control_url:
        keys.failure = "unknown_failure: no control helper configured"
        return keys
    parts = urlsplit(opts.control_url)
    https = parts.scheme == "https"
    host = (parts.hostname or "").lower()
    port = parts.port or (443 if https else 80)
    keys.server = SpeedtestServer(hostname=host)
    try:
        ip = host if is_ip(host) else (await getaddrinfo(trace, host, timeout=deadline.left(opts.dns_timeout)))[0]
    except NetxError as exc:
        keys.failure = exc.failure
        _finish(keys, trace)
        return keys
    keys.server.address = endpoint(ip, port)
    rtts: list[float] = []
    for _ in range(max(0, opts.rtt_connects)):
        try:
            conn = await connect(trace, ip, port, timeout=deadline.left(opts.connect_timeout))
        except NetxError as exc:
            keys.rtt_failure = keys.rtt_failure or exc.failure
            continue
        c = trace.tcp_connect[-1]
        rtts.append(((c.t or 0.0) - (c.t0 or 0.0)) * 1000)
        await conn.abort()
    summary = keys.summary
    assert summary is not None
    if rtts:
        summary.min_rtt = summary.ping = round(min(rtts), 3)
        summary.avg_rtt = round(statistics.fmean(rtts), 3)
        summary.max_rtt = round(max(rtts), 3)
    down_url = urljoin(opts.control_url, f"speed/download?bytes={int(opts.download_bytes)}")
    try:
        conn = await _open(trace, ip, port, host, https, opts, deadline)
        try:
            got = await _download(trace, conn, down_url, min(opts.download_seconds, deadline.left() / 2))
        finally:
            await conn.abort()
        keys.download, keys.download_failure = got.samples, got.failure
        summary.download, summary.download_bytes = _kbit(got.samples, "download", got.app_bytes, got.seconds)
    except NetxError as exc:
        keys.download_failure = exc.failure
    up_url = urljoin(opts.control_url, "speed/upload")
    try:
        conn = await _open(trace, ip, port, host, https, opts, deadline)
        try:
            sent = await _upload(trace, conn, up_url, min(opts.upload_seconds, max(0.0, deadline.left() - 2.0)),
                                 opts.upload_bytes)
        finally:
            await conn.abort()
        keys.upload, keys.upload_failure, keys.upload_server_report = sent.samples, sent.failure, sent.report
        summary.upload, summary.upload_bytes = _kbit(sent.samples, "upload", sent.app_bytes, sent.seconds)
    except NetxError as exc:
        keys.upload_failure = exc.failure
    if keys.download_failure and keys.upload_failure and not rtts:
        keys.failure = keys.download_failure
    _finish(keys, trace)
    return keys


def _finish(keys: SpeedtestTestKeys, trace: Trace) -> None:
    for name, value in trace.test_keys().items():
        setattr(keys, name, value)
    # Fast links make thousands of read/write events; the samples carry the throughput, so only the first 64 of
    # each kind per connection are kept (as Web Connectivity 0.5 does).
    counts: dict[tuple[int | None, str | None], int] = {}
    kept = []
    for ev in keys.network_events or ():
        if ev is not None and ev.operation in ("read", "write"):
            key = (ev.transaction_id, ev.operation)
            counts[key] = counts.get(key, 0) + 1
            if counts[key] > 64:
                continue
        kept.append(ev)
    keys.network_events = kept
