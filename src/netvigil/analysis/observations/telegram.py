"""Telegram (ts-020) -> observations.

Targets: ``datacenters`` (the access-point IPs the desktop client hardcodes,
reached with TCP and an HTTP POST on ports 80 and 443) and ``web``
(web.telegram.org). Old probes (2019) stored requests without a URL, so the
``Host`` header names the DC or web.telegram.org.
"""

from __future__ import annotations

from netvigil.analysis.observations._messaging import add_dns, add_http, add_tls, network_arrays
from netvigil.analysis.observations.common import ObservationBuilder
from netvigil.model.measurement import Measurement
from netvigil.model.observation import Observation

__all__ = ["make_observations", "DATACENTER_IPS", "TARGETS"]

TARGETS = ("datacenters", "web")

# ts-020's list, plus 95.161.76.100 which probe-cli tests since 2022.
DATACENTER_IPS = frozenset({
    "149.154.175.50", "149.154.167.51", "149.154.175.100", "149.154.167.91", "149.154.171.5",
    "95.161.76.100",
})


def _target_of_host(host: str | None) -> str | None:
    if not host:
        return None
    if host in DATACENTER_IPS:
        return "datacenters"
    return "web" if host.lower().rstrip(".").endswith("telegram.org") else None


def _target_of_http(host: str | None, ip: str | None) -> str:
    if ip in DATACENTER_IPS or host in DATACENTER_IPS:
        return "datacenters"
    return "web"


def make_observations(m: Measurement) -> list[Observation]:
    arrays = network_arrays(m.test_keys)
    b = ObservationBuilder(m.uid)
    add_dns(b, arrays.queries, _target_of_host, "web")
    for c in arrays.tcp_connect:
        # The test only ever connects to the DCs and to web.telegram.org.
        b.tcp([c], target="datacenters" if c.ip in DATACENTER_IPS else "web")
    add_tls(b, arrays.tls_handshakes, _target_of_host, "web")
    add_http(b, arrays.requests, _target_of_http, "web", arrays.network_events)
    return b.rows
