"""The authoritative server and the forwarding resolver, queried with dnspython over real sockets."""

from __future__ import annotations

import asyncio

import dns.flags
import dns.message
import dns.query
import dns.rcode
import dns.rdatatype
import dns.zone  # noqa: F401  (dnspython's rdata types load lazily)

from netvigil.lab.servers.nameserver import Authority, Forwarder

PORT = 15353


def _udp(lab, n: int, name: str, rdtype: str = "A", **kw) -> dns.message.Message:
    return dns.query.udp(dns.message.make_query(name, rdtype, **kw), lab.ip(n), port=PORT, timeout=3)


def _addrs(msg: dns.message.Message) -> list[str]:
    return sorted(r.address for rrset in msg.answer for r in rrset)


def test_authoritative_a_udp_and_tcp(lab):
    msg = _udp(lab, 53, "www.facebook.com")
    assert msg.rcode() == dns.rcode.NOERROR and msg.flags & dns.flags.AA
    assert _addrs(msg) == [lab.ip(10)]
    tcp = dns.query.tcp(dns.message.make_query("WWW.Facebook.COM", "A"), lab.ip(53), port=PORT, timeout=3)
    assert _addrs(tcp) == [lab.ip(10)]


def test_authoritative_nxdomain_and_nodata(lab):
    nx = _udp(lab, 53, "nonexistent.facebook.com")
    assert nx.rcode() == dns.rcode.NXDOMAIN
    assert nx.authority and nx.authority[0].rdtype == dns.rdatatype.SOA
    nodata = _udp(lab, 53, "www.facebook.com", "AAAA")
    assert nodata.rcode() == dns.rcode.NOERROR and not nodata.answer and nodata.authority
    aaaa = _udp(lab, 53, "dual.example", "AAAA")
    assert _addrs(aaaa) == ["2001:db8::10"]
    ent = _udp(lab, 53, "whatsapp.net")  # parent of e1.whatsapp.net: exists, but has no records
    assert ent.rcode() == dns.rcode.NOERROR and not ent.answer


def test_authoritative_truncates_big_udp_answers(lab):
    msg = _udp(lab, 53, "big.example", use_edns=False)
    assert msg.flags & dns.flags.TC and not msg.answer
    tcp = dns.query.tcp(dns.message.make_query("big.example", "A"), lab.ip(53), port=PORT, timeout=3)
    assert len(_addrs(tcp)) == 60


def test_resolver_forwards_and_sets_ra(lab):
    msg = _udp(lab, 54, "facebook.com")
    assert msg.flags & dns.flags.RA and not msg.flags & dns.flags.AA
    assert _addrs(msg) == [lab.ip(10)]
    assert _udp(lab, 54, "nothing-here.example").rcode() == dns.rcode.NXDOMAIN


def test_resolver_falls_back_to_tcp_upstream(lab):
    # The upstream truncates over UDP; the resolver must refetch over TCP and answer the client over TCP in full.
    msg = dns.query.tcp(dns.message.make_query("big.example", "A"), lab.ip(54), port=PORT, timeout=5)
    assert len(_addrs(msg)) == 60
    udp = _udp(lab, 54, "big.example", use_edns=False)
    assert udp.flags & dns.flags.TC  # and tells a UDP client without EDNS to retry over TCP


def test_resolver_ignores_garbage_and_answers_formerr(lab):
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(2)
        s.sendto(b"\x12\x34" + b"\x01\x00" + b"\xff" * 20, (lab.ip(54), PORT))
        reply = s.recv(512)
    assert reply[:2] == b"\x12\x34" and reply[3] & 0x0F == dns.rcode.FORMERR


def test_forwarder_cache_counts_ttl_down():
    """In-process: the cache serves the second query without the upstream, with the TTL aged."""
    authority = Authority({"cached.example": ["192.0.2.1"]}, ttl=60)
    forwarder = Forwarder("192.0.2.53")
    calls = []

    async def fake_forward(name, rdtype, rdclass):
        calls.append(name)
        return authority.answer(dns.message.make_query(name, rdtype))

    forwarder._forward = fake_forward  # type: ignore[method-assign]

    async def run():
        q = dns.message.make_query("cached.example", "A")
        first = await forwarder.answer(q)
        forwarder.cache[next(iter(forwarder.cache))].stored -= 10  # ten seconds later
        second = await forwarder.answer(q)
        forwarder.cache[next(iter(forwarder.cache))].stored -= 60  # expired
        await forwarder.answer(q)
        return first, second

    first, second = asyncio.run(run())
    assert first.answer[0].ttl == 60 and second.answer[0].ttl == 50
    assert len(calls) == 2
