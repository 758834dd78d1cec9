"""Name resolution three ways, each recorded as df-002 queries: the system's getaddrinfo, DNS over UDP
(dnspython), and DNS over HTTPS carried by our own traced TCP/TLS/HTTP so its network events are evidence too.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Awaitable, Callable, Sequence
from urllib.parse import urlsplit

import dns.asyncquery
import dns.flags
import dns.message
import dns.rcode
import dns.rdatatype

from netvigil.model.archival import ArchivalDNSAnswer, ArchivalDNSQuery
from netvigil.model.failure import Failure
from netvigil.probe.netx.errors import DNSResponseError, NetxError, failure_of
from netvigil.probe.netx.http import can_send, http_request
from netvigil.probe.netx.tcp import Conn, connect
from netvigil.probe.netx.tls import TLSConfig, tls_handshake
from netvigil.probe.netx.trace import Trace, endpoint, is_ip

__all__ = ["getaddrinfo", "lookup_udp", "lookup_doh", "parse_resolver", "answers_of", "DOH_CONTENT_TYPE"]

DOH_CONTENT_TYPE = "application/dns-message"
Resolve = Callable[[str], Awaitable[list[str]]]


def _answer_for_ip(ip: str) -> ArchivalDNSAnswer:
    if ":" in ip:
        return ArchivalDNSAnswer(answer_type="AAAA", ipv6=ip)
    return ArchivalDNSAnswer(answer_type="A", ipv4=ip)


async def getaddrinfo(trace: Trace, hostname: str, *, timeout: float = 5.0,
                      transaction_id: int | None = None) -> list[str]:
    """The system resolver (in the default executor), recorded as one "ANY" query, engine "getaddrinfo"."""
    loop = asyncio.get_running_loop()
    tid = transaction_id if transaction_id is not None else trace.next_id()
    t0 = trace.now()
    ips: list[str] = []
    failure: str | None = None
    try:
        async with asyncio.timeout(max(timeout, 0.0)):
            infos = await loop.getaddrinfo(hostname, None, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP)
        for family, _, _, _, sockaddr in infos:
            if family in (socket.AF_INET, socket.AF_INET6) and sockaddr[0] not in ips:
                ips.append(str(sockaddr[0]))
        if not ips:
            failure = Failure.DNS_NO_ANSWER.value
    except Exception as exc:
        failure = failure_of(exc)
    trace.queries.append(ArchivalDNSQuery(
        answers=[_answer_for_ip(ip) for ip in ips] or None, engine="getaddrinfo", failure=failure,
        hostname=hostname, query_type="ANY", resolver_address="", t0=t0, t=trace.now(), transaction_id=tid,
    ))
    if failure is not None:
        raise NetxError(failure)
    return ips


def parse_resolver(resolver: str) -> tuple[str, int]:
    """"1.1.1.1", "1.1.1.1:53", "[2001:db8::1]:53" or a bare IPv6 address -> (ip, port)."""
    text = resolver.strip()
    ip, port_text = text, "53"
    if text.startswith("["):
        ip, _, rest = text[1:].partition("]")
        if rest:
            if not rest.startswith(":"):
                raise ValueError(f"bad resolver address {resolver!r}")
            port_text = rest[1:]
    elif text.count(":") == 1:
        ip, _, port_text = text.partition(":")
    try:
        ipaddress.ip_address(ip)
        port = int(port_text)
    except ValueError:
        raise ValueError(f"resolver must be an IP address, optionally with :port, not {resolver!r}") from None
    if not 0 < port < 65536:
        raise ValueError(f"bad resolver port in {resolver!r}")
    return ip, port


def answers_of(response: dns.message.Message, qtype: str) -> tuple[list[ArchivalDNSAnswer], list[str]]:
    """Archival answers (A, AAAA, CNAME, with TTLs) and the addresses of the asked type.

    Raises DNSResponseError for an error rcode, or for NOERROR without an address of the asked type (NODATA).
    """
    rcode = response.rcode()
    answers: list[ArchivalDNSAnswer] = []
    ips: list[str] = []
    wanted = dns.rdatatype.from_text(qtype)
    for rrset in response.answer:
        for rdata in rrset:
            if rrset.rdtype == dns.rdatatype.A:
                answers.append(ArchivalDNSAnswer(answer_type="A", ipv4=rdata.address, ttl=rrset.ttl))
            elif rrset.rdtype == dns.rdatatype.AAAA:
                answers.append(ArchivalDNSAnswer(answer_type="AAAA", ipv6=rdata.address, ttl=rrset.ttl))
            elif rrset.rdtype == dns.rdatatype.CNAME:
                answers.append(ArchivalDNSAnswer(answer_type="CNAME", hostname=rdata.target.to_text(True),
                                                 ttl=rrset.ttl))
            else:
                continue
            if rrset.rdtype == wanted and wanted in (dns.rdatatype.A, dns.rdatatype.AAAA):
                ips.append(rdata.address)
    if rcode != dns.rcode.NOERROR or not ips:
        raise _Failed(answers, DNSResponseError(rcode, qtype))
    return answers, ips


class _Failed(Exception):
    """A reply with answers worth recording (CNAMEs before a NODATA) that still failed."""

    def __init__(self, answers: list[ArchivalDNSAnswer], cause: Exception) -> None:
        super().__init__(str(cause))
        self.answers = answers
        self.cause = cause


def _record(trace: Trace, *, engine: str, hostname: str, qtype: str, resolver: str, t0: float, tid: int,
            answers: list[ArchivalDNSAnswer] | None, failure: str | None) -> None:
    trace.queries.append(ArchivalDNSQuery(
        answers=answers or None, engine=engine, failure=failure, hostname=hostname, query_type=qtype,
        resolver_address=resolver, t0=t0, t=trace.now(), transaction_id=tid,
    ))


def _combine(results: Sequence[list[str] | BaseException]) -> list[str]:
    """All addresses in qtype order; if there are none, the first qtype's failure."""
    ips: list[str] = []
    for result in results:
        if isinstance(result, list):
            ips.extend(ip for ip in result if ip not in ips)
    if ips:
        return ips
    for result in results:
        if isinstance(result, BaseException):
            raise NetxError(failure_of(result))
    raise NetxError(Failure.DNS_NO_ANSWER.value)


