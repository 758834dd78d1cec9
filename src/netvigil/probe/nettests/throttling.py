"""Throttling (netvigil's own; OONI has none): is this service slowed down by its name on this network?

For one target (a host name such as ``abs.twimg.com``) the test downloads from the SAME server address three
ways, one after the other: with the target as SNI, with a random SNI and with no SNI (the SNI swap of Xue et al.,
IMC 2021: Russia's TSPU policed flows whose SNI named Twitter to ~130-150 kbit/s while the same address with
another SNI stayed fast). The Host header, inside TLS and invisible to the censor, is the target in all three,
so the server sends the same bytes. Certificate checks are off (OONI's design note for this experiment: the SNI
must be free to be anything). Each download runs for a fixed time and is sampled every 0.25 s: the kernel's
TCP_INFO byte counters and the bytes the application read, as ndt7 "Measurement" messages.

The decision is Wehe's (``netvigil.analysis.throughput``): the target's 0.25 s throughput buckets against the
pooled control buckets, area test and KS test; a differentiation (or an inconclusive result, or a 10x slowdown)
is confirmed by a second round, all within ``budget`` seconds (10 by default). The probe records its statistics
per round and its conclusion; the analysis recomputes both from the samples.
"""

from __future__ import annotations

import asyncio
import secrets
import socket
import string
import struct
import time
from dataclasses import dataclass, field
from urllib.parse import urlsplit

import h11
import scipy.stats  # noqa: F401  (the statistics need it between rounds: load it before any decision is timed)

from netvigil.analysis.throughput import DEFAULT_PARAMS, Assessment, assess, compare_round, needs_rerun
from netvigil.model.archival import ArchivalHTTPResponse, ArchivalHTTPTransaction
from netvigil.model.throughput import (
    AppInfo,
    TCPInfo,
    ThrottlingDownload,
    ThrottlingRound,
    ThrottlingSummary,
    ThrottlingTestKeys,
    ThroughputSample,
)
from netvigil.probe.netx import Conn, NetxError, TLSConfig, Trace, connect, endpoint, getaddrinfo, is_ip, tls_handshake
from netvigil.probe.netx.http import maybe_binary, request_headers, request_record

__all__ = [
    "TEST_NAME",
    "TEST_VERSION",
    "DEFAULT_TARGETS",
    "ThrottlingOptions",
    "Sampler",
    "default_inputs",
    "measure",
    "random_server_name",
    "tcp_info",
    "test_helpers",
]

TEST_NAME = "throttling"
TEST_VERSION = "0.1.0"
# Russia 2021: the static-content host whose throttling Xue et al. measured.
DEFAULT_TARGETS: tuple[str, ...] = ("abs.twimg.com",)
USER_AGENT = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36"
READ_EVENTS_KEPT = 64   # read events archived per download (as Web Connectivity 0.5); the samples cover the rest
_SETUP = 0.35           # seconds a download's connect + handshake + request are budgeted on top of its duration
_MIN_SCALE = 0.6        # a rerun shortened below this share of the first round's durations is not worth running


@dataclass(frozen=True, slots=True)
class ThrottlingOptions:
    """Where and how long to download. The lab points `address` and `path` at its large-file server."""

    address: str | None = None            # server IP for every variant; None: the target's first address
    port: int = 443
    path: str = "/"                       # a large object on the target's server (it must last the whole download)
    random_sni: str | None = None         # None: a fresh random name per measurement
    random_variant: bool = True           # download with a random SNI
    no_sni_variant: bool = True           # download without SNI
    target_seconds: float = 1.75          # 7 buckets of 0.25 s
    control_seconds: float = 1.0          # 4 buckets each, 8 pooled
    max_bytes: int = 1 << 30              # body bytes read at most per download
    rerun: bool = True
    budget: float = 10.0                  # the whole decision, both rounds
    dns_timeout: float = 4.0
    connect_timeout: float = 3.0
    tls_timeout: float = 3.0
    tls: TLSConfig = field(default_factory=lambda: TLSConfig(verify=False))
    targets: tuple[str, ...] = DEFAULT_TARGETS


def test_helpers(opts: ThrottlingOptions) -> dict | None:
    """No helper: the random-SNI and no-SNI downloads are the control."""
    return None


def default_inputs(opts: ThrottlingOptions) -> list[str | None]:
    return list(opts.targets)


def random_server_name() -> str:
    """A random name that no censor lists: 12 letters under .net (no "t.co"-like substring can form across a
    dot, which matters: Russia's *t.co* rule also hit names such as microsoft.com)."""
    return "".join(secrets.choice(string.ascii_lowercase) for _ in range(12)) + ".net"


