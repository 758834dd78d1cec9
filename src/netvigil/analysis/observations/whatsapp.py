"""WhatsApp (ts-018) -> observations, one target per service the test checks.

Targets: ``endpoints`` (e1…e16.whatsapp.net on 443/5222, what the app uses to
chat), ``registration`` (v.whatsapp.net, new accounts) and ``web``
(web.whatsapp.com). Port 5222 is only ever an endpoint; port 80 only ever web.
"""

from __future__ import annotations

from netvigil.analysis.observations._messaging import (
    TCPAssigner,
    add_dns,
    add_http,
    add_tls,
    ip_groups,
    network_arrays,
)
from netvigil.analysis.observations.common import ObservationBuilder
from netvigil.model.archival import ArchivalTCPConnect
from netvigil.model.measurement import Measurement
from netvigil.model.observation import Observation

__all__ = ["make_observations", "target_of_host", "TARGETS"]

TARGETS = ("endpoints", "registration", "web")
_SUFFIX = ".whatsapp.net"


def target_of_host(host: str | None) -> str | None:
    """'e7.whatsapp.net' -> 'endpoints', 'v.whatsapp.net' -> 'registration', …"""
    if not host:
        return None
    host = host.lower().rstrip(".")
    if host == "web.whatsapp.com":
        return "web"
    if host == "v.whatsapp.net":
        return "registration"
    if host.startswith("e") and host.endswith(_SUFFIX) and host[1 : -len(_SUFFIX)].isdigit():
        return "endpoints"
    return None


def _fallback(c: ArchivalTCPConnect) -> str:
    # An IP no DNS answer explains: port 80 is only used for web, else assume
    # the endpoint check, which makes 32 of the ~35 connects.
    return "web" if c.port == 80 else "endpoints"


def make_observations(m: Measurement) -> list[Observation]:
    arrays = network_arrays(m.test_keys)
    b = ObservationBuilder(m.uid)
    add_dns(b, arrays.queries, target_of_host, "endpoints")
    by_ip = ip_groups(arrays.queries, target_of_host)
    assign = TCPAssigner(by_ip, arrays.tls_handshakes, target_of_host, _fallback)
    for c in arrays.tcp_connect:
        if c.port == 5222:
            group = "endpoints"
        elif c.port == 80:
            group = "web"
        else:
            group = assign.group_of(c)
        b.tcp([c], target=group)
    add_tls(b, arrays.tls_handshakes, target_of_host, "web")
    add_http(b, arrays.requests, lambda host, ip: target_of_host(host), "web", arrays.network_events)
    return b.rows