async def lookup_udp(trace: Trace, hostname: str, resolver: str, *, qtypes: Sequence[str] = ("A", "AAAA"),
                     timeout: float = 5.0, transaction_id: int | None = None) -> list[str]:
    """One query per qtype over UDP, concurrently (TCP retry on TC); one df-002 query each, engine "udp"."""
    ip, port = parse_resolver(resolver)
    address = endpoint(ip, port)
    tid = transaction_id if transaction_id is not None else trace.next_id()

    async def one(qtype: str) -> list[str]:
        t0 = trace.now()
        answers: list[ArchivalDNSAnswer] | None = None
        try:
            query = dns.message.make_query(hostname, qtype)
            async with asyncio.timeout(max(timeout, 0.0)):
                response = await dns.asyncquery.udp(query, ip, timeout=timeout, port=port)
                if response.flags & dns.flags.TC:
                    response = await dns.asyncquery.tcp(query, ip, timeout=timeout, port=port)
            answers, ips = answers_of(response, qtype)
        except Exception as exc:
            cause: Exception = exc
            if isinstance(exc, _Failed):
                answers, cause = exc.answers, exc.cause
            failure = failure_of(cause)
            _record(trace, engine="udp", hostname=hostname, qtype=qtype, resolver=address, t0=t0, tid=tid,
                    answers=answers, failure=failure)
            raise NetxError(failure) from cause
        _record(trace, engine="udp", hostname=hostname, qtype=qtype, resolver=address, t0=t0, tid=tid,
                answers=answers, failure=None)
        return ips

    results = await asyncio.gather(*(one(q) for q in qtypes), return_exceptions=True)
    for result in results:
        if isinstance(result, BaseException) and not isinstance(result, Exception):
            raise result  # cancellation and the like are not DNS results
    return _combine(results)