# -- TCP_INFO ------------------------------------------------------------------------------------------------------

# Offsets in Linux's struct tcp_info (include/uapi/linux/tcp.h), stable kernel ABI: tcpi_rtt, tcpi_rttvar (u32, µs),
# tcpi_bytes_acked, tcpi_bytes_received (u64, Linux 4.1+), tcpi_min_rtt (u32, µs, Linux 4.6+).
_TCPI_RTT, _TCPI_RTTVAR, _TCPI_ACKED, _TCPI_RECEIVED, _TCPI_MIN_RTT = 68, 72, 120, 128, 148


def tcp_info(sock: object) -> TCPInfo | None:
    """The kernel's counters for a connected TCP socket, or None where TCP_INFO is not available."""
    opt = getattr(socket, "TCP_INFO", None)
    if sock is None or opt is None:
        return None
    try:
        buf = sock.getsockopt(socket.IPPROTO_TCP, opt, 256)  # type: ignore[attr-defined]
    except (OSError, AttributeError):
        return None
    if len(buf) < _TCPI_RECEIVED + 8:
        return None
    rtt, rtt_var = struct.unpack_from("=II", buf, _TCPI_RTT)
    acked, received = struct.unpack_from("=QQ", buf, _TCPI_ACKED)
    min_rtt = struct.unpack_from("=I", buf, _TCPI_MIN_RTT)[0] if len(buf) >= _TCPI_MIN_RTT + 4 else None
    return TCPInfo(bytes_acked=acked, bytes_received=received, rtt=rtt, rtt_var=rtt_var, min_rtt=min_rtt)


class Sampler:
    """Snapshots of one transfer every `interval` seconds from `start()`, plus one at `stop()`."""

    def __init__(self, conn: Conn, test: str, interval: float = DEFAULT_PARAMS.bucket_seconds) -> None:
        self.sock = conn.writer.get_extra_info("socket")
        self.test = test
        self.interval = interval
        self.app_bytes = 0                # the caller adds what it reads (or writes)
        self.samples: list[ThroughputSample] = []
        self.origin = 0.0
        self._task: asyncio.Task | None = None

    def snapshot(self) -> ThroughputSample:
        elapsed = int(round((time.monotonic() - self.origin) * 1e6))
        info = tcp_info(self.sock)
        if info is not None:
            info.elapsed_time = elapsed
        return ThroughputSample(app_info=AppInfo(elapsed_time=elapsed, num_bytes=self.app_bytes), origin="client",
                                test=self.test, tcp_info=info)

    def start(self) -> None:
        self.origin = time.monotonic()
        self.samples.append(self.snapshot())
        self._task = asyncio.ensure_future(self._run())

    async def _run(self) -> None:
        k = 1
        while True:
            await asyncio.sleep(max(0.0, self.origin + k * self.interval - time.monotonic()))
            self.samples.append(self.snapshot())
            k = max(k + 1, int((time.monotonic() - self.origin) / self.interval) + 1)

    async def stop(self) -> float:
        """Stop sampling; the last snapshot marks the end. Returns the seconds since start()."""
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
        last = self.snapshot()
        prev = self.samples[-1].app_info.elapsed_time if self.samples and self.samples[-1].app_info else None
        end = last.app_info.elapsed_time if last.app_info else None
        if len(self.samples) > 1 and prev is not None and end is not None and end - prev < 10_000:
            self.samples[-1] = last   # a periodic snapshot just before the end: the end replaces it
        else:
            self.samples.append(last)
        return time.monotonic() - self.origin

    def acked(self) -> int | None:
        """Bytes the peer acknowledged since start() (TCP_INFO), None without TCP_INFO."""
        first = self.samples[0].tcp_info if self.samples else None
        now = tcp_info(self.sock)
        if first is None or now is None or first.bytes_acked is None or now.bytes_acked is None:
            return None
        return now.bytes_acked - first.bytes_acked


# -- one download ----------------------------------------------------------------------------------------------------

class _Deadline:
    def __init__(self, budget: float) -> None:
        self.end = time.monotonic() + budget

    def left(self, cap: float = float("inf")) -> float:
        return max(0.05, min(cap, self.end - time.monotonic()))


