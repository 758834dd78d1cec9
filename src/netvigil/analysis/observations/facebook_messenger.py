"""Facebook Messenger (ts-019) -> observations, one target per service name.

Targets are the spec's endpoint ids (``b_api``, ``b_graph``, ``edge``,
``external_cdn``, ``scontent_cdn``, ``star``, ``stun``). The test connects on
443 to every IP each name resolved to; names share IPs, so a TCP row goes to
the next name (in DNS order) that resolved to its IP and has not had its
connect yet.
"""

from __future__ import annotations

from collections import deque

from netvigil.analysis.observations._messaging import add_dns, add_http, add_tls, network_arrays
from netvigil.analysis.observations.common import ObservationBuilder
from netvigil.model.measurement import Measurement
from netvigil.model.observation import Observation

__all__ = ["make_observations", "HOSTS", "target_of_host"]

HOSTS = {
    "stun.fbsbx.com": "stun",
    "b-api.facebook.com": "b_api",
    "b-graph.facebook.com": "b_graph",
    "edge-mqtt.facebook.com": "edge",
    "external.xx.fbcdn.net": "external_cdn",
    "scontent.xx.fbcdn.net": "scontent_cdn",
    "star.c10r.facebook.com": "star",
}


def target_of_host(host: str | None) -> str | None:
    return HOSTS.get(host.lower().rstrip(".")) if host else None


def make_observations(m: Measurement) -> list[Observation]:
    arrays = network_arrays(m.test_keys)
    b = ObservationBuilder(m.uid)
    add_dns(b, arrays.queries, target_of_host, "star")
    # IP -> queue of groups to hand out, one per connect the test made for it.
    pending: dict[str, deque[str]] = {}
    first: dict[str, str] = {}
    for q in arrays.queries:
        group = target_of_host(q.hostname)
        if group is None or group == "stun":   # stun is UDP: the test never connects to it
            continue
        seen: set[str] = set()
        for a in q.answers or ():
            ip = (a.ipv4 or a.ipv6) if a is not None else None
            if ip and ip not in seen:
                seen.add(ip)
                pending.setdefault(ip, deque()).append(group)
                first.setdefault(ip, group)
    for c in arrays.tcp_connect:
        queue = pending.get(c.ip or "")
        group = queue.popleft() if queue else first.get(c.ip or "", "star")
        b.tcp([c], target=group)
    add_tls(b, arrays.tls_handshakes, target_of_host, "star")
    add_http(b, arrays.requests, lambda host, ip: target_of_host(host), "star", arrays.network_events)
    return b.rows
