"""The lab's DNS: an authoritative server for the lab's zones and a caching forwarding resolver in front of it.

The censor forges, drops or redirects DNS between the probe and these servers, so both must behave like the
real thing on the wire: AA/RA flags, NXDOMAIN vs NODATA with an SOA, truncation over UDP and TCP retries.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import struct
import time
from dataclasses import dataclass

import dns.asyncquery
import dns.exception
import dns.flags
import dns.message
import dns.name
import dns.opcode
import dns.rcode
import dns.rdataclass
import dns.rdatatype
import dns.rrset
from dns.rdataclass import RdataClass
from dns.rdatatype import RdataType

from netvigil.lab.servers.framed import start_framed_tcp
from netvigil.lab.servers.spec import DnsSpec
from netvigil.lab.servers.udp import start_udp

__all__ = ["Authority", "Forwarder", "start_dns"]

log = logging.getLogger(__name__)

UDP_DEFAULT_PAYLOAD = 512  # RFC 1035 limit without EDNS


class Authority:
    """Answers for a fixed set of names (no I/O). Names are matched case-insensitively, without wildcards."""

    def __init__(self, zones: dict[str, list[str]], ttl: int = 300) -> None:
        self.ttl = ttl
        self.records: dict[dns.name.Name, list[str]] = {
            dns.name.from_text(name): addrs for name, addrs in zones.items()
        }

    def answer(self, query: dns.message.Message) -> dns.message.Message:
        response = dns.message.make_response(query)
        response.flags |= dns.flags.AA
        response.flags &= ~dns.flags.RA
        if query.opcode() != dns.opcode.QUERY or len(query.question) != 1:
            response.set_rcode(dns.rcode.NOTIMP if query.opcode() != dns.opcode.QUERY else dns.rcode.FORMERR)
            return response
        q = query.question[0]
        if q.rdclass != dns.rdataclass.IN:
            response.set_rcode(dns.rcode.REFUSED)
            return response
        addrs = self.records.get(q.name)
        if addrs is None:
            if not any(n.is_subdomain(q.name) for n in self.records):
                response.set_rcode(dns.rcode.NXDOMAIN)
            response.authority.append(self._soa(q.name))  # NXDOMAIN, or NODATA for an empty non-terminal
            return response
        wanted = {dns.rdatatype.A: 4, dns.rdatatype.AAAA: 6}
        versions = {4, 6} if q.rdtype == dns.rdatatype.ANY else {wanted.get(q.rdtype)}
        for version, rdtype in ((4, dns.rdatatype.A), (6, dns.rdatatype.AAAA)):
            matching = [a for a in addrs if version in versions and ipaddress.ip_address(a).version == version]
            if matching:
                response.answer.append(dns.rrset.from_text_list(q.name, self.ttl, "IN", rdtype, matching))
        if not response.answer:
            response.authority.append(self._soa(q.name))  # NODATA (e.g. AAAA for an IPv4-only name)
        return response

    def _soa(self, name: dns.name.Name) -> dns.rrset.RRset:
        zone = name.split(3)[1] if len(name) > 3 else name  # the last two labels (plus root)
        return dns.rrset.from_text(zone, self.ttl, "IN", "SOA",
                                   f"ns1.{zone} hostmaster.{zone} 2020092701 7200 3600 1209600 {min(self.ttl, 300)}")


@dataclass(slots=True)
class _Cached:
    stored: float
    ttl: int
    response: dns.message.Message


class Forwarder:
    """A caching forwarder: UDP to the upstream, TCP when the answer is truncated, SERVFAIL when it is silent."""

    def __init__(self, upstream: str, port: int = 53, *, timeout: float = 2.0, attempts: int = 2,
                 max_entries: int = 10_000, max_ttl: int = 3600) -> None:
        self.upstream, self.port = upstream, port
        self.timeout, self.attempts = timeout, attempts
        self.max_entries, self.max_ttl = max_entries, max_ttl
        self.cache: dict[tuple[dns.name.Name, RdataType, RdataClass], _Cached] = {}

    async def answer(self, query: dns.message.Message) -> dns.message.Message:
        response = dns.message.make_response(query)
        response.flags |= dns.flags.RA
        if query.opcode() != dns.opcode.QUERY or len(query.question) != 1:
            response.set_rcode(dns.rcode.NOTIMP if query.opcode() != dns.opcode.QUERY else dns.rcode.FORMERR)
            return response
        q = query.question[0]
        upstream = await self._lookup(q.name, q.rdtype, q.rdclass)
        if upstream is None:
            response.set_rcode(dns.rcode.SERVFAIL)
            return response
        response.set_rcode(upstream.rcode())
        response.answer = upstream.answer
        response.authority = upstream.authority
        response.additional = [rr for rr in upstream.additional if rr.rdtype != dns.rdatatype.OPT]
        return response

    async def _lookup(self, name: dns.name.Name, rdtype: RdataType, rdclass: RdataClass) -> dns.message.Message | None:
        key = (name, rdtype, rdclass)
        now = time.monotonic()
        hit = self.cache.get(key)
        if hit is not None:
            age = int(now - hit.stored)
            if age < hit.ttl:
                return _aged(hit.response, age)
            del self.cache[key]
        result = await self._forward(name, rdtype, rdclass)
        if result is not None:
            ttl = _cache_ttl(result)
            if ttl > 0:
                if len(self.cache) >= self.max_entries:
                    self.cache.clear()  # crude but bounded; a lab resolver sees few names
                self.cache[key] = _Cached(now, min(ttl, self.max_ttl), result)
        return result

    async def _forward(self, name: dns.name.Name, rdtype: RdataType, rdclass: RdataClass) -> dns.message.Message | None:
        query = dns.message.make_query(name, rdtype, rdclass, use_edns=0, payload=1232)
        for _ in range(self.attempts):
            try:
                result = await dns.asyncquery.udp(query, self.upstream, timeout=self.timeout, port=self.port)
                if result.flags & dns.flags.TC:
                    result = await dns.asyncquery.tcp(query, self.upstream, timeout=self.timeout, port=self.port)
            except (TimeoutError, dns.exception.Timeout):
                continue
            except (OSError, dns.exception.DNSException) as exc:
                log.debug("upstream %s failed for %s: %s", self.upstream, name, exc)
                return None
            if result.rcode() in (dns.rcode.NOERROR, dns.rcode.NXDOMAIN):
                return result
            return None  # SERVFAIL/REFUSED upstream: pass on as SERVFAIL and do not cache
        return None


def _cache_ttl(message: dns.message.Message) -> int:
    """Positive answers live for their smallest TTL, negative ones for the SOA's (RFC 2308 §5)."""
    if message.answer:
        return min(rrset.ttl for rrset in message.answer)
    soas = [rr for rr in message.authority if rr.rdtype == dns.rdatatype.SOA]
    if soas:
        return min(soas[0].ttl, soas[0][0].minimum)
    return 0