async def _download(trace: Trace, *, ip: str, port: int, host: str, path: str, sni: str | None, variant: str,
                    round_no: int, seconds: float, opts: ThrottlingOptions, deadline: _Deadline) -> ThrottlingDownload:
    """Connect, handshake with `sni`, GET `path` (Host: `host`) and read for `seconds` after the request."""
    tid = trace.next_id()
    url = f"https://{host}{path}"
    record = ThrottlingDownload(variant=variant, round=round_no, server_name=sni, address=endpoint(ip, port),
                                url=url, transaction_id=tid, num_bytes=0)
    conn: Conn | None = None
    try:
        conn = await connect(trace, ip, port, timeout=deadline.left(opts.connect_timeout), transaction_id=tid)
        conn = await tls_handshake(trace, conn, sni, tls=opts.tls, timeout=deadline.left(opts.tls_timeout))
        await _timed_get(trace, conn, url, path, seconds=min(seconds, deadline.left() - 0.05), record=record,
                         max_bytes=opts.max_bytes)
    except NetxError as exc:
        record.failure = exc.failure
    finally:
        if conn is not None:
            await conn.abort()
    _tidy_events(trace, tid, [f"variant={variant}", f"round={round_no}"])
    return record


async def _timed_get(trace: Trace, conn: Conn, url: str, path: str, *, seconds: float, record: ThrottlingDownload,
                     max_bytes: int) -> None:
    """The HTTP exchange, stopped by time: reaching the time bound is the plan, not a failure."""
    headers = request_headers(url, "GET", [("User-Agent", USER_AGENT), ("Accept", "*/*"), ("Connection", "close")],
                              b"")
    h = h11.Connection(h11.CLIENT)
    wire = h.send(h11.Request(method="GET", target=path, headers=headers)) + h.send(h11.EndOfMessage())
    tx = ArchivalHTTPTransaction(request=request_record(url, "GET", headers, b""), network="tcp",
                                 address=conn.address, alpn=conn.alpn, t0=trace.now(),
                                 transaction_id=conn.transaction_id)
    trace.requests.append(tx)
    record.t0 = tx.t0
    sampler = Sampler(conn, "download")
    failure: str | None = None
    eof = False
    try:
        await conn.write(wire, timeout=max(seconds, 0.05))
        sampler.start()
        end = sampler.origin + seconds
        while not eof and record.num_bytes is not None and record.num_bytes < max_bytes:
            left = end - time.monotonic()
            if left <= 0:
                break
            try:
                async with asyncio.timeout(left):  # fires before the read's own timeout: no failed read recorded
                    data = await conn.read(65536, timeout=left + 5.0)
            except TimeoutError:
                break
            sampler.app_bytes += len(data)
            h.receive_data(data)
            try:
                eof = _drain_events(h, tx, record)
            except h11.RemoteProtocolError as exc:  # the peer closed before the response was complete
                failure = "eof_error" if not data else f"unknown_failure: {exc}"
                break
            if not data and not eof:
                failure = "eof_error"
                break
    except NetxError as exc:
        failure = exc.failure
    finally:
        record.seconds = round(await sampler.stop(), 6) if sampler.origin else 0.0
    record.samples = sampler.samples
    record.eof = eof
    record.failure = failure
    record.t = trace.now()
    tx.t = record.t
    tx.failure = failure
    if tx.response is not None:
        tx.response.body_is_truncated = not eof


def _drain_events(h: h11.Connection, tx: ArchivalHTTPTransaction, record: ThrottlingDownload) -> bool:
    """Consume h11's events; True once the response is complete. The body is counted, never kept."""
    while True:
        event = h.next_event()
        if event is h11.NEED_DATA or event is h11.PAUSED:
            return False
        if isinstance(event, h11.Response):
            pairs = list(event.headers.raw_items())
            tx.response = ArchivalHTTPResponse(
                body=None, body_is_truncated=True, code=event.status_code,
                headers={k.decode("latin-1"): maybe_binary(v) for k, v in reversed(pairs)},
                headers_list=[[k.decode("latin-1"), maybe_binary(v)] for k, v in pairs])
            record.status_code = event.status_code
        elif isinstance(event, h11.Data):
            record.num_bytes = (record.num_bytes or 0) + len(event.data)
        elif isinstance(event, (h11.EndOfMessage, h11.ConnectionClosed)):
            return True


def _tidy_events(trace: Trace, tid: int, tags: list[str]) -> None:
    """Tag the download's events and keep only its first READ_EVENTS_KEPT read events (a fast link makes
    thousands; the 0.25 s samples carry the throughput)."""
    kept = []
    reads = 0
    for ev in trace.network_events:
        if ev.transaction_id == tid:
            ev.tags = list(tags)
            if ev.operation == "read":
                reads += 1
                if reads > READ_EVENTS_KEPT:
                    continue
        kept.append(ev)
    trace.network_events[:] = kept
    for group in (trace.tcp_connect, trace.tls_handshakes, trace.requests):
        for ev in group:
            if ev.transaction_id == tid:
                ev.tags = list(tags)


