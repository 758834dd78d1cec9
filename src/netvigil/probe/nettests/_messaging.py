"""What the messenger nettests (whatsapp, telegram, facebook_messenger, signal) share.

Each of them is a set of independent checks run at once — lookups, TCP connects, single HTTP(S) exchanges — whose
events all go into one `Trace`, as OONI Probe's messenger tests put every check's events into one set of
arrays. Each flow (lookup, connect, handshake, request) gets its own transaction id, so the analysis can tell
which handshake and which request a connect served.

Names are resolved by the system resolver (`getaddrinfo`), as OONI Probe does; `resolver="ip[:port]"` asks that
DNS server over UDP instead (loopback tests, a lab without the system's resolver). With an `asn_lookup`, every
DNS answer carries the ASN of its address, as OONI's messenger tests record it.

A check never raises for the network's doing: its failure is OONI's string from the primitives (`NetxError`),
recorded in the events and returned.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from netvigil.model.archival import ArchivalHTTPTransaction
from netvigil.probe.netx import (
    DEFAULT_HEADERS,
    Conn,
    HTTPResponse,
    NetxError,
    TLSConfig,
    Trace,
    connect,
    getaddrinfo,
    http_request,
    is_ip,
    lookup_udp,
    tls_handshake,
)
from netvigil.probe.netx.http import request_headers, request_record

__all__ = ["AsnLookup", "Exchange", "MessengerOptions", "Run", "url_for"]

AsnLookup = Callable[[str], "int | None"]  # e.g. netvigil.control.asn.asn_lookup(lab_table=…, mmdb=…)


@dataclass(frozen=True, slots=True)
class MessengerOptions:
    """Options every messenger test takes: how to resolve, whom to trust, how long each step may take.

    `budget` bounds the whole test (OONI Probe gives each messenger test 60 s); each step's timeout is cut to
    what is left of it."""

    resolver: str | None = None          # None: the system resolver; "ip[:port]": DNS over UDP to that server
    tls: TLSConfig = field(default_factory=TLSConfig)
    asn_lookup: AsnLookup | None = None  # IP -> ASN for the `asn` of DNS answers
    budget: float = 60.0
    dns_timeout: float = 5.0
    connect_timeout: float = 10.0
    tls_timeout: float = 10.0
    http_timeout: float = 15.0
    max_body: int = 1 << 19


@dataclass(frozen=True, slots=True)
class Exchange:
    """How one HTTP(S) check ended: the response, or the failure and the step it happened at."""

    response: HTTPResponse | None
    failure: str | None
    step: str | None  # dns | connect | tls | http; None when it succeeded

    @property
    def connected(self) -> bool:
        return self.step not in ("dns", "connect")


def url_for(scheme: str, ip: str, port: int) -> str:
    """`http://1.2.3.4/`, `http://1.2.3.4:443/`, `http://[2001:db8::1]:8080/`: the default port left out."""
    host = f"[{ip}]" if ":" in ip else ip
    default = 443 if scheme == "https" else 80
    return f"{scheme}://{host}/" if port == default else f"{scheme}://{host}:{port}/"


class Run:
    """One measurement's trace and time budget, with the checks the messenger tests are made of."""

    def __init__(self, opts: MessengerOptions) -> None:
        self.opts = opts
        self.trace = Trace()
        self.end = time.monotonic() + opts.budget
        self._lookups: dict[str, asyncio.Future[tuple[list[str], str | None]]] = {}

    def left(self, cap: float) -> float:
        return max(0.05, min(cap, self.end - time.monotonic()))

    # -- DNS -----------------------------------------------------------------------------------------------
    async def _lookup(self, host: str, tid: int | None) -> tuple[list[str], str | None]:
        timeout = self.left(self.opts.dns_timeout)
        try:
            if self.opts.resolver:
                addrs = await lookup_udp(self.trace, host, self.opts.resolver, timeout=timeout, transaction_id=tid)
            else:
                addrs = await getaddrinfo(self.trace, host, timeout=timeout, transaction_id=tid)
        except NetxError as exc:
            return [], exc.failure
        return list(dict.fromkeys(addrs)), None

    async def resolve(self, host: str) -> tuple[list[str], str | None]:
        """The addresses of `host` (an IP literal is its own answer), or the lookup's failure.

        Each name is looked up once per measurement however many checks need it."""
        host = host.strip("[]")
        if is_ip(host):
            return [host], None
        if host not in self._lookups:
            self._lookups[host] = asyncio.ensure_future(self._lookup(host, self.trace.next_id()))
        return await self._lookups[host]

    # -- TCP -----------------------------------------------------------------------------------------------
    async def tcp_connect(self, ip: str, port: int) -> str | None:
        """Connect and close at once; the failure, or None."""
        try:
            conn = await connect(self.trace, ip, port, timeout=self.left(self.opts.connect_timeout))
        except NetxError as exc:
            return exc.failure
        await conn.close()
        return None

    async def tcp_any(self, addrs: Sequence[str], port: int) -> str | None:
        """Try the addresses in order until one accepts (as OONI Probe's `tcpconnect://` does); None when one did,
        else the first failure."""
        first: str | None = None
        for ip in addrs:
            failure = await self.tcp_connect(ip, port)
            if failure is None:
                return None
            first = first or failure
        return first or "dns_no_answer"

    # -- HTTP ----------------------------------------------------------------------------------------------
    async def exchange(self, url: str, *, method: str = "GET", tls: TLSConfig | None = None,
                       headers: Sequence[tuple[str, str]] = DEFAULT_HEADERS) -> Exchange:
        """One request, no redirect followed: resolve (unless the host is an IP) -> connect to each address
        until one accepts -> TLS for https -> request. A failure before the request is still recorded as the
        flow's transaction with that failure, as OONI does, so every check shows up in `requests`."""
        parts = urlsplit(url)
        host = parts.hostname or ""
        port = parts.port or (443 if parts.scheme == "https" else 80)
        tid = self.trace.next_id()
        t0 = self.trace.now()
        conn: Conn | None = None
        step = "dns"
        try:
            try:
                if is_ip(host):
                    addrs = [host]
                else:
                    addrs, failure = await self._lookup(host, tid)
                    if failure is not None:
                        raise NetxError(failure)
                step = "connect"
                first: NetxError | None = None
                for ip in addrs:
                    try:
                        conn = await connect(self.trace, ip, port, timeout=self.left(self.opts.connect_timeout),
                                             transaction_id=tid)
                        break
                    except NetxError as exc:
                        first = first or exc
                if conn is None:
                    raise first or NetxError("dns_no_answer")
                if parts.scheme == "https":
                    step = "tls"
                    conn = await tls_handshake(self.trace, conn, host, tls=tls or self.opts.tls,
                                               timeout=self.left(self.opts.tls_timeout))
            except NetxError as exc:
                self.trace.requests.append(ArchivalHTTPTransaction(
                    failure=exc.failure, request=request_record(url, method, request_headers(url, method, headers,
                                                                                             b""), b""),
                    network="tcp", address=conn.address if conn is not None else None, t0=t0, t=self.trace.now(),
                    transaction_id=tid,
                ))
                conn = None  # a failed handshake has closed the stream already
                return Exchange(None, exc.failure, step)
            step = "http"
            try:
                response = await http_request(self.trace, conn, url, method=method, headers=headers,
                                              max_body=self.opts.max_body,
                                              timeout=self.left(self.opts.http_timeout), transaction_id=tid)
            except NetxError as exc:
                return Exchange(None, exc.failure, step)
            return Exchange(response, None, None)
        finally:
            if conn is not None:
                await conn.close()

    # -- the test keys -------------------------------------------------------------------------------------
    def arrays(self) -> dict[str, list]:
        """The df-001/002/005/006/008 arrays, DNS answers annotated with their ASN when a lookup is set."""
        lookup = self.opts.asn_lookup
        if lookup is not None:
            for q in self.trace.queries:
                for a in q.answers or ():
                    ip = (a.ipv4 or a.ipv6) if a is not None else None
                    if ip:
                        try:
                            a.asn = lookup(ip)
                        except ValueError:
                            a.asn = None
        return self.trace.test_keys()