def _aged(message: dns.message.Message, age: int) -> dns.message.Message:
    """A copy of a cached answer whose TTLs count down, as a cache's answers do."""
    copy = dns.message.from_wire(message.to_wire())
    for section in (copy.answer, copy.authority, copy.additional):
        for rrset in section:
            if rrset.rdtype != dns.rdatatype.OPT:
                rrset.ttl = max(rrset.ttl - age, 0)
    return copy


def _encode(query: dns.message.Message, response: dns.message.Message, max_size: int) -> bytes:
    """Wire form within `max_size`; too big gives an empty answer with TC set so the client retries over TCP."""
    try:
        return response.to_wire(max_size=max_size)
    except dns.exception.TooBig:
        truncated = dns.message.make_response(query)
        truncated.flags = response.flags | dns.flags.TC
        truncated.set_rcode(response.rcode())
        return truncated.to_wire(max_size=max_size)


def _formerr(wire: bytes) -> bytes | None:
    """FORMERR for a message we cannot parse, if it is at least long enough to carry an id; otherwise silence."""
    if len(wire) < 12 or wire[2] & 0x80:  # too short, or a response (never answer those: no reflection loops)
        return None
    (qid,) = struct.unpack("!H", wire[:2])
    return struct.pack("!HHHHHH", qid, 0x8000 | dns.rcode.FORMERR, 0, 0, 0, 0)


async def start_dns(spec: DnsSpec, zones: dict[str, list[str]]) -> list[object]:
    """Bind UDP and TCP for one dns entry; returns the transports and servers to close."""
    if spec.role == "authoritative":
        authority = Authority(zones, spec.ttl)

        async def resolve(query: dns.message.Message) -> dns.message.Message:
            return authority.answer(query)
    else:
        forwarder = Forwarder(spec.upstream or "", spec.upstream_port)
        resolve = forwarder.answer

    async def on_message(wire: bytes, peer: tuple, max_size: int) -> bytes | None:
        try:
            query = dns.message.from_wire(wire)
        except dns.exception.DNSException:
            return _formerr(wire)
        if query.flags & dns.flags.QR:
            return None
        response = await resolve(query)
        if spec.delay:  # emulated latency, before every answer
            await asyncio.sleep(spec.delay)
        size = max_size if max_size else 65535
        if max_size and query.edns >= 0:
            size = max(UDP_DEFAULT_PAYLOAD, min(query.payload, 4096))
        return _encode(query, response, size)

    async def on_udp(wire: bytes, peer: tuple) -> bytes | None:
        return await on_message(wire, peer, UDP_DEFAULT_PAYLOAD)

    async def on_tcp(wire: bytes, peer: tuple) -> bytes | None:
        return await on_message(wire, peer, 0)

    udp = await start_udp(on_udp, spec.bind, spec.port)
    tcp = await start_framed_tcp(on_tcp, spec.bind, spec.port)
    return [udp, tcp]