# -- the measurement -------------------------------------------------------------------------------------------------

def _target(input: str | None, opts: ThrottlingOptions) -> tuple[str, str]:
    """(host, path) from an input that is a host name or a URL."""
    text = (input or opts.targets[0]).strip()
    if "://" in text:
        parts = urlsplit(text)
        path = parts.path or opts.path
        return (parts.hostname or "").lower(), (f"{path}?{parts.query}" if parts.query else path)
    return text.lower().rstrip("."), opts.path


async def _round(trace: Trace, round_no: int, ip: str, host: str, path: str, random_sni: str,
                 durations: tuple[float, float], opts: ThrottlingOptions, deadline: _Deadline
                 ) -> list[ThrottlingDownload]:
    target_s, control_s = durations
    plan = [("target_sni", host, target_s)]
    if opts.random_variant:
        plan.append(("random_sni", random_sni, control_s))
    if opts.no_sni_variant:
        plan.append(("no_sni", None, control_s))
    out = []
    for variant, sni, seconds in plan:
        out.append(await _download(trace, ip=ip, port=opts.port, host=host, path=path, sni=sni, variant=variant,
                                   round_no=round_no, seconds=seconds, opts=opts, deadline=deadline))
    return out


def _rerun_durations(opts: ThrottlingOptions, deadline: _Deadline) -> tuple[float, float] | None:
    """The first round's durations, shortened to fit what is left of the budget; None when too little is left."""
    n_controls = int(opts.random_variant) + int(opts.no_sni_variant)
    transfer = opts.target_seconds + n_controls * opts.control_seconds
    room = deadline.end - time.monotonic() - _SETUP * (1 + n_controls)
    scale = min(1.0, room / transfer) if transfer > 0 else 0.0
    if scale < _MIN_SCALE:
        return None
    return opts.target_seconds * scale, opts.control_seconds * scale


def _summary_of(a: Assessment) -> ThrottlingSummary:
    p = a.plateau
    return ThrottlingSummary(
        result=a.result, reason=a.reason, extreme=a.extreme,
        plateau_bps=round(p.rate_bps, 1) if p is not None else None,
        plateau_cv=round(p.cv, 4) if p is not None and p.cv is not None else None,
        kind=p.kind if p is not None else None)


def _rounds_of(a: Assessment) -> list[ThrottlingRound]:
    def r(x: float | None, nd: int = 6) -> float | None:
        return None if x is None else (round(x, nd) if x == x and abs(x) != float("inf") else None)

    return [ThrottlingRound(round=i + 1, differentiation=c.differentiation.value, area=r(c.area),
                            area_threshold=c.area_threshold, ks_pvalue=r(c.ks_pvalue, 12),
                            target_median_bps=r(c.target_median_bps, 1), control_median_bps=r(c.control_median_bps, 1),
                            ratio=r(c.ratio, 3), extreme=c.extreme)
            for i, c in enumerate(a.rounds)]


async def measure(input: str | None, opts: ThrottlingOptions) -> ThrottlingTestKeys:
    """One throttling decision for one target; every network failure ends up in the test keys."""
    deadline = _Deadline(opts.budget)
    trace = Trace()
    host, path = _target(input, opts)
    random_sni = opts.random_sni or random_server_name()
    keys = ThrottlingTestKeys(target_host=host, target_path=path, random_sni=random_sni if opts.random_variant else None,
                              bucket_seconds=DEFAULT_PARAMS.bucket_seconds, downloads=[])
    ip = opts.address
    if ip is None and is_ip(host.strip("[]")):
        ip = host.strip("[]")
    if ip is None:
        try:
            addrs = await getaddrinfo(trace, host, timeout=deadline.left(opts.dns_timeout))
            ip = next((a for a in addrs if ":" not in a), addrs[0])
        except NetxError as exc:
            keys.failure = exc.failure
    downloads: list[ThrottlingDownload] = []
    if ip is not None:
        keys.target_address = endpoint(ip, opts.port)
        durations = (opts.target_seconds, opts.control_seconds)
        downloads += await _round(trace, 1, ip, host, path, random_sni, durations, opts, deadline)
        if opts.rerun and needs_rerun(compare_round(downloads, 1)):
            again = _rerun_durations(opts, deadline)
            if again is not None:
                downloads += await _round(trace, 2, ip, host, path, random_sni, again, opts, deadline)
    assessment = assess(downloads)
    for name, value in trace.test_keys().items():
        setattr(keys, name, value)
    keys.downloads = downloads
    keys.rounds = _rounds_of(assessment)
    keys.summary = _summary_of(assessment)
    return keys
