"""Facebook Messenger (ooni/spec ts-019): do the service names resolve into Facebook's network, and do they accept
a TCP connection on 443?

For each service (`stun`, `b_api`, `b_graph`, `edge`, `external_cdn`, `scontent_cdn`, `star`) the probe resolves
its name and calls the answer consistent when the ASN of every address is an expected one (Facebook's AS32934;
`expected_asns` lets the lab name its own). The ASNs come from `asn_lookup` (a MaxMind-format ASN database, or
the lab's IP table); without one, consistency is unknown (`null`). Then it connects on 443 to the addresses in
order until one accepts (`stun` is UDP: DNS only), as OONI Probe does: an endpoint is reachable when a connect
succeeded — the spec's "any failed connect" would call a failed IPv6 connect on an IPv4-only network blocking.

Keys, as ts-019 from version 0.4.0 spells them: `facebook_<id>_dns_consistent`, `facebook_<id>_reachable`
(`null` when DNS was not consistent: nothing trustworthy to connect to), `facebook_dns_blocking` (some name
inconsistent or unresolvable), `facebook_tcp_blocking` (some consistent name unreachable).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from netvigil.model.archival import FACEBOOK_MESSENGER_ENDPOINTS, FacebookMessengerTestKeys
from netvigil.probe.nettests._messaging import MessengerOptions, Run

__all__ = ["TEST_NAME", "TEST_VERSION", "FACEBOOK_ASN", "SERVICES", "FacebookMessengerOptions", "default_inputs",
           "measure", "test_helpers"]

TEST_NAME = "facebook_messenger"
TEST_VERSION = "0.2.1"
FACEBOOK_ASN = 32934
SERVICES: tuple[tuple[str, str], ...] = (
    ("stun", "stun.fbsbx.com"),
    ("b_api", "b-api.facebook.com"),
    ("b_graph", "b-graph.facebook.com"),
    ("edge", "edge-mqtt.facebook.com"),
    ("external_cdn", "external.xx.fbcdn.net"),
    ("scontent_cdn", "scontent.xx.fbcdn.net"),
    ("star", "star.c10r.facebook.com"),
)
assert {s for s, _ in SERVICES} == set(FACEBOOK_MESSENGER_ENDPOINTS)


@dataclass(frozen=True, slots=True)
class FacebookMessengerOptions(MessengerOptions):
    services: tuple[tuple[str, str], ...] = SERVICES   # (endpoint id, host name); ids are the test keys'
    dns_only: frozenset[str] = frozenset({"stun"})
    port: int = 443
    expected_asns: frozenset[int] = frozenset({FACEBOOK_ASN})


def test_helpers(opts: FacebookMessengerOptions) -> dict | None:
    return None


def default_inputs(opts: FacebookMessengerOptions) -> list[str | None]:
    return [None]


async def _service(run: Run, service: str, host: str, opts: FacebookMessengerOptions
                   ) -> tuple[bool | None, bool | None]:
    """(dns_consistent, reachable) of one service."""
    addrs, failure = await run.resolve(host)
    if failure is not None:
        return False, None
    consistent: bool | None = None
    if opts.asn_lookup is not None:
        asns = [_asn(opts, ip) for ip in addrs]
        if any(a is not None and a not in opts.expected_asns for a in asns):
            consistent = False
        elif all(a is not None for a in asns):
            consistent = True
    if service in opts.dns_only:
        return consistent, None
    reached = await run.tcp_any(addrs, opts.port) is None
    return consistent, (reached if consistent is not False else None)


def _asn(opts: FacebookMessengerOptions, ip: str) -> int | None:
    assert opts.asn_lookup is not None
    try:
        return opts.asn_lookup(ip)
    except ValueError:
        return None


async def measure(input: str | None, opts: FacebookMessengerOptions) -> FacebookMessengerTestKeys:
    """Run every check; nothing is raised for the network's doing."""
    run = Run(opts)
    results = await asyncio.gather(*(_service(run, service, host, opts) for service, host in opts.services))
    tk = FacebookMessengerTestKeys(agent="redirect", failure=None, **run.arrays())
    dns_blocking = tcp_blocking = False
    for (service, _host), (consistent, reachable) in zip(opts.services, results):
        if service in FACEBOOK_MESSENGER_ENDPOINTS:
            setattr(tk, f"facebook_{service}_dns_consistent", consistent)
            setattr(tk, f"facebook_{service}_reachable", reachable)
        dns_blocking = dns_blocking or consistent is False
        tcp_blocking = tcp_blocking or reachable is False
    tk.facebook_dns_blocking = dns_blocking
    tk.facebook_tcp_blocking = tcp_blocking
    return tk
