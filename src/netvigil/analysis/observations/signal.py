"""Signal (ts-029) -> observations, one target per Signal hostname.

The test fetches https://<host>/ for each backend host (textsecure-service,
storage, api.directory, cdn, cdn2, sfu.voip, …) and only resolves
``uptime.signal.org``. The target is the hostname itself, so new hosts in new
probe versions need no code change.
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

__all__ = ["make_observations", "UNKNOWN_TARGET"]

UNKNOWN_TARGET = "unknown"


def _host(host: str | None) -> str | None:
    return host.lower().rstrip(".") if host else None


def _fallback(c: ArchivalTCPConnect) -> str:
    return UNKNOWN_TARGET


def make_observations(m: Measurement) -> list[Observation]:
    arrays = network_arrays(m.test_keys)
    b = ObservationBuilder(m.uid)
    add_dns(b, arrays.queries, _host, UNKNOWN_TARGET)
    assign = TCPAssigner(ip_groups(arrays.queries, _host), arrays.tls_handshakes, _host, _fallback)
    for c in arrays.tcp_connect:
        b.tcp([c], target=assign.group_of(c))
    add_tls(b, arrays.tls_handshakes, _host, UNKNOWN_TARGET)
    add_http(b, arrays.requests, lambda host, ip: _host(host), UNKNOWN_TARGET, arrays.network_events)
    return b.rows