async def lookup_doh(trace: Trace, hostname: str, url: str, *, tls: TLSConfig, qtypes: Sequence[str] = ("A", "AAAA"),
                     timeout: float = 5.0, resolve: Resolve | None = None,
                     transaction_id: int | None = None) -> list[str]:
    """DNS over HTTPS (RFC 8484 POST): one df-002 query per qtype, engine "doh", resolver_address the URL.

    The messages are built and parsed by dnspython (id 0); the connection, handshake and exchanges are
    ours and traced under the lookup's transaction id. ``resolve`` finds the server's addresses when the
    URL names a host (default: getaddrinfo, traced). ``timeout`` bounds the whole lookup.
    """
    parts = urlsplit(url)
    if parts.scheme != "https" or not parts.hostname:
        raise ValueError(f"a DoH URL is https://host[:port]/path, not {url!r}")
    host = parts.hostname
    port = parts.port or 443
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    tid = transaction_id if transaction_id is not None else trace.next_id()

    def remaining() -> float:
        return deadline - loop.time()

    async def open_conn() -> Conn:
        if is_ip(host):
            addrs = [host]
        elif resolve is not None:
            async with asyncio.timeout(max(remaining(), 0.0)):
                addrs = await resolve(host)
        else:
            addrs = await getaddrinfo(trace, host, timeout=remaining(), transaction_id=tid)
        first: BaseException | None = None
        for ip in addrs:
            try:
                conn = await connect(trace, ip, port, timeout=remaining(), transaction_id=tid)
            except NetxError as exc:
                first = first or exc
                continue
            return await tls_handshake(trace, conn, host, tls=tls, timeout=remaining())
        raise first if first is not None else NetxError(Failure.DNS_NO_ANSWER.value)

    conn: Conn | None = None
    setup_error: Exception | None = None  # a failed connect/handshake fails every later qtype too
    results: list[list[str] | BaseException] = []
    try:
        for qtype in qtypes:
            t0 = trace.now()
            answers: list[ArchivalDNSAnswer] | None = None
            try:
                query = dns.message.make_query(hostname, qtype)
                query.id = 0  # RFC 8484 section 4.1: cache-friendly
                if conn is None or not can_send(conn):
                    if setup_error is not None:
                        raise setup_error
                    if conn is not None:
                        await conn.close()
                    try:
                        conn = await open_conn()
                    except Exception as exc:
                        setup_error = exc
                        raise
                reply = await http_request(
                    trace, conn, url, method="POST", body=query.to_wire(), max_body=65535,
                    headers=[("Content-Type", DOH_CONTENT_TYPE), ("Accept", DOH_CONTENT_TYPE)],
                    timeout=remaining(), transaction_id=tid,
                )
                if reply.status != 200:
                    raise NetxError(Failure.HTTP_UNEXPECTED_STATUS.value)
                ctype = (reply.header("content-type") or "").split(";")[0].strip().lower()
                if ctype != DOH_CONTENT_TYPE:
                    raise ValueError(f"DoH reply content-type {ctype or 'missing'!r}")
                answers, ips = answers_of(dns.message.from_wire(reply.body), qtype)
            except Exception as exc:
                cause: Exception = exc
                if isinstance(exc, _Failed):
                    answers, cause = exc.answers, exc.cause
                _record(trace, engine="doh", hostname=hostname, qtype=qtype, resolver=url, t0=t0, tid=tid,
                        answers=answers, failure=failure_of(cause))
                results.append(cause)
                continue
            _record(trace, engine="doh", hostname=hostname, qtype=qtype, resolver=url, t0=t0, tid=tid,
                    answers=answers, failure=None)
            results.append(ips)
    finally:
        if conn is not None:
            await conn.close()
    return _combine(results)
